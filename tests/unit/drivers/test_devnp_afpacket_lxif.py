"""drivers/devnp_afpacket/lxif.py: the interface ioctls, against a stand-in
for fcntl.ioctl that records each request's exact bytes and answers as
net/core/dev_ioctl.c does (the name in the first 16 bytes, NUL-padded; the
answer at offset 16)."""

import errno
import os
import struct
from types import SimpleNamespace

import pytest

from devnp_afpacket import lxif

NAME = "veth-abcdefghij"                # 15 characters: IFNAMSIZ less its NUL


class Kernel:
    """One interface, `NAME` at index 7, as the ioctls see it."""

    def __init__(self, flags=0x9043, mtu=9000):
        self.flags, self.mtu = flags, mtu
        self.asked = []                 # (fd, request, the buffer's bytes as given)

    def ioctl(self, fd, req, buf):
        self.asked.append((fd, req, bytes(buf)))
        assert isinstance(buf, bytearray) and len(buf) == lxif.IFREQ
        if req == lxif.SIOCGIFNAME:
            if struct.unpack_from("i", buf, 16)[0] != 7:
                raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
            buf[:16] = NAME.encode().ljust(16, b"\0")
        elif req == lxif.SIOCGIFFLAGS:
            struct.pack_into("H", buf, 16, self.flags)
        elif req == lxif.SIOCGIFMTU:
            struct.pack_into("i", buf, 16, self.mtu)
        return 0


@pytest.fixture
def kernel(monkeypatch):
    k = Kernel()
    monkeypatch.setattr(lxif, "fcntl", SimpleNamespace(ioctl=k.ioctl))
    return k


def ifreq(name: bytes, data: bytes = b"") -> bytes:
    return name.ljust(16, b"\0") + data.ljust(24, b"\0")


def test_an_ifreq_is_the_name_then_the_data_zero_padded_to_40_bytes():
    assert lxif._ifreq() == bytearray(40)
    assert lxif._ifreq("eth1") == bytearray(ifreq(b"eth1"))
    assert lxif._ifreq("a", b"\x01\x02\x03\x04") == bytearray(ifreq(b"a", b"\x01\x02\x03\x04"))
    assert lxif._ifreq("", bytes(range(1, 25))) == bytearray(bytes(16) + bytes(range(1, 25)))


def test_lx_ioctl_asks_with_the_ifreq_and_returns_the_kernel_s_answer(kernel):
    b = lxif.lx_ioctl(5, lxif.SIOCGIFMTU, "eth1")
    assert kernel.asked == [(5, lxif.SIOCGIFMTU, ifreq(b"eth1"))]
    assert b == bytearray(ifreq(b"eth1", struct.pack("i", 9000)))
    lxif.lx_ioctl(5, lxif.SIOCGIFFLAGS)
    assert kernel.asked[1] == (5, lxif.SIOCGIFFLAGS, bytes(40))


def test_lx_name_asks_by_index_and_returns_the_name_without_its_nuls(kernel):
    assert lxif.lx_name(3, 7) == NAME
    assert kernel.asked == [(3, lxif.SIOCGIFNAME, ifreq(b"", struct.pack("i", 7)))]


def test_lx_link_is_the_name_flags_and_mtu_by_index(kernel):
    assert lxif.lx_link(3, 7) == (NAME, 0x9043, 9000)
    padded = NAME.encode()
    assert kernel.asked == [(3, lxif.SIOCGIFNAME, ifreq(b"", struct.pack("i", 7))),
                            (3, lxif.SIOCGIFFLAGS, ifreq(padded)),
                            (3, lxif.SIOCGIFMTU, ifreq(padded))]


def test_lx_link_of_an_interface_gone_is_enodev(kernel):
    with pytest.raises(OSError) as e:
        lxif.lx_link(3, 8)
    assert e.value.errno == errno.ENODEV
    assert len(kernel.asked) == 1
