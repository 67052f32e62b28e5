"""iopkt.ifnet: the send queue (if_snd) and the default if_transmit, the
discard counters, capabilities, and the rest of an interface's plumbing.

if_snd is checked by hypothesis's stateful testing against a plain model
(a deque and the counters): bursts through if_transmit against a queue of
a few packets' room, the driver dequeuing and putting back what it could
not send (IF_PREPEND), purges. Bugs here show only at the bound or after a
put-back: a queue that takes one more than its limit, a dequeue counter a
put-back does not undo.
"""

import ipaddress
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from iopkt.kern.mbuf import (
    M_CSUM_IPv4,
    M_CSUM_TCPv4,
    M_CSUM_TCPv6,
    M_CSUM_TSOv4,
    M_CSUM_TSOv6,
    M_CSUM_UDPv4,
    M_CSUM_UDPv6,
)
from iopkt.net.ifnet import (
    IFCAP_CSUM_L4_RX,
    IFF_BROADCAST,
    IFF_MULTICAST,
    IFF_OACTIVE,
    IFF_PROMISC,
    IFF_RUNNING,
    IFF_SIMPLEX,
    IFF_UP,
    IN_DISCARD_REASONS,
    LINK_STATE_UNKNOWN,
    OUT_DISCARD_REASONS,
    SIOCSIFCAP,
    IFCAP_CSUM_IPv4_Rx,
    IFCAP_CSUM_IPv4_Tx,
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
    IfQueue,
    InIfaddr,
    caps_str,
    flags_str,
    if_transmit,
    mount_capenable,
    parse_capwords,
    rx_csum_sw,
)


class Pkt:
    """All IfQueue touches of an mbuf: its queue link."""

    __slots__ = ("nextpkt", "tag")

    def __init__(self, tag):
        self.tag = tag
        self.nextpkt = "stale"          # enqueue and prepend must overwrite it

    def __repr__(self):
        return f"Pkt({self.tag})"


class FakePool:
    def __init__(self):
        self.freed = []

    def freem(self, m):
        assert m is not None
        self.freed.append(m)


class FakeStack:
    def __init__(self):
        self.pool = FakePool()


def bare_if(maxlen=None):
    """An Ifnet on a fake stack whose pool records what it frees, and whose
    if_start records the queue length each time it is called."""
    ifp = Ifnet("fk", 0, "fake")
    ifp.stack = FakeStack()
    if maxlen is not None:
        ifp.if_snd.maxlen = maxlen
    ifp.starts = []
    ifp.if_start = lambda ifp: ifp.starts.append(ifp.if_snd.len)
    return ifp


def chain_of(q) -> list:
    """The packets linked from q.head, checking tail and the last link."""
    out = []
    m = q.head
    while m is not None:
        out.append(m)
        assert len(out) <= q.len + 1, "a loop in the queue"
        m = m.nextpkt
    assert q.tail is (out[-1] if out else None)
    return out


# -- if_snd against a model -------------------------------------------------------------

