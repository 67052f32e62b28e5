"""drivers/devn_tap/devn_tap.py, the real legacy driver, mounted under the
real shim on a real Stack, without a TAP: pytun.TunTapDevice is replaced by
one end of a SOCK_SEQPACKET socketpair (one read = one frame, like a TAP;
see test_devnp_tap.py), the test holds the other end as the kernel side.

Everything else is the production path: devn-tap's own receive thread
polls the socket, reads into its npkts and calls tx_up_start / tx_up; the
shim copies (or lends) them into mbufs on the hand-off queue and wakes the
stack through its eventfd; the test runs the stack's loop (loop_once: one
turn of Stack.run()) until what it waits for has happened, with a 2 s
deadline. The stack's clock is a FakeClock, so callouts (the shim's
transmit retry, its once-a-second link check) run when the test moves
time on."""

import errno
import fcntl
import itertools
import logging
import os
import select
import socket
import struct
import termios
import threading
import time

import pytest
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether

from devn_tap import DRIVER, devn_tap
from devnp_shim import shim as shimmod
from iopkt.dev.autoconf import DeviceError, DriverError
from iopkt.ionet import ionet
from iopkt.kern.loop import MAX_EVENTS
from iopkt.net.ifnet import IFF_OACTIVE, IFF_RUNNING, IFF_UP, LINK_STATE_DOWN, LINK_STATE_UP
from iopkt.stack.stack import Stack

from fakenet import FakeClock, aton

MAC = "02:00:00:00:00:01"
PEER_MAC = "02:aa:00:00:00:02"
DEADLINE = 2.0
_names = itertools.count()


def frame(i: int, size: int = 60) -> bytes:
    """An Ethernet frame to us of `size` bytes whose payload says `i`."""
    head = bytes.fromhex("020000000001") + bytes.fromhex("02aa00000002") + b"\x08\x00"
    body = i.to_bytes(2, "big") * ((size - 14) // 2 + 1)
    return head + body[:size - 14]


def loop_once(stack, timeout: float = 0.0) -> None:
    """One turn of Stack.run()'s loop (the stack has no run_once): due
    callouts, one epoll wait, the handler of each ready fd."""
    stack._run_callouts()
    for fd, ev in stack.ep.poll(timeout, MAX_EVENTS):
        h = stack._handlers.get(fd)
        if h is not None:
            h(ev)
    stack.loops += 1


def wait_for(cond, what: str, stack=None, deadline: float = DEADLINE) -> None:
    """Until `cond()` holds, fail after `deadline` s. With `stack`, run its
    loop meanwhile (each turn blocks in epoll for at most 5 ms, so a
    wake-up is taken at once); without, the stack thread stays "busy" and
    only the driver's thread moves: check every millisecond."""
    end = time.monotonic() + deadline
    pause = threading.Event()
    while not cond():
        if time.monotonic() > end:
            pytest.fail(f"{what}: not within {deadline} s")
        if stack is not None:
            loop_once(stack, 0.005)
        else:
            pause.wait(0.001)


def unread(sock) -> int:
    """Bytes waiting in the next message on `sock` (0: nothing waiting)."""
    buf = struct.pack("i", 0)
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, buf))[0]


class FakeTun:
    """What pytun.TunTapDevice gives devn-tap: here a socketpair end. Setting
    its MTU is noted in `events` (a list the test may share)."""

    def __init__(self, sock, name, events=None):
        self.sock = sock
        self.name = name
        self._mtu = None
        self.closed = False
        self.events = [] if events is None else events

    @property
    def mtu(self):
        return self._mtu

    @mtu.setter
    def mtu(self, value):
        self.events.append(("mtu", value))
        self._mtu = value

    def fileno(self):
        return self.sock.fileno()

    def close(self):
        self.closed = True
        self.sock.close()


class Wire:
    """devn-tap mounted through the shim on its own Stack; `peer` is the
    kernel's side of its "TAP"."""

    def __init__(self, monkeypatch, options="", nmbclusters=64, mclbytes=2048,
                 sndbuf=None, preload=(), keep=False, hangup=False, events=None):
        self.clock = FakeClock()
        self.stack = Stack("unit", nmbclusters=nmbclusters, mclbytes=mclbytes,
                           clock=self.clock)
        ours, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if sndbuf:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.peer.setblocking(False)
        self.events = [] if events is None else events
        self.tun = FakeTun(ours, f"ftap{next(_names)}", self.events)
        self.opened = []            # (name, flags) devn-tap asked pytun for
        self.ioctls = []            # (request, arg) on the TAP fd

        def tuntap(name="", flags=0):
            self.opened.append((name, flags))
            self.events.append(("open", name, flags))
            return self.tun
        monkeypatch.setattr(devn_tap.pytun, "TunTapDevice", tuntap)

        class Fcntl:                # TUNSETOFFLOAD means nothing to a socket
            @staticmethod
            def ioctl(fd, req, arg):
                assert fd == ours.fileno()
                self.ioctls.append((req, arg))
                return 0
        monkeypatch.setattr(devn_tap, "fcntl", Fcntl)
        for f in preload:           # frames waiting before the driver starts
            self.peer.send(f)
        if hangup:                  # and the kernel side gone before it starts
            self.peer.close()
        self.ifp = shimmod.mount(self.stack, DRIVER, f"name={self.tun.name},mac={MAC},"
                                 + options)
        self.shim = self.ifp.softc
        self.drv = devn_tap._instances[id(self.shim.dll_hdl)]
        self.stack_input = self.ifp.if_input     # ether_input, as the mount left it
        self.got = []               # bytes of each frame that reached if_input
        self.held = []              # with keep: the mbufs themselves
        self.bursts = []

        def record(ifp, pkts):
            assert threading.current_thread() is threading.main_thread()
            self.bursts.append(len(pkts))
            for m in pkts:
                assert m.rcvif is ifp and m.pkt_len == m.chain_len()
                self.got.append(m.tobytes())
                if keep:
                    self.held.append(m)
                else:
                    self.stack.pool.freem(m)
        self.ifp.if_input = record

    def send(self, *frames):
        for f in frames:
            self.peer.send(f)

    def received(self) -> list:
        out = []
        while True:
            try:
                out.append(self.peer.recv(65536))
            except BlockingIOError:
                return out

    def until(self, cond, what):
        wait_for(cond, what, self.stack)

    def stats(self) -> dict:
        return self.shim.extra_info(self.ifp)["legacy_driver_stats"]

    def npkts_home(self, n=None):
        """Wait until `n` (default: all) npkts are on devn-tap's free list.
        Waited for, not read once: its thread takes one off for each read
        it tries and puts it back when there was nothing to read."""
        n = self.drv.npkts_total if n is None else n
        wait_for(lambda: len(self.drv.free) == n, f"{n} npkts back on devn-tap's free list "
                 f"(it has {len(self.drv.free)})")

    def release(self):
        for m in self.held:
            self.stack.pool.freem(m)
        self.held.clear()


def rx_threads() -> list:
    return [t for t in threading.enumerate() if t.name.startswith("devn-tap rx")]


