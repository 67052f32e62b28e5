"""drivers/devnp_tap/devnp_tap.py without a TAP: the softc is driven over one end
of a SOCK_SEQPACKET socketpair (one read = one frame, like a TAP), the test
holds the other end as the "kernel side"."""

import contextlib
import errno
import gc
import os
import select
import socket

import pytest
from scapy.compat import raw
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from devnp_tap import devnp_tap
from devnp_tap.devnp_tap import TapSoftc
from iopkt.dev.autoconf import DeviceError, DriverError
from iopkt.kern.loop import EPOLLIN, EPOLLOUT
from iopkt.kern.mbuf import (
    M_CSUM_TCPv4,
    M_CSUM_TCPv6,
    M_CSUM_TSOv4,
    M_CSUM_TSOv6,
    M_CSUM_UDPv4,
    M_CSUM_UDPv6,
)
from iopkt.net import vnet
from iopkt.net.ether import ether_ifattach, mac_aton
from iopkt.net.ifnet import (
    IFCAP_CSUM_L4,
    IFF_OACTIVE,
    IFF_RUNNING,
    IFF_UP,
    LINK_STATE_DOWN,
    LINK_STATE_UP,
    SIOCSIFCAP,
    IFCAP_CSUM_TCPv4_Rx,
    IFCAP_CSUM_TCPv4_Tx,
    IFCAP_CSUM_TCPv6_Rx,
    IFCAP_CSUM_TCPv6_Tx,
    IFCAP_CSUM_UDPv4_Rx,
    IFCAP_CSUM_UDPv4_Tx,
    IFCAP_CSUM_UDPv6_Rx,
    IFCAP_CSUM_UDPv6_Tx,
    IFCAP_TSOv4,
    IFCAP_TSOv6,
    Ifnet,
)
from iopkt.netinet.cksum import fold
from iopkt.netinet.in_offload import in_undefer_cksum
from iopkt.stack.stack import Stack

from fakenet import FakeClock
from offload_frames import chain, expected_segments, pseudo_seed


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

    def __init__(self, stack, burst=64, mtu=1500, sndbuf=None, vnet=False, speed=0):
        self.stack = stack
        ours, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if sndbuf:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        ours.setblocking(False)
        self.peer.setblocking(False)
        ifp = self.ifp = Ifnet("tap", stack.next_unit("tap"), "devnp-tap")
        ifp.mtu = mtu
        ether_ifattach(ifp, mac_aton("02:00:00:00:00:01"))
        sc = self.sc = TapSoftc(stack, ifp, FakeTap(ours), burst, speed, vnet_hdr=vnet)
        ifp.softc = sc
        ifp.if_init, ifp.if_start, ifp.if_transmit = sc.init, sc.start, sc.transmit
        ifp.if_stop, ifp.if_detach, ifp.if_ioctl = sc.stop, sc.detach, sc.ioctl
        ifp.if_extra_info = sc.extra_info
        stack.if_attach(ifp)
        stack.interrupt_attach(sc.fd, sc.intr)
        stack.if_up(ifp)
        self.bursts = []                     # what reached if_input, per burst
        self.offload = []                    # (csum_flags, csum_data, segsz) of each

        def record(ifp, pkts):
            burst = []
            for m in pkts:
                assert m.rcvif is ifp and m.pkt_len == m.chain_len()
                burst.append(m.tobytes())
                self.offload.append((m.csum_flags, m.csum_data, m.segsz) if m.csum_flags
                                    else (0, 0, 0))
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
    w.ifp.if_transmit(w.ifp, [stack.pool.from_bytes(frame(9, 100))])
    assert w.frames_to_kernel() == [frame(9, 100)]
    assert (w.ifp.opackets, w.ifp.obytes) == (4, 280)       # the counters add up
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
    assert w.ifp.flags & IFF_OACTIVE and w.sc.tx_blocked == 1
    queued = w.ifp.if_snd.len
    w.sc.intr(EPOLLOUT)                 # a wakeup with no room for a whole frame yet
    assert w.sc.tx_blocked == 2 and w.ifp.if_snd.len == queued
    got = w.frames_to_kernel()
    assert 0 < len(got) < 12
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
    flags = w.ifp.flags
    stack.if_down(w.ifp)
    assert w.ifp.if_snd.len == 0 and w.ifp.out_discards["down"] == queued
    assert w.ifp.flags == flags & ~(IFF_UP | IFF_RUNNING | IFF_OACTIVE)
    assert stack.pool.in_use == 0


def test_read_ebadfd_is_link_loss(stack, monkeypatch):
    w = Wire(stack)
    w.frames_from_kernel(frame(1))

    def gone(buf):
        raise OSError(errno.EBADFD, os.strerror(errno.EBADFD))

    monkeypatch.setattr(w.sc, "_readinto", gone)
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


# -- offload: the virtio-net header ----------------------------------------------
ALL = IFCAP_TSOv4 | IFCAP_TSOv6 | IFCAP_CSUM_L4
ETH = bytes.fromhex("020000000001" "02aa00000002" "0800")


def tcp_frame(n, seq=1000):
    """An Ethernet frame with a TCP segment of `n` payload bytes, its
    checksum left partial as the kernel hands it over."""
    pkt = bytearray(raw(IP(src="198.18.0.2", dst="198.19.0.2", id=7, flags="DF")
                         / TCP(sport=4000, dport=5201, seq=seq, flags="PA")
                         / bytes(i & 0xFF for i in range(n))))
    pkt[36:38] = pseudo_seed(bytes(pkt), 20).to_bytes(2, "big")
    return ETH + bytes(pkt)


def hdr(flags=0, gso=0, hdr_len=0, gso_size=0, start=0, off=0):
    return vnet.HDR.pack(flags, gso, hdr_len, gso_size, start, off)


@pytest.fixture
def offload_wire(stack, monkeypatch):
    """A tapN with the virtio-net header; TUNSETOFFLOAD calls recorded."""
    calls = []
    monkeypatch.setattr(vnet, "set_offload", lambda fd, mask: calls.append(mask))
    w = Wire(stack, vnet=True)
    w.ifp.capabilities = ALL
    w.ifp.set_capenable(ALL)
    w.calls = calls
    yield w
    w.sc.detach(w.ifp)
    assert stack.pool.jumbo_in_use == 0


def test_vnet_superframe_is_read_into_a_cluster_and_a_jumbo(stack, offload_wire):
    w = offload_wire
    f = tcp_frame(20000)
    w.frames_from_kernel(hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, vnet.VIRTIO_NET_HDR_GSO_TCPV4,
                             54, 1448, 34, 16) + f)
    w.sc.intr(EPOLLIN)
    assert w.bursts == [[f]]
    assert w.offload == [(M_CSUM_TSOv4 | M_CSUM_TCPv4, (20 << 16) | 16, 1448)]
    assert w.sc.rx_super == 1
    assert stack.pool.stats()["jumbo_hiwat"] == 2      # the frame's and the one held ready


def test_vnet_partial_and_plain_frames(stack, offload_wire):
    w = offload_wire
    partial = tcp_frame(100)
    plain = frame(3, 100)
    w.frames_from_kernel(hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 34, 16) + partial,
                         hdr() + plain,
                         hdr(vnet.VIRTIO_NET_HDR_F_DATA_VALID) + plain)
    w.sc.intr(EPOLLIN)
    assert w.bursts == [[partial, plain, plain]]
    assert w.offload == [(M_CSUM_TCPv4, (20 << 16) | 16, 0), (0, 0, 0), (0, 0, 0)]


@pytest.mark.parametrize("bad", [
    hdr(0, vnet.VIRTIO_NET_HDR_GSO_TCPV4, 54, 1448, 34, 16),         # GSO, not partial
    hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 34, 4000),          # beyond the frame
    hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, vnet.VIRTIO_NET_HDR_GSO_UDP, 42, 1400, 34, 6),
    hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 34, 10),            # not TCP nor UDP
    hdr(0, vnet.VIRTIO_NET_HDR_GSO_TCPV4, 0, 1448, 0, 0),              # GSO and nothing else
])
def test_vnet_header_that_lies_is_dropped_and_counted(stack, offload_wire, bad):
    w = offload_wire
    w.frames_from_kernel(bad + tcp_frame(100), hdr() + frame(1), bad + tcp_frame(200))
    w.sc.intr(EPOLLIN)
    assert w.bursts == [[frame(1)]]
    # The driver counts the frames it drops; ether_input (replaced by this
    # rig's recorder) would count the other.
    assert w.ifp.in_discards["bad_offload"] == 2 and w.ifp.ipackets == 2
    assert stack.pool.in_use == 0


def test_vnet_transmit_puts_the_header_in_front(stack, offload_wire):
    w = offload_wire
    pool = stack.pool
    plain = pool.from_bytes(frame(5, 200))
    part = pool.from_bytes(tcp_frame(300))
    part.csum_flags, part.csum_data = M_CSUM_TCPv4, (20 << 16) | 16
    big = pool.from_bytes(tcp_frame(8000))                # a chain of clusters
    big.csum_flags, big.csum_data, big.segsz = M_CSUM_TSOv4 | M_CSUM_TCPv4, (20 << 16) | 16, 1448
    w.ifp.if_transmit(w.ifp, [plain, part, big])
    out = w.frames_to_kernel()
    assert out[0] == hdr() + frame(5, 200)
    assert out[1] == hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 52, 0, 34, 16) + tcp_frame(300)
    assert out[2] == hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, vnet.VIRTIO_NET_HDR_GSO_TCPV4,
                         54, 1448, 34, 16) + tcp_frame(8000)
    assert (w.ifp.opackets, w.ifp.obytes) == (3, 200 + len(tcp_frame(300)) + len(tcp_frame(8000)))
    assert w.sc.tx_super == 1 and pool.in_use == 0


