"""Driver loading the io-pkt way.

`-d NAME` looks for `devnp-NAME` (a native driver) first, then `devn-NAME`
(a legacy io-net driver, which is mounted through the shim); a full name
(`devnp-tap`, `devn-tap`, `devnp-shim`) picks one directly. Options are
QNX-style `key=value,key=value` strings, checked against what the driver
declares, so a typo is an error that names the option instead of being
silently ignored.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
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


def tap_open_error(driver: str, name: str, e: OSError) -> DeviceError:
    """The one-line reason opening TAP `name` failed with `e`, naming the
    TAP: for EINVAL and EBUSY, what is in the way. Call it in the network
    namespace the TAP was opened in."""
    import errno as E
    what = f"TAP {name}" if name else "a TAP"
    why = os.strerror(e.errno) if e.errno else str(e)
    if e.errno in (E.EINVAL, E.EBUSY) and name:
        kind = _link_kind(name)
        if kind is None:
            pass
        elif e.errno == E.EBUSY:
            why = f"{name} is open already (another stack or program uses it)"
        elif kind == "tap":
            why = f"{name} is a TAP whose flags do not match (multiqueue?)"
        elif kind == "tun":
            why = f"{name} is a TUN (layer 3) device, not a TAP"
        else:
            why = (f"a link named {name} exists and is not a TAP"
                   + (f" (driver {kind})" if kind else ""))
    elif e.errno in (E.EPERM, E.EACCES):
        why += " (needs CAP_NET_ADMIN, or the TAP belongs to another user)"
    elif e.errno == E.ENOENT:
        why += " (/dev/net/tun: is the tun module loaded?)"
    return DeviceError(f"{driver}: cannot open {what}: {why}", e.errno)


def _link_kind(name: str) -> str | None:
    """'tap', 'tun', another driver's name ('' if it has none), or None if
    no link `name` exists in this thread's network namespace (ethtool, not
    /sys, which shows the namespace it was mounted in)."""
    import array
    import fcntl
    import socket
    import struct
    try:
        socket.if_nametoindex(name)
    except OSError:
        return None
    info = array.array("B", struct.pack("I", 3) + bytes(192))    # ETHTOOL_GDRVINFO
    ifr = struct.pack("16sP", name.encode(), info.buffer_info()[0])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s.fileno(), 0x8946, ifr)                 # SIOCETHTOOL
    except OSError:
        return ""
    drv = bytes(info[4:36]).split(b"\0")[0].decode(errors="replace")
    bus = bytes(info[100:132]).split(b"\0")[0].decode(errors="replace")
    return bus if drv == "tun" and bus in ("tap", "tun") else drv


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
    # a driver that parses its own option string: raw_attach(stack, text)
    raw_attach: Callable | None = None

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


def mount(stack, drv: Driver, options: str):
    """Attach driver `drv` to `stack` with the option string `options`,
    the io-pkt way: a native driver directly, a legacy (devn-) driver
    through the shim, which is loaded by itself. Returns the new Ifnet."""
    if drv.kind == "legacy":
        from drivers.legacy_shim import shim
        return shim.mount(stack, drv, options)
    if drv.raw_attach is not None:
        return drv.raw_attach(stack, options)
    return drv.attach(stack, drv.parse_options(options))


def split_options(text: str | None) -> list[str]:
    if not text:
        return []
    return [s for s in (p.strip() for p in text.split(",")) if s]


def available() -> dict[str, Driver]:
    """Every driver under drivers/, and under each folder named in
    IOPKT_DRIVER_PATH (colon-separated; the tests keep their deliberately
    broken drivers there), by full name."""
    import drivers
    found: dict[str, Driver] = {}
    for info in pkgutil.iter_modules(drivers.__path__):
        if info.ispkg:
            _collect(importlib.import_module(f"drivers.{info.name}"), found)
    for folder in filter(None, os.environ.get("IOPKT_DRIVER_PATH", "").split(":")):
        for info in pkgutil.iter_modules([folder]):
            if info.ispkg:
                _collect(_import_from(folder, info.name), found)
    return found


def _collect(mod, found: dict) -> None:
    for d in getattr(mod, "DRIVERS", []):
        found[d.name] = d


def _import_from(folder: str, name: str):
    modname = f"iopkt_extdrv_{name}"
    if modname in sys.modules:
        return sys.modules[modname]
    spec = importlib.util.spec_from_file_location(
        modname, os.path.join(folder, name, "__init__.py"),
        submodule_search_locations=[os.path.join(folder, name)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    return mod


def resolve(name: str) -> Driver:
    """`tap` -> devnp-tap if it exists, else devn-tap; full names as is."""
    drvs = available()
    if name in drvs:
        return drvs[name]
    for cand in (f"devnp-{name}", f"devn-{name}"):
        if cand in drvs:
            return drvs[cand]
    raise DriverError(f"no driver '{name}' (looked for devnp-{name} and "
                      f"devn-{name}; drivers: {', '.join(sorted(drvs))})")
