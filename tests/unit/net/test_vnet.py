"""iopkt.vnet: the virtio-net header read into a packet header and written
back out, and the probing of TUNSETOFFLOAD (the ioctl itself needs a TAP:
the integration tests use it for real)."""

import errno

import pytest

from iopkt.kern.mbuf import (
    M_CSUM_TCPv4,
    M_CSUM_TCPv6,
    M_CSUM_TSOv4,
    M_CSUM_TSOv6,
    M_CSUM_UDPv4,
    M_CSUM_UDPv6,
    MbufPool,
)
from iopkt.net import vnet
from iopkt.net.vnet import (
    HDR,
    TUN_F_CSUM,
    TUN_F_TSO4,
    VIRTIO_NET_HDR_F_DATA_VALID,
    VIRTIO_NET_HDR_GSO_ECN,
    VIRTIO_NET_HDR_GSO_UDP,
)
from iopkt.net.vnet import VIRTIO_NET_HDR_F_NEEDS_CSUM as CSUM
from iopkt.net.vnet import VIRTIO_NET_HDR_GSO_TCPV4 as TCPV4
from iopkt.net.vnet import VIRTIO_NET_HDR_GSO_TCPV6 as TCPV6


@pytest.fixture
def m():
    pool = MbufPool(4)
    m = pool.get()
    m.pkt_len = m.len = 200
    m.buf[m.off + 12:m.off + 14] = b"\x08\x00"         # an IPv4 frame
    yield m
    pool.free(m)


def decode(m, *fields, at=0):
    buf = bytearray(at) + HDR.pack(*fields)
    return vnet.decode(m, buf, at)


def test_decode_reads_the_header_where_it_is(m):
    assert decode(m, CSUM, TCPV4, 66, 1448, 34, 16, at=7) is True
    assert (m.csum_flags, m.csum_data, m.segsz) == (M_CSUM_TSOv4 | M_CSUM_TCPv4,
                                                    (20 << 16) | 16, 1448)


def test_the_header_is_in_the_hosts_byte_order_as_the_kernel_writes_it(m):
    # struct virtio_net_hdr as x86's kernel lays it out, written byte by
    # byte (not with vnet.HDR, which would agree with itself in either
    # order): flags, gso_type, then hdr_len, gso_size, csum_start and
    # csum_offset little-endian.
    raw = bytes([CSUM, TCPV4, 66, 0, 0xA8, 0x05, 34, 0, 16, 0])    # gso_size 1448
    assert vnet.decode(m, raw, 0) is True
    assert (m.csum_flags, m.csum_data, m.segsz) == (M_CSUM_TSOv4 | M_CSUM_TCPv4,
                                                    (20 << 16) | 16, 1448)
    m.buf[m.off + 34 + 12] = 0x80                       # TCP data offset: 32 bytes
    out = bytearray(10)
    vnet.encode(m, out, 0)
    assert out == raw


def test_decode_partial_tcp_and_udp(m):
    assert decode(m, CSUM, 0, 0, 0, 38, 16) is True             # 24 bytes of IP options
    assert (m.csum_flags, m.csum_data) == (M_CSUM_TCPv4, (24 << 16) | 16)
    assert decode(m, CSUM, 0, 0, 0, 34, 6) is True
    assert (m.csum_flags, m.csum_data) == (M_CSUM_UDPv4, (20 << 16) | 6)
    assert decode(m, VIRTIO_NET_HDR_F_DATA_VALID, 0, 0, 0, 0, 0) is True   # whole: nothing to do
    assert m.csum_flags == 0


def test_decode_takes_a_tcpv6_super_frame_of_an_ipv6_frame(m):
    m.buf[m.off + 12:m.off + 14] = b"\x86\xdd"
    assert decode(m, CSUM, TCPV6, 74, 1428, 54, 16) is True
    assert (m.csum_flags, m.csum_data, m.segsz) == (M_CSUM_TSOv6 | M_CSUM_TCPv6,
                                                    (40 << 16) | 16, 1428)