def test_a_gso_write_the_kernel_refuses_is_segmented_and_counted(stack, offload_wire,
                                                                 monkeypatch):
    w = offload_wire
    real = os.write

    def picky(fd, data):
        if bytes(data[1:2]) != b"\0":               # any GSO type: EINVAL
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, data)

    monkeypatch.setattr(devnp_tap.os, "write", picky)
    monkeypatch.setattr(devnp_tap.os, "writev", lambda fd, bufs: picky(fd, b"".join(bufs)))
    big = stack.pool.from_bytes(tcp_frame(4000))
    big.csum_flags, big.csum_data, big.segsz = M_CSUM_TSOv4 | M_CSUM_TCPv4, (20 << 16) | 16, 1448
    w.ifp.if_transmit(w.ifp, [big])
    out = w.frames_to_kernel()
    full = bytearray(tcp_frame(4000)[14:])
    full[36:38] = b"\0\0"
    want = expected_segments(raw(IP(bytes(full))), 1448)
    assert len(out) == 3
    for got, seg in zip(out, want):
        assert got[:10] == hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 52, 0, 34, 16)
        assert got[10:24] == ETH
        ip = bytearray(got[24:])
        m = stack.pool.from_bytes(ip)               # complete what the kernel would
        m.csum_flags, m.csum_data = M_CSUM_TCPv4, (20 << 16) | 16
        in_undefer_cksum(m)
        assert m.tobytes() == seg
        stack.pool.freem(m)
    assert w.sc.gso_refused == 1 and (w.ifp.sw_tso, w.ifp.sw_tso_segs) == (1, 3)
    assert w.ifp.oerrors == 0 and stack.pool.in_use == 0
    # From now on the IP layer segments IPv4: tso4 is off, the kernel told so
    # (tso6 stays: the refused frame was IPv4).
    assert not w.ifp.capenable & IFCAP_TSOv4 and w.ifp.capenable & IFCAP_TSOv6
    assert w.calls[-1] == vnet.TUN_F_CSUM | vnet.TUN_F_TSO6


def test_rx_checksum_offload_off_completes_partial_checksums_on_receive(stack, offload_wire):
    w = offload_wire
    w.ifp.set_capenable(IFCAP_CSUM_UDPv4_Rx | IFCAP_CSUM_UDPv4_Tx)    # TCP Rx off
    assert w.calls[-1] == vnet.TUN_F_CSUM           # UDP still wants partial checksums
    w.frames_from_kernel(hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 34, 16)
                         + tcp_frame(500))
    w.sc.intr(EPOLLIN)
    (got,) = w.bursts[0]
    again = IP(got[14:])
    del again[TCP].chksum
    assert IP(raw(again))[TCP].chksum == Ether(got)[TCP].chksum    # scapy agrees
    assert w.offload == [(0, 0, 0)] and w.ifp.sw_csum == 1


def test_capenable_sets_the_tap_offload_mask_and_detach_resets_it(offload_wire):
    w = offload_wire                                # all capabilities on: CSUM|TSO4|TSO6 set
    w.ifp.set_capenable(ALL & ~IFCAP_TSOv4)
    w.ifp.set_capenable(ALL & ~(IFCAP_TSOv4 | IFCAP_TSOv6))
    w.ifp.set_capenable(IFCAP_CSUM_UDPv4_Tx)        # nothing to receive partial any more
    assert w.calls == [vnet.TUN_F_CSUM | vnet.TUN_F_TSO4 | vnet.TUN_F_TSO6,
                       vnet.TUN_F_CSUM | vnet.TUN_F_TSO6, vnet.TUN_F_CSUM, 0]
    w.ifp.set_capenable(ALL)
    w.sc.detach(w.ifp)
    assert w.calls[-1] == 0                         # a persistent TAP forgets our mask


def test_a_mask_the_kernel_refuses_leaves_the_capabilities_as_they_were(stack, monkeypatch):
    def refuse(fd, mask):
        if mask & vnet.TUN_F_TSO4:
            raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(vnet, "set_offload", refuse)
    w = Wire(stack, vnet=True)
    w.ifp.capabilities = ALL
    w.ifp.set_capenable(ALL & ~IFCAP_TSOv4)
    with pytest.raises(OSError):
        w.ifp.set_capenable(ALL)
    assert w.ifp.capenable == ALL & ~IFCAP_TSOv4
    w.sc.detach(w.ifp)


def test_probe_advertises_what_the_kernel_accepts_and_says_so_once(stack, monkeypatch,
                                                                   caplog):
    masks = []

    def no_tso(fd, mask):
        masks.append(mask)
        if mask & (vnet.TUN_F_TSO4 | vnet.TUN_F_TSO6):
            raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(vnet, "set_offload", no_tso)
    monkeypatch.setattr(vnet, "set_vnet_hdr_sz", lambda fd, n=10: None)
    w = Wire(stack, vnet=True)
    with caplog.at_level("WARNING", logger="iopkt"):
        w.sc.probe(w.ifp)
    assert masks == [vnet.TUN_F_CSUM | vnet.TUN_F_TSO4 | vnet.TUN_F_TSO6, vnet.TUN_F_CSUM]
    assert w.ifp.capabilities == ALL & ~(IFCAP_TSOv4 | IFCAP_TSOv6)
    info = w.sc.extra_info(w.ifp)
    assert info["tun_offload"] == "CSUM" and info["tun_offload_refused"] == "TSO4,TSO6"
    assert [r.message for r in caplog.records] == [
        "tap0: the kernel refused TAP offload TSO4,TSO6; using CSUM (said once)"]
    w.sc.detach(w.ifp)


def test_without_the_header_the_mask_is_reset_and_nothing_is_offered(stack, monkeypatch):
    masks = []
    monkeypatch.setattr(vnet, "set_offload", lambda fd, mask: masks.append(mask))
    w = Wire(stack)
    w.sc.probe(w.ifp)
    assert masks == [0] and w.ifp.capabilities == 0


def test_a_frame_longer_than_a_cluster_on_a_tap_without_spill_is_dropped(stack, monkeypatch):
    w = Wire(stack)                                 # 1984 bytes of room, MTU 1500
    stack.pool.enable_jumbo(4)                      # another interface made jumbos
    sock = w.sc.tap.sock

    def tun_read(buf):                              # tun: the whole length, cut or not
        return sock.recvmsg_into([buf], 0, socket.MSG_TRUNC)[0]

    monkeypatch.setattr(w.sc, "_readinto", tun_read)
    w.frames_from_kernel(frame(1, 3000), frame(2, 100), frame(3, 2500))  # the MTU was raised
    w.sc.intr(EPOLLIN)
    assert w.bursts == [[frame(2, 100)]]
    assert w.ifp.in_discards["too_long"] == 2 and w.ifp.ipackets == 2 and w.ifp.ierrors == 2
    assert stack.pool.jumbo_in_use == 0 and stack.pool.jumbo_drops == 0


def test_the_spill_is_rearmed_as_soon_as_jumbos_come_back():
    st = Stack("few", nmbclusters=64, nmbjumbo=2, clock=FakeClock())
    try:
        w = Wire(st, vnet=True)                     # holds one jumbo ready
        other = st.pool.get_jumbo()                 # the last one: taken elsewhere
        big = hdr() + frame(1, 5000)
        w.frames_from_kernel(big, big)
        w.sc.intr(EPOLLIN)                          # the first spills, none left for the next
        assert w.bursts == [[frame(1, 5000)]]
        assert w.ifp.in_discards["nobufs"] == 1
        for m in (other,):
            st.pool.free(m)
        w.frames_from_kernel(big)
        w.sc.intr(EPOLLIN)                          # a jumbo is back: taken before reading
        assert w.bursts[-1] == [frame(1, 5000)] and w.ifp.in_discards["nobufs"] == 1
        w.sc.detach(w.ifp)
        assert st.pool.jumbo_in_use == 0
    finally:
        st.shutdown()
        st.close()


def test_a_failed_attach_gives_its_jumbo_back(stack, monkeypatch):
    class Tun(FakeTap):
        mtu = 1500

        def __init__(self, name, flags):
            ours, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            super().__init__(ours)

    def broken(fd, size=10):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(devnp_tap.pytun, "TunTapDevice", Tun)
    monkeypatch.setattr(vnet, "set_vnet_hdr_sz", broken)
    with pytest.raises(OSError):
        devnp_tap.attach(stack, devnp_tap.DRIVER.parse_options("name=t0"))
    assert stack.pool.jumbo_in_use == 0 and not stack.ifnets


def test_no_jumbo_clusters_means_no_tso(monkeypatch):
    monkeypatch.setattr(vnet, "set_offload", lambda fd, mask: None)
    monkeypatch.setattr(vnet, "set_vnet_hdr_sz", lambda fd, n=10: None)
    st = Stack("nojumbo", nmbclusters=64, nmbjumbo=0, clock=FakeClock())
    try:
        w = Wire(st, vnet=True)
        w.sc.probe(w.ifp)
        assert w.ifp.capabilities == ALL & ~(IFCAP_TSOv4 | IFCAP_TSOv6)
    finally:
        st.shutdown()
        st.close()


def test_vnet_transmit_blocked_queues_then_drains_in_order(stack, offload_wire):
    w = offload_wire
    w.peer.close()
    ours, w.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ours.setblocking(False)
    w.peer.setblocking(False)
    stack.interrupt_detach(w.sc.fd)
    w.sc.tap = FakeTap(ours)
    w.sc.fd = ours.fileno()
    stack.interrupt_attach(w.sc.fd, w.sc.intr)
    frames = [frame(i, 1000) for i in range(12)]
    w.ifp.if_transmit(w.ifp, [stack.pool.from_bytes(f) for f in frames])
    got = w.frames_to_kernel()
    assert 0 < len(got) < 12 and w.ifp.flags & IFF_OACTIVE
    while w.ifp.flags & IFF_OACTIVE:
        w.sc.intr(EPOLLOUT)
        got += w.frames_to_kernel()
    got += w.frames_to_kernel()
    assert got == [hdr() + f for f in frames]
    assert w.ifp.opackets == 12 and w.ifp.obytes == 12 * 1000
    assert stack.pool.in_use == 0


# -- attach: the options are checked before the TAP is opened ----------------------
class FakeTun(FakeTap):
    """pytun.TunTapDevice as attach() uses it, over a socketpair: it keeps
    the flags it was opened with and every MTU set on it; without a name
    the "kernel" picks tap7."""

    def __init__(self, name="", flags=0):
        ours, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        super().__init__(ours)
        self.name = name or "tap7"
        self.flags = flags
        self.mtus = []
        self.closed = False

    @property
    def mtu(self):
        return self.mtus[-1]

    @mtu.setter
    def mtu(self, value):
        self.mtus.append(value)

    def close(self):
        self.closed = True
        self.sock.close()
        self.peer.close()


