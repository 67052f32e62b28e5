#!/usr/bin/env python3
"""Native (with and without offload), shim and the plain Python TAP relay
(with and without offload), side by side in one run.

Each repetition runs iperf3 TCP (MTU 1500) through

  native-tso     the iopkt lab, devnp-tap with TSO and checksum offload
  native         the lab, devnp-tap with offload=0 (wire-sized frames)
  shim           the lab, devn-tap under the shim (io-net: no offload)
  relay-offload  scripts/tap_relay.py --offload (super-frames relayed as they are)
  relay          scripts/tap_relay.py (wire-sized frames)

in a rotating order, the forwarder pinned to one core and iperf3 to the
other. For the stacks it also reads the stack process's CPU time (all
threads) and its forwarded-packet counter.

Prints every run, the medians with [min-max], and the medians of the
ratios computed repetition by repetition, each against its target:
native-tso/native >= 5, native-tso/relay-offload >= 0.6, native/relay
>= 0.65, shim/native >= 0.3.

    sudo .venv/bin/python scripts/compare_relay.py [--reps 5] [--seconds 5]
"""

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from iopkt import benchlib, lab  # noqa: E402

KINDS = ("native-tso", "native", "shim", "relay-offload", "relay")
STACKS = {"native-tso": ("devnp-tap", True), "native": ("devnp-tap", False),
          "shim": ("devn-tap", None)}
# (numerator, denominator, target)
RATIOS = (("native-tso", "native", 5.0), ("native-tso", "relay-offload", 0.6),
          ("native", "relay", 0.65), ("shim", "native", 0.3))


def run_one(kind, prefix, seconds, fwd, load):
    if kind.startswith("relay"):
        with benchlib.relay_lab(prefix, fwd, offload=kind == "relay-offload") as st:
            res = benchlib.iperf3(st["ns_a"], st["ns_b"], st["server_ip"], seconds, cores=load)
        return {"bps": benchlib.received_bps(res)}
    drv, offload = STACKS[kind]
    spec = lab.LabSpec(prefix=prefix, driver_a=drv, driver_b=drv, offload=offload)
    with benchlib.stack_lab(spec, fwd) as st:
        m = benchlib.measure_stack(st, seconds, [], load)
    cpu = m["cpu_user_s"] + m["cpu_sys_s"]
    return {"bps": benchlib.received_bps(m["iperf3"]), "forwarded": m["forwarded"],
            "cpu_s": cpu, "cpu_us_per_pkt": 1e6 * cpu / max(1, m["forwarded"]),
            "ctxsw_per_pkt": (m["ctxsw_voluntary"] + m["ctxsw_involuntary"]) / max(1, m["forwarded"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--prefix", default="cmprel")
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help=f"which forwarders, comma-separated (default: {','.join(KINDS)})")
    ap.add_argument("--json", help="also write the runs to this file")
    args = ap.parse_args()
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        sys.exit(f"compare_relay: --kinds {','.join(bad)}: choose from {', '.join(KINDS)}")
    if os.geteuid() != 0:
        sys.exit("compare_relay: needs root (TAPs and namespaces): run with sudo")
    try:
        benchlib.need_iperf3()
    except benchlib.BenchError as e:
        sys.exit(f"compare_relay: {e}")
    fwd, load = benchlib.cpus()
    runs = []
    for rep in range(args.reps):
        k = rep % len(kinds)
        order = kinds[k:] + kinds[:k]
        r = {}
        for kind in order:
            r[kind] = run_one(kind, args.prefix, args.seconds, fwd, load)
            x = r[kind]
            extra = (f"  {x['cpu_us_per_pkt']:7.2f} us CPU/pkt  {x['ctxsw_per_pkt']:.3f} ctxsw/pkt"
                     if "cpu_s" in x else "")
            print(f"rep {rep + 1}/{args.reps} {kind:13} {x['bps'] / 1e6:9.1f} Mbit/s{extra}",
                  flush=True)
        for num, den, _ in RATIOS:
            if num in r and den in r:
                r[f"{num}/{den}"] = r[num]["bps"] / r[den]["bps"]
        runs.append(r)

    def stats(vals):
        return statistics.median(vals), min(vals), max(vals)

    print(f"\nmachine: {benchlib.machine_line()}")
    print(f"{args.reps} alternated repetitions of {args.seconds:g} s; medians [min-max]")
    for kind in kinds:
        med, lo, hi = stats([r[kind]["bps"] / 1e6 for r in runs])
        cpu = (f", {statistics.median(r[kind]['cpu_us_per_pkt'] for r in runs):.2f} us CPU "
               "per forwarded packet" if kind in STACKS else "")
        print(f"{kind:13} {med:9.1f} Mbit/s [{lo:.0f}-{hi:.0f}]{cpu}")
    for num, den, target in RATIOS:
        key = f"{num}/{den}"
        if key in runs[0]:
            med, lo, hi = stats([r[key] for r in runs])
            print(f"{key:26} {med:6.2f} [{lo:.2f}-{hi:.2f}]  target >= {target:g}: "
                  f"{'met' if med >= target else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": benchlib.machine_line(), "reps": args.reps,
                       "seconds": args.seconds, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