def test_decode_flags_a_partial_checksum_by_the_frames_family(m):
    # One TUN_F_CSUM hands both families; the stack keeps them apart, as an
    # interface may complete TCPv4 checksums and not TCPv6 (-tcp6csum).
    m.buf[m.off + 12:m.off + 14] = b"\x86\xdd"
    assert decode(m, CSUM, 0, 0, 0, 54, 16) is True
    assert (m.csum_flags, m.csum_data) == (M_CSUM_TCPv6, (40 << 16) | 16)
    assert decode(m, CSUM, 0, 0, 0, 62, 6) is True  # after an 8-byte extension header
    assert (m.csum_flags, m.csum_data) == (M_CSUM_UDPv6, (48 << 16) | 6)
    m.buf[m.off + 12:m.off + 14] = b"\x86\xde"         # not IPv6: the IPv4 flags
    assert decode(m, CSUM, 0, 0, 0, 54, 16) is True
    assert m.csum_flags == M_CSUM_TCPv4
    m.buf[m.off + 12:m.off + 14] = b"\x87\xdd"
    assert decode(m, CSUM, 0, 0, 0, 54, 6) is True
    assert m.csum_flags == M_CSUM_UDPv4


@pytest.mark.parametrize("etype,gso", [(b"\x86\xdd", TCPV4), (b"\x08\x00", TCPV6),
                                       (b"\x08\x06", TCPV4)], ids=["v4_in_v6", "v6_in_v4", "arp"])
def test_decode_refuses_a_super_frame_of_the_other_family(m, etype, gso):
    m.buf[m.off + 12:m.off + 14] = etype
    assert decode(m, CSUM, gso, 74, 1428, 54, 16) is False


def test_encode_writes_tcpv6_for_an_ipv6_super_frame(m):
    m.csum_flags, m.csum_data, m.segsz = M_CSUM_TSOv6 | M_CSUM_TCPv6, (40 << 16) | 16, 1428
    m.buf[m.off + 54 + 12] = 0x50                       # a 20-byte TCP header
    out = bytearray(10)
    vnet.encode(m, out, 0)
    assert HDR.unpack(out) == (CSUM, TCPV6, 74, 1428, 54, 16)


def test_decode_takes_the_ecn_bit_with_tso(m):
    assert decode(m, CSUM, TCPV4 | VIRTIO_NET_HDR_GSO_ECN, 66, 1448, 34, 16) is True
    assert m.csum_flags == M_CSUM_TSOv4 | M_CSUM_TCPv4


@pytest.mark.parametrize("fields", [
    (CSUM, 0, 0, 0, 33, 16),            # the L4 header inside the IP header
    (CSUM, 0, 0, 0, 20, 16),
    (CSUM, 0, 0, 0, 183, 16),           # the field's second byte past the end (200)
    (0, TCPV4, 66, 1448, 34, 16),       # GSO without a partial checksum
    (CSUM, TCPV4, 66, 0, 34, 16),       # GSO without a segment size
    (CSUM, TCPV4, 66, 1448, 34, 6),     # TCP segmentation of a UDP checksum
    (CSUM, VIRTIO_NET_HDR_GSO_UDP, 42, 1400, 34, 6),      # UFO: never enabled
    (CSUM, 0, 0, 0, 34, 10),            # neither TCP's nor UDP's checksum field
])
def test_decode_refuses_a_header_that_lies(m, fields):
    assert decode(m, *fields) is False


def test_decode_accepts_a_field_that_ends_the_frame(m):
    assert decode(m, CSUM, 0, 0, 0, 182, 16) is True            # bytes 198 and 199 of 200