@pytest.fixture
def wire(monkeypatch):
    """make(options, ...) -> Wire. At teardown the stack shuts down, which
    unmounts the driver: its receive thread must be gone, every npkt back
    on its free list (once), the TAP closed, every mbuf back in the pool."""
    made = []

    def make(*a, **kw):
        w = Wire(monkeypatch, *a, **kw)
        made.append(w)
        return w
    yield make
    failures = []
    for w in made:
        try:
            w.release()
            w.stack.shutdown(quiet=True)
            drv, pool = w.drv, w.stack.pool
            if drv.thread.is_alive() or drv.thread in threading.enumerate():
                failures.append("the receive thread outlived the unmount")
            if len(drv.free) != drv.npkts_total or len(set(map(id, drv.free))) != len(drv.free):
                failures.append(f"{len(drv.free)} npkts ({len(set(map(id, drv.free)))} "
                                f"distinct) on the free list of {drv.npkts_total}")
            if not all(type(n) is ionet.npkt_t for n in drv.free):
                failures.append(f"not only npkts on the free list: {set(map(type, drv.free))}")
            if not w.tun.closed:
                failures.append("the TAP was not closed")
            if id(w.shim.dll_hdl) in devn_tap._instances:
                failures.append("devn-tap still lists the instance")
            if pool.in_use or pool.ext_in_use or pool.jumbo_in_use:
                failures.append(f"leak: {pool.in_use} clusters, {pool.ext_in_use} external, "
                                f"{pool.jumbo_in_use} jumbo mbufs out after shutdown")
            if w.stack.handler_errors:
                failures.append(f"handler errors: {w.stack.handler_errors}")
        finally:
            w.stack.close()
            w.peer.close()
    assert not failures, "; ".join(failures)
    assert rx_threads() == []


# -- mount --------------------------------------------------------------------

def test_mount_opens_the_tap_and_starts_the_receive_thread(wire):
    w = wire("mtu=1400,npkts=16")
    from pytun import IFF_NO_PI, IFF_TAP
    assert w.opened == [(w.tun.name, IFF_TAP | IFF_NO_PI)] and w.tun.mtu == 1400
    assert w.ioctls == [(devn_tap.TUNSETOFFLOAD, 0)]        # no offload, ever
    assert os.get_blocking(w.tun.fileno()) is False
    assert w.drv.thread.is_alive() and w.drv.thread.name == f"devn-tap rx {w.tun.name}"
    assert w.drv.thread.daemon is True              # never what keeps the process alive
    assert rx_threads() == [w.drv.thread]
    # The thread's stop signal: an eventfd no child process inherits.
    assert os.get_blocking(w.drv.stopfd) is False and os.get_inheritable(w.drv.stopfd) is False
    ifp = w.ifp
    assert ifp.name == "en0" and ifp.mac_str() == MAC and ifp.mtu == 1400
    assert ifp.description == f"devn-tap TAP {w.tun.name}" and ifp.link_state == LINK_STATE_UP
    assert ifp.flags & IFF_UP and ifp.flags & IFF_RUNNING and ifp.capabilities == 0
    w.npkts_home(16)
    zero = dict.fromkeys(["txed_ok", "octets_txed_ok", "tx_failed", "tx_again", "rxed_ok",
                          "octets_rxed_ok", "rx_failed", "rx_nobufs", "rx_not_taken",
                          "txed_broadcast", "rxed_broadcast", "txed_multicast",
                          "rxed_multicast"], 0)
    assert w.stats() == {**zero, "npkts_total": 16, "npkts_free": 16, "rx_thread_alive": True}
    reg = w.shim.registrant
    assert reg.devctl(1, 0x9999, None) == (ionet.ENOTSUP, None)
    assert reg.dl_advert(1) == ionet.EOK and reg.flush(1) == ionet.EOK


# -- devctl: what nicinfo shows ---------------------------------------------------

def test_get_config_describes_the_tap_link(wire):
    w = wire("mtu=1400,speed=100")
    rc, cfg = w.shim.registrant.devctl(1, ionet.DCMD_IO_NET_GET_CONFIG, None)
    mac = bytes.fromhex("020000000001")
    assert rc == ionet.EOK and cfg == ionet.NicConfig(
        device_name=f"TAP {w.tun.name}", driver_name="devn-tap", permanent_address=mac,
        current_address=mac, mtu=1400, media_rate=100_000, flags=0)    # kbit/s
    assert w.ifp.baudrate == 100_000_000 and w.ifp.mtu == 1400


def test_a_random_mac_is_unicast_and_local(monkeypatch):
    monkeypatch.setattr(devn_tap.os, "urandom", lambda n: b"\xab" * n)
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    tun = FakeTun(ours, "ftaprnd")
    monkeypatch.setattr(devn_tap.pytun, "TunTapDevice", lambda name="", flags=0: tun)
    monkeypatch.setattr(devn_tap, "fcntl", type("F", (), {"ioctl": staticmethod(
        lambda fd, req, arg: 0)}))
    stack = Stack("unit", nmbclusters=16)
    try:
        ifp = shimmod.mount(stack, DRIVER, "npkts=2")
        assert ifp.mac_str() == "02:ab:ab:ab:ab:ab"
    finally:
        stack.shutdown(quiet=True)
        stack.close()
        peer.close()
    assert tun.closed and rx_threads() == [] and stack.pool.in_use == 0


# -- options: what is refused, with the whole message the user sees ------------

NAME_RULE = "an interface name is 1-15 characters, not '.' or '..', without '/', ':' or spaces"
UNICAST = "a unicast address (first byte even, not all zero), like 02:00:00:00:00:01"
SIX_BYTES = "expected six hex bytes like 02:00:00:00:00:01"


@pytest.mark.parametrize("options,message", [
    ("mac=zz", f"option mac=zz: {SIX_BYTES}"),
    ("mac=02:00:00:00:00:01:02", f"option mac=02:00:00:00:00:01:02: {SIX_BYTES}"),
    ("mac=002:00:00:00:00:01", f"option mac=002:00:00:00:00:01: {SIX_BYTES}"),
    ("mac=03:00:00:00:00:01", f"option mac=03:00:00:00:00:01: {UNICAST}"),
    ("mac=01:00:5e:00:00:01", f"option mac=01:00:5e:00:00:01: {UNICAST}"),
    ("mac=00:00:00:00:00:00", f"option mac=00:00:00:00:00:00: {UNICAST}"),
    ("name=a/b", f"option name=a/b: {NAME_RULE}"),
    ("name=a:b", f"option name=a:b: {NAME_RULE}"),
    ("name=a b", f"option name=a b: {NAME_RULE}"),
    ("name=a\tb", f"option name=a\tb: {NAME_RULE}"),
    ("name=.", f"option name=.: {NAME_RULE}"),
    ("name=..", f"option name=..: {NAME_RULE}"),
    ("name=abcdefghijklmnop", f"option name=abcdefghijklmnop: {NAME_RULE}"),
    ("mtu=67", "option mtu=67: must be 68..2034"),
    ("mtu=2035", "option mtu=2035: must be 68..2034"),
    ("npkts=1", "option npkts=1: must be 2..65536"),
    ("npkts=65537", "option npkts=65537: must be 2..65536"),
    ("burst=0", "option burst=0: must be 1..4096"),
    ("burst=4097", "option burst=4097: must be 1..4096"),
    ("batch=-1", "option batch=-1: must be 0..1"),
    ("batch=2", "option batch=2: must be 0..1"),
    ("speed=1", "option speed=1: one of 10, 100, 1000, 10000 (Mbit/s) or 0 for no limit"),
    ("speed=7", "option speed=7: one of 10, 100, 1000, 10000 (Mbit/s) or 0 for no limit"),
    ("colour=red", "unknown option 'colour' (options: batch, burst, mac, mtu, name, netns, "
                   "npkts, speed)"),
])
def test_bad_options_name_the_option_and_open_nothing(monkeypatch, options, message):
    opened = []
    monkeypatch.setattr(devn_tap.pytun, "TunTapDevice", lambda *a, **k: opened.append(a))
    stack = Stack("unit", nmbclusters=16)
    try:
        with pytest.raises(DriverError) as err:
            shimmod.mount(stack, DRIVER, options)
        assert str(err.value) == f"devn-tap: {message}"
        assert opened == [] and stack.ifnets == {} and rx_threads() == []
    finally:
        stack.close()


# -- options: the limits themselves are accepted, and each value takes effect ---

