"""Helpers for the unit tests: a fake clock, fake Ethernet interfaces on a
real Stack, frame injection, and a two-interface router topology."""

import ipaddress

from scapy.layers.inet import IP
from scapy.layers.l2 import ARP, Ether

from iopkt.net.ether import ether_ifattach, mac_aton
from iopkt.net.ifnet import CAP_NAMES, IFF_RUNNING, Ifnet

ALL_CAPS = sum(bit for bit, _ in CAP_NAMES)


def aton(s: str) -> int:
    return int(ipaddress.IPv4Address(s))


class FakeClock:
    """A callable clock the test moves by hand."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, dt: float) -> None:
        self.now += dt


def fake_if(stack, unit: int, mac: str, addr: str | None = None, plen: int = 24,
            devkey: str = "", mtu: int = 1500):
    """An attached, up and running Ethernet interface fk<unit> whose
    transmitted frames land in `ifp.sent` (bytes), with their offload
    fields (csum_flags, csum_data, segsz) in `ifp.sent_meta`. It can do
    every IPv4 offload (`ifp.set_capenable` turns them on); none is on.
    `devkey` names the device behind it (a remount gets its config back);
    `mtu` is the MTU its driver gives it."""
    ifp = Ifnet("fk", unit, "fake")
    ifp.if_devkey = devkey
    ifp.mtu = mtu
    ether_ifattach(ifp, mac_aton(mac))
    stack.if_attach(ifp)
    stack.if_up(ifp)
    ifp.flags |= IFF_RUNNING
    ifp.sent = []
    ifp.sent_meta = []
    ifp.capabilities = ALL_CAPS
    ifp.if_ioctl = lambda ifp, cmd, data: None

    def transmit(ifp, pkts):
        for m in pkts:
            ifp.sent.append(m.tobytes())
            ifp.sent_meta.append((m.csum_flags, m.csum_data, m.segsz) if m.csum_flags
                                 else (0, 0, 0))
            stack.pool.freem(m)

    ifp.if_transmit = transmit
    if addr is not None:
        stack.ip.add_address(ifp, aton(addr), plen)
    return ifp


def inject(ifp, *frames) -> None:
    """Receive `frames` (bytes or scapy packets, or mbufs already made) on
    `ifp` as one burst."""
    pool = ifp.stack.pool
    pkts = []
    for f in frames:
        m = f if hasattr(f, "pkt_len") else pool.from_bytes(bytes(f))
        assert m is not None
        m.rcvif = ifp
        pkts.append(m)
    ifp.if_input(ifp, pkts)


def take(ifp) -> list:
    """The frames `ifp` sent since the last take(), parsed by scapy."""
    out = [Ether(b) for b in ifp.sent]
    ifp.sent.clear()
    return out


class Router:
    """Two fake interfaces and a host on each side:

        H0 10.0.0.2 --- fk0 10.0.0.1/24  [stack]  fk1 10.0.1.1/24 --- H1 10.0.1.2
    """

    MAC0 = "02:00:00:00:00:01"
    MAC1 = "02:00:00:00:01:01"
    H0_MAC = "02:aa:00:00:00:02"
    H1_MAC = "02:bb:00:00:01:02"
    IP0, IP1 = "10.0.0.1", "10.0.1.1"
    H0, H1 = "10.0.0.2", "10.0.1.2"

    def __init__(self, stack, clock):
        self.stack = stack
        self.clock = clock
        self.if0 = fake_if(stack, 0, self.MAC0, self.IP0)
        self.if1 = fake_if(stack, 1, self.MAC1, self.IP1)

    def learn(self, ifp, host_ip: str, host_mac: str) -> None:
        """Teach the stack a neighbour by an ARP reply addressed to it."""
        ours = ifp.in_addrs[0].addr
        inject(ifp, Ether(dst=ifp.mac_str(), src=host_mac) / ARP(
            op=2, hwsrc=host_mac, psrc=host_ip, hwdst=ifp.mac_str(),
            pdst=str(ipaddress.IPv4Address(ours))))
        assert ifp.llinfo[aton(host_ip)].mac == mac_aton(host_mac)
        ifp.sent.clear()

    def from_h0(self, ip_pkt):
        """An Ethernet frame H0 -> router carrying `ip_pkt`."""
        return Ether(dst=self.MAC0, src=self.H0_MAC) / ip_pkt

    def from_h1(self, ip_pkt):
        return Ether(dst=self.MAC1, src=self.H1_MAC) / ip_pkt

    def send0(self, ip_pkt):
        inject(self.if0, self.from_h0(ip_pkt))

    def send1(self, ip_pkt):
        inject(self.if1, self.from_h1(ip_pkt))

    def eth0(self) -> bytes:
        """The Ethernet header of an IPv4 frame H0 -> router."""
        return bytes(Ether(dst=self.MAC0, src=self.H0_MAC, type=0x0800))


def ip_of(frame) -> IP:
    """The IP layer of a parsed frame (asserts there is one)."""
    assert IP in frame, frame.summary()
    return frame[IP]
