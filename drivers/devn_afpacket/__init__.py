"""devn-afpacket: a legacy io-net driver for an existing Linux interface
through an AF_PACKET socket (mounted through devnp-shim)."""
from iopkt.dev.autoconf import Driver, Option

from . import devn_afpacket

DRIVER = Driver(
    name="devn-afpacket", kind="legacy",
    description="legacy io-net driver for an existing Linux interface (AF_PACKET): "
                "own receive thread, runs under devnp-shim",
    options={k: Option(type(v), v, devn_afpacket.OPTION_HELP[k])
             for k, v in devn_afpacket.OPTIONS.items()},
    module=devn_afpacket,
)
