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
    """A driver cannot be found or its options are wrong. str() is the
    one-line message a user sees."""


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

    def options_help(self) -> str:
        return "\n".join(f"  {k}={o.type.__name__:5} {o.help} (default {o.default!r})"
                         for k, o in self.options.items() if isinstance(o, Option))


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