class SendQueue(RuleBasedStateMachine):
    """An interface's if_snd, fed by bursts through the default if_transmit
    (which drops at the bound) and by enqueue directly (IfQueue itself
    never refuses), drained by a driver that dequeues, sometimes puts a
    packet back, and by purges. Model: the queue as a deque, the counters
    as plain integers."""

    def __init__(self):
        super().__init__()
        self.tag = 0

    @initialize(maxlen=st.integers(0, 5))
    def start(self, maxlen):
        self.ifp = bare_if(maxlen)
        self.q = self.ifp.if_snd
        self.model = deque()
        self.out = []                   # dequeued, held by the "driver"
        self.freed = []
        self.starts = []
        self.enqueued = self.dequeued = self.drops = self.hiwat = 0
        self.oerrors = 0
        self.discards = dict.fromkeys(OUT_DISCARD_REASONS, 0)

    def _new(self, n):
        pkts = []
        for _ in range(n):
            self.tag += 1
            pkts.append(Pkt(self.tag))
        return pkts

    def _model_enqueue(self, m):
        self.model.append(m)
        self.enqueued += 1
        self.hiwat = max(self.hiwat, len(self.model))

    @rule(n=st.integers(0, 7), busy=st.booleans())
    def transmit(self, n, busy):
        pkts = self._new(n)
        self.ifp.flags = (self.ifp.flags | IFF_OACTIVE) if busy else (self.ifp.flags & ~IFF_OACTIVE)
        if_transmit(self.ifp, list(pkts))
        for m in pkts:
            if len(self.model) >= self.q.maxlen:
                self.drops += 1
                self.discards["qfull"] += 1
                self.freed.append(m)
            else:
                self._model_enqueue(m)
        if not busy:
            self.starts.append(len(self.model))

    @rule(n=st.integers(1, 3))
    def enqueue(self, n):
        for m in self._new(n):
            self.q.enqueue(m)
            self._model_enqueue(m)

    @rule()
    def dequeue(self):
        m = self.q.dequeue()
        if not self.model:
            assert m is None
            return
        assert m is self.model.popleft()
        assert m.nextpkt is None
        self.dequeued += 1
        self.out.append(m)

    @precondition(lambda self: self.out)
    @rule(data=st.data())
    def prepend(self, data):
        m = self.out.pop(data.draw(st.integers(0, len(self.out) - 1)))
        m.nextpkt = "stale"
        self.q.prepend(m)
        self.model.appendleft(m)
        self.dequeued -= 1

    @rule()
    def purge(self):
        self.ifp.if_purge("down")
        self.dequeued += len(self.model)
        self.discards["down"] += len(self.model)
        self.oerrors += len(self.model)
        self.freed.extend(self.model)
        self.model.clear()

    @invariant()
    def matches_the_model(self):
        q = self.q
        assert chain_of(q) == list(self.model)
        assert q.stats() == {"len": len(self.model), "maxlen": q.maxlen,
                             "enqueued": self.enqueued, "dequeued": self.dequeued,
                             "drops": self.drops, "hiwat": self.hiwat}
        assert self.ifp.stack.pool.freed == self.freed
        assert self.ifp.starts == self.starts
        assert self.ifp.out_discards == self.discards
        assert self.ifp.oerrors == self.oerrors
        assert self.ifp.counters()["oqdrops"] == self.drops


SendQueue.TestCase.settings = settings(max_examples=60, stateful_step_count=20)
test_send_queue_against_a_model = SendQueue.TestCase


# -- IfQueue: the cases one at a time ---------------------------------------------------

def test_a_new_queue_is_empty_with_room_for_256():
    q = IfQueue()
    assert (q.head, q.tail) == (None, None)
    assert q.stats() == {"len": 0, "maxlen": 256, "enqueued": 0, "dequeued": 0,
                         "drops": 0, "hiwat": 0}
    assert q.dequeue() is None
    assert q.stats()["dequeued"] == 0
    assert IfQueue(3).maxlen == 3


def test_prepend_on_an_empty_queue_is_head_and_tail():
    q = IfQueue()
    a = Pkt("a")
    q.enqueue(a)
    assert q.dequeue() is a and (q.head, q.tail) == (None, None)
    q.prepend(a)
    assert (q.head, q.tail, a.nextpkt) == (a, a, None)
    b = Pkt("b")
    q.enqueue(b)
    assert chain_of(q) == [a, b]
    assert q.stats() == {"len": 2, "maxlen": 256, "enqueued": 2, "dequeued": 0,
                         "drops": 0, "hiwat": 2}


def test_prepend_goes_before_what_is_queued_and_undoes_the_dequeue():
    q = IfQueue()
    a, b, c = Pkt("a"), Pkt("b"), Pkt("c")
    for m in (a, b, c):
        q.enqueue(m)
    assert q.dequeue() is a and q.dequeue() is b
    q.prepend(b)
    assert chain_of(q) == [b, c] and q.tail is c
    assert (q.len, q.enqueued, q.dequeued, q.hiwat) == (2, 3, 1, 3)


def test_the_high_water_mark_stays_at_the_longest_the_queue_was():
    q = IfQueue()
    for i in range(4):
        q.enqueue(Pkt(i))
    for _ in range(3):
        q.dequeue()
    q.enqueue(Pkt(9))
    assert (q.len, q.hiwat) == (2, 4)


# -- if_transmit at the bound ---------------------------------------------------------

