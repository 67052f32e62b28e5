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
     "route: unknown argument 'via' (arguments: add, delete, gateway, ifname, family)"),
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
