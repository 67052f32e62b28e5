"""iopkt.arp: replies, resolution with a hold queue, retries, aging."""

import logging

from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, UDP, IPerror
from scapy.layers.l2 import ARP, Ether

from iopkt.net.ifnet import IFF_NOARP, IFF_RUNNING
from iopkt.net.route import ntoa
from iopkt.netinet.arp import LLE_INCOMPLETE, LLE_REACHABLE

from fakenet import Router, aton, fake_if, inject, ip_of, take
from spy import calls

R = Router


def arp_request(ifp, sender_ip, sender_mac, target_ip):
    return Ether(dst="ff:ff:ff:ff:ff:ff", src=sender_mac) / ARP(
        op=1, hwsrc=sender_mac, psrc=sender_ip, hwdst="00:00:00:00:00:00",
        pdst=target_ip)


def arp_reply_to(ifp, sender_ip, sender_mac):
    return Ether(dst=ifp.mac_str(), src=sender_mac) / ARP(
        op=2, hwsrc=sender_mac, psrc=sender_ip, hwdst=ifp.mac_str(),
        pdst=ntoa(ifp.in_addrs[0].addr))


def udp_to_h1(ident=1, ttl=64, payload=b"data"):
    return IP(src=R.H0, dst=R.H1, id=ident, ttl=ttl) / UDP(sport=1000, dport=2000) / payload


# -- answering -----------------------------------------------------------------

def test_request_for_our_address_gets_reply(router, stack):
    inject(router.if0, arp_request(router.if0, R.H0, R.H0_MAC, R.IP0) / (b"\0" * 18))
    (f,) = take(router.if0)
    assert (f.dst, f.src, f.type) == (R.H0_MAC, R.MAC0, 0x0806)
    a = f[ARP]
    assert (a.hwtype, a.ptype, a.hwlen, a.plen, a.op) == (1, 0x0800, 6, 4, 2)
    assert (a.hwsrc, a.psrc, a.hwdst, a.pdst) == (R.MAC0, R.IP0, R.H0_MAC, R.H0)
    assert len(raw(f)) == 14 + 28           # the padding was not sent back
    # the requester was learnt (RFC 826 merge: we are the target)
    la = router.if0.llinfo[aton(R.H0)]
    assert la.state == LLE_REACHABLE and la.mac == bytes.fromhex("02aa00000002")
    st = stack.arp.stats
    assert (st["received"], st["rxrequests"], st["txreplies"]) == (1, 1, 1)


def test_request_for_other_address_ignored(router, stack):
    inject(router.if0, arp_request(router.if0, R.H0, R.H0_MAC, "10.0.0.77"))
    inject(router.if0, arp_request(router.if0, R.H0, R.H0_MAC, R.IP1))  # other if's
    assert router.if0.sent == []
    assert router.if0.llinfo == {}          # not learnt: not for us
    assert stack.arp.stats["txreplies"] == 0


def test_own_frame_looped_back_ignored(router, stack):
    inject(router.if0, arp_request(router.if0, R.IP0, R.MAC0, R.IP0))
    assert router.if0.sent == [] and stack.arp.stats["rxrequests"] == 0


def test_someone_claiming_our_address(router, stack):
    inject(router.if0, arp_request(router.if0, R.IP0, R.H0_MAC, R.H0))
    assert stack.arp.stats["dupips"] == 1 and router.if0.llinfo == {}


def test_malformed_arp(router, stack):
    inject(router.if0, Ether(dst="ff:ff:ff:ff:ff:ff", type=0x0806) / (b"\0\1" * 5))
    bad = arp_request(router.if0, R.H0, R.H0_MAC, R.IP0)
    bad[ARP].ptype = 0x86DD
    inject(router.if0, bad)
    assert router.if0.in_discards["arp_malformed"] == 2
    assert stack.arp.stats["badlen"] == 1 and stack.arp.stats["badtype"] == 1
    assert router.if0.sent == []


# -- resolving -----------------------------------------------------------------

