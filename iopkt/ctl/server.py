"""The control socket's server, in the stack thread (control.py says what
it serves and why it never waits for a client): connections, their
deadlines and limits, capture streams, and running one request.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import stat

from iopkt.ctl import control, request
from iopkt.ctl.control import ControlError, UsageError
from iopkt.ctl.ops import Ops
from iopkt.ctl.rundir import RunDirError, ensure_run_dir
from iopkt.net.bpf import BpfDesc, bpf_detach

MAX_REQUEST = 65536         # bytes: a longer request is refused and the client cut off
MAX_CONNS = 64              # open client connections; a new one evicts the oldest
ACCEPT_BURST = 16           # accepts per readiness event: bounded work per loop
BACKLOG = 128             # connections waiting for accept; beyond, the CLI says "busy"
RECV_CHUNK = 16384
REQUEST_TIMEOUT = 1.0       # s from connect to a whole request
ANSWER_TIMEOUT = 2.0        # s for the client to take its answer
STREAM_OPS = ("capture",)   # requests that turn their connection into a stream
EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
EPOLLHUP = select.EPOLLHUP | select.EPOLLERR


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


class ControlServer(Ops):
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
        self.path = control.sock_path(instance)
        try:
            ensure_run_dir(control.RUN_DIR)
        except RunDirError as e:
            raise ControlError(str(e)) from None
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
                raise ControlError(f"{self.path} is in the way: not a socket (a symlink?); "
                                   "remove it, or pick another name with -i")
            if control.served(self.path):
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
            "netstat": self.op_netstat, "arp": self.op_arp, "ndp": self.op_ndp,
            "stop": self.op_stop, "detach": self.op_detach, "mount": self.op_mount,
            "capture": self.op_capture, "route_get": self.op_route_get,
            "route_flush": self.op_route_flush,
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
            name, op, args = request.parse(data, self.ops)
            if name in STREAM_OPS:
                return {"ok": True, "result": op(conn, **args)}
            return {"ok": True, "result": op(**args)}
        except (UsageError, ValueError, TypeError, UnicodeDecodeError) as e:
            self.errors += 1
            if isinstance(e, request.TooDeep):
                self.too_deep += 1
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

def _nop(*_a) -> None:
    return None
