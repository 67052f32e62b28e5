"""`iopkt nicinfo`: driver and interface counters, as QNX nicinfo shows them,
and with -w live rates."""

from __future__ import annotations

import json
import sys
import time

from iopkt.cmd import util


def _rate(bps: int) -> str:
    """A media rate as QNX nicinfo says it: in Mb/s ('1000 Mb/s')."""
    if not bps:
        return "unknown"
    return f"{bps / 1e6:g} Mb/s"


def media(d: dict) -> str:
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


FAMILY_LABELS = (("inet", "IPv4"), ("inet6", "IPv6"), ("arp", "ARP"))


def _families(out: _Dotted, c: dict, key: str, verb: str) -> None:
    """One row per family under the totals: what Ethernet sorted by type."""
    for name, label in FAMILY_LABELS:
        out.row(f"{label} Packets {verb}", c["families"][name][key], 2)


def _nicinfo_one(out: _Dotted, d: dict) -> None:
    c = d["counters"]
    info = d["driver_info"]
    out.line(f"{d['name']}: {info.get('driver', d['driver'])}")
    if d["description"]:
        out.line(f"  {d['description']}")
    out.row("Physical Node ID", d["mac"].upper().replace(":", ""))
    out.row("MTU", d["mtu"])
    out.row("Media Rate", media(d))
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
    _families(out, c, "opackets", "Transmitted")
    out.line()
    out.row("Packets Received OK", c["ipackets"])
    out.row("Bytes Received OK", c["ibytes"])
    out.row("Broadcast/Multicast Packets Received", c["imcasts"])
    out.row("Receive Errors", c["ierrors"])
    out.row("Receive Queue Drops", c["iqdrops"])
    out.row("Unknown Protocol", c["noproto"])
    _families(out, c, "ipackets", "Received")
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
        util.fail("-c COUNT goes with -w SECONDS (the interval)", util.EXIT_USAGE)
    if args.wait is not None:
        return _nicinfo_watch(args)
    res = util.req(args, "nicinfo", ifname=args.ifname)
    if args.json:
        return util.dump(res, "interfaces")
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
    res = util.req(args, "nicinfo", ifname=args.ifname)
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

        def delta(k, c=c, b=b):             # a counter that went back: reset
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
                print(json.dumps({"timestamp": util.timestamp(), "interval": round(dt, 6),
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


def register(sub) -> None:
    sp = util.show_parser(sub, "nicinfo", "driver and interface counters (as QNX nicinfo); "
                          "-w for live rates", cmd_nicinfo)
    sp.add_argument("-w", dest="wait", type=util.interval, metavar="SECONDS",
                    help="every SECONDS (0 < SECONDS <= 3600), one line per interface: "
                    "packets/s and Mbit/s in and out, drops and errors in the interval "
                    "(as netstat -w); Ctrl-C ends it")
    sp.add_argument("-c", dest="count", type=util.int_in("-c", 1, 1_000_000), metavar="COUNT",
                    help="with -w: stop after COUNT intervals")
    sp.add_argument("ifname", nargs="?", help="one interface (default: all)")
