"""drivers/devnp_afpacket/devnp_afpacket.py: transmit, the kicks and the
epoll set, over the rig of test_devnp_afpacket.py (the rings in a
bytearray, the test playing the kernel's tpacket_snd)."""

import errno

import pytest
from test_devnp_afpacket import (
    BIG,
    NEEDS,
    FakeSock,
    Nic,
    frame,
    hdr,
    tcp_frame,
)

from devnp_afpacket.packet_mmap import TP_STATUS_AVAILABLE, TP_STATUS_SENDING
from iopkt.kern.loop import EPOLLIN, EPOLLOUT
from iopkt.kern.mbuf import M_PKTHDR, M_CSUM_TCPv4, M_CSUM_TSOv4
from iopkt.net import vnet
from iopkt.net.ifnet import IFF_OACTIVE, IFF_RUNNING, IFF_UP, LINK_STATE_UP


class Epoll:
    """The stack's epoll set as the driver sees it: records what it is
    asked (interrupt_attach, _modify, _detach: the events, not the
    handler), and does it too unless `real` is False (a socket on
    descriptor 0, which is not ours to register)."""

    def __init__(self, stack, monkeypatch, real=True):
        self.calls = []
        for name in ("interrupt_attach", "interrupt_modify", "interrupt_detach"):
            monkeypatch.setattr(stack, name, self._rec(name[10:], getattr(stack, name), real))

    def _rec(self, what, fn, real):
        def rec(fd, *args):
            self.calls.append((what, fd, *[a for a in args if isinstance(a, int)]))
            if real:
                fn(fd, *args)
        return rec


class Fd0Sock(FakeSock):
    """A packet socket that got descriptor 0 (stdin was closed)."""

    def fileno(self):
        return 0


def sent(n):
    return [f for _, f in n.kernel.sent]


def tick(clock, stack, s=0.01):
    clock.advance(s)
    stack._run_callouts()


def chain(pool, data: bytes, cut: int):
    """`data` as a two-mbuf chain cut at `cut`."""
    m, t = pool.from_bytes(data[:cut]), pool.from_bytes(data[cut:])
    t.flags &= ~M_PKTHDR
    m.next, m.pkt_len = t, len(data)
    return m


def tso(pool, size):
    m = pool.from_bytes(tcp_frame(size))
    m.csum_flags, m.csum_data, m.segsz = M_CSUM_TSOv4 | M_CSUM_TCPv4, (20 << 16) | 16, 1448
    return m


def free_slots(n, k):
    """The kernel frees the skbs of the first `k` SENDING TX slots."""
    g = n.ring.geom
    for slot in n.ring.tx_offs[:k]:
        assert n.ring.u32[(slot + g.tx_status) >> 2] == TP_STATUS_SENDING
        n.ring.u32[(slot + g.tx_status) >> 2] = TP_STATUS_AVAILABLE


# -- what lands in a slot ----------------------------------------------------------
def test_a_chain_without_offload_fills_a_slot_to_its_last_byte(stack):
    """A two-mbuf chain exactly as long as a slot carries (2006 bytes of a
    2048-byte frame) is written whole, with a zero virtio header whose
    hdr_len is the frame's length; one byte more is txerror."""
    n = Nic(stack, txframes=4)
    pool = stack.pool
    f, g = frame(1, 2006), frame(2, 2007)
    n.send(chain(pool, f, 700), chain(pool, g, 700))
    assert n.kernel.sent == [(hdr(0, 0, 2006), f)]
    assert (n.ifp.opackets, n.ifp.obytes) == (1, 2006)
    assert n.sc.tx_too_long == 1 and n.ifp.out_discards["txerror"] == 1


def test_a_plain_frame_filling_a_slot_takes_the_fast_path(stack):
    """A plain frame in one cluster, exactly a slot's room (982 bytes of a
    1024-byte frame), is written in the fast path: _put_slow never runs."""
    n = Nic(stack, framesize=1024, txframes=4)
    slow = []
    real = n.sc._put_slow
    n.sc._put_slow = lambda m, slot, k: slow.append(k) or real(m, slot, k)
    n.send(frame(1, 982), frame(2, 983))
    assert sent(n) == [frame(1, 982)] and slow == [983]


