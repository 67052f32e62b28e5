"""devnp-tap: the native TAP driver (io-pkt style, runs in the stack thread)."""
from .devnp_tap import DRIVER as DRIVER
