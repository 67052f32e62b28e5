"""The `iopkt` command.

    iopkt run -i NAME -d tap name=tapA -d tap name=tapB [--inet IF=A/P] [--route DST=GW]
    iopkt nicinfo [IF] | ifconfig [IF ...] | route [add|delete ...] | netstat -m | arp
    iopkt lab up|down|status
    iopkt drivers
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import re
import signal
import sys

from . import control
from .control import ControlError
from .mbuf import DEFAULT_NMBJUMBO, MAX_NMBCLUSTERS, MAX_NMBJUMBO

# Exit codes. A usage error (a value out of range, a bad address or prefix,
# an unknown option, a size this machine cannot hold) exits 2; a failure at
# run time (no such stack, interface or TAP; a device that will not open)
# exits 1. Either way stderr gets one line naming the value or the object;
# an unexpected exception is one line too (IOPKT_DEBUG=1: the traceback).
EXIT_USAGE = 2


def need_root() -> None:
    if os.geteuid() != 0:
        print("iopkt: needs root (CAP_NET_ADMIN for TAPs, namespaces and the "
              "control socket): run it with sudo", file=sys.stderr)
        sys.exit(1)


def fail(msg: str, code: int = 1) -> None:
    print(f"iopkt: {msg}", file=sys.stderr)
    sys.exit(code)


def _instance(name: str) -> str:
    try:
        return control.check_instance_name(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"-i {name}: {e}") from None


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (no usage block)."""

    def error(self, message):
        m = re.match(r"argument ([^:]+): (.*)", message, re.S)
        if m and any(m.group(2).startswith(n + " ") for n in m.group(1).split("/")):
            line = m.group(2)               # our types name the option themselves
        else:
            line = f"{message} (see '{self.prog} --help')"
        self.exit(EXIT_USAGE, f"{self.prog}: {' '.join(line.split())}\n")


def _int_in(opt: str, lo: int, hi: int):
    """An argparse type: a whole number lo..hi, the message naming `opt`."""
    def conv(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{opt} {text}: expected a whole number "
                                             f"{lo}..{hi}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{opt} {text}: must be {lo}..{hi}")
        return v
    return conv