def test_unresolved_next_hop_one_request_and_packet_held(router, stack):
    router.send0(udp_to_h1(1))
    router.send0(udp_to_h1(2))
    (req,) = take(router.if1)
    assert req.dst == "ff:ff:ff:ff:ff:ff" and req.src == R.MAC1
    a = req[ARP]
    assert (a.op, a.hwsrc, a.psrc, a.hwdst, a.pdst) == (1, R.MAC1, R.IP1, "00:00:00:00:00:00", R.H1)
    la = router.if1.llinfo[aton(R.H1)]
    assert la.state == LLE_INCOMPLETE and len(la.holdq) == 2 and la.asked == 1
    st = stack.arp.stats
    assert (st["txrequests"], st["held"]) == (1, 2)
    assert router.if1.omcasts == 1
    assert stack.pool.in_use == 2           # the two held packets


def test_reply_releases_held_packets(router, stack):
    router.send0(udp_to_h1(1, payload=b"first"))
    router.send0(udp_to_h1(2, payload=b"second"))
    take(router.if1)
    inject(router.if1, arp_reply_to(router.if1, R.H1, R.H1_MAC))
    out = take(router.if1)
    assert [(f.dst, f.src, f.type) for f in out] == [(R.H1_MAC, R.MAC1, 0x0800)] * 2
    assert [ip_of(f).id for f in out] == [1, 2]
    assert [raw(ip_of(f)[UDP].payload) for f in out] == [b"first", b"second"]
    assert [ip_of(f).ttl for f in out] == [63, 63]
    la = router.if1.llinfo[aton(R.H1)]
    assert la.state == LLE_REACHABLE and la.holdq == [] and la.asked == 0
    assert stack.pool.in_use == 0
    # and the next packet goes straight out
    router.send0(udp_to_h1(3))
    (f,) = take(router.if1)
    assert f.dst == R.H1_MAC and ip_of(f).id == 3


def test_hold_queue_bounded(router, stack):
    stack.arp.maxhold = 4
    for i in range(1, 8):
        router.send0(udp_to_h1(i))
    assert len(take(router.if1)) == 1       # still one request
    la = router.if1.llinfo[aton(R.H1)]
    assert len(la.holdq) == 4
    assert stack.arp.stats["holdq_drops"] == 3 and stack.arp.stats["held"] == 7
    assert router.if1.out_discards["arp_holdq_full"] == 3
    assert router.if1.oerrors == 3
    assert stack.pool.in_use == 4
    inject(router.if1, arp_reply_to(router.if1, R.H1, R.H1_MAC))
    assert [ip_of(f).id for f in take(router.if1)] == [4, 5, 6, 7]   # oldest dropped


def test_retries_then_host_unreachable(router, stack, clock):
    router.learn(router.if0, R.H0, R.H0_MAC)       # the way back is known
    sent = [udp_to_h1(i, payload=b"p%d" % i) for i in (1, 2)]
    for p in sent:
        router.send0(p)
    assert len(take(router.if1)) == 1
    maxtries = stack.arp.maxtries
    assert maxtries == 5
    for n in range(2, maxtries + 1):               # retries, once a second
        clock.advance(0.5)
        stack.arp.timer()
        assert take(router.if1) == []              # not yet: retry is 1 s
        clock.advance(0.5)
        stack.arp.timer()
        (req,) = take(router.if1)
        assert req[ARP].op == 1 and req[ARP].pdst == R.H1
        assert stack.arp.stats["txrequests"] == n
        assert router.if0.sent == []
    clock.advance(1.0)
    stack.arp.timer()                               # give up
    assert take(router.if1) == []
    assert aton(R.H1) not in router.if1.llinfo
    assert stack.arp.stats["timeouts"] == 1
    assert router.if1.out_discards["arp_unresolved"] == 2
    assert router.if1.oerrors == 2
    errs = take(router.if0)
    assert len(errs) == 2
    for f, orig in zip(errs, sent):
        assert (f.dst, f.src) == (R.H0_MAC, R.MAC0)
        ip = ip_of(f)
        assert (ip.src, ip.dst, ip.proto, ip.ttl) == (R.IP0, R.H0, 1, 64)
        icmp = ip[ICMP]
        assert (icmp.type, icmp.code) == (3, 1)
        q = icmp[IPerror]
        assert (q.src, q.dst, q.id, q.proto) == (R.H0, R.H1, orig.id, 17)
        assert q.ttl == 63                          # it had been forwarded
    assert stack.icmp.outhist == {"unreach/1": 2}
    assert stack.pool.in_use == 0


