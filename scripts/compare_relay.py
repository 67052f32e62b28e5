#!/usr/bin/env python3
"""Native, shim and the plain Python TAP relay, side by side in one run.

Each repetition runs iperf3 TCP (MTU 1500) through (a) the iopkt lab with
devnp-tap, (b) the lab with devn-tap under the shim and (c)
scripts/tap_relay.py, in a rotating order, the forwarder pinned to one core
and iperf3 to the other. For the two stacks it also reads the stack
process's CPU time (all threads) and its forwarded-packet counter.

Prints every run, the medians, and the medians of the ratios computed
repetition by repetition. The bars: native/relay >= 0.6 (issue 2),
shim/native >= 0.3 (issue 3).

    sudo .venv/bin/python scripts/compare_relay.py [--reps 3] [--seconds 5]
"""

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from iopkt import benchlib, lab  # noqa: E402

KINDS = ("native", "shim", "relay")


def run_one(kind, prefix, seconds, fwd, load):
    if kind == "relay":
        with benchlib.relay_lab(prefix, fwd) as st:
            res = benchlib.iperf3(st["ns_a"], st["ns_b"], st["server_ip"], seconds, cores=load)
        return {"bps": benchlib.received_bps(res)}
    drv = "devnp-tap" if kind == "native" else "devn-tap"
    with benchlib.stack_lab(lab.LabSpec(prefix=prefix, driver_a=drv, driver_b=drv), fwd) as st:
        m = benchlib.measure_stack(st, seconds, [], load)
    cpu = m["cpu_user_s"] + m["cpu_sys_s"]
    return {"bps": benchlib.received_bps(m["iperf3"]), "forwarded": m["forwarded"],
            "cpu_s": cpu, "cpu_us_per_pkt": 1e6 * cpu / max(1, m["forwarded"]),
            "ctxsw_per_pkt": (m["ctxsw_voluntary"] + m["ctxsw_involuntary"]) / max(1, m["forwarded"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--prefix", default="cmprel")
    ap.add_argument("--json", help="also write the runs to this file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("compare_relay: needs root (TAPs and namespaces): run with sudo")
    try:
        benchlib.need_iperf3()
    except benchlib.BenchError as e:
        sys.exit(f"compare_relay: {e}")
    fwd, load = benchlib.cpus()
    runs = []
    for rep in range(args.reps):
        order = KINDS[rep % 3:] + KINDS[:rep % 3]
        r = {}
        for kind in order:
            r[kind] = run_one(kind, args.prefix, args.seconds, fwd, load)
            x = r[kind]
            extra = (f"  {x['cpu_us_per_pkt']:6.2f} us CPU/pkt  {x['ctxsw_per_pkt']:.3f} ctxsw/pkt"
                     if "cpu_s" in x else "")
            print(f"rep {rep + 1}/{args.reps} {kind:6} {x['bps'] / 1e6:8.1f} Mbit/s{extra}", flush=True)
        r["native_relay"] = r["native"]["bps"] / r["relay"]["bps"]
        r["shim_native"] = r["shim"]["bps"] / r["native"]["bps"]
        r["cpu_shim_native"] = r["shim"]["cpu_us_per_pkt"] / r["native"]["cpu_us_per_pkt"]
        runs.append(r)

    def med(f):
        return statistics.median(f(r) for r in runs)

    def rng(k):
        v = [r[k]["bps"] / 1e6 for r in runs]
        return f"[{min(v):.0f}-{max(v):.0f}]"

    print(f"\nmachine: {benchlib.machine_line()}")
    for k in KINDS:
        print(f"{k:6} median {med(lambda r: r[k]['bps']) / 1e6:8.1f} Mbit/s {rng(k)}"
              + (f", {med(lambda r: r[k]['cpu_us_per_pkt']):.2f} us CPU per forwarded packet"
                 if k != "relay" else ""))
    print(f"native / relay  {med(lambda r: r['native_relay']):.2f}  (bar 0.60)")
    print(f"shim / native   {med(lambda r: r['shim_native']):.2f}  (bar 0.30); "
          f"CPU per packet shim / native {med(lambda r: r['cpu_shim_native']):.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": benchlib.machine_line(), "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