def _float_in(opt: str, lo: float, hi: float):
    def conv(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = float("nan")
        if not lo <= v <= hi:               # nan and inf too
            raise argparse.ArgumentTypeError(f"{opt} {text}: must be a number {lo:g}..{hi:g}")
        return v
    return conv


def _speed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = None
    if v not in (0, 10, 100, 1000, 10000):
        raise argparse.ArgumentTypeError(f"--speed {text}: one of 10, 100, 1000, 10000 "
                                         "(Mbit/s), or 0 for no limit")
    return v


def _lab_prefix(text: str) -> str:
    from . import lab
    try:
        return lab.check_prefix(text)       # its message starts with --prefix
    except lab.LabError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# -- run -----------------------------------------------------------------
def _check_pool_memory(args) -> None:
    """Refuse a pool this machine cannot hold before building it (building
    it is what would fail, after a long while, with a MemoryError). The
    jumbo clusters count as if made: a driver with offload makes them."""
    import psutil
    from .mbuf import pool_bytes
    need = pool_bytes(args.nmbclusters, args.mclbytes, args.nmbjumbo)
    free = psutil.virtual_memory().available
    if need <= free:
        return
    jumbo = pool_bytes(0, args.mclbytes, args.nmbjumbo)
    opt, val = (("--nmbjumbo", args.nmbjumbo) if jumbo > need - jumbo
                else ("--nmbclusters", args.nmbclusters))
    fail(f"{opt} {val}: {need / 1e9:.1f} GB for the mbuf pool ({args.nmbclusters} clusters "
         f"of {args.mclbytes} bytes" + (f" and {args.nmbjumbo} of 64 KB" if args.nmbjumbo
                                        else "") +
         f", with their headers), more than the {free / 1e9:.1f} GB this machine has free",
         EXIT_USAGE)


def _check_run_specs(args) -> None:
    """--inet and --route, checked before any driver is mounted."""
    from .route import aton, prefix_problem
    for spec in args.inet:
        ifname, _, pfx = spec.partition("=")
        if not ifname or "/" not in pfx:
            fail(f"--inet {spec}: expected IF=ADDR/PLEN, e.g. tap0=198.18.0.1/24", EXIT_USAGE)
        if prefix_problem(pfx):
            fail(f"--inet {spec}: {prefix_problem(pfx)}", EXIT_USAGE)
    for spec in args.route:
        dst, eq, gw = spec.partition("=")
        if not eq:
            fail(f"--route {spec}: expected DST=GW, e.g. default=198.18.0.2", EXIT_USAGE)
        if prefix_problem(dst):
            fail(f"--route {spec}: {prefix_problem(dst)}", EXIT_USAGE)
        try:
            aton(gw)
        except ValueError as e:
            fail(f"--route {spec}: gateway {e}", EXIT_USAGE)


def cmd_run(args) -> None:
    if not args.driver:
        fail("nothing to run: give at least one driver with -d NAME [OPTIONS]", EXIT_USAGE)
    _check_run_specs(args)
    _check_pool_memory(args)
    need_root()
    from .drvload import DriverError, mount, resolve
    from .route import parse_prefix, aton
    from .stack import Stack
    # The log waits until the stack is set up: if that fails, its one line
    # is all stderr gets (not the drivers' attached/detached before it).
    out = logging.StreamHandler(sys.stderr)
    out.setFormatter(logging.Formatter(f"iopkt[{args.instance}]: %(message)s"))
    held = logging.handlers.MemoryHandler(1 << 20, logging.CRITICAL + 1, out, flushOnClose=False)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[held])
    log = logging.getLogger("iopkt")
    try:
        stack = Stack(args.instance, nmbclusters=args.nmbclusters,
                      mclbytes=args.mclbytes, log=log, nmbjumbo=args.nmbjumbo)
    except ValueError as e:
        fail(str(e), EXIT_USAGE)
    ctl = None
    try:
        for d in args.driver:
            drv = resolve(d[0])
            opts = ",".join(d[1:])
            if drv.raw_attach is not None and len(d) > 2 and " " not in d[1]:
                opts = f"{d[1]} {','.join(d[2:])}"      # -d shim devn-tap name=x,...
            mount(stack, drv, opts)
        for spec in args.inet:
            ifname, _, pfx = spec.partition("=")
            if ifname not in stack.ifnets or "/" not in pfx:
                raise DriverError(f"--inet {spec}: expected IF=ADDR/PLEN with IF one of "
                                  f"{', '.join(stack.ifnets)}")
            stack.ip.add_address(stack.ifnets[ifname], *parse_prefix(pfx))
        for spec in args.route:
            dst, _, gw = spec.partition("=")
            stack.ip.routes.add(*parse_prefix(dst), aton(gw))
        ctl = control.ControlServer(stack, args.instance)
    except (DriverError, ValueError, ControlError, OSError) as e:
        stack.shutdown(quiet=True)
        held.buffer.clear()
        fail(str(e), EXIT_USAGE if isinstance(e, (DriverError, ValueError)) else 1)
    held.flush()
    logging.getLogger().addHandler(out)
    logging.getLogger().removeHandler(held)
    signal.signal(signal.SIGINT, lambda *_: stack.stop())
    signal.signal(signal.SIGTERM, lambda *_: stack.stop())
    log.info("running: %s; control socket %s", ", ".join(stack.ifnets), ctl.path)
    try:
        stack.run()
    finally:
        ctl.close()
        stack.close()


# -- show commands ---------------------------------------------------------
def _req(args, op, **kw):
    need_root()
    try:
        return control.request(args.instance, op, **kw)
    except ControlError as e:
        fail(str(e), EXIT_USAGE if e.usage else 1)


def _dump(obj) -> None:
    print(json.dumps(obj, indent=2))


def _dots(label: str, value, width: int = 44) -> str:
    return f"  {label} {'.' * max(2, width - len(label))} {value}"


def _rate(bps: int) -> str:
    if not bps:
        return "unknown"
    return f"{bps / 1e9:g} Gb/s" if bps >= 1e9 else f"{bps / 1e6:g} Mb/s"


