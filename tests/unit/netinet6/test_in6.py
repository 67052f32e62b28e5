"""IPv6 addresses (netinet6/in6.py) against plain models: text forms and
prefixes against Python's ipaddress, the modified EUI-64 of RFC 4291
App. A, solicited-node groups (§2.7.1) and their MACs (RFC 2464 §7), the
pseudo-header sum (RFC 8200 §8.1) word by word, scopes at their edges, and
an address on an interface (flags, text, usable)."""

import ipaddress

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from iopkt.netinet6.in6 import (
    ALL128,
    IN6_IFF_AUTOCONF,
    IN6_IFF_DUPLICATED,
    IN6_IFF_TENTATIVE,
    In6Ifaddr,
    aton6,
    eui64,
    is_linklocal,
    is_loopback_or_unspec,
    is_multicast,
    linklocal,
    mask6,
    multicast_mac,
    ntoa6,
    parse_prefix6,
    pseudo_sum,
    solicited_node,
)

addrs = st.integers(0, ALL128)
macs = st.binary(min_size=6, max_size=6)


# -- text forms ---------------------------------------------------------------------
@given(addrs)
@example(0)
@example(ALL128)
def test_ntoa6_is_ipaddress_text_and_aton6_reads_it_back(a):
    text = ntoa6(a)
    assert text == str(ipaddress.IPv6Address(a))
    assert aton6(text) == a
    assert aton6(ipaddress.IPv6Address(a).exploded) == a


def test_aton6_reads_the_usual_forms():
    assert aton6("2001:2:0:a::1") == 0x2001_0002_0000_000A_0000_0000_0000_0001
    assert aton6("::") == 0 and aton6("::1") == 1
    assert aton6("fe80::5054:ff:fe12:3456") == 0xFE80 << 112 | 0x5054_00FF_FE12_3456


@pytest.mark.parametrize("text,shown", [("zz", "zz"), ("10.0.0.1", "10.0.0.1"),
                                        ("1::2::3", "1::2::3"), ("", "''")])
def test_aton6_names_the_bad_text_and_hides_ipaddress_error(text, shown):
    with pytest.raises(ValueError) as e:
        aton6(text)
    assert str(e.value) == f"{shown}: not an IPv6 address (like 2001:2:0:a::1)"
    assert e.value.__cause__ is None and e.value.__suppress_context__


@pytest.mark.parametrize("text,want", [
    ("default", (0, 0)),
    ("2001:2:0:a::/64", (aton6("2001:2:0:a::"), 64)),
    ("2001:2:0:a::1", (aton6("2001:2:0:a::1"), 128)),
    ("::/0", (0, 0)),
    ("ff02::1/128", (aton6("ff02::1"), 128)),
    ("fe80::1/1", (aton6("fe80::1"), 1)),
    ("::1/007", (1, 7)),
])
def test_parse_prefix6(text, want):
    got = parse_prefix6(text)
    assert got == want and type(got[1]) is int


@pytest.mark.parametrize("text,msg", [
    ("2001::/129", "prefix length /129: must be 0..128"),
    ("2001::/-1", "prefix length /-1: must be 0..128"),
    ("2001::/", "prefix length /: must be 0..128"),
    ("2001::/abc", "prefix length /abc: must be 0..128"),
    ("2001::/6/4", "prefix length /6/4: must be 0..128"),
    ("2001::/ 64", "prefix length / 64: must be 0..128"),
])
def test_parse_prefix6_rejects_a_bad_length_naming_it(text, msg):
    with pytest.raises(ValueError) as e:
        parse_prefix6(text)
    assert str(e.value) == msg


@pytest.mark.parametrize("text,msg", [
    ("Default", "Default: not an IPv6 address (like 2001:2:0:a::1)"),
    ("10.0.0.0/8", "10.0.0.0: not an IPv6 address (like 2001:2:0:a::1)"),
    ("/64", "'': not an IPv6 address (like 2001:2:0:a::1)"),
])
def test_parse_prefix6_rejects_a_bad_address_naming_it(text, msg):
    with pytest.raises(ValueError) as e:
        parse_prefix6(text)
    assert str(e.value) == msg


@given(addrs, st.integers(0, 128))
def test_parse_prefix6_reads_every_length(a, plen):
    assert parse_prefix6(f"{ntoa6(a)}/{plen}") == (a, plen)


