"""A control request, from the bytes a client sent to the operation it
names and the arguments it passes, checked before anything runs:

    {"op": NAME, "args": {KEY: VALUE, ...}}

Whatever is wrong with it is the client's error (UsageError: the CLI exits
2), never a traceback in the stack's log: JSON nested deeper than MAX_DEPTH
(refused before parsing, as json.loads would recurse once per level), text
that is not JSON, an object of another shape, an unknown operation, an
argument the operation does not take or of the wrong JSON type (the
operation's type hints say which).
"""

from __future__ import annotations

import json
import re
import typing
from typing import Callable

from iopkt.ctl.control import UsageError

MAX_DEPTH = 8               # nesting of a request's JSON; deeper is refused, unparsed


class TooDeep(UsageError):
    """A request nested deeper than MAX_DEPTH (counted apart: too_deep)."""


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


def parse(data: bytes, ops: dict[str, Callable]) -> tuple[str, Callable, dict]:
    """(name, operation, arguments) of the request `data`, its arguments
    checked against the operation (ops: name -> op_NAME). UsageError
    (TooDeep for nesting) or ValueError (not JSON) for a bad request."""
    if too_deep(data):
        raise TooDeep(f"a request nested deeper than {MAX_DEPTH} levels")
    req = json.loads(data)
    if not isinstance(req, dict) or not isinstance(req.get("args", {}), dict):
        raise UsageError("a request is a JSON object {\"op\": ..., \"args\": {...}}")
    name = req.get("op")
    op = ops.get(name)
    if op is None:
        raise UsageError(f"unknown request {name!r} (requests: {', '.join(ops)})")
    args = req.get("args", {})
    check_args(op, args)
    return name, op, args


def check_args(op, args: dict) -> None:
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