def cmd_nicinfo(args) -> None:
    res = _req(args, "nicinfo", ifname=args.ifname)
    if args.json:
        return _dump(res)
    for d in res:
        c = d["counters"]
        info = d["driver_info"]
        print(f"{d['name']}: {info.get('driver', d['driver'])}")
        if d["description"]:
            print(f"  {d['description']}")
        print(_dots("Physical Node ID", d["mac"].upper().replace(":", "")))
        print(_dots("MTU", d["mtu"]))
        print(_dots("Media Rate", _rate(d["media_bps"])))
        print(_dots("Link", d["link_state"]))
        print(_dots("Flags", d["flags"]))
        print(_dots("Capabilities", d["capabilities"]))
        print(_dots("Enabled", d["enabled"]))
        print()
        print(_dots("Packets Transmitted OK", c["opackets"]))
        print(_dots("Bytes Transmitted OK", c["obytes"]))
        print(_dots("Broadcast/Multicast Packets Transmitted", c["omcasts"], 50))
        print(_dots("Transmit Errors", c["oerrors"]))
        print(_dots("Transmit Queue Drops", c["oqdrops"]))
        print()
        print(_dots("Packets Received OK", c["ipackets"]))
        print(_dots("Bytes Received OK", c["ibytes"]))
        print(_dots("Broadcast/Multicast Packets Received", c["imcasts"], 50))
        print(_dots("Receive Errors", c["ierrors"]))
        print(_dots("Receive Queue Drops", c["iqdrops"]))
        print(_dots("Unknown Protocol", c["noproto"]))
        for k, v in c["in_discards"].items():
            if v:
                print(_dots(f"  discarded in: {k}", v))
        for k, v in c["out_discards"].items():
            if v:
                print(_dots(f"  discarded out: {k}", v))
        print(_dots("Super-frames segmented in software", f"{c['sw_tso']} "
                    f"({c['sw_tso_segs']} segments)"))
        print(_dots("Checksums completed in software", c["sw_csum"]))
        q = d["if_snd"]
        print(_dots("Send queue (len/max/hiwat/drops)",
                    f"{q['len']}/{q['maxlen']}/{q['hiwat']}/{q['drops']}"))
        for k, v in info.items():
            if k != "driver" and not isinstance(v, dict):
                print(_dots(k, v))
        for k, v in info.items():
            if isinstance(v, dict):
                print(f"  {k}:")
                for kk, vv in v.items():
                    print(_dots("  " + kk, vv))
        print()


def cmd_ifconfig(args) -> None:
    from .ifnet import CAP_KEYWORDS
    from .route import prefix_problem
    kw = {"ifname": args.ifname}
    words = [w.removeprefix(DASH_WORD) for w in args.words]
    while words:
        w = words.pop(0)
        if w.lstrip("-") in CAP_KEYWORDS:
            kw.setdefault("caps", []).append(w)
        elif w in ("up", "down"):
            kw["up"] = w == "up"
        elif w in ("mtu", "inet", "alias", "delete", "-alias") and not words:
            fail(f"ifconfig: {w} needs a value ({'mtu 68..9000' if w == 'mtu' else w + ' A/P'})",
                 EXIT_USAGE)
        elif w == "mtu":
            text = words.pop(0)
            try:
                kw["mtu"] = int(text)
            except ValueError:
                fail(f"ifconfig: mtu {text}: expected a whole number 68..9000", EXIT_USAGE)
            if not 68 <= kw["mtu"] <= 9000:
                fail(f"ifconfig: mtu {text}: must be 68..9000", EXIT_USAGE)
        elif w in ("inet", "alias"):
            kw["inet"] = words.pop(0)
            if "/" not in kw["inet"]:
                fail(f"ifconfig: {w} {kw['inet']}: give a prefix length, e.g. "
                     f"{kw['inet']}/24", EXIT_USAGE)
            if prefix_problem(kw["inet"]):
                fail(f"ifconfig: {w} {kw['inet']}: {prefix_problem(kw['inet'])}", EXIT_USAGE)
        elif w in ("delete", "-alias"):
            kw["delete"] = words.pop(0)
            if prefix_problem(kw["delete"]):
                fail(f"ifconfig: {w} {kw['delete']}: {prefix_problem(kw['delete'])}", EXIT_USAGE)
        else:
            fail(f"ifconfig: cannot understand '{w}' (use: inet A/P, delete A, "
                 "mtu N, up, down, or a capability: tso4, tcp4csum, udp4csum, ip4csum, "
                 "each also -rx/-tx and -word to turn off)", EXIT_USAGE)
    if not args.ifname and args.words:
        fail("ifconfig: name the interface to change", EXIT_USAGE)
    res = _req(args, "ifconfig", **kw)
    if args.json:
        return _dump(res)
    for d in res:
        print(f"{d['name']}: flags=<{d['flags']}> mtu {d['mtu']}  ({d['driver']})")
        print(f"\taddress: {d['mac']}")
        if d["capabilities_raw"]:
            print(f"\tcapabilities={d['capabilities']}")
            print(f"\tenabled={d['enabled']}")
        print(f"\tmedia: Ethernet {_rate(d['media_bps'])}  status: {d['link_state']}")
        for a in d["inet"]:
            print(f"\tinet {a}")


