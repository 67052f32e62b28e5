"""drivers/tap/devnp_tap.py without a TAP: the softc is driven over one end
of a SOCK_SEQPACKET socketpair (one read = one frame, like a TAP), the test
holds the other end as the "kernel side"."""

import errno
import os
import socket

import pytest
from scapy.compat import raw
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from drivers.tap import devnp_tap
from drivers.tap.devnp_tap import TapSoftc
from fakenet import FakeClock
from iopkt import vnet
from iopkt.ether import ether_ifattach, mac_aton
from iopkt.ifnet import (IFCAP_CSUM_TCPv4_Rx, IFCAP_CSUM_TCPv4_Tx, IFCAP_CSUM_UDPv4_Rx,
                         IFCAP_CSUM_UDPv4_Tx, IFCAP_TSOv4, IFF_OACTIVE, IFF_RUNNING,
                         LINK_STATE_DOWN, LINK_STATE_UP, Ifnet)
from iopkt.in_offload import in_undefer_cksum
from iopkt.mbuf import M_CSUM_TCPv4, M_CSUM_TSOv4
from iopkt.stack import EPOLLIN, EPOLLOUT, Stack
from offload_frames import expected_segments, pseudo_seed


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

    def __init__(self, stack, burst=64, mtu=1500, sndbuf=None, vnet=False):
        self.stack = stack
        ours, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if sndbuf:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        ours.setblocking(False)
        self.peer.setblocking(False)
        ifp = self.ifp = Ifnet("tap", stack.next_unit("tap"), "devnp-tap")
        ifp.mtu = mtu
        ether_ifattach(ifp, mac_aton("02:00:00:00:00:01"))
        sc = self.sc = TapSoftc(stack, ifp, FakeTap(ours), burst, vnet_hdr=vnet)
        ifp.softc = sc
        ifp.if_init, ifp.if_start, ifp.if_transmit = sc.init, sc.start, sc.transmit
        ifp.if_stop, ifp.if_detach, ifp.if_ioctl = sc.stop, sc.detach, sc.ioctl
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
ALL = IFCAP_TSOv4 | IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv4_Tx | IFCAP_CSUM_UDPv4_Rx \
    | IFCAP_CSUM_UDPv4_Tx
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
])
def test_vnet_header_that_lies_is_dropped_and_counted(stack, offload_wire, bad):
    w = offload_wire
    w.frames_from_kernel(bad + tcp_frame(100), hdr() + frame(1))
    w.sc.intr(EPOLLIN)
    assert w.bursts == [[frame(1)]]
    # The driver counts the frame it drops; ether_input (replaced by this
    # rig's recorder) would count the other.
    assert w.ifp.in_discards["bad_offload"] == 1 and w.ifp.ipackets == 1
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
    # From now on the IP layer segments: tso4 is off, the kernel told so.
    assert not w.ifp.capenable & IFCAP_TSOv4 and w.calls[-1] == vnet.TUN_F_CSUM


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
    w = offload_wire                                # all capabilities on: CSUM|TSO4 set
    w.ifp.set_capenable(ALL & ~IFCAP_TSOv4)
    w.ifp.set_capenable(IFCAP_CSUM_UDPv4_Tx)        # nothing to receive partial any more
    assert w.calls == [vnet.TUN_F_CSUM | vnet.TUN_F_TSO4, vnet.TUN_F_CSUM, 0]
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
        if mask & vnet.TUN_F_TSO4:
            raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(vnet, "set_offload", no_tso)
    monkeypatch.setattr(vnet, "set_vnet_hdr_sz", lambda fd, n=10: None)
    w = Wire(stack, vnet=True)
    with caplog.at_level("WARNING", logger="iopkt"):
        w.sc.probe(w.ifp)
    assert masks == [vnet.TUN_F_CSUM | vnet.TUN_F_TSO4, vnet.TUN_F_CSUM]
    assert w.ifp.capabilities == ALL & ~IFCAP_TSOv4
    info = w.sc.extra_info(w.ifp)
    assert info["tun_offload"] == "CSUM" and info["tun_offload_refused"] == "TSO4"
    assert [r.message for r in caplog.records] == [
        "tap0: the kernel refused TAP offload TSO4; using CSUM (said once)"]
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
    w.frames_from_kernel(frame(1, 3000), frame(2, 100))      # the kernel MTU was raised
    w.sc.intr(EPOLLIN)
    assert w.bursts == [[frame(2, 100)]]
    assert w.ifp.in_discards["too_long"] == 1
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
        assert w.ifp.capabilities == ALL & ~IFCAP_TSOv4
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
