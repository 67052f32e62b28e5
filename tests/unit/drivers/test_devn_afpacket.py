"""devn-afpacket without root: checksum completion against scapy, the
receive thread on a hand-made TPACKET_V2 ring, transmit on a fake socket,
and option checks. (The real socket, veths and traffic:
tests/integration/test_legacy_afpacket.py.)"""

import errno
import mmap
import os
import struct
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether

from devn_afpacket import devn_afpacket as af
from iopkt.ionet import ionet
from iopkt.ionet.ionet import (
    _NPKT_NOT_TXED,
    _NPKT_UP,
    EOK,
    TX_DOWN_AGAIN,
    TX_DOWN_FAILED,
    TX_DOWN_OK,
    net_buf_t,
    net_iov_t,
    npkt_t,
)

MAC = "02:00:00:00:00:01"


def frame(l4, payload: bytes) -> bytes:
    """A whole Ethernet frame with correct checksums, as scapy makes it."""
    return raw(Ether(dst=MAC, src="02:00:00:00:00:02") / IP(src="198.18.0.2",
                                                             dst="198.19.0.2") / l4 / payload)


def fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def partial(whole: bytes) -> tuple[bytearray, int, int]:
    """`whole` as a sender with checksum offload hands it to the kernel
    (CHECKSUM_PARTIAL): the L4 checksum field holds only the folded
    pseudo-header sum. Returns (frame, csum_start, csum_offset)."""
    b = bytearray(whole)
    proto = b[23]
    off = 16 if proto == 6 else 6
    l4len = len(b) - 34
    ph = sum(struct.unpack("!4H", b[26:34])) + proto + l4len
    struct.pack_into("!H", b, 34 + off, fold(ph))
    return b, 34, off


# -- checksum completion ---------------------------------------------------------
@settings(max_examples=80, deadline=None)
@given(payload=st.binary(min_size=0, max_size=1460), udp=st.booleans())
def test_completed_checksum_is_scapys(payload, udp):
    whole = frame(UDP(sport=5001, dport=5201) if udp else
                  TCP(sport=5001, dport=5201, flags="PA", seq=7, ack=9), payload)
    b, start, off = partial(whole)
    assert af.complete_csum(b, 0, len(b), start, off)
    assert bytes(b) == whole


@pytest.mark.parametrize("n", [0, 1, 2, 3, 1471, 1472])
def test_odd_and_even_lengths(n):
    for l4 in (UDP(), TCP()):
        whole = frame(l4, os.urandom(n))
        b, start, off = partial(whole)
        assert af.complete_csum(b, 0, len(b), start, off) and bytes(b) == whole


def test_frame_inside_a_larger_buffer():
    whole = frame(TCP(), b"x" * 101)
    b, start, off = partial(whole)
    buf = bytearray(b"\xee" * 10) + b + bytearray(b"\xee" * 7)
    assert af.complete_csum(buf, 10, 10 + len(b), start, off)
    assert bytes(buf[10:10 + len(b)]) == whole and buf[:10] == b"\xee" * 10


def test_a_sum_of_zero_is_written_as_ffff():
    """UDP's 0 means "no checksum": Linux writes 0xFFFF (CSUM_MANGLED_0)."""
    # With a 2-byte payload X the sum is S + X; X = ~S (scapy's checksum for
    # X = 0) makes it 0xFFFF, whose complement 0 is written as 0xFFFF.
    x = struct.unpack("!H", frame(UDP(sport=1, dport=2), b"\0\0")[40:42])[0]
    whole = frame(UDP(sport=1, dport=2), struct.pack("!H", x))
    assert whole[40:42] == b"\xff\xff"                 # scapy agrees
    b, start, off = partial(whole)
    assert af.complete_csum(b, 0, len(b), start, off)
    assert b[40:42] == b"\xff\xff" and bytes(b) == whole


@pytest.mark.parametrize("start,off", [(10, 16), (34, 100000), (2000, 6), (34, -1)])
def test_offsets_outside_the_frame_write_nothing(start, off):
    b, _, _ = partial(frame(TCP(), b"abc"))
    before = bytes(b)
    assert not af.complete_csum(b, 0, len(b), start, off)
    assert bytes(b) == before


# -- the receive thread on a ring we fill by hand -------------------------------------
class FakeIon(ionet.IoNetSelf):
    """io-net as the shim with shimrxcopy=1 is: copy, give back at once."""

    def __init__(self):
        self.up = []            # the frames sent up, as bytes
        self.done = []          # down npkts given back with tx_done
        self.drv = None

    def alloc(self, size):
        return bytearray(size)

    def reg_tx_done(self, reg_hdl, npkt, done_hdl):
        return EOK

    def _take(self, npkt, off):
        v = npkt.buffers[0].net_iov[0]
        assert npkt.flags & _NPKT_UP and npkt.ref_cnt == 1 and npkt.tot_iov == 1
        assert npkt.framelen == v.len
        self.up.append(bytes(v.base[off:v.len]))
        self.drv.tx_done(npkt, None)

    def tx_up(self, reg_hdl, npkt, off, framelen_sub, cell, endpoint, iface):
        self._take(npkt, off)
        return 1

    def tx_up_start(self, reg_hdl, npkt, off, framelen_sub, cell, endpoint, iface, done_hdl):
        while npkt is not None:
            nxt = npkt.next
            self._take(npkt, off)
            npkt = nxt
        return None

    def tx_done(self, reg_hdl, npkt):
        self.done.append(npkt)
        return EOK


