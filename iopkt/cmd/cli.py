"""The `iopkt` command.

    iopkt run -i NAME -d tap name=tapA -d tap name=tapB [--inet IF=A/P] [--route DST=GW]
    iopkt nicinfo [-w SECONDS [-c COUNT]] [IF] | ifconfig [IF ...] | route [add|delete ...]
    iopkt netstat [-s | -r | -i | -m] | arp [-a] [-n]
    iopkt lab up|down|status
    iopkt drivers [-v]

The show commands (nicinfo, ifconfig, route, netstat, arp, mount, umount)
ask the stack named by --instance NAME, else by the environment variable
SOCK (as QNX utilities choose their stack), else "iopkt". `-i NAME` names
the instance only for `iopkt run`, as io-pkt's own -i does; `netstat -i`
is the interface table, as on BSD.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import logging.handlers
import os
import re
import signal
import sys
import time
from datetime import datetime, timezone

from iopkt.ctl import control, server
from iopkt.ctl.control import ControlError
from iopkt.kern.mbuf import DEFAULT_NMBJUMBO, MAX_NMBCLUSTERS, MAX_NMBJUMBO

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


def shown(text: str) -> str:
    """`text` as one line: control characters escaped (\\n, \\x1b), so a
    value from the environment cannot break or forge lines of output."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode()
                   for c in text)


def _instance(name: str) -> str:
    try:
        return control.check_instance_name(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"-i {name}: {e}") from None


DEFAULT_INSTANCE = "iopkt"
INSTANCE_ENV = "SOCK"       # as QNX utilities choose their stack


