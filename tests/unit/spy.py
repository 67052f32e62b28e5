"""Counting the work a path does: which calls a fast path spares (a route
lookup, a pullup, the full header check) is part of what it promises, and
a test can only see it by counting the calls."""


def calls(monkeypatch, obj, name: str) -> list:
    """From now on, each call of `obj.name` is recorded (its positional
    arguments, a tuple) in the list returned; the real method still runs."""
    seen = []
    real = getattr(obj, name)

    def spy(*args, **kw):
        seen.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(obj, name, spy)
    return seen


class CountingDict(dict):
    """A dict that counts its membership tests (`key in d`)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.asked = 0

    def __contains__(self, key) -> bool:
        self.asked += 1
        return super().__contains__(key)