def cmd_route(args) -> None:
    from .route import aton, prefix_problem
    kw = {}
    w = [x.removeprefix(DASH_WORD) for x in args.words]
    if w:
        verb = w.pop(0)
        if verb in ("add", "delete", "del") and w:
            dst = w.pop(0)
            if prefix_problem(dst):
                fail(f"route {verb} {dst}: {prefix_problem(dst)}", EXIT_USAGE)
            if verb == "add":
                if not w:
                    fail("route add DST GATEWAY [-ifp IF]: give the gateway", EXIT_USAGE)
                kw = {"add": dst, "gateway": w.pop(0)}
                try:
                    aton(kw["gateway"])
                except ValueError as e:
                    fail(f"route add {dst}: gateway {e}", EXIT_USAGE)
                if len(w) == 2 and w[0] == "-ifp":
                    kw["ifname"] = w[1]
                    w.clear()
                elif w:
                    fail(f"route add: cannot understand '{' '.join(w)}' "
                         "(route add DST GW [-ifp IF])", EXIT_USAGE)
            else:
                kw = {"delete": dst}
        if verb not in ("add", "delete", "del", "show") or not kw and verb != "show" or w:
            fail(f"route: cannot understand '{' '.join(args.words).replace(DASH_WORD, '')}' "
                 "(use: route [show], route add DST GW [-ifp IF], route delete DST)",
                 EXIT_USAGE)
    res = _req(args, "route", **kw)
    if args.json:
        return _dump(res)
    print(f"{'Destination':20} {'Gateway':18} {'Flags':6} {'Use':>10}  Interface")
    for r in res:
        print(f"{r['destination']:20} {r['gateway']:18} {r['flags']:6} {r['use']:>10}  {r['interface']}")


def cmd_netstat(args) -> None:
    res = _req(args, "netstat")
    if args.json:
        return _dump(res if not args.m else res["mbuf"])
    mb = res["mbuf"]
    if args.m:
        print(f"{mb['clusters_in_use']}/{mb['clusters_free']}/{mb['clusters_total']} "
              "mbuf clusters in use (current/free/max)")
        print(f"{mb['clusters_hiwat']} mbuf clusters in use at most (high-water mark)")
        print(f"{mb['mclbytes']} bytes per cluster, {mb['headroom']} bytes headroom")
        print(f"{mb['ext_in_use']}/{mb['ext_total']} external-storage mbufs in use "
              f"(high-water {mb['ext_hiwat']})")
        print(f"{mb['jumbo_in_use']}/{mb['jumbo_total'] - mb['jumbo_in_use']}/"
              f"{mb['jumbo_total']} {mb['jumbo_bytes'] // 1024}k jumbo clusters in use "
              f"(current/free/max; high-water {mb['jumbo_hiwat']})")
        print(f"{mb['cluster_drops']} requests for mbufs denied")
        print(f"{mb['jumbo_drops']} requests for jumbo clusters denied")
        print(f"{mb['ext_drops']} requests for external mbufs denied")
        return
    for proto in ("ip", "icmp", "arp"):
        print(f"{proto}:")
        for k, v in res[proto].items():
            if isinstance(v, dict):
                for kk, vv in v.items():
                    print(f"\t{vv} {k} {kk}")
            elif v:
                print(f"\t{v} {k}")


