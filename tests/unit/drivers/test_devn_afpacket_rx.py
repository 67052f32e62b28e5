"""devn-afpacket's receive thread run on the test's own thread: poll(2) is
played by the test (each poll runs the next step of a script, the last
one is shutdown1), the ring is anonymous memory filled as the kernel
fills a TPACKET_V2 slot, io-net records each chain sent up. Checked:
bursts, the fast path, drops that do not end a burst, the broadcast and
multicast counters, what is said once, the socket's error; then what
io-net gets from up_one / up_chain, and transmit's counters."""

import errno
import logging
import mmap
import os
import select
import struct
import types

import pytest
from scapy.compat import raw
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

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

NEEDS = af.VIRTIO_NET_HDR_F_NEEDS_CSUM
US = bytes.fromhex("020000000001")
PEER = bytes.fromhex("02aa00000002")


def eth(dst: bytes, i: int = 0, size: int = 60) -> bytes:
    return (dst + PEER + b"\x08\x00" + bytes([i]) * size)[:size]


def partial_tcp(payload: int) -> tuple[bytes, bytes]:
    """(whole, partial): a TCP frame with its checksum, and as a sender
    with checksum offload hands it over (the field holds the folded
    pseudo-header sum)."""
    whole = raw(Ether(dst="02:00:00:00:00:01", src="02:aa:00:00:00:02") /
                IP(src="198.18.0.2", dst="198.19.0.2") / TCP(flags="A") / (b"z" * payload))
    b = bytearray(whole)
    s = sum(struct.unpack("!4H", b[26:34])) + 6 + len(b) - 34
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    struct.pack_into("!H", b, 50, s)
    return whole, bytes(b)


class Ion(ionet.IoNetSelf):
    """io-net as a recorder: each call's arguments, each chain sent up as
    a list of frames; tx_up_start takes the first `take` of a chain (all
    if None) and gives the rest back, tx_up answers `tx_up_rc`. What it
    takes it hands back at once (tx_done), as the shim with rxcopy does."""

    def __init__(self):
        self.calls = []
        self.chains = []
        self.done = []
        self.take = None
        self.tx_up_rc = 1
        self.drv = None

    def alloc(self, size):
        return bytearray(size)

    @staticmethod
    def _frame(npkt):
        v = npkt.buffers[0].net_iov[0]
        assert npkt.flags == _NPKT_UP and npkt.ref_cnt == 1 and npkt.tot_iov == 1
        assert npkt.framelen == v.len
        return bytes(v.base[:v.len])

    def reg_tx_done(self, reg_hdl, npkt, done_hdl):
        self.calls.append(("reg_tx_done", reg_hdl, npkt, done_hdl))
        return EOK

    def tx_up(self, reg_hdl, npkt, off, framelen_sub, cell, endpoint, iface):
        self.calls.append(("tx_up", reg_hdl, npkt, off, framelen_sub, cell, endpoint, iface))
        self.chains.append([self._frame(npkt)])
        if self.tx_up_rc > 0:
            self.drv.tx_done(npkt, None)
        return self.tx_up_rc

    def tx_up_start(self, reg_hdl, npkt, off, framelen_sub, cell, endpoint, iface, done_hdl):
        self.calls.append(("tx_up_start", reg_hdl, off, framelen_sub, cell, endpoint, iface,
                           done_hdl))
        chain = []
        while npkt is not None:
            chain.append(npkt)
            npkt = npkt.next
        self.chains.append([self._frame(n) for n in chain])
        k = len(chain) if self.take is None else self.take
        for n in chain[:k]:
            done_hdl.tx_done(n, None)
        return chain[k] if k < len(chain) else None

    def tx_done(self, reg_hdl, npkt):
        self.done.append((reg_hdl, npkt))
        return EOK