FSZ = 2048
MACOFF = 76                         # where the kernel puts the frame in a V2 slot


class Slots:
    def __init__(self, n):
        self.n = n
        self.mm = mmap.mmap(-1, n * FSZ)
        self.next = 0

    def put(self, data: bytes, hdr=(0, 0, 0, 0, 0, 0), status=af.TP_STATUS_USER,
            tplen=None):
        base = self.next * FSZ
        self.next += 1
        snap = len(data)
        struct.pack_into("IIIHH", self.mm, base, 0, tplen or snap, snap, MACOFF, MACOFF + 14)
        af.VNET_HDR.pack_into(self.mm, base + MACOFF - 10, *hdr)
        self.mm[base + MACOFF:base + MACOFF + snap] = data
        struct.pack_into("I", self.mm, base, status)     # last: the slot is ours now

    def status(self, i):
        return struct.unpack_from("I", self.mm, i * FSZ)[0]


def driver(ion, slots, npkts=8, burst=4, batch=1):
    """A DevnAfpacket whose socket is a ring we fill and an fd that never
    fires (the thread finds frames before it polls)."""
    d = af.DevnAfpacket.__new__(af.DevnAfpacket)
    d.ion, d.dll_hdl = ion, None
    d.opts = dict(af.OPTIONS, ifname="veth0", npkts=npkts, burst=burst, batch=batch)
    d.ifname, d.where, d.mtu, d.mac = "veth0", "", 1500, bytes.fromhex("020000000001")
    d._state(ion, d.opts)
    d.ring, d.ring_frame, d.ring_frames = slots.mm, FSZ, slots.n
    d.fd = os.eventfd(0, os.EFD_NONBLOCK)
    ion.drv = d
    return d


def run_ring(d, slots, want_free):
    t = threading.Thread(target=d.rx_thread, daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while any(slots.status(i) for i in range(slots.next)) and time.monotonic() < deadline:
        time.sleep(0.01)
    d.stopping = True
    os.eventfd_write(d.stopfd, 1)
    t.join(5)
    assert not t.is_alive()
    os.close(d.fd)
    os.close(d.stopfd)
    assert all(slots.status(i) == af.TP_STATUS_KERNEL for i in range(slots.next))
    assert len(d.free) == want_free         # every npkt is back


NEEDS = af.VIRTIO_NET_HDR_F_NEEDS_CSUM


@pytest.mark.parametrize("batch", [1, 0])
def test_ring_frames_go_up_whole_and_checked(batch):
    ion = FakeIon()
    slots = Slots(16)
    tcp = frame(TCP(sport=1, dport=2, flags="A"), os.urandom(1000))
    udp = frame(UDP(sport=3, dport=4), os.urandom(333))
    arp = raw(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="198.18.0.1"))
    ptcp, s1, o1 = partial(tcp)
    pudp, s2, o2 = partial(udp)
    slots.put(ptcp, (NEEDS, 0, 0, 0, s1, o1))
    slots.put(arp)
    slots.put(pudp, (NEEDS, 0, 0, 0, s2, o2))
    slots.put(tcp, (2, 0, 0, 0, 0, 0))                          # DATA_VALID: as it is
    slots.put(ptcp, (NEEDS, 1, 66, 1448, s1, o1))               # GSO: dropped
    slots.put(tcp[:500], tplen=len(tcp) + 3000)                 # cut short: dropped
    slots.put(tcp, status=af.TP_STATUS_USER | af.TP_STATUS_VLAN_VALID)   # dropped
    slots.put(ptcp, (NEEDS, 0, 0, 0, 34, 5000))                 # outside: dropped
    d = driver(ion, slots, batch=batch)
    run_ring(d, slots, 8)
    assert ion.up == [tcp, arp, udp, tcp]
    st = d.stats
    assert (st.rxed_ok, st.rxed_broadcast, st.octets_rxed_ok) == \
        (4, 1, 2 * len(tcp) + len(arp) + len(udp))
    assert (d.csum_completed, d.gso_dropped, d.too_long, d.vlan_dropped, d.bad_vnet) == \
        (2, 1, 1, 1, 1)


def test_empty_free_list_drops_and_counts_and_frees_the_slot():
    ion = FakeIon()
    ion.tx_up_start = lambda *a: a[1]       # nobody takes anything: the driver keeps them
    slots = Slots(8)
    arp = raw(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP())
    for _ in range(6):
        slots.put(arp)
    d = driver(ion, slots, npkts=2, burst=8)
    d.free.pop()                            # one npkt "held by the stack"
    run_ring(d, slots, 1)
    assert d.stats.rx_nobufs == 5 and d.stats.rx_not_taken == 1