@pytest.mark.parametrize("queued, burst, taken", [
    (4, 1, 1),          # one short of the limit: the one fits
    (4, 2, 1),          # one fits, the next finds the queue full
    (5, 1, 0),          # at the limit
    (5, 3, 0),
    (0, 7, 5),          # a burst larger than the queue
])
def test_if_transmit_takes_up_to_maxlen_and_drops_the_rest_as_qfull(queued, burst, taken):
    ifp = bare_if(maxlen=5)
    old = [Pkt(f"old{i}") for i in range(queued)]
    for m in old:
        ifp.if_snd.enqueue(m)
    new = [Pkt(i) for i in range(burst)]
    if_transmit(ifp, new)
    q = ifp.if_snd
    assert chain_of(q) == old + new[:taken]
    assert ifp.stack.pool.freed == new[taken:]
    dropped = burst - taken
    assert (q.len, q.enqueued, q.drops, q.hiwat) == (queued + taken, queued + taken,
                                                     dropped, queued + taken)
    assert ifp.out_discards == dict.fromkeys(OUT_DISCARD_REASONS, 0) | {"qfull": dropped}
    assert (ifp.oerrors, ifp.counters()["oqdrops"]) == (0, dropped)
    assert ifp.starts == [queued + taken]       # the driver is kicked once per burst


def test_if_transmit_to_a_busy_transmitter_only_queues():
    ifp = bare_if(maxlen=2)
    ifp.flags |= IFF_OACTIVE
    pkts = [Pkt(i) for i in range(3)]
    if_transmit(ifp, pkts)
    assert ifp.starts == []
    assert chain_of(ifp.if_snd) == pkts[:2] and ifp.stack.pool.freed == pkts[2:]
    ifp.flags &= ~IFF_OACTIVE
    if_transmit(ifp, [])                        # an empty burst still kicks it
    assert ifp.starts == [2]


def test_if_transmit_reaches_a_real_driver_start_which_sends_in_order(stack):
    """The default hook with a driver whose start dequeues: frames reach
    the driver in order, nothing stays queued or out of the pool."""
    ifp = Ifnet("fk", 0, "fake")
    ifp.stack = stack
    ifp.if_snd.maxlen = 2
    sent = []

    def start(ifp):
        while (m := ifp.if_snd.dequeue()) is not None:
            sent.append(m.tobytes())
            stack.pool.freem(m)

    ifp.if_start = start
    if_transmit(ifp, [stack.pool.from_bytes(bytes([i]) * 20) for i in range(3)])
    # start runs after the whole burst is queued: the third found it full
    assert sent == [bytes([0]) * 20, bytes([1]) * 20]
    assert ifp.if_snd.stats() == {"len": 0, "maxlen": 2, "enqueued": 2, "dequeued": 2,
                                  "drops": 1, "hiwat": 2}
    assert stack.pool.in_use == 0


# -- discards --------------------------------------------------------------------------

@pytest.mark.parametrize("reason", IN_DISCARD_REASONS)
def test_input_discard_counts_the_reason_and_one_interface_counter(stack, reason):
    ifp = Ifnet("fk", 0, "fake")
    ifp.stack = stack
    ifp.input_discard(stack.pool.from_bytes(b"x" * 20), reason)
    ifp.input_discard(None, reason)             # nothing to free: counted all the same
    assert ifp.in_discards == dict.fromkeys(IN_DISCARD_REASONS, 0) | {reason: 2}
    want = {"noproto": 0, "iqdrops": 0, "ierrors": 0}
    if reason == "unknown_ethertype":
        want["noproto"] = 2
    elif reason in ("nobufs", "qfull"):
        want["iqdrops"] = 2
    else:
        want["ierrors"] = 2
    assert {k: ifp.counters()[k] for k in want} == want
    assert stack.pool.in_use == 0


@pytest.mark.parametrize("reason", OUT_DISCARD_REASONS)
def test_output_discard_counts_the_reason_and_one_interface_counter(stack, reason):
    ifp = Ifnet("fk", 0, "fake")
    ifp.stack = stack
    ifp.output_discard(stack.pool.from_bytes(b"x" * 20), reason)
    ifp.output_discard(None, reason)
    assert ifp.out_discards == dict.fromkeys(OUT_DISCARD_REASONS, 0) | {reason: 2}
    qfull = reason == "qfull"
    assert (ifp.if_snd.drops, ifp.oerrors) == ((2, 0) if qfull else (0, 2))
    assert stack.pool.in_use == 0


def test_the_default_input_hook_discards_each_frame_as_down(stack):
    ifp = Ifnet("fk", 0, "fake")
    ifp.stack = stack
    ifp.if_input(ifp, [stack.pool.from_bytes(b"y" * 30) for _ in range(3)])
    assert ifp.in_discards["down"] == 3 and ifp.ierrors == 3
    assert stack.pool.in_use == 0


