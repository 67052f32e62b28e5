"""nicinfo's per-family packet counts see every ARP frame the stack sends:
requests for a next hop and gratuitous announcements, not only replies."""

from scapy.layers.inet import IP, UDP

from fakenet import Router, take


def test_every_request_counts_as_an_arp_packet_out(router, stack, clock):
    router.send0(IP(src=Router.H0, dst=Router.H1) / UDP(sport=1000, dport=2000) / b"data")
    clock.advance(1.0)
    stack.arp.timer()                       # no answer: asked again
    assert len(take(router.if1)) == 2
    fam = router.if1.counters()["families"]
    assert fam["arp"]["opackets"] == 2 and fam["inet"]["opackets"] == 0


def test_announcements_count_as_arp_packets_out(router, stack):
    before = router.if1.counters()["families"]["arp"]["opackets"]
    stack.arp.announce(router.if1)
    assert len(take(router.if1)) == len(router.if1.in_addrs) == 1
    assert router.if1.counters()["families"]["arp"]["opackets"] - before == 1
