"""The stack loop and the control server keep going when something behind
them fails; martian sources get no answer."""

import json
import os

from iopkt.control import ControlServer
from iopkt.stack import Stack


def test_a_raising_handler_is_counted_and_the_loop_goes_on():
    st = Stack("unit", nmbclusters=8)
    r, w = os.pipe()
    calls = []

    def bad(_ev):
        calls.append(os.read(r, 1))
        raise RuntimeError("driver bug")
    st.interrupt_attach(r, bad)
    os.write(w, b"ab")                      # two events' worth
    st.timeout(0.1, st.stop)
    st.run()
    assert len(calls) == 2                  # called again after the first raise
    assert list(st.handler_errors.values()) == [2]
    st.interrupt_detach(r)
    os.close(r)
    os.close(w)
    st.close()


def test_malformed_control_requests_get_an_error_not_a_dead_stack(tmp_path, monkeypatch):
    import iopkt.control as control
    monkeypatch.setattr(control, "RUN_DIR", str(tmp_path))
    st = Stack("unit", nmbclusters=8)
    srv = ControlServer(st, "unit")
    try:
        for raw in (b"[]\n", b"nonsense\n", b'{"op": "ifconfig", "args": []}\n',
                    b'{"op": "nicinfo", "args": {"ifname": "zz0"}}\n',
                    b'{"op": "frob"}\n'):
            ans = srv.handle(raw)
            assert ans["ok"] is False and ans["error"], raw
        assert srv.handle(json.dumps({"op": "ping"}).encode())["ok"] is True
    finally:
        srv.close()
        st.close()