class Kernel:
    """What attach() asks of the kernel: the TAPs opened, and every
    TUNSETVNETHDRSZ / TUNSETOFFLOAD as (ioctl, fd, value)."""

    def __init__(self, monkeypatch):
        self.taps = []
        self.ioctls = []
        self.refuse = 0                     # TUNSETOFFLOAD bits answered EINVAL

        def tun_open(name="", flags=0):
            tap = FakeTun(name, flags)
            self.taps.append(tap)
            return tap

        def set_offload(fd, mask):
            if mask & self.refuse:
                raise OSError(errno.EINVAL, "Invalid argument")
            self.ioctls.append(("offload", fd, mask))

        def set_vnet_hdr_sz(fd, size=10):
            self.ioctls.append(("hdr_sz", fd, size))

        monkeypatch.setattr(devnp_tap.pytun, "TunTapDevice", tun_open)
        monkeypatch.setattr(vnet, "set_offload", set_offload)
        monkeypatch.setattr(vnet, "set_vnet_hdr_sz", set_vnet_hdr_sz)


@pytest.fixture
def kernel(monkeypatch):
    return Kernel(monkeypatch)


def mount(stack, options):
    return devnp_tap.attach(stack, devnp_tap.DRIVER.parse_options(options))


@pytest.mark.parametrize("options, msg", [
    ("mtu=67", "devnp-tap: option mtu=67: must be 68..9000"),
    ("mtu=9001", "devnp-tap: option mtu=9001: must be 68..9000"),
    ("speed=7", "devnp-tap: option speed=7: one of 10, 100, 1000, 10000 (Mbit/s) "
                "or 0 for no limit"),
    ("burst=0", "devnp-tap: option burst=0: must be >= 1"),
    ("burst=4097", "devnp-tap: option burst=4097: must be 1..4096"),
    ("txqlen=0", "devnp-tap: option txqlen=0: must be 1..65536"),
    ("txqlen=65537", "devnp-tap: option txqlen=65537: must be 1..65536"),
    ("mac=zz", "devnp-tap: option mac=zz: expected xx:xx:xx:xx:xx:xx, six hex bytes like "
               "02:00:00:00:00:01 (unicast: first byte even; not all zero)"),
    ("mac=0x2:0:0:0:0:1", "devnp-tap: option mac=0x2:0:0:0:0:1: expected xx:xx:xx:xx:xx:xx, "
                          "six hex bytes like 02:00:00:00:00:01 (unicast: first byte even; "
                          "not all zero)"),
    ("mac=01:00:5e:00:00:01", "devnp-tap: option mac=01:00:5e:00:00:01: expected "
                              "xx:xx:xx:xx:xx:xx, six hex bytes like 02:00:00:00:00:01 "
                              "(unicast: first byte even; not all zero)"),
    ("mac=0:0:0:0:0:0", "devnp-tap: option mac=0:0:0:0:0:0: expected xx:xx:xx:xx:xx:xx, "
                        "six hex bytes like 02:00:00:00:00:01 (unicast: first byte even; "
                        "not all zero)"),
    ("name=abcdefghijklmnop", "devnp-tap: option name=abcdefghijklmnop: at most 15 characters"),
    ("name=a/b", "devnp-tap: option name=a/b: an interface name is 1-15 characters, "
                 "not '.' or '..', without '/', ':' or spaces"),
])
def test_attach_refuses_a_bad_option_with_one_sentence_and_opens_nothing(stack, kernel,
                                                                          options, msg):
    with pytest.raises(DriverError) as ei:
        mount(stack, options)
    assert str(ei.value) == msg
    assert kernel.taps == [] and stack.ifnets == {}


@pytest.mark.parametrize("options", [
    "mtu=68", "mtu=9000", "burst=1", "burst=4096", "txqlen=1", "txqlen=65536",
    "speed=0", "speed=10", "speed=100", "speed=1000", "speed=10000",
    "mac=2:0:0:0:0:1", "mac=02:00:5E:00:00:0a", "name=abcdefghijklmno",
])
def test_attach_accepts_every_value_at_the_edge_of_its_range(stack, kernel, options):
    ifp = mount(stack, options)
    assert stack.ifnets == {"tap0": ifp} and ifp.flags & IFF_RUNNING


def test_a_frame_longer_than_a_cluster_needs_jumbo_clusters(kernel):
    st = Stack("nojumbo", nmbclusters=64, nmbjumbo=0, clock=FakeClock())
    try:
        room = st.pool.mclbytes - st.pool.headroom              # 1984
        with pytest.raises(DriverError) as ei:
            mount(st, f"mtu={room - 13},offload=0")
        assert str(ei.value) == (
            "devnp-tap: option mtu=1971: frames longer than a cluster (1984 bytes of data) "
            "need jumbo clusters: give --nmbjumbo > 0")
        assert kernel.taps == []
        ifp = mount(st, f"mtu={room - 14},offload=0")           # a full frame just fits
        assert ifp.mtu == 1970 and ifp.softc.rx_spill is False
    finally:
        st.shutdown()
        st.close()


def test_a_frame_one_byte_longer_than_a_cluster_spills(stack, kernel):
    room = stack.pool.mclbytes - stack.pool.headroom
    ifp = mount(stack, f"mtu={room - 13},offload=0")
    assert ifp.softc.rx_spill is True and stack.pool.jumbo_in_use == 1


# -- attach: what it builds ------------------------------------------------------
def test_attach_opens_the_tap_and_builds_the_interface_from_the_options(stack, kernel):
    ifp = mount(stack, "name=t0,mac=02:00:00:00:00:09,mtu=1400,burst=8,txqlen=50,speed=100")
    (tap,) = kernel.taps
    assert tap.name == "t0"
    assert tap.flags == devnp_tap.pytun.IFF_TAP | devnp_tap.pytun.IFF_NO_PI \
        | devnp_tap.pytun.IFF_VNET_HDR
    assert tap.mtus == [1400]                       # the kernel side gets our MTU
    assert os.get_blocking(tap.fileno()) is False
    assert stack.ifnets == {"tap0": ifp}
    assert (ifp.name, ifp.dname) == ("tap0", "devnp-tap")
    assert ifp.description == ifp.if_devkey == "TAP t0"
    assert ifp.mtu == 1400 and ifp.if_snd.maxlen == 50
    assert ifp.lladdr == bytes.fromhex("020000000009")
    assert ifp.baudrate == 100_000_000
    sc = ifp.softc
    assert sc.ifp is ifp and sc.tap is tap and sc.fd == tap.fileno()
    assert sc.burst == 8 and sc.vnet is True and sc.pacer.rate == 100e6 / 8
    assert ifp.if_transmit == sc.transmit and ifp.if_start == sc.start
    assert stack._handlers[sc.fd] == sc.intr        # the TAP is its interrupt
    assert ifp.capabilities == ifp.capenable == ALL
    assert ifp.flags & IFF_UP and ifp.flags & IFF_RUNNING
    assert ifp.link_state == LINK_STATE_UP
    assert kernel.ioctls == [("hdr_sz", sc.fd, 10),
                             ("offload", sc.fd, vnet.TUN_F_CSUM | vnet.TUN_F_TSO4
                              | vnet.TUN_F_TSO6)]


def test_attach_defaults_a_kernel_named_tap_a_random_mac_and_no_pacing(stack, kernel):
    ifp = mount(stack, "offload=0")
    (tap,) = kernel.taps
    assert tap.flags == devnp_tap.pytun.IFF_TAP | devnp_tap.pytun.IFF_NO_PI
    assert tap.mtus == [1500]
    assert ifp.description == ifp.if_devkey == "TAP tap7"
    assert len(ifp.lladdr) == 6 and ifp.lladdr[0] == 0x02
    assert ifp.if_snd.maxlen == 256 and ifp.baudrate == 0
    sc = ifp.softc
    assert sc.burst == 64 and sc.pacer is None and sc.vnet is False
    assert ifp.capabilities == ifp.capenable == 0
    # Without the header the TAP's offload mask is reset: a persistent TAP
    # may remember one from an earlier user.
    assert kernel.ioctls == [("offload", sc.fd, 0)]
    stack.if_detach(ifp)
    assert tap.closed and stack.ifnets == {}


def test_each_attach_gets_the_next_unit(stack, kernel):
    a = mount(stack, "name=ta")
    b = mount(stack, "name=tb")
    assert (a.name, b.name) == ("tap0", "tap1")
    assert stack.ifnets == {"tap0": a, "tap1": b}


def test_random_mac_is_locally_administered_unicast():
    macs = {devnp_tap.random_mac() for _ in range(8)}
    assert all(len(m) == 6 and m[0] == 0x02 for m in macs)
    assert len(macs) > 1


CSUM, TSO4, TSO6 = vnet.TUN_F_CSUM, vnet.TUN_F_TSO4, vnet.TUN_F_TSO6
TCP4 = IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv4_Tx
TCP6 = IFCAP_CSUM_TCPv6_Rx | IFCAP_CSUM_TCPv6_Tx


@pytest.mark.parametrize("options, caps, mask", [
    ("", ALL, CSUM | TSO4 | TSO6),
    ("tso4=0", ALL & ~IFCAP_TSOv4, CSUM | TSO6),
    ("tso6=0", ALL & ~IFCAP_TSOv6, CSUM | TSO4),
    # TSO needs its family's TCP checksum offload: without it that TSO goes
    # too. One TUN_F_CSUM serves TCP and UDP of both families alike.
    ("tcp4csum=0", ALL & ~(IFCAP_TSOv4 | TCP4), CSUM | TSO6),
    ("udp4csum=0", ALL & ~(IFCAP_CSUM_UDPv4_Rx | IFCAP_CSUM_UDPv4_Tx), CSUM | TSO4 | TSO6),
    ("tcp6csum=0", ALL & ~(IFCAP_TSOv6 | TCP6), CSUM | TSO4),
    ("udp6csum=0", ALL & ~(IFCAP_CSUM_UDPv6_Rx | IFCAP_CSUM_UDPv6_Tx), CSUM | TSO4 | TSO6),
    ("tcp4csum=0,udp4csum=0,tcp6csum=0", IFCAP_CSUM_UDPv6_Rx | IFCAP_CSUM_UDPv6_Tx, CSUM),
    ("tso4=0,tso6=0,tcp4csum=0,udp4csum=0,tcp6csum=0,udp6csum=0", 0, 0),
], ids=["all", "notso4", "notso6", "notcp4csum", "noudp4csum", "notcp6csum", "noudp6csum",
        "udp6csum_only", "none"])
def test_attach_turns_on_the_offloads_the_options_ask_for(stack, kernel, options, caps, mask):
    ifp = mount(stack, options)
    assert ifp.capabilities == ALL and ifp.capenable == caps
    assert kernel.ioctls[-1] == ("offload", ifp.softc.fd, mask)