def test_reachable_entry_expires_after_keep(net, stack, clock):
    keep = stack.arp.keep
    assert keep == 1200.0
    clock.advance(keep - 1)
    stack.arp.timer()
    assert net.if1.llinfo[aton(R.H1)].state == LLE_REACHABLE
    assert stack.arp.stats["expired"] == 0
    clock.advance(1)
    stack.arp.timer()
    assert aton(R.H1) not in net.if1.llinfo and aton(R.H0) not in net.if0.llinfo
    assert stack.arp.stats["expired"] == 2
    # the next packet resolves afresh
    net.send0(udp_to_h1(9))
    (req,) = take(net.if1)
    assert req[ARP].op == 1 and req[ARP].pdst == R.H1


def test_arp_from_neighbour_renews_entry(net, stack, clock):
    # an ARP request from the neighbour renews its entry's lifetime
    clock.advance(1000)
    inject(net.if1, arp_request(net.if1, R.H1, R.H1_MAC, R.IP1))
    take(net.if1)
    clock.advance(1000)
    stack.arp.timer()
    assert net.if1.llinfo[aton(R.H1)].state == LLE_REACHABLE
    assert aton(R.H0) not in net.if0.llinfo


def test_reply_updates_changed_mac(net, stack):
    inject(net.if1, arp_reply_to(net.if1, R.H1, "02:bb:00:00:99:99"))
    net.send0(udp_to_h1(5))
    (f,) = take(net.if1)
    assert f.dst == "02:bb:00:00:99:99"


def test_flush_frees_held_and_counts_them_as_down(router, stack):
    router.send0(udp_to_h1(1))
    router.send0(udp_to_h1(2))
    assert stack.pool.in_use == 2
    stack.arp.flush(router.if1)
    assert router.if1.llinfo == {} and stack.pool.in_use == 0
    assert router.if1.out_discards["down"] == 2 and router.if1.oerrors == 2
    assert router.if1.out_discards["arp_unresolved"] == 0


def test_going_down_forgets_the_neighbours_and_asks_nothing_more(router, stack, clock):
    router.learn(router.if0, R.H0, R.H0_MAC)       # an ICMP error would have a way back
    router.send0(udp_to_h1(1))
    router.send0(udp_to_h1(2))
    assert len(take(router.if1)) == 1               # the first request
    stack.if_down(router.if1)
    assert router.if1.llinfo == {} and stack.pool.in_use == 0
    assert router.if1.out_discards["down"] == 2
    assert aton(R.H0) in router.if0.llinfo          # the other interface keeps its own
    for _ in range(stack.arp.maxtries + 2):         # past the give-up point
        clock.advance(1.0)
        stack.arp.timer()
    assert take(router.if1) == [] and take(router.if0) == []     # no retry, no ICMP error
    assert stack.arp.stats["txrequests"] == 1 and stack.arp.stats["timeouts"] == 0


def test_a_stopped_device_is_not_asked_to_send_a_request(router, stack):
    router.if1.flags &= ~IFF_RUNNING                # up, but its driver stopped it
    before = router.if1.counters()["families"]["arp"]["opackets"]
    stack.arp.announce(router.if1)
    assert take(router.if1) == [] and stack.arp.stats["txannounce"] == 0
    assert router.if1.counters()["families"]["arp"]["opackets"] == before


def test_table(net, stack, clock):
    clock.advance(10)
    rows = {r["address"]: r for r in stack.arp.table()}
    assert rows[R.H1] == {"interface": "fk1", "address": R.H1, "mac": R.H1_MAC,
                          "state": "reachable", "expires_in": 1190.0, "held": 0}


