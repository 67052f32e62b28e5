"""Driver loading the io-pkt way.

`-d NAME` looks for `devnp-NAME` (a native driver) first, then `devn-NAME`
(a legacy io-net driver, which is mounted through the shim); a full name
(`devnp-tap`, `devn-tap`, `devnp-shim`) picks one directly. Options are
QNX-style `key=value,key=value` strings, checked against what the driver
declares (dev/autoconf.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys

from iopkt.dev.autoconf import Driver, DriverError


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