def test_each_frame_too_long_and_each_superframe_is_counted(stack):
    """Two frames too long, two super-frames: 2 and 2; bytes and packets
    summed over both bursts."""
    n = Nic(stack, framesize=BIG, rxframes=2, txframes=4)
    pool = stack.pool
    for _ in range(2):
        n.send(tso(pool, 3000), frame(1, 70000))
    assert n.sc.tx_too_long == 2 and n.sc.tx_super == 2
    assert (n.ifp.opackets, n.ifp.obytes) == (2, 2 * len(tcp_frame(3000)))


def test_a_superframe_longer_than_32k_has_its_hdr_len_unsigned(stack):
    """hdr_len is an unsigned 16-bit field: a 40 KB super-frame's length
    fits it."""
    n = Nic(stack, framesize=BIG, rxframes=2, txframes=2)
    f = tcp_frame(40000)
    n.send(tso(stack.pool, 40000))
    assert n.kernel.sent == [(hdr(NEEDS, vnet.VIRTIO_NET_HDR_GSO_TCPV4, len(f), 1448, 34, 16),
                              f)]


def test_a_frame_dropped_last_in_a_burst_is_consumed(stack):
    """A burst ending with a frame too long: the burst is consumed, nothing
    queued, the ring not taken as full."""
    n = Nic(stack, txframes=4)
    n.send(frame(1), frame(2, 3000))
    assert sent(n) == [frame(1)] and n.ifp.if_snd.len == 0
    assert n.sc.tx_ring_full == 0 and not n.ifp.flags & IFF_OACTIVE


def test_a_dropped_frame_does_not_take_a_slot_of_the_count(stack):
    """A frame too long, then more frames than slots: the slots' worth is
    written and exactly the rest queued."""
    n = Nic(stack, txframes=4)
    n.sock.mode = "hold"
    n.send(frame(0, 3000), *[frame(i) for i in range(1, 6)])
    assert sent(n) == [frame(i) for i in range(1, 5)] and n.ifp.if_snd.len == 1
    n.kernel.tx_done()
    n.sc.intr(EPOLLOUT)
    assert sent(n) == [frame(i) for i in range(1, 6)]


# -- kicks -------------------------------------------------------------------------
def test_a_full_ring_kicked_in_vain_is_not_kicked_again(stack):
    """Four slots, five frames, the slots still in flight after the kick:
    one kick, no second one for nothing."""
    n = Nic(stack, txframes=4)
    n.sock.mode = "hold"
    n.send(*[frame(i) for i in range(5)])
    assert n.sock.kicks == 1 and n.sc.tx_kicks == 1 and n.ifp.if_snd.len == 1


def test_kicks_inside_a_burst_count_no_refusal(stack, caplog):
    """Ten frames through four slots (kicked when full, and at the end):
    three kicks, each sent all it was given."""
    n = Nic(stack, txframes=4)
    n.send(*[frame(i) for i in range(10)])
    assert (n.sock.kicks, n.sc.tx_kicks, n.sc.tx_refused) == (3, 3, 0)
    assert "would not send" not in caplog.text


def test_a_frame_refused_in_a_kick_inside_a_burst_is_counted(stack):
    """The kick made because the ring was full sends fewer bytes than were
    written: one refusal."""
    n = Nic(stack, txframes=4)
    n.kernel.refuse = lambda h, f: f == frame(2)
    n.send(*[frame(i) for i in range(6)])
    assert sent(n) == [frame(i) for i in range(6) if i != 2]
    assert n.sc.tx_refused == 1 and n.sock.kicks == 2


def test_every_refusal_is_counted_and_said_once(stack, caplog):
    """Two kicks with a frame refused each: counted twice, said once, with
    the bytes skipped."""
    n = Nic(stack, txframes=4)
    n.kernel.refuse = lambda h, f: len(f) == 100
    n.send(frame(1), frame(2, 100))
    n.send(frame(3, 100))
    assert sent(n) == [frame(1)] and n.sc.tx_refused == 2
    assert [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()] == [
        "afp0: the kernel skipped 100 bytes of frames it would not send from the TX ring "
        "(counted in nicinfo; said once)"]


