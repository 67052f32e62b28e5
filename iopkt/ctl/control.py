"""The control socket: how `iopkt nicinfo`, `ifconfig`, `route`, `netstat`
read and change a running stack. This module: the names, the errors and
the client; server.py serves it in the stack thread, ops.py holds the
operations.

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

import json
import os
import re
import socket
import stat
import struct
import time

RUN_DIR = os.environ.get("IOPKT_RUN_DIR", "/run/iopkt")
MAX_COUNT = 2**31 - 1       # capture: frames at most


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