def cmd_arp(args) -> None:
    res = _req(args, "arp")
    if args.json:
        return _dump(res)
    for e in res:
        print(f"{e['address']:16} {e['mac'] or '(incomplete)':18} {e['interface']:6} "
              f"{e['state']}" + (f" expires in {e['expires_in']}s" if e["expires_in"] else "")
              + (f" ({e['held']} held)" if e["held"] else ""))


def cmd_mount(args) -> None:
    res = _req(args, "mount", driver=args.driver, options=",".join(args.options))
    if args.json:
        return _dump(res)
    print(f"{res['mounted']}: {res['driver']} {res['description']}")


def cmd_umount(args) -> None:
    res = _req(args, "detach", ifname=args.ifname)
    if args.json:
        return _dump(res)
    msg = f"{res['detached']}: unmounted"
    if res.get("waiting_for_lent_mbufs"):
        msg += (f"; the shim waits for {res['waiting_for_lent_mbufs']} mbufs it lent "
                "to the stack before the driver is shut down")
    print(msg)


def cmd_drivers(args) -> None:
    from .drvload import available
    for d in sorted(available().values(), key=lambda d: d.name):
        print(f"{d.name:12} {d.kind:7} {d.description}")
        if args.verbose and d.options:
            print(d.options_help())


# -- lab -----------------------------------------------------------------
def cmd_lab(args) -> None:
    need_root()
    from . import lab
    try:
        if args.lab_cmd == "up":
            da = args.driver_a or args.driver
            db = args.driver_b or args.driver
            spec = lab.LabSpec(prefix=lab.check_prefix(args.prefix), driver_a=_resolve_name(da),
                               driver_b=_resolve_name(db),
                               opts_a=args.options_a or args.options or "",
                               opts_b=args.options_b or args.options or "",
                               speed=args.speed,
                               offload=None if args.offload is None else args.offload == "on")
            st = lab.up(spec)
            if args.json:
                return _dump(st)
            p = args.prefix
            print(f"lab '{p}' is up: stack pid {st['pid']} ({st['driver_a']}, {st['driver_b']})")
            print(f"  {st['ns_a']}: 198.18.0.2/24 --- {st['if_a']} 198.18.0.1 [iopkt] "
                  f"198.19.0.1 {st['if_b']} --- {st['ns_b']}: 198.19.0.2/24")
            print("Try:")
            print(f"  sudo ip netns exec {st['ns_a']} ping -c 3 198.19.0.2")
            print(f"  sudo ip netns exec {st['ns_b']} iperf3 -s -D")
            print(f"  sudo ip netns exec {st['ns_a']} iperf3 -c 198.19.0.2 -t 5")
            print(f"  sudo .venv/bin/iopkt nicinfo -i {p}")
            print(f"  sudo .venv/bin/iopkt netstat -m -i {p}")
            print(f"  sudo .venv/bin/iopkt lab down --prefix {p}")
            print("The TAPs stay when a driver is unmounted; to mount it again:")
            for side in ("a", "b"):
                print(f"  after 'iopkt umount -i {p} {st['if_' + side]}': "
                      f"sudo .venv/bin/{st['mount_' + side]}")
        elif args.lab_cmd == "down":
            res = lab.down(lab.check_prefix(args.prefix))
            if args.json:
                return _dump(res)
            removed = res["removed"]
            print(f"lab '{args.prefix}' is down" + ("; removed: " + ", ".join(removed)
                                                    if removed else " (nothing was up)"))
            for line in res["said"]:
                print(line)
        else:
            res = lab.status()
            if args.json:
                return _dump(res)
            if not res:
                print("no lab is up")
            for s in res:
                if "error" in s:
                    print(f"{s['prefix']}: {s['error']}")
                    continue
                ns = ", ".join(f"{k}{'' if v else ' (missing)'}" for k, v in s["namespaces"].items())
                print(f"{s['prefix']}: stack pid {s['pid']} "
                      f"{'answering' if s['answering'] else 'NOT answering'}"
                      f"{', up ' + str(s['uptime']) + 's' if s.get('uptime') else ''}; "
                      f"drivers {'/'.join(s['drivers'])}; interfaces "
                      f"{'/'.join(str(i) for i in s['interfaces'])}; namespaces {ns}")
    except (lab.LabError, ControlError) as e:
        fail(str(e), EXIT_USAGE if e.usage else 1)
    except Exception as e:                  # netlink and friends: still one line
        fail(f"lab {args.lab_cmd}: {type(e).__name__}: {e}")


