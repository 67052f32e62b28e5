"""Native (with and without offload), shim and the plain Python TAP relay
(with and without offload), side by side in one run; with --veth (or
--kinds naming them) the same stack over veth pairs through AF_PACKET too.

Each repetition runs iperf3 TCP (MTU 1500) through

  native-tso     the iopkt lab, devnp-tap with TSO and checksum offload
  native         the lab, devnp-tap with offload=0 (wire-sized frames)
  shim           the lab, devn-tap under the shim (io-net: no offload)
  relay-offload  the plain relay (tap_relay.py) --offload (super-frames relayed as they are)
  relay          the plain relay (tap_relay.py) (wire-sized frames)
  native-veth    the lab over veth pairs (lab --link veth), devnp-afpacket offload=0
  shim-veth      the lab over veth pairs, devn-afpacket under the shim

in a rotating order, the forwarder pinned to one core and iperf3 to the
other. For the stacks it also reads the stack process's CPU time (all
threads) and its forwarded-packet counter. The veth kinds are not in the
default set (it stays what the README's table reports); naming one adds
its TAP counterpart (native, shim), and in both the lab then also pings
A -> B after the iperf3 run (ping -i 0.01 -c 200) for the RTT p50.

Prints every run, the medians with [min-max], and the medians of the
ratios computed repetition by repetition, each against its target:
native-tso/native >= 5, native-tso/relay-offload >= 0.6, native/relay
>= 0.65, shim/native >= 0.3; with the veth kinds native-veth/native >= 0.9
(throughput) and its ping RTT p50 at most 1.5 times native's (shim-veth
against shim: no target, for the record).

    sudo make compare [ARGS='--reps 5 --seconds 5 --veth']
    sudo .venv/bin/python -m iopkt.bench.relays [--reps 5] [--seconds 5] [--veth]
"""

import argparse
import json
import os
import statistics
import sys
import time

from iopkt.bench import labs, measure, stats
from iopkt.lab import lab

KINDS = ("native-tso", "native", "shim", "relay-offload", "relay")      # the default
VETH_KINDS = ("native-veth", "shim-veth")
ALL_KINDS = KINDS + VETH_KINDS
# kind -> (driver, offload, link)
STACKS = {"native-tso": ("devnp-tap", True, "tap"), "native": ("devnp-tap", False, "tap"),
          "shim": ("devn-tap", None, "tap"),
          "native-veth": ("devnp-afpacket", False, "veth"),
          "shim-veth": ("devn-afpacket", None, "veth")}
TAP_OF = {"native-veth": "native", "shim-veth": "shim"}
# (numerator, denominator, target: at least)
RATIOS = (("native-tso", "native", 5.0), ("native-tso", "relay-offload", 0.6),
          ("native", "relay", 0.65), ("shim", "native", 0.3),
          ("native-veth", "native", 0.9), ("shim-veth", "shim", None))
# ping RTT p50, veth lab / TAP lab (target: at most)
RTT_RATIOS = (("native-veth", "native", 1.5), ("shim-veth", "shim", None))
PING_COUNT = 200
PING_INTERVAL = 0.01


def run_one(kind, prefix, seconds, fwd, load, rtt=False):
    if kind.startswith("relay"):
        with labs.relay_lab(prefix, fwd, offload=kind == "relay-offload") as st:
            res = measure.iperf3(st["ns_a"], st["ns_b"], st["server_ip"], seconds, cores=load)
        return {"bps": measure.received_bps(res)}
    drv, offload, link = STACKS[kind]
    spec = lab.LabSpec(prefix=prefix, driver_a=drv, driver_b=drv, offload=offload, link=link)
    with labs.stack_lab(spec, fwd) as st:
        m = measure.measure_stack(st, seconds, [], load)
        if rtt:
            time.sleep(0.3)                 # the stream's tail out of the way
            p = measure.ping(st["ns_a"], "198.19.0.2", PING_COUNT, load,
                              interval=PING_INTERVAL, warmup=0)
    cpu = m["cpu_user_s"] + m["cpu_sys_s"]
    out = {"bps": measure.received_bps(m["iperf3"]), "forwarded": m["forwarded"],
           "cpu_s": cpu, "cpu_us_per_pkt": 1e6 * cpu / max(1, m["forwarded"]),
           "ctxsw_per_pkt": (m["ctxsw_voluntary"] + m["ctxsw_involuntary"])
           / max(1, m["forwarded"])}
    if rtt:
        out.update(stats.rtt_stats(p["rtts_us"]))
        out["ping_received"] = p["received"]
    return out


