"""devnp-shim: io-net emulation for legacy (devn-) drivers.

`-d tap` finds devnp-tap first; `-d devn-tap` (or any legacy driver) is
mounted through the shim automatically; `-d shim "devn-tap OPTIONS"` asks
for the shim explicitly, as io-pkt's `-d shim` does.
"""
from iopkt.dev.autoconf import Driver, DriverError, Option

from . import shim


def _attach_raw(stack, options: str):
    from iopkt.stack.drvload import resolve
    name, _, rest = (options or "").strip().partition(" ")
    if not name:
        raise DriverError('devnp-shim: name the legacy driver: -d shim "devn-NAME OPTIONS"')
    drv = resolve(name)
    if drv.kind != "legacy":
        raise DriverError(f"devnp-shim: {drv.name} is not a legacy io-net driver")
    return shim.mount(stack, drv, rest.strip())


DRIVER = Driver(
    name="devnp-shim", kind="native",
    description="io-net emulation: runs a legacy devn- driver (-d shim \"devn-NAME OPTS\")",
    options={k: Option(t, d, h) for k, (t, d, h) in shim.SHIM_OPTIONS.items()},
    raw_attach=_attach_raw,
)
DRIVERS = [DRIVER]