def test_an_attach_that_fails_before_the_softc_exists_closes_the_tap(stack, kernel,
                                                                     monkeypatch):
    def no_blocking_change(fd, blocking):
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    monkeypatch.setattr(devnp_tap.os, "set_blocking", no_blocking_change)
    with pytest.raises(OSError) as ei:
        mount(stack, "name=t0")
    assert ei.value.errno == errno.EBADF
    (tap,) = kernel.taps
    assert tap.closed and stack.ifnets == {}


@pytest.fixture
def namespaces(monkeypatch, tmp_path):
    """Network namespaces as files under tmp_path (blue exists, red does
    not); entering one is recorded instead of done."""
    from iopkt.dev import netns
    (tmp_path / "blue").touch()
    (tmp_path / "a" / "b").mkdir(parents=True)      # a path that exists, not a name
    entered = []

    @contextlib.contextmanager
    def inside(name):
        entered.append(name)
        yield
        entered.append("back")

    monkeypatch.setattr(netns, "ns_path", lambda name: str(tmp_path / name))
    monkeypatch.setattr(netns, "inside", inside)
    return entered


def test_attach_opens_the_tap_inside_the_namespace_it_names(stack, kernel, namespaces):
    ifp = mount(stack, "name=t0,netns=blue,mtu=1400")
    (tap,) = kernel.taps
    assert namespaces == ["blue", "back"]           # only for the open, then back
    assert tap.name == "t0" and tap.mtus == [1400]
    assert tap.flags == devnp_tap.pytun.IFF_TAP | devnp_tap.pytun.IFF_NO_PI \
        | devnp_tap.pytun.IFF_VNET_HDR
    assert ifp.description == ifp.if_devkey == "TAP t0 in netns blue"


@pytest.mark.parametrize("ns", ["red", "a/b", ".", ".."])
def test_a_namespace_that_is_not_there_is_a_usage_error(stack, kernel, namespaces, ns):
    with pytest.raises(DriverError) as ei:
        mount(stack, f"name=t0,netns={ns}")
    assert str(ei.value) == (f"devnp-tap: option netns={ns}: no network namespace '{ns}' "
                             "(see 'ip netns list')")
    assert namespaces == [] and kernel.taps == [] and stack.ifnets == {}


@pytest.mark.parametrize("name, msg", [
    ("t0", "devnp-tap: cannot open TAP t0: Operation not permitted (needs CAP_NET_ADMIN, "
           "or the TAP belongs to another user)"),
    ("", "devnp-tap: cannot open a TAP: Operation not permitted (needs CAP_NET_ADMIN, "
         "or the TAP belongs to another user)"),
])
def test_a_tap_the_kernel_will_not_open_is_a_device_error_naming_it(stack, monkeypatch,
                                                                     name, msg):
    def refuse(name="", flags=0):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(devnp_tap.pytun, "TunTapDevice", refuse)
    with pytest.raises(DeviceError) as ei:
        mount(stack, f"name={name}")
    assert str(ei.value) == msg and ei.value.errno == errno.EPERM
    assert ei.value.__cause__ is None and ei.value.__suppress_context__
    assert stack.ifnets == {}


def test_a_tap_that_refuses_the_mtu_is_closed_again(stack, kernel, monkeypatch):
    def no_mtu(self, value):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(FakeTun, "mtu", property(lambda self: 1500, no_mtu))
    with pytest.raises(OSError) as ei:
        mount(stack, "name=t0,mtu=1400")
    assert ei.value.errno == errno.EINVAL
    (tap,) = kernel.taps
    assert tap.closed and stack.ifnets == {}


# -- nicinfo: what the driver shows about itself ------------------------------------
def test_extra_info_of_a_fresh_plain_tap(stack):
    w = Wire(stack, burst=16)
    assert w.ifp.if_extra_info(w.ifp) == {
        "driver": "devnp-tap (native, stack thread)", "tap": "faketap0", "rx_burst": 16,
        "paced_waits": 0, "rx_interrupts": 0, "tx_blocked": 0,
        "rx_spill": False, "vnet_hdr": False,
        "tun_offload": "none", "tun_offload_refused": "none",
        "rx_superframes": 0, "rx_partial_csum": 0,
        "tx_superframes": 0, "tx_gso_refused": 0}


def test_extra_info_shows_each_counter_under_its_own_name(stack):
    w = Wire(stack, vnet=True, speed=100)
    sc = w.sc
    sc.pacer.waits = 3
    sc.rx_intrs, sc.tx_blocked = 5, 7
    sc.tun_offload, sc.tun_refused = vnet.TUN_F_CSUM, vnet.TUN_F_TSO4
    sc.rx_super, sc.rx_partial, sc.tx_super, sc.gso_refused = 11, 13, 17, 19
    assert w.ifp.if_extra_info(w.ifp) == {
        "driver": "devnp-tap (native, stack thread)", "tap": "faketap0", "rx_burst": 64,
        "paced_waits": 3, "rx_interrupts": 5, "tx_blocked": 7,
        "rx_spill": True, "vnet_hdr": True,
        "tun_offload": "CSUM", "tun_offload_refused": "TSO4",
        "rx_superframes": 11, "rx_partial_csum": 13,
        "tx_superframes": 17, "tx_gso_refused": 19}
    w.sc.detach(w.ifp)


def test_attach_with_tso4_refused_by_the_kernel_offers_checksums_only(stack, kernel):
    kernel.refuse = vnet.TUN_F_TSO4
    ifp = mount(stack, "name=t0")
    # negotiate_offload falls back to checksums alone: TSO6 goes with TSO4.
    assert ifp.capabilities == ifp.capenable == ALL & ~(IFCAP_TSOv4 | IFCAP_TSOv6)
    fd = ifp.softc.fd
    assert kernel.ioctls == [("hdr_sz", fd, 10), ("offload", fd, vnet.TUN_F_CSUM)]


# -- detach: the TAP is given back as it was found ------------------------------------
def test_detach_resets_the_mask_closes_the_tap_and_forgets_the_descriptor(stack, kernel):
    ifp = mount(stack, "name=t0")
    sc = ifp.softc
    (tap,) = kernel.taps
    fd = sc.fd
    stack.if_detach(ifp)
    assert kernel.ioctls[-1] == ("offload", fd, 0)
    assert tap.closed and fd not in stack._handlers
    assert stack.pool.jumbo_in_use == 0                 # the spill jumbo went back
    # From now on nothing reaches the (closed) descriptor.
    n = len(kernel.ioctls)
    sc.ioctl(ifp, SIOCSIFCAP, ALL & ~IFCAP_TSOv4)
    ifp.flags &= ~IFF_RUNNING
    sc.init(ifp)
    assert len(kernel.ioctls) == n and not ifp.flags & IFF_RUNNING


def test_release_gives_the_spill_jumbo_back_once(stack):
    w = Wire(stack, vnet=True)
    assert stack.pool.jumbo_in_use == 1
    w.sc.release()
    w.sc.release()
    assert stack.pool.jumbo_in_use == 0


# -- link loss: said once, naming the TAP and why -------------------------------------
def link_lost_messages(caplog):
    return [r.getMessage() for r in caplog.records if "link lost" in r.getMessage()]


def test_a_hangup_is_said_once_as_the_tap_gone_bad(stack, caplog):
    w = Wire(stack)
    with caplog.at_level("WARNING", logger="iopkt"):
        w.sc.intr(select.EPOLLHUP)
        w.sc.intr(select.EPOLLERR | select.EPOLLHUP)
    assert link_lost_messages(caplog) == [
        "tap0: link lost: TAP faketap0: File descriptor in bad state; interface marked down"]
    assert w.ifp.link_state == LINK_STATE_DOWN and w.sc.rx_intrs == 0


def test_an_error_without_errno_is_link_loss_said_as_error(stack, monkeypatch, caplog):
    w = Wire(stack)

    def broken(buf):
        raise OSError("tun went away")

    monkeypatch.setattr(w.sc, "_readinto", broken)
    w.frames_from_kernel(frame(1))
    with caplog.at_level("WARNING", logger="iopkt"):
        w.sc.intr(EPOLLIN)
    assert link_lost_messages(caplog) == [
        "tap0: link lost: TAP faketap0: error; interface marked down"]


@pytest.mark.parametrize("vnet_hdr", [False, True])
def test_a_read_error_mid_burst_passes_up_what_was_read(stack, monkeypatch, caplog, vnet_hdr):
    w = Wire(stack, vnet=vnet_hdr)
    head = hdr() if vnet_hdr else b""
    w.frames_from_kernel(head + frame(1), head + frame(2))
    reads = []

    def gone(*args):
        raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))

    if vnet_hdr:
        real = os.readv
        monkeypatch.setattr(devnp_tap.os, "readv",
                            lambda fd, iov: reads.append(1) or (real(fd, iov) if len(reads) == 1
                                                                else gone()))
    else:
        real = w.sc._readinto
        monkeypatch.setattr(w.sc, "_readinto",
                            lambda buf: reads.append(1) or (real(buf) if len(reads) == 1
                                                            else gone()))
    with caplog.at_level("WARNING", logger="iopkt"):
        w.sc.intr(EPOLLIN)
    assert w.bursts == [[frame(1)]] and len(reads) == 2
    assert link_lost_messages(caplog) == [
        "tap0: link lost: TAP faketap0: No such device; interface marked down"]
    assert w.sc.fd not in stack._handlers
    assert stack.pool.in_use == 0
    w.sc.release()


def test_a_write_error_that_loses_the_link_stops_writing(stack, monkeypatch, caplog):
    w = Wire(stack)
    real = os.write
    writes = []

    def dies_after_one(fd, data):
        writes.append(bytes(data))
        if len(writes) > 1:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(fd, data)

    monkeypatch.setattr(devnp_tap.os, "write", dies_after_one)
    with caplog.at_level("WARNING", logger="iopkt"):
        w.ifp.if_transmit(w.ifp, [stack.pool.from_bytes(frame(i)) for i in range(4)])
    assert w.frames_to_kernel() == [frame(0)]
    assert len(writes) == 2                         # nothing more after the link is gone
    assert (w.ifp.opackets, w.ifp.obytes) == (1, 60)
    assert w.ifp.out_discards["link_lost"] == 3 and w.ifp.oerrors == 3
    assert link_lost_messages(caplog) == [
        "tap0: link lost: TAP faketap0: Input/output error; interface marked down"]


