"""iopkt.ether: input classification and discards, output framing."""

import pytest
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether

from fakenet import Router, aton, fake_if, inject, take
from iopkt.ether import ETHERTYPE_IP, ether_header, mac_aton, mac_ntoa
from iopkt.ifnet import IFF_PROMISC, IFF_RUNNING, IN_DISCARD_REASONS
from iopkt.mbuf import M_BCAST, M_MCAST

OTHER_MAC = "02:cc:cc:cc:cc:cc"


@pytest.fixture
def ifp(stack):
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", "10.0.0.1")
    seen = ifp.seen = []

    def ip_input(pkts):                     # what ether_input hands up
        for m in pkts:
            seen.append((m.tobytes(), m.flags))
            stack.pool.freem(m)

    ifp.ip_input = ip_input
    return ifp


def discards(ifp):
    return {k: v for k, v in ifp.in_discards.items() if v}


def test_counters_start_at_zero(ifp):
    assert set(ifp.in_discards) == set(IN_DISCARD_REASONS)
    assert discards(ifp) == {}


def test_unicast_to_us_goes_up_without_link_header(ifp):
    pkt = raw(IP(src="10.0.0.2", dst="10.0.0.1") / UDP())
    frame = raw(Ether(dst=ifp.mac_str(), src=OTHER_MAC, type=ETHERTYPE_IP) / pkt)
    inject(ifp, frame)
    assert [b for b, _ in ifp.seen] == [pkt]
    assert (ifp.ipackets, ifp.ibytes, ifp.imcasts, ifp.ierrors) == (1, len(frame), 0, 0)


def test_unicast_to_another_mac_dropped_not_ours(ifp):
    inject(ifp, Ether(dst=OTHER_MAC, src="02:dd:00:00:00:01") / IP() / UDP())
    assert ifp.seen == []
    assert discards(ifp) == {"not_ours": 1}
    assert ifp.ierrors == 1 and ifp.ipackets == 1


def test_promiscuous_accepts_other_mac(ifp):
    ifp.flags |= IFF_PROMISC
    inject(ifp, Ether(dst=OTHER_MAC, src="02:dd:00:00:00:01") / IP() / UDP())
    assert len(ifp.seen) == 1 and discards(ifp) == {}


def test_runt(ifp):
    inject(ifp, b"\x02\x00\x00\x00\x00\x01abcd")          # 10 bytes
    assert discards(ifp) == {"runt": 1}
    assert ifp.ierrors == 1 and ifp.ipackets == 1 and ifp.ibytes == 0


def test_header_split_over_a_chain_is_pulled_up(ifp, stack):
    frame = raw(Ether(dst=ifp.mac_str(), src=OTHER_MAC) / IP() / UDP())
    m = stack.pool.from_bytes(frame[:6])
    stack.pool.cat(m, stack.pool.from_bytes(frame[6:]))
    m.rcvif = ifp
    ifp.if_input(ifp, [m])
    assert len(ifp.seen) == 1 and ifp.seen[0][0] == frame[14:]
    assert discards(ifp) == {}


@pytest.mark.parametrize("etype", [0x88B5, 0x86DD])
def test_unknown_ethertype(ifp, etype):
    inject(ifp, Ether(dst=ifp.mac_str(), src=OTHER_MAC, type=etype) / (b"x" * 46))
    assert discards(ifp) == {"unknown_ethertype": 1}
    assert ifp.noproto == 1 and ifp.ierrors == 0
    assert ifp.seen == []


def test_broadcast_counted_in_imcasts_and_flagged(ifp):
    inject(ifp, Ether(dst="ff:ff:ff:ff:ff:ff", src=OTHER_MAC) / IP() / UDP())
    assert ifp.imcasts == 1 and len(ifp.seen) == 1
    assert ifp.seen[0][1] & M_BCAST


def test_multicast_counted_in_imcasts_and_flagged(ifp):
    inject(ifp, Ether(dst="01:00:5e:00:00:01", src=OTHER_MAC) / IP(dst="224.0.0.1") / UDP())
    assert ifp.imcasts == 1
    flags = ifp.seen[0][1]
    assert flags & M_MCAST and not flags & M_BCAST


def test_interface_down_discards(ifp, stack):
    stack.if_down(ifp)
    inject(ifp, Ether(dst=ifp.mac_str(), src=OTHER_MAC) / IP() / UDP())
    assert discards(ifp) == {"down": 1}
    assert ifp.seen == [] and ifp.ipackets == 1


def test_burst_of_mixed_frames(ifp):
    good = Ether(dst=ifp.mac_str(), src=OTHER_MAC) / IP() / UDP()
    inject(ifp, good, Ether(dst=OTHER_MAC) / IP(), b"short", good,
           Ether(dst=ifp.mac_str(), type=0x88B5) / b"zz")
    assert len(ifp.seen) == 2
    assert discards(ifp) == {"not_ours": 1, "runt": 1, "unknown_ethertype": 1}
    assert ifp.ipackets == 5


# -- output -------------------------------------------------------------------

def test_mac_helpers():
    assert mac_aton("02:00:0a:ff:10:01") == bytes([2, 0, 10, 255, 16, 1])
    assert mac_ntoa(b"\x02\x00\x0a\xff\x10\x01") == "02:00:0a:ff:10:01"
    with pytest.raises(ValueError):
        mac_aton("02:00:0a")


def test_ether_output_uses_leading_space(net, stack):
    pkt = raw(IP(src="10.0.1.1", dst=Router.H1) / ICMP())
    m = stack.pool.from_bytes(pkt)
    net.if1.if_output(net.if1, [m], aton(Router.H1))
    assert stack.pool.hiwat == 1            # no second cluster was needed
    (f,) = take(net.if1)
    assert (f.dst, f.src, f.type) == (Router.H1_MAC, Router.MAC1, ETHERTYPE_IP)
    assert raw(f.payload) == pkt


def test_ether_output_without_leading_space_prepends_mbuf(net, stack):
    pkt = raw(IP(src="10.0.1.1", dst=Router.H1) / ICMP())
    m = stack.pool.from_bytes(pkt, headroom=0)
    net.if1.if_output(net.if1, [m], aton(Router.H1))
    (f,) = take(net.if1)
    assert f.dst == Router.H1_MAC and raw(f.payload) == pkt


def test_ether_output_not_running_discards(net, stack):
    net.if1.flags &= ~IFF_RUNNING
    m = stack.pool.from_bytes(raw(IP(dst=Router.H1)))
    net.if1.if_output(net.if1, [m], aton(Router.H1))
    assert net.if1.sent == [] and net.if1.out_discards["down"] == 1
    assert net.if1.oerrors == 1


def test_ether_header():
    assert ether_header(b"\xff" * 6, b"\x02" * 6, 0x0806) == b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06"


def test_external_storage_must_be_a_bytearray(stack):
    # ether_input relies on bytearray.startswith; a memoryview is refused
    # where it is handed in, not deep in the input path.
    with pytest.raises(TypeError, match="bytearray"):
        stack.pool.get_ext(memoryview(bytearray(64)), 0, 64, lambda a: None, "x")
    assert stack.pool.ext_in_use == 0
