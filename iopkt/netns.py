"""Network namespaces and links through pyroute2 (netlink, no `ip` shell).

The lab, the benchmark and the tests build hosts with these few calls.
"""

from __future__ import annotations

import contextlib
import os

import pytun
from pyroute2 import IPRoute, NetNS, netns


def ns_list() -> list[str]:
    return list(netns.listnetns())


def ns_exists(name: str) -> bool:
    return name in ns_list()


def ns_create(name: str) -> None:
    """Create namespace `name` with loopback up and IPv6 off (so the hosts
    send nothing we did not ask for: counters stay exact)."""
    netns.create(name)
    netns.pushns(name)
    try:
        for scope in ("all", "default"):
            path = f"/proc/sys/net/ipv6/conf/{scope}/disable_ipv6"
            if os.path.exists(path):        # absent when the kernel has no IPv6
                with open(path, "w") as f:
                    f.write("1")
    finally:
        netns.popns()
    with NetNS(name) as ns:
        ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")


def ns_remove(name: str) -> bool:
    if ns_exists(name):
        netns.remove(name)
        return True
    return False


def ns_path(name: str) -> str:
    return os.path.join(netns.NETNS_RUN_DIR, name)


@contextlib.contextmanager
def inside(name: str):
    """Run the block with the calling thread (only it: setns is per
    thread) in namespace `name`; back where it was afterwards. Sockets and
    TAPs opened in the block belong to `name` and stay there.
    FileNotFoundError if there is no such namespace (never creates one)."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = os.open(ns_path(name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            netns.setns(fd)
        finally:
            os.close(fd)
        try:
            yield
        finally:
            netns.setns(back)
    finally:
        os.close(back)


def tap_create(ns: str, ifname: str) -> None:
    """Create a persistent TAP `ifname` inside `ns`: it outlives whoever
    opens it (a driver's umount), as a NIC stays in the machine, and goes
    with the namespace."""
    with inside(ns):
        tap = pytun.TunTapDevice(name=ifname, flags=pytun.IFF_TAP | pytun.IFF_NO_PI)
        try:
            tap.persist(True)
        finally:
            tap.close()


def link_exists(ifname: str, ns: str | None = None) -> bool:
    if ns and not ns_exists(ns):
        return False            # (NetNS would create it)
    with (NetNS(ns) if ns else IPRoute()) as ip:
        return bool(ip.link_lookup(ifname=ifname))


def link_delete(ifname: str, ns: str | None = None) -> bool:
    """Delete `ifname` in `ns` (None: the root namespace) if it is there
    (a persistent TAP too)."""
    if ns and not ns_exists(ns):
        return False
    with (NetNS(ns) if ns else IPRoute()) as ip:
        idx = ip.link_lookup(ifname=ifname)
        if idx:
            ip.link("del", index=idx[0])
            return True
    return False


def ns_pids(name: str) -> list[int]:
    """The processes whose network namespace is `name` (its inode, as
    /proc/PID/ns/net shows it), this one excepted."""
    try:
        ref = os.stat(ns_path(name))
    except FileNotFoundError:
        return []
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            st = os.stat(f"/proc/{d}/ns/net")
        except OSError:                 # gone, or a zombie
            continue
        if st.st_ino == ref.st_ino and st.st_dev == ref.st_dev:
            out.append(int(d))
    return out


def link_move(ifname: str, ns: str) -> None:
    with IPRoute() as ip:
        idx = ip.link_lookup(ifname=ifname)
        if not idx:
            raise RuntimeError(f"no link {ifname} to move into {ns}")
        ip.link("set", index=idx[0], net_ns_fd=ns)


def host_setup(ns: str, ifname: str, addr: str, plen: int, gateway: str | None,
               mtu: int | None = None) -> None:
    """Configure a host in `ns`: address on `ifname`, link up, default route."""
    with NetNS(ns) as n:
        idx = n.link_lookup(ifname=ifname)[0]
        if mtu:
            n.link("set", index=idx, mtu=mtu)
        n.addr("add", index=idx, address=addr, prefixlen=plen)
        n.link("set", index=idx, state="up")
        if gateway:
            n.route("add", dst="default", gateway=gateway)


def veth_pair(a: str, b: str) -> None:
    with IPRoute() as ip:
        ip.link("add", ifname=a, kind="veth", peer=b)


def ns_sysctl(ns: str, key: str, value: str) -> None:
    """Write /proc/sys/<key> inside `ns` (key with slashes)."""
    netns.pushns(ns)
    try:
        with open(os.path.join("/proc/sys", key), "w") as f:
            f.write(value)
    finally:
        netns.popns()


def ns_popen(ns: str | None, cmd: list[str], cpus: set[int] | None = None, **kw):
    """subprocess.Popen of `cmd` inside namespace `ns` (None: this one),
    optionally pinned to `cpus`. The child joins the namespace before exec,
    as `ip netns exec` would, without a shell."""
    import subprocess

    def child():
        if ns:
            netns.setns(ns)
        if cpus:
            os.sched_setaffinity(0, cpus)

    return subprocess.Popen(cmd, preexec_fn=child, **kw)


def link_rate(ns: str, ifname: str, mbps: int) -> None:
    """Limit what `ifname` in `ns` sends to `mbps` Mbit/s with a token
    bucket qdisc (the link partner's half of link-speed emulation)."""
    with NetNS(ns) as n:
        idx = n.link_lookup(ifname=ifname)[0]
        rate = mbps * 1_000_000 // 8
        n.tc("add", "tbf", index=idx, handle="1:", rate=f"{mbps}mbit",
             burst=max(32 * 1024, rate // 250), latency="20ms")


def qdisc_kinds(ns: str, ifname: str) -> list[str]:
    with NetNS(ns) as n:
        idx = n.link_lookup(ifname=ifname)[0]
        return [q.get_attr("TCA_KIND") for q in n.get_qdiscs(index=idx)]


def veth_create(ifname: str, ns: str, peer: str, peer_ns: str) -> None:
    """A veth pair made where its ends belong: `ifname` in `ns`, `peer` in
    `peer_ns` (neither passes through the root namespace). Deleting either
    end, or removing either namespace, removes both."""
    with NetNS(ns) as n:
        n.link("add", ifname=ifname, kind="veth",
               peer={"ifname": peer, "net_ns_fd": peer_ns})


def link_up(ns: str, ifname: str) -> None:
    """Set `ifname` in `ns` up, without an address."""
    with NetNS(ns) as n:
        n.link("set", index=n.link_lookup(ifname=ifname)[0], state="up")


# ethtool's one-flag commands (struct ethtool_value {u32 cmd; u32 data}),
# as `ethtool -k/-K` names the features: (get, set).
_ETHTOOL_FLAGS = {"tx": (0x16, 0x17),       # tx-checksumming (TSO depends on it)
                  "tso": (0x1e, 0x1f),      # tcp-segmentation-offload
                  "gso": (0x23, 0x24),      # generic-segmentation-offload
                  "gro": (0x2b, 0x2c)}      # generic-receive-offload
_SIOCETHTOOL = 0x8946


def _ethtool_value(ifname: str, cmd: int, data: int = 0) -> int:
    import array
    import fcntl
    import socket
    import struct
    buf = array.array("B", struct.pack("II", cmd, data))
    ifr = struct.pack("16sP", ifname.encode(), buf.buffer_info()[0])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), _SIOCETHTOOL, ifr)
    return struct.unpack("II", buf)[1]


def set_offloads(ns: str, ifname: str, **features: bool) -> None:
    """`ethtool -K IF tx off tso off ...` for `ifname` in `ns`, through the
    ioctl (no ethtool binary needed): keys tx, tso, gso, gro."""
    with inside(ns):
        for name, on in features.items():
            _ethtool_value(ifname, _ETHTOOL_FLAGS[name][1], int(bool(on)))


def get_offloads(ns: str, ifname: str) -> dict[str, bool]:
    """`ethtool -k IF` for the features set_offloads knows."""
    with inside(ns):
        return {name: bool(_ethtool_value(ifname, get))
                for name, (get, _) in _ETHTOOL_FLAGS.items()}
