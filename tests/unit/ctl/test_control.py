"""The control server in the stack thread: it never waits for a client.

A real Stack runs its loop in a thread with the control socket in a
temporary run directory; the test is the client. Each hostile client is
cut off and counted, and a valid request is answered right after it."""

import json
import os
import socket
import threading
import time

import pytest

from iopkt.ctl import control, request, server
from iopkt.ctl.control import UsageError
from iopkt.ctl.server import ControlServer
from iopkt.stack.stack import Stack


@pytest.fixture
def served(tmp_path, monkeypatch):
    """(stack, server, path) with the stack loop running in a thread."""
    monkeypatch.setattr(control, "RUN_DIR", str(tmp_path))
    # Deadlines long enough for a client thread descheduled on a busy
    # machine; the tests of the deadlines themselves shorten them.
    monkeypatch.setattr(server, "REQUEST_TIMEOUT", 5.0)
    monkeypatch.setattr(server, "ANSWER_TIMEOUT", 5.0)
    st = Stack("unit", nmbclusters=8)
    srv = ControlServer(st, "unit")
    t = threading.Thread(target=st.run)
    t.start()
    yield st, srv, srv.path
    st.stop()
    t.join(5)
    assert not srv.conns or not t.is_alive()
    srv.close()
    st.close()


