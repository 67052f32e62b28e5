"""`iopkt capture`: tcpdump for the stack's interfaces (the client side of
bpf.py's taps).

    iopkt capture IF [-w FILE | -w -] [-c COUNT] [--direction in|out|both]

asks the running stack for a `capture` stream (control.py) and, without
-w, prints one line per frame as tcpdump does (time, direction, scapy's
summary, length); with -w it writes a pcapng file, or with `-w -` a pcapng
stream on stdout flushed after every frame, so that

    iopkt capture en0 -w - | tcpdump -nr -

shows the traffic live. It ends after COUNT frames, on Ctrl-C (SIGINT or
SIGTERM) or when the reader of stdout goes away (exit 0 for all three), or
when the interface is unmounted or the stack stops (exit 1); then stderr
gets "N frames captured, M dropped by a slow reader", M being the frames
the stack dropped because this reader did not keep up (bpf.py's bound).

The writer is scapy's PcapNgWriter: pcapng records each frame's direction
(the enhanced packet block's inbound/outbound flag, which scapy's rdpcap
gives back as `.direction` and Wireshark shows), and names the interface;
classic pcap (PcapWriter) has room for neither, and a capture of a
router's interface that cannot tell a frame arriving from one leaving is
half a capture. tcpdump and libpcap read pcapng from a file or a pipe.
Scapy 2.8's PcapNgWriter opens a path itself; for `-w -` it is given the
stdout stream after it is made.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time

from iopkt.cmd import util
from iopkt.ctl import control
from iopkt.net.bpf import BPF_END, DIRECTION_NAMES, parse_records

LINKTYPE_ETHERNET = 1
POLL = 0.2              # s: how often a quiet stream checks for Ctrl-C
DRAIN_WAIT = 2.0        # s: after Ctrl-C, how long to wait for the stack's counts
RECV_SIZE = 1 << 18


class CaptureError(Exception):
    """A capture failed at run time (the file, the stream): exit 1."""


def register(sub) -> None:
    sp = util.show_parser(sub, "capture", "capture frames on an interface, as tcpdump does "
                          "(-w FILE: pcapng; -w -: to stdout)", cmd_capture, old_i=False)
    sp.add_argument("ifname", metavar="IF", nargs="?", help="the interface (tap0, en0, ...)")
    sp.add_argument("-i", dest="iface", metavar="IF", help="the interface, as tcpdump -i")
    sp.add_argument("-w", dest="write", metavar="FILE",
                    help="write a pcapng file; '-' streams it to stdout")
    sp.add_argument("-c", dest="count", type=util.int_in("-c", 1, control.MAX_COUNT),
                    default=0, help="end after COUNT frames")
    sp.add_argument("--direction", choices=("in", "out", "both"), default="both",
                    help="frames received (in), sent (out) or both (default)")


def cmd_capture(args) -> None:
    """The subcommand: a one-line error (exit 2 for usage, 1 at run time)
    or the capture's own exit code."""
    if (args.ifname is None) == (args.iface is None):
        util.fail("name one interface: 'capture IF' or 'capture -i IF'", util.EXIT_USAGE)
    args.ifname = args.ifname or args.iface
    if args.json and args.write:
        util.fail("--json prints one JSON line per frame; it does not go with -w",
                  util.EXIT_USAGE)
    util.need_root()
    try:
        code = run(args.instance, args.ifname, args.write, args.count, args.direction,
                   args.json)
    except control.ControlError as e:
        util.fail(str(e), util.EXIT_USAGE if e.usage else 1)
    except CaptureError as e:
        util.fail(str(e))
    sys.exit(code)