def test_purge_discards_everything_queued_by_the_reason_given():
    ifp = bare_if()
    pkts = [Pkt(i) for i in range(3)]
    for m in pkts:
        ifp.if_snd.enqueue(m)
    ifp.if_purge("link_lost")
    assert ifp.stack.pool.freed == pkts
    assert (ifp.out_discards["link_lost"], ifp.oerrors) == (3, 3)
    assert ifp.if_snd.stats() == {"len": 0, "maxlen": 256, "enqueued": 3, "dequeued": 3,
                                  "drops": 0, "hiwat": 3}
    ifp.if_purge("down")                        # nothing left
    assert ifp.out_discards["down"] == 0 and len(ifp.stack.pool.freed) == 3


# -- capabilities ----------------------------------------------------------------------

# NetBSD's IFCAP bits as ifconfig names them (net/if.h, IFCAPBITS), the
# model the table in ifnet.py is checked against.
NETBSD_CAPS = [(0x80, "TSO4"), (0x100, "IP4CSUM_Rx"), (0x200, "IP4CSUM_Tx"),
               (0x400, "TCP4CSUM_Rx"), (0x800, "TCP4CSUM_Tx"), (0x1000, "UDP4CSUM_Rx"),
               (0x2000, "UDP4CSUM_Tx"), (0x4000, "TCP6CSUM_Rx"), (0x8000, "TCP6CSUM_Tx"),
               (0x10000, "UDP6CSUM_Rx"), (0x20000, "UDP6CSUM_Tx"), (0x40000, "TSO6")]
ALL = sum(b for b, _ in NETBSD_CAPS)
# ifconfig's words and the bits each sets ("-word" clears them).
WORDS = {"tso4": 0x80, "tso6": 0x40000, "ip4csum": 0x300, "ip4csum-rx": 0x100,
         "ip4csum-tx": 0x200, "tcp4csum": 0xC00, "tcp4csum-rx": 0x400, "tcp4csum-tx": 0x800,
         "udp4csum": 0x3000, "udp4csum-rx": 0x1000, "udp4csum-tx": 0x2000,
         "tcp6csum": 0xC000, "tcp6csum-rx": 0x4000, "tcp6csum-tx": 0x8000,
         "udp6csum": 0x30000, "udp6csum-rx": 0x10000, "udp6csum-tx": 0x20000}
TX_CSUM = {0x80: M_CSUM_TSOv4, 0x40000: M_CSUM_TSOv6, 0x200: M_CSUM_IPv4,
           0x800: M_CSUM_TCPv4, 0x2000: M_CSUM_UDPv4, 0x8000: M_CSUM_TCPv6,
           0x20000: M_CSUM_UDPv6}
RX_CSUM = {0x400: M_CSUM_TCPv4, 0x1000: M_CSUM_UDPv4, 0x4000: M_CSUM_TCPv6,
           0x10000: M_CSUM_UDPv6}


def test_capability_names_are_netbsds():
    assert caps_str(0) == "0<>"
    assert caps_str(IFCAP_TSOv4 | IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv4_Tx
                    | IFCAP_CSUM_UDPv4_Rx | IFCAP_CSUM_UDPv4_Tx) == \
        "3c80<TSO4,TCP4CSUM_Rx,TCP4CSUM_Tx,UDP4CSUM_Rx,UDP4CSUM_Tx>"
    assert caps_str(IFCAP_TSOv6 | IFCAP_CSUM_IPv4_Rx | IFCAP_CSUM_IPv4_Tx) == \
        "40300<IP4CSUM_Rx,IP4CSUM_Tx,TSO6>"
    assert IFCAP_CSUM_L4_RX == (IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_UDPv4_Rx
                                | IFCAP_CSUM_TCPv6_Rx | IFCAP_CSUM_UDPv6_Rx) == 0x15400
    assert (IFCAP_CSUM_TCPv6_Tx, IFCAP_CSUM_UDPv6_Rx, IFCAP_CSUM_UDPv6_Tx) == (
        0x8000, 0x10000, 0x20000)


@given(st.integers(0, ALL))
def test_caps_str_is_hex_and_each_set_bit_by_name_in_bit_order(caps):
    assert caps_str(caps) == f"{caps:x}<" + ",".join(
        n for b, n in NETBSD_CAPS if caps & b) + ">"