def test_unnumbered_interface_entries_time_out(router, stack, clock):
    if2 = fake_if(stack, 2, "02:00:00:00:02:01")   # no address
    stack.ip.routes.add(aton("10.9.0.0"), 16, 0, if2)
    for i in range(3):
        router.send0(IP(src=R.H0, dst=f"10.9.0.{i + 1}") / UDP())
    assert len(if2.llinfo) == 3 and stack.pool.in_use == 3
    for _ in range(stack.arp.maxtries + 2):
        clock.advance(1.0)
        stack.arp.timer()
    assert if2.llinfo == {}
    assert stack.arp.stats["timeouts"] == 3
    # The three held packets became three host-unreachables for H0, which
    # now wait for H0's own ARP answer on fk0.
    assert stack.icmp.stats["error"] == 3
    assert len(router.if0.llinfo[aton(R.H0)].holdq) == 3
    assert stack.pool.in_use == 3


def test_no_icmp_error_to_ourselves_after_arp_failure(router, stack, clock):
    router.send0(IP(src=R.H0, dst=R.IP0) / ICMP(id=1, seq=1))
    assert stack.icmp.stats["reflect"] == 1        # the reply waits for ARP
    take(router.if0)
    for _ in range(stack.arp.maxtries + 3):
        clock.advance(1.0)
        stack.arp.timer()
    # Only H0's ARP retries went out (the first request was taken above):
    # no ICMP host-unreachable about the reply, which came from us.
    sent = take(router.if0)
    assert len(sent) == stack.arp.maxtries - 1 == 4, [f.summary() for f in sent]
    assert [(f.dst, f.src, f.type, f[ARP].op, f[ARP].psrc, f[ARP].pdst) for f in sent] == \
        [("ff:ff:ff:ff:ff:ff", R.MAC0, 0x0806, 1, R.IP0, R.H0)] * 4
    assert router.if1.sent == []
    assert aton(R.IP0) not in router.if0.llinfo and aton(R.H0) not in router.if0.llinfo
    st = stack.arp.stats
    assert (st["txrequests"], st["timeouts"]) == (5, 1)
    assert router.if0.out_discards["arp_unresolved"] == 1
    assert stack.icmp.stats["error"] == 0 and stack.icmp.outhist == {"echoreply/0": 1}
    assert stack.pool.in_use == 0


# -- the counters netstat shows ---------------------------------------------------

ARP_STAT_NAMES = {"rxrequests", "rxreplies", "txrequests", "txreplies", "received",
                  "badlen", "badtype", "dupips", "timeouts", "held", "holdq_drops",
                  "expired", "txannounce"}


def test_arp_counters_exist_from_the_start_at_zero(stack):
    assert stack.arp.stats == dict.fromkeys(ARP_STAT_NAMES, 0)


def test_every_arp_packet_is_counted_once(router, stack):
    for _ in range(2):
        inject(router.if0, arp_request(router.if0, R.H0, R.H0_MAC, R.IP0))
    for _ in range(2):
        inject(router.if0, arp_reply_to(router.if0, R.H0, R.H0_MAC))
    inject(router.if0, arp_request(router.if0, R.H0, R.H0_MAC, "10.0.0.77"))
    assert len(take(router.if0)) == 2
    st = stack.arp.stats
    assert (st["received"], st["rxrequests"], st["rxreplies"], st["txreplies"]) == (5, 3, 2, 2)


def test_malformed_arp_counted_once_per_packet(router, stack):
    short = Ether(dst="ff:ff:ff:ff:ff:ff", type=0x0806) / (b"\0\1" * 5)
    inject(router.if0, short, short)
    assert stack.arp.stats["badlen"] == 2 and stack.arp.stats["received"] == 2
    assert router.if0.in_discards["arp_malformed"] == 2 and router.if0.ierrors == 2


def test_arp_of_exactly_28_bytes_is_enough(router, stack, monkeypatch):
    # No padding at all: the 28 bytes of ARP and nothing else, whole in
    # one mbuf, so nothing is pulled up (a Linux host sends ARP unpadded).
    frame = raw(arp_request(router.if0, R.H0, R.H0_MAC, R.IP0))
    assert len(frame) == 14 + 28
    pullups = calls(monkeypatch, stack.pool, "pullup")
    inject(router.if0, frame)
    (f,) = take(router.if0)
    assert f[ARP].op == 2 and stack.arp.stats["badlen"] == 0
    assert pullups == []


