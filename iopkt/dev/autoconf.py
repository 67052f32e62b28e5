"""autoconf: how a driver describes itself to io-pkt, after NetBSD's
kern/subr_autoconf.c: its name, kind and options (Driver, Option), the
QNX-style option string `key=value,key=value`, checked against what the
driver declares so a typo names the option, and the errors a driver
raises (DriverError: a usage error; DeviceError: its device at run time).
Every driver imports this; it imports nothing of iopkt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


class DriverError(ValueError):
    """A driver cannot be found or its options are wrong (a usage error:
    the CLI exits 2). str() is the one-line message a user sees."""


class DeviceError(OSError):
    """A driver cannot get its device at run time, e.g. its TAP (the CLI
    exits 1). str() is the one-line message, naming the driver and the
    device; .errno is the system's."""

    def __init__(self, msg: str, err: int | None = None):
        super().__init__(msg)
        self.errno = err


def check_ifname(driver: str, key: str, name: str) -> str:
    """A kernel interface name, as dev_valid_name() takes it, or DriverError."""
    if name and (len(name) > 15 or name in (".", "..")
                 or any(c in "/:" or c.isspace() for c in name)):
        raise DriverError(f"{driver}: option {key}={name}: an interface name is 1-15 "
                          "characters, not '.' or '..', without '/', ':' or spaces")
    return name


@dataclass
class Option:
    type: type
    default: Any
    help: str

    def parse(self, driver: str, key: str, text: str | None):
        if self.type is bool:
            if text is None or text.lower() in ("1", "yes", "on", "true"):
                return True
            if text.lower() in ("0", "no", "off", "false"):
                return False
            raise DriverError(f"{driver}: option {key}={text}: expected 0 or 1")
        if text is None:
            raise DriverError(f"{driver}: option {key} needs a value ({key}=...)")
        try:
            return self.type(text)
        except ValueError:
            raise DriverError(f"{driver}: option {key}={text}: expected "
                              f"{self.type.__name__}") from None


@dataclass
class Driver:
    name: str                       # devnp-tap, devn-tap, devnp-shim
    kind: str                       # "native" or "legacy"
    description: str
    options: dict[str, Option] = field(default_factory=dict)
    # native: attach(stack, opts: dict) -> Ifnet
    # legacy: module object with init(dll_hdl, ion, options) / shutdown
    attach: Callable | None = None
    module: Any = None
    # a native driver that runs io-net drivers (devnp-shim):
    # legacy_attach(stack, legacy: Driver, options: str) -> Ifnet
    legacy_attach: Callable | None = None

    def parse_options(self, text: str | None) -> dict:
        """'a=1,b=2' -> {'a': 1, 'b': 2} with defaults filled in."""
        opts = {k: o.default for k, o in self.options.items()}
        for item in split_options(text):
            key, eq, value = item.partition("=")
            key = key.strip()
            if key not in self.options:
                known = ", ".join(sorted(self.options)) or "none"
                raise DriverError(f"{self.name}: unknown option '{key}' "
                                  f"(options: {known})")
            opts[key] = self.options[key].parse(self.name, key, value if eq else None)
        return opts

    def options_help(self, width: int = 0) -> str:
        """One line per option, 'key=type' padded to `width` (at least the
        longest here), so the help starts in one column; the default once:
        as the help says it ('(default: ...)'), else as the option is written
        (0/1 for a flag, 'none' for an empty string)."""
        opts = [(f"{k}={o.type.__name__}", o) for k, o in self.options.items()
                if isinstance(o, Option)]
        width = max([width] + [len(kt) for kt, _ in opts])
        return "\n".join(f"  {kt:{width}}  {(o.help + _default_note(o)).strip()}"
                         for kt, o in opts)


def _default_note(o: Option) -> str:
    if "(default" in o.help:
        return ""                           # the help says it in its own words
    if isinstance(o.default, bool):
        shown = int(o.default)
    elif o.default == "":
        shown = "none"
    else:
        shown = o.default
    return f" (default: {shown})"


def split_options(text: str | None) -> list[str]:
    if not text:
        return []
    return [s for s in (p.strip() for p in text.split(",")) if s]