class Ring:
    """The kernel's side of a TPACKET_V2 ring in anonymous memory: put()
    fills the next slot as tpacket_rcv does (the slot's header, the
    virtio-net header before the frame, the status last)."""

    def __init__(self, n, fsz=2048):
        self.n, self.fsz = n, fsz
        self.mm = mmap.mmap(-1, n * fsz)
        self.next = 0

    def put(self, data, hdr=(0, 0, 0, 0, 0, 0), status=af.TP_STATUS_USER, tplen=None,
            mac=76):
        base = self.next * self.fsz
        self.next = (self.next + 1) % self.n
        struct.pack_into("IIHH", self.mm, base + 4, len(data) if tplen is None else tplen,
                         len(data), mac, mac + 14)
        af.VNET_HDR.pack_into(self.mm, base + mac - 10, *hdr)
        self.mm[base + mac:base + mac + len(data)] = data
        struct.pack_into("I", self.mm, base, status)

    def ours(self):
        return [i for i in range(self.n) if struct.unpack_from("I", self.mm, i * self.fsz)[0]]


class Sock:
    """The packet socket as rx_down and the POLLERR path use it: sendmsg
    records the buffers it is given (or fails with `err`), SO_ERROR
    answers the pending error once."""

    def __init__(self, err=None):
        self.err = err
        self.sent = []
        self.bufs = []
        self.so_error = 0

    def sendmsg(self, bufs):
        if self.err:
            raise OSError(self.err, os.strerror(self.err))
        self.bufs.append(list(bufs))
        data = b"".join(bytes(b) for b in bufs)
        self.sent.append(data)
        return len(data)

    def getsockopt(self, level, opt):
        e, self.so_error = self.so_error, 0
        return e


class Poll:
    """poll(2) played by the test: each call runs the next step (what the
    kernel does meanwhile) and answers the events it returns."""

    def __init__(self, steps):
        self.steps = list(steps)
        self.registered = []
        self.polls = 0

    def register(self, fd, events):
        self.registered.append((fd, events))

    def poll(self):
        self.polls += 1
        return self.steps.pop(0)() or []


@pytest.fixture
def rig(monkeypatch):
    """make(ring, **opts) -> a driver over `ring`, io-net a recorder,
    registered as (5, 6, 7), ifname veth0 in netns red; run(d, *steps)
    runs its receive thread to the end of the script (then shutdown1)."""
    made = []

    def make(ring, npkts=8, burst=32, batch=1):
        ion = Ion()
        d = af.DevnAfpacket.__new__(af.DevnAfpacket)
        d.ion, d.dll_hdl = ion, None
        d.opts = dict(af.OPTIONS, ifname="veth0", npkts=npkts, burst=burst, batch=batch)
        d.ifname, d.where, d.mtu, d.mac = "veth0", " in netns red", 1500, US
        d._state(ion, d.opts)
        d.reg_hdl, d.cell, d.endpoint = 5, 6, 7
        d.ring, d.ring_frame, d.ring_frames = ring.mm, ring.fsz, ring.n
        d.sock, d.fd = Sock(), 1000
        ion.drv = d
        made.append(d)
        return d, ion

    def run(d, *steps):
        def stop():
            d.shutdown1(d.reg_hdl)
            return [(d.stopfd, select.POLLIN)]
        poller = Poll([*steps, stop])
        monkeypatch.setattr(af, "select", types.SimpleNamespace(
            poll=lambda: poller, POLLIN=select.POLLIN, POLLERR=select.POLLERR))
        d.rx_thread()
        assert poller.steps == [] and poller.registered == [
            (d.fd, select.POLLIN), (d.stopfd, select.POLLIN)]
        return poller.polls

    yield types.SimpleNamespace(make=make, run=run)
    for d in made:
        os.close(d.stopfd)


# -- bursts ----------------------------------------------------------------------------------
def test_an_empty_ring_waits_in_poll(rig):
    ring = Ring(4)
    d, ion = rig.make(ring)
    assert rig.run(d) == 1 and ion.chains == []