def choose_kinds(text, veth):
    """The kinds to run, in order: --kinds (default KINDS), plus the veth
    kinds with --veth, plus the TAP counterpart of any veth kind named.
    Returns (kinds, notes) or exits with one line."""
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in ALL_KINDS]
    if bad:
        sys.exit(f"compare_relay: --kinds {','.join(bad)}: choose from {', '.join(ALL_KINDS)}")
    if veth:
        kinds += [k for k in VETH_KINDS if k not in kinds]
    notes = []
    for k in list(kinds):
        if k in TAP_OF and TAP_OF[k] not in kinds:
            kinds.insert(kinds.index(k), TAP_OF[k])
            notes.append(f"added {TAP_OF[k]}: {k} is compared with it")
    return tuple(dict.fromkeys(kinds)), notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--prefix", default="cmprel")
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help=f"which forwarders, comma-separated, from {','.join(ALL_KINDS)} "
                    f"(default: {','.join(KINDS)})")
    ap.add_argument("--veth", action="store_true",
                    help=f"also {' and '.join(VETH_KINDS)}: the stack over veth pairs "
                    "through AF_PACKET, with a ping RTT comparison against the TAP lab")
    ap.add_argument("--json", help="also write the runs to this file")
    args = ap.parse_args()
    kinds, notes = choose_kinds(args.kinds, args.veth)
    if os.geteuid() != 0:
        sys.exit("compare_relay: needs root (TAPs and namespaces): run with sudo")
    try:
        measure.need_iperf3()
        if any(k in TAP_OF for k in kinds):
            measure.need_ping()
    except measure.BenchError as e:
        sys.exit(f"compare_relay: {e}")
    for k in kinds:
        if k in STACKS:
            try:
                lab.check_driver(STACKS[k][0], STACKS[k][2])
            except lab.LabError as e:
                sys.exit(f"compare_relay: {k}: {e}")
    for n in notes:
        print(f"compare_relay: {n}", file=sys.stderr)
    # The kinds whose lab also pings: each veth kind and its TAP counterpart.
    rtt_kinds = {k for k in kinds if k in TAP_OF} | {TAP_OF[k] for k in kinds if k in TAP_OF}
    fwd, load = measure.cpus()
    runs = []
    for rep in range(args.reps):
        k = rep % len(kinds)
        order = kinds[k:] + kinds[:k]
        r = {}
        for kind in order:
            r[kind] = run_one(kind, args.prefix, args.seconds, fwd, load, kind in rtt_kinds)
            x = r[kind]
            extra = (f"  {x['cpu_us_per_pkt']:7.2f} us CPU/pkt  {x['ctxsw_per_pkt']:.3f} ctxsw/pkt"
                     if "cpu_s" in x else "")
            if x.get("rtt_p50_us") is not None:
                extra += f"  ping p50 {x['rtt_p50_us']:.0f} us"
            print(f"rep {rep + 1}/{args.reps} {kind:13} {x['bps'] / 1e6:9.1f} Mbit/s{extra}",
                  flush=True)
        for num, den, _ in RATIOS:
            if num in r and den in r:
                r[f"{num}/{den}"] = r[num]["bps"] / r[den]["bps"]
        for num, den, _ in RTT_RATIOS:
            if r.get(num, {}).get("rtt_p50_us") and r.get(den, {}).get("rtt_p50_us"):
                r[f"rtt {num}/{den}"] = r[num]["rtt_p50_us"] / r[den]["rtt_p50_us"]
        runs.append(r)

    def stats(vals):
        return statistics.median(vals), min(vals), max(vals)

    print(f"\nmachine: {measure.machine_line()}")
    print(f"{args.reps} alternated repetitions of {args.seconds:g} s; medians [min-max]")
    for kind in kinds:
        med, lo, hi = stats([r[kind]["bps"] / 1e6 for r in runs])
        cpu = (f", {statistics.median(r[kind]['cpu_us_per_pkt'] for r in runs):.2f} us CPU "
               "per forwarded packet" if kind in STACKS else "")
        rtts = [r[kind]["rtt_p50_us"] for r in runs if r[kind].get("rtt_p50_us") is not None]
        if rtts:
            cpu += (f", ping RTT p50 {statistics.median(rtts):.0f} us "
                    f"[{min(rtts):.0f}-{max(rtts):.0f}]")
        print(f"{kind:13} {med:9.1f} Mbit/s [{lo:.0f}-{hi:.0f}]{cpu}")
    for num, den, target in RATIOS:
        key = f"{num}/{den}"
        if key in runs[0]:
            med, lo, hi = stats([r[key] for r in runs])
            verdict = (f"  target >= {target:g}: {'met' if med >= target else 'NOT met'}"
                       if target is not None else "  (no target)")
            print(f"{key:26} {med:6.2f} [{lo:.2f}-{hi:.2f}]{verdict}")
    for num, den, target in RTT_RATIOS:
        key = f"rtt {num}/{den}"
        vals = [r[key] for r in runs if key in r]
        if vals:
            med, lo, hi = stats(vals)
            verdict = (f"  target <= {target:g}: {'met' if med <= target else 'NOT met'}"
                       if target is not None else "  (no target)")
            print(f"{'ping p50 ' + num + '/' + den:26} {med:6.2f} [{lo:.2f}-{hi:.2f}]{verdict}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": measure.machine_line(), "reps": args.reps,
                       "seconds": args.seconds, "kinds": list(kinds),
                       "ping": {"count": PING_COUNT, "interval_s": PING_INTERVAL},
                       "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