@pytest.mark.parametrize("options,check", [
    ("name=abcdefghijklmno", lambda w: w.opened[0][0] == "abcdefghijklmno"),
    ("name=tapX", lambda w: w.opened[0][0] == "tapX"),
    ("mac=02:aB:Cd:eF:0a:9b", lambda w: w.ifp.mac_str() == "02:ab:cd:ef:0a:9b"),
    ("mac=2:0:0:0:e:1", lambda w: w.ifp.mac_str() == "02:00:00:00:0e:01"),
    ("mtu=68", lambda w: w.ifp.mtu == w.tun.mtu == 68),
    ("mtu=2034", lambda w: w.ifp.mtu == w.tun.mtu == 2034),
    ("npkts=2", lambda w: w.drv.npkts_total == 2),
    ("burst=1", lambda w: w.drv.opts["burst"] == 1),
    ("burst=4096", lambda w: w.drv.opts["burst"] == 4096),
    ("batch=0", lambda w: w.drv.opts["batch"] == 0),
    ("speed=100", lambda w: w.ifp.baudrate == 100_000_000),
    ("speed=1000", lambda w: w.ifp.baudrate == 1_000_000_000),
    ("speed=10000", lambda w: w.ifp.baudrate == 10_000_000_000),
])
def test_options_at_their_limits_are_accepted(wire, options, check):
    w = wire(options)
    assert check(w)
    w.send(frame(1), frame(2))                      # and the driver works with them
    w.until(lambda: len(w.got) == 2, "the frames arrived")
    assert w.got == [frame(1), frame(2)]


def test_a_tap_that_cannot_be_opened_is_a_device_error(monkeypatch):
    def refuse(name="", flags=0):
        raise OSError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(devn_tap.pytun, "TunTapDevice", refuse)
    stack = Stack("unit", nmbclusters=16)
    try:
        with pytest.raises(DeviceError, match="devn-tap: cannot open TAP tapx: .*CAP_NET_ADMIN"):
            shimmod.mount(stack, DRIVER, "name=tapx")
        assert stack.ifnets == {} and rx_threads() == []
    finally:
        stack.close()


def test_an_mtu_the_tap_refuses_closes_it(monkeypatch):
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    class Picky(FakeTun):
        @property
        def mtu(self):
            return 1500

        @mtu.setter
        def mtu(self, v):
            raise OSError(errno.EINVAL, "Invalid argument")
    tun = Picky.__new__(Picky)
    tun.sock, tun.name, tun.closed = ours, "ftappicky", False
    monkeypatch.setattr(devn_tap.pytun, "TunTapDevice", lambda name="", flags=0: tun)
    stack = Stack("unit", nmbclusters=16)
    try:
        with pytest.raises(DeviceError, match="devn-tap failed in init: .*Invalid argument"):
            shimmod.mount(stack, DRIVER, "mtu=1400")
        assert tun.closed and rx_threads() == []
    finally:
        stack.close()
        peer.close()


# -- netns: the TAP is opened inside the namespace, and the thread comes back --

@pytest.fixture
def netns_run(tmp_path, monkeypatch):
    """pyroute2's namespace directory moved to a temporary one that holds
    namespace 'blue' (and a file 'a/b'); setns(2) replaced by a recorder,
    so the test process never changes namespace. Returns the list the
    recorder appends to: ("setns", what the fd is, its access mode, whether
    a child would inherit it)."""
    from pyroute2 import netns as pr_netns
    (tmp_path / "blue").touch()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").touch()
    monkeypatch.setattr(pr_netns, "NETNS_RUN_DIR", str(tmp_path))
    events = []

    def setns(fd):
        events.append(("setns", os.readlink(f"/proc/self/fd/{fd}"),
                       fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE, os.get_inheritable(fd)))
    monkeypatch.setattr(pr_netns, "setns", setns)
    return events


def test_a_tap_in_a_namespace_is_opened_there(wire, netns_run, tmp_path):
    """setns into the namespace, open the TAP and set its MTU there, setns
    back into the thread's own namespace; both namespace fds read-only and
    close-on-exec."""
    here = os.readlink("/proc/thread-self/ns/net")
    w = wire("netns=blue,mtu=1400", events=netns_run)
    from pytun import IFF_NO_PI, IFF_TAP
    assert netns_run == [("setns", str(tmp_path / "blue"), os.O_RDONLY, False),
                         ("open", w.tun.name, IFF_TAP | IFF_NO_PI),
                         ("mtu", 1400),
                         ("setns", here, os.O_RDONLY, False)]
    assert w.ifp.description == f"devn-tap TAP {w.tun.name} in netns blue"
    rc, cfg = w.shim.registrant.devctl(1, ionet.DCMD_IO_NET_GET_CONFIG, None)
    assert cfg.device_name == f"TAP {w.tun.name} in netns blue"
    w.send(frame(1))
    w.until(lambda: w.got == [frame(1)], "a frame arrived from the TAP in the namespace")


def test_a_tap_that_fails_to_open_in_a_namespace_still_comes_back(monkeypatch, netns_run):
    def refuse(name="", flags=0):
        netns_run.append(("open", name))
        raise OSError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(devn_tap.pytun, "TunTapDevice", refuse)
    stack = Stack("unit", nmbclusters=16)
    try:
        with pytest.raises(DeviceError) as err:
            shimmod.mount(stack, DRIVER, "name=tapx,netns=blue")
        assert str(err.value) == ("devn-tap: cannot open TAP tapx: Operation not permitted "
                                  "(needs CAP_NET_ADMIN, or the TAP belongs to another user)")
        assert [e[0] for e in netns_run] == ["setns", "open", "setns"]
        assert netns_run[-1][1] == os.readlink("/proc/thread-self/ns/net")
        assert stack.ifnets == {} and rx_threads() == []
    finally:
        stack.close()


@pytest.mark.parametrize("ns", ["nosuchns", "a/b", ".", ".."])
def test_a_missing_namespace_is_an_option_error(monkeypatch, netns_run, ns):
    """Only a name in the namespace directory is a namespace: not a path
    into it, not the directory itself nor its parent."""
    monkeypatch.setattr(devn_tap.pytun, "TunTapDevice",
                        lambda *a, **k: pytest.fail("opened a TAP outside its namespace"))
    stack = Stack("unit", nmbclusters=16)
    try:
        with pytest.raises(DriverError) as err:
            shimmod.mount(stack, DRIVER, f"netns={ns}")
        assert str(err.value) == (f"devn-tap: option netns={ns}: no network namespace '{ns}' "
                                  "(see 'ip netns list')")
        assert netns_run == [] and stack.ifnets == {}
    finally:
        stack.close()


def test_init_that_cannot_register_releases_the_tap(monkeypatch):
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    tun = FakeTun(ours, "ftapreg")
    monkeypatch.setattr(devn_tap.pytun, "TunTapDevice", lambda name="", flags=0: tun)
    monkeypatch.setattr(devn_tap, "fcntl", type("F", (), {"ioctl": staticmethod(
        lambda fd, req, arg: 0)}))

    class Ion:
        def alloc(self, size):
            return bytearray(size)

        def reg(self, dll, registrant):
            raise RuntimeError("io-net is full")
    dll = object()
    try:
        with pytest.raises(RuntimeError, match="io-net is full"):
            devn_tap.init(dll, Ion(), "npkts=2")
        assert tun.closed and id(dll) not in devn_tap._instances and rx_threads() == []
    finally:
        peer.close()


# -- io-net's side of the contract: handles, packets, bursts ----------------------
#
# Here devn-tap runs against a recording io-net instead of the shim, to see
# exactly what it passes: io-net's registration answers (reg_hdl 7, cell 3,
# endpoint 5) must come back with every call, and each up packet must be a
# well-formed npkt_t.

