"""Driver loading the io-pkt way.

`-d NAME` looks for `devnp-NAME` (a native driver) first, then `devn-NAME`
(a legacy io-net driver, which is mounted through the shim); a full name
(`devnp-tap`, `devn-tap`, `devnp-shim`) picks one directly. Options are
QNX-style `key=value,key=value` strings, checked against what the driver
declares (dev/autoconf.py).

Drivers are found through the entry-point group `iopkt.drivers` (each
entry names a Driver: `devnp-tap = "devnp_tap:DRIVER"`), so a driver from
another distribution installs with pip like ours; and in the folders named
by IOPKT_DRIVER_PATH (colon-separated), each package there exporting
DRIVER or DRIVERS, for a driver in a plain folder (the tests keep their
deliberately broken drivers there). A driver that will not load is left
out and its error kept in `load_errors`; the others still work.

A legacy driver is mounted through the driver that runs io-net drivers
(the one with `legacy_attach`: devnp-shim), found the same way, so the
shim and this module never import each other.
"""

from __future__ import annotations

import importlib.util
import os
import pkgutil
import sys
from importlib.metadata import entry_points

from iopkt.dev.autoconf import Driver, DriverError

GROUP = "iopkt.drivers"
load_errors: dict[str, str] = {}      # entry point or folder -> why it did not load


def mount(stack, drv: Driver, options: str):
    """Attach driver `drv` to `stack` with the option string `options`,
    the io-pkt way: a native driver directly, a legacy (devn-) driver
    through the shim, which is loaded by itself; the shim named itself
    (`-d shim "devn-NAME OPTIONS"`) runs the legacy driver named first.
    Returns the new Ifnet."""
    if drv.kind == "legacy":
        return _shim(drv).legacy_attach(stack, drv, options)
    if drv.legacy_attach is not None:
        name, _, rest = (options or "").strip().partition(" ")
        if not name:
            raise DriverError(f'{drv.name}: name the legacy driver: -d shim "devn-NAME OPTIONS"')
        legacy = resolve(name)
        if legacy.kind != "legacy":
            raise DriverError(f"{drv.name}: {legacy.name} is not a legacy io-net driver")
        return drv.legacy_attach(stack, legacy, rest.strip())
    return drv.attach(stack, drv.parse_options(options))


def _shim(legacy: Driver) -> Driver:
    """The driver that runs io-net drivers, to mount `legacy` through."""
    hosts = [d for d in available().values() if d.legacy_attach is not None]
    if not hosts:
        raise DriverError(f"{legacy.name} is a legacy io-net driver, and no driver that runs "
                          "them (devnp-shim) is installed")
    return hosts[0]


def available() -> dict[str, Driver]:
    """Every driver that loads, by full name: the entry points of group
    iopkt.drivers, then the packages in IOPKT_DRIVER_PATH's folders."""
    found: dict[str, Driver] = {}
    load_errors.clear()
    for ep in entry_points(group=GROUP):
        try:
            drv = ep.load()
        except Exception as e:              # someone else's driver: said, not fatal
            load_errors[ep.name] = f"{ep.value}: {type(e).__name__}: {e}"
            continue
        if not isinstance(drv, Driver) or drv.name != ep.name:
            load_errors[ep.name] = f"{ep.value} is not the Driver named {ep.name}"
            continue
        found[drv.name] = drv
    for folder in filter(None, os.environ.get("IOPKT_DRIVER_PATH", "").split(":")):
        for info in pkgutil.iter_modules([folder]):
            if info.ispkg:
                mod = _import_from(folder, info.name)
                for d in getattr(mod, "DRIVERS", None) or [mod.DRIVER]:
                    found[d.name] = d
    return found


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
