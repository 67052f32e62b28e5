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
from iopkt.net.bpf import BPF_D_IN, BPF_END, BPF_MAXFRAME, SNAPLEN_MAX, BpfDesc, parse_records
from iopkt.net.bpf_filter import BpfProgram, FilterError

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
           if prog.match(mbuf(pool, f), len(f)) == SNAPLEN_MAX}
    assert got == takes
    assert all(prog.match(mbuf(pool, f), len(f)) in (0, SNAPLEN_MAX)
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
    assert BpfProgram("icmp").match(m, m.len) == SNAPLEN_MAX
    assert BpfProgram("tcp").match(m, m.len) == 0
    pool.freem(m)
    assert freed == ["npkt"]


@pytest.mark.parametrize("expr, why", [
    ("tcp porte 80", "filter 'tcp porte 80': can't parse filter expression: syntax error"),
    ("host 300.1.1.1", "filter 'host 300.1.1.1': ..."),     # libpcap's words vary by version
    ("héte", "filter 'héte': not ASCII"),
])
def test_a_bad_expression_says_what_libpcap_says(expr, why):
    with pytest.raises(FilterError) as e:
        BpfProgram(expr)
    said = str(e.value)
    if why.endswith("..."):
        assert said.startswith(why[:-3]) and len(said) > len(why), said
    else:
        assert said == why


@pytest.mark.parametrize("snaplen", [0, SNAPLEN_MAX + 1])
def test_snaplen_out_of_range_is_refused(snaplen):
    with pytest.raises(FilterError, match=f"snaplen {snaplen}: must be 1..{SNAPLEN_MAX}"):
        BpfProgram("ip", snaplen)


# -- a filtered capture -----------------------------------------------------------
class FakeIf:
    if_bpf = None
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
    d = desc(program=BpfProgram("ip", 96), snaplen=96) if filtered else desc(snaplen=96)
    head = mbuf(pool, bytes(ack)[:60])
    head.next = mbuf(pool, bytes(ack)[60:])         # a chain: cut across the mbufs
    d.catch([head, mbuf(pool, FRAMES["syn"])], BPF_D_IN, 2.0)
    recs, _ = parse_records(d.buf)
    assert [(r[2], r[3]) for r in recs] == [(bytes(ack)[:96], len(ack)),
                                            (bytes(FRAMES["syn"]), len(FRAMES["syn"]))]
    assert head.tobytes() == bytes(ack)


def test_the_prototypes_are_libpcaps_declarations(monkeypatch):
    """ctypes calls a C function as told: each prototype as pcap/pcap.h and
    pcap/bpf.h declare it (a wrong one truncates a pointer or a length)."""
    import ctypes

    from iopkt.net import bpf_filter
    monkeypatch.setattr(bpf_filter, "_lib", None)       # loaded here, not by an earlier test
    lib = bpf_filter.libpcap()
    assert bpf_filter.libpcap() is lib                  # and once
    void_p, c_int, c_uint, c_char_p = (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint,
                                      ctypes.c_char_p)
    program_p = ctypes.POINTER(bpf_filter._Program)
    want = {
        # pcap_t *pcap_open_dead(int linktype, int snaplen)
        "pcap_open_dead": (void_p, [c_int, c_int]),
        # int pcap_compile(pcap_t *, struct bpf_program *, const char *, int, bpf_u_int32)
        "pcap_compile": (c_int, [void_p, program_p, c_char_p, c_int, ctypes.c_uint32]),
        # char *pcap_geterr(pcap_t *)
        "pcap_geterr": (c_char_p, [void_p]),
        # void pcap_freecode(struct bpf_program *); void pcap_close(pcap_t *)
        "pcap_freecode": (c_int, [program_p]),
        "pcap_close": (c_int, [void_p]),
        # u_int bpf_filter(const struct bpf_insn *, const u_char *, u_int wirelen, u_int buflen)
        "bpf_filter": (c_uint, [void_p, void_p, c_uint, c_uint]),
        # const char *pcap_lib_version(void)
        "pcap_lib_version": (c_char_p, None),
    }
    for name, (restype, argtypes) in want.items():
        f = getattr(lib, name)
        assert (f.restype, f.argtypes and list(f.argtypes)) == (restype, argtypes), name
    # struct bpf_insn { u_short code; u_char jt; u_char jf; bpf_u_int32 k; }: 8 bytes
    assert [(n, t) for n, t in bpf_filter._Insn._fields_] == [
        ("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32)] and ctypes.sizeof(bpf_filter._Insn) == 8
    assert bpf_filter.lib_version().startswith("libpcap version ")


def test_a_cluster_is_pinned_once_while_the_program_lives(pool, monkeypatch):
    """Its address is found the first time a frame in it is filtered, then
    remembered: one pin per cluster, not one per frame."""
    from iopkt.net import bpf_filter
    prog = BpfProgram("icmp")
    pins = []
    real = bpf_filter._pinned
    monkeypatch.setattr(bpf_filter, "_pinned", lambda buf: pins.append(id(buf)) or real(buf))
    a, b = mbuf(pool, FRAMES["ping"]), mbuf(pool, FRAMES["syn"])
    assert [prog.match(m, m.len) for m in (a, b, a, b, a)] == [SNAPLEN_MAX, 0] * 2 + [
        SNAPLEN_MAX]
    assert pins == [id(a.buf), id(b.buf)]


def test_a_chain_longer_than_any_frame_is_filtered_on_its_first_bytes(pool):
    """No frame is longer than the scratch buffer; a chain that were is
    judged on what fits, and the buffer neither grows nor moves."""
    big = MbufPool(64)
    data = bytes(FRAMES["ack"]) + b"z" * 70000
    m = big.from_bytes(data)
    assert m.next is not None and m.chain_len() == len(data)
    prog = BpfProgram("greater 1000")
    assert prog.match(m, len(data)) == SNAPLEN_MAX
    assert len(prog._scratch) == BPF_MAXFRAME


def test_the_longest_frame_in_a_chain_is_filtered_to_its_last_byte():
    """A filter that reads the last byte of a frame of BPF_MAXFRAME bytes in
    a chain sees it: the chain is gathered whole."""
    big = MbufPool(64)
    data = bytes(FRAMES["ack"]) + b"z" * (BPF_MAXFRAME - len(FRAMES["ack"]) - 1) + b"\x5a"
    m = big.from_bytes(data)
    assert m.next is not None and m.chain_len() == BPF_MAXFRAME
    assert BpfProgram(f"ether[{BPF_MAXFRAME - 1}] = 0x5a").match(m, len(data)) == SNAPLEN_MAX
    assert BpfProgram(f"ether[{BPF_MAXFRAME - 1}] = 0x5b").match(m, len(data)) == 0


def test_a_program_says_its_length_and_keeps_at_most_its_snaplen(pool):
    prog = BpfProgram("ip", 1)                      # the shortest snap length there is
    assert prog.match(mbuf(pool, FRAMES["ping"]), len(FRAMES["ping"])) == 1
    assert len(prog.insns) > 0


def test_seen_counts_every_burst_and_a_lone_mbuf_is_never_walked(pool, monkeypatch):
    """`seen` adds up over bursts; the length of a frame in one mbuf is
    its length, without walking a chain."""
    from iopkt.kern.mbuf import Mbuf
    walks = []
    real = Mbuf.chain_len
    monkeypatch.setattr(Mbuf, "chain_len", lambda m: walks.append(m) or real(m))
    d = desc(program=BpfProgram("icmp"))
    for _ in range(3):
        d.catch([mbuf(pool, FRAMES["ping"]), mbuf(pool, FRAMES["syn"])], BPF_D_IN, 1.0)
    assert (d.seen, d.captured, walks) == (6, 3, [])
    d.finish("client")
    *frames, (_, end, stats, wirelen) = parse_records(d.buf)[0]
    assert len(frames) == 3 and (end, wirelen, stats["seen"]) == (BPF_END, 0, 6)


def test_without_libpcap_a_filter_says_what_to_install(monkeypatch):
    """It tries the names distributions give libpcap, in order; when none
    loads, a filter is refused with one line saying what to install."""
    import ctypes

    from iopkt.net import bpf_filter
    tried = []

    def nothing(name, *a, **kw):
        tried.append(name)
        raise OSError(f"{name}: cannot open shared object file")
    monkeypatch.setattr(bpf_filter, "_lib", None)
    monkeypatch.setattr(ctypes, "CDLL", nothing)
    with pytest.raises(FilterError) as e:
        BpfProgram("icmp")
    assert str(e.value) == ("a capture filter needs libpcap (Debian: apt install libpcap0.8, "
                            "which tcpdump brings)")
    assert tried == ["libpcap.so.0.8", "libpcap.so.1"]
    assert bpf_filter._lib is None


def test_the_second_name_is_used_when_the_first_is_missing(monkeypatch):
    import ctypes

    from iopkt.net import bpf_filter
    real, tried = ctypes.CDLL, []

    def first_missing(name, *a, **kw):
        tried.append(name)
        if name == "libpcap.so.0.8":
            raise OSError("missing")
        return real("libpcap.so.0.8")       # this machine's, under the other name
    monkeypatch.setattr(bpf_filter, "_lib", None)
    monkeypatch.setattr(ctypes, "CDLL", first_missing)
    assert len(BpfProgram("icmp").insns) > 0 and tried == ["libpcap.so.0.8", "libpcap.so.1"]