def test_the_pool_empty_and_the_tap_gone_is_link_loss(stack, monkeypatch, caplog):
    w = Wire(stack)
    hog = [stack.pool.get() for _ in range(stack.pool.nclusters)]
    calls = []

    def gone(fd, iov):
        calls.append(fd)
        raise OSError(errno.EBADFD, os.strerror(errno.EBADFD))

    monkeypatch.setattr(devnp_tap.os, "readv", gone)
    with caplog.at_level("WARNING", logger="iopkt"):
        w.sc.intr(EPOLLIN)
    assert calls == [w.sc.fd] and stack.pool.stats()["cluster_drops"] == 1
    assert link_lost_messages(caplog) == [
        "tap0: link lost: TAP faketap0: File descriptor in bad state; interface marked down"]
    assert w.ifp.ipackets == 0
    for m in hog:
        stack.pool.free(m)


# -- receive: every frame read is passed up or counted once ----------------------------
@pytest.mark.parametrize("vnet_hdr", [False, True])
def test_the_pool_running_dry_mid_burst_drops_the_rest_and_keeps_what_was_read(stack,
                                                                                vnet_hdr):
    w = Wire(stack, vnet=vnet_hdr)
    head = hdr() if vnet_hdr else b""
    hog = [stack.pool.get() for _ in range(stack.pool.nclusters - 1)]
    w.frames_from_kernel(*(head + frame(i) for i in range(3)))
    w.sc.intr(EPOLLIN)
    assert w.bursts == [[frame(0)]]
    assert w.ifp.in_discards["nobufs"] == 2 and w.ifp.ipackets == 2
    # One failed get for each frame dropped, one more to find the TAP empty.
    assert stack.pool.stats()["cluster_drops"] == 3
    assert w.frames_to_kernel() == []
    for m in hog:
        stack.pool.free(m)
    w.sc.intr(EPOLLIN)
    assert w.bursts == [[frame(0)]]                 # nothing was left behind
    w.sc.release()


def test_a_frame_filling_the_cluster_exactly_is_one_mbuf(stack):
    room = stack.pool.mclbytes - stack.pool.headroom
    w = Wire(stack)
    w.frames_from_kernel(frame(1, room))
    w.sc.intr(EPOLLIN)
    assert w.bursts == [[frame(1, room)]] and w.ifp.in_discards["too_long"] == 0


def test_a_spill_tap_puts_a_frame_filling_the_cluster_in_the_cluster_alone(stack):
    room = stack.pool.mclbytes - stack.pool.headroom
    w = Wire(stack, vnet=True)
    chains = []
    w.ifp.if_input = lambda ifp, pkts: [chains.append((m.next is None, m.tobytes()))
                                        or stack.pool.freem(m) for m in pkts]
    w.frames_from_kernel(hdr() + frame(1, room), hdr() + frame(2, room + 1))
    w.sc.intr(EPOLLIN)
    assert chains == [(True, frame(1, room)), (False, frame(2, room + 1))]
    assert stack.pool.stats()["jumbo_hiwat"] == 2       # only the second spilled
    w.sc.release()


def test_a_frame_shorter_than_the_header_is_a_runt(stack):
    w = Wire(stack, vnet=True)
    w.frames_from_kernel(hdr()[:6], hdr() + frame(1), hdr(), hdr()[:9])
    w.sc.intr(EPOLLIN)
    # The empty frame after a header is passed up: ether_input judges it.
    assert w.bursts == [[frame(1), b""]]
    assert w.ifp.in_discards["runt"] == 2 and w.ifp.ierrors == 2 and w.ifp.ipackets == 2
    assert stack.pool.jumbo_in_use == 1 and stack.pool.in_use == 0
    w.sc.release()


def test_two_superframes_in_one_burst_each_keep_their_own_jumbo(stack):
    w = Wire(stack, vnet=True)
    a, b = frame(1, 5000), frame(2, 7000)
    w.frames_from_kernel(hdr() + a, hdr() + b, hdr() + frame(3))
    w.sc.intr(EPOLLIN)
    assert w.bursts == [[a, b, frame(3)]]
    w.sc.release()


def test_a_long_frame_with_no_jumbo_free_is_dropped_and_the_next_still_read(stack):
    w = Wire(stack, vnet=True)
    jumbos = []
    while (j := stack.pool.get_jumbo()) is not None:
        jumbos.append(j)
    big = frame(1, 5000)
    w.frames_from_kernel(hdr() + big, hdr() + big, hdr() + frame(2))
    w.sc.intr(EPOLLIN)          # the first spills into the jumbo held ready
    assert w.bursts == [[big, frame(2)]]
    assert w.ifp.in_discards["nobufs"] == 1 and w.ifp.iqdrops == 1 and w.ifp.ipackets == 1
    for j in jumbos:
        stack.pool.free(j)
    w.sc.release()


def test_epollout_alone_reads_nothing(stack):
    w = Wire(stack)
    w.frames_from_kernel(frame(1))
    w.sc.intr(EPOLLOUT)
    assert w.bursts == [] and w.sc.rx_intrs == 0
    w.sc.intr(EPOLLIN)
    assert w.bursts == [[frame(1)]] and w.sc.rx_intrs == 1


def udp_frame(n):
    """An Ethernet frame with a UDP datagram of `n` bytes, its checksum
    left partial."""
    pkt = bytearray(raw(IP(src="198.18.0.2", dst="198.19.0.2", id=9)
                         / UDP(sport=4000, dport=5201) / bytes(i & 0xFF for i in range(n))))
    pkt[26:28] = pseudo_seed(bytes(pkt), 20).to_bytes(2, "big")
    return ETH + bytes(pkt)


def udp_ok(f):
    again = IP(f[14:])
    del again[UDP].chksum
    return IP(raw(again))[UDP].chksum == Ether(f)[UDP].chksum


def test_partial_checksums_are_counted_and_left_partial_while_rx_offload_is_on(stack,
                                                                              offload_wire):
    w = offload_wire
    w.frames_from_kernel(hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 34, 16) + tcp_frame(10),
                         hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 34, 6) + udp_frame(10),
                         hdr(vnet.VIRTIO_NET_HDR_F_DATA_VALID) + frame(1))
    w.sc.intr(EPOLLIN)
    assert w.offload == [(M_CSUM_TCPv4, (20 << 16) | 16, 0), (M_CSUM_UDPv4, (20 << 16) | 6, 0),
                         (0, 0, 0)]
    assert (w.sc.rx_partial, w.sc.rx_super, w.ifp.sw_csum) == (2, 0, 0)


def test_superframes_are_counted_apart_from_partial_checksums(stack, offload_wire):
    w = offload_wire
    sup = hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, vnet.VIRTIO_NET_HDR_GSO_TCPV4, 54, 1448, 34, 16)
    w.frames_from_kernel(sup + tcp_frame(3000), sup + tcp_frame(4000, seq=4000))
    w.sc.intr(EPOLLIN)
    assert w.bursts == [[tcp_frame(3000), tcp_frame(4000, seq=4000)]]
    assert (w.sc.rx_super, w.sc.rx_partial) == (2, 0)


def test_udp_rx_offload_off_completes_udp_checksums_only(stack, offload_wire):
    w = offload_wire
    w.ifp.set_capenable(ALL & ~IFCAP_CSUM_UDPv4_Rx)
    tcp = hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 34, 16) + tcp_frame(10)
    udp = hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 34, 6) + udp_frame(10)
    w.frames_from_kernel(udp, tcp, udp)
    w.sc.intr(EPOLLIN)
    got = w.bursts[0]
    assert udp_ok(got[0]) and udp_ok(got[2]) and got[1] == tcp_frame(10)
    assert w.offload == [(0, 0, 0), (M_CSUM_TCPv4, (20 << 16) | 16, 0), (0, 0, 0)]
    assert w.ifp.sw_csum == 2 and w.sc.rx_partial == 3


def frame6(l4, n, plen_off=0):
    """An IPv6 frame with a TCP or UDP payload of `n` bytes, its checksum
    left partial (the pseudo-header sum, as the kernel hands it over)."""
    pkt = bytearray(raw(IPv6(src="2001:2:0:a::2", dst="2001:2:0:b::2")
                        / l4 / bytes(i & 0xFF for i in range(n))))
    at = 40 + (16 if isinstance(l4, TCP) else 6)
    pkt[at:at + 2] = bytes(2)
    s = sum(int.from_bytes(pkt[i:i + 2], "big") for i in range(8, 40, 2))
    s += pkt[6] + len(pkt) - 40
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    pkt[at:at + 2] = s.to_bytes(2, "big")
    return ETH[:12] + b"\x86\xdd" + bytes(pkt)


def l4_ok6(f, layer):
    again = IPv6(f[14:])
    del again[layer].chksum
    return IPv6(raw(again))[layer].chksum == Ether(f)[layer].chksum


def test_tcp6_rx_offload_off_completes_tcpv6_checksums_only(stack, offload_wire):
    # tcp6csum-rx off, tcp4csum and udp6csum on: the kernel still hands every
    # kind partial under one TUN_F_CSUM; only TCP over IPv6 is completed here.
    w = offload_wire
    w.ifp.set_capenable(ALL & ~(IFCAP_TSOv6 | IFCAP_CSUM_TCPv6_Rx))
    assert w.calls[-1] == vnet.TUN_F_CSUM | vnet.TUN_F_TSO4
    t6 = frame6(TCP(sport=4000, dport=5201, flags="PA"), 100)
    u6 = frame6(UDP(sport=4000, dport=5201), 100)
    w.frames_from_kernel(hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 54, 16) + t6,
                         hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 54, 6) + u6,
                         hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 34, 16) + tcp_frame(10))
    w.sc.intr(EPOLLIN)
    got = w.bursts[0]
    assert l4_ok6(got[0], TCP) and got[1] == u6 and got[2] == tcp_frame(10)
    assert w.offload == [(0, 0, 0), (M_CSUM_UDPv6, (40 << 16) | 6, 0),
                         (M_CSUM_TCPv4, (20 << 16) | 16, 0)]
    assert w.ifp.sw_csum == 1 and w.sc.rx_partial == 3
    w.ifp.set_capenable(ALL & ~(IFCAP_TSOv6 | IFCAP_CSUM_TCPv6_Rx | IFCAP_CSUM_UDPv6_Rx))
    w.frames_from_kernel(hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 54, 6) + u6)
    w.sc.intr(EPOLLIN)
    assert l4_ok6(w.bursts[1][0], UDP) and w.offload[-1] == (0, 0, 0) and w.ifp.sw_csum == 2