def test_flags_str_names_each_flag_set_in_bit_order():
    assert flags_str(0) == ""
    assert flags_str(IFF_UP | IFF_BROADCAST | IFF_RUNNING | IFF_SIMPLEX | IFF_MULTICAST) == \
        "UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST"
    assert flags_str(0xFFFF) == ("UP,BROADCAST,DEBUG,LOOPBACK,POINTOPOINT,RUNNING,NOARP,"
                                 "PROMISC,ALLMULTI,OACTIVE,SIMPLEX,MULTICAST")
    assert flags_str(IFF_PROMISC | 0x20) == "PROMISC"       # 0x20 has no name


@given(st.integers(0, ALL))
def test_rx_csum_sw_is_the_partial_checksums_whose_rx_capability_is_off(capenable):
    assert rx_csum_sw(capenable) == sum(f for cap, f in RX_CSUM.items() if not capenable & cap)


def test_rx_csum_sw_at_the_ends():
    assert rx_csum_sw(0) == M_CSUM_TCPv4 | M_CSUM_UDPv4 | M_CSUM_TCPv6 | M_CSUM_UDPv6
    assert rx_csum_sw(IFCAP_CSUM_L4_RX) == 0
    assert rx_csum_sw(ALL & ~IFCAP_CSUM_TCPv6_Rx) == M_CSUM_TCPv6


words = st.lists(st.sampled_from(sorted(WORDS)).flatmap(
    lambda w: st.sampled_from([w, "-" + w])), max_size=8)


@given(words, st.integers(0, ALL))
def test_parse_capwords_applies_each_word_in_order(ws, start):
    want = start
    for w in ws:
        if w.startswith("-"):
            want &= ~WORDS[w[1:]]
        else:
            want |= WORDS[w]
    assert parse_capwords(ws, start) == want


def test_parse_capwords_examples():
    assert parse_capwords([], 0x1234) == 0x1234
    assert parse_capwords(["tcp4csum", "tso4"], 0) == 0xC80
    assert parse_capwords(["-tcp6csum-rx"], ALL) == ALL & ~0x4000
    assert parse_capwords(["tso6", "-tso6"], 0) == 0
    assert parse_capwords(["-tso6", "tso6"], 0) == 0x40000


@pytest.mark.parametrize("word", ["tso", "-tcp4", "TSO4", "Xtso4", "X-tso4", ""],
                         ids=["tso", "-tcp4", "TSO4", "Xtso4", "X-tso4", "empty"])
def test_parse_capwords_names_the_word_it_does_not_know(word):
    with pytest.raises(ValueError) as ei:
        parse_capwords(["tso4", word], 0)
    assert str(ei.value) == (
        f"unknown capability '{word}' (known: tso4, tso6, ip4csum, ip4csum-rx, "
        "ip4csum-tx, tcp4csum, tcp4csum-rx, tcp4csum-tx, udp4csum, udp4csum-rx, "
        "udp4csum-tx, tcp6csum, tcp6csum-rx, tcp6csum-tx, udp6csum, udp6csum-rx, "
        "udp6csum-tx, each also as -word)")


MOUNT_WORDS = ("tso4", "tso6", "tcp4csum", "udp4csum", "tcp6csum", "udp6csum")


@given(st.integers(0, ALL),
       st.dictionaries(st.sampled_from(MOUNT_WORDS + ("ip4csum", "mtu")),
                       st.sampled_from([True, False, 0, 1])))
def test_mount_capenable_takes_off_each_word_set_false_and_tso_without_its_tcp_checksum(
        caps, opts):
    want = caps
    for w in MOUNT_WORDS:
        if w in opts and not opts[w]:
            want &= ~WORDS[w]
    if want & 0xC00 != 0xC00:
        want &= ~0x80
    if want & 0xC000 != 0xC000:
        want &= ~0x40000
    assert mount_capenable(caps, opts) == want


def test_mount_capenable_examples():
    assert mount_capenable(ALL, {}) == ALL
    assert mount_capenable(ALL, {"tso4": False}) == ALL & ~0x80
    # ip4csum is not a mount word: it stays whatever the option says
    assert mount_capenable(ALL, {"ip4csum": False}) == ALL
    assert mount_capenable(ALL, {"tcp6csum": 0}) == ALL & ~(0xC000 | 0x40000)
    # TSO goes with only half its TCP checksum
    assert mount_capenable(ALL & ~0x400, {}) == ALL & ~(0x400 | 0x80)
    assert mount_capenable(ALL & ~0x8000, {"tso4": True}) == ALL & ~(0x8000 | 0x40000)