def _resolve_name(name: str) -> str:
    from .drvload import DriverError, resolve
    try:
        return resolve(name).name
    except DriverError as e:
        fail(str(e), EXIT_USAGE)


# -- bench ---------------------------------------------------------------
def cmd_bench(args) -> None:
    from . import bench
    if args.bench_cmd == "compare":
        try:
            print(bench.compare(args.old, args.new))
        except bench.BenchError as e:
            fail(str(e), EXIT_USAGE)
        return
    try:
        if args.full:
            points = bench.full_points()
        elif any(v is not None for v in (args.protocols, args.frames, args.loads,
                                          args.links, args.cpus)):
            points = bench.make_points(
                _csv(args.protocols, "tcp,udp"), [_int(x, "--frames") for x in
                                                  _csv(args.frames, "64,1518")],
                _csv(args.loads, "unlimited"), _csv(args.links, "none"),
                [_float(x, "--cpu") for x in _csv(args.cpus, "1")])
        else:
            points = bench.default_points()
        plan = bench.Plan(points=points, drivers=_csv(args.drivers, ",".join(bench.DRIVERS)),
                          reps=args.reps, seconds=args.seconds,
                          baselines=not args.no_baselines, prefix=args.prefix)
        plan.check()
    except Exception as e:
        fail(str(e), EXIT_USAGE)
    need_root()
    try:
        from .benchlib import need_iperf3
        need_iperf3()
    except Exception as e:                  # not a usage error: this machine lacks it
        fail(str(e))
    out = args.out or bench.default_outdir()
    print(f"iopkt bench: {len(plan.points)} points x {len(plan.drivers)} drivers x "
          f"{plan.reps} reps{' + baselines' if plan.baseline_points() else ''} = "
          f"{plan.runs()} runs of {plan.seconds:g} s, about {plan.estimate_s() / 60:.1f} min; "
          f"results in {out}/", file=sys.stderr)
    me = os.getpid()

    def on_term(*_):
        if os.getpid() != me:               # a forked helper (pyroute2's) inherits
            os._exit(128 + signal.SIGTERM)  # this handler: just end, as by default
        raise KeyboardInterrupt             # tear down and keep results, as Ctrl-C
    signal.signal(signal.SIGTERM, on_term)
    res = bench.run(plan, out)
    print()
    bench.print_summary(bench.summarise(res["records"]))
    failed = [r for r in res["records"] if not r["ok"]]
    print(f"\n{len(res['records']) - len(failed)} runs ok, {len(failed)} failed; "
          f"results: {out}/results.md, results.json, iperf3/, plot-*.png")
    left = bench.leftovers(args.prefix)
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
        fail(f"{opt} {x}: expected a whole number", EXIT_USAGE)


def _float(x, opt):
    try:
        return float(x)
    except ValueError:
        fail(f"{opt} {x}: expected a number", EXIT_USAGE)


