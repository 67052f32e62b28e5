"""drivers/legacy_tap/devn_tap.py, the real legacy driver, mounted under the
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
import socket
import struct
import termios
import threading
import time

import pytest
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether

from drivers.legacy_shim import shim as shimmod
from drivers.legacy_tap import DRIVER, devn_tap
from fakenet import FakeClock, aton
from iopkt import ionet
from iopkt.drvload import DeviceError, DriverError
from iopkt.ifnet import IFF_OACTIVE, IFF_RUNNING, IFF_UP, LINK_STATE_DOWN, LINK_STATE_UP
from iopkt.stack import MAX_EVENTS, Stack

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
    """What pytun.TunTapDevice gives devn-tap: here a socketpair end."""

    def __init__(self, sock, name):
        self.sock = sock
        self.name = name
        self.mtu = None
        self.closed = False

    def fileno(self):
        return self.sock.fileno()

    def close(self):
        self.closed = True
        self.sock.close()


class Wire:
    """devn-tap mounted through the shim on its own Stack; `peer` is the
    kernel's side of its "TAP"."""

    def __init__(self, monkeypatch, options="", nmbclusters=64, mclbytes=2048,
                 sndbuf=None, preload=(), keep=False):
        self.clock = FakeClock()
        self.stack = Stack("unit", nmbclusters=nmbclusters, mclbytes=mclbytes,
                           clock=self.clock)
        ours, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if sndbuf:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.peer.setblocking(False)
        self.tun = FakeTun(ours, f"ftap{next(_names)}")
        self.opened = []            # (name, flags) devn-tap asked pytun for
        self.ioctls = []            # (request, arg) on the TAP fd

        def tuntap(name="", flags=0):
            self.opened.append((name, flags))
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
    assert rx_threads() == [w.drv.thread]
    ifp = w.ifp
    assert ifp.name == "en0" and ifp.mac_str() == MAC and ifp.mtu == 1400
    assert ifp.description == f"devn-tap TAP {w.tun.name}" and ifp.link_state == LINK_STATE_UP
    assert ifp.flags & IFF_UP and ifp.flags & IFF_RUNNING and ifp.capabilities == 0
    w.npkts_home(16)
    st = w.stats()
    assert (st["npkts_total"], st["npkts_free"], st["rx_thread_alive"]) == (16, 16, True)
    assert st["rxed_ok"] == st["txed_ok"] == 0
    reg = w.shim.registrant
    assert reg.devctl(1, 0x9999, None) == (ionet.ENOTSUP, None)
    assert reg.dl_advert(1) == ionet.EOK and reg.flush(1) == ionet.EOK


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


@pytest.mark.parametrize("options,message", [
    ("mac=zz", "option mac=zz: expected six hex bytes"),
    ("mac=03:00:00:00:00:01", "a unicast address"),
    ("mac=00:00:00:00:00:00", "a unicast address"),
    ("name=a/b", "option name=a/b: an interface name"),
    ("name=..", "an interface name"),
    ("mtu=67", "option mtu=67: must be 68..2034"),
    ("npkts=1", "option npkts=1: must be 2..65536"),
    ("burst=4097", "option burst=4097: must be 1..4096"),
    ("batch=2", "option batch=2: must be 0..1"),
    ("speed=7", "option speed=7: one of 10, 100, 1000, 10000"),
    ("colour=red", "unknown option 'colour'"),
])
def test_bad_options_name_the_option_and_open_nothing(monkeypatch, options, message):
    opened = []
    monkeypatch.setattr(devn_tap.pytun, "TunTapDevice", lambda *a, **k: opened.append(a))
    stack = Stack("unit", nmbclusters=16)
    try:
        with pytest.raises(DriverError, match=f"^devn-tap: .*{message}"):
            shimmod.mount(stack, DRIVER, options)
        assert opened == [] and stack.ifnets == {} and rx_threads() == []
    finally:
        stack.close()


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


