"""`iopkt run`: a stack with its drivers, in the foreground (io-pkt itself)."""

from __future__ import annotations

import gc
import logging
import logging.handlers
import signal
import sys

from iopkt.cmd import util
from iopkt.ctl import server
from iopkt.ctl.control import ControlError
from iopkt.kern.mbuf import DEFAULT_NMBJUMBO, MAX_NMBCLUSTERS, MAX_NMBJUMBO


def _check_pool_memory(args) -> None:
    """Refuse a pool this machine cannot hold before building it (building
    it is what would fail, after a long while, with a MemoryError). The
    jumbo clusters count as if made: a driver with offload makes them."""
    import psutil

    from iopkt.kern.mbuf import pool_bytes
    need = pool_bytes(args.nmbclusters, args.mclbytes, args.nmbjumbo)
    free = psutil.virtual_memory().available
    if need <= free:
        return
    jumbo = pool_bytes(0, args.mclbytes, args.nmbjumbo)
    opt, val = (("--nmbjumbo", args.nmbjumbo) if jumbo > need - jumbo
                else ("--nmbclusters", args.nmbclusters))
    util.fail(f"{opt} {val}: {need / 1e9:.1f} GB for the mbuf pool ({args.nmbclusters} clusters "
              f"of {args.mclbytes} bytes" + (f" and {args.nmbjumbo} of 64 KB" if args.nmbjumbo
                                        else "") +
         f", with their headers), more than the {free / 1e9:.1f} GB this machine has free",
         util.EXIT_USAGE)


def _check_run_specs(args) -> None:
    """--inet, --inet6 and --route, checked before any driver is mounted."""
    from iopkt.net.route import aton, prefix_problem
    from iopkt.netinet6.in6 import parse_prefix6
    for spec in args.inet:
        ifname, _, pfx = spec.partition("=")
        if not ifname or "/" not in pfx:
            util.fail(f"--inet {spec}: expected IF=ADDR/PLEN, e.g. tap0=198.18.0.1/24",
                      util.EXIT_USAGE)
        if prefix_problem(pfx):
            util.fail(f"--inet {spec}: {prefix_problem(pfx)}", util.EXIT_USAGE)
    for spec in args.inet6:
        ifname, _, pfx = spec.partition("=")
        if not ifname or "/" not in pfx:
            util.fail(f"--inet6 {spec}: expected IF=ADDR/PLEN, e.g. tap0=2001:2:0:a::1/64",
                      util.EXIT_USAGE)
        try:
            parse_prefix6(pfx)
        except ValueError as e:
            util.fail(f"--inet6 {spec}: {e}", util.EXIT_USAGE)
    for spec in args.route:
        dst, eq, gw = spec.partition("=")
        if not eq:
            util.fail(f"--route {spec}: expected DST=GW, e.g. default=198.18.0.2", util.EXIT_USAGE)
        if ":" in gw:                           # IPv6: ::/0=2001:2:0:a::2
            try:
                parse_prefix6(dst)
                parse_prefix6(gw)
            except ValueError as e:
                util.fail(f"--route {spec}: {e}", util.EXIT_USAGE)
            continue
        if prefix_problem(dst):
            util.fail(f"--route {spec}: {prefix_problem(dst)}", util.EXIT_USAGE)
        try:
            aton(gw)
        except ValueError as e:
            util.fail(f"--route {spec}: gateway {e}", util.EXIT_USAGE)