def _show_instance(name: str) -> str:
    try:
        return control.check_instance_name(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--instance {name}: {e}") from None


def _old_instance_option(text: str) -> str:
    """`-i NAME` on a show command: it named the instance once; say what does now."""
    raise argparse.ArgumentTypeError(
        f"-i {text}: the show commands choose the stack with --instance {text} "
        f"(or {INSTANCE_ENV}={text}); -i names the instance only for 'iopkt run'")


def _resolve_instance(args) -> None:
    """A show command's stack: --instance, else $SOCK, else "iopkt"."""
    if getattr(args, "instance", "") is not None:
        return                              # given, or a command without one
    env = os.environ.get(INSTANCE_ENV)
    if env is None or env == "":
        args.instance = DEFAULT_INSTANCE
        return
    try:
        args.instance = control.check_instance_name(env)
    except ValueError as e:
        fail(f"{INSTANCE_ENV}={shown(env)}: {e} (the environment variable {INSTANCE_ENV} names "
             "the stack instance; --instance NAME overrides it)", EXIT_USAGE)


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


MAX_INTERVAL = 3600.0       # s: nicinfo -w


def _interval(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0 < v <= MAX_INTERVAL:           # nan and inf too
        raise argparse.ArgumentTypeError(f"-w {text}: must be a number of seconds, more "
                                         f"than 0 and at most {MAX_INTERVAL:g}")
    return v


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
    from iopkt.lab import lab
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

    from iopkt.kern.mbuf import pool_bytes
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
    from iopkt.net.route import aton, prefix_problem
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
    from iopkt.dev.autoconf import DriverError
    from iopkt.net.route import aton, parse_prefix
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
        ctl = server.ControlServer(stack, args.instance)
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


# -- show commands ---------------------------------------------------------
def _req(args, op, **kw):
    need_root()
    try:
        return control.request(args.instance, op, **kw)
    except ControlError as e:
        fail(str(e), EXIT_USAGE if e.usage else 1)


def timestamp(t: float | None = None) -> str:
    """ISO 8601, UTC, milliseconds: '2026-11-28T10:20:31.123Z'."""
    dt = datetime.fromtimestamp(time.time() if t is None else t, timezone.utc)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dump(obj, key: str = "items") -> None:
    """--json: every output carries a "timestamp" (when the answer came).
    An object gets the key; a list is wrapped: {"timestamp": ..., key: [...]}
    (key: "interfaces", "routes", "neighbours", "labs")."""
    ts = timestamp()
    print(json.dumps({"timestamp": ts, key: obj} if isinstance(obj, list)
                     else {"timestamp": ts, **obj}, indent=2))


def _rate(bps: int) -> str:
    """A media rate as QNX nicinfo says it: in Mb/s ('1000 Mb/s')."""
    if not bps:
        return "unknown"
    return f"{bps / 1e6:g} Mb/s"


def _media(d: dict) -> str:
    """'1000 Mb/s full duplex', or 'unknown' without a rate. Every interface
    here is a TAP, which is full duplex, unless the stack says otherwise."""
    if not d["media_bps"]:
        return "unknown"
    return f"{_rate(d['media_bps'])} {d.get('duplex', 'full')} duplex"


# nicinfo's words for the drivers' own counters (driver_info). A key not
# here is shown with its underscores as spaces; a dict is a section with a
# heading, and a section with nothing in it is not shown.
DRIVER_LABELS = {
    # devnp-tap
    "tap": "TAP device",
    "rx_burst": "Frames read per interrupt at most",
    "paced_waits": "Transmits held for the emulated link rate",
    "rx_interrupts": "Receive interrupts",
    "tx_blocked": "Transmits blocked (TAP full)",
    "rx_spill": "Jumbo cluster kept ready for receive",
    "vnet_hdr": "virtio-net header",
    "tun_offload": "Offload the kernel accepted",
    "tun_offload_refused": "Offload the kernel refused",
    "rx_superframes": "Super-frames received",
    "rx_partial_csum": "Frames received with a partial checksum",
    "tx_superframes": "Super-frames transmitted",
    "tx_gso_refused": "Super-frames the kernel refused",
    # devnp-shim
    "legacy_driver": "Legacy io-net driver",
    "shimrxcopy": "Received frames copied (shimrxcopy)",
    "lenient": "Fixable io-net errors accepted (lenient)",
    "rx_copied": "Frames copied into mbufs",
    "rx_wrapped": "Frames handed up zero-copy",
    "rx_refused": "Frames refused by the shim",
    "tx_again": "Transmits retried (TX_DOWN_AGAIN)",
    "tx_offload_leaked": "Offload requests dropped before the driver",
    "npkts_lent_to_stack": "Driver buffers lent to the stack",
    "tx_npkts_free": "Transmit npkts free",
    "error": "Error",
}
SECTION_LABELS = {
    "handoff_queue": ("Hand-off queue", {
        "len": "Packets waiting", "maxlen": "Capacity", "enqueued": "Packets queued",
        "dequeued": "Packets taken by the stack", "drops": "Drops (queue full)",
        "hiwat": "Most packets waiting", "wakeups": "Stack wake-ups"}),
    "contract_violations": ("io-net contract violations", {
        "tx_done_twice": "tx_done twice for one packet",
        "tx_done_unknown": "tx_done for a packet never given",
        "bad_framelen": "framelen not the sum of the fragments",
        "bad_tot_iov": "tot_iov not the fragment count",
        "bad_ref_cnt": "ref_cnt not 1", "not_up": "Sent up without _NPKT_UP",
        "up_while_held": "Sent up while the shim held it",
        "bad_reg_hdl": "Sent up without a registration"}),
    "driver_errors": ("Legacy driver failures", {}),
    "legacy_driver_stats": ("Legacy driver statistics (nic_stats_t)", {
        "txed_ok": "Packets transmitted OK", "octets_txed_ok": "Bytes transmitted OK",
        "tx_failed": "Transmit failures", "tx_again": "Transmits deferred (again)",
        "rxed_ok": "Packets received OK", "octets_rxed_ok": "Bytes received OK",
        "rx_failed": "Receive failures", "rx_nobufs": "Receive drops (no free npkt)",
        "rx_not_taken": "Frames the stack did not take",
        "txed_broadcast": "Broadcasts transmitted", "rxed_broadcast": "Broadcasts received",
        "txed_multicast": "Multicasts transmitted", "rxed_multicast": "Multicasts received",
        "npkts_total": "Receive npkts", "npkts_free": "Receive npkts free",
        "rx_thread_alive": "Receive thread alive"}),
}


def _words(key: str) -> str:
    """An unknown counter's key in words: 'rx_foo_bar' -> 'Receive foo bar'."""
    words = [{"rx": "receive", "tx": "transmit"}.get(w, w) for w in key.split("_") if w]
    text = " ".join(words) or key
    return text[:1].upper() + text[1:]


def _value(v) -> str:
    return ("yes" if v else "no") if isinstance(v, bool) else str(v)


class _Dotted:
    """nicinfo's layout: 'label ...... value' rows, free lines and blank
    lines; render() puts every value at the same column, however long the
    longest label (or its indent) is."""

    MIN_WIDTH = 44          # label + dots, as QNX nicinfo's

    def __init__(self):
        self.items: list = []

    def line(self, text: str = "") -> None:
        self.items.append(text)

    def row(self, label: str, value, indent: int = 0) -> None:
        self.items.append((indent, label, _value(value)))

    def render(self) -> str:
        rows = [i for i in self.items if isinstance(i, tuple)]
        width = max([self.MIN_WIDTH] + [ind + len(lab) + 3 for ind, lab, _ in rows])
        out = []
        for i in self.items:
            if isinstance(i, str):
                out.append(i)
            else:
                ind, lab, val = i
                out.append(f"  {' ' * ind}{lab} {'.' * (width - ind - len(lab) - 1)} {val}")
        return "\n".join(out)


def _nicinfo_one(out: _Dotted, d: dict) -> None:
    c = d["counters"]
    info = d["driver_info"]
    out.line(f"{d['name']}: {info.get('driver', d['driver'])}")
    if d["description"]:
        out.line(f"  {d['description']}")
    out.row("Physical Node ID", d["mac"].upper().replace(":", ""))
    out.row("MTU", d["mtu"])
    out.row("Media Rate", _media(d))
    out.row("Link", d["link_state"])
    out.row("Flags", d["flags"])
    out.row("Capabilities", d["capabilities"])
    out.row("Enabled", d["enabled"])
    out.line()
    out.row("Packets Transmitted OK", c["opackets"])
    out.row("Bytes Transmitted OK", c["obytes"])
    out.row("Broadcast/Multicast Packets Transmitted", c["omcasts"])
    out.row("Transmit Errors", c["oerrors"])
    out.row("Transmit Queue Drops", c["oqdrops"])
    out.line()
    out.row("Packets Received OK", c["ipackets"])
    out.row("Bytes Received OK", c["ibytes"])
    out.row("Broadcast/Multicast Packets Received", c["imcasts"])
    out.row("Receive Errors", c["ierrors"])
    out.row("Receive Queue Drops", c["iqdrops"])
    out.row("Unknown Protocol", c["noproto"])
    for k, v in c["in_discards"].items():
        if v:
            out.row(f"discarded in: {k}", v, 2)
    for k, v in c["out_discards"].items():
        if v:
            out.row(f"discarded out: {k}", v, 2)
    out.row("Super-frames segmented in software", f"{c['sw_tso']} "
            f"({c['sw_tso_segs']} segments)")
    out.row("Checksums completed in software", c["sw_csum"])
    q = d["if_snd"]
    out.row("Send queue (len/max/hiwat/drops)",
            f"{q['len']}/{q['maxlen']}/{q['hiwat']}/{q['drops']}")
    flat = [(k, v) for k, v in info.items() if k != "driver" and not isinstance(v, dict)]
    sections = [(k, v) for k, v in info.items() if isinstance(v, dict) and v]
    if flat or sections:
        out.line()
    for k, v in flat:
        out.row(DRIVER_LABELS.get(k) or _words(k), v)
    for k, v in sections:
        heading, labels = SECTION_LABELS.get(k, (_words(k), {}))
        out.line(f"  {heading}:")
        for kk, vv in v.items():
            if k == "driver_errors":            # keyed by the io-net call that failed
                label = f"in {kk}"
            else:
                label = labels.get(kk) or DRIVER_LABELS.get(kk) or _words(kk)
            out.row(label, vv if not isinstance(vv, dict) else json.dumps(vv), 2)
    out.line()


def cmd_nicinfo(args) -> None:
    if args.count is not None and args.wait is None:
        fail("nicinfo: -c COUNT goes with -w SECONDS (the interval)", EXIT_USAGE)
    if args.wait is not None:
        return _nicinfo_watch(args)
    res = _req(args, "nicinfo", ifname=args.ifname)
    if args.json:
        return _dump(res, "interfaces")
    out = _Dotted()
    for d in res:
        _nicinfo_one(out, d)
    print(out.render())


# -- nicinfo -w: live rates ------------------------------------------------
RATE_HEADER_EVERY = 20      # intervals between header lines, as BSD netstat -w
RATE_COLUMNS = (("iface", 10, "<"), ("pkts/s in", 11, ">"), ("pkts/s out", 11, ">"),
                ("Mbit/s in", 11, ">"), ("Mbit/s out", 11, ">"), ("drops", 8, ">"),
                ("errs", 8, ">"))


def _sample(args) -> tuple[list, float | None, float]:
    """One nicinfo answer; the stack's clock if the answer carries one
    ("clock"), and the client's monotonic clock at the middle of the round
    trip (when the stack took the counters, give or take half of it)."""
    t0 = time.monotonic()
    res = _req(args, "nicinfo", ifname=args.ifname)
    t1 = time.monotonic()
    clocks = [d["clock"] for d in res if isinstance(d.get("clock"), (int, float))]
    return res, (clocks[0] if clocks else None), (t0 + t1) / 2


def rates(prev: list, cur: list, dt: float) -> list[dict]:
    """Per interface in both answers: packets/s and Mbit/s in and out over
    `dt` seconds, and the drops and errors in the interval. Counters that
    went back (the interface was unmounted and mounted again) count from 0."""
    before = {d["name"]: d["counters"] for d in prev}
    out = []
    for d in cur:
        b = before.get(d["name"])
        if b is None:                       # new since the last answer: next interval
            continue
        c = d["counters"]

        def delta(k):
            return c[k] - b[k] if c[k] >= b[k] else c[k]
        out.append({"name": d["name"],
                    "ipackets_per_s": round(delta("ipackets") / dt, 3),
                    "opackets_per_s": round(delta("opackets") / dt, 3),
                    "imbit_per_s": round(delta("ibytes") * 8 / dt / 1e6, 6),
                    "ombit_per_s": round(delta("obytes") * 8 / dt / 1e6, 6),
                    "idrops": delta("iqdrops"), "odrops": delta("oqdrops"),
                    "ierrors": delta("ierrors"), "oerrors": delta("oerrors")})
    return out


def _rate_line(r: dict) -> str:
    vals = (r["name"], f"{r['ipackets_per_s']:.0f}", f"{r['opackets_per_s']:.0f}",
            f"{r['imbit_per_s']:.2f}", f"{r['ombit_per_s']:.2f}",
            str(r["idrops"] + r["odrops"]), str(r["ierrors"] + r["oerrors"]))
    return " ".join(f"{v:{a}{w}}" for v, (_, w, a) in zip(vals, RATE_COLUMNS)).rstrip()


def _nicinfo_watch(args) -> None:
    """Every -w seconds, the rates since the last answer; -c intervals, or
    until Ctrl-C (exit 0). A stack that goes away is one line, exit 1."""
    header = " ".join(f"{n:{a}{w}}" for n, w, a in RATE_COLUMNS).rstrip()
    try:
        prev, p_stack, p_client = _sample(args)
        start = time.monotonic()
        n = 0
        while args.count is None or n < args.count:
            n += 1
            delay = start + n * args.wait - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -args.wait:        # fell behind (stopped?): no burst of catch-up
                start = time.monotonic() - n * args.wait
            cur, c_stack, c_client = _sample(args)
            dt = (c_stack - p_stack if c_stack is not None and p_stack is not None
                  else c_client - p_client)
            if dt <= 0:
                dt = max(c_client - p_client, 1e-6)
            rows = rates(prev, cur, dt)
            if args.json:
                print(json.dumps({"timestamp": timestamp(), "interval": round(dt, 6),
                                  "interfaces": rows}), flush=True)
            else:
                if (n - 1) % RATE_HEADER_EVERY == 0:
                    print(header)
                for r in rows:
                    print(_rate_line(r))
                sys.stdout.flush()
            prev, p_stack, p_client = cur, c_stack, c_client
    except KeyboardInterrupt:
        return


def cmd_ifconfig(args) -> None:
    from iopkt.net.ifnet import CAP_KEYWORDS
    from iopkt.net.route import prefix_problem
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
        return _dump(res, "interfaces")
    for d in res:
        print(f"{d['name']}: flags=<{d['flags']}> mtu {d['mtu']}  ({d['driver']})")
        print(f"\taddress: {d['mac']}")
        if d["capabilities_raw"]:
            print(f"\tcapabilities={d['capabilities']}")
            print(f"\tenabled={d['enabled']}")
        print(f"\tmedia: Ethernet {_media(d)}  status: {d['link_state']}")
        for a in d["inet"]:
            print(f"\tinet {a}")


def cmd_route(args) -> None:
    from iopkt.net.route import aton, prefix_problem
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
        return _dump(res, "routes")
    _print_routes(res)


def _print_routes(res: list) -> None:
    print(f"{'Destination':20} {'Gateway':18} {'Flags':6} {'Use':>10}  Interface")
    for r in res:
        dst = "default" if r["destination"] == "0.0.0.0/0" else r["destination"]
        print(f"{dst:20} {r['gateway']:18} {r['flags']:6} {r['use']:>10}  {r['interface']}")


NETSTAT_MODES = ("-s (protocol statistics, the default), -r (the routing table), "
                 "-i (the interfaces), -m (the mbuf pool)")


def cmd_netstat(args) -> None:
    if args.stray:
        fail(f"netstat: unexpected '{' '.join(args.stray)}' (choose the stack with --instance "
             f"NAME or {INSTANCE_ENV}=NAME; -i alone shows the interfaces)", EXIT_USAGE)
    given = [f"-{f}" for f in "srim" if getattr(args, f)]
    if len(given) > 1:
        fail(f"netstat: {' and '.join(given)} do not go together: choose one of "
             f"{NETSTAT_MODES}", EXIT_USAGE)
    if args.r:
        res = _req(args, "route")
        return _dump(res, "routes") if args.json else _print_routes(res)
    if args.i:
        rows = if_table(_req(args, "nicinfo"))
        return _dump(rows, "interfaces") if args.json else _print_if_table(rows)
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
    for proto in ("ip", "icmp", "arp", "bpf"):
        print(f"{proto}:")
        for k, v in res[proto].items():
            if isinstance(v, dict):
                for kk, vv in v.items():
                    print(f"\t{vv} {k} {kk}")
            elif v:
                print(f"\t{v} {k}")


IF_TABLE_COLUMNS = (("Name", "name", "<"), ("Mtu", "mtu", ">"), ("Network", "network", "<"),
                    ("Address", "address", "<"), ("Ipkts", "ipkts", ">"),
                    ("Ierrs", "ierrs", ">"), ("Idrop", "idrop", ">"), ("Opkts", "opkts", ">"),
                    ("Oerrs", "oerrs", ">"), ("Odrop", "odrop", ">"))


def if_table(res: list) -> list[dict]:
    """netstat -i's rows from a nicinfo answer: per interface a <Link> row
    with its MAC, then one row per IPv4 address with its network; each row
    carries the interface's counters (as NetBSD's netstat -i does)."""
    import ipaddress
    rows = []
    for d in res:
        c = d["counters"]
        base = {"name": d["name"], "mtu": d["mtu"], "ipkts": c["ipackets"],
                "ierrs": c["ierrors"], "idrop": c["iqdrops"], "opkts": c["opackets"],
                "oerrs": c["oerrors"], "odrop": c["oqdrops"]}
        rows.append({**base, "network": "<Link>", "address": d["mac"]})
        for a in d["inet"]:
            ia = ipaddress.ip_interface(a)
            rows.append({**base, "network": str(ia.network), "address": str(ia.ip)})
    return rows


def _print_if_table(rows: list) -> None:
    width = {k: max([len(h)] + [len(str(r[k])) for r in rows])
             for h, k, _ in IF_TABLE_COLUMNS}
    for r in [{k: h for h, k, _ in IF_TABLE_COLUMNS}, *rows]:
        print(" ".join(f"{str(r[k]):{a}{width[k]}}" for _, k, a in IF_TABLE_COLUMNS).rstrip())


def cmd_arp(args) -> None:
    # -a (all entries) is what arp shows anyway; -n (numeric) is all it
    # knows: iopkt never looks a name up.
    res = _req(args, "arp")
    if args.json:
        return _dump(res, "neighbours")
    for e in res:
        expires = e["expires_in"]
        print(f"{e['address']:16} {e['mac'] or '(incomplete)':18} {e['interface']:6} "
              f"{e['state']}" + (f" expires in {round(expires)}s" if expires is not None
                                 and e["mac"] else "")
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
    from iopkt.stack.drvload import available
    drvs = sorted(available().values(), key=lambda d: d.name)
    name_w = max([12] + [len(d.name) for d in drvs])
    # One column for every driver's option help: the longest key=type.
    opt_w = max([0] + [len(f"{k}={o.type.__name__}") for d in drvs
                       for k, o in d.options.items()])
    for d in drvs:
        print(f"{d.name:{name_w}} {d.kind:7} {d.description}")
        if args.verbose and d.options:
            print(d.options_help(opt_w))


# -- lab -----------------------------------------------------------------
def cmd_lab(args) -> None:
    from iopkt.lab import lab
    if args.lab_cmd == "up":
        # The drivers are checked against the link before root is asked for,
        # as every other value is: a usage error is one line and exit 2.
        d = args.driver or lab.default_driver(args.link)
        try:
            da = lab.check_driver(args.driver_a or d, args.link).name
            db = lab.check_driver(args.driver_b or d, args.link).name
            for flag in ("options", "options_a", "options_b"):
                lab.check_options(getattr(args, flag), "--" + flag.replace("_", "-"))
        except lab.LabError as e:
            fail(str(e), EXIT_USAGE)
    need_root()
    try:
        if args.lab_cmd == "up":
            spec = lab.LabSpec(prefix=lab.check_prefix(args.prefix), driver_a=da, driver_b=db,
                               opts_a=args.options_a or args.options or "",
                               opts_b=args.options_b or args.options or "",
                               speed=args.speed, link=args.link,
                               offload=None if args.offload is None else args.offload == "on")
            st = lab.up(spec)
            if args.json:
                return _dump(st)
            p = args.prefix
            veth = st.get("link") == "veth"
            print(f"lab '{p}' is up" + (" over veth pairs" if veth else "")
                  + f": stack pid {st['pid']} ({st['driver_a']}, {st['driver_b']})")
            if veth:
                print(f"  {st['ns_a']}: 198.18.0.2/24 {st['host_if_a']} === {st['port_a']} --- "
                      f"{st['if_a']} 198.18.0.1 [iopkt] 198.19.0.1 {st['if_b']} --- "
                      f"{st['port_b']} === {st['host_if_b']} {st['ns_b']}: 198.19.0.2/24")
                print(f"  (=== a veth pair; {st['port_a']} and {st['port_b']} are in "
                      f"{st['ns_s']}, without addresses: the drivers open them there)")
            else:
                print(f"  {st['ns_a']}: 198.18.0.2/24 --- {st['if_a']} 198.18.0.1 [iopkt] "
                      f"198.19.0.1 {st['if_b']} --- {st['ns_b']}: 198.19.0.2/24")
            print("Try:")
            print(f"  sudo ip netns exec {st['ns_a']} ping -c 3 198.19.0.2")
            print(f"  sudo ip netns exec {st['ns_b']} iperf3 -s -D")
            print(f"  sudo ip netns exec {st['ns_a']} iperf3 -c 198.19.0.2 -t 5")
            print(f"  sudo .venv/bin/iopkt nicinfo --instance {p}")
            print(f"  sudo .venv/bin/iopkt nicinfo -w 1 --instance {p}     # live rates")
            print(f"  sudo env {INSTANCE_ENV}={p} .venv/bin/iopkt netstat -m    "
                  f"# {INSTANCE_ENV} chooses the stack too")
            print(f"  sudo .venv/bin/iopkt lab down --prefix {p}")
            print(f"The veth pairs stay (their ends in {st['ns_s']}) when a driver is unmounted; "
                  "to mount it again:" if veth else
                  "The TAPs stay when a driver is unmounted; to mount it again:")
            for side in ("a", "b"):
                print(f"  after 'iopkt umount --instance {p} {st['if_' + side]}': "
                      f"sudo .venv/bin/{st['mount_' + side]}")
        elif args.lab_cmd == "down":
            res = lab.down(lab.check_prefix(args.prefix))
            if args.json:
                _dump(res)
            else:
                removed, left = res["removed"], res.get("left")
                what = ("; removed: " + ", ".join(removed)) if removed else ""
                if left:
                    print(f"lab '{args.prefix}': " + ("partly down" + what if removed
                                                      else "nothing taken down"))
                else:
                    print(f"lab '{args.prefix}' is down" + (what or " (nothing was up)"))
                for line in res["said"]:
                    print(line)
            if res.get("left"):
                fail(f"left alone, not made by lab '{args.prefix}': {', '.join(res['left'])}")
        else:
            res = lab.status()
            if args.json:
                return _dump(res, "labs")
            if not res:
                print("no lab is up")
            for s in res:
                if "error" in s:
                    print(f"{s['prefix']}: {s['error']}")
                    continue
                ns = ", ".join(f"{k}{'' if v else ' (missing)'}" for k, v in s["namespaces"].items())
                print(f"{s['prefix']}: over {s.get('link', 'tap')}, stack pid {s['pid']} "
                      f"{'answering' if s['answering'] else 'NOT answering'}"
                      f"{', up ' + str(s['uptime']) + 's' if s.get('uptime') else ''}; "
                      f"drivers {'/'.join(s['drivers'])}; interfaces "
                      f"{'/'.join(str(i) for i in s['interfaces'])}; namespaces {ns}")
    except (lab.LabError, ControlError) as e:
        fail(str(e), EXIT_USAGE if e.usage else 1)
    except Exception as e:                  # netlink and friends: still one line
        fail(f"lab {args.lab_cmd}: {type(e).__name__}: {e}")


# -- bench ---------------------------------------------------------------
def cmd_bench(args) -> None:
    from iopkt.bench import bench
    if args.bench_cmd == "compare":
        try:
            print(bench.compare(args.old, args.new, as_json=args.json))
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
                          baselines=not args.no_baselines, prefix=args.prefix,
                          latency=args.latency, link=args.link,
                          latency_seconds=args.latency_seconds)
        plan.check()
    except Exception as e:
        fail(str(e), EXIT_USAGE)
    need_root()
    try:
        from iopkt.bench.benchlib import need_iperf3, need_ping
        need_iperf3()
        if plan.latency:
            need_ping()
    except Exception as e:                  # not a usage error: this machine lacks it
        fail(str(e))
    out = args.out or bench.default_outdir()
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
        bench.stop_requested = True         # (see there: the exception may get lost)
        raise KeyboardInterrupt             # tear down and keep results
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    res = bench.run(plan, out)
    print()
    bench.print_summary(bench.summarise(res["records"]),
                        latency=bench.summarise_latency(res["records"]))
    failed = [r for r in res["records"] if not r["ok"]]
    print(f"\n{len(res['records']) - len(failed)} runs ok, {len(failed)} failed; "
          f"results: {out}/results.md, results.json, iperf3/, ping/, plot-*.png")
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


# -- version -------------------------------------------------------------
def version_line() -> str:
    """'iopkt 0.1.0', and in a git checkout the commit it runs from."""
    from importlib import metadata
    try:
        v = metadata.version("iopkt")
    except metadata.PackageNotFoundError:
        from iopkt import __version__ as v
    commit = _git_commit(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    return f"iopkt {v}" + (f" (git {commit})" if commit else "")


def _git_commit(root: str) -> str | None:
    """The checkout's commit ('037cd57a1b2c', ', modified' if tracked files
    differ from it), or None: not a checkout, no git, or git refuses."""
    import subprocess
    if not os.path.exists(os.path.join(root, ".git")):
        return None
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=5)
        if head.returncode != 0 or not head.stdout.strip():
            return None
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + (", modified" if dirty.stdout.strip() else "")


class _Version(argparse.Action):
    """--version: worked out only when asked (it may run git)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_line())
        parser.exit()


# -- parser --------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="iopkt", description="QNX io-pkt's driver model on Linux: "
                                "a Python IPv4 router with native and legacy (io-net) drivers.")
    p.add_argument("--version", action=_Version, nargs=0,
                   help="print the version (and the git commit of a checkout) and exit")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def show(name, help_, fn, old_i=True):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("--instance", dest="instance", default=None, type=_show_instance,
                        metavar="NAME", help=f"the stack instance to ask (default: "
                        f"${INSTANCE_ENV}, else {DEFAULT_INSTANCE})")
        if old_i:       # netstat's -i is the interface table
            sp.add_argument("-i", dest="old_instance", type=_old_instance_option,
                            help=argparse.SUPPRESS)
        sp.add_argument("--json", action="store_true",
                        help="print JSON, with a timestamp (ISO 8601, UTC)")
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

    sp = show("nicinfo", "driver and interface counters (as QNX nicinfo); -w for live rates",
              cmd_nicinfo)
    sp.add_argument("-w", dest="wait", type=_interval, metavar="SECONDS",
                    help="every SECONDS (0 < SECONDS <= 3600), one line per interface: "
                    "packets/s and Mbit/s in and out, drops and errors in the interval "
                    "(as netstat -w); Ctrl-C ends it")
    sp.add_argument("-c", dest="count", type=_int_in("-c", 1, 1_000_000), metavar="COUNT",
                    help="with -w: stop after COUNT intervals")
    sp.add_argument("ifname", nargs="?", help="one interface (default: all)")
    sp = show("ifconfig", "show or configure interfaces", cmd_ifconfig)
    sp.add_argument("ifname", nargs="?")
    sp.add_argument("words", nargs="*", help="inet A/P | delete A | mtu N | up | down | "
                    "[-]tso4 | [-]tcp4csum[-rx|-tx] | [-]udp4csum[-rx|-tx] | [-]ip4csum[-rx|-tx]")
    sp = show("route", "show or change the routing table", cmd_route)
    sp.add_argument("words", nargs="*", help="add DST GW [-ifp IF] | delete DST")
    sp = show("netstat", "protocol statistics (-s, the default), the routing table (-r), "
              "the interfaces (-i) or the mbuf pool (-m)", cmd_netstat, old_i=False)
    sp.add_argument("-s", action="store_true", help="protocol statistics (the default)")
    sp.add_argument("-r", action="store_true", help="the routing table (as 'iopkt route')")
    sp.add_argument("-i", action="store_true", help="the interfaces: packets, errors and "
                    "drops in and out, one line per interface and address (as BSD netstat -i)")
    sp.add_argument("-m", action="store_true", help="mbuf pool statistics")
    sp.add_argument("stray", nargs="*", help=argparse.SUPPRESS)
    sp = show("arp", "the ARP table", cmd_arp)
    sp.add_argument("-a", action="store_true", help="all entries (the default)")
    sp.add_argument("-n", action="store_true",
                    help="numeric addresses (always: iopkt never looks names up)")
    sp = show("mount", "mount a driver into a running stack (-d NAME OPTIONS)", cmd_mount)
    sp.add_argument("driver", help="tap, devn-tap, devnp-tap, ...")
    sp.add_argument("options", nargs="*", help="key=value,key=value")
    sp = show("umount", "unmount an interface from a running stack", cmd_umount)
    sp.add_argument("ifname")
    from iopkt.cmd.capture import add_arguments, cmd_capture
    add_arguments(show("capture", "capture frames on an interface, as tcpdump does "
                       "(-w FILE: pcapng; -w -: to stdout)", cmd_capture, old_i=False))

    d = sub.add_parser("drivers", help="list the drivers that can be mounted")
    d.add_argument("-v", "--verbose", action="store_true", help="with their options")
    d.set_defaults(fn=cmd_drivers)

    lb = sub.add_parser("lab", help="two host namespaces with the stack between them")
    lsub = lb.add_subparsers(dest="lab_cmd", required=True, metavar="up|down|status")
    lu = lsub.add_parser("up", help="build the lab and start its stack")
    lu.add_argument("--link", choices=("tap", "veth"), default="tap",
                    help="what joins the hosts to the stack: TAPs (default), or veth pairs "
                    "driven through AF_PACKET, their stack ends in a namespace P-s")
    lu.add_argument("--driver",
                    help="driver for both sides: with --link tap devnp-tap (default) or "
                    "devn-tap; with --link veth devnp-afpacket (default) or devn-afpacket")
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
                       "claims and their opposites, and latency: about 8.5 minutes) or compare "
                       "two results.")
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
        sp.add_argument("--cpu", dest="cpus", help="CPU budget of the stack in cores, e.g. 0.25,1")
        sp.add_argument("--reps", type=_int_in("--reps", 1, 50), default=3,
                        help="repetitions, 1..50 (default 3)")
        sp.add_argument("--seconds", type=_float_in("--seconds", 1, 120), default=3.0,
                        help="per run, 1..120 (default 3)")
        sp.add_argument("--full", action="store_true", help="the full matrix (long)")
        sp.add_argument("--no-baselines", action="store_true",
                        help="skip Linux routing and the plain relay (throughput and latency)")
        sp.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True,
                        help="ping RTT (p50, p99, max) through native, shim and shim0 and "
                        "Linux routing, idle and under a 200 Mbit/s TCP load, 2 s per run, "
                        "no link limit (default: on)")
        sp.add_argument("--latency-seconds", default=2.0,   # bench.LATENCY_SECONDS(_RANGE)
                        type=_float_in("--latency-seconds", 0.5, 60),
                        help="pings per latency run, in seconds of one every 2 ms, "
                        "0.5..60 (default 2)")
        sp.add_argument("--out", help="results folder (default results/bench-DATE)")
        sp.add_argument("--prefix", default="ibench", type=_lab_prefix,
                        help="names of the labs it builds")
    b.set_defaults(fn=cmd_bench, bench_cmd="run")
    return p


# ifconfig's and route's words that start with a dash (-tso4, -alias,
# -ifp) are words, not options: they are marked before argparse sees them,
# unmarked after. So is any other dash word that is not one of their options
# (--instance NAME, --json, -h; and -i NAME, which argparse refuses with the
# hint that --instance replaced it), so that the command itself says what it takes.
DASH_WORD = "\0"


def _mark_dash_words(argv: list[str]) -> list[str]:
    from iopkt.net.ifnet import CAP_KEYWORDS
    if not argv or argv[0] not in ("ifconfig", "route"):
        return argv
    words = (*CAP_KEYWORDS, "alias") if argv[0] == "ifconfig" else ("ifp",)
    out = [argv[0]]
    for prev, a in zip(argv, argv[1:]):
        option = (a in ("-h", "--help", "--json", "-i") or a.startswith("--")
                  or a.startswith("-i") or a[1:2].isdigit() or prev in ("-i", "--instance"))
        out.append(DASH_WORD + a if a.startswith("-") and len(a) > 1
                   and (a[1:] in words or not option) else a)
    return out


def main(argv=None) -> None:
    argv = _mark_dash_words(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    _resolve_instance(args)
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