def ask(path, payload, timeout=10.0):
    """Send `payload` (bytes) and read the answer to EOF."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    s.sendall(payload)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return json.loads(data)


def req(**kw):
    return json.dumps(kw).encode() + b"\n"


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_request_in_pieces_is_answered(served):
    st, srv, path = served
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    for piece in (b'{"op": ', b'"ping"', b"}\n"):
        s.send(piece)
        time.sleep(0.02)
    s.settimeout(10)
    ans = json.loads(s.recv(65536))
    s.close()
    assert ans["ok"] is True and ans["result"]["name"] == "unit"


def test_a_request_ended_by_shutdown_instead_of_newline_is_answered(served):
    st, srv, path = served
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.send(b'{"op": "ping"}')
    s.shutdown(socket.SHUT_WR)
    s.settimeout(10)
    assert json.loads(s.recv(65536))["ok"] is True
    s.close()


def test_an_idle_client_is_cut_at_its_deadline_and_the_loop_never_waits(served, monkeypatch):
    st, srv, path = served
    monkeypatch.setattr(server, "REQUEST_TIMEOUT", 2.0)
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle.connect(path)
    t0 = time.monotonic()
    idle.send(b'{"op"')                   # half a request, then nothing
    # Answered while the idle client still holds its connection: the loop
    # did not wait for it (the stack's own count, not a wall-clock bound).
    assert ask(path, req(op="ping"))["ok"] is True
    assert srv.cut["idle"] == 0 and srv.requests == 1
    idle.settimeout(30)
    assert idle.recv(100) == b""           # closed by the server
    assert time.monotonic() - t0 >= 1.9    # at its deadline, not before
    idle.close()
    assert srv.cut["idle"] == 1


def test_an_oversized_request_is_refused_and_cut(served):
    st, srv, path = served
    ans = ask(path, b"x" * (server.MAX_REQUEST + 10))
    assert ans == {"ok": False, "usage": True,
                   "error": f"request larger than {server.MAX_REQUEST} bytes"}
    assert srv.cut["oversized"] == 1 and srv.errors == 1
    assert srv.requests == 0               # it never ran


def test_a_client_that_does_not_read_its_answer_is_cut(served, monkeypatch):
    st, srv, path = served
    monkeypatch.setattr(server, "ANSWER_TIMEOUT", 0.3)
    big = "x" * 4_000_000                  # more than any socket buffer takes at once

    def op_big() -> str:
        return big
    srv.ops["big"] = op_big
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.send(req(op="big"))
    wait_for(lambda: srv.cut["unread"] == 1)
    assert not srv.conns
    assert ask(path, req(op="ping"))["ok"] is True
    s.close()


def test_more_clients_than_max_conns_evict_the_oldest(served, monkeypatch):
    st, srv, path = served
    monkeypatch.setattr(server, "MAX_CONNS", 8)
    socks = []
    for _ in range(20):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        socks.append(s)
    wait_for(lambda: srv.accepted == 20)
    assert ask(path, req(op="ping"))["ok"] is True
    wait_for(lambda: srv.cut["evicted"] == 13)      # 20 + 1 - 8
    for s in socks[:13]:                           # the 13 oldest were closed: all evicted
        s.settimeout(10)
        assert s.recv(10) == b""
    for s in socks:
        s.close()


@pytest.mark.parametrize("raw,usage,needle", [
    (b"[]\n", True, "a request is a JSON object"),
    (b"nonsense\n", True, "Expecting value"),
    (b"\xff\xfe\n", True, "'utf-16-le' codec can't decode byte 0x0a in position 2"),
    (b'{"op": "ifconfig", "args": []}\n', True, "a request is a JSON object"),
    (b'{"op": "frob"}\n', True, "unknown request 'frob' (requests: ping, ifconfig"),
    (b'{"op": "nicinfo", "args": {"ifname": "zz0"}}\n', False, "no interface 'zz0'"),
    (b'{"op": "route", "args": {"add": 5}}\n', True,
     "route: argument 'add' is int, expected str or null"),
    (b'{"op": "ifconfig", "args": {"ifname": "x", "mtu": "9000"}}\n', True,
     "ifconfig: argument 'mtu' is str, expected int or null"),
    (b'{"op": "ifconfig", "args": {"ifname": "x", "up": 1}}\n', True,
     "ifconfig: argument 'up' is int, expected bool or null"),
    (b'{"op": "ifconfig", "args": {"ifname": "x", "caps": [1]}}\n', True,
     "ifconfig: argument 'caps' is list, expected list or null"),
    (b'{"op": "ifconfig", "args": {"ifname": "x", "mtu": true}}\n', True,
     "ifconfig: argument 'mtu' is bool, expected int or null"),
    (b'{"op": "ping", "args": {"x": 1}}\n', True, "ping: unknown argument 'x' (arguments: none)"),
    (b'{"op": "mount", "args": {"driver": "nosuch"}}\n', True,
     "no driver 'nosuch' (looked for devnp-nosuch and devn-nosuch; drivers: "),
    (b'{"op": "route", "args": {"add": "10.0.0.0/33", "gateway": "1.2.3.4"}}\n', True,
     "'10.0.0.0/33' is not an IPv4 address or prefix"),
], ids=lambda v: None if not isinstance(v, bytes) else f"request{len(v)}")
def test_malformed_requests_are_usage_errors_and_leave_no_traceback(served, caplog, raw,
                                                                    usage, needle):
    # The answer *starts* with what names the problem: a bug behind the
    # request would answer "internal error: <Exception>: ..." (and log
    # "control request failed"), which is never a clean error, whatever
    # words follow it.
    st, srv, path = served
    ans = ask(path, raw)
    assert ans["ok"] is False and ans["error"].startswith(needle), ans
    assert "internal error" not in ans["error"]
    assert set(ans) == ({"ok", "usage", "error"} if usage else {"ok", "error"}), ans
    assert ans.get("usage", False) is usage
    assert not [r for r in caplog.records if r.exc_info], "a traceback reached the log"
    assert not [r for r in caplog.records if "control request failed" in r.getMessage()]
    assert (srv.requests, srv.errors) == (1, 1)
    assert ask(path, req(op="ping"))["ok"] is True
    assert (srv.requests, srv.errors) == (2, 1)


def test_request_raises_usage_error_for_a_bad_request(served):
    st, srv, path = served
    with pytest.raises(UsageError, match="unknown argument"):
        control.request("unit", "ping", bogus=1)
    with pytest.raises(control.ControlError) as e:
        control.request("unit", "nicinfo", ifname="zz0")
    assert not e.value.usage


def test_no_such_stack_lists_the_ones_that_run(served):
    with pytest.raises(control.ControlError,
                       match=r"no stack named 'other' is running .*running: unit "
                       r"\(choose with --instance NAME or SOCK=NAME\)"):
        control.request("other", "ping")


@pytest.mark.parametrize("depth", [9, 1000, 30000])
def test_a_request_nested_too_deep_is_a_usage_error_counted_and_not_logged(served, caplog,
                                                                           depth):
    st, srv, path = served
    raw = b'{"op": "ping", "args": {"x": ' + b"[" * depth + b"]" * depth + b"}}\n"
    ans = ask(path, raw)
    assert ans == {"ok": False, "usage": True,
                   "error": f"a request nested deeper than {request.MAX_DEPTH} levels"}, ans
    assert srv.stats()["too_deep"] == 1 and (srv.requests, srv.errors) == (1, 1)
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    assert ask(path, req(op="ping"))["ok"] is True


@pytest.mark.parametrize("text, deep", [
    (b'{"op": "ifconfig", "args": {"ifname": "x", "caps": ["txcsum"]}}', False),
    (b"[" * 8 + b"]" * 8, False),
    (b"[" * 9 + b"]" * 9, True),
    (b'[[{"a": [[[[[["x"]]]]]]}]]', True),             # 9: objects count as arrays do
    (b'{"a": "' + b"[" * 50 + b'"}', False),            # brackets in a string
    (b'{"a": "\\"' + b"[" * 50 + b'"}', False),         # ... after an escaped quote
    (b'{"a": "\\\\", "b": ' + b"[" * 9 + b"]" * 9 + b"}", True),   # an escaped backslash
    (b"[]" * 40, False),                                # many, but side by side
    (b"[" + b"[]" + b"[" * 8 + b"]" * 9, True),         # 9 after a closed pair
    (b"[]" + b"[" * 8 + b"]" * 8, False),               # 8, scanned (9 brackets in all)
], ids=["a-real-request", "8-deep", "9-deep", "objects-count", "in-a-string",
        "after-an-escaped-quote", "after-an-escaped-backslash", "side-by-side",
        "after-a-closed-pair", "8-deep-scanned"])
def test_too_deep_counts_nesting_not_brackets(text, deep):
    assert request.too_deep(text) is deep


def test_a_request_with_a_peer_goes_only_to_that_process(served, tmp_path):
    st, srv, path = served
    assert control.request("unit", "ping", peer=os.getpid())["name"] == "unit"
    with pytest.raises(control.ControlError, match=f"served by pid {os.getpid()}, not by pid 1$"):
        control.request("unit", "ping", peer=1)
    os.symlink(path, tmp_path / "link.sock")
    assert control.request("link", "ping")["name"] == "unit"        # a user may follow it
    with pytest.raises(control.ControlError, match="link.sock is not a socket"):
        control.request("link", "ping", peer=os.getpid())


def test_the_server_removes_its_own_socket_only(tmp_path, monkeypatch):
    """A stack that stops removes the socket it made, not what replaced
    it at that path meanwhile; and it will not start over a non-socket."""
    monkeypatch.setattr(control, "RUN_DIR", str(tmp_path))
    st = Stack("own", nmbclusters=8)
    try:
        srv = ControlServer(st, "own")
        os.unlink(srv.path)
        os.symlink("/nonexistent", srv.path)
        srv.close()
        assert os.path.islink(srv.path)
        with pytest.raises(control.ControlError, match="is in the way: not a socket"):
            ControlServer(st, "own")
        assert os.path.islink(srv.path)
    finally:
        st.close()


@pytest.mark.parametrize("name", ["relé", "a.b", "a b", "a\nb", "", "x" * 33, "١٢"])
def test_instance_names_are_ascii_letters_digits_dash_underscore(name):
    with pytest.raises(ValueError, match="ASCII letters, digits, '-' or '_'"):
        control.check_instance_name(name)
