"""drivers/tap/devnp_tap.py without a TAP: the softc is driven over one end
of a SOCK_SEQPACKET socketpair (one read = one frame, like a TAP), the test
holds the other end as the "kernel side"."""

import errno
import os
import socket

import pytest

from drivers.tap import devnp_tap
from drivers.tap.devnp_tap import TapSoftc
from fakenet import FakeClock
from iopkt.ether import ether_ifattach, mac_aton
from iopkt.ifnet import IFF_OACTIVE, IFF_RUNNING, LINK_STATE_DOWN, LINK_STATE_UP, Ifnet
from iopkt.stack import EPOLLIN, EPOLLOUT, Stack


class FakeTap:
    name = "faketap0"

    def __init__(self, sock):
        self.sock = sock

    def fileno(self):
        return self.sock.fileno()

    def close(self):
        self.sock.close()


class Wire:
    """One tapN interface on `stack` whose TAP is a socketpair end."""

    def __init__(self, stack, burst=64, mtu=1500, sndbuf=None):
        self.stack = stack
        ours, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if sndbuf:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        ours.setblocking(False)
        self.peer.setblocking(False)
        ifp = self.ifp = Ifnet("tap", stack.next_unit("tap"), "devnp-tap")
        ifp.mtu = mtu
        ether_ifattach(ifp, mac_aton("02:00:00:00:00:01"))
        sc = self.sc = TapSoftc(stack, ifp, FakeTap(ours), burst)
        ifp.softc = sc
        ifp.if_init, ifp.if_start, ifp.if_transmit = sc.init, sc.start, sc.transmit
        ifp.if_stop, ifp.if_detach = sc.stop, sc.detach
        stack.if_attach(ifp)
        stack.interrupt_attach(sc.fd, sc.intr)
        stack.if_up(ifp)
        self.bursts = []                     # what reached if_input, per burst

        def record(ifp, pkts):
            burst = []
            for m in pkts:
                assert m.rcvif is ifp and m.pkt_len == m.chain_len()
                burst.append(m.tobytes())
                stack.pool.freem(m)
            self.bursts.append(burst)

        ifp.if_input = record

    def frames_from_kernel(self, *frames):
        for f in frames:
            self.peer.send(f)

    def frames_to_kernel(self) -> list:
        out = []
        while True:
            try:
                out.append(self.peer.recv(65536))
            except BlockingIOError:
                return out


