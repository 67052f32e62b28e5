"""ctl/request.py alone: a control request parsed and checked against the
real operations' type hints, without a stack or a socket."""

import pytest

from iopkt.ctl import request
from iopkt.ctl.control import UsageError
from iopkt.ctl.ops import Ops

OPS = {"ping": Ops.op_ping, "ifconfig": Ops.op_ifconfig, "route": Ops.op_route}


def test_a_good_request_gives_its_operation_and_arguments():
    name, op, args = request.parse(b'{"op": "ifconfig", "args": {"ifname": "x", '
                                   b'"caps": ["tso4", "-txcsum"], "mtu": 1400}}', OPS)
    assert (name, op, args) == ("ifconfig", Ops.op_ifconfig,
                                {"ifname": "x", "caps": ["tso4", "-txcsum"], "mtu": 1400})
    assert request.parse(b'{"op": "ping"}', OPS) == ("ping", Ops.op_ping, {})


@pytest.mark.parametrize("text, message", [
    (b'{"op": "ping", "args": {"return": {}}}',
     "ping: unknown argument 'return' (arguments: none)"),
    (b'{"op": "route", "args": {"via": "x"}}',
     "route: unknown argument 'via' (arguments: add, delete, gateway, ifname, family, "
     "change, interface)"),
    (b'{"op": "ifconfig", "args": {"caps": ["tso4", 4]}}',
     "ifconfig: argument 'caps' is list, expected list or null"),
    (b'{"op": "ifconfig", "args": {"up": 1}}',
     "ifconfig: argument 'up' is int, expected bool or null"),
    (b'{"op": "frob"}', "unknown request 'frob' (requests: ping, ifconfig, route)"),
    (b'{"op": "ping", "args": [1]}', 'a request is a JSON object {"op": ..., "args": {...}}'),
    (b'[' * 9 + b']' * 9, "a request nested deeper than 8 levels"),
], ids=["return-is-no-argument", "unknown-argument", "a-list-of-not-only-strings",
        "an-int-for-a-bool", "unknown-operation", "args-not-an-object", "too-deep"])
def test_a_bad_request_is_a_usage_error_that_names_the_problem(text, message):
    with pytest.raises(UsageError) as e:
        request.parse(text, OPS)
    assert str(e.value) == message
    assert isinstance(e.value, request.TooDeep) == message.startswith("a request nested")


def test_an_argument_hint_may_name_the_items_of_its_list():
    # An operation may say list[str] as well as list: its argument is still
    # checked as a list (of strings).
    def op_tag(self, names: list[str] | None = None) -> dict:
        return {}

    request.check_args(op_tag, {"names": ["a", "b"]})
    request.check_args(op_tag, {"names": None})
    with pytest.raises(UsageError) as e:
        request.check_args(op_tag, {"names": "a"})
    assert str(e.value) == "tag: argument 'names' is str, expected list or null"


def test_a_request_of_at_most_max_depth_brackets_is_not_scanned(monkeypatch):
    # Counting the brackets is enough when there are no more than MAX_DEPTH
    # of them: the scan (strings removed first) is for the rest only.
    scans = []
    real = request._STRINGS

    class Strings:
        def sub(self, *a):
            scans.append(a)
            return real.sub(*a)

    monkeypatch.setattr(request, "_STRINGS", Strings())
    assert request.too_deep(b"[" * 8 + b"]" * 8) is False
    assert request.too_deep(b'{"op": "ifconfig", "args": {"caps": ["tso4"]}}') is False
    assert scans == []
    text = b'[["a"], ' + b"[" * 7 + b"]" * 7 + b"]"         # 9 brackets, 8 deep:
    assert request.too_deep(text) is False                      # scanned, strings removed
    assert scans == [(b"", text)]