def test_each_wrong_header_field_is_a_bad_type(router, stack):
    good = raw(arp_request(router.if0, R.H0, R.H0_MAC, R.IP0))
    # one field wrong at a time: hardware type, protocol type, their lengths
    for at, value in ((14, b"\x00\x06"), (16, b"\x86\xdd"), (18, b"\x08"), (19, b"\x10")):
        inject(router.if0, good[:at] + value + good[at + len(value):])
    assert stack.arp.stats["badtype"] == 4 and stack.arp.stats["received"] == 4
    assert router.if0.in_discards["arp_malformed"] == 4
    assert router.if0.sent == [] and router.if0.llinfo == {}


# -- an ARP packet split over mbufs ------------------------------------------------

def _split_arp(stack, ifp, frame: bytes, first: int, at_end: bool = False):
    """`frame` as a chain: `first` bytes in one mbuf (at the very end of
    its cluster if `at_end`), the rest in a second."""
    pool = stack.pool
    m = pool.from_bytes(frame[:first])
    if at_end:
        m.off = m.size - first
        m.buf[m.off:m.size] = frame[:first]
    pool.cat(m, pool.from_bytes(frame[first:]))
    m.rcvif = ifp
    return m


def test_request_split_over_two_mbufs_is_answered(router, stack):
    frame = raw(arp_request(router.if0, R.H0, R.H0_MAC, R.IP0) / (b"\0" * 18))
    router.if0.if_input(router.if0, [_split_arp(stack, router.if0, frame, 14 + 10)])
    (f,) = take(router.if0)
    a = f[ARP]
    assert (a.op, a.hwsrc, a.psrc, a.hwdst, a.pdst) == (2, R.MAC0, R.IP0, R.H0_MAC, R.H0)
    assert len(raw(f)) == 14 + 28
    assert stack.pool.in_use == 0


def test_request_with_its_padding_in_a_second_mbuf_is_answered_without_it(router, stack):
    frame = raw(arp_request(router.if0, R.H0, R.H0_MAC, R.IP0) / (b"\xee" * 18))
    router.if0.if_input(router.if0, [_split_arp(stack, router.if0, frame, 14 + 28)])
    (f,) = take(router.if0)
    assert raw(f) == raw(Ether(dst=R.H0_MAC, src=R.MAC0, type=0x0806) / ARP(
        op=2, hwsrc=R.MAC0, psrc=R.IP0, hwdst=R.H0_MAC, pdst=R.H0))
    assert stack.pool.in_use == 0


def test_split_arp_with_the_pool_empty_is_dropped_as_nobufs(router, stack):
    frame = raw(arp_request(router.if0, R.H0, R.H0_MAC, R.IP0))
    m = _split_arp(stack, router.if0, frame, 14 + 10, at_end=True)
    pool = stack.pool
    held = []
    while (x := pool.get()) is not None:
        held.append(x)
    try:
        router.if0.if_input(router.if0, [m])
    finally:
        for x in held:
            pool.freem(x)
    assert router.if0.sent == [] and router.if0.llinfo == {}
    assert router.if0.in_discards["nobufs"] == 1 and router.if0.iqdrops == 1
    assert stack.arp.stats["received"] == 1 and stack.arp.stats["rxrequests"] == 0
    assert pool.in_use == 0


# -- learning (RFC 826 merge) ---------------------------------------------------------

def test_known_neighbour_is_updated_by_arp_not_meant_for_us(net, stack, clock):
    clock.advance(100)
    inject(net.if1, arp_request(net.if1, R.H1, "02:bb:00:00:99:99", "10.0.1.77"))
    assert net.if1.sent == []                       # not ours to answer
    la = net.if1.llinfo[aton(R.H1)]
    assert la.mac == bytes.fromhex("02bb00009999")
    assert la.hdr == bytes.fromhex("02bb00009999") + bytes.fromhex("020000000101") + b"\x08\x00"
    assert la.expire == clock() + stack.arp.keep
    assert stack.arp.stats["rxrequests"] == 1