def test_frames_in_the_ring_go_up_as_one_chain_before_any_poll(rig, caplog):
    """One tx_up_start with our handles for the burst, no warning; every
    slot is the kernel's again and every npkt back."""
    ring = Ring(8)
    frames = [eth(US, i) for i in range(3)]
    for f in frames:
        ring.put(f)
    d, ion = rig.make(ring)
    assert rig.run(d) == 1
    assert ion.chains == [frames] and ion.calls == [("tx_up_start", 5, 0, 0, 6, 7, 0, d)]
    assert ring.ours() == [] and len(d.free) == 8 and caplog.records == []
    assert (d.stats.rxed_ok, d.stats.octets_rxed_ok) == (3, 180)


def test_a_burst_is_at_most_burst_frames(rig):
    ring = Ring(8)
    frames = [eth(US, i) for i in range(5)]
    for f in frames:
        ring.put(f)
    d, ion = rig.make(ring, burst=3)
    assert rig.run(d) == 1
    assert ion.chains == [frames[:3], frames[3:]]


def test_frames_that_arrive_while_it_sleeps_are_read_after_the_poll(rig):
    ring = Ring(4)
    d, ion = rig.make(ring, burst=2)
    frames = [eth(US, i) for i in range(6)]

    def arrive(fs):
        def step():
            for f in fs:
                ring.put(f)
            return [(d.fd, select.POLLIN)]
        return step
    assert rig.run(d, arrive(frames[:3]), arrive(frames[3:])) == 3      # around the ring
    assert ion.chains == [frames[:2], frames[2:3], frames[3:5], frames[5:]]


def test_dropped_frames_do_not_end_a_burst(rig):
    """A GSO frame (without NEEDS_CSUM), one cut short, a VLAN one, one
    too long, a partial checksum outside its frame: each dropped and
    counted, the good frames around them still one chain."""
    ring = Ring(16, fsz=4096)
    good = [eth(US, i) for i in range(6)]
    ring.put(good[0])
    ring.put(eth(US, 9), (0, 1, 0, 0, 0, 0))                    # gso_type 1, nothing else
    ring.put(good[1])
    ring.put(eth(US, 9)[:40], tplen=60)                         # cut short
    ring.put(good[2])
    ring.put(eth(US, 9), status=af.TP_STATUS_USER | af.TP_STATUS_VLAN_VALID)
    ring.put(good[3])
    ring.put(eth(US, 9, 2049))                                  # more than a buffer
    ring.put(good[4])
    ring.put(eth(US, 9), (NEEDS, 0, 0, 0, 34, 5000))            # outside its frame
    ring.put(good[5])
    d, ion = rig.make(ring, npkts=8, burst=16)
    assert rig.run(d) == 1 and ion.chains == [good]
    assert (d.gso_dropped, d.too_long, d.vlan_dropped, d.bad_vnet, d.csum_completed) == \
        (1, 2, 1, 1, 0)
    assert ring.ours() == [] and len(d.free) == 8


def test_an_npkt_whose_checksum_cannot_be_completed_is_used_again(rig):
    ring = Ring(4)
    ring.put(eth(US, 1), (NEEDS, 0, 0, 0, 34, 5000))
    ring.put(eth(US, 2))
    d, ion = rig.make(ring, npkts=2)
    d.free.pop()
    assert rig.run(d) == 1 and ion.chains == [[eth(US, 2)]] and len(d.free) == 1


def test_broadcast_and_multicast_are_counted_by_the_group_bit(rig):
    """The group bit is bit 0 of the first byte: 02:.. and 00:01:.. are unicast."""
    ring = Ring(8)
    dsts = [b"\xff" * 6, b"\xff" * 6, bytes.fromhex("01005e000001"),
            bytes.fromhex("0180c2000000"), US, bytes.fromhex("000100000000")]
    for i, dst in enumerate(dsts):
        ring.put(eth(dst, i))
    d, ion = rig.make(ring)
    rig.run(d)
    st = d.stats
    assert (st.rxed_ok, st.rxed_broadcast, st.rxed_multicast) == (6, 2, 2)