class Driver:
    def __init__(self, fail=None):
        self.calls = []
        self.fail = fail

    def ioctl(self, ifp, cmd, data):
        self.calls.append((ifp.name, cmd, data, ifp.capenable))
        if self.fail:
            raise OSError(self.fail)


def cap_if(caps=ALL):
    ifp = Ifnet("fk", 0, "fake")
    ifp.capabilities = caps
    drv = Driver()
    ifp.set_softc(drv)
    return ifp, drv


cap_sets = st.sets(st.sampled_from([b for b, _ in NETBSD_CAPS])).map(sum)


@given(cap_sets)
def test_set_capenable_tells_the_driver_then_sets_the_tx_checksum_flags(capenable):
    ifp, drv = cap_if()
    ok = all(not capenable & tso or capenable & tcp == tcp
             for tso, tcp in ((0x80, 0xC00), (0x40000, 0xC000)))
    if not ok:
        with pytest.raises(ValueError):
            ifp.set_capenable(capenable)
        assert (drv.calls, ifp.capenable, ifp.if_csum_flags_tx) == ([], 0, 0)
        return
    ifp.set_capenable(capenable)
    assert drv.calls == [("fk0", SIOCSIFCAP, capenable, 0)]   # before the stack follows
    assert ifp.capenable == capenable
    assert ifp.if_csum_flags_tx == sum(f for cap, f in TX_CSUM.items() if capenable & cap)


def test_set_capenable_every_tx_capability_and_back_to_none():
    ifp, drv = cap_if()
    ifp.set_capenable(ALL)
    assert ifp.if_csum_flags_tx == (M_CSUM_TSOv4 | M_CSUM_TSOv6 | M_CSUM_IPv4 | M_CSUM_TCPv4
                                    | M_CSUM_UDPv4 | M_CSUM_TCPv6 | M_CSUM_UDPv6)
    ifp.set_capenable(IFCAP_CSUM_L4_RX | IFCAP_CSUM_IPv4_Rx)   # receive only
    assert ifp.if_csum_flags_tx == 0
    ifp.set_capenable(0)
    assert (ifp.capenable, ifp.if_csum_flags_tx) == (0, 0)
    assert [c[2] for c in drv.calls] == [ALL, IFCAP_CSUM_L4_RX | IFCAP_CSUM_IPv4_Rx, 0]


def test_set_capenable_refuses_what_the_driver_cannot_do():
    ifp, drv = cap_if(IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv4_Tx)
    with pytest.raises(ValueError) as ei:
        ifp.set_capenable(IFCAP_CSUM_TCPv4_Tx | IFCAP_TSOv4 | IFCAP_CSUM_UDPv6_Tx)
    assert str(ei.value) == ("fk0 cannot do 20080<TSO4,UDP6CSUM_Tx>; "
                             "it can do c00<TCP4CSUM_Rx,TCP4CSUM_Tx>")
    ifp.capabilities = 0
    with pytest.raises(ValueError) as ei:
        ifp.set_capenable(IFCAP_CSUM_IPv4_Tx)
    assert str(ei.value) == "fk0 cannot do 200<IP4CSUM_Tx>; it can do none"
    assert drv.calls == [] and ifp.capenable == 0


@pytest.mark.parametrize("capenable, word, csum", [
    (IFCAP_TSOv4, "tso4", "tcp4csum"),
    (IFCAP_TSOv4 | IFCAP_CSUM_TCPv4_Tx, "tso4", "tcp4csum"),
    (IFCAP_TSOv4 | IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv6_Rx | IFCAP_CSUM_TCPv6_Tx,
     "tso4", "tcp4csum"),
    (IFCAP_TSOv6 | IFCAP_CSUM_TCPv6_Rx, "tso6", "tcp6csum"),
    (IFCAP_TSOv6 | IFCAP_CSUM_TCPv6_Tx | IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv4_Tx,
     "tso6", "tcp6csum"),
])
def test_set_capenable_refuses_tso_without_its_tcp_checksum_both_ways(capenable, word, csum):
    ifp, drv = cap_if()
    with pytest.raises(ValueError) as ei:
        ifp.set_capenable(capenable)
    assert str(ei.value) == (f"fk0: {word} needs {csum} (rx and tx); "
                             f"turn on {csum}, or turn off {word} as well")
    assert drv.calls == [] and ifp.capenable == 0


