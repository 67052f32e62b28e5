"""devnp-afpacket: a native io-pkt style driver whose "NIC" is an existing
Linux interface (a veth end, a real NIC), driven through an AF_PACKET
socket with PACKET_MMAP rings.

    -d afpacket ifname=veth1[,netns=NS]

The socket is made inside the interface's namespace (netns.inside: only
the attaching thread visits it, the stack stays in its own) and bound to
that one interface. It is the driver's "interrupt", so receive runs in the
stack thread: frames are taken from the RX ring, each copied straight into
a pooled mbuf cluster (the slot goes back to the kernel at once), and
handed to if_input in bursts of at most `burst` frames. Transmit copies
each frame of a burst into the next free slot of the TX ring and kicks the
ring with one send() per burst; the kernel then sends every slot marked
SEND_REQUEST. Nothing here blocks: the socket is non-blocking, the kick is
MSG_DONTWAIT, and a full TX ring puts the rest on if_snd (IFF_OACTIVE) and
waits for EPOLLOUT.

Ring version (ring=v2|v3). A TPACKET_V2 RX slot is handed to us as soon as
its frame is in it. A TPACKET_V3 ring packs variable-sized frames into
blocks, but hands a block over only when it is full or its timeout
(blocktmo, ms) expires: that timeout is latency. Measured through two
interfaces (iperf3 TCP 3 s each way, ping every 20 ms, stack on one core):
v3 with a 1 ms timeout gave ping RTTs of 1.2-1.8 ms (5-9 ms with the
kernel's default timeout, in the prototype) against 0.33 ms for v2, and
the same throughput
within this VM's noise (offload on: 5.9-8.3 against 5.5-6.7 Gbit/s; off:
1.02-1.18 against 1.04-1.36), so v2 is the default. TX slots are
fixed-size frames in both versions.

Ring sizes. v2 frames are fixed-size, so one frame size serves every
frame: wire-sized (framesize 2048) without offload, a 64 KB TCP
super-frame with it (65632: 76 bytes of slot header and virtio header in
front of 65549). The ring is kernel memory, pinned: nicinfo shows its
size (ring_bytes) and layout. Blocks are powers of two pages holding
whole frames, as few bytes in all as the frame count allows (ring_layout).
Defaults, measured the same way: rxframes 2048 without offload (4 MB; with
512 the ring dropped about 10,000 frames in 3 s of iperf3, as many as TCP
retransmitted, since a veth peer's bursts arrive all at once; 2048 and
8192 dropped none), 128 with offload (135 after rounding to 1 MB blocks: 9
MB, no drops); txframes 256 (512 KB) and 64 (70: 5 MB). A frame longer
than a ring frame is cut short by the kernel (tp_snaplen < tp_len):
counted as too_long and dropped, and the ring goes on.

The virtio-net header (PACKET_VNET_HDR) is always on, whatever `offload`
says, because veth and most NICs hand AF_PACKET frames whose TCP/UDP
checksum is still partial (CHECKSUM_PARTIAL: the link partner's TX
checksum offload, or GSO): without the header we could not tell them from
good frames and would forward wrong checksums. With offload=1 (the
default, as devnp-tap) the header's facts become the packet header's
csum_flags/csum_data/segsz (vnet.py) and the interface advertises TSO4,
TSO6 and TCP/UDP checksum offload, so 64 KB super-frames cross whole in both
directions (TX writes the header into the slot too). With offload=0 the
interface advertises nothing: a partial checksum is completed here on
receive (nicinfo: "Checksums completed in software"), and a super-frame
the peer sends (its TSO/GSO is on) cannot be refused: it is cut into
segments here when it fits a ring frame (framesize >= 65632; counted as
"Super-frames segmented in software"), else it is truncated by the
kernel and dropped as too_long (said once in the log: turn TSO/GSO off on
the peer, or use offload=1). The same rules apply to one capability
turned off with ifconfig (-tso4, -tso6, -tcp4csum, ...).

The TX ring is set up with PACKET_LOSS: a malformed slot is skipped
instead of wedging the ring in TP_STATUS_WRONG_FORMAT. We never write one
knowingly (a frame longer than a slot is dropped before, as txerror); one
the kernel skips anyway, such as a GSO header some kernels refuse, shows
as a kick that sent fewer bytes than were written (nicinfo: "Transmit
kicks with frames refused"). The socket has PACKET_IGNORE_OUTGOING (it
does not see what it sent), and is bound to the interface only after the
rings exist (made with protocol 0, bound with ETH_P_ALL), so no other
interface's traffic ever lands in the ring.

Each TX frame is copied by the kernel into the skb it builds (the virtio
header's hdr_len says the whole frame is header) rather than referenced as
page fragments of the ring: a referenced slot is handed back (AVAILABLE)
when the skb is orphaned, and veth hands skbs to the peer's IP layer,
which orphans them while TCP may still hold the pages; the slot written
again would change bytes already received. We could not make that happen
(SHA-256 checked TCP streams through a 2-slot TX ring and a slow reader
arrived intact either way), but the copy costs nothing we can measure:
iperf3 through two interfaces gave 4.2-5.2 Gbit/s referenced and 5.2-10.1
copied (offload on), 0.6-1.0 against 0.8-1.2 (offload off).

Link state and MTU follow the Linux interface: a 1 s callout reads its
flags and MTU (SIOCGIFNAME/SIOCGIFFLAGS/SIOCGIFMTU on the socket, which
answers in the socket's namespace). IFF_UP and IFF_RUNNING (carrier) make
ifp.link_state up; down, the interface stops transmitting (ether_output
drops as "down") until it is up again. The kernel also reports a downed
interface on the socket (EPOLLERR, ENETDOWN), which triggers the same
check at once. An interface that disappears (deleted, moved to another
namespace: SIOCGIFNAME says ENODEV, send() ENXIO) is link loss:
stack.link_lost. PACKET_STATISTICS (tp_packets, tp_drops and, with v3,
tp_freeze_q_cnt: the kernel resets them when read) are summed by the same
callout and shown in nicinfo.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
import struct

from iopkt.kern.loop import EPOLLIN, EPOLLOUT
from iopkt.kern.mbuf import (
    M_CSUM_L4,
    M_CSUM_TSO,
    MJUMBYTES,
    M_CSUM_TCPv4,
    M_CSUM_TCPv6,
    M_CSUM_TSOv4,
    M_CSUM_TSOv6,
)
from iopkt.net import vnet
from iopkt.net.ether import ETHER_HDR_LEN
from iopkt.net.ifnet import (
    IFCAP_CSUM_L4,
    IFF_OACTIVE,
    IFF_RUNNING,
    IFF_UP,
    LINK_STATE_DOWN,
    LINK_STATE_UP,
    SIOCSIFCAP,
    IFCAP_TSOv4,
    IFCAP_TSOv6,
    Ifnet,
    if_transmit,
    rx_csum_sw,
)
from iopkt.netinet.in_offload import in_undefer_cksum, tcp_segment, tso_header_len

from .lxif import LX_IFF_RUNNING, LX_IFF_UP, lx_link
from .packet_mmap import (
    PACKET_STATISTICS,
    SOL_PACKET,
    TP_STATUS_CSUMNOTREADY,
    TP_STATUS_KERNEL,
    TP_STATUS_SEND_REQUEST,
    TP_STATUS_USER,
    TP_STATUS_VLAN_VALID,
    TPACKET_V3,
    TX_BUSY,
    VLAN_SLACK,
    VNET_HDR_LEN,
    Ring,
)

log = logging.getLogger("iopkt")
MAC_RE = re.compile(r"[0-9A-Fa-f]{1,2}(:[0-9A-Fa-f]{1,2}){5}")

LINK_LOST_ERRNOS = (errno.ENXIO, errno.ENODEV, errno.EBADFD)
CSUM_CAPS = IFCAP_CSUM_L4           # TCP and UDP checksums, both families, both ways
EPOLLERR = 0x008
KICK_RETRY = 0.002                  # s: a kick the kernel could not finish is tried again


class AfpSoftc:
    """The driver's private state for one interface (BSD's softc)."""

    def __init__(self, stack, ifp: Ifnet, sock, ring: Ring, ifindex: int, lxname: str,
                 burst: int, offload: bool, blocktmo: int = 0):
        self.stack = stack
        self.ifp = ifp
        self.sock = sock
        self.fd = sock.fileno()
        self.ring = ring
        self.geom = ring.geom
        self.v3 = ring.geom.version == TPACKET_V3
        self.ifindex = ifindex
        self.lxname = lxname
        self.lx_mtu = ifp.mtu
        self.burst = burst
        self.offload = offload
        self.blocktmo = blocktmo
        self.pool = pool = stack.pool
        self.room = pool.mclbytes - pool.headroom
        self.rx_max = ring.geom.rx_room(ring.framesize)
        self.tx_max = ring.geom.tx_room(ring.framesize)
        self.query_link = lambda: lx_link(self.fd, self.ifindex)     # tests replace it
        # Ring positions: the next RX slot (v2) or block (v3) we look at,
        # and for v3 where we are in the block being read; the next TX slot.
        self._rx_i = 0
        self._blk_left = 0
        self._pkt_off = 0
        self._tx_i = 0
        # Counters (nicinfo).
        self.rx_intrs = 0
        self.tx_kicks = self.tx_kick_errors = self.tx_ring_full = self.tx_blocked = 0
        self.rx_too_long = self.tx_too_long = 0
        self.tx_refused = 0             # kicks that sent less than we wrote (PACKET_LOSS)
        self._unkicked = 0              # bytes written since the last kick (-1: unknown)
        self.rx_super = self.rx_partial = self.tx_super = 0
        self.rx_blocks = 0
        self.tp_packets = self.tp_drops = self.tp_freeze = 0
        self.sock_errors = 0
        self.link_changes = 0
        self.promisc = False
        # Offload work to do here on receive (ioctl sets them from capenable).
        self.rx_sw = M_CSUM_L4          # partial checksums to complete here
        self.rx_seg = M_CSUM_TSO        # super-frames to cut here
        self._said = set()
        self._poll_co = None
        self._kick_co = None
        self._lost = False

    # -- receive: the "interrupt" ----------------------------------------
    def intr(self, events: int) -> None:
        if events & EPOLLERR:
            self._sock_error()
            if self.fd < 0 or self._lost:
                return
        if events & EPOLLOUT:
            self._tx_ready()
        if events & EPOLLIN:
            self.rx_intrs += 1
            if self.v3:
                self._rx_v3()
            else:
                self._rx_v2()

    def _rx_v2(self) -> None:
        """Take up to `burst` frames from the RX ring. The common frame (no
        offload work, no VLAN tag, whole, fitting a cluster) is one unpack
        of the slot header, one copy into the cluster and the slot handed
        back; anything else goes through _rx_slow.

        Copy, not lend: measured in a loop (get, fill, free; one core of
        this VM), copying a frame from its slot into a pooled cluster costs
        0.50-0.72 us against 0.52-0.56 us for lending the slot as external
        storage (get_ext, and the free callback handing the slot back):
        about 0.15 us more for 1514 bytes, nothing for 60, 3.3 us more for
        a 64 KB super-frame (3.8 against 0.5; about 4 % of a core at 7
        Gbit/s). What lending would cost instead: the kernel fills the v2
        ring strictly in order, so one slot lent to a packet that waits
        (ARP hold queue, a full if_snd) stops reception for the whole ring
        until it is freed (the frames behind it are dropped); detach would
        have to wait for every slot to come back before unmapping; and
        get_ext and ether_input take only bytearray storage, not the
        mapping. A copied slot goes back at once."""
        ring = self.ring
        mv, st = ring.mv, ring.u32
        unpack = self.geom.rx_hdr.unpack_from
        offs = ring.rx_offs
        nslots = len(offs)
        i = self._rx_i
        ifp = self.ifp
        get = self.pool.get
        h = self.pool.headroom
        room = self.room
        slow = self._rx_slow
        pkts = []
        for _ in range(self.burst):
            off = offs[i]
            status, tlen, snap, mac = unpack(mv, off)
            if not status & TP_STATUS_USER:
                break
            d = off + mac
            m = get()
            if m is not None:
                if snap <= room and snap == tlen and not status & (
                        TP_STATUS_CSUMNOTREADY | TP_STATUS_VLAN_VALID):
                    m.buf[h:h + snap] = mv[d:d + snap]
                    m.len = m.pkt_len = snap
                    m.rcvif = ifp
                    pkts.append(m)
                else:
                    slow(m, d, status, tlen, snap, pkts)
            else:
                ifp.ipackets += 1
                ifp.input_discard(None, "nobufs")
            st[off >> 2] = TP_STATUS_KERNEL
            i += 1
            if i == nslots:
                i = 0
        self._rx_i = i
        if pkts:
            ifp.if_input(ifp, pkts)

    def _rx_v3(self) -> None:
        """The same from v3 blocks: a block is ours while its block_status
        has TP_STATUS_USER; its num_pkts frames follow one another through
        tp_next_offset; the whole block goes back when all are read. A
        burst may end inside a block: we go on from there next time."""
        ring = self.ring
        mv, st = ring.mv, ring.u32
        unpack = self.geom.rx_hdr.unpack_from
        blocks = ring.rx_blocks
        ifp = self.ifp
        get = self.pool.get
        h = self.pool.headroom
        room = self.room
        slow = self._rx_slow
        left, poff = self._blk_left, self._pkt_off
        pkts = []
        n = self.burst
        while n:
            if not left:
                b = blocks[self._rx_i]
                if not st[(b + 8) >> 2] & TP_STATUS_USER:
                    break
                self.rx_blocks += 1
                left = st[(b + 12) >> 2]                # num_pkts
                poff = b + st[(b + 16) >> 2]            # offset_to_first_pkt
                if not left:
                    self._release_block()
                    continue
            nxt, snap, tlen, status, mac = unpack(mv, poff)
            d = poff + mac
            m = get()
            if m is not None:
                if snap <= room and snap == tlen and not status & (
                        TP_STATUS_CSUMNOTREADY | TP_STATUS_VLAN_VALID):
                    m.buf[h:h + snap] = mv[d:d + snap]
                    m.len = m.pkt_len = snap
                    m.rcvif = ifp
                    pkts.append(m)
                else:
                    slow(m, d, status, tlen, snap, pkts)
            else:
                ifp.ipackets += 1
                ifp.input_discard(None, "nobufs")
            n -= 1
            left -= 1
            poff += nxt
            if not left:
                self._release_block()
        self._blk_left, self._pkt_off = left, poff
        if pkts:
            ifp.if_input(ifp, pkts)

    def _release_block(self) -> None:
        ring = self.ring
        b = ring.rx_blocks[self._rx_i]
        ring.u32[(b + 8) >> 2] = TP_STATUS_KERNEL
        self._rx_i = (self._rx_i + 1) % len(ring.rx_blocks)

    def _rx_slow(self, m, d: int, status: int, tlen: int, snap: int, pkts: list) -> None:
        """A frame that is cut short, carries a VLAN tag, does not fit a
        cluster or comes with offload facts. Consumes `m`; appends what
        goes up (one frame, or its segments) to `pkts`."""
        ifp = self.ifp
        pool = self.pool
        mv = self.ring.mv
        m.rcvif = ifp
        if snap < tlen or snap > self.room + MJUMBYTES:
            self.rx_too_long += 1
            ifp.ipackets += 1
            ifp.input_discard(m, "too_long")
            self._say_too_long(tlen)
            return
        if status & TP_STATUS_VLAN_VALID:
            # The kernel took an 802.1Q tag off into tp_vlan_tci: a VLAN
            # frame, which this router does not do (on the wire its type is
            # 0x8100).
            ifp.ipackets += 1
            ifp.input_discard(m, "unknown_ethertype")
            return
        h = pool.headroom
        room = self.room
        if snap <= room:
            m.buf[h:h + snap] = mv[d:d + snap]
            m.len = snap
        else:
            j = pool.get_jumbo()
            if j is None:
                ifp.ipackets += 1
                ifp.input_discard(m, "nobufs")
                return
            m.buf[h:h + room] = mv[d:d + room]
            m.len = room
            rest = snap - room
            j.buf[0:rest] = mv[d + room:d + snap]
            j.len = rest
            m.next = j
        m.pkt_len = snap
        if status & TP_STATUS_CSUMNOTREADY:
            if not vnet.decode(m, mv, d - VNET_HDR_LEN):
                ifp.ipackets += 1
                ifp.input_discard(m, "bad_offload")
                return
            cf = m.csum_flags
            if cf & M_CSUM_TSO:
                self.rx_super += 1
                if cf & self.rx_seg:            # that family's TSO is off
                    self._rx_segment(m, pkts)
                    return
            elif cf:
                self.rx_partial += 1
                if cf & self.rx_sw:             # that Rx checksum offload is off
                    in_undefer_cksum(m, ETHER_HDR_LEN)
                    ifp.sw_csum += 1
        pkts.append(m)

    def _rx_segment(self, m, pkts: list) -> None:
        """A super-frame came in while tso4 (tso6) is off (offload=0 among
        others): cut it into segments here, each with its own complete
        checksum (or left partial while tcp4csum-rx, tcp6csum-rx, is on), as the kernel
        would have before handing it to a TAP. Consumes `m`."""
        ifp, pool = self.ifp, self.pool
        eh = bytes(m.view[m.off:m.off + ETHER_HDR_LEN])
        pool.adj(m, ETHER_HDR_LEN)
        hl = tso_header_len(m)
        if not hl:
            ifp.ipackets += 1
            ifp.input_discard(m, "bad_offload")
            return
        tcp = M_CSUM_TCPv6 if m.csum_flags & M_CSUM_TSOv6 else M_CSUM_TCPv4
        segs = tcp_segment(pool, m, hl, not tcp & self.rx_sw)
        if segs is None:
            ifp.ipackets += 1
            ifp.input_discard(None, "nobufs")
            return
        ifp.sw_tso += 1
        ifp.sw_tso_segs += len(segs)
        for s in segs:
            s = pool.prepend(s, ETHER_HDR_LEN)
            if s is None:
                ifp.ipackets += 1
                ifp.input_discard(None, "nobufs")
                continue
            s.buf[s.off:s.off + ETHER_HDR_LEN] = eh
            s.rcvif = ifp
            pkts.append(s)

    def _say_too_long(self, tlen: int) -> None:
        if "too_long" in self._said:
            return
        self._said.add("too_long")
        gso = tlen > self.lx_mtu + ETHER_HDR_LEN + VLAN_SLACK
        log.warning("%s: a %d-byte frame does not fit a %d-byte ring frame (%d bytes of "
                    "data): dropped as too_long%s (said once)", self.ifp.name, tlen,
                    self.ring.framesize, self.rx_max,
                    "; it is a super-frame from the peer's TSO/GSO: turn that off on "
                    "the peer (ethtool -K PEER tso off gso off) or mount with offload=1"
                    if gso and not self.offload else
                    "; give a larger framesize" if gso or tlen > self.rx_max else "")

    # -- transmit --------------------------------------------------------
    def transmit(self, ifp: Ifnet, pkts: list) -> None:
        """if_transmit: with nothing queued and the ring not full, copy the
        burst into the TX ring and kick it once. What does not fit goes on
        if_snd in order and start() waits for EPOLLOUT. Consumes the mbufs
        in `pkts`."""
        if ifp.if_snd.len or ifp.flags & IFF_OACTIVE:
            if_transmit(ifp, pkts)
            return
        k = self._txfill(pkts)
        if k < len(pkts):
            if not ifp.flags & IFF_RUNNING:     # the kick found the link down or gone
                for m in pkts[k:]:
                    ifp.output_discard(m, "link_lost" if self._lost else "down")
                return
            self._tx_full()
            if_transmit(ifp, pkts[k:])          # queued: OACTIVE, start() waits

    def _txfill(self, pkts: list) -> int:
        """Copy frames into free TX slots, in order, then kick the ring
        once. Returns how many of `pkts` were consumed (written, or dropped
        and counted); the rest are still the caller's."""
        ring = self.ring
        mv, st = ring.mv, ring.u32
        offs = ring.tx_offs
        nslots = len(offs)
        j = self._tx_i
        geom = self.geom
        sto = geom.tx_status
        dat = geom.tx_data + VNET_HDR_LEN
        plain = geom.tx_plain.pack_into
        free = self.pool.free
        cap = self.tx_max
        ifp = self.ifp
        pending = sent = nbytes = pbytes = 0
        k = 0
        for m in pkts:
            slot = offs[j]
            if st[(slot + sto) >> 2] & TX_BUSY:
                # Full. If we wrote frames since the last kick, kick now
                # (the kernel sends them and may hand slots back at once)
                # and look again; otherwise the ring is really full.
                if not pending:
                    break
                pending = 0
                if self._unkicked >= 0:
                    self._unkicked += pbytes
                pbytes = 0
                if not self._kick() or st[(slot + sto) >> 2] & TX_BUSY:
                    break
            n = m.pkt_len
            if m.next is None and not m.csum_flags and n <= cap:
                d = slot + dat
                o = m.off
                mv[d:d + n] = m.view[o:o + n]
                plain(mv, slot, n + VNET_HDR_LEN, n)
                free(m)
            elif not self._put_slow(m, slot, n):
                k += 1
                continue
            st[(slot + sto) >> 2] = TP_STATUS_SEND_REQUEST
            j += 1
            if j == nslots:
                j = 0
            pending += 1
            sent += 1
            nbytes += n
            pbytes += n
            k += 1
        self._tx_i = j
        ifp.opackets += sent
        ifp.obytes += nbytes
        if pending:
            if self._unkicked >= 0:
                self._unkicked += pbytes
            self._kick()
        return k

    def _put_slow(self, m, slot: int, n: int) -> bool:
        """Write a chain or a frame with offload work into `slot`. False
        (frame dropped and counted) when it does not fit a slot. Consumes
        `m` either way."""
        ifp = self.ifp
        if n > self.tx_max:
            self.tx_too_long += 1
            ifp.output_discard(m, "txerror")
            return False
        mv = self.ring.mv
        geom = self.geom
        at = slot + geom.tx_data
        d = at + VNET_HDR_LEN
        x = m
        while x is not None:
            if x.len:
                mv[d:d + x.len] = x.view[x.off:x.off + x.len]
                d += x.len
            x = x.next
        if m.csum_flags:
            vnet.encode(m, mv, at)
            if m.csum_flags & M_CSUM_TSO:
                self.tx_super += 1
            geom.tx_lenfmt.pack_into(mv, slot + geom.tx_len, n + VNET_HDR_LEN)
            struct.pack_into("<H", mv, at + 2, n)      # hdr_len: the kernel copies it all
        else:
            geom.tx_plain.pack_into(mv, slot, n + VNET_HDR_LEN, n)
        self.pool.freem(m)
        return True

    def _kick(self) -> bool:
        """One send() that makes the kernel send every slot marked
        SEND_REQUEST. False when it failed (what is left is sent by a
        later kick: a callout tries again shortly).

        send() answers the bytes it sent. Fewer than we wrote since the
        last kick means the kernel skipped a slot it would not send
        (PACKET_LOSS: a frame it found malformed, e.g. a GSO header some
        kernels refuse, OFFLOAD.md) or stopped early at the socket's send
        buffer; the ring tells which: in the second case slots are still
        SEND_REQUEST, and are kicked again."""
        self.tx_kicks += 1
        try:
            sent = self.sock.send(b"", socket.MSG_DONTWAIT)
        except OSError as e:
            self.tx_kick_errors += 1
            self._unkicked = -1                 # unknown now: frames wait in the ring
            err = e.errno
        else:
            want, self._unkicked = self._unkicked, 0
            if 0 <= sent < want:
                if self._tx_waiting():
                    self._retry_kick()
                else:
                    self.tx_refused += 1
                    if "refused" not in self._said:
                        self._said.add("refused")
                        log.warning("%s: the kernel skipped %d bytes of frames it would not "
                                    "send from the TX ring (counted in nicinfo; said once)",
                                    self.ifp.name, want - sent)
            return True
        if err in LINK_LOST_ERRNOS:
            self._link_lost(err)
        elif err == errno.ENETDOWN:
            self._check_link()
        else:
            # EAGAIN/ENOBUFS: the peer dropped one (it is down, or its
            # queue is full) and the kernel keeps it at the ring's head.
            self._retry_kick()
        return False

    def _tx_waiting(self) -> bool:
        """Is any TX slot still waiting for the kernel (SEND_REQUEST)?"""
        st = self.ring.u32
        sto = self.geom.tx_status
        return any(st[(o + sto) >> 2] == TP_STATUS_SEND_REQUEST for o in self.ring.tx_offs)

    def _retry_kick(self) -> None:
        if self._kick_co is None and self.fd >= 0 and not self._lost:
            self._kick_co = self.stack.timeout(KICK_RETRY, self._kick_retry)

    def _kick_retry(self) -> None:
        self._kick_co = None
        if self.fd < 0 or not self.ifp.flags & IFF_RUNNING:
            return
        if self._kick() and self.ifp.flags & IFF_OACTIVE:
            self._tx_ready()

    def _tx_full(self) -> None:
        """The TX ring is full: if_snd holds the rest until the kernel
        hands a slot back (EPOLLOUT)."""
        self.tx_ring_full += 1
        ifp = self.ifp
        if not ifp.flags & IFF_OACTIVE and self.fd >= 0 and not self._lost:
            ifp.flags |= IFF_OACTIVE
            self.tx_blocked += 1
            self.stack.interrupt_modify(self.fd, EPOLLIN | EPOLLOUT)

    def start(self, ifp: Ifnet) -> None:
        """if_start: move what waits on if_snd into the ring, in order, a
        ring's worth at a time."""
        ifq = ifp.if_snd
        nslots = len(self.ring.tx_offs)
        while ifq.len and ifp.flags & IFF_RUNNING and not ifp.flags & IFF_OACTIVE:
            batch = []
            while len(batch) < nslots:
                m = ifq.dequeue()
                if m is None:
                    break
                batch.append(m)
            k = self._txfill(batch)
            if k < len(batch):
                if not ifp.flags & IFF_RUNNING:
                    for m in batch[k:]:
                        ifp.output_discard(m, "link_lost" if self._lost else "down")
                    return
                for m in reversed(batch[k:]):
                    ifq.prepend(m)
                self._tx_full()
                return

    def _tx_ready(self) -> None:
        ifp = self.ifp
        if ifp.flags & IFF_OACTIVE:
            ifp.flags &= ~IFF_OACTIVE
            if self.fd >= 0 and not self._lost:
                self.stack.interrupt_modify(self.fd, EPOLLIN)
        if ifp.flags & IFF_RUNNING:
            self.start(ifp)

    # -- link ----------------------------------------------------------------
    def _sock_error(self) -> None:
        """EPOLLERR: read (and so clear) the socket's error. ENETDOWN is
        the interface going down or away: look at it now."""
        try:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError as e:
            err = e.errno
        self.sock_errors += 1
        if err in LINK_LOST_ERRNOS:
            self._link_lost(err)
        elif err:
            self._check_link()

    def _poll(self) -> None:
        """The 1 s callout: the interface's flags and MTU, the ring's
        statistics."""
        self._poll_co = None
        if self.fd < 0 or self._lost:
            return
        self._poll_co = self.stack.timeout(1.0, self._poll)
        self.read_stats()
        self._check_link()

    def _check_link(self) -> None:
        try:
            name, flags, mtu = self.query_link()
        except OSError as e:
            if e.errno in LINK_LOST_ERRNOS:
                self._link_lost(e.errno)
            return
        ifp = self.ifp
        self.lxname = name
        if mtu != self.lx_mtu:
            self.lx_mtu = mtu
            new = min(mtu, self.rx_max - ETHER_HDR_LEN - VLAN_SLACK, 9000)
            log.info("%s: %s's MTU is now %d%s", ifp.name, name, mtu,
                     f"; ours {new}, what a {self.ring.framesize}-byte ring frame carries"
                     if new != mtu else "")
            ifp.mtu = max(68, new)
        self.set_link(bool(flags & LX_IFF_UP and flags & LX_IFF_RUNNING), flags)

    def set_link(self, up: bool, flags: int = 0) -> None:
        """Follow the Linux interface: up (admin up and carrier) or down."""
        ifp = self.ifp
        if up and ifp.link_state != LINK_STATE_UP:
            if ifp.link_state == LINK_STATE_DOWN:
                log.info("%s: link up (%s)", ifp.name, self.lxname)
                self.link_changes += 1
            ifp.link_state = LINK_STATE_UP
            if ifp.flags & IFF_UP:
                ifp.flags |= IFF_RUNNING
                self._kick()                    # what waited in the ring
                self._tx_ready()
        elif not up and ifp.link_state != LINK_STATE_DOWN:
            log.info("%s: link down (%s %s)", ifp.name, self.lxname,
                     "is down" if not flags & LX_IFF_UP else "has no carrier")
            self.link_changes += 1
            ifp.link_state = LINK_STATE_DOWN
            ifp.flags &= ~IFF_RUNNING
            self._tx_ready()                    # (clears OACTIVE; sends nothing)
            ifp.if_purge("down")

    def _link_lost(self, err: int | None) -> None:
        if self._lost:
            return
        self._lost = True
        self.stack.interrupt_detach(self.fd)
        self._cancel()
        self.stack.link_lost(self.ifp, f"{self.lxname}: "
                             f"{os.strerror(err) if err else 'error'} (the interface is gone)")

    def read_stats(self) -> None:
        """Add PACKET_STATISTICS to our sums (reading resets them)."""
        if self.fd < 0:
            return
        size = 12 if self.v3 else 8
        try:
            raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, size)
        except OSError:
            return
        vals = struct.unpack(f"{size // 4}I", raw[:size])
        self.tp_packets += vals[0]
        self.tp_drops += vals[1]
        if self.v3:
            self.tp_freeze += vals[2]

    # -- offload -----------------------------------------------------------
    def ioctl(self, ifp: Ifnet, cmd, data):
        """if_ioctl: SIOCSIFCAP. The kernel cannot be told what to hand an
        AF_PACKET socket, so what is turned off is done here on receive:
        partial checksums completed, super-frames segmented."""
        if cmd != SIOCSIFCAP:
            raise OSError(f"{ifp.name}: ioctl {cmd} not supported")
        self.rx_sw = rx_csum_sw(data)
        self.rx_seg = (0 if data & IFCAP_TSOv4 else M_CSUM_TSOv4) | \
            (0 if data & IFCAP_TSOv6 else M_CSUM_TSOv6)

    # -- control -----------------------------------------------------------
    def init(self, ifp: Ifnet) -> None:
        if self.fd >= 0 and not self._lost and ifp.link_state == LINK_STATE_UP:
            ifp.flags |= IFF_RUNNING

    def stop(self, ifp: Ifnet) -> None:
        if ifp.flags & IFF_OACTIVE and self.fd >= 0 and not self._lost:
            self.stack.interrupt_modify(self.fd, EPOLLIN)
        ifp.flags &= ~(IFF_RUNNING | IFF_OACTIVE)
        ifp.if_purge("down")

    def _cancel(self) -> None:
        for co in (self._poll_co, self._kick_co):
            if co is not None:
                co.cancel()
        self._poll_co = self._kick_co = None

    def detach(self, ifp: Ifnet) -> None:
        """Unmap the rings and close the socket. Nothing of the ring is
        lent to the stack (frames are copied out), so nothing needs to
        come back first."""
        if self.fd >= 0:
            self.read_stats()
            self.stack.interrupt_detach(self.fd)
        self._cancel()
        self.ring.close()
        try:
            self.sock.close()
        except OSError:
            pass
        self.fd = -1

    def extra_info(self, ifp: Ifnet) -> dict:
        self.read_stats()
        ring = self.ring
        d = ring.describe()
        return {"driver": "devnp-afpacket (native, PACKET_MMAP rings, stack thread)",
                "linux_if": self.lxname, "linux_ifindex": self.ifindex,
                "linux_mtu": self.lx_mtu,
                "ring": "v3" if self.v3 else "v2", "rx_ring": d["rx"], "tx_ring": d["tx"],
                "ring_bytes": ring.nbytes, "frame_size": ring.framesize,
                "rx_frame_max": self.rx_max, "tx_frame_max": self.tx_max,
                **({"block_timeout_ms": self.blocktmo, "rx_blocks": self.rx_blocks}
                   if self.v3 else {}),
                "rx_burst": self.burst, "rx_interrupts": self.rx_intrs,
                "vnet_hdr": True, "offload": self.offload, "promisc": self.promisc,
                "ring_packets": self.tp_packets, "ring_drops": self.tp_drops,
                **({"ring_freezes": self.tp_freeze} if self.v3 else {}),
                "rx_frames_too_long": self.rx_too_long, "tx_frames_too_long": self.tx_too_long,
                "rx_superframes": self.rx_super, "rx_partial_csum": self.rx_partial,
                "tx_superframes": self.tx_super,
                "tx_kicks": self.tx_kicks, "tx_kick_errors": self.tx_kick_errors,
                "tx_kicks_with_frames_refused": self.tx_refused,
                "tx_ring_full": self.tx_ring_full, "tx_waits_for_slots": self.tx_blocked,
                "socket_errors": self.sock_errors, "link_changes": self.link_changes}