def frame(i: int, size: int = 60) -> bytes:
    head = bytes.fromhex("020000000001") + bytes.fromhex("02aa00000002") + b"\x08\x00"
    body = i.to_bytes(2, "big") * ((size - 14) // 2 + 1)
    return head + body[:size - 14]


def test_attach_state(stack):
    w = Wire(stack)
    assert w.ifp.flags & IFF_RUNNING and w.ifp.link_state == LINK_STATE_UP
    assert w.sc.rx_spill is False and w.sc.vnet is False
    assert stack.pool.njumbo == 0                   # nobody asked for jumbo clusters


def test_receive_in_bursts_of_at_most_burst(stack):
    w = Wire(stack, burst=4)
    sent = [frame(i, 60 + i) for i in range(10)]
    w.frames_from_kernel(*sent)
    w.sc.intr(EPOLLIN)
    assert [len(b) for b in w.bursts] == [4]         # one busy interface yields
    w.sc.intr(EPOLLIN)
    w.sc.intr(EPOLLIN)
    w.sc.intr(EPOLLIN)                               # TAP empty: no call
    assert [len(b) for b in w.bursts] == [4, 4, 2]
    assert [f for b in w.bursts for f in b] == sent
    assert w.sc.rx_intrs == 4
    assert stack.pool.in_use == 0


def test_receive_chained_when_cluster_smaller_than_frame():
    clock = FakeClock()
    st = Stack("small", nmbclusters=32, mclbytes=512, clock=clock)
    try:
        w = Wire(st, mtu=1500)
        assert w.sc.rx_spill is True
        sent = [frame(1, 1514), frame(2, 60), frame(3, 700), frame(4, 449), frame(5, 448)]
        w.frames_from_kernel(*sent)
        w.sc.intr(EPOLLIN)
        assert w.bursts == [sent]
        assert st.pool.in_use == 0
        # Three frames spilled into a jumbo each; one jumbo is held ready.
        assert st.pool.jumbo_in_use == 1 and st.pool.stats()["jumbo_hiwat"] == 4
    finally:
        st.shutdown()
        st.close()


def test_receive_pool_empty_discards_and_counts(stack):
    w = Wire(stack)
    hog = [stack.pool.get() for _ in range(stack.pool.nclusters)]
    w.frames_from_kernel(frame(1), frame(2))
    w.sc.intr(EPOLLIN)
    assert w.bursts == [] and w.frames_to_kernel() == []
    assert w.ifp.in_discards["nobufs"] == 2 and w.ifp.iqdrops == 2
    assert w.ifp.ipackets == 2
    for m in hog:
        stack.pool.free(m)
    w.sc.intr(EPOLLIN)
    assert w.bursts == []                             # they were read and dropped


def test_transmit_writes_at_once(stack):
    w = Wire(stack)
    frames = [frame(i) for i in range(3)]
    w.ifp.if_transmit(w.ifp, [stack.pool.from_bytes(f) for f in frames])
    assert w.frames_to_kernel() == frames
    assert (w.ifp.opackets, w.ifp.obytes) == (3, 180)
    assert w.ifp.if_snd.len == 0 and stack.pool.in_use == 0


def test_transmit_chain_uses_writev(stack):
    w = Wire(stack)
    f = frame(7, 300)
    m = stack.pool.from_bytes(f[:100])
    stack.pool.cat(m, stack.pool.from_bytes(f[100:]))
    w.ifp.if_transmit(w.ifp, [m])
    assert w.frames_to_kernel() == [f]
    assert stack.pool.in_use == 0


def test_transmit_blocked_queues_then_drains_in_order(stack):
    w = Wire(stack, sndbuf=4096)
    frames = [frame(i, 1000) for i in range(12)]
    w.ifp.if_transmit(w.ifp, [stack.pool.from_bytes(f) for f in frames])
    got = w.frames_to_kernel()
    assert 0 < len(got) < 12
    assert w.ifp.flags & IFF_OACTIVE and w.sc.tx_blocked == 1
    assert w.ifp.if_snd.len == 12 - len(got)
    # more while blocked: straight to if_snd, behind the others
    w.ifp.if_transmit(w.ifp, [stack.pool.from_bytes(frame(99, 1000))])
    assert w.ifp.if_snd.len == 13 - len(got)
    while w.ifp.flags & IFF_OACTIVE:
        w.sc.intr(EPOLLOUT)                          # the TAP is writable again
        got += w.frames_to_kernel()
    got += w.frames_to_kernel()
    assert got == frames + [frame(99, 1000)]
    assert w.ifp.opackets == 13 and w.ifp.out_discards["qfull"] == 0
    assert stack.pool.in_use == 0


def test_stop_discards_queued(stack):
    w = Wire(stack, sndbuf=4096)
    w.ifp.if_transmit(w.ifp, [stack.pool.from_bytes(frame(i, 1000)) for i in range(12)])
    queued = w.ifp.if_snd.len
    assert queued > 0
    stack.if_down(w.ifp)
    assert w.ifp.if_snd.len == 0 and w.ifp.out_discards["down"] == queued
    assert not w.ifp.flags & (IFF_RUNNING | IFF_OACTIVE)
    assert stack.pool.in_use == 0


def test_read_ebadfd_is_link_loss(stack, monkeypatch):
    w = Wire(stack)
    w.frames_from_kernel(frame(1))

    def gone(fd, iov):
        raise OSError(errno.EBADFD, os.strerror(errno.EBADFD))

    monkeypatch.setattr(devnp_tap.os, "readv", gone)
    w.sc.intr(EPOLLIN)
    assert w.ifp.link_state == LINK_STATE_DOWN
    assert not w.ifp.flags & IFF_RUNNING
    assert w.sc.fd not in stack._handlers
    assert stack.pool.in_use == 0


def test_hangup_without_data_is_link_loss(stack):
    import select
    w = Wire(stack)
    w.sc.intr(select.EPOLLHUP)
    assert w.ifp.link_state == LINK_STATE_DOWN


@pytest.mark.parametrize("err, reason", [(errno.EBADFD, "link_lost"), (errno.EMSGSIZE, "txerror")])
def test_write_errors(stack, monkeypatch, err, reason):
    w = Wire(stack)

    def fail(fd, data):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(devnp_tap.os, "write", fail)
    w.ifp.if_transmit(w.ifp, [stack.pool.from_bytes(frame(i)) for i in range(3)])
    if reason == "link_lost":                     # the first fails, the rest follow
        assert w.ifp.out_discards["link_lost"] == 3
        assert w.ifp.link_state == LINK_STATE_DOWN
    else:                                         # each fails on its own
        assert w.ifp.out_discards["txerror"] == 3
        assert w.ifp.flags & IFF_RUNNING
    assert w.ifp.oerrors == 3 and w.ifp.opackets == 0
    assert stack.pool.in_use == 0