def test_encode_writes_what_decode_reads(m):
    b = m.buf
    o = m.off
    b[o + 34 + 12] = 0x80                               # TCP data offset: 32 bytes
    m.csum_flags, m.csum_data, m.segsz = M_CSUM_TSOv4 | M_CSUM_TCPv4, (20 << 16) | 16, 1448
    out = bytearray(10)
    vnet.encode(m, out, 0)
    assert HDR.unpack(out) == (CSUM, TCPV4, 34 + 32, 1448, 34, 16)
    b[o + 34 + 13] = 0x80                               # CWR: the kernel must know (ECN)
    vnet.encode(m, out, 0)
    assert HDR.unpack(out) == (CSUM, TCPV4 | VIRTIO_NET_HDR_GSO_ECN, 66, 1448, 34, 16)
    m.csum_flags, m.csum_data = M_CSUM_UDPv4, (20 << 16) | 6
    vnet.encode(m, out, 0)
    assert HDR.unpack(out) == (CSUM, 0, 42, 0, 34, 6)
    for cf in (M_CSUM_TCPv6, M_CSUM_UDPv6):              # the v6 flags are partial too
        m.csum_flags, m.csum_data = cf, (40 << 16) | 6
        out[:] = bytes(10)
        vnet.encode(m, out, 0)
        assert HDR.unpack(out) == (CSUM, 0, 62, 0, 54, 6)
    m.csum_flags = 0
    out[:] = b"\xff" * 10
    vnet.encode(m, out, 0)
    assert out == bytes(10)


def test_negotiation_falls_back_to_checksums_then_nothing(monkeypatch):
    tried = []

    def kernel(accepts):
        def set_offload(fd, mask):
            tried.append(mask)
            if mask not in accepts:
                raise OSError(errno.EINVAL, "Invalid argument")
        return set_offload

    want = TUN_F_CSUM | TUN_F_TSO4
    monkeypatch.setattr(vnet, "set_offload", kernel({want}))
    assert vnet.negotiate_offload(3, want) == (want, 0) and tried == [want]
    tried.clear()
    monkeypatch.setattr(vnet, "set_offload", kernel({0}))
    assert vnet.negotiate_offload(3, want) == (0, want)
    assert tried == [want, TUN_F_CSUM, 0]
    monkeypatch.setattr(vnet, "set_offload", kernel(set()))
    with pytest.raises(OSError):                    # not even "none": a real error
        vnet.negotiate_offload(3, want)


def test_negotiation_gives_up_at_once_on_another_error(monkeypatch):
    def not_a_tap(fd, mask):
        raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")

    monkeypatch.setattr(vnet, "set_offload", not_a_tap)
    with pytest.raises(OSError) as e:
        vnet.negotiate_offload(3, TUN_F_CSUM | TUN_F_TSO4)
    assert e.value.errno == errno.ENOTTY


def test_tun_f_str():
    assert vnet.tun_f_str(0) == "none"
    assert vnet.tun_f_str(TUN_F_CSUM | TUN_F_TSO4) == "CSUM,TSO4"


def test_the_tun_ioctls_take_the_fd_the_request_and_the_value_as_the_kernel_wants(monkeypatch):
    """TUNSETVNETHDRSZ takes a pointer to an int (a packed buffer),
    TUNSETOFFLOAD the mask by value (drivers/net/tun.c)."""
    calls = []
    monkeypatch.setattr(vnet.fcntl, "ioctl", lambda *a: calls.append(a))
    vnet.set_vnet_hdr_sz(7)
    vnet.set_vnet_hdr_sz(8, 12)
    vnet.set_vnet_hdr_sz(6, -1)         # a signed int: the kernel refuses it, not struct
    vnet.set_offload(9, TUN_F_CSUM | TUN_F_TSO4)
    assert calls == [(7, 0x400454D8, (10).to_bytes(4, "little")),
                     (8, 0x400454D8, (12).to_bytes(4, "little")),
                     (6, 0x400454D8, b"\xff\xff\xff\xff"),
                     (9, 0x400454D0, 0x03)]
