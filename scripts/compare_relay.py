#!/usr/bin/env python3
"""Native forwarding against the plain Python TAP relay, in one run.

Alternates, pair by pair: iperf3 TCP (MTU 1500) through (a) the iopkt lab
with devnp-tap and (b) scripts/tap_relay.py, the forwarder pinned to one
core and iperf3 to the other. Prints every run, the medians and the median
of the pairwise ratios (native / relay). The bar (issue 2): >= 0.6.

    sudo .venv/bin/python scripts/compare_relay.py [--reps 3] [--seconds 5]
"""

import argparse
import json
import os
import platform
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from iopkt import benchlib, lab  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--driver", default="devnp-tap")
    ap.add_argument("--prefix", default="cmprel")
    ap.add_argument("--json", help="also write the runs to this file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("compare_relay: needs root (TAPs and namespaces): run with sudo")
    benchlib.need_iperf3()
    fwd, load = benchlib.cpus()
    runs = []
    for rep in range(args.reps):
        order = ("native", "relay") if rep % 2 == 0 else ("relay", "native")
        pair = {}
        for kind in order:
            if kind == "native":
                spec = lab.LabSpec(prefix=args.prefix, driver_a=args.driver, driver_b=args.driver)
                with benchlib.stack_lab(spec, fwd) as st:
                    res = benchlib.iperf3(st["ns_a"], st["ns_b"], "198.19.0.2",
                                          args.seconds, cores=load)
            else:
                with benchlib.relay_lab(args.prefix, fwd) as st:
                    res = benchlib.iperf3(st["ns_a"], st["ns_b"], st["server_ip"],
                                          args.seconds, cores=load)
            pair[kind] = benchlib.received_bps(res)
            print(f"rep {rep + 1}/{args.reps} {kind:6} {pair[kind] / 1e6:8.1f} Mbit/s", flush=True)
        pair["ratio"] = pair["native"] / pair["relay"]
        runs.append(pair)
    nat = statistics.median(r["native"] for r in runs)
    rel = statistics.median(r["relay"] for r in runs)
    ratio = statistics.median(r["ratio"] for r in runs)
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Linux {platform.release()}, Python {platform.python_version()}")
    print(f"native ({args.driver}) median {nat / 1e6:.1f} Mbit/s "
          f"[{min(r['native'] for r in runs) / 1e6:.0f}-{max(r['native'] for r in runs) / 1e6:.0f}]")
    print(f"plain relay        median {rel / 1e6:.1f} Mbit/s "
          f"[{min(r['relay'] for r in runs) / 1e6:.0f}-{max(r['relay'] for r in runs) / 1e6:.0f}]")
    print(f"native / relay     median of pairwise ratios {ratio:.2f} (bar: 0.60)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "native_median": nat, "relay_median": rel,
                       "ratio_median": ratio}, f, indent=1)


if __name__ == "__main__":
    main()