# -- parser --------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="iopkt", description="QNX io-pkt's driver model on Linux: "
                                "a Python IPv4 router with native and legacy (io-net) drivers.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def show(name, help_, fn):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("-i", dest="instance", default="iopkt", type=_instance,
                        help="the stack instance to ask (default: iopkt)")
        sp.add_argument("--json", action="store_true", help="print JSON")
        sp.set_defaults(fn=fn)
        return sp

    r = sub.add_parser("run", help="run a stack in the foreground",
                       description="Start the stack with its drivers; logs go to stderr; "
                       "SIGINT/SIGTERM stop it cleanly.")
    r.add_argument("-i", dest="instance", default="iopkt", type=_instance,
                   help="instance name, as io-pkt's -i (default: iopkt)")
    r.add_argument("-d", dest="driver", action="append", nargs="+", default=[],
                   metavar=("NAME", "OPTIONS"),
                   help="mount a driver: NAME (tap -> devnp-tap, else devn-tap) and "
                   "options key=value,key=value; repeat for more interfaces")
    r.add_argument("--inet", action="append", default=[], metavar="IF=ADDR/PLEN",
                   help="configure an address, e.g. tap0=198.18.0.1/24")
    r.add_argument("--route", action="append", default=[], metavar="DST=GW",
                   help="add a static route, e.g. default=198.18.0.2")
    r.add_argument("--mclbytes", type=_int_in("--mclbytes", 256, 65536), default=2048,
                   help="mbuf cluster size, 256..65536 (default 2048)")
    r.add_argument("--nmbclusters", type=_int_in("--nmbclusters", 1, MAX_NMBCLUSTERS),
                   default=4096, help=f"clusters in the pool, 1..{MAX_NMBCLUSTERS} and what "
                   "free memory holds (default 4096)")
    r.add_argument("--nmbjumbo", type=_int_in("--nmbjumbo", 0, MAX_NMBJUMBO),
                   default=DEFAULT_NMBJUMBO,
                   help=f"64 KB jumbo clusters for super-frames, 0..{MAX_NMBJUMBO}, made when "
                   f"a driver with offload attaches (default {DEFAULT_NMBJUMBO})")
    r.add_argument("-v", "--verbose", action="store_true")
    r.set_defaults(fn=cmd_run)

    sp = show("nicinfo", "driver and interface counters (as QNX nicinfo)", cmd_nicinfo)
    sp.add_argument("ifname", nargs="?", help="one interface (default: all)")
    sp = show("ifconfig", "show or configure interfaces", cmd_ifconfig)
    sp.add_argument("ifname", nargs="?")
    sp.add_argument("words", nargs="*", help="inet A/P | delete A | mtu N | up | down | "
                    "[-]tso4 | [-]tcp4csum[-rx|-tx] | [-]udp4csum[-rx|-tx] | [-]ip4csum[-rx|-tx]")
    sp = show("route", "show or change the routing table", cmd_route)
    sp.add_argument("words", nargs="*", help="add DST GW [-ifp IF] | delete DST")
    sp = show("netstat", "protocol statistics; -m for the mbuf pool", cmd_netstat)
    sp.add_argument("-m", action="store_true", help="mbuf pool statistics")
    show("arp", "the ARP table", cmd_arp)
    sp = show("mount", "mount a driver into a running stack (-d NAME OPTIONS)", cmd_mount)
    sp.add_argument("driver", help="tap, devn-tap, devnp-tap, ...")
    sp.add_argument("options", nargs="*", help="key=value,key=value")
    sp = show("umount", "unmount an interface from a running stack", cmd_umount)
    sp.add_argument("ifname")

    d = sub.add_parser("drivers", help="list the drivers that can be mounted")
    d.add_argument("-v", "--verbose", action="store_true", help="with their options")
    d.set_defaults(fn=cmd_drivers)

    lb = sub.add_parser("lab", help="two host namespaces with the stack between them")
    lsub = lb.add_subparsers(dest="lab_cmd", required=True, metavar="up|down|status")
    lu = lsub.add_parser("up", help="build the lab and start its stack")
    lu.add_argument("--driver", default="devnp-tap",
                    help="driver for both sides: devnp-tap (default), devn-tap, ...")
    lu.add_argument("--driver-a", help="driver facing host A (mixed labs)")
    lu.add_argument("--driver-b", help="driver facing host B (mixed labs)")
    lu.add_argument("--options", help="extra driver options for both sides (key=value,...)")
    lu.add_argument("--options-a", help="driver options for side A only")
    lu.add_argument("--options-b", help="driver options for side B only")
    lu.add_argument("--speed", type=_speed, default=0, metavar="MBPS",
                    help="emulate a 10, 100, 1000 or 10000 Mbit/s link in both directions")
    lu.add_argument("--offload", choices=("on", "off"),
                    help="TSO and checksum offload on native interfaces (default: on, "
                    "as the driver; the shim's interfaces never have any)")
    ld = lsub.add_parser("down", help="stop the stack and remove everything the lab made")
    ls = lsub.add_parser("status", help="what labs are up")
    for sp in (lu, ld):
        sp.add_argument("--prefix", default="iopkt", type=_lab_prefix,
                        help="names the namespaces P-a, P-b and the stack instance (default: iopkt)")
    for sp in (lu, ld, ls):
        sp.add_argument("--json", action="store_true")
    lb.set_defaults(fn=cmd_lab)

    b = sub.add_parser("bench", help="native versus shim with real traffic (iperf3, psutil)",
                       description="Run the benchmark matrix (default: the seed's three "
                       "claims and their opposites, about 7 minutes) or compare two results.")
    bsub = b.add_subparsers(dest="bench_cmd", metavar="[run|compare]")
    br = bsub.add_parser("run", help="run the matrix (the default)")
    bc = bsub.add_parser("compare", help="change of every figure between two results folders")
    bc.add_argument("old")
    bc.add_argument("new")
    for sp in (b, br):
        sp.add_argument("--drivers", help="native,native-tso,shim,shim0 (default: all four; "
                        "native-tso runs only at TCP points with no link limit or 1 Gbit/s)")
        sp.add_argument("--protocols", help="tcp,udp")
        sp.add_argument("--frames", help="RFC 2544 sizes: 64,128,256,512,1024,1280,1518")
        sp.add_argument("--loads", help="offered load: 10M,100M,1G,unlimited")
        sp.add_argument("--links", help="emulated link speed: none,10,100,1000")
        sp.add_argument("--cpu", dest="cpus", help="CPU budget of the stack in cores, e.g. 0.25,1")
        sp.add_argument("--reps", type=_int_in("--reps", 1, 50), default=3,
                        help="repetitions, 1..50 (default 3)")
        sp.add_argument("--seconds", type=_float_in("--seconds", 1, 120), default=3.0,
                        help="per run, 1..120 (default 3)")
        sp.add_argument("--full", action="store_true", help="the full matrix (long)")
        sp.add_argument("--no-baselines", action="store_true",
                        help="skip Linux routing and the plain relay")
        sp.add_argument("--out", help="results folder (default results/bench-DATE)")
        sp.add_argument("--prefix", default="ibench", type=_lab_prefix,
                        help="names of the labs it builds")
    b.set_defaults(fn=cmd_bench, bench_cmd="run")
    return p


