"""Packet capture taps (bpf.py) on a real Stack with fake interfaces: what
a capture sees of the bursts in and out, its direction filter, its count,
its bound, the end when the interface is detached, and nothing at all
copied when no capture is attached."""

import json

import pytest
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import ARP, Ether

from iopkt.net import bpf
from iopkt.net.bpf import (
    BPF_D_IN,
    BPF_D_INOUT,
    BPF_D_OUT,
    BPF_END,
    REC,
    BpfDesc,
    bpf_attach,
    bpf_detach,
    parse_records,
)
from iopkt.net.ifnet import IFCAP_CSUM_TCPv4_Rx, IFCAP_CSUM_TCPv4_Tx, IFCAP_TSOv4

from fakenet import Router as R
from fakenet import inject
from offload_frames import flow, received

SMALL = REC.size + bpf.BPF_MAXFRAME          # the smallest bound a capture accepts


class Events:
    """The ready/done calls a capture makes."""

    def __init__(self):
        self.ready = 0
        self.done = []

    def desc(self, direction=BPF_D_INOUT, count=0, bufsize=bpf.BPF_BUFSIZE):
        return BpfDesc(direction, count, bufsize, ready=self._ready, done=self.done.append)

    def _ready(self):
        self.ready += 1


def records(d):
    recs, off = parse_records(d.buf)
    assert off == len(d.buf)
    return recs


def ping(seq, src=R.H0, dst=R.H1):
    return IP(src=src, dst=dst) / ICMP(id=0x77, seq=seq) / (b"p" * 40)


def test_a_capture_sees_exactly_the_burst_in_and_out(net, stack):
    ev = Events()
    d0, d1 = ev.desc(), ev.desc()
    bpf_attach(net.if0, d0)
    bpf_attach(net.if1, d1)
    burst = [net.from_h0(ping(i)) for i in range(5)]
    inject(net.if0, *burst)
    assert len(net.if1.sent) == 5                   # forwarded, one burst
    got0, got1 = records(d0), records(d1)
    assert [(dr, f) for _, dr, f, _w in got0] == [(BPF_D_IN, raw(p)) for p in burst]
    assert [(dr, f) for _, dr, f, _w in got1] == [(BPF_D_OUT, f) for f in net.if1.sent]
    assert [Ether(f)[ICMP].seq for _, _, f, _w in got1] == list(range(5))
    assert len({ts for ts, _, _, _w in got0}) == 1      # one timestamp per burst
    assert (d0.captured, d0.dropped, d1.captured) == (5, 0, 5)
    assert net.if0.counters()["bpf_captured"] == 5
    assert ev.ready == 2 and ev.done == []
    # the replies come back the other way
    inject(net.if1, *[net.from_h1(ping(i, R.H1, R.H0)) for i in range(2)])
    assert [dr for _, dr, _, _w in records(d1)][5:] == [BPF_D_IN] * 2
    assert [dr for _, dr, _, _w in records(d0)][5:] == [BPF_D_OUT] * 2


def test_the_stack_s_own_frames_are_captured_too(router, stack):
    """ARP requests (arp.py) and replies (ether_output_frame) go out
    through the taps as well as forwarded IPv4."""
    ev = Events()
    d = ev.desc(direction=BPF_D_OUT)
    bpf_attach(router.if1, d)
    router.send0(ping(1))                           # H1 not resolved: ARP asks
    inject(router.if1, Ether(dst="ff:ff:ff:ff:ff:ff", src=R.H1_MAC) / ARP(
        op=1, hwsrc=R.H1_MAC, psrc=R.H1, pdst=R.IP1))
    got = [Ether(f) for _, _, f, _w in records(d)]
    assert [f[ARP].op for f in got if ARP in f][:1] == [1]      # who-has
    assert sum(1 for f in got if ARP in f and f[ARP].op == 2) == 1   # is-at, to H1
    assert sum(1 for f in got if ICMP in f) == 1    # the held ping, once resolved
    assert [raw(f) for f in got] == router.if1.sent


@pytest.mark.parametrize("direction,want", [(BPF_D_IN, [BPF_D_IN] * 3),
                                            (BPF_D_OUT, [BPF_D_OUT] * 3)])