def test_both_rx_offloads_off_complete_every_partial_checksum(stack, offload_wire):
    w = offload_wire
    w.ifp.set_capenable(IFCAP_CSUM_UDPv4_Tx | IFCAP_CSUM_TCPv4_Tx)
    assert w.calls[-1] == 0                     # the kernel completes them for us now
    w.frames_from_kernel(hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 34, 6) + udp_frame(10),
                         hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 34, 16) + tcp_frame(10))
    w.sc.intr(EPOLLIN)                          # (frames it handed over before that)
    assert w.offload == [(0, 0, 0), (0, 0, 0)] and w.ifp.sw_csum == 2
    assert udp_ok(w.bursts[0][0])


def test_setting_the_same_mask_again_asks_the_kernel_nothing(offload_wire):
    w = offload_wire
    n = len(w.calls)
    w.ifp.set_capenable(ALL & ~IFCAP_CSUM_UDPv4_Rx)     # TCP still wants TUN_F_CSUM
    w.ifp.set_capenable(ALL)
    assert len(w.calls) == n


def test_an_ioctl_other_than_siocsifcap_is_refused_by_name(stack):
    w = Wire(stack)
    with pytest.raises(OSError) as ei:
        w.sc.ioctl(w.ifp, 0x8914, 0)
    assert str(ei.value) == f"tap0: ioctl {0x8914} not supported"


# -- transmit: order, counters and the wait for EPOLLOUT -------------------------------
def epoll_events(stack, fd):
    return dict(stack.ep.poll(0)).get(fd, 0)


def test_a_blocked_tap_is_watched_for_epollout_until_it_drains(stack):
    w = Wire(stack, sndbuf=4096)
    flags = w.ifp.flags
    w.ifp.if_transmit(w.ifp, [stack.pool.from_bytes(frame(i, 1000)) for i in range(12)])
    assert w.ifp.flags == flags | IFF_OACTIVE
    got = w.frames_to_kernel()                      # the kernel side reads: room again
    assert epoll_events(stack, w.sc.fd) & EPOLLOUT
    # Frames sent meanwhile wait behind the queued ones, even with room.
    w.ifp.if_transmit(w.ifp, [stack.pool.from_bytes(frame(99, 1000))])
    assert w.frames_to_kernel() == []
    while w.ifp.flags & IFF_OACTIVE:
        w.sc.intr(EPOLLOUT)
        got += w.frames_to_kernel()
    assert got == [frame(i, 1000) for i in range(12)] + [frame(99, 1000)]
    assert w.ifp.flags == flags                     # only IFF_OACTIVE came and went
    assert not epoll_events(stack, w.sc.fd) & EPOLLOUT      # back to EPOLLIN only
    assert (w.ifp.opackets, w.ifp.obytes) == (13, 13 * 1000)


def test_a_receive_interrupt_while_blocked_does_not_retry_the_write(stack):
    w = Wire(stack, sndbuf=4096)
    w.ifp.if_transmit(w.ifp, [stack.pool.from_bytes(frame(i, 1000)) for i in range(12)])
    assert w.sc.tx_blocked == 1
    queued = w.ifp.if_snd.len
    w.frames_from_kernel(frame(1))
    w.sc.intr(EPOLLIN)
    assert w.bursts == [[frame(1)]]
    assert w.sc.tx_blocked == 1 and w.ifp.if_snd.len == queued
    assert w.ifp.flags & IFF_OACTIVE


def test_transmit_of_a_chain_counts_its_whole_length(stack):
    w = Wire(stack)
    pkts = []
    for i in range(2):
        f = frame(i, 300)
        m = stack.pool.from_bytes(f[:100])
        stack.pool.cat(m, stack.pool.from_bytes(f[100:]))
        pkts.append(m)
    w.ifp.if_transmit(w.ifp, pkts)
    assert w.frames_to_kernel() == [frame(0, 300), frame(1, 300)]
    assert (w.ifp.opackets, w.ifp.obytes) == (2, 600)


def test_a_write_error_in_start_drops_that_frame_only(stack, monkeypatch):
    w = Wire(stack)
    real = os.write

    def refuse_second(fd, data):
        if bytes(data) == frame(1):
            raise OSError(errno.EMSGSIZE, os.strerror(errno.EMSGSIZE))
        return real(fd, data)

    monkeypatch.setattr(devnp_tap.os, "write", refuse_second)
    for i in range(3):                              # queued, as while blocked
        w.ifp.if_snd.enqueue(stack.pool.from_bytes(frame(i)))
    w.sc.start(w.ifp)
    assert w.frames_to_kernel() == [frame(0), frame(2)]
    assert (w.ifp.opackets, w.ifp.obytes) == (2, 120)
    assert w.ifp.out_discards["txerror"] == 1 and w.ifp.if_snd.len == 0


def test_start_writes_queued_chains_and_single_frames_alike(stack):
    w = Wire(stack)
    f = frame(7, 300)
    m = stack.pool.from_bytes(f[:100])
    stack.pool.cat(m, stack.pool.from_bytes(f[100:]))
    w.ifp.if_snd.enqueue(m)
    w.ifp.if_snd.enqueue(stack.pool.from_bytes(frame(8)))
    w.sc.start(w.ifp)
    assert w.frames_to_kernel() == [f, frame(8)]
    assert (w.ifp.opackets, w.ifp.obytes) == (2, 360)


def test_vnet_transmit_counts_only_frame_bytes(stack, offload_wire):
    w = offload_wire
    pool = stack.pool
    part = pool.from_bytes(tcp_frame(300))
    part.csum_flags, part.csum_data = M_CSUM_TCPv4, (20 << 16) | 16
    w.ifp.if_transmit(w.ifp, [part, pool.from_bytes(frame(1, 100)),
                              pool.from_bytes(frame(2, 200))])
    out = w.frames_to_kernel()
    assert [len(f) - 10 for f in out] == [len(tcp_frame(300)), 100, 200]
    assert (w.ifp.opackets, w.ifp.obytes) == (3, len(tcp_frame(300)) + 300)


def superframe(pool, n=4000, seq=1000):
    m = pool.from_bytes(tcp_frame(n, seq))
    m.csum_flags, m.csum_data, m.segsz = M_CSUM_TSOv4 | M_CSUM_TCPv4, (20 << 16) | 16, 1448
    return m


def test_each_superframe_written_whole_is_counted(stack, offload_wire):
    w = offload_wire
    w.ifp.if_transmit(w.ifp, [superframe(stack.pool), superframe(stack.pool, seq=5000)])
    assert len(w.frames_to_kernel()) == 2 and w.sc.tx_super == 2


@pytest.mark.parametrize("err, tso", [(errno.ENOBUFS, True), (errno.EINVAL, False)])
def test_only_einval_on_a_gso_write_means_segment_it_here(stack, offload_wire, monkeypatch,
                                                          err, tso):
    w = offload_wire

    def fail(fd, data):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(devnp_tap.os, "write", fail)
    monkeypatch.setattr(devnp_tap.os, "writev", fail)
    if tso:
        m = superframe(stack.pool)
    else:
        m = stack.pool.from_bytes(tcp_frame(300))
        m.csum_flags, m.csum_data = M_CSUM_TCPv4, (20 << 16) | 16
    w.ifp.if_transmit(w.ifp, [m])
    assert w.ifp.out_discards["txerror"] == 1 and w.ifp.opackets == 0
    assert w.sc.gso_refused == 0 and w.ifp.sw_tso == 0
    assert w.ifp.capenable == ALL


# -- a GSO write the kernel refuses: segmented here, said once ---------------------------
def refuse_gso(monkeypatch, fail_segment=None):
    """The kernel answers EINVAL to any GSO write; with `fail_segment`, a
    plain write of that frame number (0, 1, ...) fails with ENOBUFS."""
    real = os.write
    plain = []

    def picky(fd, data):
        data = bytes(data)
        if data[1:2] != b"\0":
            raise OSError(errno.EINVAL, "Invalid argument")
        plain.append(data)
        if len(plain) - 1 == fail_segment:
            raise OSError(errno.ENOBUFS, os.strerror(errno.ENOBUFS))
        return real(fd, data)

    monkeypatch.setattr(devnp_tap.os, "write", picky)
    monkeypatch.setattr(devnp_tap.os, "writev", lambda fd, bufs: picky(fd, b"".join(bufs)))


GSO_WARNING = ("tap0: the kernel refused a GSO write (EINVAL); tso4 turned off, "
               "super-frames are segmented in software")


def test_every_refused_gso_write_is_counted_and_said_once(stack, offload_wire, monkeypatch,
                                                          caplog):
    w = offload_wire
    refuse_gso(monkeypatch)
    with caplog.at_level("WARNING", logger="iopkt"):
        w.ifp.if_transmit(w.ifp, [superframe(stack.pool)])
        w.ifp.if_snd.enqueue(superframe(stack.pool, seq=5000))  # queued before tso4 went off
        w.sc.start(w.ifp)
    out = w.frames_to_kernel()
    assert len(out) == 6
    assert [r.getMessage() for r in caplog.records] == [GSO_WARNING]
    assert w.sc.gso_refused == 2 and (w.ifp.sw_tso, w.ifp.sw_tso_segs) == (2, 6)
    assert (w.ifp.opackets, w.ifp.obytes) == (2, sum(len(f) - 10 for f in out))
    assert w.sc.tx_super == 0