class RecordingIonet(ionet.IoNetSelf):
    """io-net reduced to a recorder. Packets sent up are taken, described in
    `up` and given straight back through the driver's tx_done with the done
    handle they came with; the driver's tx_done of down packets is noted in
    `done`. Runs in the driver's thread: it records, the test asserts."""

    REG = (7, 3, 5)

    def __init__(self):
        self.registered = []        # (dll_hdl, registrant)
        self.registrant = None
        self.calls = []             # every call but the npkt itself
        self.up = []                # per npkt: bytes, framelen, tot_iov, flags, ...
        self.done = []              # (reg_hdl, npkt, flags) of tx_done
        self.on_up = None           # called (in the driver's thread) per up call
        self.hold = False           # keep what goes up (in `held`) instead of giving it back
        self.held = []

    def alloc(self, size):
        return bytearray(size)

    def reg(self, dll_hdl, registrant):
        self.registered.append((dll_hdl, registrant))
        self.registrant = registrant
        return self.REG

    def _take(self, npkt):
        iov = npkt.buffers[0].net_iov[0]
        self.up.append({"data": bytes(iov.base[:iov.len]), "framelen": npkt.framelen,
                        "tot_iov": npkt.tot_iov, "nbufs": len(npkt.buffers),
                        "flags": npkt.flags, "ref_cnt": npkt.ref_cnt,
                        "phys": iov.phys == id(npkt.org_data),
                        "own_buffer": iov.base.obj is npkt.org_data})

    def tx_up_start(self, reg_hdl, npkt, off, framelen_sub, cell, endpoint, iface, done_hdl):
        chain = []
        while npkt is not None:
            chain.append(npkt)
            npkt = npkt.next
        self.calls.append(("tx_up_start", reg_hdl, off, framelen_sub, cell, endpoint, iface,
                           done_hdl, len(chain)))
        for n in chain:
            self._take(n)
            if self.hold:
                self.held.append(n)
            else:
                self.registrant.tx_done(n, done_hdl)
        if self.on_up:
            self.on_up()
        return None

    def reg_tx_done(self, reg_hdl, npkt, done_hdl):
        self.calls.append(("reg_tx_done", reg_hdl, done_hdl))
        npkt._done = done_hdl
        return ionet.EOK

    def tx_up(self, reg_hdl, npkt, off, framelen_sub, cell, endpoint, iface):
        self.calls.append(("tx_up", reg_hdl, off, framelen_sub, cell, endpoint, iface))
        self._take(npkt)
        self.registrant.tx_done(npkt, npkt._done)
        if self.on_up:
            self.on_up()
        return 1

    def tx_done(self, reg_hdl, npkt):
        self.done.append((reg_hdl, npkt, npkt.flags))
        return ionet.EOK


class Direct:
    """devn-tap's init called by a RecordingIonet; `peer` is the kernel's
    side of its "TAP"."""

    def __init__(self, monkeypatch, options, preload=(), hold=False):
        ours, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.peer.setblocking(False)
        self.tun = FakeTun(ours, f"ftap{next(_names)}")
        monkeypatch.setattr(devn_tap.pytun, "TunTapDevice", lambda name="", flags=0: self.tun)
        monkeypatch.setattr(devn_tap, "fcntl", type("F", (), {"ioctl": staticmethod(
            lambda fd, req, arg: 0)}))
        for f in preload:
            self.peer.send(f)
        self.ion = RecordingIonet()
        self.ion.hold = hold
        self.dll = object()
        assert devn_tap.init(self.dll, self.ion, options) == ionet.EOK
        self.drv = devn_tap._instances[id(self.dll)]

    def close(self):
        drv = self.drv
        try:
            assert drv.shutdown1(7) == ionet.EOK and not drv.thread.is_alive()
            assert drv.shutdown2(7) == ionet.EOK and self.tun.closed
            assert devn_tap.shutdown(self.dll) == ionet.EOK
            assert id(self.dll) not in devn_tap._instances
            assert len(drv.free) == drv.npkts_total
        finally:
            self.peer.close()


@pytest.fixture
def direct(monkeypatch):
    made = []

    def make(*a, **kw):
        d = Direct(monkeypatch, *a, **kw)
        made.append(d)
        return d
    yield make
    for d in made:
        d.close()
    assert rx_threads() == []


def test_registration_gives_io_net_the_drivers_own_functions(direct):
    d = direct("npkts=4")
    [(dll, reg)] = d.ion.registered
    drv = d.drv
    assert dll is d.dll and reg.name == "devn-tap"
    assert (reg.rx_down, reg.tx_done, reg.shutdown1, reg.shutdown2, reg.dl_advert, reg.devctl,
            reg.flush) == (drv.rx_down, drv.tx_done, drv.shutdown1, drv.shutdown2,
                           drv.dl_advert, drv.devctl, drv.flush)
    assert (drv.reg_hdl, drv.cell, drv.endpoint) == RecordingIonet.REG


def test_a_burst_goes_up_as_one_chain_of_at_most_burst_packets(direct):
    """Ten frames waiting, burst=4: three wake-ups' worth, 4 + 4 + 2, each
    one tx_up_start with io-net's handle, cell and endpoint, no offset or
    trimming, and the driver itself as the done handle."""
    sent = [frame(i, 60 + i) for i in range(10)]
    d = direct("npkts=16,burst=4", preload=sent)
    wait_for(lambda: len(d.ion.up) == 10, "ten frames went up")
    call = ("tx_up_start", 7, 0, 0, 3, 5, 0, d.drv)
    assert d.ion.calls == [call + (4,), call + (4,), call + (2,)]
    assert [u["data"] for u in d.ion.up] == sent
    for u, f in zip(d.ion.up, sent):
        assert (u["framelen"], u["tot_iov"], u["nbufs"], u["flags"], u["ref_cnt"]) == \
            (len(f), 1, 1, ionet._NPKT_UP, 1)
        assert u["phys"] and u["own_buffer"]        # its own buffer, its "physical address"
    wait_for(lambda: len(d.drv.free) == 16, "every npkt back on the free list")


def test_batch_0_sends_each_packet_up_with_its_done_handle(direct):
    sent = [frame(1), frame(2, 1514), frame(3, 99)]
    d = direct("batch=0", preload=sent)
    wait_for(lambda: len(d.ion.up) == 3, "three frames went up")
    assert d.ion.calls == [("reg_tx_done", 7, d.drv), ("tx_up", 7, 0, 0, 3, 5, 0)] * 3
    assert [u["data"] for u in d.ion.up] == sent
    assert all(u["flags"] == ionet._NPKT_UP and u["ref_cnt"] == 1 for u in d.ion.up)
    st = d.drv.stats
    assert (st.rxed_ok, st.octets_rxed_ok, st.rx_not_taken) == (3, 60 + 1514 + 99, 0)


class PollRecord:
    """devn-tap's poll(2), recorded: what each poller registered, and the
    fds each poll found ready."""

    def __init__(self):
        self.registered: list = []
        self.ready: list = []


def record_polls(monkeypatch) -> PollRecord:
    rec = PollRecord()

    class Select:
        POLLIN = select.POLLIN

        @staticmethod
        def poll():
            real = select.poll()

            class Poll:
                def register(self, fd, *mask):
                    rec.registered.append((fd, *mask))
                    real.register(fd, *mask)

                def poll(self, *a):
                    events = real.poll(*a)
                    rec.ready.append(sorted(fd for fd, _ in events))
                    return events
            return Poll()
    monkeypatch.setattr(devn_tap, "select", Select)
    return rec


def test_a_burst_that_runs_out_of_npkts_goes_up_and_reads_on_in_the_same_wakeup(direct,
                                                                             monkeypatch):
    """Two npkts, five frames waiting: the burst goes up when the free list
    is empty, the npkts come straight back, and the thread reads on without
    another poll: one wake-up for all five."""
    polls = record_polls(monkeypatch).ready
    sent = [frame(i) for i in range(5)]
    d = direct("npkts=2,burst=8", preload=sent)
    wait_for(lambda: len(d.ion.up) == 5, "five frames went up")
    assert [u["data"] for u in d.ion.up] == sent
    assert [c[-1] for c in d.ion.calls] == [2, 2, 1]         # three chains...
    assert polls == [[d.tun.fileno()]]                       # ...from one wake-up