# ifconfig's and route's words that start with a dash (-tso4, -alias,
# -ifp) are words, not options: they are marked before argparse sees them,
# unmarked after. So is any other dash word that is not one of their options
# (-i NAME, --json, -h), so that the command itself says what it takes.
DASH_WORD = "\0"


def _mark_dash_words(argv: list[str]) -> list[str]:
    from .ifnet import CAP_KEYWORDS
    if not argv or argv[0] not in ("ifconfig", "route"):
        return argv
    words = (*CAP_KEYWORDS, "alias") if argv[0] == "ifconfig" else ("ifp",)
    out = [argv[0]]
    for prev, a in zip(argv, argv[1:]):
        option = (a in ("-h", "--help", "--json", "-i") or a.startswith("--")
                  or a.startswith("-i") or a[1:2].isdigit() or prev == "-i")
        out.append(DASH_WORD + a if a.startswith("-") and len(a) > 1
                   and (a[1:] in words or not option) else a)
    return out


def main(argv=None) -> None:
    argv = _mark_dash_words(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:                 # the reader left (| head): no more output
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except Exception as e:                  # a bug: still one line, unless debugging
        if os.environ.get("IOPKT_DEBUG") == "1":
            raise
        what = " ".join(filter(None, (args.cmd, getattr(args, "lab_cmd", None),
                                      getattr(args, "bench_cmd", None))))
        fail(f"internal error in {what}: {type(e).__name__}: {' '.join(str(e).split())} "
             "(run with IOPKT_DEBUG=1 for the traceback)")


if __name__ == "__main__":
    main()