def test_after_a_failed_kick_the_bytes_in_flight_are_unknown(stack, clock):
    """A kick failed: what the next kick sends cannot be checked against
    what was written, so a frame skipped then is not counted."""
    n = Nic(stack, txframes=4)
    n.sock.errors = [errno.ENOBUFS]
    n.send(frame(1))
    n.kernel.refuse = lambda h, f: f == frame(2)
    n.send(frame(2))
    assert sent(n) == [frame(1)] and n.sc.tx_refused == 0
    assert n.sc.tx_kick_errors == 1


def test_kick_errors_are_each_counted_and_retried_until_one_works(stack, clock):
    """Three kicks fail: each counted, each followed by one retry; the
    fourth sends."""
    n = Nic(stack)
    n.sock.errors = [errno.ENOBUFS, errno.EAGAIN, errno.ENOBUFS]
    n.send(frame(1))
    for k in (2, 3, 4):
        tick(clock, stack)
        assert n.sock.kicks == k
    assert n.sc.tx_kick_errors == 3 and n.sc.tx_kicks == 4 and sent(n) == [frame(1)]
    tick(clock, stack)
    assert n.sock.kicks == 4 and n.sc._kick_co is None


def test_two_failed_kicks_share_one_retry(stack, clock):
    """A second kick fails while a retry waits: still one retry."""
    n = Nic(stack)
    n.sock.errors = [errno.ENOBUFS, errno.ENOBUFS]
    n.send(frame(1))
    n.send(frame(2))
    tick(clock, stack)
    assert n.sock.kicks == 3 and sent(n) == [frame(1), frame(2)]


def test_a_retry_waiting_when_the_link_goes_down_does_not_kick(stack, clock):
    """The link went down while a retry waited: the retry does nothing."""
    n = Nic(stack)
    n.sock.errors = [errno.ENOBUFS]
    n.send(frame(1))
    n.sc.set_link(False)
    tick(clock, stack)
    assert n.sock.kicks == 1


def test_no_retry_once_the_link_is_lost(stack, clock):
    """A kick failing after the link was lost schedules no retry."""
    n = Nic(stack)
    n.sock.errors = [errno.ENXIO]
    n.send(frame(1))
    n.sock.errors = [errno.ENOBUFS]
    n.send(frame(2))
    assert n.sc._kick_co is None and n.sock.kicks == 2
    tick(clock, stack)
    assert n.sock.kicks == 2


def test_a_retry_that_fails_while_waiting_for_slots_keeps_waiting(stack, clock):
    """The ring full and a retry failing again: the transmitter stays
    waiting (one ring-full, one wait), and when a retry works what waits
    is sent."""
    n = Nic(stack, txframes=4)
    n.sock.errors = [errno.ENOBUFS]
    n.send(*[frame(i) for i in range(4)])
    n.send(frame(4), frame(5))
    assert n.ifp.flags & IFF_OACTIVE and n.ifp.if_snd.len == 2
    n.sock.errors = [errno.ENOBUFS]
    tick(clock, stack)
    assert (n.sc.tx_ring_full, n.sc.tx_blocked, n.sock.kicks) == (1, 1, 2)
    tick(clock, stack)
    assert sent(n) == [frame(i) for i in range(6)] and not n.ifp.flags & IFF_OACTIVE


def test_a_retry_that_works_with_nothing_waiting_leaves_if_snd_alone(stack, clock):
    """A retry kick that works while the transmitter is not waiting does
    not look at if_snd."""
    n = Nic(stack)
    n.sock.errors = [errno.ENOBUFS]
    n.send(frame(1))
    looked = []
    n.sc._tx_ready = lambda: looked.append(1)
    tick(clock, stack)
    assert sent(n) == [frame(1)] and looked == []