def test_the_common_frame_takes_the_fast_path(rig):
    """Only a slot that asks for something is looked at closely: not one
    of exactly a buffer's size, nor one with status bits other than VLAN."""
    ring = Ring(4, fsz=4096)
    big = eth(US, 1, af.BUFSIZE)
    ring.put(big)
    ring.put(eth(US, 2), status=af.TP_STATUS_USER | 0x80)       # TP_STATUS_CSUM_VALID
    ring.put(eth(US, 3), (2, 0, 0, 0, 0, 0))                    # DATA_VALID
    d, ion = rig.make(ring)
    looked = []
    real = d._unusual
    d._unusual = lambda *a: looked.append(a[2:]) or real(*a)
    rig.run(d)
    assert ion.chains == [[big, eth(US, 2), eth(US, 3)]] and looked == []


def test_a_partial_checksum_of_a_whole_buffer_is_completed(rig):
    ring = Ring(2, fsz=4096)
    whole, part = partial_tcp(af.BUFSIZE - 54)
    assert len(whole) == af.BUFSIZE
    ring.put(part, (NEEDS, 0, 0, 0, 34, 16))
    d, ion = rig.make(ring)
    rig.run(d)
    assert ion.chains == [[whole]] and d.csum_completed == 1


def test_slot_fields_are_unsigned(rig, caplog):
    """tp_len and tp_mac are unsigned: a length of 2**32-1 is said as
    such, a frame 32 KiB into a slot is read from there."""
    ring = Ring(64)
    ring.put(eth(US, 1), tplen=0xFFFFFFFF)
    ring.put(eth(US, 2), mac=0x8000 + 76)
    d, ion = rig.make(ring)
    with caplog.at_level(logging.WARNING, logger="iopkt"):
        rig.run(d)
    assert ion.chains == [[eth(US, 2)]] and d.too_long == 1
    assert "a frame of 4294967295 bytes" in caplog.records[0].getMessage()


# -- the socket's error --------------------------------------------------------------------
def test_pollerr_on_the_socket_is_read_and_counted(rig):
    """Only POLLERR on the socket reads its error (not POLLIN, not the stop fd's)."""
    ring = Ring(4)
    d, ion = rig.make(ring)

    def err(e, events):
        def step():
            d.sock.so_error = e
            return events
        return step
    rig.run(d, err(errno.ENETDOWN, [(d.fd, select.POLLERR)]),
            err(errno.EIO, [(d.fd, select.POLLIN), (d.stopfd, select.POLLERR)]))
    assert (d.link_down_seen, d.stats.rx_failed, d.sock.so_error) == (1, 0, errno.EIO)


# -- said once -----------------------------------------------------------------------------
def test_each_kind_of_drop_is_said_once_with_where(rig, caplog):
    ring = Ring(16)
    for _ in range(2):
        ring.put(eth(US), (0, 3, 0, 0, 0, 0))
        ring.put(eth(US), status=af.TP_STATUS_USER | af.TP_STATUS_VLAN_VALID)
        ring.put(eth(US, 0, 3000)[:100], tplen=3000)
        ring.put(eth(US), (NEEDS, 0, 0, 0, 34, 5000))
    d, ion = rig.make(ring, burst=64)
    with caplog.at_level(logging.WARNING, logger="iopkt"):
        rig.run(d)
    assert (d.gso_dropped, d.vlan_dropped, d.too_long, d.bad_vnet) == (2, 2, 2, 2)
    w = "devn-afpacket: veth0 in netns red"
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.WARNING, m) for m in [
        f"{w} delivers GSO super-frames (gso_type 3): io-net drivers know no offload; "
        "dropped and counted. Turn TSO off on the link partner (its tx-tcp-segmentation) "
        "(said once)",
        f"{w}: a frame whose VLAN tag the kernel took off; io-net drivers know no VLANs: "
        "dropped and counted (turn rx-vlan offload off to see tagged frames as they are) "
        "(said once)",
        f"{w}: a frame of 3000 bytes, more than MTU 1500 allows; dropped and counted "
        "(said once)",
        f"{w}: a partial checksum outside its frame (csum_start 34, csum_offset 5000); "
        "dropped and counted (said once)"]]