def test_direction_filter(net, stack, direction, want):
    ev = Events()
    d = ev.desc(direction=direction)
    bpf_attach(net.if0, d)
    inject(net.if0, *[net.from_h0(ping(i)) for i in range(3)])      # in on if0
    inject(net.if1, *[net.from_h1(ping(i, R.H1, R.H0)) for i in range(3)])   # out on if0
    assert [dr for _, dr, _, _w in records(d)] == want
    assert d.captured == 3


def test_count_ends_the_capture_mid_burst(net, stack):
    ev = Events()
    d = ev.desc(count=3)
    d.done = lambda why: (ev.done.append(why), d.finish(why))
    bpf_attach(net.if0, d)
    inject(net.if0, *[net.from_h0(ping(i)) for i in range(5)])
    recs = records(d)
    assert [Ether(f)[ICMP].seq for _, dr, f, _w in recs if dr != BPF_END] == [0, 1, 2]
    assert recs[-1][1] == BPF_END
    assert recs[-1][2] == {"reason": "count", "captured": 3, "dropped": 0,
                           "direction": "both", "count": 3, "pending": recs[-1][2]["pending"],
                           "seen": 3}
    assert ev.done == ["count"]
    assert net.if0.if_bpf is None                   # the last one off: taps cost nothing
    assert len(net.if1.sent) == 5                   # forwarding never noticed


def test_the_bound_drops_and_counts(net, stack):
    ev = Events()
    d = ev.desc(bufsize=SMALL)
    bpf_attach(net.if0, d)
    pkt = net.from_h0(IP(src=R.H0, dst=R.H1) / ICMP() / (b"x" * 1400))
    per = REC.size + len(raw(pkt))
    fits = SMALL // per
    inject(net.if0, *[pkt] * (fits + 7))
    assert (d.captured, d.dropped) == (fits, 7)
    assert len(d.buf) == fits * per <= SMALL
    c = net.if0.counters()
    assert (c["bpf_captured"], c["bpf_dropped"]) == (fits, 7)
    assert len(net.if1.sent) == fits + 7            # every frame still forwarded
    # the reader takes some: frames fit again
    del d.buf[:per * 2]
    inject(net.if0, *[pkt] * 3)
    assert (d.captured, d.dropped) == (fits + 2, 8)


def test_the_bound_counts_each_record_header_within_one_burst(net, stack):
    # Small frames in one burst: the 13-byte record header of each one
    # counts against the bound as much as its bytes (with big frames a
    # forgotten header rarely makes room for one more).
    ev = Events()
    d = ev.desc(bufsize=SMALL)
    bpf_attach(net.if0, d)
    pkt = net.from_h0(IP(src=R.H0, dst=R.H1) / ICMP())
    per = REC.size + len(raw(pkt))
    fits = SMALL // per
    sent = 0
    while sent < fits + 40:                 # bursts of 200: the pool holds 256
        inject(net.if0, *[pkt] * 200)
        sent += 200
    assert (d.captured, d.dropped) == (fits, sent - fits)
    assert len(d.buf) == fits * per <= SMALL


def test_detach_ends_every_capture_on_the_interface(net, stack):
    ev = Events()
    d1, d2, other = ev.desc(), ev.desc(direction=BPF_D_IN), ev.desc()
    for d in (d1, d2):
        bpf_attach(net.if0, d)
    bpf_attach(net.if1, other)
    inject(net.if0, net.from_h0(ping(1)))
    assert d1.captured == d2.captured == 1
    stack.if_detach(net.if0)
    assert ev.done == ["detached", "detached"]
    assert net.if0.if_bpf is None
    assert net.if1.if_bpf is not None and other.ifp is net.if1


def test_finish_writes_a_trailer_and_detaches(net, stack):
    d = Events().desc()
    bpf_attach(net.if0, d)
    inject(net.if0, net.from_h0(ping(1)))
    d.finish("client")
    d.finish("count")                               # only the first reason counts
    inject(net.if0, net.from_h0(ping(2)))
    recs = records(d)
    assert [dr for _, dr, _, _w in recs] == [BPF_D_IN, BPF_END]
    assert recs[1][2]["reason"] == "client" and recs[1][2]["captured"] == 1
    assert net.if0.if_bpf is None


