"""The control socket: how `iopkt nicinfo`, `ifconfig`, `route`, `netstat`
read and change a running stack.

A UNIX stream socket at /run/iopkt/<instance>.sock, mode 0600 (root only).
One JSON request per connection, one JSON answer:

    -> {"op": "nicinfo", "args": {"ifname": "tap0"}}
    <- {"ok": true, "result": {...}}   or   {"ok": false, "error": "..."}

Requests are served in the stack thread, so they see a consistent state
without locks; and since that thread also forwards every packet, nothing
here may wait for a client. The listening socket and every connection are
non-blocking and sit in the stack's epoll set: a request is gathered in a
per-connection buffer as it arrives, runs once it is whole, and its answer
leaves as the socket takes it. A size limit, one deadline per connection
and a cap on open connections (the oldest is evicted) bound what an idle,
slow, oversized or flooding client can hold; each cut is counted
(`netstat` -> control). A thread of its own would have needed a lock or a
hand-off for every request; the epoll loop needs neither.

A bad request (unknown op or argument, a value of the wrong type or out of
range) is answered with "usage": true, and the CLI exits 2; a request that
fails at run time (no such interface) exits 1.

One request turns its connection into a stream: `capture` (bpf.py, `iopkt
capture`). Its answer is the stream's header line, then come capture
records (bpf.REC: timestamp, direction, length, then the frame) as the
socket takes them, and last a trailer record (direction 0, JSON: why it
ended, frames captured and dropped). The frames wait in the capture's own
buffer, bounded (bpf.BPF_BUFSIZE): when the client reads too slowly the
taps drop further frames and count them, so a stream never makes the
stack wait and never grows. A stream has no deadline while it captures
(the request and answer deadlines would cut a quiet capture); it ends when
the client closes (or shuts down its sending side), when COUNT frames were
captured, or when the interface is detached; then the client has
ANSWER_TIMEOUT, renewed as long as it keeps reading, to take what is left.
At most MAX_CAPTURES streams are open (more are refused); they are never
evicted for new connections.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import socket
import stat
import struct
import sys
import threading
import time
import typing

from iopkt.ctl.rundir import RunDirError, ensure_run_dir
from iopkt.net.bpf import BPF_BUFSIZE, DIRECTIONS, REC, BpfDesc, bpf_attach, bpf_detach
from iopkt.net.ifnet import caps_str, flags_str, parse_capwords
from iopkt.net.route import aton, ntoa, parse_prefix

RUN_DIR = os.environ.get("IOPKT_RUN_DIR", "/run/iopkt")
MAX_REQUEST = 65536         # bytes: a longer request is refused and the client cut off
MAX_DEPTH = 8               # nesting of a request's JSON; deeper is refused, unparsed
MAX_CONNS = 64              # open client connections; a new one evicts the oldest
ACCEPT_BURST = 16           # accepts per readiness event: bounded work per loop
BACKLOG = 128             # connections waiting for accept; beyond, the CLI says "busy"
RECV_CHUNK = 16384
REQUEST_TIMEOUT = 1.0       # s from connect to a whole request
ANSWER_TIMEOUT = 2.0        # s for the client to take its answer
MAX_CAPTURES = 8            # capture streams open at once; one more is refused
MAX_COUNT = 2**31 - 1       # capture: frames at most
STREAM_OPS = ("capture",)   # requests that turn their connection into a stream
EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
EPOLLHUP = select.EPOLLHUP | select.EPOLLERR


class ControlError(Exception):
    """A request failed at run time (no such stack, interface or route);
    str() is the message for the user. The CLI exits 1."""

    usage = False


class UsageError(ControlError):
    """A request was malformed: a value out of range, a bad address or
    prefix, an argument of the wrong type. The CLI exits 2."""

    usage = True


def sock_path(instance: str) -> str:
    return os.path.join(RUN_DIR, f"{instance}.sock")


_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")


def check_instance_name(name: str) -> str:
    """`name` if it may name a stack (it names its socket file): ASCII
    letters, digits, '-' and '_'; else ValueError."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"instance name {name!r}: use 1-32 ASCII letters, digits, '-' or '_'")
    return name


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def too_deep(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text `data` nests arrays and objects more than
    `limit` deep (brackets inside strings do not count), found without
    parsing it: json.loads would recurse once per level."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False                        # every real request: no scan
    depth = 0
    for c in _STRINGS.sub(b"", data).translate(None, _NOT_BRACKETS):
        depth += 1 if c in b"[{" else -1
        if depth > limit:
            return True
    return False


class Conn:
    """One client connection: what it sent so far, what is left of our
    answer, and the callout that cuts it off at its deadline. A stream's
    connection also has its capture (`stream`, whose buffer is what waits
    for the client), whether the client shut down its side (`rdeof`), and
    the bytes the client took since its drain deadline was last renewed."""

    __slots__ = ("sock", "fd", "buf", "out", "deadline", "stream", "rdeof", "taken")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.fd = sock.fileno()
        self.buf = bytearray()
        self.out: memoryview | None = None
        self.deadline = None
        self.stream: BpfDesc | None = None
        self.rdeof = False
        self.taken = 0


class ControlServer:
    """Serves requests in the stack thread without ever waiting for a
    client: every socket is non-blocking and in the stack's epoll set.

    A connection is read when epoll says it is readable, into its own
    buffer, until a newline; then the request runs and the answer is
    written as far as the socket takes it, the rest when it is writable.
    Each connection has one deadline (REQUEST_TIMEOUT from accept, then
    ANSWER_TIMEOUT to take the answer); a client that is idle, slow, too
    big or does not read is cut off and counted in `cut`. At most MAX_CONNS
    are open: a new one evicts the oldest, so idle clients cannot lock out
    the next valid request. One readiness event does a bounded amount of
    work (ACCEPT_BURST accepts), so forwarding never waits long for us."""

    def __init__(self, stack, instance: str):
        self.stack = stack
        self.path = sock_path(instance)
        try:
            ensure_run_dir(RUN_DIR)
        except RunDirError as e:
            raise ControlError(str(e)) from None
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
                raise ControlError(f"{self.path} is in the way: not a socket (a symlink?); "
                                   "remove it, or pick another name with -i")
            if served(self.path):
                raise ControlError(f"a stack named '{instance}' is already running "
                                   f"({self.path}); pick another with -i")
            os.unlink(self.path)                # a stale socket: its stack is gone
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.sock.bind(self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        st = os.lstat(self.path)
        self.ident = (st.st_ino, st.st_dev)     # close() removes this file only
        self.sock.listen(BACKLOG)
        self.sock.setblocking(False)
        self.conns: dict[int, Conn] = {}        # fd -> connection, oldest first
        self.requests = 0                       # requests run (good or bad)
        self.errors = 0                         # answered with an error
        self.too_deep = 0                       # refused unparsed: nested too deep
        self.accepted = 0
        self.conns_hiwat = 0
        self.cut = {"idle": 0, "oversized": 0, "evicted": 0, "unread": 0, "reset": 0}
        self.streams: dict[int, Conn] = {}      # fd -> connection streaming a capture
        # Frames of the captures that ended, and captures refused (too many).
        self.capture_totals = {"captured": 0, "dropped": 0, "refused": 0}
        stack.interrupt_attach(self.sock.fileno(), self._accept)
        self.ops = {
            "ping": self.op_ping, "ifconfig": self.op_ifconfig,
            "nicinfo": self.op_nicinfo, "route": self.op_route,
            "netstat": self.op_netstat, "arp": self.op_arp, "stop": self.op_stop,
            "detach": self.op_detach, "mount": self.op_mount,
            "capture": self.op_capture,
        }

    def close(self) -> None:
        for c in list(self.conns.values()):
            if c.stream is not None and c.stream.buf:
                try:                        # its trailer, if the socket takes it now
                    c.sock.send(c.stream.buf)
                except OSError:
                    pass
            self._close(c)
        self.stack.interrupt_detach(self.sock.fileno())
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(self.path)
            if (st.st_ino, st.st_dev) == self.ident:    # not what replaced it since
                os.unlink(self.path)

    def stats(self) -> dict:
        return {"requests": self.requests, "errors": self.errors, "too_deep": self.too_deep,
                "accepted": self.accepted,
                "open": len(self.conns), "open_hiwat": self.conns_hiwat, "cut": dict(self.cut)}

    # -- serving (stack thread; nothing here may block) -------------------
    def _accept(self, _events: int) -> None:
        """Listening socket readable: take up to ACCEPT_BURST clients. Most
        send their request with the connect, so try to answer at once."""
        for _ in range(ACCEPT_BURST):
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:             # EMFILE and friends: try again next event
                return
            sock.setblocking(False)
            self.accepted += 1
            if len(self.conns) >= MAX_CONNS:    # the oldest, but never a stream
                old = next((x for x in self.conns.values() if x.stream is None), None)
                if old is not None:
                    self._cut(old, "evicted")
            c = Conn(sock)
            self.conns[c.fd] = c
            self.conns_hiwat = max(self.conns_hiwat, len(self.conns))
            c.deadline = self.stack.timeout(REQUEST_TIMEOUT, lambda c=c: self._expired(c))
            self.stack.interrupt_attach(c.fd, lambda ev, c=c: self._event(c, ev))
            self._readable(c)

    def _event(self, c: Conn, events: int) -> None:
        if c.stream is not None:
            self._stream_event(c, events)
        elif c.out is not None:
            self._writable(c)
        else:
            self._readable(c)

    def _readable(self, c: Conn) -> None:
        """Take what the client sent; run the request once it is whole
        (a newline, or the client's end of the stream)."""
        while True:
            try:
                chunk = c.sock.recv(RECV_CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return self._cut(c, "reset")
            if not chunk:
                if c.buf:
                    c.rdeof = True
                    return self._run(c)
                return self._close(c)       # connected and left: nothing to say
            c.buf += chunk
            if b"\n" in chunk:
                return self._run(c)
            if len(c.buf) > MAX_REQUEST:
                self.cut["oversized"] += 1
                self.errors += 1
                return self._answer(c, {"ok": False, "usage": True, "error":
                                        f"request larger than {MAX_REQUEST} bytes"})

    def _run(self, c: Conn) -> None:
        """The request is whole: run it; answer it, or start its stream."""
        answer = self.handle(bytes(c.buf), c)
        if c.stream is None:
            return self._answer(c, answer)
        self._stream_start(c, answer)

    def _answer(self, c: Conn, answer: dict) -> None:
        """Send `answer`; what the socket does not take now goes when it
        is writable, within ANSWER_TIMEOUT."""
        c.out = memoryview(json.dumps(answer).encode() + b"\n")
        self._writable(c)
        if self.conns.get(c.fd) is c:
            c.deadline.cancel()
            c.deadline = self.stack.timeout(ANSWER_TIMEOUT, lambda: self._expired(c))
            self.stack.interrupt_modify(c.fd, EPOLLOUT)

    def _writable(self, c: Conn) -> None:
        try:
            n = c.sock.send(c.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:                     # the client left before reading
            return self._close(c)
        c.out = c.out[n:]
        if not c.out:
            self._close(c)

    def _expired(self, c: Conn) -> None:
        if self.conns.get(c.fd) is c:
            self._cut(c, "idle" if c.out is None else "unread")

    def _cut(self, c: Conn, why: str) -> None:
        self.cut[why] += 1
        self._close(c)

    def _close(self, c: Conn) -> None:
        if self.conns.pop(c.fd, None) is None:
            return
        c.deadline.cancel()
        self.stack.interrupt_detach(c.fd)
        c.sock.close()
        if c.stream is not None:            # a capture: no more frames for it
            d = c.stream
            bpf_detach(d)
            d.ready = d.done = _nop
            self.streams.pop(c.fd, None)
            self.capture_totals["captured"] += d.captured
            self.capture_totals["dropped"] += d.dropped

    # -- capture streams (stack thread; nothing here may block either) -------
    def _stream_start(self, c: Conn, answer: dict) -> None:
        """The capture is attached: its answer is the stream's header line,
        sent before any frame. No deadline from now on until it ends."""
        c.deadline.cancel()
        c.buf = bytearray()
        c.stream.buf[0:0] = json.dumps(answer).encode() + b"\n"
        self.stack.interrupt_modify(c.fd, self._interest(c))

    def _interest(self, c: Conn) -> int:
        """What to wait for on a stream: writable while records wait, and
        readable (the client's close) until it shut down its side."""
        return (EPOLLOUT if c.stream.buf else 0) | (0 if c.rdeof else EPOLLIN)

    def _stream_ready(self, c: Conn) -> None:
        """The capture's buffer is no longer empty (called from the taps)."""
        if self.conns.get(c.fd) is c:
            self.stack.interrupt_modify(c.fd, self._interest(c))

    def _stream_event(self, c: Conn, events: int) -> None:
        if events & EPOLLHUP:               # both sides shut: nobody will read
            return self._close(c)
        if events & EPOLLIN and not c.rdeof:
            self._stream_read(c)
        if events & EPOLLOUT and self.conns.get(c.fd) is c:
            self._stream_send(c)

    def _stream_read(self, c: Conn) -> None:
        """A streaming client says nothing more; what it sends is ignored
        (a bounded amount per event). Its end of the stream ends the
        capture: what is captured and the trailer still go out."""
        for _ in range(4):
            try:
                chunk = c.sock.recv(RECV_CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return self._cut(c, "reset")
            if not chunk:
                c.rdeof = True
                self._stream_end(c, "client")
                if self.conns.get(c.fd) is c:
                    self.stack.interrupt_modify(c.fd, self._interest(c))
                return

    def _stream_send(self, c: Conn) -> None:
        """Send what the socket takes now; once everything of an ended
        capture is out, close."""
        d = c.stream
        if d.buf:
            try:
                n = c.sock.send(d.buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:                 # the client left
                return self._close(c)
            del d.buf[:n]
            c.taken += n
        if not d.buf:
            if d.ended:
                return self._close(c)
            self.stack.interrupt_modify(c.fd, self._interest(c))

    def _stream_end(self, c: Conn, why: str) -> None:
        """The capture ends (COUNT reached, interface detached, client's
        end): queue the trailer; the client then has ANSWER_TIMEOUT,
        renewed while it takes bytes, to read the rest."""
        d = c.stream
        if d.ended or self.conns.get(c.fd) is not c:
            return
        if why == "detached" and self.stack.stopping:
            why = "stopping"
        d.finish(why)
        self._drain_deadline(c)

    def _drain_deadline(self, c: Conn) -> None:
        c.taken = 0
        c.deadline = self.stack.timeout(ANSWER_TIMEOUT, lambda: self._drain_check(c))

    def _drain_check(self, c: Conn) -> None:
        if self.conns.get(c.fd) is not c:
            return
        if c.taken:
            self._drain_deadline(c)
        else:
            self._cut(c, "unread")

    def handle(self, data: bytes, conn: Conn | None = None) -> dict:
        """Run one request; always an answer, never an exception. A bad
        request is the client's error (usage=True: the CLI exits 2); a
        bug behind a request is logged in one line and counted. A stream
        request (STREAM_OPS) is given `conn`, the connection it turns into
        its stream; without one it is refused."""
        self.requests += 1
        try:
            if too_deep(data):
                self.too_deep += 1
                raise UsageError(f"a request nested deeper than {MAX_DEPTH} levels")
            req = json.loads(data)
            if not isinstance(req, dict) or not isinstance(req.get("args", {}), dict):
                raise UsageError("a request is a JSON object {\"op\": ..., \"args\": {...}}")
            op = self.ops.get(req.get("op"))
            if op is None:
                raise UsageError(f"unknown request {req.get('op')!r} "
                                 f"(requests: {', '.join(self.ops)})")
            args = req.get("args", {})
            _check_args(op, args)
            if req["op"] in STREAM_OPS:
                return {"ok": True, "result": op(conn, **args)}
            return {"ok": True, "result": op(**args)}
        except (UsageError, ValueError, TypeError, UnicodeDecodeError) as e:
            self.errors += 1
            return {"ok": False, "usage": True, "error": str(e)}
        except (ControlError, KeyError, OSError) as e:
            self.errors += 1
            return {"ok": False, "error": str(e)}
        except Exception as e:          # a bug behind one request must not stop the stack
            self.errors += 1
            self.stack.log.error("control request failed: %s: %s", type(e).__name__, e)
            self.stack.log.debug("control request failed", exc_info=True)
            return {"ok": False, "error": f"internal error: {type(e).__name__}: {e}"}

    def _ifp(self, ifname: str):
        ifp = self.stack.ifnets.get(ifname)
        if ifp is None:
            raise ControlError(f"no interface '{ifname}' (interfaces: "
                               f"{', '.join(self.stack.ifnets) or 'none'})")
        return ifp

    # -- operations ------------------------------------------------------
    def op_ping(self) -> dict:
        st = self.stack
        return {"name": st.name, "pid": os.getpid(),
                "uptime": round(st.clock() - st.started, 1),
                "threads": threading.active_count(),
                "interfaces": list(st.ifnets), "python": sys.version.split()[0],
                "switchinterval": sys.getswitchinterval()}

    def _ifconfig_one(self, ifp) -> dict:
        return {"name": ifp.name, "driver": ifp.dname,
                "description": ifp.description,
                "flags": flags_str(ifp.flags), "flags_raw": ifp.flags,
                "mtu": ifp.mtu, "mac": ifp.mac_str(),
                "inet": [f"{ntoa(ia.addr)}/{ia.plen}" for ia in ifp.in_addrs],
                "link_state": {0: "unknown", 1: "down", 2: "up"}[ifp.link_state],
                "media_bps": ifp.baudrate,
                "capabilities": caps_str(ifp.capabilities), "capabilities_raw": ifp.capabilities,
                "enabled": caps_str(ifp.capenable), "enabled_raw": ifp.capenable}

    def op_ifconfig(self, ifname: str | None = None, inet: str | None = None,
                    delete: str | None = None, mtu: int | None = None,
                    up: bool | None = None, caps: list | None = None) -> list[dict]:
        """Show interfaces, or change one. Every argument is checked first
        (a bad one is a UsageError and changes nothing); what the state
        then refuses (an address already there) is a ControlError."""
        st = self.stack
        if ifname is None:
            return [self._ifconfig_one(i) for i in st.ifnets.values()]
        ifp = self._ifp(ifname)
        if mtu is not None and not 68 <= mtu <= 9000:
            raise UsageError(f"mtu {mtu}: must be 68..9000")
        old = parse_prefix(delete)[0] if delete is not None else None
        if inet is not None:
            if "/" not in inet:
                raise UsageError(f"inet {inet}: give a prefix length, e.g. {inet}/24")
            addr, plen = parse_prefix(inet)
            if not 1 <= plen <= 32:
                raise UsageError(f"inet {inet}: prefix length /{plen} must be 1..32")
        capenable = parse_capwords(caps, ifp.capenable) if caps else ifp.capenable
        with _refused():
            if capenable != ifp.capenable:
                ifp.set_capenable(capenable)
            if mtu is not None:
                ifp.mtu = mtu
            if old is not None:
                st.ip.del_address(ifp, old)
            if inet is not None:
                st.ip.add_address(ifp, addr, plen)
                st.if_up(ifp)
        if up is True:
            st.if_up(ifp)
        elif up is False:
            st.if_down(ifp)
        return [self._ifconfig_one(ifp)]

    def op_nicinfo(self, ifname: str | None = None) -> list[dict]:
        ifps = [self._ifp(ifname)] if ifname else list(self.stack.ifnets.values())
        out = []
        for ifp in ifps:
            d = self._ifconfig_one(ifp)
            d["counters"] = ifp.counters()
            d["if_snd"] = ifp.if_snd.stats()
            d["driver_info"] = ifp.if_extra_info(ifp)
            d["clock"] = self.stack.clock()     # when the counters were read: live rates
            out.append(d)
        return out

    def op_route(self, add: str | None = None, delete: str | None = None,
                 gateway: str | None = None, ifname: str | None = None) -> list[dict]:
        """Show the table, or change it: a malformed prefix or address is a
        UsageError; a route the table refuses (exists, no such route,
        gateway not on a connected network) a ControlError."""
        rt = self.stack.ip.routes
        if add is not None:
            dst, plen = parse_prefix(add)
            gw = aton(gateway) if gateway else 0
            ifp = self._ifp(ifname) if ifname else None
            with _refused():
                rt.add(dst, plen, gw, ifp)
        if delete is not None:
            dst, plen = parse_prefix(delete)
            with _refused():
                rt.delete(dst, plen)
        return rt.to_list()

    def op_netstat(self) -> dict:
        st = self.stack
        return {"mbuf": st.pool.stats(), "ip": st.ip.stats(),
                "icmp": {**st.icmp.stats, "inhist": st.icmp.inhist,
                         "outhist": st.icmp.outhist},
                "arp": st.arp.stats,
                "stack": {"loops": st.loops, "wakeups": st.wakeups,
                          "handler_errors": st.handler_errors},
                "control": self.stats(), **self.capture_stats()}

    def capture_stats(self) -> dict:
        """netstat's view of packet capture: "bpf" (streams open; frames
        captured and dropped for slow readers, ended captures included;
        captures refused) and "captures", one entry per open stream."""
        live = [c.stream for c in self.streams.values()]
        t = self.capture_totals
        return {"bpf": {"open": len(live),
                        "captured": t["captured"] + sum(d.captured for d in live),
                        "dropped": t["dropped"] + sum(d.dropped for d in live),
                        "refused": t["refused"]},
                "captures": [{"ifname": d.ifp.name, **d.stats()} for d in live]}

    def op_capture(self, conn, ifname: str, direction: str = "both", count: int = 0) -> dict:
        """Capture frames on `ifname` (any interface, enN too): this
        connection becomes the capture's stream, and what this returns is
        its header line. `direction` is in, out or both; `count` ends it
        after that many frames (0: when the client closes or the interface
        goes). `conn` comes from handle(), never from the client (it has
        no type hint, so _check_args refuses it as an argument)."""
        if direction not in DIRECTIONS:
            raise UsageError(f"capture: direction {direction!r}: one of in, out, both")
        if not 0 <= count <= MAX_COUNT:
            raise UsageError(f"capture: count {count}: must be 0..{MAX_COUNT} (0: no limit)")
        ifp = self._ifp(ifname)
        if conn is None:
            raise UsageError("capture: a stream needs a connection of its own")
        if len(self.streams) >= MAX_CAPTURES:
            self.capture_totals["refused"] += 1
            raise ControlError(f"capture: {MAX_CAPTURES} captures are open already, "
                               "the most at once; end one first")
        d = BpfDesc(DIRECTIONS[direction], count, BPF_BUFSIZE,
                    ready=lambda: self._stream_ready(conn),
                    done=lambda why: self._stream_end(conn, why))
        bpf_attach(ifp, d)
        conn.stream = d
        self.streams[conn.fd] = conn
        return {"capture": ifp.name, "driver": ifp.dname, "linktype": 1,
                "direction": direction, "count": count, "record": REC.format,
                "bufsize": BPF_BUFSIZE, "mtu": ifp.mtu,
                "enabled": caps_str(ifp.capenable)}

    def op_arp(self) -> list[dict]:
        return self.stack.arp.table()

    def op_detach(self, ifname: str) -> dict:
        """Unmount an interface while the stack runs. A shim interface in
        zero-copy mode finishes later, when the mbufs it lent come back."""
        ifp = self._ifp(ifname)
        shim = ifp.softc if hasattr(ifp.softc, "up_held") else None
        self.stack.if_detach(ifp)
        out = {"detached": ifname, "mbufs_in_use": self.stack.pool.in_use}
        if shim is not None:
            out["waiting_for_lent_mbufs"] = len(shim.up_held)
        return out

    def op_mount(self, driver: str, options: str = "") -> dict:
        """Mount a driver into the running stack (io-pkt's `mount -T io-pkt`)."""
        from iopkt.stack.drvload import mount, resolve
        # A DriverError (bad name or option) is a ValueError: a usage error.
        ifp = mount(self.stack, resolve(driver), options)
        return {"mounted": ifp.name, "driver": ifp.dname, "description": ifp.description}

    def op_stop(self) -> dict:
        self.stack.stop()
        return {"stopping": True}


def _nop(*_a) -> None:
    return None


@contextlib.contextmanager
def _refused():
    """Around a change the state may refuse (the arguments were checked
    already): its ValueError is a run-time failure, not a usage error."""
    try:
        yield
    except ValueError as e:
        raise ControlError(str(e)) from None


def _check_args(op, args: dict) -> None:
    """Refuse a request whose arguments the operation does not take, or
    of the wrong JSON type, before it runs: a bad request is the client's
    error (UsageError), never a traceback in the stack's log."""
    hints = typing.get_type_hints(op)
    name = op.__name__.removeprefix("op_")
    for key, value in args.items():
        if key not in hints or key == "return":
            known = ", ".join(k for k in hints if k != "return") or "none"
            raise UsageError(f"{name}: unknown argument '{key}' (arguments: {known})")
        allowed = typing.get_args(hints[key]) or (hints[key],)
        allowed = tuple(typing.get_origin(t) or t for t in allowed)
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
        if ok and isinstance(value, list):
            ok = all(isinstance(v, str) for v in value)
        if not ok:
            want = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            raise UsageError(f"{name}: argument '{key}' is {type(value).__name__}, "
                             f"expected {want}")


# -- client ------------------------------------------------------------
def request(instance: str, op: str, timeout: float = 5.0, peer: int | None = None, **args):
    """Send one request to the running stack `instance`; return its result
    or raise ControlError (UsageError for a bad request) with a message
    for the user. With `peer`, only to that process: the socket must be
    a socket (never followed through a symlink) that `peer` serves."""
    path = sock_path(instance)
    if not os.path.exists(path):
        raise ControlError(f"no stack named '{instance}' is running "
                           f"(no {path}); {_running_hint()}")
    deadline = time.monotonic() + timeout
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if peer is not None and not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ControlError(f"{path} is not a socket (a symlink?): not pid {peer}'s")
        _connect(s, path, instance, deadline)
        if peer is not None:
            pid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                   struct.calcsize("3i")))[0]
            if pid != peer:
                raise ControlError(f"{path} is served by pid {pid}, not by pid {peer}")
        s.settimeout(max(0.01, deadline - time.monotonic()))
        s.sendall(json.dumps({"op": op, "args": args}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except PermissionError:
        raise ControlError(f"{path}: permission denied (the control socket is root's)") from None
    except (ConnectionRefusedError, FileNotFoundError):
        raise ControlError(f"the stack '{instance}' is not answering ({path} is stale)") from None
    except socket.timeout:
        raise ControlError(f"the stack '{instance}' did not answer within {timeout:g}s") from None
    except OSError as e:
        raise ControlError(f"the stack '{instance}': {path}: {e.strerror or e}") from None
    finally:
        s.close()
    if not data:
        raise ControlError(f"the stack '{instance}' closed the connection without answering")
    try:
        ans = json.loads(data)
    except ValueError:
        raise ControlError(f"the stack '{instance}' answered something that is not JSON") from None
    if not ans.get("ok"):
        cls = UsageError if ans.get("usage") else ControlError
        raise cls(ans.get("error", "request failed"))
    return ans["result"]


def open_stream(instance: str, op: str, timeout: float = 5.0, **args):
    """Send a stream request (STREAM_OPS) to the stack `instance` and read
    its header line. Returns (socket, the header's result, bytes already
    read after it); the socket is blocking with no timeout, the caller's
    to read and close. Raises ControlError (UsageError for a bad request)
    with a message for the user, as request() does."""
    path = sock_path(instance)
    if not os.path.exists(path):
        raise ControlError(f"no stack named '{instance}' is running "
                           f"(no {path}); {_running_hint()}")
    deadline = time.monotonic() + timeout
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    data = b""
    try:
        _connect(s, path, instance, deadline)
        s.settimeout(max(0.01, deadline - time.monotonic()))
        s.sendall(json.dumps({"op": op, "args": args}).encode() + b"\n")
        while b"\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except BaseException as e:
        s.close()
        if isinstance(e, PermissionError):
            raise ControlError(f"{path}: permission denied (the control socket is "
                               "root's)") from None
        if isinstance(e, (ConnectionRefusedError, FileNotFoundError)):
            raise ControlError(f"the stack '{instance}' is not answering "
                               f"({path} is stale)") from None
        if isinstance(e, socket.timeout):
            raise ControlError(f"the stack '{instance}' did not answer within "
                               f"{timeout:g}s") from None
        if isinstance(e, OSError):
            raise ControlError(f"the stack '{instance}': {path}: {e.strerror or e}") from None
        raise
    line, _, rest = data.partition(b"\n")
    try:
        ans = json.loads(line) if line else None
    except ValueError:
        ans = {"ok": False, "error": f"the stack '{instance}' answered something that "
               "is not JSON"}
    if ans is None or not ans.get("ok"):
        s.close()
        if ans is None:
            raise ControlError(f"the stack '{instance}' closed the connection without answering")
        cls = UsageError if ans.get("usage") else ControlError
        raise cls(ans.get("error", "request failed"))
    s.settimeout(None)
    return s, ans["result"], rest


def _connect(s: socket.socket, path: str, instance: str, deadline: float) -> None:
    """connect(2) to the stack's socket. A full backlog (EAGAIN on a UNIX
    socket) is retried until the deadline, then said in one line."""
    s.setblocking(False)
    while True:
        try:
            s.connect(path)
            return
        except (BlockingIOError, InterruptedError):
            if time.monotonic() >= deadline:
                raise ControlError(f"the stack '{instance}' is busy: its control socket "
                                   f"{path} has a full backlog of connections") from None
            time.sleep(0.01)


def _running_hint() -> str:
    """Which stacks do run, for an error that names one that does not."""
    try:
        names = sorted(f[:-5] for f in os.listdir(RUN_DIR) if f.endswith(".sock"))
    except OSError:
        names = []
    if names:
        return f"running: {', '.join(names)} (choose with --instance NAME or SOCK=NAME)"
    return "start one with 'iopkt run' or 'iopkt lab up'"


def wait_ready(instance: str, timeout: float = 10.0, proc=None) -> dict:
    """Poll until the stack answers `ping` (given `proc`, a Popen: that
    process itself, on a real socket); raise ControlError on timeout or if
    `proc` exits first."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ControlError(f"the stack exited with status {proc.returncode} before answering")
        try:
            return request(instance, "ping", timeout=1.0,
                           peer=proc.pid if proc is not None else None)
        except ControlError as e:
            last = e
        time.sleep(0.05)
    raise ControlError(f"the stack '{instance}' did not come up within {timeout}s ({last})")


def served(path: str) -> bool:
    """Whether a process listens on the UNIX socket at `path`."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()
