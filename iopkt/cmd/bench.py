"""`iopkt bench`: native versus shim with real traffic, and `bench compare`."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from iopkt.cmd import util


def cmd_bench(args) -> None:
    from iopkt.bench import compare, matrix, measure, report, runner, stats
    if args.bench_cmd == "compare":
        try:
            if args.json:                   # with its timestamp, as every --json
                util.dump(compare.compare_rows(args.old, args.new))
            else:
                print(compare.compare(args.old, args.new))
        except measure.BenchError as e:
            util.fail(str(e), util.EXIT_USAGE)
        return
    try:
        if args.full:
            points = matrix.full_points()
        elif any(v is not None for v in (args.protocols, args.frames, args.loads,
                                          args.links, args.cpus, args.families)):
            points = matrix.make_points(
                _csv(args.protocols, "tcp,udp"), [_int(x, "--frames") for x in
                                                  _csv(args.frames, "64,1518")],
                _csv(args.loads, "unlimited"), _csv(args.links, "none"),
                [_float(x, "--cpu") for x in _csv(args.cpus, "1")],
                [_int(x, "--family") for x in _csv(args.families, "4")])
        else:
            points = matrix.default_points()
        plan = matrix.Plan(points=points, drivers=_csv(args.drivers, ",".join(matrix.DRIVERS)),
                          reps=args.reps, seconds=args.seconds,
                          baselines=not args.no_baselines, prefix=args.prefix,
                          latency=args.latency, link=args.link,
                          latency_seconds=args.latency_seconds)
        plan.check()
    except Exception as e:
        util.fail(str(e), util.EXIT_USAGE)
    util.need_root()
    try:
        from iopkt.bench.measure import need_iperf3, need_ping
        need_iperf3()
        if plan.latency:
            need_ping()
    except Exception as e:                  # not a usage error: this machine lacks it
        util.fail(str(e))
    out = args.out or runner.default_outdir()
    print(f"iopkt bench: {len(plan.points)} points x {len(plan.drivers)} drivers x "
          f"{plan.reps} reps{' + baselines' if plan.baseline_points() else ''}"
          f"{' + latency' if plan.latency else ''} = "
          f"{plan.runs()} runs of {plan.seconds:g} s, about {plan.estimate_s() / 60:.1f} min; "
          + (f"over {plan.link} ({', '.join(sorted({d for d, _ in plan.driver_map().values()}))}); "
             if plan.link != "tap" else "")
          + f"results in {out}/", file=sys.stderr)
    me = os.getpid()

    def on_stop(signum, _frame):
        if os.getpid() != me:               # a forked helper (pyroute2's) inherits
            os._exit(128 + signum)          # this handler: just end, as by default
        runner.stop_requested = True         # (see there: the exception may get lost)
        raise KeyboardInterrupt             # tear down and keep results
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    res = runner.run(plan, out)
    print()
    report.print_summary(stats.summarise(res["records"]),
                        latency=stats.summarise_latency(res["records"]))
    failed = [r for r in res["records"] if not r["ok"]]
    print(f"\n{len(res['records']) - len(failed)} runs ok, {len(failed)} failed; "
          f"results: {out}/results.md, results.json, iperf3/, ping/, plot-*.png")
    left = runner.leftovers(args.prefix)
    if left:
        print(f"iopkt bench: left behind: {', '.join(left)}", file=sys.stderr)
    if res["meta"]["interrupted"]:
        sys.exit(130)


def _csv(v, default):
    return [x.strip() for x in (v if v is not None else default).split(",") if x.strip()]


def _int(x, opt):
    try:
        return int(x)
    except ValueError:
        util.fail(f"{opt} {x}: expected a whole number", util.EXIT_USAGE)


def _float(x, opt):
    try:
        return float(x)
    except ValueError:
        util.fail(f"{opt} {x}: expected a number", util.EXIT_USAGE)


def register(sub) -> None:
    b = sub.add_parser("bench", help="native versus shim with real traffic (iperf3, psutil)",
                       description="Run the benchmark matrix (default: the seed's three "
                       "claims and their opposites, TCP over IPv6, and latency: under 10 "
                       "minutes) or compare two results.")
    bsub = b.add_subparsers(dest="bench_cmd", metavar="[run|compare]")
    br = bsub.add_parser("run", help="run the matrix (the default)")
    bc = bsub.add_parser("compare", help="change of every figure between two results folders")
    bc.add_argument("old")
    bc.add_argument("new")
    bc.add_argument("--json", action="store_true",
                    help="the rows as JSON: point, driver, figure, unit, old and new median "
                    "with min and max, change in %%, whether the ranges overlap")
    for sp in (b, br):
        sp.add_argument("--drivers", help="native,native-tso,shim,shim0 (default: all four; "
                        "native-tso runs only at TCP points with no link limit or 1 Gbit/s)")
        sp.add_argument("--protocols", help="tcp,udp")
        sp.add_argument("--frames", help="RFC 2544 sizes: 64,128,256,512,1024,1280,1518")
        sp.add_argument("--loads", help="offered load: 10M,100M,1G,unlimited")
        sp.add_argument("--links", help="emulated link speed: none,10,100,1000")
        sp.add_argument("--link", choices=("tap", "veth"), default="tap",
                        help="what joins the hosts to the stack: TAPs (default: devnp-tap, "
                        "devn-tap) or veth pairs (devnp-afpacket, devn-afpacket through "
                        "AF_PACKET) under the same driver names")
        sp.add_argument("--family", dest="families",
                        help="IP version of the points: 4, 6 or 4,6 (default 4; IPv6 to host "
                        "B's 2001:2:0:b::2, TCP MSS frame - 78, UDP from 128 B frames)")
        sp.add_argument("--cpu", dest="cpus", help="CPU budget of the stack in cores, e.g. 0.25,1")
        sp.add_argument("--reps", type=util.int_in("--reps", 1, 50), default=3,
                        help="repetitions, 1..50 (default 3)")
        sp.add_argument("--seconds", type=util.float_in("--seconds", 1, 120), default=3.0,
                        help="per run, 1..120 (default 3)")
        sp.add_argument("--full", action="store_true", help="the full matrix (long)")
        sp.add_argument("--no-baselines", action="store_true",
                        help="skip Linux routing and the plain relay (throughput and latency)")
        sp.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True,
                        help="ping RTT (p50, p99, max) through native, shim and shim0 and "
                        "Linux routing, idle and under a 200 Mbit/s TCP load, 2 s per run, "
                        "no link limit (default: on)")
        sp.add_argument("--latency-seconds", default=2.0,   # matrix.LATENCY_SECONDS(_RANGE)
                        type=util.float_in("--latency-seconds", 0.5, 60),
                        help="pings per latency run, in seconds of one every 2 ms, "
                        "0.5..60 (default 2)")
        sp.add_argument("--out", help="results folder (default results/bench-DATE)")
        sp.add_argument("--prefix", default="ibench", type=util.lab_prefix,
                        help="names of the labs it builds")
    b.set_defaults(fn=cmd_bench, bench_cmd="run")
