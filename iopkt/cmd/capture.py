"""`iopkt capture`: tcpdump for the stack's interfaces (the client side of
bpf.py's taps), with tcpdump's options and filter expressions:

    iopkt capture [-i] IF [-nevX] [-c COUNT] [-w FILE|-] [--pcapng] [-s SNAPLEN]
                  [-Q in|out|inout] [EXPRESSION]

EXPRESSION is any pcap-filter(7) expression (`icmp`, `host 198.19.0.2 and
tcp port 5201`, `tcp[tcpflags] & tcp-syn != 0`): the stack has libpcap
compile it once and runs it on each frame in C before copying anything
(bpf_filter.py). Without -w each frame is one line, as tcpdump prints one
(time, direction, scapy's summary, length; -e the Ethernet header too, -v
the IP header's fields, -X the bytes in hex and ASCII; -n is always so).
-w FILE writes a pcap file, as tcpdump -w does, which every reader takes;
--pcapng writes pcapng instead, which also keeps each frame's direction (In
or Out: on a router the same packet crosses an interface both ways) and the
interface's name. `-w -` streams to stdout, flushed after every frame:

    iopkt capture en0 -w - | tcpdump -nr -

It ends after COUNT frames, on Ctrl-C (SIGINT or SIGTERM) or when the
reader of stdout goes away (exit 0 for all three), or when the interface
is unmounted or the stack stops (exit 1); then stderr gets "N frames
captured, S seen by the filter, M dropped by a slow reader", as tcpdump's
last lines, M being the frames the stack dropped because this reader did
not keep up (bpf.py's bound).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time

from iopkt.cmd import util
from iopkt.ctl import control
from iopkt.net.bpf import BPF_END, DIRECTION_NAMES, SNAPLEN_MAX, parse_records

LINKTYPE_ETHERNET = 1
POLL = 0.2              # s: how often a quiet stream checks for Ctrl-C
DRAIN_WAIT = 2.0        # s: after Ctrl-C, how long to wait for the stack's counts
RECV_SIZE = 1 << 18


class CaptureError(Exception):
    """A capture failed at run time (the file, the stream): exit 1."""


class Show:
    """How a line is printed: -e (the link header), -v (more of the IP
    header), -X (the bytes)."""

    def __init__(self, link: bool = False, verbose: int = 0, hexdump: bool = False):
        self.link = link
        self.verbose = verbose
        self.hexdump = hexdump


def register(sub) -> None:
    sp = util.show_parser(sub, "capture", "capture frames on an interface, as tcpdump does, "
                          "with its filter expressions", cmd_capture, old_i=False,
                          usage_text=__doc__.split("\n\n", 1)[1].split("\n\nIt ends", 1)[0])
    sp.add_argument("-i", dest="iface", metavar="IF", help="the interface (tap0, en0, ...)")
    sp.add_argument("-n", action="store_true", help="numeric (always so)")
    sp.add_argument("-e", dest="link", action="store_true",
                    help="print the Ethernet header of each frame")
    sp.add_argument("-v", dest="verbose", action="count", default=0,
                    help="print more of the IP header (TTL, id, flags, length)")
    sp.add_argument("-X", dest="hexdump", action="store_true",
                    help="print each frame's bytes in hex and ASCII")
    sp.add_argument("-c", dest="count", type=util.int_in("-c", 1, control.MAX_COUNT),
                    default=0, help="end after COUNT frames")
    sp.add_argument("-w", dest="write", metavar="FILE",
                    help="write the frames to FILE (pcap; --pcapng); '-' streams to stdout")
    sp.add_argument("--pcapng", action="store_true",
                    help="with -w: pcapng, which keeps each frame's direction and interface")
    sp.add_argument("-s", dest="snaplen", type=util.int_in("-s", 0, SNAPLEN_MAX),
                    default=0, metavar="SNAPLEN",
                    help=f"keep the first SNAPLEN bytes of each frame (0: all, {SNAPLEN_MAX})")
    sp.add_argument("-Q", dest="direction", choices=("in", "out", "inout"), default="inout",
                    help="frames received (in), sent (out) or both (inout, the default)")
    sp.add_argument("--direction", dest="direction", choices=("in", "out", "both"),
                    help=argparse.SUPPRESS)
    sp.add_argument("words", nargs="*", metavar="EXPRESSION",
                    help="IF (without -i), then a tcpdump filter expression (pcap-filter(7))")


def cmd_capture(args) -> None:
    """The subcommand: a one-line error (exit 2 for usage, 1 at run time)
    or the capture's own exit code."""
    words = list(args.words)
    if args.iface is None:
        if not words:
            util.fail("name the interface: 'capture IF' or 'capture -i IF'", util.EXIT_USAGE)
        args.iface = words.pop(0)
    if args.json and args.write:
        util.fail("--json prints one JSON line per frame; it does not go with -w",
                  util.EXIT_USAGE)
    if args.pcapng and not args.write:
        util.fail("--pcapng goes with -w FILE", util.EXIT_USAGE)
    util.need_root()
    direction = "both" if args.direction == "inout" else args.direction
    try:
        code = run(args.instance, args.iface, args.write, args.count, direction,
                   args.json, filter=" ".join(words), snaplen=args.snaplen or SNAPLEN_MAX,
                   pcapng=args.pcapng, show=Show(args.link, args.verbose, args.hexdump))
    except control.ControlError as e:
        util.fail(str(e).removeprefix("capture: "), util.EXIT_USAGE if e.usage else 1)
    except CaptureError as e:
        util.fail(str(e))
    sys.exit(code)