def test_arp_probe_from_0_0_0_0_is_answered_but_not_learnt(router, stack):
    # RFC 5227: a host checking whether our address is taken asks from 0.0.0.0.
    inject(router.if0, arp_request(router.if0, "0.0.0.0", R.H0_MAC, R.IP0))
    (f,) = take(router.if0)
    a = f[ARP]
    assert (f.dst, a.op, a.hwsrc, a.psrc, a.hwdst, a.pdst) == \
        (R.H0_MAC, 2, R.MAC0, R.IP0, R.H0_MAC, "0.0.0.0")
    assert router.if0.llinfo == {}


def test_reply_to_us_from_an_unknown_host_is_learnt(router, stack, clock):
    inject(router.if1, arp_reply_to(router.if1, R.H1, R.H1_MAC))
    la = router.if1.llinfo[aton(R.H1)]
    assert (la.addr, la.ifp, la.state, la.asked) == (aton(R.H1), router.if1, LLE_REACHABLE, 0)
    assert la.expire == clock() + 1200.0
    assert router.if1.sent == [] and stack.arp.stats["rxreplies"] == 1


def test_someone_claiming_our_address_is_logged_once_per_claimant(router, stack, caplog):
    caplog.set_level(logging.WARNING, logger="iopkt")
    for mac in (R.H0_MAC, R.H0_MAC, "02:cc:00:00:00:09"):
        inject(router.if0, arp_request(router.if0, R.IP0, mac, R.H0))
    msgs = [r.getMessage() for r in caplog.records if r.name == "iopkt"]
    assert msgs == ["fk0: 02:aa:00:00:00:02 claims our address 10.0.0.1",
                    "fk0: 02:cc:00:00:00:09 claims our address 10.0.0.1"]
    assert stack.arp.stats["dupips"] == 3
    assert router.if0.sent == [] and router.if0.llinfo == {}


# -- resolving ---------------------------------------------------------------------------

def test_request_frame_exact_bytes(router, stack):
    router.send0(udp_to_h1(1))
    (req,) = router.if1.sent
    assert req == raw(Ether(dst="ff:ff:ff:ff:ff:ff", src=R.MAC1, type=0x0806) / ARP(
        hwtype=1, ptype=0x0800, hwlen=6, plen=4, op=1, hwsrc=R.MAC1, psrc=R.IP1,
        hwdst="00:00:00:00:00:00", pdst=R.H1))
    router.if1.sent.clear()


def test_a_new_entry_is_incomplete_until_answered(router, stack, clock):
    router.send0(udp_to_h1(1))
    la = router.if1.llinfo[aton(R.H1)]
    assert (la.addr, la.ifp, la.mac, la.hdr, la.state) == \
        (aton(R.H1), router.if1, None, None, LLE_INCOMPLETE)
    assert (la.asked, la.next_try, len(la.holdq)) == (1, clock() + 1.0, 1)
    take(router.if1)


def test_every_request_counts_in_omcasts(router, stack, clock):
    router.send0(udp_to_h1(1))
    clock.advance(1.0)
    stack.arp.timer()
    assert len(take(router.if1)) == 2
    assert router.if1.omcasts == 2 and stack.arp.stats["txrequests"] == 2


def test_noarp_interface_discards_instead_of_asking(router, stack):
    router.if1.flags |= IFF_NOARP
    router.send0(udp_to_h1(1))
    router.send0(udp_to_h1(2))
    assert router.if1.sent == [] and router.if1.llinfo == {}
    assert router.if1.out_discards["arp_unresolved"] == 2 and router.if1.oerrors == 2
    assert stack.arp.stats["held"] == 0 and stack.arp.stats["txrequests"] == 0
    assert stack.pool.in_use == 0


def test_resolve_for_an_entry_resolved_meanwhile_sends_at_once(net, stack):
    pkt = raw(udp_to_h1(4))
    stack.arp.resolve(net.if1, stack.pool.from_bytes(pkt), aton(R.H1))
    (f,) = take(net.if1)
    assert (f.dst, f.src, f.type) == (R.H1_MAC, R.MAC1, 0x0800)
    assert raw(f.payload) == pkt
    assert stack.arp.stats["held"] == 0 and stack.arp.stats["txrequests"] == 0