def test_frames_dropped_for_want_of_npkts_are_all_read_in_the_same_wakeup(direct, monkeypatch):
    """io-net keeps both npkts: the three frames after them are read and
    dropped (rx_nobufs) in the wake-up that found them, not one per poll."""
    polls = record_polls(monkeypatch).ready
    sent = [frame(i) for i in range(5)]
    d = direct("npkts=2,burst=8", preload=sent, hold=True)
    wait_for(lambda: d.drv.stats.rx_nobufs == 3, "three frames dropped")
    assert [u["data"] for u in d.ion.up] == sent[:2]
    assert polls == [[d.tun.fileno()]] and unread(d.tun.sock) == 0
    for n in d.ion.held:
        d.drv.tx_done(n, None)


def down_npkt(*fragments, flags=0) -> ionet.npkt_t:
    """A down packet as io-net builds it: one net_iov per (buffer, length)."""
    n = ionet.npkt_t()
    n.buffers = [ionet.net_buf_t([ionet.net_iov_t(b, id(b), k) for b, k in fragments])]
    n.tot_iov = len(fragments)
    n.framelen = sum(k for _, k in fragments)
    n.flags = flags
    n.ref_cnt = 1
    return n


def test_rx_down_writes_the_frame_and_gives_it_back_with_io_nets_handle(direct):
    d = direct("npkts=2")
    data = frame(1, 100)
    n = down_npkt((memoryview(bytearray(data)), 100))
    assert d.drv.rx_down(n) == ionet.TX_DOWN_OK
    assert d.peer.recv(4096) == data
    assert d.ion.done == [(7, n, 0)]
    st = d.drv.stats
    assert (st.txed_ok, st.octets_txed_ok, st.tx_failed) == (1, 100, 0)


def test_rx_down_gathers_only_the_data_of_each_fragment(direct):
    """`len` says how much of each fragment's buffer is data."""
    d = direct("npkts=2")
    head, tail = bytearray(frame(2, 40)) + bytearray(24), bytearray(b"tail" * 5) + bytearray(9)
    n = down_npkt((head, 40), (tail, 20))
    assert d.drv.rx_down(n) == ionet.TX_DOWN_OK
    assert d.peer.recv(4096) == bytes(head[:40]) + b"tail" * 5
    assert d.ion.done == [(7, n, 0)] and d.drv.stats.octets_txed_ok == 60
    one = bytearray(frame(3, 70)) + bytearray(30)           # one fragment: the same
    n = down_npkt((memoryview(one), 70))
    assert d.drv.rx_down(n) == ionet.TX_DOWN_OK
    assert d.peer.recv(4096) == bytes(one[:70]) and d.drv.stats.octets_txed_ok == 130


def test_a_whole_fragment_is_written_as_it_is_and_only_a_longer_one_is_cut(direct,
                                                                           monkeypatch):
    """The common frame, one fragment whose buffer is exactly the data,
    goes to write(2) as the very object, with no slice made of it."""
    d = direct("npkts=2")
    fd, real, written = d.tun.fileno(), os.write, []

    def write(f, data):
        if f == fd:
            written.append(data)
        return real(f, data)
    monkeypatch.setattr(devn_tap.os, "write", write)
    whole = memoryview(bytearray(frame(1, 60)))
    assert d.drv.rx_down(down_npkt((whole, 60))) == ionet.TX_DOWN_OK
    longer = bytearray(frame(2, 60)) + bytearray(4)
    assert d.drv.rx_down(down_npkt((longer, 60))) == ionet.TX_DOWN_OK
    assert written[0] is whole and written[1] is not longer
    assert [bytes(w) for w in written] == [frame(1, 60), frame(2, 60)]
    assert [d.peer.recv(4096) for _ in written] == [frame(1, 60), frame(2, 60)]


def test_a_failed_write_marks_the_packet_and_keeps_io_nets_flags(direct, monkeypatch):
    d = direct("npkts=2")
    fd = d.tun.fileno()
    real, realv = os.write, os.writev

    def write(f, data):
        if f == fd:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(f, data)

    def writev(f, bufs):
        if f == fd:
            raise OSError(errno.EINVAL, "Invalid argument")
        return realv(f, bufs)
    monkeypatch.setattr(devn_tap.os, "write", write)
    monkeypatch.setattr(devn_tap.os, "writev", writev)
    n = down_npkt((memoryview(bytearray(frame(3))), 60), flags=ionet._NPKT_BCAST)
    assert d.drv.rx_down(n) == ionet.TX_DOWN_FAILED
    assert d.ion.done == [(7, n, ionet._NPKT_BCAST | ionet._NPKT_NOT_TXED)]
    m = down_npkt((bytearray(frame(4, 40)), 20), (bytearray(frame(5, 40)), 40))
    assert d.drv.rx_down(m) == ionet.TX_DOWN_FAILED
    assert d.ion.done[1:] == [(7, m, ionet._NPKT_NOT_TXED)]
    st = d.drv.stats
    assert (st.txed_ok, st.tx_failed) == (0, 2) and d.drv.link_down is False


# -- shutdown: the receive thread ends before shutdown1 returns ---------------------

def test_shutdown1_waits_for_the_receive_thread(direct):
    d = direct("npkts=2")
    drv = d.drv
    thread, me, seen = drv.thread, threading.current_thread(), []
    real_join = thread.join

    def join(timeout=None):
        seen.append((threading.current_thread(), timeout))
        real_join(timeout)
        seen.append(thread.is_alive())
    thread.join = join
    assert drv.shutdown1(7) == ionet.EOK
    assert seen == [(me, 5.0), False]       # at most 5 s: a hung thread cannot hang the unmount


def test_shutdown1_from_the_receive_thread_itself_does_not_wait_for_itself(direct):
    """io-net may shut the driver down from a call the driver made: the
    thread must then stop after that call, not join itself."""
    d = direct("npkts=2")
    said = []
    d.ion.on_up = lambda: said.append(d.drv.shutdown1(7))
    d.peer.send(frame(1))
    d.drv.thread.join(DEADLINE)
    assert said == [ionet.EOK] and not d.drv.thread.is_alive()
    assert [u["data"] for u in d.ion.up] == [frame(1)] and len(d.drv.free) == 2


def test_shutdown_of_a_driver_that_never_registered(monkeypatch):
    """Its receive thread never started: shutdown1 has nothing to stop,
    shutdown2 releases the TAP and the stop eventfd; the module's
    shutdown knows no such instance and says EOK."""
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    tun = FakeTun(ours, "ftapnoreg")
    monkeypatch.setattr(devn_tap.pytun, "TunTapDevice", lambda name="", flags=0: tun)
    monkeypatch.setattr(devn_tap, "fcntl", type("F", (), {"ioctl": staticmethod(
        lambda fd, req, arg: 0)}))
    try:
        drv = devn_tap.DevnTap(object(), RecordingIonet(),
                               ionet.parse_options("npkts=2", devn_tap.OPTIONS))
        stopfd = drv.stopfd
        assert drv.shutdown1(0) == ionet.EOK
        assert drv.shutdown2(0) == ionet.EOK
        assert tun.closed and stopfd not in _open_fds()
        assert devn_tap.shutdown(object()) == ionet.EOK
    finally:
        peer.close()


# -- receive: TAP -> receive thread -> hand-off queue -> wake-up -> stack -----

