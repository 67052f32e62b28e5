"""Native (with and without offload), shim and the plain Python TAP relay
(with and without offload), side by side in one run; with --veth (or
--kinds naming them) the same stack over veth pairs through AF_PACKET too;
with --ipv6 (or --kinds naming them) native with and without TSO6 over IPv6.

Each repetition runs iperf3 TCP (MTU 1500) through

  native-tso     the iopkt lab, devnp-tap with TSO and checksum offload
  native         the lab, devnp-tap with offload=0 (wire-sized frames)
  shim           the lab, devn-tap under the shim (io-net: no offload)
  relay-offload  the plain relay (tap_relay.py) --offload (super-frames relayed as they are)
  relay          the plain relay (tap_relay.py) (wire-sized frames)
  native-veth    the lab over veth pairs (lab --link veth), devnp-afpacket offload=0
  shim-veth      the lab over veth pairs, devn-afpacket under the shim
  native6        the lab, devnp-tap offload=0, iperf3 -6 to host B's 2001:2:0:b::2
  native-tso6    the lab, devnp-tap with offload (TSO6), iperf3 -6

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
against shim: no target, for the record); with the IPv6 kinds
native6/native >= 0.9 (IPv6 without offload against IPv4 without) and
native-tso6/native6 >= 5 (what TSO6 buys). Those two are aims the IPv6
work set itself, not measured promises: the run says met or NOT met. Naming
an IPv6 kind adds what it is compared with (native6: native; native-tso6:
native6).

    sudo make compare [ARGS='--reps 5 --seconds 5 --veth --ipv6']
    sudo .venv/bin/python -m iopkt.bench.relays [--reps 5] [--seconds 5] [--veth] [--ipv6]
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
IPV6_KINDS = ("native6", "native-tso6")
ALL_KINDS = KINDS + VETH_KINDS + IPV6_KINDS
# kind -> (driver, offload, link, IP version)
STACKS = {"native-tso": ("devnp-tap", True, "tap", 4), "native": ("devnp-tap", False, "tap", 4),
          "shim": ("devn-tap", None, "tap", 4),
          "native-veth": ("devnp-afpacket", False, "veth", 4),
          "shim-veth": ("devn-afpacket", None, "veth", 4),
          "native6": ("devnp-tap", False, "tap", 6),
          "native-tso6": ("devnp-tap", True, "tap", 6)}
SERVER_IP = {4: "198.19.0.2", 6: "2001:2:0:b::2"}     # host B in the lab
TAP_OF = {"native-veth": "native", "shim-veth": "shim"}
# What a kind is compared with, so naming it brings that in too.
COMPARED_WITH = {**TAP_OF, "native6": "native", "native-tso6": "native6"}
# (numerator, denominator, target: at least)
RATIOS = (("native-tso", "native", 5.0), ("native-tso", "relay-offload", 0.6),
          ("native", "relay", 0.65), ("shim", "native", 0.3),
          ("native-veth", "native", 0.9), ("shim-veth", "shim", None),
          ("native6", "native", 0.9), ("native-tso6", "native6", 5.0))
# Ratios whose target is an aim the IPv6 work set itself, not a figure measured before.
AIMS = {"native6/native", "native-tso6/native6"}
# ping RTT p50, veth lab / TAP lab (target: at most)
RTT_RATIOS = (("native-veth", "native", 1.5), ("shim-veth", "shim", None))
PING_COUNT = 200
PING_INTERVAL = 0.01


def run_one(kind, prefix, seconds, fwd, load, rtt=False):
    if kind.startswith("relay"):
        with labs.relay_lab(prefix, fwd, offload=kind == "relay-offload") as st:
            res = measure.iperf3(st["ns_a"], st["ns_b"], st["server_ip"], seconds, cores=load)
        return {"bps": measure.received_bps(res)}
    drv, offload, link, family = STACKS[kind]
    spec = lab.LabSpec(prefix=prefix, driver_a=drv, driver_b=drv, offload=offload, link=link)
    with labs.stack_lab(spec, fwd) as st:
        m = measure.measure_stack(st, seconds, ["-6"] if family == 6 else [], load,
                                  SERVER_IP[family], family)
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


def add_ratios(r: dict) -> None:
    """Into one repetition's runs `r` ({kind: run}): "num/den" of the
    throughputs and "rtt num/den" of the ping p50s, where both ran."""
    for num, den, _ in RATIOS:
        if num in r and den in r:
            r[f"{num}/{den}"] = r[num]["bps"] / r[den]["bps"]
    for num, den, _ in RTT_RATIOS:
        if r.get(num, {}).get("rtt_p50_us") and r.get(den, {}).get("rtt_p50_us"):
            r[f"rtt {num}/{den}"] = r[num]["rtt_p50_us"] / r[den]["rtt_p50_us"]


def ratio_lines(runs: list) -> list[str]:
    """Each throughput ratio the runs have: median [min-max] over the
    repetitions, against its target (IPv6's: its aim), met or NOT met."""
    out = []
    for num, den, target in RATIOS:
        key = f"{num}/{den}"
        vals = [r[key] for r in runs if key in r]
        if not vals:
            continue
        med = statistics.median(vals)
        word = "aim" if key in AIMS else "target"
        verdict = (f"  {word} >= {target:g}: {'met' if med >= target else 'NOT met'}"
                   if target is not None else "  (no target)")
        out.append(f"{key:26} {med:6.2f} [{min(vals):.2f}-{max(vals):.2f}]{verdict}")
    return out


def choose_kinds(text, veth, ipv6=False):
    """The kinds to run, in order: --kinds (default KINDS), plus the veth
    kinds with --veth and the IPv6 kinds with --ipv6, plus what any kind
    named is compared with (COMPARED_WITH), just before it.
    Returns (kinds, notes) or exits with one line."""
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in ALL_KINDS]
    if bad:
        sys.exit(f"compare_relay: --kinds {','.join(bad)}: choose from {', '.join(ALL_KINDS)}")
    if veth:
        kinds += [k for k in VETH_KINDS if k not in kinds]
    if ipv6:
        kinds += [k for k in IPV6_KINDS if k not in kinds]
    kinds = list(dict.fromkeys(kinds))
    notes = []
    i = 0
    while i < len(kinds):               # an added kind may need its own (native6: native)
        k = kinds[i]
        if k in COMPARED_WITH and COMPARED_WITH[k] not in kinds:
            kinds.insert(i, COMPARED_WITH[k])
            notes.append(f"added {COMPARED_WITH[k]}: {k} is compared with it")
            continue
        i += 1
    return tuple(kinds), notes


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
    ap.add_argument("--ipv6", action="store_true",
                    help=f"also {' and '.join(IPV6_KINDS)}: the stack forwarding IPv6 without "
                    "and with TSO6, against IPv4 without offload")
    ap.add_argument("--json", help="also write the runs to this file")
    args = ap.parse_args()
    kinds, notes = choose_kinds(args.kinds, args.veth, args.ipv6)
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
        add_ratios(r)
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
    for line in ratio_lines(runs):
        print(line)
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