def test_set_capenable_leaves_everything_as_it_was_when_the_driver_refuses():
    ifp, drv = cap_if()
    ifp.set_capenable(IFCAP_CSUM_UDPv4_Tx)
    drv.fail = "device says no"
    with pytest.raises(OSError, match="device says no"):
        ifp.set_capenable(IFCAP_CSUM_TCPv4_Tx)
    assert (ifp.capenable, ifp.if_csum_flags_tx) == (IFCAP_CSUM_UDPv4_Tx, M_CSUM_UDPv4)


def test_without_a_driver_ioctl_setting_capabilities_fails():
    ifp = Ifnet("fk", 0, "fake")
    ifp.capabilities = IFCAP_CSUM_UDPv4_Tx
    with pytest.raises(OSError) as ei:
        ifp.set_capenable(IFCAP_CSUM_UDPv4_Tx)
    assert str(ei.value) == "fk0: ioctl SIOCSIFCAP not supported"
    assert ifp.capenable == 0


# -- addresses -------------------------------------------------------------------------

@pytest.mark.parametrize("plen", range(33))
def test_in_ifaddr_mask_net_and_broadcast_against_ipaddress(plen):
    addr = 0xC612_8A55                                  # 198.18.138.85
    ia = InIfaddr(addr, plen)
    n = ipaddress.IPv4Network((addr, plen), strict=False)
    assert (ia.addr, ia.plen) == (addr, plen)
    assert ia.mask == int(n.netmask)
    assert ia.net == int(n.network_address)
    assert ia.broadcast == int(n.broadcast_address)


# -- the interface itself --------------------------------------------------------------

def test_a_new_interface():
    ifp = Ifnet("tap", 3, "devnp-tap")
    assert (ifp.name, ifp.unit, ifp.dname, ifp.description, ifp.if_devkey) == (
        "tap3", 3, "devnp-tap", "", "")
    assert (ifp.lladdr, ifp.mtu, ifp.baudrate, ifp.link_state) == (
        bytes(6), 1500, 0, LINK_STATE_UNKNOWN)
    assert ifp.flags == IFF_BROADCAST | IFF_SIMPLEX | IFF_MULTICAST
    assert (ifp.capabilities, ifp.capenable, ifp.if_csum_flags_tx) == (0, 0, 0)
    assert (ifp.stack, ifp.softc, ifp.if_bpf) == (None, None, None)
    assert ifp.if_snd.stats() == {"len": 0, "maxlen": 256, "enqueued": 0, "dequeued": 0,
                                  "drops": 0, "hiwat": 0}
    assert (ifp.in_addrs, ifp.llinfo, ifp.in6_addrs, ifp.in6_groups, ifp.nd6info) == (
        [], {}, [], set(), {})
    assert ifp.if_transmit is if_transmit
    assert (ifp.if_output, ifp.ip_input, ifp.ip6_input, ifp.if_output6, ifp.arp_input) == (
        None, None, None, None, None)
    # the driver hooks do nothing until a driver sets them
    for hook in (ifp.if_init, ifp.if_start, ifp.if_stop, ifp.if_detach):
        assert hook(ifp) is None
        assert hook(ifp, 1, x=2) is None
    assert ifp.if_extra_info(ifp) == {}
    with pytest.raises(OSError) as ei:
        ifp.if_ioctl(ifp, "SIOCSIFMTU", 9000)
    assert str(ei.value) == "tap3: ioctl SIOCSIFMTU not supported"
    assert ifp.up is False
    ifp.flags |= IFF_UP
    assert ifp.up is True
    assert repr(ifp) == "<Ifnet tap3 devnp-tap UP,BROADCAST,SIMPLEX,MULTICAST>"
    # its own containers, not shared with another interface
    other = Ifnet("tap", 4, "devnp-tap")
    assert other.if_snd is not ifp.if_snd and other.in_addrs is not ifp.in_addrs
    assert other.llinfo is not ifp.llinfo and other.in6_groups is not ifp.in6_groups


def test_mac_str_is_lower_case_hex_pairs():
    ifp = Ifnet("fk", 0, "fake")
    assert ifp.mac_str() == "00:00:00:00:00:00"
    ifp.lladdr = bytes([0x02, 0x0A, 0xFF, 0x00, 0xB1, 0x7])
    assert ifp.mac_str() == "02:0a:ff:00:b1:07"