def test_segments_get_full_checksums_once_tcp_tx_offload_is_off(stack, offload_wire,
                                                                 monkeypatch, caplog):
    w = offload_wire
    w.ifp.set_capenable(IFCAP_CSUM_UDPv4_Rx | IFCAP_CSUM_UDPv4_Tx)
    refuse_gso(monkeypatch)
    with caplog.at_level("WARNING", logger="iopkt"):
        w.ifp.if_transmit(w.ifp, [superframe(stack.pool)])    # queued before, say
    out = w.frames_to_kernel()
    full = bytearray(tcp_frame(4000)[14:])
    full[36:38] = b"\0\0"
    assert [f[24:] for f in out] == expected_segments(raw(IP(bytes(full))), 1448)
    assert all(f[:10] == bytes(10) for f in out)            # nothing left partial
    assert caplog.records == []                             # tso4 was off already
    assert w.ifp.capenable == IFCAP_CSUM_UDPv4_Rx | IFCAP_CSUM_UDPv4_Tx


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_a_refused_gso_write_turns_off_its_own_familys_tso(stack, offload_wire, monkeypatch,
                                                           caplog, family):
    # The other family's TSO and TCP checksum offload are off: the word
    # said, the capability dropped and the segments' partial checksums
    # follow the super-frame's own family.
    w = offload_wire
    v6 = family == "v6"
    other = ((IFCAP_TSOv4 | IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv4_Tx) if v6
             else (IFCAP_TSOv6 | IFCAP_CSUM_TCPv6_Rx | IFCAP_CSUM_TCPv6_Tx))
    w.ifp.set_capenable(ALL & ~other)
    refuse_gso(monkeypatch)
    if v6:
        f = frame6(TCP(sport=4000, dport=5201, flags="PA"), 3000)
        start, flags, tso, word = 54, M_CSUM_TCPv6 | M_CSUM_TSOv6, IFCAP_TSOv6, "tso6"
    else:
        f = tcp_frame(3000)
        start, flags, tso, word = 34, M_CSUM_TCPv4 | M_CSUM_TSOv4, IFCAP_TSOv4, "tso4"
    m = stack.pool.from_bytes(f)
    m.csum_flags, m.csum_data, m.segsz = flags, ((start - ETHER_LEN) << 16) | 16, 1000
    with caplog.at_level("WARNING", logger="iopkt"):
        w.ifp.if_transmit(w.ifp, [m])
    out = w.frames_to_kernel()
    want = expected_segments(f[ETHER_LEN:], 1000)
    assert len(out) == len(want) == 3
    for got, seg in zip(out, want):
        assert got[:VHL] == hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, start + 18, 0, start, 16)
        assert kernel_completes(got[VHL:], start, 16) == f[:ETHER_LEN] + seg
    assert [r.getMessage() for r in caplog.records] == [GSO_WARNING.replace("tso4", word)]
    assert w.ifp.capenable == ALL & ~other & ~tso
    assert w.sc.gso_refused == 1 and (w.ifp.sw_tso, w.ifp.sw_tso_segs) == (1, 3)


def test_a_segment_the_kernel_refuses_is_dropped_and_the_rest_written(stack, offload_wire,
                                                                      monkeypatch):
    w = offload_wire
    refuse_gso(monkeypatch, fail_segment=1)
    w.ifp.if_transmit(w.ifp, [superframe(stack.pool)])
    out = w.frames_to_kernel()
    assert len(out) == 2
    assert w.ifp.out_discards["txerror"] == 1 and (w.ifp.sw_tso, w.ifp.sw_tso_segs) == (1, 3)
    assert w.ifp.obytes == sum(len(f) - 10 for f in out)


def test_a_segment_without_room_for_its_ethernet_header_is_dropped(stack, offload_wire,
                                                                   monkeypatch):
    w = offload_wire
    refuse_gso(monkeypatch)
    pool = stack.pool
    real = pool.prepend
    seen = []

    def no_room_for_the_first(m, n):
        seen.append(n)
        if len(seen) == 1:
            pool.freem(m)
            return None
        return real(m, n)

    monkeypatch.setattr(pool, "prepend", no_room_for_the_first)
    w.ifp.if_transmit(w.ifp, [superframe(pool)])
    out = w.frames_to_kernel()
    assert seen == [14, 14, 14] and len(out) == 2
    assert [f[10:24] for f in out] == [ETH, ETH]
    assert w.ifp.out_discards["nobufs"] == 1
    assert w.ifp.obytes == sum(len(f) - 10 for f in out)


def test_a_superframe_that_cannot_be_segmented_is_dropped(stack, offload_wire, monkeypatch):
    w = offload_wire
    refuse_gso(monkeypatch)
    hog = []
    while len(hog) < stack.pool.nclusters - 1:          # the frame has the last one
        hog.append(stack.pool.get())
    m = superframe(stack.pool, n=1900)
    w.ifp.if_transmit(w.ifp, [m])
    assert w.frames_to_kernel() == []
    assert w.ifp.out_discards["nobufs"] == 1 and w.ifp.obytes == 0
    assert w.sc.gso_refused == 1 and w.ifp.sw_tso == 0
    for x in hog:
        stack.pool.free(x)


def test_a_superframe_that_is_not_tcp_is_dropped_as_a_tx_error(stack, offload_wire,
                                                                monkeypatch):
    w = offload_wire
    refuse_gso(monkeypatch)
    m = stack.pool.from_bytes(udp_frame(3000))
    m.csum_flags, m.csum_data, m.segsz = M_CSUM_TSOv4 | M_CSUM_TCPv4, (20 << 16) | 16, 1448
    w.ifp.if_transmit(w.ifp, [m])
    assert w.frames_to_kernel() == []
    assert w.ifp.out_discards["txerror"] == 1 and w.ifp.oerrors == 1
    assert w.ifp.obytes == 0 and w.ifp.sw_tso == 0


# -- link-speed emulation --------------------------------------------------------------
@pytest.fixture
def paced(stack, clock):
    """A 10 Mbit/s tapN whose pacer runs on the test's clock: its bucket
    holds 3076 bytes, a 1000-byte frame costs 1024."""
    w = Wire(stack, speed=10)
    w.sc.pacer.clock = clock
    w.sc.pacer.last = clock()
    return w


def test_a_paced_tap_holds_a_frame_until_the_wire_is_free(stack, clock, paced):
    w = paced
    flags = w.ifp.flags
    w.ifp.if_transmit(w.ifp, [stack.pool.from_bytes(frame(i, 1000)) for i in range(4)])
    assert w.frames_to_kernel() == [frame(i, 1000) for i in range(3)]
    assert w.ifp.flags == flags | IFF_OACTIVE and w.ifp.if_snd.len == 1
    assert w.sc.extra_info(w.ifp)["paced_waits"] == 1
    clock.advance(0.0005)
    stack._run_callouts()
    assert w.frames_to_kernel() == []               # not yet
    clock.advance(0.0005)
    stack._run_callouts()
    assert w.frames_to_kernel() == [frame(3, 1000)]
    assert w.ifp.flags == flags and w.ifp.if_snd.len == 0
    assert (w.ifp.opackets, w.ifp.obytes) == (4, 4000)


def test_a_paced_superframe_pays_for_every_segment_on_the_wire(stack, clock, paced):
    w = paced
    m = stack.pool.from_bytes(tcp_frame(2896))          # two 1448-byte segments
    m.csum_flags, m.csum_data, m.segsz = M_CSUM_TSOv4 | M_CSUM_TCPv4, (20 << 16) | 16, 1448
    w.ifp.if_transmit(w.ifp, [m])
    # 2 x (14 + 40 + 1448) + 2 x 24 of overhead = 3052 of the 3076 in the bucket
    assert w.sc.pacer.tokens == pytest.approx(3076 - 3052)


def test_stopping_a_paced_tap_cancels_its_wait(stack, clock, paced):
    w = paced
    for _ in range(2):
        w.ifp.if_transmit(w.ifp, [stack.pool.from_bytes(frame(i, 1000)) for i in range(4)])
        assert w.ifp.flags & IFF_OACTIVE
        stack.if_down(w.ifp)
        assert w.ifp.out_discards["down"] and not w.ifp.flags & IFF_OACTIVE
        assert [c for c in stack._callouts
                if c.fn == w.sc._pace_ready and not c.cancelled] == []
        stack.if_up(w.ifp)
        clock.advance(1)
        stack._run_callouts()
    w.frames_to_kernel()


def test_a_paced_tap_after_its_wait_can_be_stopped(stack, clock, paced):
    w = paced
    w.ifp.if_transmit(w.ifp, [stack.pool.from_bytes(frame(i, 1000)) for i in range(4)])
    clock.advance(1)
    stack._run_callouts()
    assert len(w.frames_to_kernel()) == 4
    stack.if_down(w.ifp)
    assert not w.ifp.flags & IFF_RUNNING


# -- probe: what the kernel accepts is what is offered ------------------------------------
def test_a_kernel_refusing_all_offload_leaves_no_capability(stack, monkeypatch, caplog):
    def refuse(fd, mask):
        if mask:
            raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(vnet, "set_offload", refuse)
    monkeypatch.setattr(vnet, "set_vnet_hdr_sz", lambda fd, n=10: None)
    w = Wire(stack, vnet=True)
    with caplog.at_level("WARNING", logger="iopkt"):
        w.sc.probe(w.ifp)
    assert w.ifp.capabilities == 0
    info = w.sc.extra_info(w.ifp)
    assert info["tun_offload"] == "none" and info["tun_offload_refused"] == "CSUM,TSO4,TSO6"
    assert [r.getMessage() for r in caplog.records] == [
        "tap0: the kernel refused TAP offload CSUM,TSO4,TSO6; using none (said once)"]
    w.sc.detach(w.ifp)


@pytest.mark.parametrize("refuse, caps, said", [
    (0, ALL & ~(IFCAP_TSOv4 | IFCAP_TSOv6),
     "tap0: no jumbo clusters (--nmbjumbo 0): TSO is not offered"),
    (vnet.TUN_F_TSO4, ALL & ~(IFCAP_TSOv4 | IFCAP_TSOv6),
     "tap0: the kernel refused TAP offload TSO4,TSO6; using CSUM (said once)"),
], ids=["nojumbo", "refused"])
def test_without_jumbo_clusters_tso4_is_not_offered_and_said(monkeypatch, caplog,
                                                             refuse, caps, said):
    def set_offload(fd, mask):
        if mask & refuse:
            raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(vnet, "set_offload", set_offload)
    monkeypatch.setattr(vnet, "set_vnet_hdr_sz", lambda fd, n=10: None)
    st = Stack("nojumbo", nmbclusters=64, nmbjumbo=0, clock=FakeClock())
    try:
        w = Wire(st, vnet=True)
        with caplog.at_level("WARNING", logger="iopkt"):
            w.sc.probe(w.ifp)
        assert w.ifp.capabilities == caps
        assert [r.getMessage() for r in caplog.records] == [said]
    finally:
        st.shutdown()
        st.close()