# -- the ring full: waiting for EPOLLOUT ---------------------------------------------
def test_each_wait_for_slots_is_counted_and_asks_for_epollout(stack, monkeypatch):
    """The ring full twice: two waits, each asking for EPOLLIN|EPOLLOUT,
    each EPOLLOUT going back to EPOLLIN; the interface keeps its flags."""
    ep = Epoll(stack, monkeypatch)
    n = Nic(stack, txframes=4)
    fd, flags = n.sc.fd, n.ifp.flags
    n.sock.mode = "hold"
    for k in range(2):
        n.send(*[frame(i) for i in range(6)])
        n.kernel.tx_done()
        n.sc.intr(EPOLLOUT)
        n.kernel.tx_done()
        assert (n.sc.tx_ring_full, n.sc.tx_blocked) == (k + 1, k + 1)
    assert ep.calls[1:] == [("modify", fd, EPOLLIN | EPOLLOUT), ("modify", fd, EPOLLIN)] * 2
    assert n.ifp.flags == flags and len(sent(n)) == 12


def test_epollout_while_not_waiting_changes_nothing(stack, monkeypatch):
    """EPOLLOUT with the transmitter not waiting: the epoll set is left
    alone."""
    ep = Epoll(stack, monkeypatch)
    n = Nic(stack)
    n.sc.intr(EPOLLOUT)
    assert ep.calls[1:] == []


def test_a_full_ring_seen_again_while_waiting_is_one_wait(stack, monkeypatch):
    """_tx_full while already waiting: counted as a full ring, not as a
    new wait, and the epoll set not asked again."""
    ep = Epoll(stack, monkeypatch)
    n = Nic(stack)
    n.sc._tx_full()
    n.sc._tx_full()
    assert (n.sc.tx_ring_full, n.sc.tx_blocked) == (2, 1)
    assert ep.calls[1:] == [("modify", n.sc.fd, EPOLLIN | EPOLLOUT)]


def test_once_the_link_is_lost_the_epoll_set_is_not_touched(stack, monkeypatch):
    """After link loss (the socket left the epoll set): a full ring, slots
    back and a stop ask nothing of it."""
    ep = Epoll(stack, monkeypatch)
    n = Nic(stack)
    n.ifp.flags |= IFF_OACTIVE
    n.sc._link_lost(errno.ENXIO)
    assert ep.calls[1:] == [("detach", n.sc.fd)]
    n.ifp.flags |= IFF_OACTIVE
    n.sc._tx_ready()
    n.ifp.flags |= IFF_OACTIVE
    n.sc.stop(n.ifp)
    n.ifp.flags &= ~IFF_OACTIVE
    n.sc._tx_full()
    assert ep.calls[1:] == [("detach", n.sc.fd)] and not n.ifp.flags & IFF_OACTIVE
    n.ifp.flags |= IFF_RUNNING
    n.sc._poll()                                # a poll that fires late does nothing
    assert n.sc._poll_co is None and n.sock.kicks == 0


def test_stop_while_waiting_goes_back_to_epollin_and_drops_the_queue(stack, monkeypatch):
    """ifconfig down while waiting for slots: EPOLLIN again, running and
    waiting cleared, the queue dropped as down."""
    ep = Epoll(stack, monkeypatch)
    n = Nic(stack, txframes=4)
    flags = n.ifp.flags
    n.sock.mode = "hold"
    n.send(*[frame(i) for i in range(6)])
    del ep.calls[:]
    stack.if_down(n.ifp)
    assert ep.calls == [("modify", n.sc.fd, EPOLLIN)]
    assert n.ifp.flags == flags & ~(IFF_UP | IFF_RUNNING | IFF_OACTIVE)
    assert n.ifp.out_discards["down"] == 2 and n.ifp.if_snd.len == 0


def test_stop_while_not_waiting_leaves_the_epoll_set(stack, monkeypatch):
    """ifconfig down with the transmitter idle: the epoll set is not
    asked."""
    ep = Epoll(stack, monkeypatch)
    n = Nic(stack)
    del ep.calls[:]
    stack.if_down(n.ifp)
    assert ep.calls == []


