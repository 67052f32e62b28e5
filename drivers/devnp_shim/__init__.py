"""devnp-shim: io-net emulation for legacy (devn-) drivers.

`-d tap` finds devnp-tap first; `-d devn-tap` (or any legacy driver) is
mounted through the shim automatically; `-d shim "devn-tap OPTIONS"` asks
for the shim explicitly, as io-pkt's `-d shim` does. Either way io-pkt's
driver loading (iopkt/stack/drvload.py) finds the shim by its
legacy_attach and hands it the legacy driver: the shim imports none of it.
"""
from iopkt.dev.autoconf import Driver, Option

from . import shim

DRIVER = Driver(
    name="devnp-shim", kind="native",
    description="io-net emulation: runs a legacy devn- driver (-d shim \"devn-NAME OPTS\")",
    options={k: Option(t, d, h) for k, (t, d, h) in shim.SHIM_OPTIONS.items()},
    legacy_attach=shim.mount,
)
