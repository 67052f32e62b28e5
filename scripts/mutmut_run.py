"""`mutmut run`, leaving out the mutants listed as equivalent or performance-only.

Usage (scripts/mutate.py calls it; the venv's python):
    python scripts/mutmut_run.py SKIPFILE [mutmut run arguments...]

SKIPFILE holds one listed mutant per line: its name, a tab, the line it
adds as the list records it. A listed mutant has been proven to change
nothing a test can observe (tests/equivalent_mutants.txt) or only to slow
the fast path (tests/performance_only_mutants.txt): running it can only
end in "survived", and survivors are the slowest mutants of all (every
test that reaches the function runs to the end, about 80 s each for
Mbuf.__init__). So it is not run, and stays "not checked" in mutmut's
results, but only while it still adds the recorded line: when the code
moved and the name now means another mutant, that one runs (and
scripts/mutate.py reports the entry stale). `make mutate
ARGS=--check-listed` runs the listed ones too.

It also hands each mutant's tests to pytest nearest first: those of the
mutated module's own test files (tests/unit/netinet/test_arp*.py for
iopkt/netinet/arp.py), then the rest of its layer's folder, then the
others, each group fastest first (by the durations mutmut measured on the
clean run). pytest runs them with -x, so a mutant dies at its first
failing test, and the module's own tests are the likeliest to fail first;
the order, hence the run, is the same every time instead of following
the hash seed of a set.

mutmut has no option for either: the hooks wrap the function that lists
the mutants to run and the runner's submit (mutmut is pinned in
pyproject.toml, so the names hold).
"""

from __future__ import annotations

import sys

import mutmut.__main__ as mm
from mutate import added_lines
from mutmut.mutation.diff_apply import get_diff_for_mutant


def nearness(mutant: str):
    """For a mutant's name (iopkt.netinet.arp.xǁArpǁflush__mutmut_7), a key
    for a test's node id: 0 for a test file named after the module
    (tests/unit/netinet/test_arp_counts.py), 1 for another file of the
    layer's folder (tests/unit/netinet/), 2 for any other."""
    parts = []
    for p in mutant.split("."):
        if p.startswith(("x_", "xǁ")):
            break
        parts.append(p)
    module, layer = parts[-1], parts[-2] if parts[0] != "drivers" else "drivers"

    def key(test: str) -> int:
        path = test.split("::", 1)[0]
        folder, _, fname = path.rpartition("/")
        if module in fname:
            return 0
        return 1 if folder.endswith("/" + layer) else 2
    return key


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        skip = dict(ln.rstrip("\n").split("\t", 1) for ln in f if ln.strip())
    collect = mm.collect_source_file_mutation_data

    def still_listed(data, name: str, result) -> bool:
        # Untested, and still the mutant the list proved: a result from an
        # earlier run (--check-listed) stands.
        return (result is None and name in skip
                and added_lines(get_diff_for_mutant(name, path=data.path)) == skip[name])

    def without_listed(*, mutant_names):
        mutants, by_path = collect(mutant_names=mutant_names)
        return [x for x in mutants if not still_listed(*x)], by_path

    mm.collect_source_file_mutation_data = without_listed

    make_runner = mm.get_mutant_runner

    def nearest_first(*args, **kwargs):
        runner = make_runner(*args, **kwargs)
        submit = runner.submit

        def submit_sorted(name, tests, *rest):
            duration = mm.state().duration_by_test     # loaded after the runner is made
            near = nearness(name)
            submit(name, sorted(tests, key=lambda t: (near(t), duration.get(t, 0.0), t)), *rest)

        runner.submit = submit_sorted
        return runner

    mm.get_mutant_runner = nearest_first
    sys.argv = ["mutmut", "run", *sys.argv[2:]]
    sys.exit(mm.cli())


if __name__ == "__main__":
    main()