def test_ring_wraps_around():
    ion = FakeIon()
    slots = Slots(4)
    arp = raw(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP())
    for _ in range(4):
        slots.put(arp)
    d = driver(ion, slots, npkts=4, burst=2)
    t = threading.Thread(target=d.rx_thread, daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while len(ion.up) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    slots.next = 0                          # the kernel starts over at slot 0
    slots.put(b"\x02" * 6 + arp[6:])
    os.eventfd_write(d.fd, 1)               # "the ring has a frame": the thread looks again
    while len(ion.up) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    d.stopping = True
    os.eventfd_write(d.stopfd, 1)
    t.join(5)
    os.close(d.fd)
    os.close(d.stopfd)
    assert len(ion.up) == 5 and ion.up[4][:6] == b"\x02" * 6


# -- transmit --------------------------------------------------------------------------
class FakeSock:
    def __init__(self, err=None):
        self.sent = []
        self.err = err

    def sendmsg(self, bufs):
        if self.err:
            raise OSError(self.err, os.strerror(self.err))
        data = b"".join(bytes(b) for b in bufs)
        self.sent.append(data)
        return len(data)


def down_npkt(*parts):
    n = npkt_t()
    n.buffers = [net_buf_t([net_iov_t(memoryview(bytearray(p)), 0, len(p)) for p in parts])]
    n.tot_iov = len(parts)
    n.framelen = sum(map(len, parts))
    return n


def tx_driver(sock):
    ion = FakeIon()
    d = driver(ion, Slots(1), npkts=2)
    d.sock = sock
    os.close(d.fd)
    os.close(d.stopfd)
    return d, ion


def test_transmit_puts_an_empty_vnet_header_in_front():
    d, ion = tx_driver(FakeSock())
    arp = raw(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP())
    assert d.rx_down(down_npkt(arp)) == TX_DOWN_OK
    assert d.rx_down(down_npkt(arp[:14], arp[14:30], arp[30:])) == TX_DOWN_OK
    assert d.sock.sent == [bytes(10) + arp] * 2
    assert len(ion.done) == 2 and d.stats.txed_ok == 2 and d.stats.txed_broadcast == 2
    assert d.stats.octets_txed_ok == 2 * len(arp)


def test_transmit_sends_only_the_data_of_each_fragment():
    # `len` says how much of each fragment's buffer is data, one or many.
    d, ion = tx_driver(FakeSock())
    arp = raw(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP())
    one = down_npkt(arp + b"junk")
    one.buffers[0].net_iov[0].len = one.framelen = len(arp)
    two = down_npkt(arp[:14] + b"xx", arp[14:])
    two.buffers[0].net_iov[0].len = 14
    two.framelen = len(arp)
    assert d.rx_down(one) == d.rx_down(two) == TX_DOWN_OK
    assert d.sock.sent == [bytes(10) + arp] * 2 and d.stats.octets_txed_ok == 2 * len(arp)


@pytest.mark.parametrize("err,rc", [(errno.EAGAIN, TX_DOWN_AGAIN),
                                    (errno.ENOBUFS, TX_DOWN_AGAIN),
                                    (errno.ENETDOWN, TX_DOWN_FAILED),
                                    (errno.EMSGSIZE, TX_DOWN_FAILED)])
def test_transmit_errors(err, rc):
    d, ion = tx_driver(FakeSock(err))
    n = down_npkt(b"\x02" * 60)
    assert d.rx_down(n) == rc
    if rc == TX_DOWN_AGAIN:
        assert not ion.done and d.stats.tx_again == 1       # still the caller's
    else:
        assert ion.done == [n] and n.flags & _NPKT_NOT_TXED and d.stats.tx_failed == 1


# -- options -----------------------------------------------------------------------------
@pytest.mark.parametrize("opts,needle", [
    ("", "option ifname: required"),
    ("ifname=a/b", "option ifname=a/b"),
    ("ifname=x,mtu=50", "option mtu=50: must be 68..2034"),
    ("ifname=x,npkts=1", "option npkts=1"),
    ("ifname=x,mac=01:00:00:00:00:01", "a unicast address"),
    ("ifname=x,mac=zz", "option mac=zz"),
    ("ifname=x,bogus=1", "unknown option 'bogus'"),
    ("ifname=x,netns=no-such-ns-for-sure", "no network namespace 'no-such-ns-for-sure'"),
])
def test_bad_options_are_named(opts, needle):
    with pytest.raises(ValueError, match=needle):
        af.init(object(), FakeIon(), opts)


def test_the_driver_imports_nothing_of_the_stack_but_ionet():
    """Of iopkt only ionet (the layers contract says so too, for every
    io-net driver), and of the rest only the standard library and pyroute2
    (mutmut's trampoline, in a mutated copy, aside)."""
    import ast
    tree = ast.parse(open(af.__file__).read())
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            mods.add(node.module)
    assert {m for m in mods if m.startswith("iopkt")} == {"iopkt.ionet", "iopkt.ionet.ionet"}
    assert {m for m in mods if not m.startswith(("iopkt", "mutmut"))} <= {
        "__future__", "errno", "fcntl", "logging", "mmap", "os", "re", "select", "socket",
        "struct", "threading", "collections", "pyroute2"}