def run(instance: str, ifname: str, write: str | None = None, count: int = 0,
        direction: str = "both", as_json: bool = False, stdout=None, stderr=None, *,
        filter: str = "", snaplen: int = SNAPLEN_MAX, pcapng: bool = False,
        show: Show | None = None) -> int:
    """Capture on `ifname` of the stack `instance` until it ends; returns
    the exit code (0: COUNT reached, Ctrl-C, or stdout's reader left; 1:
    the interface or the stack went away). Raises ControlError when the
    stack refuses (no such interface: not usage; a bad argument or filter:
    usage), CaptureError when the file cannot be written."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    stop = _Stop()
    with stop:
        sock, header, rest = control.open_stream(instance, "capture", ifname=ifname,
                                                 direction=direction, count=count,
                                                 filter=filter, snaplen=snaplen)
        try:
            sink = _open_sink(write, stdout, header, as_json, pcapng, show or Show())
        except OSError as e:
            sock.close()
            raise CaptureError(f"-w {write}: {e.strerror or e}") from None
        what = f"filter '{header['filter']}', " if header.get("filter") else ""
        print(f"listening on {header['capture']} ({header['driver']}), {what}link-type "
              f"EN10MB (Ethernet), snapshot length {header.get('snaplen', SNAPLEN_MAX)} bytes, "
              f"{header['direction']}"
              + (f", {header['count']} frames" if header["count"] else ""),
              file=stderr, flush=True)
        try:
            got, trailer, user = _pump(sock, rest, sink, stop)
        finally:
            sock.close()
            sink.close()
    if sink.failed is not None:
        e = sink.failed
        where = "stdout" if write in (None, "-") else write
        print(f"iopkt capture: {where}: {e.strerror or e}; {_frames(sink.saved)} "
              f"written to {where} before it", file=stderr)
        return 1
    n = f"{_frames(got)} captured"
    if trailer is None:
        print(f"{n}; the stack did not say how many it dropped", file=stderr)
        if user:
            return 0
        print(f"iopkt capture: the stack '{instance}' closed the stream", file=stderr)
        return 1
    seen = f", {trailer['seen']} seen by the filter" if header.get("filter") else ""
    print(f"{n}{seen}, {trailer['dropped']} dropped by a slow reader", file=stderr)
    if trailer["reason"] == "detached" and not user:
        print(f"iopkt capture: {header['capture']} was unmounted", file=stderr)
        return 1
    if trailer["reason"] == "stopping" and not user:
        print(f"iopkt capture: the stack '{instance}' stopped", file=stderr)
        return 1
    return 0


def _frames(n: int) -> str:
    return f"{n} frame{'s' if n != 1 else ''}"


def _pump(sock: socket.socket, rest: bytes, sink, stop) -> tuple:
    """Read records until the trailer. After Ctrl-C, once the sink's
    reader is gone or its file cannot take more (a full disk), shut down
    our side (the stack ends the capture and sends its counts) and discard
    frames until the trailer comes, at most DRAIN_WAIT. Returns (frames
    written, trailer or None, whether the user or the sink's reader ended
    it)."""
    buf = bytearray(rest)
    got = 0
    trailer = None
    shut = False
    give_up = 0.0
    sock.settimeout(POLL)
    while trailer is None:
        if (stop.flag or sink.broken or sink.failed) and not shut:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            shut = True
            give_up = time.monotonic() + DRAIN_WAIT
        recs, off = parse_records(buf)
        if off:
            del buf[:off]
        for ts, d, data, wirelen in recs:
            if d == BPF_END:
                trailer = data
                break
            if not shut and not stop.flag:
                got += sink.write(ts, d, data, wirelen)
        if trailer is not None:
            break
        sink.flush()
        if shut and time.monotonic() > give_up:
            break
        try:
            chunk = sock.recv(RECV_SIZE)
        except socket.timeout:
            continue
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
    sink.flush()
    return got, trailer, shut


class _Stop:
    """SIGINT and SIGTERM set `flag` (the loop then ends the capture in
    order) instead of raising in the middle of a write; the old handlers
    come back on exit."""

    def __init__(self):
        self.flag = False
        self._old = {}

    def _set(self, *_a) -> None:
        self.flag = True

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._set)
            except ValueError:              # not the main thread (tests): no handlers
                pass
        return self

    def __exit__(self, *_exc) -> None:
        for sig, h in self._old.items():
            signal.signal(sig, h)


def _open_sink(write: str | None, stdout, header: dict, as_json: bool, pcapng: bool,
               show: Show):
    if write is None:
        return _Lines(stdout, as_json, show)
    return _File(write, stdout, header["capture"], pcapng, header.get("snaplen", SNAPLEN_MAX))


class _Sink:
    """Where frames go. write() returns 1 when it wrote the frame, 0 when
    the reader is gone (`broken`: a broken pipe is the reader's end, not
    an error; stdout then goes to /dev/null so exiting prints nothing) or
    the file failed (`failed`: the OSError, ENOSPC say; `saved` frames
    were flushed to it before)."""

    broken = False
    failed: OSError | None = None
    saved = 0
    pending = 0                 # frames written since the last flush

    def _take(self, write, *args, **kw) -> int:
        """write(*args, **kw) one frame: 1 if it was written, 0 if the
        reader is gone or the file failed."""
        try:
            write(*args, **kw)
        except BrokenPipeError:
            return self._gone()
        except OSError as e:
            self.failed = e
            return 0
        self.pending += 1
        return 1

    def _push(self, f) -> bool:
        """Flush `f`; the frames written since count as `saved` once the
        file took them (True)."""
        if self.broken or self.failed:
            return False
        try:
            f.flush()
        except BrokenPipeError:
            self._gone()
        except OSError as e:
            self.failed = e
        else:
            self.saved += self.pending
        self.pending = 0
        return not (self.broken or self.failed)

    def _gone(self) -> int:
        self.broken = True
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.fd)
        except OSError:
            pass
        return 0


class _Lines(_Sink):
    """tcpdump's text: time, In/Out, scapy's summary, length (-e, -v, -X:
    more of each frame); or with --json one object per line."""

    def __init__(self, out, as_json: bool, show: Show):
        import scapy.layers.inet  # noqa: F401  (binds IPv4, ICMP, TCP, UDP to Ether)
        import scapy.layers.inet6  # noqa: F401  (what hosts send by themselves)
        from scapy.layers.l2 import Ether
        self.ether = Ether
        self.out = out
        self.fd = _fileno(out)
        self.as_json = as_json
        self.show = show

    def write(self, ts: float, direction: int, frame: bytes, wirelen: int) -> int:
        if self.broken or self.failed:
            return 0
        try:
            pkt = self.ether(frame)
            summary = pkt.payload.summary()
        except Exception as e:              # scapy cannot parse it: still one line
            pkt, summary = None, f"(not parsed: {type(e).__name__})"
        if self.as_json:
            line = json.dumps({"timestamp": util.timestamp(ts), "time": ts,
                               "direction": DIRECTION_NAMES[direction].lower(),
                               "length": wirelen, "captured": len(frame), "summary": summary})
        else:
            t = time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1e6):06d}"
            link = f"{_link(pkt)}, length {wirelen}: " if self.show.link and pkt else ""
            more = f" {_ip_detail(pkt)}" if self.show.verbose and pkt is not None else ""
            line = f"{t} {DIRECTION_NAMES[direction]:3} {link}{summary}{more}, length {wirelen}"
            if self.show.hexdump:
                from scapy.utils import hexdump
                line += "\n" + hexdump(frame, dump=True)
        return self._take(self.out.write, line + "\n")

    def flush(self) -> None:
        self._push(self.out)

    def close(self) -> None:
        self.flush()


ETHERTYPES = {0x0800: "IPv4", 0x0806: "ARP", 0x86DD: "IPv6", 0x8100: "802.1Q"}


def _link(pkt) -> str:
    """-e: the Ethernet header as tcpdump prints it."""
    t = pkt.type
    return f"{pkt.src} > {pkt.dst}, ethertype {ETHERTYPES.get(t, 'Unknown')} (0x{t:04x})"


def _ip_detail(pkt) -> str:
    """-v: the IP header's fields, as tcpdump -v shows them."""
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    if IP in pkt:
        ip = pkt[IP]
        return (f"(tos 0x{ip.tos:x}, ttl {ip.ttl}, id {ip.id}, offset {ip.frag * 8}, "
                f"flags [{ip.flags or 'none'}], proto {ip.proto}, length {ip.len})")
    if IPv6 in pkt:
        ip = pkt[IPv6]
        return (f"(flowlabel 0x{ip.fl:05x}, hlim {ip.hlim}, next-header {ip.nh}, "
                f"payload length {ip.plen})")
    return ""


