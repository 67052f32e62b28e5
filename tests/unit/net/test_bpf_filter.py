"""Capture filters: tcpdump expressions compiled by libpcap and run where
the frame lies (bpf_filter.py), and what a filtered capture keeps
(bpf.BpfDesc with a program): a rejected frame is neither copied nor
captured, an accepted one is cut to the snap length with its wire length
kept."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Ether

from iopkt.kern.mbuf import MbufPool
from iopkt.net.bpf import BPF_D_IN, BpfDesc, parse_records
from iopkt.net.bpf_filter import SNAPLEN_DEFAULT, BpfProgram, FilterError

E = Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b")
FRAMES = {name: bytes(f) for name, f in {
    "ping": E / IP(src="198.18.0.2", dst="198.19.0.2") / ICMP() / (b"p" * 56),
    "syn": E / IP(src="198.18.0.2", dst="198.19.0.2") / TCP(sport=40000, dport=5201,
                                                                 flags="S"),
    "ack": E / IP(src="198.18.0.2", dst="198.19.0.2") / TCP(sport=40000, dport=5201,
                                                                 flags="A") / (b"d" * 1400),
    "dns": E / IP(src="10.1.2.3", dst="198.19.0.2") / UDP(sport=5353, dport=53) / b"q",
    "ping6": E / IPv6(src="2001:2:0:a::2", dst="2001:2:0:b::2") / ICMPv6EchoRequest(),
    "arp": Ether(src="02:00:00:00:00:0a", dst="ff:ff:ff:ff:ff:ff") / ARP(
        hwsrc="02:00:00:00:00:0a", psrc="198.19.0.1", pdst="198.19.0.2"),
}.items()}

# Each expression and the frames it takes, as tcpdump reads them.
EXPECT = [
    ("icmp", {"ping"}),
    ("host 198.19.0.2", {"ping", "syn", "ack", "dns", "arp"}),
    ("net 10.0.0.0/8", {"dns"}),
    ("tcp port 5201", {"syn", "ack"}),
    ("port 53", {"dns"}),
    ("icmp6", {"ping6"}),
    ("tcp[tcpflags] & tcp-syn != 0", {"syn"}),
    ("ip6 or arp", {"ping6", "arp"}),
    ("greater 1000", {"ack"}),
    ("not ip", {"ping6", "arp"}),
]


POOL = MbufPool(16)
PROGRAMS: dict = {}     # compiled once for the property test's examples


@pytest.fixture
def pool():
    return MbufPool(64)


def mbuf(pool, frame, headroom=None):
    m = pool.from_bytes(bytes(frame), headroom)
    assert m is not None
    return m


@pytest.mark.parametrize("expr, takes", EXPECT, ids=[e for e, _ in EXPECT])
def test_an_expression_takes_what_tcpdump_would(pool, expr, takes):
    prog = BpfProgram(expr)
    got = {name for name, f in FRAMES.items()
           if prog.match(mbuf(pool, f), len(f)) == SNAPLEN_DEFAULT}
    assert got == takes
    assert all(prog.match(mbuf(pool, f), len(f)) in (0, SNAPLEN_DEFAULT)
               for f in FRAMES.values())


@given(cut=st.lists(st.integers(1, 600), min_size=1, max_size=4),
       name=st.sampled_from(sorted(FRAMES)), expr=st.sampled_from([e for e, _ in EXPECT]),
       headroom=st.integers(0, 128))
def test_a_chain_is_filtered_as_the_same_frame_in_one_piece(cut, name, expr, headroom):
    """Wherever the frame is cut into mbufs and wherever it starts in its
    cluster, the verdict is the one for the frame whole."""
    pool = POOL
    data = bytes(FRAMES[name])
    prog = PROGRAMS.get(expr) or PROGRAMS.setdefault(expr, BpfProgram(expr))
    one = mbuf(pool, data, headroom)
    whole = prog.match(one, len(data))
    pool.freem(one)
    pieces, at = [], 0
    for n in cut:
        if at < len(data):
            pieces.append(data[at:at + n])
            at += n
    pieces.append(data[at:]) if at < len(data) else None
    head = mbuf(pool, pieces[0], headroom)
    x = head
    for p in pieces[1:]:
        x.next = mbuf(pool, p)
        x = x.next
    assert head.chain_len() == len(data)
    assert prog.match(head, len(data)) == whole
    assert head.tobytes() == data                   # the mbufs stay as they were
    pool.freem(head)
    assert pool.in_use == 0


def test_storage_owned_elsewhere_is_filtered_where_it_lies(pool):
    """The shim's zero-copy mbufs: a legacy driver's buffer, at an offset."""
    buf = bytearray(100) + bytearray(bytes(FRAMES["ping"])) + bytearray(50)
    freed = []
    m = pool.get_ext(buf, 100, len(FRAMES["ping"]), freed.append, "npkt")
    assert BpfProgram("icmp").match(m, m.len) == SNAPLEN_DEFAULT
    assert BpfProgram("tcp").match(m, m.len) == 0
    pool.freem(m)
    assert freed == ["npkt"]


@pytest.mark.parametrize("expr, why", [
    ("tcp porte 80", "filter 'tcp porte 80': can't parse filter expression: syntax error"),
    ("host 300.1.1.1", "filter 'host 300.1.1.1': "),
    ("héte", "filter 'héte': not ASCII"),
])
def test_a_bad_expression_says_what_libpcap_says(expr, why):
    with pytest.raises(FilterError) as e:
        BpfProgram(expr)
    assert str(e.value).startswith(why)


@pytest.mark.parametrize("snaplen", [0, SNAPLEN_DEFAULT + 1])
def test_snaplen_out_of_range_is_refused(snaplen):
    with pytest.raises(FilterError, match=f"snaplen {snaplen}: must be 1..{SNAPLEN_DEFAULT}"):
        BpfProgram("ip", snaplen)


# -- a filtered capture -----------------------------------------------------------
class FakeIf:
    bpf_captured = 0
    bpf_dropped = 0


def desc(**kw):
    d = BpfDesc(**kw)
    d.ifp = FakeIf()
    return d


def test_a_filtered_capture_copies_only_what_the_filter_takes(pool):
    d = desc(program=BpfProgram("tcp"))
    burst = [mbuf(pool, FRAMES[n]) for n in ("ping", "syn", "dns", "ack", "arp")]
    d.catch(burst, BPF_D_IN, 7.0)
    recs, _ = parse_records(d.buf)
    assert [r[2] for r in recs] == [bytes(FRAMES["syn"]), bytes(FRAMES["ack"])]
    assert [r[3] for r in recs] == [len(FRAMES["syn"]), len(FRAMES["ack"])]
    assert (d.seen, d.captured, d.dropped, d.ifp.bpf_captured) == (5, 2, 0, 2)


def test_count_counts_the_frames_taken_not_those_seen(pool):
    d = desc(program=BpfProgram("icmp"), count=2)
    ping, syn = FRAMES["ping"], FRAMES["syn"]
    d.catch([mbuf(pool, f) for f in (syn, ping, syn, syn, ping, ping)], BPF_D_IN, 1.0)
    recs, _ = parse_records(d.buf)
    assert len([r for r in recs if r[1] == BPF_D_IN]) == 2
    assert (d.seen, d.captured) == (5, 2)       # the sixth was never looked at


@pytest.mark.parametrize("filtered", [False, True])
def test_snaplen_cuts_each_frame_and_keeps_its_wire_length(pool, filtered):
    ack = FRAMES["ack"]
    d = desc(program=BpfProgram("ip", 96)) if filtered else desc(snaplen=96)
    head = mbuf(pool, bytes(ack)[:60])
    head.next = mbuf(pool, bytes(ack)[60:])         # a chain: cut across the mbufs
    d.catch([head, mbuf(pool, FRAMES["syn"])], BPF_D_IN, 2.0)
    recs, _ = parse_records(d.buf)
    assert [(r[2], r[3]) for r in recs] == [(bytes(ack)[:96], len(ack)),
                                            (bytes(FRAMES["syn"]), len(FRAMES["syn"]))]
    assert head.tobytes() == bytes(ack)
