"""devnp-afpacket: the native AF_PACKET driver (PACKET_MMAP rings, runs in the stack thread)."""
from .attach import DRIVER as DRIVER
