"""devn-tap: a legacy io-net TAP driver (mounted through devnp-shim)."""
from iopkt.dev.autoconf import Driver, Option

from . import devn_tap

DRIVER = Driver(
    name="devn-tap", kind="legacy",
    description="legacy io-net TAP driver: own receive thread, runs under devnp-shim",
    options={k: Option(type(v), v, devn_tap.OPTION_HELP[k]) for k, v in devn_tap.OPTIONS.items()},
    module=devn_tap,
)