def cmd_run(args) -> None:
    if not args.driver:
        util.fail("nothing to run: give at least one driver with -d NAME [OPTIONS]",
                  util.EXIT_USAGE)
    _check_run_specs(args)
    _check_pool_memory(args)
    util.need_root()
    from iopkt.dev.autoconf import DriverError
    from iopkt.net.route import aton, parse_prefix
    from iopkt.netinet6.in6 import parse_prefix6
    from iopkt.stack.drvload import mount, resolve
    from iopkt.stack.stack import Stack
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
        util.fail(str(e), util.EXIT_USAGE)
    ctl = None
    try:
        for d in args.driver:
            drv = resolve(d[0])
            opts = ",".join(d[1:])
            if drv.legacy_attach is not None and len(d) > 2 and " " not in d[1]:
                opts = f"{d[1]} {','.join(d[2:])}"      # -d shim devn-tap name=x,...
            mount(stack, drv, opts)
        for spec in args.inet:
            ifname, _, pfx = spec.partition("=")
            if ifname not in stack.ifnets or "/" not in pfx:
                raise DriverError(f"--inet {spec}: expected IF=ADDR/PLEN with IF one of "
                                  f"{', '.join(stack.ifnets)}")
            stack.ip.add_address(stack.ifnets[ifname], *parse_prefix(pfx))
        for spec in args.inet6:
            ifname, _, pfx = spec.partition("=")
            if ifname not in stack.ifnets:
                raise DriverError(f"--inet6 {spec}: expected IF=ADDR/PLEN with IF one of "
                                  f"{', '.join(stack.ifnets)}")
            stack.ip6.add_address(stack.ifnets[ifname], *parse_prefix6(pfx))
        for spec in args.route:
            dst, _, gw = spec.partition("=")
            if ":" in gw:
                stack.ip6.routes.add(*parse_prefix6(dst), parse_prefix6(gw)[0])
            else:
                stack.ip.routes.add(*parse_prefix(dst), aton(gw))
        ctl = server.ControlServer(stack, args.instance)
    except (DriverError, ValueError, ControlError, OSError) as e:
        stack.shutdown(quiet=True)
        held.buffer.clear()
        util.fail(str(e), util.EXIT_USAGE if isinstance(e, (DriverError, ValueError)) else 1)
    held.flush()
    logging.getLogger().addHandler(out)
    logging.getLogger().removeHandler(held)
    signal.signal(signal.SIGINT, lambda *_: stack.stop())
    signal.signal(signal.SIGTERM, lambda *_: stack.stop())
    log.info("running: %s; control socket %s", ", ".join(stack.ifnets), ctl.path)
    # The pools and everything built so far live as long as the stack: move
    # them out of the garbage collector's sight, so a full pass (which stops
    # forwarding while it runs) scans only what came later.
    gc.collect()
    gc.freeze()
    try:
        stack.run()
    finally:
        ctl.close()
        stack.close()


def register(sub) -> None:
    r = sub.add_parser("run", help="run a stack in the foreground",
                       description="Start the stack with its drivers; logs go to stderr; "
                       "SIGINT/SIGTERM stop it cleanly.")
    r.add_argument("-i", dest="instance", default="iopkt", type=util.instance_name,
                   help="instance name, as io-pkt's -i (default: iopkt)")
    r.add_argument("-d", dest="driver", action="append", nargs="+", default=[],
                   metavar=("NAME", "OPTIONS"),
                   help="mount a driver: NAME (tap -> devnp-tap, else devn-tap) and "
                   "options key=value,key=value; repeat for more interfaces")
    r.add_argument("--inet", action="append", default=[], metavar="IF=ADDR/PLEN",
                   help="configure an address, e.g. tap0=198.18.0.1/24")
    r.add_argument("--inet6", action="append", default=[], metavar="IF=ADDR/PLEN",
                   help="configure an IPv6 address, e.g. tap0=2001:2:0:a::1/64 (each "
                   "interface also gets its link-local address from its MAC)")
    r.add_argument("--route", action="append", default=[], metavar="DST=GW",
                   help="add a static route, e.g. default=198.18.0.2 or ::/0=2001:2:0:a::2")
    r.add_argument("--mclbytes", type=util.int_in("--mclbytes", 256, 65536), default=2048,
                   help="mbuf cluster size, 256..65536 (default 2048)")
    r.add_argument("--nmbclusters", type=util.int_in("--nmbclusters", 1, MAX_NMBCLUSTERS),
                   default=4096, help=f"clusters in the pool, 1..{MAX_NMBCLUSTERS} and what "
                   "free memory holds (default 4096)")
    r.add_argument("--nmbjumbo", type=util.int_in("--nmbjumbo", 0, MAX_NMBJUMBO),
                   default=DEFAULT_NMBJUMBO,
                   help=f"64 KB jumbo clusters for super-frames, 0..{MAX_NMBJUMBO}, made when "
                   f"a driver with offload attaches (default {DEFAULT_NMBJUMBO})")
    r.add_argument("-v", "--verbose", action="store_true")
    r.set_defaults(fn=cmd_run)