ZERO_COUNTERS = {
    "ipackets": 0, "ibytes": 0, "imcasts": 0, "ierrors": 0, "iqdrops": 0, "noproto": 0,
    "opackets": 0, "obytes": 0, "omcasts": 0, "oerrors": 0, "oqdrops": 0, "collisions": 0,
    "in_discards": dict.fromkeys(IN_DISCARD_REASONS, 0),
    "out_discards": dict.fromkeys(OUT_DISCARD_REASONS, 0),
    "sw_tso": 0, "sw_tso_segs": 0, "sw_csum": 0,
    "families": {"inet": {"ipackets": 0, "opackets": 0},
                 "inet6": {"ipackets": 0, "opackets": 0},
                 "arp": {"ipackets": 0, "opackets": 0}},
    "bpf_captured": 0, "bpf_dropped": 0,
}
SCALARS = ("ipackets", "ibytes", "imcasts", "opackets", "obytes", "omcasts", "ierrors",
           "oerrors", "iqdrops", "noproto", "collisions", "ipackets_inet", "ipackets_inet6",
           "ipackets_arp", "opackets_inet", "opackets_inet6", "opackets_arp", "sw_tso",
           "sw_tso_segs", "sw_csum", "bpf_captured", "bpf_dropped")


def test_counters_report_each_counter_under_its_own_name_and_reset_to_zero():
    ifp = Ifnet("fk", 0, "fake")
    assert ifp.counters() == ZERO_COUNTERS
    for i, name in enumerate(SCALARS, 1):           # every counter a different value
        setattr(ifp, name, i)
    ifp.if_snd.drops = 99
    ifp.in_discards["runt"] = 7
    ifp.out_discards["txerror"] = 8
    got = ifp.counters()
    v = {name: i for i, name in enumerate(SCALARS, 1)}
    assert got == {
        "ipackets": v["ipackets"], "ibytes": v["ibytes"], "imcasts": v["imcasts"],
        "ierrors": v["ierrors"], "iqdrops": v["iqdrops"], "noproto": v["noproto"],
        "opackets": v["opackets"], "obytes": v["obytes"], "omcasts": v["omcasts"],
        "oerrors": v["oerrors"], "oqdrops": 99, "collisions": v["collisions"],
        "in_discards": ZERO_COUNTERS["in_discards"] | {"runt": 7},
        "out_discards": ZERO_COUNTERS["out_discards"] | {"txerror": 8},
        "sw_tso": v["sw_tso"], "sw_tso_segs": v["sw_tso_segs"], "sw_csum": v["sw_csum"],
        "families": {
            "inet": {"ipackets": v["ipackets_inet"], "opackets": v["opackets_inet"]},
            "inet6": {"ipackets": v["ipackets_inet6"], "opackets": v["opackets_inet6"]},
            "arp": {"ipackets": v["ipackets_arp"], "opackets": v["opackets_arp"]}},
        "bpf_captured": v["bpf_captured"], "bpf_dropped": v["bpf_dropped"],
    }
    # a copy: what the caller does with it changes nothing here
    got["in_discards"]["runt"] = 0
    assert ifp.in_discards["runt"] == 7
    ifp.reset_counters()
    assert ifp.counters() == ZERO_COUNTERS | {"oqdrops": 99}   # the queue keeps its own


def test_set_softc_binds_the_hooks_the_driver_has_and_keeps_the_rest():
    class Softc:
        transmit = None                             # a hook it does not provide

        def start(self, ifp):
            return "start"

        def extra_info(self, ifp):
            return {"ring": 4}

    ifp = Ifnet("fk", 0, "fake")
    init, stop, ioctl, detach = ifp.if_init, ifp.if_stop, ifp.if_ioctl, ifp.if_detach
    sc = Softc()
    ifp.set_softc(sc)
    assert ifp.softc is sc
    assert ifp.if_start(ifp) == "start" and ifp.if_extra_info(ifp) == {"ring": 4}
    assert ifp.if_transmit is if_transmit
    assert (ifp.if_init, ifp.if_stop, ifp.if_ioctl, ifp.if_detach) == (init, stop, ioctl,
                                                                      detach)

    class Full:
        def __getattr__(self, name):
            return lambda *a: name

    ifp.set_softc(Full())
    assert [getattr(ifp, "if_" + h)(ifp) for h in (
        "init", "start", "transmit", "stop", "detach", "ioctl", "extra_info")] == [
        "init", "start", "transmit", "stop", "detach", "ioctl", "extra_info"]