def test_no_capture_nothing_is_copied(net, stack, monkeypatch):
    """With no capture attached the taps never run: no copy, no clock.
    After the last capture leaves, the same."""
    def boom(*a, **k):
        raise AssertionError("tapped without a capture")
    monkeypatch.setattr(bpf.BpfIf, "mtap", boom)
    monkeypatch.setattr(bpf.BpfDesc, "catch", boom)
    assert net.if0.if_bpf is None and net.if1.if_bpf is None
    inject(net.if0, *[net.from_h0(ping(i)) for i in range(4)])
    assert len(net.if1.sent) == 4
    monkeypatch.undo()
    d = Events().desc()
    bpf_attach(net.if0, d)
    bpf_detach(d)
    assert net.if0.if_bpf is None
    inject(net.if0, *[net.from_h0(ping(i)) for i in range(4)])
    assert d.buf == b"" and d.captured == 0
    assert net.if0.counters()["bpf_captured"] == 0


def test_several_captures_each_get_their_copy(net, stack):
    ev = Events()
    ds = [ev.desc() for _ in range(3)]
    for d in ds:
        bpf_attach(net.if0, d)
    inject(net.if0, *[net.from_h0(ping(i)) for i in range(2)])
    assert all(records(d) == records(ds[0]) and d.captured == 2 for d in ds)
    bpf_detach(ds[1])
    inject(net.if0, net.from_h0(ping(9)))
    assert [d.captured for d in ds] == [3, 2, 3]


def test_a_superframe_is_one_frame(net, stack):
    """A TSO super-frame (a cluster plus a jumbo, offload on) is captured
    as the one 20 KB frame the interface carries, in and out."""
    stack.pool.enable_jumbo(4)
    tso = IFCAP_TSOv4 | IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv4_Tx
    net.if1.set_capenable(tso)
    d0, d1 = Events().desc(), Events().desc()
    bpf_attach(net.if0, d0)
    bpf_attach(net.if1, d1)
    pkt = flow(20000)
    m = received(net, pkt, 1448)
    assert m.next is not None
    whole = m.tobytes()
    inject(net.if0, m)
    (_, _, fin, win), = records(d0)
    (_, _, fout, wout), = records(d1)
    assert fin == whole and len(fin) == win == 14 + len(pkt)
    assert fout == net.if1.sent[0] and len(fout) == wout == 14 + len(pkt)
    assert Ether(fout)[TCP].dport == 5201
    assert stack.pool.jumbo_in_use == 0


def test_segmented_in_software_is_captured_as_segments(net, stack):
    """For an interface without TSO the IP layer segments first: the
    capture sees the wire-sized segments that interface carries."""
    stack.pool.enable_jumbo(4)
    d = Events().desc(direction=BPF_D_OUT)
    bpf_attach(net.if1, d)
    inject(net.if0, received(net, flow(5000), 1448))
    got = [f for _, _, f, _w in records(d)]
    assert got == net.if1.sent and len(got) == 4
    assert max(len(f) for f in got) <= 1514


def test_parse_records_keeps_an_incomplete_record_for_later():
    frame = b"\x01" * 60
    rec = REC.pack(1.5, BPF_D_IN, len(frame), len(frame)) + frame
    trailer = json.dumps({"reason": "count"}).encode()
    data = rec + rec + REC.pack(2.0, BPF_END, len(trailer), 0) + trailer
    recs, off = parse_records(data[:len(rec) + 20])
    assert recs == [(1.5, BPF_D_IN, frame, len(frame))] and off == len(rec)
    recs, off = parse_records(data, 0)
    assert [r[1] for r in recs] == [BPF_D_IN, BPF_D_IN, BPF_END] and off == len(data)
    assert recs[-1][2] == {"reason": "count"}
    with pytest.raises(ValueError):
        parse_records(REC.pack(0, 9, 10, 10) + b"x" * 10)


def test_attach_refuses_a_capture_twice(net, stack):
    d = Events().desc()
    bpf_attach(net.if0, d)
    with pytest.raises(ValueError):
        bpf_attach(net.if1, d)
    with pytest.raises(ValueError):
        BpfDesc(bufsize=1000)
    bpf_detach(d)
    bpf_detach(d)                                   # twice: nothing happens
    assert net.if0.if_bpf is None and BPF_D_OUT == 2
