"""bpf.py's capture descriptor at its edges, with stand-in mbufs: the
bound met exactly, COUNT across bursts, when ready() is called, the
counters on the interface, and the record parser's limits."""

import json

import pytest

from iopkt.net.bpf import (
    BPF_D_IN,
    BPF_D_INOUT,
    BPF_D_OUT,
    BPF_END,
    BPF_MAXFRAME,
    REC,
    BpfDesc,
    bpf_attach,
    bpf_detach,
    parse_records,
)

MIN_BUF = REC.size + BPF_MAXFRAME      # the smallest buffer a capture may have


class M:
    """An mbuf as bpf reads it: next, off, len, view, chain_len()."""

    def __init__(self, data: bytes, nxt=None):
        self.view = memoryview(bytearray(b"..") + data)
        self.off, self.len, self.next = 2, len(data), nxt

    def chain_len(self) -> int:
        m, n = self, 0
        while m is not None:
            n, m = n + m.len, m.next
        return n


class Ifp:
    def __init__(self):
        self.if_bpf = None
        self.bpf_captured = self.bpf_dropped = 0


def attached(**kw):
    ready = []
    d = BpfDesc(ready=lambda: ready.append(1), **kw)
    ifp = Ifp()
    bpf_attach(ifp, d)
    return d, ifp, ready


def test_a_buffer_too_small_for_one_frame_is_refused_naming_its_size():
    with pytest.raises(ValueError, match=f"^bpf buffer of {MIN_BUF - 1} bytes cannot hold "
                       "one frame$"):
        BpfDesc(bufsize=MIN_BUF - 1)
    d = BpfDesc(bufsize=MIN_BUF)
    assert d.ended is False and d.stats() == {"reason": "", "captured": 0, "dropped": 0,
                                              "direction": "both", "count": 0, "pending": 0,
                                              "seen": 0}


@pytest.mark.parametrize("chained", [False, True], ids=["one-mbuf", "a-chain"])
def test_a_frame_that_fills_the_buffer_exactly_is_captured_and_one_more_byte_is_not(chained):
    data = bytes(range(256)) * (BPF_MAXFRAME // 256) + b"x" * (BPF_MAXFRAME % 256)
    frame = M(data[:100], M(data[100:])) if chained else M(data)
    d, ifp, _ = attached(bufsize=MIN_BUF)
    d.catch([frame], BPF_D_IN, 1.0)
    assert (d.captured, d.dropped, len(d.buf)) == (1, 0, MIN_BUF)
    assert parse_records(d.buf)[0] == [(1.0, BPF_D_IN, data, len(data))]
    d.buf.clear()
    big = M(data[:100], M(data[100:] + b"y")) if chained else M(data + b"y")
    d.catch([big], BPF_D_IN, 2.0)
    assert (d.captured, d.dropped, bytes(d.buf)) == (1, 1, b"")
    assert (ifp.bpf_captured, ifp.bpf_dropped) == (1, 1)


def test_a_chain_that_does_not_fit_what_is_left_is_dropped():
    d, ifp, _ = attached(bufsize=MIN_BUF)
    d.catch([M(b"a" * 1000)], BPF_D_IN, 1.0)
    d.catch([M(b"b" * 100, M(b"c" * (BPF_MAXFRAME - 100)))], BPF_D_OUT, 1.0)
    assert (d.captured, d.dropped, ifp.bpf_captured, ifp.bpf_dropped) == (1, 1, 1, 1)


def test_count_holds_across_bursts_and_the_interface_counts_every_burst():
    done = []
    d, ifp, _ = attached(count=3)
    d.done = done.append
    d.catch([M(b"1"), M(b"2")], BPF_D_IN, 1.0)
    d.catch([M(b"3"), M(b"4"), M(b"5")], BPF_D_IN, 2.0)
    assert [r[2] for r in parse_records(d.buf)[0]] == [b"1", b"2", b"3"]
    assert (d.captured, ifp.bpf_captured, done) == (3, 3, ["count"])


def test_ready_is_called_when_the_buffer_stops_being_empty_and_only_then():
    d, _, ready = attached()
    d.catch([M(b"a")], BPF_D_IN, 1.0)
    d.catch([M(b"b")], BPF_D_IN, 1.0)
    d.put(b"more")
    assert ready == [1]
    d.buf.clear()
    d.put(b"")
    assert ready == [1]
    d.put(b"header")
    assert ready == [1, 1]


def test_attach_twice_is_refused_and_detach_of_a_capture_never_attached_is_a_no_op():
    d, ifp, _ = attached()
    with pytest.raises(ValueError, match="^this capture is attached already or has ended$"):
        bpf_attach(ifp, d)
    bpf_detach(BpfDesc())
    bpf_detach(d)
    assert ifp.if_bpf is None and d.ifp is ifp


def test_a_direction_without_a_name_is_shown_as_its_number():
    assert BpfDesc(direction=4).stats()["direction"] == "4"
    assert BpfDesc(direction=BPF_D_INOUT).stats()["direction"] == "both"


def test_the_parser_takes_an_empty_frame_and_refuses_only_what_no_capture_writes():
    empty = REC.pack(5.0, BPF_D_IN, 0, 0)
    assert parse_records(empty) == ([(5.0, BPF_D_IN, b"", 0)], REC.size)
    body = json.dumps({"reason": "count"}).encode()
    trailer = REC.pack(6.0, BPF_END, len(body), 0) + body
    assert parse_records(empty + trailer) == ([(5.0, BPF_D_IN, b"", 0),
                                               (6.0, BPF_END, {"reason": "count"}, 0)],
                                              2 * REC.size + len(body))
    longest = BPF_MAXFRAME + 65536
    assert parse_records(REC.pack(1.0, BPF_D_OUT, longest, longest)) == ([], 0)     # waits for it
    with pytest.raises(ValueError, match=f"length {longest + 1}"):
        parse_records(REC.pack(1.0, BPF_D_OUT, longest + 1, longest + 1))
    with pytest.raises(ValueError, match="direction 3"):
        parse_records(REC.pack(1.0, 3, 0, 0))



@pytest.mark.parametrize("chained", [False, True], ids=["one-mbuf", "a-chain"])
def test_every_frame_that_does_not_fit_is_counted_and_the_smaller_ones_after_it_still_go_in(
        chained):
    def frame(c, n):
        return M(c * 100, M(c * (n - 100))) if chained else M(c * n)
    d, ifp, _ = attached(bufsize=MIN_BUF)
    d.catch([M(b"a" * 1000)], BPF_D_IN, 1.0)
    big = BPF_MAXFRAME - 500
    d.catch([frame(b"b", big), frame(b"c", big), frame(b"d", 200)], BPF_D_IN, 2.0)
    d.catch([frame(b"e", big)], BPF_D_OUT, 3.0)
    assert [r[2][:1] for r in parse_records(d.buf)[0]] == [b"a", b"d"]
    assert (d.captured, d.dropped, ifp.bpf_captured, ifp.bpf_dropped) == (2, 3, 2, 3)


def test_a_record_whose_frame_has_not_all_arrived_waits():
    part = REC.pack(1.0, BPF_D_IN, 10, 10) + b"12345"
    assert parse_records(part) == ([], 0)
    assert parse_records(part + b"67890") == ([(1.0, BPF_D_IN, b"1234567890", 10)],
                                              REC.size + 10)
