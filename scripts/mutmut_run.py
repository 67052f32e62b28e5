"""`mutmut run`, leaving out the mutants listed as equivalent or performance-only.

Usage (scripts/mutate.py calls it; the venv's python):
    python scripts/mutmut_run.py SKIPFILE [mutmut run arguments...]

SKIPFILE holds one mutant name per line. A listed mutant has been proven
to change nothing a test can observe (tests/equivalent_mutants.txt) or
only to slow the fast path (tests/performance_only_mutants.txt): running
it can only end in "survived", and the survivors are the slowest mutants
of all (every test that reaches the function runs to the end, about 80 s
each for Mbuf.__init__). So they are not run; they stay "not checked" in
mutmut's results, and scripts/mutate.py still checks each entry's mutated
line against the code. `make mutate ARGS=--check-listed` runs them too.

mutmut has no option for this: the hook wraps the one function that lists
the mutants to run (mutmut is pinned in pyproject.toml, so the name holds).
"""

from __future__ import annotations

import sys

import mutmut.__main__ as mm


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        skip = {ln.strip() for ln in f if ln.strip()}
    collect = mm.collect_source_file_mutation_data

    def without_listed(*, mutant_names):
        mutants, by_path = collect(mutant_names=mutant_names)
        # Only untested ones are left out: a listed mutant with a result
        # from an earlier run (--check-listed) keeps it.
        return [x for x in mutants if not (x[1] in skip and x[2] is None)], by_path

    mm.collect_source_file_mutation_data = without_listed
    sys.argv = ["mutmut", "run", *sys.argv[2:]]
    sys.exit(mm.cli())


if __name__ == "__main__":
    main()