# -- masks and scopes ---------------------------------------------------------------
@pytest.mark.parametrize("plen", range(129))
def test_mask6_is_plen_leading_ones(plen):
    want = int(ipaddress.IPv6Network(f"::/{plen}").netmask)
    assert mask6(plen) == want
    assert bin(mask6(plen)).count("1") == plen


@given(addrs)
@example(0xFF << 120)
@example((0xFF << 120) - 1)
@example(0xFE << 120)
@example(ALL128)
@example(0x7F << 120)
def test_is_multicast_is_ff00_slash_8(a):
    assert is_multicast(a) is ipaddress.IPv6Address(a).is_multicast


def _linklocal_model(a: int) -> bool:
    ip = ipaddress.IPv6Address(a)
    if ip in ipaddress.IPv6Network("fe80::/10"):
        return True
    return ip.is_multicast and (a >> 112) & 0xF == 2


@given(addrs)
@example(aton6("fe80::"))
@example(aton6("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))
@example(aton6("fec0::"))
@example(aton6("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))
@example(aton6("ff02::1"))
@example(aton6("ff12::1"))
@example(aton6("ff32::1"))
@example(aton6("ff01::1"))
@example(aton6("ff03::1"))
@example(aton6("ff05::1"))
@example(aton6("ff0e::1"))
@example(aton6("fe02::1"))
@example(aton6("7f02::1"))
@example(aton6("ef02::1"))
@example(aton6("2001:2:0:a::1"))
@example(aton6("fe80::") | 0x2 << 112)
def test_is_linklocal_is_fe80_slash_10_or_link_scope_multicast(a):
    assert is_linklocal(a) is _linklocal_model(a)


def test_is_linklocal_edges_by_name():
    yes = ["fe80::1", "fe80::ff:fe00:1", "febf::1", "ff02::1", "ff02::1:ff00:1", "ff12::9",
           "ff42::1"]
    no = ["fec0::1", "fe7f::1", "ff01::1", "ff05::2", "ff0e::1", "2001::1", "::1", "::",
          "fe00::1", "ff03::1", "ff06::1", "ff0a::1", "ef02::1", "bf02::1", "ff00::"]
    assert [is_linklocal(aton6(a)) for a in yes] == [True] * len(yes)
    assert [is_linklocal(aton6(a)) for a in no] == [False] * len(no)


@pytest.mark.parametrize("a,want", [(0, True), (1, True), (2, False), (ALL128, False),
                                    (1 << 64, False)])
def test_is_loopback_or_unspec(a, want):
    assert is_loopback_or_unspec(a) is want


# -- interface identifiers and groups -----------------------------------------------
def _eui64_model(mac: bytes) -> int:
    """RFC 4291 App. A, step by step: flip the universal/local bit (0x02 of
    the first octet), put ff:fe between the OUI and the rest."""
    first = mac[0] ^ 0b0000_0010
    octets = [first, mac[1], mac[2], 0xFF, 0xFE, mac[3], mac[4], mac[5]]
    iid = 0
    for o in octets:
        iid = iid * 256 + o
    return iid


@given(macs)
@example(bytes(6))
@example(b"\xff" * 6)
@example(bytes.fromhex("020000000001"))
@example(bytes.fromhex("525400123456"))
@example(bytes.fromhex("010203040506"))
def test_eui64_and_linklocal_follow_rfc4291_appendix_a(mac):
    iid = eui64(mac)
    assert iid == _eui64_model(mac) and 0 <= iid < 1 << 64
    assert linklocal(mac) == (0xFE80 << 112) + iid
    assert ipaddress.IPv6Address(linklocal(mac)).is_link_local


def test_eui64_examples():
    assert eui64(bytes.fromhex("020000000001")) == 0x0000_00FF_FE00_0001
    assert eui64(bytes.fromhex("001122334455")) == 0x0211_22FF_FE33_4455
    assert ntoa6(linklocal(bytes.fromhex("525400123456"))) == "fe80::5054:ff:fe12:3456"
    assert ntoa6(linklocal(bytes.fromhex("0211223344ff"))) == "fe80::11:22ff:fe33:44ff"


@given(addrs)
@example(0)
@example(ALL128)
@example(aton6("2001:2:0:a::1"))
def test_solicited_node_keeps_the_low_24_bits(a):
    text = ipaddress.IPv6Address(a).exploded.replace(":", "")
    want = ipaddress.IPv6Address("ff02::1:ff" + text[-6:-4] + ":" + text[-4:])
    assert solicited_node(a) == int(want)
    assert solicited_node(solicited_node(a)) == solicited_node(a)


@given(addrs)
@example(aton6("ff02::1"))
@example(aton6("ff02::1:ff00:1"))
@example(ALL128)
def test_multicast_mac_is_3333_and_the_low_32_bits(group):
    mac = multicast_mac(group)
    assert len(mac) == 6
    assert mac == bytes((0x33, 0x33)) + ipaddress.IPv6Address(group).packed[12:]


def test_multicast_mac_examples():
    assert multicast_mac(aton6("ff02::1")).hex(":") == "33:33:00:00:00:01"
    assert multicast_mac(aton6("ff02::1:ff00:1")).hex(":") == "33:33:ff:00:00:01"
    assert multicast_mac(aton6("ff02::1:ffab:cdef")).hex(":") == "33:33:ff:ab:cd:ef"


# -- the pseudo-header sum ----------------------------------------------------------
def _pseudo_model(src: int, dst: int, length: int, nxt: int) -> int:
    words = []
    for a in (src, dst):
        b = a.to_bytes(16, "big")
        words += [int.from_bytes(b[i:i + 2], "big") for i in range(0, 16, 2)]
    return sum(words) + length + nxt


@given(addrs, addrs, st.integers(0, 0xFFFF), st.integers(0, 255))
@example(ALL128, ALL128, 0xFFFF, 255)
@example(0, 0, 0, 0)
@example(1 << 127, 1, 8, 58)
def test_pseudo_sum_adds_every_16_bit_word_unfolded(src, dst, length, nxt):
    assert pseudo_sum(src, dst, length, nxt) == _pseudo_model(src, dst, length, nxt)


def test_pseudo_sum_example_and_its_one_complement_checksum():
    src, dst = aton6("2001:2:0:a::2"), aton6("2001:2:0:b::2")
    s = pseudo_sum(src, dst, 16, 58)
    assert s == 0x2001 + 2 + 0xA + 2 + 0x2001 + 2 + 0xB + 2 + 16 + 58
    assert pseudo_sum(ALL128, 0, 0, 0) == 8 * 0xFFFF          # not folded
    assert pseudo_sum(0, ALL128, 0, 0) == 8 * 0xFFFF
    assert pseudo_sum(0, 0, 0x12345, 0) == 0x12345          # a jumbo length as it is


# -- an address on an interface -----------------------------------------------------
def test_an_ifaddr_knows_its_prefix_and_starts_with_no_dad():
    a = aton6("2001:2:0:a::1")
    ia = In6Ifaddr(a, 64)
    assert (ia.addr, ia.plen, ia.mask, ia.net) == (a, 64, mask6(64), aton6("2001:2:0:a::"))
    assert ia.flags == 0 and ia.usable is True
    assert ia.dad_at == 0.0 and ia.dad_sent == 0
    assert ia.text() == "2001:2:0:a::1/64"
    host = In6Ifaddr(a, 128, IN6_IFF_AUTOCONF)
    assert (host.net, host.flags, host.usable) == (a, IN6_IFF_AUTOCONF, True)
    assert In6Ifaddr(a, 1).net == 0 and In6Ifaddr(aton6("fe80::1"), 10).net == 0xFE80 << 112


@pytest.mark.parametrize("flags,usable,text", [
    (0, True, "2001:2:0:a::1/64"),
    (IN6_IFF_AUTOCONF, True, "2001:2:0:a::1/64"),
    (IN6_IFF_TENTATIVE, False, "2001:2:0:a::1/64 tentative"),
    (IN6_IFF_DUPLICATED, False, "2001:2:0:a::1/64 duplicated"),
    (IN6_IFF_DUPLICATED | IN6_IFF_AUTOCONF, False, "2001:2:0:a::1/64 duplicated"),
    (IN6_IFF_TENTATIVE | IN6_IFF_DUPLICATED, False, "2001:2:0:a::1/64 tentative duplicated"),
])
def test_usable_and_text_follow_the_flags(flags, usable, text):
    ia = In6Ifaddr(aton6("2001:2:0:a::1"), 64, flags)
    assert ia.flags == flags and ia.usable is usable and ia.text() == text


def test_an_ifaddr_has_only_its_slots():
    ia = In6Ifaddr(1, 128)
    with pytest.raises(AttributeError):
        ia.other = 1
