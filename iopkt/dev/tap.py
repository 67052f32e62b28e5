"""What the TAP drivers (devnp-tap, devn-tap) share: the one-line reason a
TAP would not open, naming what is in the way."""

from __future__ import annotations

import os

from iopkt.dev.autoconf import DeviceError


def tap_open_error(driver: str, name: str, e: OSError) -> DeviceError:
    """The one-line reason opening TAP `name` failed with `e`, naming the
    TAP: for EINVAL and EBUSY, what is in the way. Call it in the network
    namespace the TAP was opened in."""
    import errno as E
    what = f"TAP {name}" if name else "a TAP"
    why = os.strerror(e.errno) if e.errno else str(e)
    if e.errno in (E.EINVAL, E.EBUSY) and name:
        kind = _link_kind(name)
        if kind is None:
            pass
        elif e.errno == E.EBUSY:
            why = f"{name} is open already (another stack or program uses it)"
        elif kind == "tap":
            why = f"{name} is a TAP whose flags do not match (multiqueue?)"
        elif kind == "tun":
            why = f"{name} is a TUN (layer 3) device, not a TAP"
        else:
            why = (f"a link named {name} exists and is not a TAP"
                   + (f" (driver {kind})" if kind else ""))
    elif e.errno in (E.EPERM, E.EACCES):
        why += " (needs CAP_NET_ADMIN, or the TAP belongs to another user)"
    elif e.errno == E.ENOENT:
        why += " (/dev/net/tun: is the tun module loaded?)"
    return DeviceError(f"{driver}: cannot open {what}: {why}", e.errno)


def _link_kind(name: str) -> str | None:
    """'tap', 'tun', another driver's name ('' if it has none), or None if
    no link `name` exists in this thread's network namespace (ethtool, not
    /sys, which shows the namespace it was mounted in)."""
    import array
    import fcntl
    import socket
    import struct
    try:
        socket.if_nametoindex(name)
    except OSError:
        return None
    info = array.array("B", struct.pack("I", 3) + bytes(192))    # ETHTOOL_GDRVINFO
    ifr = struct.pack("16sP", name.encode(), info.buffer_info()[0])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s.fileno(), 0x8946, ifr)                 # SIOCETHTOOL
    except OSError:
        return ""
    drv = bytes(info[4:36]).split(b"\0")[0].decode(errors="replace")
    bus = bytes(info[100:132]).split(b"\0")[0].decode(errors="replace")
    return bus if drv == "tun" and bus in ("tap", "tun") else drv