def test_request_without_a_cluster_is_a_txerror_and_not_counted(router, stack):
    pool = stack.pool
    held = []
    while (x := pool.get()) is not None:
        held.append(x)
    m = held.pop()
    m.len = m.pkt_len = 0
    try:
        stack.arp.resolve(router.if1, m, aton(R.H1))     # no cluster left for the request
    finally:
        for x in held:
            pool.freem(x)
    assert router.if1.sent == []
    assert router.if1.out_discards["txerror"] == 1 and router.if1.oerrors == 1
    assert stack.arp.stats["txrequests"] == 0 and router.if1.omcasts == 0
    la = router.if1.llinfo[aton(R.H1)]
    assert la.asked == 1 and len(la.holdq) == 1        # tried: retried by the timer
    stack.arp.flush(router.if1)


def test_announce_without_a_cluster_is_a_txerror_and_not_counted(router, stack):
    pool = stack.pool
    held = []
    while (x := pool.get()) is not None:
        held.append(x)
    try:
        stack.arp.announce(router.if0)
    finally:
        for x in held:
            pool.freem(x)
    assert router.if0.sent == [] and router.if0.out_discards["txerror"] == 1
    assert stack.arp.stats["txannounce"] == 0


def test_announce_sends_one_gratuitous_request_per_address(router, stack):
    stack.ip.add_address(router.if0, aton("10.7.0.1"), 24)
    stack.arp.announce(router.if0)
    frames = take(router.if0)
    assert [(f.dst, f.src, f[ARP].op, f[ARP].hwsrc, f[ARP].psrc, f[ARP].hwdst, f[ARP].pdst)
            for f in frames] == [
        ("ff:ff:ff:ff:ff:ff", R.MAC0, 1, R.MAC0, R.IP0, "00:00:00:00:00:00", R.IP0),
        ("ff:ff:ff:ff:ff:ff", R.MAC0, 1, R.MAC0, "10.7.0.1", "00:00:00:00:00:00", "10.7.0.1")]
    assert stack.arp.stats["txannounce"] == 2 and router.if0.omcasts == 2
    assert stack.arp.stats["txrequests"] == 0


def test_request_asks_from_the_address_on_the_neighbour_s_subnet(router, stack):
    # fk2 has two addresses; each neighbour is asked from the one on its
    # own subnet, one on neither subnet from the first.
    if2 = fake_if(stack, 2, "02:00:00:00:02:01", "10.2.0.1")
    stack.ip.add_address(if2, aton("10.3.0.1"), 24)
    stack.ip.routes.add(aton("10.9.0.0"), 16, 0, if2)
    for dst in ("10.3.0.5", "10.2.0.5", "10.9.0.5"):
        router.send0(IP(src=R.H0, dst=dst) / UDP())
    assert [(f[ARP].psrc, f[ARP].pdst) for f in take(if2)] == \
        [("10.3.0.1", "10.3.0.5"), ("10.2.0.1", "10.2.0.5"), ("10.2.0.1", "10.9.0.5")]
    stack.arp.flush(if2)


# -- the table the arp command shows ------------------------------------------------------

def test_table_rounds_to_a_tenth_and_shows_incomplete_entries(router, stack, clock):
    router.learn(router.if0, R.H0, R.H0_MAC)
    router.send0(udp_to_h1(1))
    take(router.if1)
    clock.advance(10.26)
    rows = {r["address"]: r for r in stack.arp.table()}
    assert rows == {
        R.H0: {"interface": "fk0", "address": R.H0, "mac": R.H0_MAC,
               "state": "reachable", "expires_in": 1189.7, "held": 0},
        R.H1: {"interface": "fk1", "address": R.H1, "mac": None,
               "state": "incomplete", "expires_in": None, "held": 1}}


def test_an_entry_set_by_hand_does_not_stop_the_others_ageing(stack, router, clock):
    """The timer passes over a permanent entry and goes on: one learned
    after it on the same interface still expires."""
    stack.arp.set_static(aton("10.0.1.7"), b"\x02\x00\x00\x00\x77\x77", True)
    router.learn(router.if1, "10.0.1.2", "02:bb:00:00:01:02")
    assert list(router.if1.llinfo) == [aton("10.0.1.7"), aton("10.0.1.2")]
    clock.advance(stack.arp.keep)
    stack.arp.timer()
    assert list(router.if1.llinfo) == [aton("10.0.1.7")]