@pytest.mark.parametrize("batch", [1, 0])
def test_frames_from_the_tap_arrive_in_the_stack(wire, batch):
    w = wire(f"batch={batch}")
    first = [frame(1, 60), frame(2, 1514), frame(3, 99)]
    w.send(*first)
    w.until(lambda: len(w.got) == 3, "the stack got the frames")
    assert w.got == first
    assert w.stack.wakeups >= 1 and w.shim.q.wakeups >= 1
    # The stack drained and went back to epoll: the next frame must wake
    # it again (devn-tap's thread -> tx_up -> kick -> eventfd).
    wakeups = w.stack.wakeups
    second = [frame(4, 64), frame(5, 64)]
    w.send(*second)
    w.until(lambda: len(w.got) == 5, "the stack woke up for the second burst")
    assert w.got == first + second and w.stack.wakeups > wakeups
    q = w.shim.q.stats()
    assert q["enqueued"] == q["dequeued"] == 5 and q["drops"] == 0
    w.npkts_home()                                  # copied: every npkt back at once
    st = w.stats()
    assert st["rxed_ok"] == 5 and st["octets_rxed_ok"] == sum(map(len, first + second))
    assert st["rx_not_taken"] == st["rx_failed"] == st["rx_nobufs"] == 0
    assert w.shim.rx_copied == 5 and w.stack.pool.in_use == 0


@pytest.mark.parametrize("batch", [1, 0])
def test_frames_waiting_at_mount_arrive_in_bursts_in_order(wire, batch):
    sent = [frame(i, 60 + i) for i in range(10)]
    w = wire(f"burst=4,batch={batch}", preload=sent)
    w.until(lambda: len(w.got) == 10, "the stack got the ten frames")
    assert w.got == sent
    assert all(1 <= b <= 10 for b in w.bursts) and sum(w.bursts) == 10
    w.npkts_home()
    assert w.stats()["rxed_ok"] == 10
    assert w.shim.q.stats()["enqueued"] == 10


def test_zero_copy_lends_npkts_and_an_empty_free_list_discards(wire):
    w = wire("shimrxcopy=0,npkts=2", keep=True)
    w.send(frame(1), frame(2))
    w.until(lambda: len(w.got) == 2, "the stack got both frames")
    assert all(m.buf is m.ext_arg.org_data for m in w.held)   # devn-tap's own buffers
    assert w.stats()["npkts_free"] == 0 and w.shim.rx_wrapped == 2
    assert w.stack.pool.ext_in_use == 2 and w.stack.pool.in_use == 0
    # Both npkts are lent to the stack: the next frames have nowhere to go.
    w.send(frame(3), frame(4))
    sock = w.tun.sock
    wait_for(lambda: unread(sock) == 0 and w.drv.stats.rx_nobufs >= 2,
             "the driver discarded the frames it had no npkt for")
    w.release()                                     # the stack frees them: npkts back
    w.npkts_home(2)
    assert w.stack.pool.ext_in_use == 0
    w.send(frame(5))
    w.until(lambda: len(w.got) == 3, "the stack got the next frame")
    assert w.got == [frame(1), frame(2), frame(5)]
    w.release()
    w.npkts_home(2)
    st = w.stats()
    assert st["rxed_ok"] == 3
    assert st["rx_nobufs"] == 2, f"two frames dropped, rx_nobufs says {st['rx_nobufs']}"


@pytest.mark.parametrize("batch", [1, 0])
def test_npkts_held_in_the_drivers_own_burst_do_not_make_it_drop_frames(wire, batch):
    """npkts=2, burst=8, four frames waiting, the stack copying (each npkt
    comes back as soon as io-net has taken it): nothing is short of
    buffers, so all four must arrive, whichever way the burst goes up.
    With batch=1 the third frame finds the free list empty only because
    both npkts sit in the driver's own chain, not yet handed up: that is
    no reason to drop it (or the fourth) as "no npkt for it"."""
    sent = [frame(i) for i in range(1, 5)]
    w = wire(f"npkts=2,burst=8,batch={batch}", preload=sent)
    w.until(lambda: len(w.got) + w.drv.stats.rx_nobufs == 4,
            "every frame arrived or was dropped")
    dropped = w.stats()["rx_nobufs"]
    assert dropped == 0, f"{dropped} of 4 frames dropped for want of an npkt (batch={batch})"
    assert w.got == sent


@pytest.mark.parametrize("batch", [1, 0])
def test_a_full_handoff_queue_gives_the_npkts_back_to_the_driver(wire, batch):
    sent = [frame(i) for i in range(5)]
    w = wire(f"shimqlen=2,burst=8,batch={batch}", preload=sent)
    # The stack does not run: the driver's one burst fills the queue.
    wait_for(lambda: w.drv.stats.rx_not_taken == 3, "the driver got its refused npkts back")
    assert len(w.shim.q) == 2 and w.shim.q.drops == 3
    assert w.ifp.iqdrops == 3 and w.ifp.in_discards["qfull"] == 3
    w.npkts_home()
    assert w.drv.stats.rxed_ok == 5
    assert w.stack.pool.in_use == 2
    w.until(lambda: len(w.got) == 2, "the stack drained the queue")
    assert w.got == sent[:2]
    w.send(frame(9))                                # room again
    w.until(lambda: len(w.got) == 3, "the stack got the next frame")
    assert w.got == sent[:2] + [frame(9)] and w.shim.q.drops == 3
    assert w.drv.stats.rx_not_taken == 3 and w.stack.pool.in_use == 0


def test_frames_too_long_for_a_cluster_are_dropped_and_counted(wire):
    w = wire()
    room = w.stack.pool.mclbytes - w.stack.pool.headroom
    good = frame(1, 1514)
    w.send(frame(2, room + 1), frame(3, 3000), good)
    w.until(lambda: w.drv.stats.rxed_ok == 3 and len(w.got) == 1, "the good frame arrived")
    assert w.got == [good]
    # 3000 bytes do not fit devn-tap's 2048-byte npkt: the read is cut short.
    w.npkts_home()
    assert w.stats()["octets_rxed_ok"] == room + 1 + devn_tap.BUFSIZE + 1514
    assert w.ifp.in_discards["too_long"] == 2 and w.ifp.ierrors == 2
    assert w.stack.pool.in_use == 0


def test_a_read_error_is_counted_and_the_thread_goes_on(wire, monkeypatch):
    real, fails = os.readv, []

    def readv(fd, bufs):                # only devn-tap's thread reads with readv
        if len(fails) < 2:
            fails.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, bufs)
    monkeypatch.setattr(devn_tap.os, "readv", readv)
    w = wire()
    w.send(frame(1))
    w.until(lambda: w.got == [frame(1)], "the frame arrived after the error")
    assert fails == [w.tun.fileno()] * 2
    st = w.stats()
    assert st["rx_failed"] == 2 and st["rxed_ok"] == 1 and st["rx_thread_alive"] is True


def test_io_net_failing_in_tx_up_start_does_not_stop_the_thread(wire, caplog):
    """io-net raises after it has taken the burst: devn-tap says so and
    goes on receiving."""
    w = wire()
    real, calls = w.shim.tx_up_start, []

    def flaky(*a):
        calls.append(a[1])
        left = real(*a)
        if len(calls) == 1:
            raise RuntimeError("io-net hiccup")
        return left
    w.shim.tx_up_start = flaky
    with caplog.at_level(logging.WARNING, logger="iopkt"):
        w.send(frame(1))
        w.until(lambda: w.got == [frame(1)], "the first frame arrived")
        w.send(frame(2))
        w.until(lambda: w.got == [frame(1), frame(2)], "the next frame arrived")
    assert len(calls) == 2 and w.drv.thread.is_alive()
    said = [r.getMessage() for r in caplog.records if r.name == "iopkt"]
    assert said == ["devn-tap: tx_up_start failed: io-net hiccup"]
    w.npkts_home()


# -- link loss ----------------------------------------------------------------