def test_a_header_that_asks_nothing_is_taken_as_it_is(rig):
    """_unusual's answers: True for a header asking nothing (DATA_VALID
    aside), (start, off) for NEEDS_CSUM; _complete takes True as it is."""
    d, ion = rig.make(Ring(1))
    hdr = bytearray(10)
    assert d._unusual(hdr, 0, af.TP_STATUS_USER, 60, 60) is True
    af.VNET_HDR.pack_into(hdr, 0, 2, 0, 0, 0, 34, 16)
    assert d._unusual(hdr, 0, af.TP_STATUS_USER, 60, 60) is True
    af.VNET_HDR.pack_into(hdr, 0, NEEDS | 2, 0, 0, 0, 34, 16)
    assert d._unusual(hdr, 0, af.TP_STATUS_USER, 60, 60) == (34, 16)
    buf = bytearray(eth(US))
    assert d._complete(buf, 60, True) is True and buf == eth(US)
    assert (d.csum_completed, d.bad_vnet) == (0, 0)


# -- up_one and up_chain -------------------------------------------------------------------
@pytest.mark.parametrize("rc,kept", [(1, 0), (0, 2), (-1, 2)], ids=["taken", "zero", "minus"])
def test_batch_0_sends_each_frame_with_tx_up(rig, rc, kept):
    """tx_done registered first; what tx_up does not take (<= 0) is ours again."""
    ring = Ring(4)
    ring.put(eth(US, 1))
    ring.put(eth(US, 2))
    d, ion = rig.make(ring, npkts=2, batch=0)
    ion.tx_up_rc = rc
    npkts = set(map(id, d.free))
    rig.run(d)
    assert ion.chains == [[eth(US, 1)], [eth(US, 2)]]
    assert [c[0] for c in ion.calls] == ["reg_tx_done", "tx_up"] * 2
    for reg, up in (ion.calls[0:2], ion.calls[2:4]):
        assert reg == ("reg_tx_done", 5, up[2], d) and up[1:2] + up[3:] == (5, 0, 0, 6, 7, 0)
    assert d.stats.rx_not_taken == kept and set(map(id, d.free)) == npkts


def test_what_tx_up_start_does_not_take_is_recycled(rig):
    ring = Ring(4)
    for i in range(3):
        ring.put(eth(US, i))
    d, ion = rig.make(ring, npkts=3)
    ion.take = 1
    npkts = set(map(id, d.free))
    rig.run(d)
    assert d.stats.rx_not_taken == 2 and set(map(id, d.free)) == npkts
    assert all(n.next is None for n in d.free)


def test_a_failing_tx_up_start_is_said_and_the_thread_goes_on(rig, caplog):
    ring = Ring(4)
    ring.put(eth(US, 1))
    d, ion = rig.make(ring)

    def boom(*a):
        raise RuntimeError("boom")
    ion.tx_up_start = boom
    with caplog.at_level(logging.WARNING, logger="iopkt"):
        rig.run(d)
    assert [r.getMessage() for r in caplog.records] == ["devn-afpacket: tx_up_start failed: boom"]
    assert d.stats.rxed_ok == 1 and d.stats.rx_not_taken == 0


