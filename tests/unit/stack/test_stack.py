"""The stack loop and the control server keep going when something behind
them fails; martian sources get no answer."""

import json
import os

from iopkt.ctl.server import ControlServer
from iopkt.stack.stack import Stack


def test_a_raising_handler_is_counted_and_the_loop_goes_on():
    st = Stack("unit", nmbclusters=8)
    r, w = os.pipe()
    calls = []

    def bad(_ev):
        calls.append(os.read(r, 1))
        if len(calls) == 2:
            st.stop()
        raise RuntimeError("driver bug")
    st.interrupt_attach(r, bad)
    os.write(w, b"ab")                      # two events' worth
    # A bound for a broken loop only: a descheduled test must not fail.
    st.timeout(30, st.stop)
    st.run()
    assert len(calls) == 2                  # called again after the first raise
    assert list(st.handler_errors.values()) == [2]
    st.interrupt_detach(r)
    os.close(r)
    os.close(w)
    st.close()


JSON_OBJECT = 'a request is a JSON object {"op": ..., "args": {...}}'

# Each malformed request and the one clean answer it must get: a usage
# error naming what is wrong, or (a well-formed request for something that
# is not there) a plain error. "internal error: ..." is what a bug behind a
# request gets: it is never an acceptable answer to bad input.
MALFORMED = [
    (b"[]\n", True, JSON_OBJECT),
    (b"nonsense\n", True, "Expecting value: line 1 column 1 (char 0)"),
    (b'{"op": "ifconfig", "args": []}\n', True, JSON_OBJECT),
    (b'{"op": "nicinfo", "args": {"ifname": "zz0"}}\n', False,
     "no interface 'zz0' (interfaces: none)"),
    (b'{"op": "frob"}\n', True, "unknown request 'frob' (requests: ping, "),
    (b'{"op": "ping", "args": {"x": 1}}\n', True, "ping: unknown argument 'x' (arguments: none)"),
    (b'{"args": {}}\n', True, "unknown request None (requests: ping, "),
]


def test_malformed_control_requests_get_an_error_not_a_dead_stack(tmp_path, monkeypatch, caplog):
    import iopkt.ctl.control as control
    monkeypatch.setattr(control, "RUN_DIR", str(tmp_path))
    st = Stack("unit", nmbclusters=8)
    srv = ControlServer(st, "unit")
    try:
        for raw, usage, error in MALFORMED:
            ans = srv.handle(raw)
            want = {"ok": False, "usage": True} if usage else {"ok": False}
            assert {k: v for k, v in ans.items() if k != "error"} == want, (raw, ans)
            assert ans["error"].startswith(error), (raw, ans)
            assert not ans["error"].startswith("internal error"), (raw, ans)
        assert (srv.requests, srv.errors) == (len(MALFORMED), len(MALFORMED))
        assert not [r for r in caplog.records if "control request failed" in r.getMessage()]
        ans = srv.handle(json.dumps({"op": "ping"}).encode())
        assert ans["ok"] is True and ans["result"]["name"] == "unit"
        assert (srv.requests, srv.errors) == (len(MALFORMED) + 1, len(MALFORMED))
    finally:
        srv.close()
        st.close()