def test_ebadfd_on_read_is_link_loss(wire, monkeypatch, caplog):
    """The TAP's netdev is deleted: reads fail with EBADFD. What was read
    still goes up, the thread ends, and the shim's link check (once a
    second, a callout) takes the interface down."""
    real, reads = os.readv, []

    def readv(fd, bufs):                # only devn-tap's thread reads with readv
        try:
            n = real(fd, bufs)
        except BlockingIOError:
            if len(reads) < 2:
                raise
            raise OSError(errno.EBADFD, "File descriptor in bad state") from None
        reads.append(n)
        return n
    monkeypatch.setattr(devn_tap.os, "readv", readv)
    sent = [frame(1), frame(2)]
    with caplog.at_level(logging.WARNING, logger="iopkt"):
        w = wire()
        w.send(*sent)
        w.until(lambda: len(w.got) == 2, "what was read before the error arrived")
        w.drv.thread.join(DEADLINE)
    assert not w.drv.thread.is_alive() and rx_threads() == []
    assert w.got == sent and reads == [60, 60]
    assert [r.getMessage() for r in caplog.records if r.name == "iopkt"] == [
        f"devn-tap: TAP {w.tun.name} is gone (File descriptor in bad state: link down); "
        "receive thread ends"]
    st = w.stats()
    assert st["rxed_ok"] == 2 and st["rx_failed"] == 0 and st["rx_thread_alive"] is False
    assert st["npkts_free"] == st["npkts_total"]
    assert w.ifp.link_state == LINK_STATE_UP        # not before the link check runs
    w.clock.advance(1.0)
    w.until(lambda: w.ifp.link_state == LINK_STATE_DOWN, "the link check saw the loss")
    assert not w.ifp.flags & (IFF_UP | IFF_RUNNING)
    assert w.shim.link_downed is True


def test_a_closed_peer_is_link_loss(wire):
    """The kernel side goes away (the socketpair's peer closes: POLLHUP and
    reads of 0 bytes, as a TAP whose netdev is gone gives POLLERR and
    EBADFD): the driver must report the link down and its thread end, not
    read empty frames."""
    w = wire()
    w.send(frame(1))
    w.until(lambda: w.got == [frame(1)], "the frame arrived")
    w.peer.close()
    wait_for(lambda: not w.drv.thread.is_alive() or w.drv.stats.rxed_ok > 1,
             "the receive thread reacted to the hang-up")
    st = w.stats()
    assert st["rxed_ok"] == 1, (f"the driver read {st['rxed_ok'] - 1} empty frames from a "
                                f"hung-up TAP ({st['rx_not_taken']} recycled as runts)")
    assert not w.drv.thread.is_alive()
    w.clock.advance(1.0)
    w.until(lambda: w.ifp.link_state == LINK_STATE_DOWN, "the link check saw the loss")
    assert not w.ifp.flags & IFF_UP


def test_frames_waiting_when_the_tap_hangs_up_still_go_up(wire, caplog):
    """The kernel side is gone with frames still queued: they are read and
    sent up, then the end of file ends the thread, and it says so."""
    sent = [frame(1), frame(2), frame(3, 1514)]
    with caplog.at_level(logging.WARNING, logger="iopkt"):
        w = wire(preload=sent, hangup=True)
        w.drv.thread.join(DEADLINE)
    assert not w.drv.thread.is_alive()
    w.until(lambda: len(w.got) == 3, "the frames read before the hang-up arrived")
    assert w.got == sent
    said = [r.getMessage() for r in caplog.records if r.name == "iopkt"]
    assert said == [f"devn-tap: TAP {w.tun.name} is gone (end of file: link down); "
                    "receive thread ends"]
    st = w.stats()
    assert (st["rxed_ok"], st["rx_failed"], st["rx_thread_alive"]) == (3, 0, False)
    rc, cfg = w.shim.registrant.devctl(1, ionet.DCMD_IO_NET_GET_CONFIG, None)
    assert cfg.flags == ionet.NIC_FLAG_LINK_DOWN
    w.clock.advance(1.0)
    w.until(lambda: w.ifp.link_state == LINK_STATE_DOWN, "the link check saw the loss")


def test_a_hang_up_while_every_npkt_is_lent_is_link_loss(wire):
    """No npkt free: the read that finds the end of file is the one meant
    to drop a frame. It must still end the thread, not spin on it."""
    w = wire("shimrxcopy=0,npkts=2", keep=True)
    w.send(frame(1), frame(2))
    w.until(lambda: len(w.held) == 2, "both npkts are lent to the stack")
    w.peer.close()
    w.drv.thread.join(DEADLINE)
    assert not w.drv.thread.is_alive() and w.drv.link_down is True
    assert w.drv.lost_why == "end of file"
    st = w.stats()
    assert (st["rxed_ok"], st["rx_nobufs"], st["npkts_free"]) == (2, 0, 0)


def test_ebadfd_while_every_npkt_is_lent_is_link_loss(wire, monkeypatch):
    w = wire("shimrxcopy=0,npkts=2", keep=True)
    w.send(frame(1), frame(2))
    w.until(lambda: len(w.held) == 2, "both npkts are lent to the stack")
    fd, real = w.tun.fileno(), os.read

    def read(f, n):                     # the TAP's netdev is deleted
        if f == fd:
            raise OSError(errno.EBADFD, "File descriptor in bad state")
        return real(f, n)
    monkeypatch.setattr(devn_tap.os, "read", read)
    w.send(frame(3))
    w.drv.thread.join(DEADLINE)
    assert not w.drv.thread.is_alive() and w.drv.link_down is True
    assert w.drv.lost_why == "File descriptor in bad state"
    assert w.drv.stats.rx_nobufs == 0 and unread(w.tun.sock) == 60   # nothing was read


def test_the_receive_thread_waits_for_input_on_the_tap_and_its_stop_signal(wire, monkeypatch):
    """Its "interrupt": poll(2) for POLLIN on the TAP and on the stop
    eventfd, nothing else (POLLOUT on either is always ready: a thread
    waiting for it would never sleep)."""
    registered = record_polls(monkeypatch).registered
    w = wire()
    w.send(frame(1))
    w.until(lambda: w.got == [frame(1)], "the frame arrived")
    assert registered == [(w.tun.fileno(), select.POLLIN), (w.drv.stopfd, select.POLLIN)]


@pytest.mark.parametrize("err,link_lost", [(errno.EBADFD, True), (errno.ENXIO, True),
                                           (errno.EINVAL, False)])
def test_a_write_error_is_an_output_error(wire, monkeypatch, err, link_lost):
    w = wire()
    real = os.write
    fd = w.tun.fileno()

    def write(f, data):
        if f == fd:
            raise OSError(err, os.strerror(err))
        return real(f, data)
    monkeypatch.setattr(devn_tap.os, "write", write)
    w.ifp.if_transmit(w.ifp, [w.stack.pool.from_bytes(frame(7))])
    st = w.stats()
    assert st["tx_failed"] == 1 and st["txed_ok"] == 0
    assert w.ifp.oerrors == 1 and w.ifp.out_discards["txerror"] == 1 and w.ifp.opackets == 0
    assert w.stack.pool.in_use == 0 and len(w.shim._down_free) == shimmod.DOWN_NPKTS
    assert w.received() == []
    assert w.drv.link_down is link_lost
    assert w.drv.lost_why == (os.strerror(err) if link_lost else "")
    w.clock.advance(1.0)
    loop_once(w.stack)
    assert (w.ifp.link_state == LINK_STATE_DOWN) is link_lost
    assert bool(w.ifp.flags & IFF_UP) is not link_lost


# -- transmit: stack -> shim -> rx_down -> the TAP ----------------------------

def test_frames_the_stack_sends_reach_the_tap_byte_exact(wire, monkeypatch):
    w = wire()
    gathered, real = [], os.writev
    monkeypatch.setattr(devn_tap.os, "writev",
                        lambda fd, bufs: gathered.append(fd) or real(fd, bufs))
    sent = [frame(1, 60), frame(2, 1514), frame(3, 333)]
    w.ifp.if_transmit(w.ifp, [w.stack.pool.from_bytes(f) for f in sent])
    assert w.received() == sent
    assert gathered == []                           # one mbuf each: a plain write(2)
    st = w.stats()
    assert st["txed_ok"] == 3 and st["octets_txed_ok"] == sum(map(len, sent))
    assert w.ifp.opackets == 3 and w.ifp.obytes == sum(map(len, sent))
    assert w.stack.pool.in_use == 0 and len(w.shim._down_free) == shimmod.DOWN_NPKTS