def test_link_down_while_waiting_drops_the_queue_as_down(stack, clock):
    """The link goes down with frames queued: they are dropped as down."""
    n = Nic(stack, txframes=4)
    n.sock.mode = "hold"
    n.send(*[frame(i) for i in range(7)])
    n.link[1] = 0
    clock.advance(1.1)
    stack._run_callouts()
    assert n.ifp.out_discards["down"] == 3 and not n.ifp.flags & IFF_OACTIVE


def test_slots_back_while_the_link_is_down_send_nothing(stack):
    """_tx_ready while not running: if_start is not called."""
    n = Nic(stack)
    n.sc.set_link(False)
    started = []
    n.sc.start = lambda ifp: started.append(ifp)
    n.sc._tx_ready()
    assert started == []


def test_a_lost_interface_does_not_run_again(stack, clock):
    """Lost, then its link reported up and ifconfig up: it stays not
    running (the socket is out of the epoll set)."""
    n = Nic(stack)
    n.link = OSError(errno.ENODEV, "No such device")
    clock.advance(1.1)
    stack._run_callouts()
    n.sc.set_link(True)
    stack.if_up(n.ifp)
    assert n.ifp.link_state == LINK_STATE_UP and not n.ifp.flags & IFF_RUNNING


# -- a kick that finds the link down or gone, inside a burst --------------------------
@pytest.mark.parametrize("err,reason", [(errno.ENETDOWN, "down"), (errno.ENXIO, "link_lost")],
                         ids=["enetdown", "enxio"])
def test_transmit_drops_what_did_not_fit_when_the_kick_finds_the_link_gone(
        stack, err, reason):
    """Two slots free of four, four frames: the kick made for the full
    ring fails (down, or gone): the two unwritten frames are dropped as
    that."""
    n = Nic(stack, txframes=4)
    n.sock.mode = "hold"
    n.send(frame(0), frame(1))
    n.link[1] = 0
    n.sock.errors = [err]
    n.send(*[frame(i) for i in range(2, 6)])
    assert n.ifp.out_discards[reason] == 2 and n.ifp.if_snd.len == 0
    assert stack.pool.in_use == 0


@pytest.mark.parametrize("err,reason", [(errno.ENETDOWN, "down"), (errno.ENXIO, "link_lost")],
                         ids=["enetdown", "enxio"])
def test_start_drops_what_did_not_fit_when_the_kick_finds_the_link_gone(
        stack, err, reason):
    """The same from if_snd: two slots back of four, four frames queued,
    the kick fails: the two unwritten are dropped as that."""
    n = Nic(stack, txframes=4)
    n.sock.mode = "hold"
    n.send(*[frame(i) for i in range(8)])
    assert n.ifp.if_snd.len == 4
    free_slots(n, 2)
    n.link[1] = 0
    n.sock.errors = [err]
    n.sc.intr(EPOLLOUT)
    assert n.ifp.out_discards[reason] == 2 and n.ifp.if_snd.len == 0
    assert stack.pool.in_use == 0


def test_start_fills_a_ring_s_worth_then_kicks(stack):
    """if_snd holds a frame too long and four more, four slots free: a
    batch of four (three written, one kick), then the last (a kick)."""
    n = Nic(stack, txframes=4)
    n.sock.mode = "hold"
    n.send(*[frame(i) for i in range(4)])
    n.send(frame(4))
    n.send(frame(5, 3000), frame(6), frame(7), frame(8))
    assert n.ifp.if_snd.len == 5
    n.kernel.tx_done()
    n.sock.mode = "send"
    kicks = n.sock.kicks
    n.sc.intr(EPOLLOUT)
    assert n.sock.kicks - kicks == 2
    assert sent(n) == [frame(i) for i in range(9) if i != 5]
    assert n.sc.tx_ring_full == 1 and not n.ifp.flags & IFF_OACTIVE