@pytest.mark.parametrize("ns", ["nosuchns-iopkt-unit", "a/b", ".."])
def test_a_missing_namespace_is_an_option_error(monkeypatch, ns):
    monkeypatch.setattr(devn_tap.pytun, "TunTapDevice",
                        lambda *a, **k: pytest.fail("opened a TAP outside its namespace"))
    stack = Stack("unit", nmbclusters=16)
    try:
        with pytest.raises(DriverError, match=f"option netns={ns}: no network namespace"):
            shimmod.mount(stack, DRIVER, f"netns={ns}")
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
    # Both npkts are lent to the stack: a third frame has nowhere to go.
    w.send(frame(3))
    sock = w.tun.sock
    wait_for(lambda: unread(sock) == 0 and w.drv.stats.rx_nobufs >= 1,
             "the driver discarded the frame it had no npkt for")
    w.release()                                     # the stack frees them: npkts back
    w.npkts_home(2)
    assert w.stack.pool.ext_in_use == 0
    w.send(frame(4))
    w.until(lambda: len(w.got) == 3, "the stack got the next frame")
    assert w.got == [frame(1), frame(2), frame(4)]
    w.release()
    w.npkts_home(2)
    st = w.stats()
    assert st["rxed_ok"] == 3
    assert st["rx_nobufs"] == 1, f"one frame dropped, rx_nobufs says {st['rx_nobufs']}"


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
        if not fails:
            fails.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, bufs)
    monkeypatch.setattr(devn_tap.os, "readv", readv)
    w = wire()
    w.send(frame(1))
    w.until(lambda: w.got == [frame(1)], "the frame arrived after the error")
    assert fails == [w.tun.fileno()]
    st = w.stats()
    assert st["rx_failed"] == 1 and st["rxed_ok"] == 1 and st["rx_thread_alive"] is True


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
    assert caplog.text.count("tx_up_start failed: io-net hiccup") == 1
    w.npkts_home()


# -- link loss ----------------------------------------------------------------

def test_ebadfd_on_read_is_link_loss(wire, monkeypatch):
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
    w = wire()
    w.send(*sent)
    w.until(lambda: len(w.got) == 2, "what was read before the error arrived")
    w.drv.thread.join(DEADLINE)
    assert not w.drv.thread.is_alive() and rx_threads() == []
    assert w.got == sent and reads == [60, 60]
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
    w.clock.advance(1.0)
    loop_once(w.stack)
    assert (w.ifp.link_state == LINK_STATE_DOWN) is link_lost
    assert bool(w.ifp.flags & IFF_UP) is not link_lost


# -- transmit: stack -> shim -> rx_down -> the TAP ----------------------------

def test_frames_the_stack_sends_reach_the_tap_byte_exact(wire):
    w = wire()
    sent = [frame(1, 60), frame(2, 1514), frame(3, 333)]
    w.ifp.if_transmit(w.ifp, [w.stack.pool.from_bytes(f) for f in sent])
    assert w.received() == sent
    st = w.stats()
    assert st["txed_ok"] == 3 and st["octets_txed_ok"] == sum(map(len, sent))
    assert w.ifp.opackets == 3 and w.ifp.obytes == sum(map(len, sent))
    assert w.stack.pool.in_use == 0 and len(w.shim._down_free) == shimmod.DOWN_NPKTS


def test_a_chain_goes_out_with_one_gathered_write(wire, monkeypatch):
    w = wire(mclbytes=256)
    data = frame(5, 700)
    m = w.stack.pool.from_bytes(data)
    assert m.next is not None and m.next.next is not None  # three mbufs
    real, calls = os.writev, []

    def writev(fd, bufs):
        calls.append(len(bufs))
        return real(fd, bufs)
    monkeypatch.setattr(devn_tap.os, "writev", writev)
    w.ifp.if_transmit(w.ifp, [m])
    assert calls == [3] and w.received() == [data]
    assert w.stats()["octets_txed_ok"] == 700 and w.stack.pool.in_use == 0


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
    w.clock.advance(0.002)                          # 2500 bytes at 10 Mbit/s
    w.until(lambda: w.ifp.opackets == 3, "the paced frame went out")
    assert w.received() == sent[2:] and w.drv.stats.tx_again == 1
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