@pytest.mark.parametrize("size,mbufs", [(300, 2), (700, 3)])
def test_a_chain_goes_out_with_one_gathered_write(wire, monkeypatch, size, mbufs):
    w = wire(mclbytes=256)
    data = frame(5, size)
    m = w.stack.pool.from_bytes(data)
    chain, x = 0, m
    while x is not None:
        chain, x = chain + 1, x.next
    assert chain == mbufs
    real, calls = os.writev, []

    def writev(fd, bufs):
        calls.append(len(bufs))
        return real(fd, bufs)
    monkeypatch.setattr(devn_tap.os, "writev", writev)
    w.ifp.if_transmit(w.ifp, [m])
    assert calls == [mbufs] and w.received() == [data]
    assert w.stats()["octets_txed_ok"] == size and w.stack.pool.in_use == 0


def test_eagain_on_write_is_retried_by_the_stack(wire):
    """The TAP's queue is full (EAGAIN): devn-tap answers TX_DOWN_AGAIN,
    the shim keeps the packet and the stack's retry callout sends it once
    the wire has room; every frame arrives once, in order."""
    w = wire(sndbuf=4096)
    sent = [frame(i, 1000) for i in range(12)]
    w.ifp.if_transmit(w.ifp, [w.stack.pool.from_bytes(f) for f in sent])
    first = w.received()
    assert 1 <= len(first) < 12 and first == sent[:len(first)]
    assert w.shim.tx_again == 1 and w.drv.stats.tx_again == 1
    assert w.ifp.flags & IFF_OACTIVE and w.ifp.if_snd.len == 12 - len(first)
    for _ in range(3):
        loop_once(w.stack)                          # the retry is not due yet
    assert w.shim.tx_again == 1 and w.received() == []
    got = list(first)

    def retried():
        got.extend(w.received())
        if len(got) < 12:
            w.clock.advance(0.001)                  # let the retry callout come due
        return len(got) == 12
    w.until(retried, "every frame went out")
    assert got == sent
    assert w.ifp.opackets == 12 and w.drv.stats.txed_ok == 12
    assert w.shim.tx_again == w.drv.stats.tx_again >= 1
    assert not w.ifp.flags & IFF_OACTIVE and w.ifp.if_snd.len == 0
    assert w.stack.pool.in_use == 0


def test_speed_paces_transmit_through_tx_down_again(wire):
    w = wire("speed=10")
    pacer = w.drv.pacer
    pacer.clock, pacer.last, pacer.tokens = w.clock, w.clock(), pacer.burst
    sent = [frame(i, 1514) for i in range(3)]
    w.ifp.if_transmit(w.ifp, [w.stack.pool.from_bytes(f) for f in sent])
    assert w.received() == sent[:2]                 # the bucket holds two full frames
    assert w.drv.stats.tx_again == 1 and w.ifp.flags & IFF_OACTIVE
    loop_once(w.stack)
    assert w.received() == []
    w.clock.advance(0.0005)                         # the retry: 625 bytes' worth, too few
    loop_once(w.stack)
    assert w.received() == [] and w.drv.stats.tx_again == 2
    w.clock.advance(0.002)                          # 2500 bytes at 10 Mbit/s
    w.until(lambda: w.ifp.opackets == 3, "the paced frame went out")
    assert w.received() == sent[2:] and w.drv.stats.tx_again == 2
    assert w.ifp.baudrate == 10_000_000 and not w.ifp.flags & IFF_OACTIVE


def test_arp_and_ping_through_the_whole_stack(wire):
    """No stand-in for if_input: ether -> arp / ipv4 -> icmp -> if_output
    -> shim -> devn-tap -> the TAP."""
    w = wire()
    ifp = w.ifp
    ifp.if_input = w.stack_input
    w.stack.ip.add_address(ifp, aton("198.18.0.1"), 24)
    who = Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER_MAC) / ARP(
        op=1, hwsrc=PEER_MAC, psrc="198.18.0.2", pdst="198.18.0.1")
    w.send(raw(who))
    out = []
    w.until(lambda: out.extend(w.received()) or out, "the ARP reply came out")
    reply = Ether(out[0])
    assert reply[Ether].dst == PEER_MAC and reply[Ether].src == MAC
    assert reply[ARP].op == 2 and reply[ARP].psrc == "198.18.0.1" and reply[ARP].hwsrc == MAC
    ping = Ether(dst=MAC, src=PEER_MAC) / IP(src="198.18.0.2", dst="198.18.0.1") / ICMP(
        type=8, id=7, seq=1) / (b"x" * 56)
    w.send(raw(ping))
    out.clear()
    w.until(lambda: out.extend(w.received()) or out, "the echo reply came out")
    pong = Ether(out[0])
    assert pong[IP].src == "198.18.0.1" and pong[IP].dst == "198.18.0.2"
    assert pong[ICMP].type == 0 and pong[ICMP].id == 7 and bytes(pong[ICMP].payload) == b"x" * 56
    assert ifp.ipackets == 2 and ifp.opackets == 2 and w.stack.pool.in_use == 0


# -- unmount --------------------------------------------------------------------

@pytest.mark.parametrize("rxcopy", [1, 0])
def test_unmount_with_frames_in_flight_gives_everything_back(wire, caplog, rxcopy):
    sent = [frame(i) for i in range(6)]
    w = wire(f"shimrxcopy={rxcopy},npkts=8,burst=8", preload=sent)
    # The stack is "busy": the frames wait on the hand-off queue.
    wait_for(lambda: len(w.shim.q) == 6, "the driver handed the frames over")
    assert w.drv.stats.rxed_ok == 6
    w.npkts_home(8 if rxcopy else 2)                # zero copy: six lent
    thread = w.drv.thread
    with caplog.at_level(logging.INFO, logger="iopkt"):
        w.stack.if_detach(w.ifp)
    assert not thread.is_alive() and thread not in threading.enumerate()
    assert rx_threads() == []
    assert len(w.drv.free) == 8 and len(set(map(id, w.drv.free))) == 8
    assert w.stack.pool.in_use == 0 and w.stack.pool.ext_in_use == 0
    assert w.tun.closed and id(w.shim.dll_hdl) not in devn_tap._instances
    assert w.got == [] and "en0" not in w.stack.ifnets
    assert "8/8 npkts back with the driver" in caplog.text
    assert w.peer.recv(100) == b""                 # our end of the "TAP" is closed


def test_unmount_waits_for_buffers_the_stack_still_holds(wire):
    w = wire("shimrxcopy=0,npkts=4", keep=True)
    w.send(frame(1))
    w.until(lambda: len(w.held) == 1, "the frame arrived")
    w.stack.if_detach(w.ifp)
    # The driver's thread is stopped, but its TAP and buffers stay until
    # the stack gives back the buffer it holds.
    assert not w.drv.thread.is_alive() and not w.tun.closed
    assert len(w.drv.free) == 3
    w.release()
    assert len(w.drv.free) == 4
    w.clock.advance(0.02)
    w.until(lambda: w.tun.closed, "the unmount finished")
    assert id(w.shim.dll_hdl) not in devn_tap._instances and w.stack.pool.ext_in_use == 0


def test_unmount_survives_a_tap_that_fails_to_close(wire):
    w = wire()
    stopfd = w.drv.stopfd
    real = w.tun.close

    def close():
        real()
        raise OSError(errno.EIO, "Input/output error")
    w.tun.close = close
    w.stack.if_detach(w.ifp)
    assert w.tun.closed and not w.drv.thread.is_alive()
    assert w.shim.driver_errors == {}               # the driver coped by itself
    assert stopfd not in _open_fds()                # its eventfd is closed as well


def _open_fds() -> set:
    return {int(f) for f in os.listdir("/proc/self/fd")}
