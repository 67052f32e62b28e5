"""Network namespaces and links through pyroute2 (netlink, no `ip` shell).

The lab, the benchmark and the tests build hosts with these few calls.

A namespace is made in two steps, so that whoever makes it can write down
what it is before it has a name anyone else could use (ownership.py):
ns_new() gives an fd to a new namespace that has no name yet, ns_ident()
says which it is (nsfs inode and device, and the cookie the kernel never
reuses), ns_attach() names it, as `ip netns add` would. ns_lookup() says
what a name leads to now, and ns_mounts() every path that names one
namespace, aliases (`ip netns attach`) included.
"""

from __future__ import annotations

import ctypes
import os
import socket
import stat
import struct
import threading
from typing import NamedTuple

import pytun
from pyroute2 import IPRoute, NetNS, netns

from iopkt.dev.netns import inside, ns_path  # noqa: F401 (netns.inside, netns.ns_path)

_CLONE_NEWNET = 0x40000000
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_SHARED = 1 << 20
_SO_NETNS_COOKIE = 71       # Linux 5.14+: a namespace's id, never reused
_libc = None


class NsId(NamedTuple):
    """Which namespace: its nsfs inode and device (what /proc/PID/ns/net
    shows) and its cookie (None on kernels without SO_NETNS_COOKIE). An
    inode number is reused once a namespace is gone; a cookie is not."""
    ino: int
    dev: int
    cookie: int | None


class NsFile(NamedTuple):
    """A name that leads to an empty plain file, not to a namespace: what
    a crash between the two steps of ns_attach leaves. `ctime`: when the
    file was made."""
    ctime: float


def _c():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _in_thread(fn):
    """fn() in a thread of its own, which ends with it: unshare(2) and
    setns(2) there change that thread's namespace only, and nothing has to
    be put back. Returns fn's result or raises its exception."""
    out: dict = {}

    def run():
        try:
            out["r"] = fn()
        except BaseException as e:          # noqa: B036 (handed to the caller)
            out["e"] = e

    t = threading.Thread(target=run, name="iopkt-netns")
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out["r"]