# -- transmit ----------------------------------------------------------------------------------
def down(*parts, flags=0):
    n = npkt_t()
    n.buffers = [net_buf_t([net_iov_t(memoryview(bytearray(p)), 0, len(p)) for p in parts])]
    n.tot_iov, n.framelen, n.flags = len(parts), sum(map(len, parts)), flags
    return n


def test_a_whole_fragment_goes_to_sendmsg_as_it_is(rig):
    d, ion = rig.make(Ring(1))
    n = down(eth(US))
    assert d.rx_down(n) == TX_DOWN_OK
    assert d.sock.bufs[0][0] == bytes(10) and d.sock.bufs[0][1] is n.buffers[0].net_iov[0].base
    assert ion.done == [(5, n)]


@pytest.mark.parametrize("err,rc,field", [
    (errno.EAGAIN, TX_DOWN_AGAIN, "tx_again"), (errno.EINTR, TX_DOWN_AGAIN, "tx_again"),
    (errno.ENOBUFS, TX_DOWN_AGAIN, "tx_again"), (errno.EIO, TX_DOWN_FAILED, "tx_failed")],
    ids=["eagain", "eintr", "enobufs", "eio"])
def test_transmit_errors_are_counted_each_time(rig, err, rc, field):
    d, ion = rig.make(Ring(1))
    d.sock.err = err
    ns = [down(eth(US), flags=0x4), down(eth(US)[:14], eth(US)[14:], flags=0x4)]
    assert [d.rx_down(n) for n in ns] == [rc, rc]
    assert getattr(d.stats, field) == 2
    if rc == TX_DOWN_FAILED:
        assert ion.done == [(5, n) for n in ns]
        assert all(n.flags == 0x4 | _NPKT_NOT_TXED for n in ns)
    else:
        assert ion.done == [] and all(n.flags == 0x4 for n in ns)


def test_transmit_counts_broadcast_and_multicast_by_the_group_bit(rig):
    d, ion = rig.make(Ring(1))
    frames = [eth(b"\xff" * 6), eth(bytes.fromhex("01005e000001")), eth(US),
              eth(bytes.fromhex("000100000000"))]
    for f in frames:
        assert d.rx_down(down(f)) == TX_DOWN_OK
    assert d.rx_down(down(frames[1][:14], frames[1][14:])) == TX_DOWN_OK
    st = d.stats
    assert (st.txed_ok, st.txed_broadcast, st.txed_multicast, st.octets_txed_ok) == \
        (5, 1, 2, 300)
    assert d.sock.sent == [bytes(10) + f for f in frames + frames[1:2]]


# -- checksum completion at its edges ---------------------------------------------------------
def reference(region: bytes) -> bytes:
    """RFC 1071: the complement of the one's complement sum, 0 as 0xFFFF."""
    if len(region) & 1:
        region += b"\0"
    s = sum(struct.unpack(f"!{len(region) // 2}H", region))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return struct.pack("!H", (~s & 0xFFFF) or 0xFFFF)


def test_a_checksum_field_at_csum_start_itself():
    buf = bytearray(os.urandom(61))
    want = reference(bytes(buf[34:61]))
    assert af.complete_csum(buf, 0, 61, 34, 0)
    assert buf[34:36] == want


def test_a_field_that_crosses_the_frames_end_writes_nothing():
    buf = bytearray(b"\xee" * 100)
    assert not af.complete_csum(buf, 0, 60, 34, 25)             # field at 59..60
    assert buf == b"\xee" * 100
    assert af.complete_csum(buf, 0, 60, 34, 24)                 # 58..59 fits


def test_shutdown1_waits_at_most_five_seconds_for_the_receive_thread(rig):
    """A receive thread that hangs (in io-net, say) cannot hang the unmount."""
    d, ion = rig.make(Ring(1))
    joined = []
    d.thread = types.SimpleNamespace(join=lambda timeout=None: joined.append(timeout))
    assert d.shutdown1(5) == EOK
    assert joined == [5.0] and d.stopping is True
