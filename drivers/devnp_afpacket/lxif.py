"""What devnp-afpacket asks Linux about its interface, through the socket
(linux/sockios.h, linux/if.h): its name by index, flags and MTU."""

from __future__ import annotations

import fcntl
import struct

# -- linux/sockios.h, linux/if.h ----------------------------------------------
SIOCGIFNAME = 0x8910
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCGIFMTU = 0x8921
SIOCGIFHWADDR = 0x8927
SIOCGIFINDEX = 0x8933
LX_IFF_UP = 0x1
LX_IFF_RUNNING = 0x40               # up and carrier (netif_oper_up)
IFREQ = 40


# -- the interface's facts, through the socket --------------------------------
def _ifreq(name: str = "", data: bytes = b"") -> bytearray:
    b = bytearray(IFREQ)
    n = name.encode()
    b[:len(n)] = n
    b[16:16 + len(data)] = data
    return b


def lx_ioctl(fd: int, req: int, name: str = "", data: bytes = b"") -> bytearray:
    b = _ifreq(name, data)
    fcntl.ioctl(fd, req, b)
    return b


def lx_name(fd: int, ifindex: int) -> str:
    b = lx_ioctl(fd, SIOCGIFNAME, "", struct.pack("i", ifindex))
    return bytes(b[:16]).split(b"\0")[0].decode()


def lx_link(fd: int, ifindex: int) -> tuple[str, int, int]:
    """(name, flags, mtu) of the interface, by index (it may be renamed).
    OSError ENODEV when it is gone."""
    name = lx_name(fd, ifindex)
    flags = struct.unpack_from("H", lx_ioctl(fd, SIOCGIFFLAGS, name), 16)[0]
    mtu = struct.unpack_from("i", lx_ioctl(fd, SIOCGIFMTU, name), 16)[0]
    return name, flags, mtu