def _cookie() -> int | None:
    """The cookie of the calling thread's namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            return struct.unpack("Q", s.getsockopt(socket.SOL_SOCKET, _SO_NETNS_COOKIE, 8))[0]
        except OSError:                     # ENOPROTOOPT: an older kernel
            return None


def ns_new() -> int:
    """A new network namespace without a name: an fd (O_CLOEXEC) that
    keeps it alive until closed, or until ns_attach() names it."""
    def make():
        _check(_c().unshare(_CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    return _in_thread(make)


def ns_ident(fd: int) -> NsId:
    """Which namespace the fd (of a netns) stands for. OSError (EINVAL)
    if it is no network namespace."""
    st = os.fstat(fd)

    def look():
        _check(_c().setns(fd, _CLONE_NEWNET), "setns")
        return _cookie()
    return NsId(st.st_ino, st.st_dev, _in_thread(look))


def ns_self() -> NsId:
    """The namespace of the calling thread."""
    fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return ns_ident(fd)
    finally:
        os.close(fd)


def host_ns() -> set[tuple[int, int]]:
    """(inode, device) of the namespaces no lab may ever empty: this
    process's own and, where it may be read, PID 1's (the machine's)."""
    out = set()
    for path in ("/proc/self/ns/net", "/proc/1/ns/net"):
        try:
            st = os.stat(path)
        except OSError:                 # PID 1's: hidden from a container's root
            continue
        out.add((st.st_ino, st.st_dev))
    return out


def _share_run_dir() -> None:
    """/run/netns as iproute2 keeps it: a shared mount, so that names
    made here show in every mount namespace."""
    d = netns.NETNS_RUN_DIR.encode()
    os.makedirs(d, mode=0o755, exist_ok=True)
    if _c().mount(b"", d, b"none", _MS_SHARED | _MS_REC, None) != 0:
        _check(_c().mount(d, d, b"none", _MS_BIND | _MS_REC, None), f"bind {d.decode()}")
        _check(_c().mount(b"", d, b"none", _MS_SHARED | _MS_REC, None), f"share {d.decode()}")


def ns_attach(fd: int, name: str) -> None:
    """Name the namespace of `fd` `name` (a bind mount at /run/netns/NAME,
    as `ip netns add` and `ip netns attach` make). FileExistsError if the
    name is taken; never replaces anything."""
    _share_run_dir()
    path = ns_path(name)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
    try:
        _check(_c().mount(f"/proc/self/fd/{fd}".encode(), path.encode(), b"none",
                          _MS_BIND, None), f"mount {path}")
    except BaseException:
        os.unlink(path)
        raise


def ns_lookup(name: str) -> NsId | NsFile | str | None:
    """What the name `name` leads to now: the namespace's NsId; NsFile
    for a plain empty file (a name whose mount never came: a crash in
    ns_attach); "other" for anything else; None if there is no such name."""
    path = ns_path(name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError:
        return "other"
    try:
        st = os.fstat(fd)
        if st.st_dev != os.stat("/proc/self/ns/net").st_dev:
            empty = stat.S_ISREG(st.st_mode) and st.st_size == 0
            return NsFile(st.st_ctime) if empty else "other"
        try:
            return ns_ident(fd)
        except OSError:                     # nsfs, but not a network namespace
            return "other"
    finally:
        os.close(fd)


def ns_mounts(ino: int) -> list[str]:
    """Every path in this mount namespace that names the network namespace
    of inode `ino` (the nsfs mounts /proc/self/mountinfo lists), once each."""
    root = f"net:[{ino}]"
    out: list[str] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields = pre.split()
            if post.split()[:1] == ["nsfs"] and fields[3] == root:
                path = fields[4].encode().decode("unicode_escape")      # \040 and friends
                if path not in out:
                    out.append(path)
    return out


def ns_list() -> list[str]:
    return list(netns.listnetns())


def ns_exists(name: str) -> bool:
    return name in ns_list()


def ns_create(name: str) -> NsId:
    """Create namespace `name` (FileExistsError if the name is taken), set
    up as ns_setup() does. Returns which namespace it is."""
    fd = ns_new()
    try:
        ident = ns_ident(fd)
        ns_attach(fd, name)
    finally:
        os.close(fd)
    ns_setup(name)
    return ident


def ns_setup(name: str) -> None:
    """Loopback up and IPv6 off in namespace `name` (so the hosts send
    nothing we did not ask for: counters stay exact)."""
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


def ns_ipv6(name: str) -> None:
    """IPv6 back on in namespace `name` (ns_setup turned it off) for the
    interfaces made from now on, as a host with static routes: no Router
    Solicitations, Router Advertisements ignored."""
    netns.pushns(name)
    try:
        for scope in ("all", "default"):
            for key, value in (("disable_ipv6", "0"), ("accept_ra", "0"),
                               ("router_solicitations", "0")):
                with open(f"/proc/sys/net/ipv6/conf/{scope}/{key}", "w") as f:
                    f.write(value)
    finally:
        netns.popns()


def ns_remove(name: str) -> bool:
    """Remove the name `name` (the namespace goes once nothing else holds
    it; an NsFile just goes). False if there was no such name."""
    if ns_exists(name):
        netns.remove(name)
        return True
    return False


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


def link_index(ifname: str, ns: str | None = None) -> int | None:
    """The ifindex of `ifname` in `ns` (None: the root namespace), or None."""
    if ns and not ns_exists(ns):
        return None             # (NetNS would create it)
    with (NetNS(ns) if ns else IPRoute()) as ip:
        idx = ip.link_lookup(ifname=ifname)
        return idx[0] if idx else None


def link_delete(ifname: str, ns: str | None = None, ifindex: int | None = None) -> bool:
    """Delete `ifname` in `ns` (None: the root namespace) if it is there
    (a persistent TAP too) and, when `ifindex` is given, only while it
    still has that ifindex. True if it was deleted."""
    if ns and not ns_exists(ns):
        return False
    with (NetNS(ns) if ns else IPRoute()) as ip:
        idx = ip.link_lookup(ifname=ifname)
        if idx and (ifindex is None or idx[0] == ifindex):
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
    return ns_id_pids(ref.st_ino, ref.st_dev)


def ns_id_pids(ino: int, dev: int) -> list[int]:
    """The processes in the namespace of inode `ino` on nsfs device `dev`,
    this one excepted."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            st = os.stat(f"/proc/{d}/ns/net")
        except OSError:                 # gone, or a zombie
            continue
        if st.st_ino == ino and st.st_dev == dev:
            out.append(int(d))
    return out


def link_move(ifname: str, ns: str) -> None:
    with IPRoute() as ip:
        idx = ip.link_lookup(ifname=ifname)
        if not idx:
            raise RuntimeError(f"no link {ifname} to move into {ns}")
        ip.link("set", index=idx[0], net_ns_fd=ns)


IFA_F_NODAD = 0x02


def host_setup(ns: str, ifname: str, addr: str | None, plen: int, gateway: str | None,
               mtu: int | None = None, inet6: tuple | None = None) -> None:
    """Configure a host in `ns`: address on `ifname`, link up, default
    route; `inet6` = (address, prefix length, gateway) adds IPv6 likewise,
    the address without DAD (usable at once: no other node on the link)."""
    with NetNS(ns) as n:
        idx = n.link_lookup(ifname=ifname)[0]
        if mtu:
            n.link("set", index=idx, mtu=mtu)
        if addr:
            n.addr("add", index=idx, address=addr, prefixlen=plen)
        if inet6:
            n.addr("add", index=idx, address=inet6[0], prefixlen=inet6[1], family=socket.AF_INET6,
                   flags=IFA_F_NODAD)
        n.link("set", index=idx, state="up")
        if gateway:
            n.route("add", dst="default", gateway=gateway)
        if inet6 and inet6[2]:
            n.route("add", dst="::/0", gateway=inet6[2], family=socket.AF_INET6)


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