def run(instance: str, ifname: str, write: str | None = None, count: int = 0,
        direction: str = "both", as_json: bool = False, stdout=None, stderr=None) -> int:
    """Capture on `ifname` of the stack `instance` until it ends; returns
    the exit code (0: COUNT reached, Ctrl-C, or stdout's reader left; 1:
    the interface or the stack went away). Raises ControlError when the
    stack refuses (no such interface: not usage; a bad argument: usage),
    CaptureError when the file cannot be written."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    stop = _Stop()
    with stop:
        sock, header, rest = control.open_stream(instance, "capture", ifname=ifname,
                                                 direction=direction, count=count)
        try:
            sink = _open_sink(write, stdout, header, as_json)
        except OSError as e:
            sock.close()
            raise CaptureError(f"-w {write}: {e.strerror or e}") from None
        print(f"iopkt: listening on {header['capture']} ({header['driver']}), link-type "
              f"EN10MB (Ethernet), {header['direction']}"
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
    print(f"{n}, {trailer['dropped']} dropped by a slow reader", file=stderr)
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
        for ts, d, data in recs:
            if d == BPF_END:
                trailer = data
                break
            if not shut and not stop.flag:
                got += sink.write(ts, d, data)
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


def _open_sink(write: str | None, stdout, header: dict, as_json: bool):
    if write is None:
        return _Lines(stdout, as_json)
    return _PcapNg(write, stdout, header["capture"])


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
    """tcpdump's text: time, In/Out, scapy's summary, length; or with
    --json one object per line."""

    def __init__(self, out, as_json: bool):
        import scapy.layers.inet  # noqa: F401  (binds IPv4, ICMP, TCP, UDP to Ether)
        import scapy.layers.inet6  # noqa: F401  (what hosts send by themselves)
        from scapy.layers.l2 import Ether
        self.ether = Ether
        self.out = out
        self.fd = _fileno(out)
        self.as_json = as_json

    def write(self, ts: float, direction: int, frame: bytes) -> int:
        if self.broken or self.failed:
            return 0
        try:
            summary = self.ether(frame).summary()
        except Exception as e:              # scapy cannot parse it: still one line
            summary = f"(not parsed: {type(e).__name__})"
        if self.as_json:
            line = json.dumps({"timestamp": util.timestamp(ts), "time": ts,
                               "direction": DIRECTION_NAMES[direction].lower(),
                               "length": len(frame), "summary": summary})
        else:
            t = time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1e6):06d}"
            line = f"{t} {DIRECTION_NAMES[direction]:3} {summary}, length {len(frame)}"
        return self._take(self.out.write, line + "\n")

    def flush(self) -> None:
        self._push(self.out)

    def close(self) -> None:
        self.flush()


class _Frame(bytes):
    """A frame as scapy's writer takes it: bytes with a direction (1 in,
    2 out: pcapng's epb_flags) and the interface's name."""


class _PcapNg(_Sink):
    """scapy's PcapNgWriter, to a file or (`-`) to stdout, flushed after
    every frame when streaming. When the file fails (a full disk), the
    frames it holds are counted from its size at the end: `ends` has where
    each frame not yet flushed ends in the file."""

    def __init__(self, path: str, stdout, ifname: str):
        from scapy.utils import PcapNgWriter
        self.live = path == "-"
        if self.live:
            # scapy 2.8's PcapNgWriter only takes a path: make it on
            # /dev/null, then give it our stdout.
            w = PcapNgWriter(os.devnull)
            w.f.close()
            w.f = getattr(stdout, "buffer", stdout)
            w.sync = True
            self.fd = _fileno(stdout)
        else:
            w = PcapNgWriter(path)          # OSError: the caller says which file
            self.fd = w.f.fileno()
        w.linktype = LINKTYPE_ETHERNET
        self.w = w
        self.path = path
        self.ifname = ifname
        self.ends: list[int] = []
        try:
            w.write_header(None)            # a reader of the pipe can start at once
            w.f.flush()
        except BrokenPipeError:
            self._gone()

    def write(self, ts: float, direction: int, frame: bytes) -> int:
        if self.broken or self.failed:
            return 0
        f = _Frame(frame)
        f.direction = direction
        f.sniffed_on = self.ifname
        n = self._take(self.w.write_packet, f, sec=ts)
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