class _Frame(bytes):
    """A frame as scapy's pcapng writer takes it: bytes with a direction
    (1 in, 2 out: pcapng's epb_flags) and the interface's name."""


class _File(_Sink):
    """scapy's PcapWriter (pcap, as tcpdump -w writes) or PcapNgWriter
    (--pcapng: each frame's direction and interface too), to a file or
    (`-`) to stdout, flushed after every frame when streaming. When the
    file fails (a full disk), the frames it holds are counted from its
    size at the end: `ends` has where each frame not yet flushed ends."""

    def __init__(self, path: str, stdout, ifname: str, pcapng: bool, snaplen: int):
        from scapy.utils import PcapNgWriter, PcapWriter
        self.live = path == "-"
        target = getattr(stdout, "buffer", stdout) if self.live else path
        if pcapng:
            # scapy's PcapNgWriter opens a path itself: for stdout, make it
            # on /dev/null, then give it our stream.
            w = PcapNgWriter(os.devnull if self.live else path)    # OSError: the caller
            if self.live:
                w.f.close()
                w.f = target
        else:
            w = PcapWriter(target, linktype=LINKTYPE_ETHERNET, snaplen=snaplen,
                           sync=self.live)
        w.linktype = LINKTYPE_ETHERNET
        self.fd = _fileno(stdout) if self.live else w.f.fileno()
        self.w = w
        self.path = path
        self.ifname = ifname
        self.pcapng = pcapng
        self.ends: list[int] = []
        try:
            w.write_header(None)            # a reader of the pipe can start at once
            w.f.flush()
        except BrokenPipeError:
            self._gone()

    def write(self, ts: float, direction: int, frame: bytes, wirelen: int) -> int:
        if self.broken or self.failed:
            return 0
        f = frame
        if self.pcapng:
            f = _Frame(frame)
            f.direction = direction
            f.sniffed_on = self.ifname
        if self.pcapng:
            when = {"sec": ts}
        else:                               # scapy's pcap writer drops a float's fraction
            when = {"sec": int(ts), "usec": round((ts - int(ts)) * 1e6)}
        n = self._take(self.w.write_packet, f, wirelen=wirelen, **when)
        if n and not self.live:
            self.ends.append(self.w.f.tell())
        return n

    def flush(self) -> None:
        if self._push(self.w.f):
            self.ends.clear()

    def close(self) -> None:
        self.flush()
        if not self.live:
            try:
                self.w.f.close()
            except OSError as e:            # what was left in the buffer
                self.failed = self.failed or e
            if self.failed:                 # the whole frames the file holds after all
                size = os.stat(self.path).st_size
                self.saved += sum(1 for end in self.ends if end <= size)


def _fileno(f) -> int:
    try:
        return f.fileno()
    except (AttributeError, OSError, ValueError):
        return -1
