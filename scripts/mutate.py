"""`make mutate`: mutation testing of the hot-path and contract modules.

mutmut (configured in pyproject.toml's [tool.mutmut]) plants one small bug
at a time in the modules named there (the packet path: mbufs, the
hand-off, the pacer, Ethernet, routes, the virtio-net header, bpf taps,
IPv4, ARP, ICMP, checksums, software offload, the control socket's request
parsing, and the TAP, AF_PACKET and shim drivers) and runs the
unit tests that reach the mutated function; a mutant the tests do not
notice "survived". This script runs mutmut with its chatter in a log,
then prints one row per module and, as its last line,

    mutation score: K/N killed (P%)

K counts mutants killed by a failing test or by a timeout (the mutant made
a loop run forever). N is every mutant minus those listed in
tests/equivalent_mutants.txt (mutants that change no behaviour anyone can
observe, each with its proof) and tests/performance_only_mutants.txt
(mutants that only make the fast path slower). An entry records the
mutated line too, so when the code moves and mutmut's numbering shifts,
the entry is reported stale instead of silently excusing another mutant.
Listed mutants are not run (scripts/mutmut_run.py): they can only
survive, and they would be a third of the run; --check-listed runs them.

Exit status: 0 when the score, and every module's, is at least --goal
(90%); 1 below it or when an entry is stale; 2 when mutmut itself failed.

mutmut keeps its results in mutants/ and reuses them while the code and
tests are unchanged; `make mutate ARGS=--fresh` starts from nothing.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EQUIVALENT = os.path.join("tests", "equivalent_mutants.txt")
PERF_ONLY = os.path.join("tests", "performance_only_mutants.txt")
KILLED = {"killed", "timeout", "segfault", "caught by type check"}


def load_equivalents(path: str) -> dict[str, tuple[str, str]]:
    """name -> (mutated line, reason). Format, one per line:
    `name | mutated line as mutmut shows it (+ side, stripped) | reason`."""
    out = {}
    if not os.path.exists(path):
        return out
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            # The mutated line may hold " | " itself (a bitwise or): the
            # name is before the first separator, the reason after the last.
            name, _, rest = line.partition(" | ")
            mutated, _, reason = rest.rpartition(" | ")
            if not (name.strip() and mutated.strip() and reason.strip()):
                sys.exit(f"mutate: {path}:{n}: expected 'name | mutated line | reason'")
            out[name.strip()] = (mutated.strip(), reason.strip())
    return out


def mutant_results(mutmut: str) -> dict[str, str]:
    """Every mutant's status from `mutmut results --all true`."""
    r = subprocess.run([mutmut, "results", "--all", "true"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"mutate: mutmut results failed: {r.stderr.strip()[-500:]}")
    res = {}
    for line in r.stdout.splitlines():
        m = re.match(r"\s+(\S+): (.+)$", line)
        if m:
            res[m.group(1)] = m.group(2).strip()
    return res


def added_lines(diff: str) -> str:
    """The lines a mutant's unified diff adds, stripped, joined by ' / '
    (the form the lists record)."""
    return " / ".join(ln[1:].strip() for ln in diff.splitlines()
                      if ln.startswith("+") and not ln.startswith("+++"))


def mutated_line(mutmut: str, name: str) -> str:
    """The line the mutant adds, as `mutmut show` prints it."""
    return added_lines(subprocess.run([mutmut, "show", name], capture_output=True,
                                      text=True).stdout)


def module_of(name: str) -> str:
    # iopkt.cksum.x_fold__mutmut_1, iopkt.pacer.xǁPacerǁwait__mutmut_5
    return name.split(".x")[0] if ".x" in name else name.rsplit(".", 1)[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fresh", action="store_true", help="discard mutmut's earlier results")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="mutants tested at once (default: the number of CPUs)")
    ap.add_argument("--goal", type=float, default=90.0, help="lowest passing score, percent")
    ap.add_argument("--check-listed", action="store_true",
                    help="run the mutants listed as equivalent or performance-only too "
                         "(each should survive; a killed one is reported stale)")
    ap.add_argument("--report-only", action="store_true",
                    help="do not run mutmut; report the results already in mutants/")
    ap.add_argument("patterns", nargs="*", metavar="PATTERN",
                    help="only mutants whose names match (fnmatch, e.g. 'iopkt.net.ifnet.*'): "
                         "a part of the run, and its rows only")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error(f"--jobs {args.jobs}: must be at least 1")
    os.chdir(ROOT)
    mutmut = os.path.join(os.path.dirname(sys.executable), "mutmut")
    if not os.path.exists(mutmut):
        print("mutate: mutmut is not installed in this venv (make mutate installs it)")
        return 2

    if not args.report_only:
        if args.fresh:
            shutil.rmtree("mutants", ignore_errors=True)
        os.makedirs("mutants", exist_ok=True)
        log = os.path.join("mutants", "run.log")
        print(f"mutate: running mutmut with {args.jobs} jobs (progress in {log})", flush=True)
        t0 = time.monotonic()
        # Listed mutants can only survive, and survivors cost the most (every
        # test that reaches them runs): scripts/mutmut_run.py leaves them out.
        skip = os.path.join("mutants", "listed.txt")
        with open(skip, "w", encoding="utf-8") as f:
            if not args.check_listed:
                listed = {**load_equivalents(EQUIVALENT), **load_equivalents(PERF_ONLY)}
                f.writelines(f"{name}\t{line}\n" for name, (line, _) in listed.items())
        with open(log, "w") as f:
            r = subprocess.run([sys.executable, os.path.join("scripts", "mutmut_run.py"), skip,
                                "--max-children", str(args.jobs), *args.patterns],
                               stdout=f, stderr=subprocess.STDOUT)
        took = time.monotonic() - t0
        if r.returncode != 0:
            with open(log, errors="replace") as f:
                tail = f.read()[-1500:]
            print(tail)
            print(f"mutate: mutmut failed (exit {r.returncode}); whole log in {log}")
            return 2
        print(f"mutate: mutmut took {took / 60:.1f} min")

    res = mutant_results(mutmut)
    if args.patterns:
        res = {k: v for k, v in res.items() if any(fnmatch.fnmatch(k, p) for p in args.patterns)}
    if not res:
        print("mutate: no results in mutants/ (run without --report-only)")
        return 2
    equiv = load_equivalents(EQUIVALENT)
    perf = load_equivalents(PERF_ONLY)
    both = set(equiv) & set(perf)
    if both:
        sys.exit(f"mutate: listed both as equivalent and as performance-only: {sorted(both)}")
    stale = []
    for name, (line, _reason) in {**equiv, **perf}.items():
        if args.patterns and not any(fnmatch.fnmatch(name, p) for p in args.patterns):
            continue
        status = res.get(name)
        if status is None:
            stale.append(f"{name}: no such mutant any more")
        elif status not in ("survived", "no tests", "not checked"):
            stale.append(f"{name}: listed but {status}")
        elif mutated_line(mutmut, name) != line:
            stale.append(f"{name}: now mutates `{mutated_line(mutmut, name)}`")

    not_run = sum(1 for name in {**equiv, **perf} if res.get(name) == "not checked")
    rows: dict[str, Counter] = defaultdict(Counter)
    survivors = []
    for name, status in res.items():
        c = rows[module_of(name)]
        c["total"] += 1
        listed = not any(s.startswith(name + ":") for s in stale)
        if name in equiv and listed:
            c["equivalent"] += 1
        elif name in perf and listed:
            c["perf"] += 1
        elif status in KILLED:
            c["killed"] += 1
        else:
            c["survived"] += 1
            survivors.append((name, status))

    print(f"\n{'module':42} {'mutants':>8} {'killed':>7} {'survived':>9} {'equiv':>6} "
          f"{'perf':>5} {'score':>7}")
    tot = Counter()
    low = []
    for mod in sorted(rows):
        c = rows[mod]
        tot.update(c)
        n = c["total"] - c["equivalent"] - c["perf"]
        score = 100 * c["killed"] / n if n else 100.0
        if score < args.goal:
            low.append(f"{mod} {score:.1f}%")
        print(f"{mod:42} {c['total']:8} {c['killed']:7} {c['survived']:9} {c['equivalent']:6} "
              f"{c['perf']:5} {score:6.1f}%")
    if survivors:
        print(f"\n{len(survivors)} surviving (see one with `.venv/bin/mutmut show NAME`):")
        for name, status in sorted(survivors):
            print(f"  {name}: {status}")
    for s in stale:
        print(f"stale entry in {PERF_ONLY if s.split(':')[0] in perf else EQUIVALENT}: {s}")
    n = tot["total"] - tot["equivalent"] - tot["perf"]
    pct = 100 * tot["killed"] / n if n else 100.0
    print(f"\n{tot['equivalent']} equivalent mutants listed with proofs in {EQUIVALENT}")
    print(f"{tot['perf']} performance-only mutants (only slower; the bench figure that guards "
          f"each is in {PERF_ONLY})")
    if not_run:
        print(f"{not_run} of the listed mutants not run (they can only survive; "
              f"--check-listed runs them)")
    if low:
        print(f"below {args.goal:g}%: {', '.join(low)}")
    print(f"mutation score: {tot['killed']}/{n} killed ({pct:.1f}%)")
    return 0 if pct >= args.goal and not low and not stale else 1


if __name__ == "__main__":
    sys.exit(main())