def test_if_start_while_not_running_leaves_if_snd(stack):
    """if_start on an interface that is not running writes nothing."""
    n = Nic(stack)
    stack.if_down(n.ifp)
    n.ifp.if_snd.enqueue(stack.pool.from_bytes(frame(1)))
    n.ifp.if_start(n.ifp)
    assert n.ifp.if_snd.len == 1 and n.sock.kicks == 0
    n.ifp.if_purge("down")


# -- v3: the TX status word is not the slot's first ------------------------------------
def test_v3_transmit_fills_waits_and_kicks_again(stack, clock):
    """A v3 TX ring (tp_status 20 bytes into the slot): bursts land in
    order, a full ring waits for EPOLLOUT, a short kick is kicked again."""
    n = Nic(stack, ring="v3", txframes=4)
    n.sock.mode = "hold"
    n.send(*[frame(i) for i in range(6)])
    assert sent(n) == [frame(i) for i in range(4)] and n.ifp.if_snd.len == 2
    n.kernel.tx_done()
    n.sock.mode = "none"
    n.sc.intr(EPOLLOUT)
    assert n.sc._kick_co is not None and n.sc.tx_refused == 0
    n.sock.mode = "send"
    tick(clock, stack)
    assert sent(n) == [frame(i) for i in range(6)]


# -- a socket on descriptor 0 ------------------------------------------------------------
def test_a_socket_on_descriptor_0_is_a_socket_like_any_other(stack, clock, monkeypatch):
    """Descriptor 0 is valid: the interface runs, polls, reads the ring
    statistics, waits for EPOLLOUT, retries kicks, reads on after a
    socket error, and detaches from the epoll set."""
    ep = Epoll(stack, monkeypatch, real=False)
    n = Nic(stack, txframes=4, sock=Fd0Sock())
    assert n.sc.fd == 0 and n.ifp.flags & IFF_RUNNING
    n.sock.stats = [4, 1, 0]
    clock.advance(0.2)
    stack._run_callouts()
    assert n.sc.tp_packets == 4 and n.sc._poll_co is not None
    n.sock.mode = "hold"
    n.send(*[frame(i) for i in range(5)])
    n.kernel.tx_done()
    n.sock.mode = "send"
    n.sc.intr(EPOLLOUT)
    n.sock.errors = [errno.ENOBUFS]
    n.send(frame(5))
    tick(clock, stack)
    assert sent(n) == [frame(i) for i in range(6)] and n.sc.tx_blocked == 1
    n.kernel.rx(frame(9))
    n.sock.so_error = errno.EAGAIN
    n.sc.intr(EPOLLIN | 0x008)
    assert n.frames() == [frame(9)] and n.sc.sock_errors == 1
    n.sock.mode = "hold"
    n.send(*[frame(i) for i in range(5)])
    n.sock.stats = [2, 0, 0]
    stack.if_detach(n.ifp)
    assert n.sc.tp_packets == 6
    assert ep.calls == [("attach", 0), ("modify", 0, EPOLLIN | EPOLLOUT), ("modify", 0, EPOLLIN),
                        ("modify", 0, EPOLLIN | EPOLLOUT), ("modify", 0, EPOLLIN),
                        ("detach", 0)]


# -- order on if_snd -------------------------------------------------------------------
def test_a_frame_never_overtakes_one_waiting_on_if_snd(stack, clock):
    """A lost interface brought back by hand (ifconfig up, set_link up)
    queues what does not fit without waiting for EPOLLOUT (its socket
    left the epoll set); a frame sent next goes behind it, not into a
    free slot before it."""
    n = Nic(stack, txframes=4)
    n.link = OSError(errno.ENODEV, "No such device")
    clock.advance(1.1)
    stack._run_callouts()
    stack.if_up(n.ifp)
    n.sc.set_link(True)
    assert n.ifp.flags & IFF_RUNNING
    n.sock.mode = "hold"
    n.send(*[frame(i) for i in range(5)])
    assert n.ifp.if_snd.len == 1 and not n.ifp.flags & IFF_OACTIVE
    n.kernel.tx_done()
    n.sock.mode = "send"
    n.send(frame(5))
    assert sent(n) == [frame(i) for i in range(6)] and n.ifp.if_snd.len == 0