def test_a_superframe_dropped_while_segmenting_is_not_counted_as_sent(stack, offload_wire,
                                                                      monkeypatch):
    # nicinfo's "Packets Transmitted OK" must not count a frame that was
    # counted as an output error and never written.
    w = offload_wire
    refuse_gso(monkeypatch)

    def not_tcp(n):
        m = stack.pool.from_bytes(udp_frame(n))
        m.csum_flags, m.csum_data, m.segsz = M_CSUM_TSOv4 | M_CSUM_TCPv4, (20 << 16) | 16, 1448
        return m

    # A chain and a single cluster, each dropped, then a frame written.
    w.ifp.if_transmit(w.ifp, [not_tcp(3000), not_tcp(1000), stack.pool.from_bytes(frame(1))])
    assert w.frames_to_kernel() == [hdr() + frame(1)]
    assert (w.ifp.opackets, w.ifp.obytes, w.ifp.oerrors) == (1, 60, 2)
    # The same through if_snd, as when they were queued while blocked.
    w.ifp.if_snd.enqueue(not_tcp(3000))
    w.ifp.if_snd.enqueue(stack.pool.from_bytes(frame(2)))
    w.sc.start(w.ifp)
    assert w.frames_to_kernel() == [hdr() + frame(2)]
    assert (w.ifp.opackets, w.ifp.obytes, w.ifp.oerrors) == (2, 120, 3)
    assert w.ifp.out_discards["txerror"] == 3


# -- a TAP is a TAP whatever its descriptor ---------------------------------------------
class StdinTap(FakeTap):
    """A TAP the kernel opened as descriptor 0 (a daemon started with its
    stdin closed)."""

    def __init__(self):
        self.closed = False

    def fileno(self):
        return 0

    def close(self):
        self.closed = True


def test_a_tap_on_descriptor_0_works_like_any_other(stack, monkeypatch):
    calls = []
    monkeypatch.setattr(vnet, "set_offload", lambda fd, mask: calls.append((fd, mask)))
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    saved = os.dup(0)
    os.dup2(ours.fileno(), 0)
    ours.close()
    try:
        ifp = Ifnet("tap", 0, "devnp-tap")
        ether_ifattach(ifp, mac_aton("02:00:00:00:00:01"))
        sc = TapSoftc(stack, ifp, StdinTap(), 64, vnet_hdr=True)
        ifp.set_softc(sc)
        ifp.capabilities = ALL
        stack.if_attach(ifp)
        stack.interrupt_attach(sc.fd, sc.intr)
        stack.if_up(ifp)
        assert sc.fd == 0 and ifp.flags & IFF_RUNNING and ifp.link_state == LINK_STATE_UP
        ifp.set_capenable(ALL)
        assert calls == [(0, vnet.TUN_F_CSUM | vnet.TUN_F_TSO4 | vnet.TUN_F_TSO6)]
        stack.if_detach(ifp)
        assert calls[-1] == (0, 0) and sc.tap.closed
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        peer.close()


def test_a_softc_let_go_leaves_the_descriptor_to_the_tap(stack):
    # After a failed attach the TAP is closed and its number may be reused
    # at once: the softc's reader must never close it on its own.
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        ifp = Ifnet("tap", 0, "devnp-tap")
        ether_ifattach(ifp, mac_aton("02:00:00:00:00:01"))
        sc = TapSoftc(stack, ifp, FakeTap(ours), 64)
        del sc
        gc.collect()
        os.fstat(ours.fileno())                     # still open
    finally:
        ours.close()
        peer.close()


# -- a partial checksum on a frame of exactly the MTU, both ways ------------------------
# (kind: the csum_flags bit, the Rx capability that completes it here when off)
KINDS = {"tcp4": (M_CSUM_TCPv4, IFCAP_CSUM_TCPv4_Rx), "udp4": (M_CSUM_UDPv4, IFCAP_CSUM_UDPv4_Rx),
         "tcp6": (M_CSUM_TCPv6, IFCAP_CSUM_TCPv6_Rx), "udp6": (M_CSUM_UDPv6, IFCAP_CSUM_UDPv6_Rx)}


def at_mtu(kind):
    """A frame whose IP packet is exactly 1500 bytes: as scapy checksums it
    (whole), as the kernel hands it over (partial: the pseudo-header sum in
    the field), and the virtio-net csum_start and csum_offset."""
    v6, tcp = kind.endswith("6"), kind.startswith("tcp")
    l3 = (IPv6(src="2001:2:0:a::2", dst="2001:2:0:b::2") if v6
          else IP(src="198.18.0.2", dst="198.19.0.2", id=7, flags="DF"))
    l4 = TCP(sport=4000, dport=5201, seq=1000, flags="PA") if tcp else UDP(sport=4000, dport=5201)
    iphl, l4hl, off = (40 if v6 else 20), (20 if tcp else 8), (16 if tcp else 6)
    pkt = raw(l3 / l4 / bytes((i * 7) & 0xFF for i in range(1500 - iphl - l4hl)))
    part = bytearray(pkt)
    part[iphl + off:iphl + off + 2] = pseudo_seed(pkt, iphl).to_bytes(2, "big")
    eth = ETH[:12] + (b"\x86\xdd" if v6 else b"\x08\x00")
    return eth + pkt, eth + bytes(part), ETHER_LEN + iphl, off


ETHER_LEN = 14


def kernel_completes(f, start, off):
    """What the kernel does with a NEEDS_CSUM frame (skb_checksum_help):
    sum from csum_start to the end, the partial sum in the field included,
    and store the complement at csum_start + csum_offset."""
    b = bytearray(f)
    s = sum(int.from_bytes(b[i:i + 2].ljust(2, b"\0"), "big") for i in range(start, len(b), 2))
    b[start + off:start + off + 2] = (0xFFFF - fold(s)).to_bytes(2, "big")
    return bytes(b)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_partial_checksum_on_a_frame_of_exactly_the_mtu_is_received(stack, offload_wire, kind):
    w = offload_wire
    whole, partial, start, off = at_mtu(kind)
    flag, rx_cap = KINDS[kind]
    assert len(whole) == w.ifp.mtu + ETHER_LEN and whole != partial
    needs = hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, start, off)
    w.frames_from_kernel(needs + partial)       # Rx offload on: goes up partial
    w.sc.intr(EPOLLIN)
    w.ifp.set_capenable(ALL & ~(IFCAP_TSOv4 | IFCAP_TSOv6 | rx_cap))
    w.frames_from_kernel(needs + partial)       # off: completed here
    w.sc.intr(EPOLLIN)
    assert w.bursts == [[partial], [whole]]
    assert kernel_completes(partial, start, off) == whole
    assert w.offload == [(flag, ((start - ETHER_LEN) << 16) | off, 0), (0, 0, 0)]
    assert (w.sc.rx_partial, w.ifp.sw_csum, w.ifp.ierrors) == (2, 1, 0)
    assert stack.pool.in_use == 0


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_partial_checksum_on_a_frame_of_exactly_the_mtu_is_sent_for_the_kernel(
        stack, offload_wire, monkeypatch, kind):
    w = offload_wire
    pool = stack.pool
    whole, partial, start, off = at_mtu(kind)
    calls = []
    for name in ("write", "writev"):
        real = getattr(os, name)
        monkeypatch.setattr(devnp_tap.os, name,
                            lambda fd, data, name=name, real=real: calls.append(name)
                            or real(fd, data))
    # The header goes in front of the frame when it has the room (64 bytes
    # or exactly its 10), else in a buffer of its own: a chain likewise.
    pkts = [pool.from_bytes(partial), pool.from_bytes(partial, headroom=VHL),
            pool.from_bytes(partial, headroom=VHL - 1), chain(pool, partial, [start + off])]
    for m in pkts:
        m.csum_flags, m.csum_data = KINDS[kind][0], ((start - ETHER_LEN) << 16) | off
    w.ifp.if_transmit(w.ifp, pkts)
    out = w.frames_to_kernel()
    needs = hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, start + off + 2, 0, start, off)
    assert out == [needs + partial] * 4
    assert kernel_completes(out[0][VHL:], start, off) == whole
    assert calls == ["write", "write", "writev", "writev"]
    assert (w.ifp.opackets, w.ifp.obytes, w.ifp.oerrors) == (4, 4 * len(whole), 0)
    assert pool.in_use == 0


VHL = vnet.VNET_HDR_LEN


def test_a_whole_frame_with_just_the_headers_room_in_front_is_one_write(stack, offload_wire,
                                                                         monkeypatch):
    w = offload_wire
    xmits = []
    real = w.sc._xmit
    monkeypatch.setattr(w.sc, "_xmit", lambda m: xmits.append(m) or real(m))
    w.ifp.if_transmit(w.ifp, [stack.pool.from_bytes(frame(4, 1514), headroom=VHL)])
    assert w.frames_to_kernel() == [hdr() + frame(4, 1514)]
    assert xmits == [] and (w.ifp.opackets, w.ifp.obytes) == (1, 1514)


# -- transmit: what is queued goes first, whatever else the flags say ------------------
def test_frames_on_if_snd_go_before_new_ones_even_with_the_tap_not_busy(stack):
    w = Wire(stack)
    for i in range(2):
        w.ifp.if_snd.enqueue(stack.pool.from_bytes(frame(i)))
    assert not w.ifp.flags & IFF_OACTIVE
    w.ifp.if_transmit(w.ifp, [stack.pool.from_bytes(frame(9))])
    assert w.frames_to_kernel() == [frame(0), frame(1), frame(9)]
    assert w.ifp.if_snd.len == 0 and (w.ifp.opackets, w.ifp.obytes) == (3, 180)


def test_a_lost_link_stops_start_on_an_interface_already_down(stack, monkeypatch):
    # Down, the interface has no stop() left to purge if_snd (ARP's timer
    # still sends on it): start() must stop writing by itself.
    w = Wire(stack)
    stack.if_down(w.ifp)
    for i in range(3):
        w.ifp.if_snd.enqueue(stack.pool.from_bytes(frame(i)))
    writes = []

    def gone(fd, data):
        writes.append(bytes(data))
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(devnp_tap.os, "write", gone)
    w.sc.start(w.ifp)
    assert writes == [frame(0)]
    assert w.ifp.out_discards["link_lost"] == 1 and w.ifp.if_snd.len == 2


# -- a softc as made: no pacing, no checksum completed until SIOCSIFCAP says so --------
def test_a_softc_made_without_a_speed_does_not_pace(stack):
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        ifp = Ifnet("tap", 0, "devnp-tap")
        sc = TapSoftc(stack, ifp, FakeTap(ours), 64)
        assert sc.pacer is None and sc.extra_info(ifp)["paced_waits"] == 0
    finally:
        ours.close()
        peer.close()


def test_before_any_siocsifcap_partial_checksums_go_up_partial(stack):
    w = Wire(stack, vnet=True)
    w.frames_from_kernel(hdr(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 34, 16) + tcp_frame(10))
    w.sc.intr(EPOLLIN)
    assert w.bursts == [[tcp_frame(10)]] and w.offload == [(M_CSUM_TCPv4, (20 << 16) | 16, 0)]
    assert w.ifp.sw_csum == 0
