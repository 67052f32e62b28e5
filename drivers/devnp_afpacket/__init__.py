"""devnp-afpacket: the native AF_PACKET driver (PACKET_MMAP rings, runs in the stack thread)."""
from .devnp_afpacket import DRIVER as DRIVER
