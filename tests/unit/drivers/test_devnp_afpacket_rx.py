"""drivers/devnp_afpacket/devnp_afpacket.py: receive, the link, nicinfo,
over the rig of test_devnp_afpacket.py (the rings in a bytearray, the test
playing the kernel). Each test pins a rule with exact values: the frames
that went up, counters moved by the exact amount, the log's own words."""

import errno
import logging
import struct

import pytest
from test_devnp_afpacket import (
    BIG,
    ETH,
    NEEDS,
    UP,
    FakeSock,
    Nic,
    frame,
    hdr,
    l4_csum_ok,
    superframe,
    tcp_frame,
    udp_frame,
)

from devnp_afpacket import devnp_afpacket as afp
from devnp_afpacket import lxif
from devnp_afpacket import packet_mmap as pm
from devnp_afpacket.packet_mmap import TP_STATUS_CSUMNOTREADY, TP_STATUS_VLAN_VALID
from iopkt.kern.loop import EPOLLIN
from iopkt.kern.mbuf import MJUMBYTES, MbufPool
from iopkt.net import vnet
from iopkt.net.ifnet import (
    IFF_RUNNING,
    IFF_UP,
    LINK_STATE_DOWN,
    LINK_STATE_UP,
)

from offload_frames import expected_segments

ROOM = 2048 - 64                    # a cluster's room after the pool's headroom


def messages(caplog, word):
    return [r.getMessage() for r in caplog.records if word in r.getMessage()]


def hog_clusters(pool, leave=0):
    """Take every free cluster but `leave`: what a busy stack holds."""
    return [pool.get() for _ in range(len(pool._free) - leave)]


def give_back(pool, hog):
    for m in hog:
        pool.free(m)


# -- nicinfo ---------------------------------------------------------------------
COUNTERS = ["rx_intrs", "tx_kicks", "tx_kick_errors", "tx_ring_full", "tx_blocked",
            "rx_too_long", "tx_too_long", "tx_refused", "rx_super", "rx_partial", "tx_super",
            "rx_blocks", "sock_errors", "link_changes"]


def set_counters(sc):
    for i, name in enumerate(COUNTERS):
        setattr(sc, name, 101 + i)


def test_nicinfo_shows_each_v2_fact_under_its_name(stack):
    """extra_info of a v2 ring: every key, every value (distinct counters,
    so no two keys can be swapped unseen), and no v3 keys."""
    n = Nic(stack, framesize=2048, rxframes=8, txframes=4, opts="burst=5,offload=0")
    set_counters(n.sc)
    n.sock.stats = [7, 3, 9]
    assert n.sc.extra_info(n.ifp) == {
        "driver": "devnp-afpacket (native, PACKET_MMAP rings, stack thread)",
        "linux_if": "veth1", "linux_ifindex": 7, "linux_mtu": 1500, "ring": "v2",
        "rx_ring": "8 x 2048 B in 4 x 4 KB blocks", "tx_ring": "4 x 2048 B in 2 x 4 KB blocks",
        "ring_bytes": 6 * 4096, "frame_size": 2048, "rx_frame_max": 1972, "tx_frame_max": 2006,
        "rx_burst": 5, "rx_interrupts": 101, "vnet_hdr": True, "offload": False,
        "promisc": False, "ring_packets": 7, "ring_drops": 3,
        "rx_frames_too_long": 106, "tx_frames_too_long": 107, "rx_superframes": 109,
        "rx_partial_csum": 110, "tx_superframes": 111, "tx_kicks": 102,
        "tx_kick_errors": 103, "tx_kicks_with_frames_refused": 108, "tx_ring_full": 104,
        "tx_waits_for_slots": 105, "socket_errors": 113, "link_changes": 114}


def test_nicinfo_of_a_v3_ring_adds_its_blocks_and_freezes(stack):
    """extra_info of a v3 ring: the block timeout, blocks read and ring
    freezes besides the rest."""
    n = Nic(stack, ring="v3", opts="blocktmo=4")
    set_counters(n.sc)
    n.sock.stats = [7, 3, 9]
    info = n.sc.extra_info(n.ifp)
    assert info["ring"] == "v3" and info["offload"] is True
    assert {k: info[k] for k in ("block_timeout_ms", "rx_blocks", "ring_freezes",
                                 "ring_packets", "ring_drops")} == {
        "block_timeout_ms": 4, "rx_blocks": 112, "ring_freezes": 9, "ring_packets": 7,
        "ring_drops": 3}
    assert len(info) == 33                      # the v2 keys and these three


# -- a softc as made, before build() sets it up ----------------------------------
def test_a_new_softc_starts_with_the_documented_defaults(stack, monkeypatch):
    """AfpSoftc's own defaults: block timeout 0, the interface's MTU as the
    Linux one, not promiscuous; partial checksums completed and
    super-frames segmented (complete checksums) until ioctl says otherwise;
    its link query asks lx_link with its fd and ifindex."""
    n = Nic(stack, ring="v3", framesize=BIG, rxframes=2, txframes=2, mtu=1400)
    sc = afp.AfpSoftc(stack, n.ifp, n.sock, n.ring, 9, "veth7", 64, True)
    info = sc.extra_info(n.ifp)
    assert (info["block_timeout_ms"], info["linux_mtu"], info["promisc"], info["offload"],
            info["linux_ifindex"], info["linux_if"]) == (0, 1400, False, True, 9, "veth7")
    calls = []
    monkeypatch.setattr(afp, "lx_link", lambda fd, i: calls.append((fd, i)) or ("x", 1, 2))
    assert sc.query_link() == ("x", 1, 2) and calls == [(n.sock.fileno(), 9)]
    f, h = superframe(3000, 1000)
    n.kernel.rx(tcp_frame(100), hdr(NEEDS, 0, 0, 0, 34, 16), TP_STATUS_CSUMNOTREADY)
    n.kernel.rx(f, h, TP_STATUS_CSUMNOTREADY)
    n.kernel.close_block()
    sc.intr(EPOLLIN)
    got = n.frames()
    assert got[1:] == [ETH + s for s in expected_segments(f[14:], 1000)]
    assert l4_csum_ok(got[0]) and n.meta == [(0, 0, 0)] * 4
    sc._cancel()                                # nothing scheduled: nothing to cancel
    assert sc._poll_co is None and sc._kick_co is None


# -- the fast path and the slow one ----------------------------------------------
@pytest.mark.parametrize("ring", ["v2", "v3"], ids=["v2", "v3"])
def test_a_whole_plain_frame_filling_a_cluster_takes_the_fast_path(stack, ring):
    """A plain frame of exactly a cluster's room is copied in the fast
    path: _rx_slow never runs."""
    n = Nic(stack, ring=ring, framesize=BIG, rxframes=2, txframes=2)
    slow = []
    real = n.sc._rx_slow
    n.sc._rx_slow = lambda *a: slow.append(a[3]) or real(*a)
    n.kernel.rx(frame(1, ROOM))
    n.kernel.rx(frame(2, ROOM + 1))
    if ring == "v3":
        n.kernel.close_block()
    n.sc.intr(EPOLLIN)
    assert n.frames() == [frame(1, ROOM), frame(2, ROOM + 1)]
    assert slow == [ROOM + 1]                   # only the one a cluster cannot hold


def test_a_cluster_sized_partial_frame_needs_no_jumbo(stack):
    """The slow path puts a frame of exactly a cluster's room in the
    cluster alone: with every jumbo cluster taken it still goes up."""
    n = Nic(stack, framesize=BIG, rxframes=2, txframes=2)
    pool = stack.pool
    jumbos = [pool.get_jumbo() for _ in range(pool.njumbo)]
    f = tcp_frame(ROOM - 54)
    n.kernel.rx(f, hdr(NEEDS, 0, 0, 0, 34, 16), TP_STATUS_CSUMNOTREADY)
    n.sc.intr(EPOLLIN)
    assert n.frames() == [f] and n.ifp.in_discards["nobufs"] == 0
    for j in jumbos:
        pool.free(j)


def test_the_vnet_header_is_read_only_for_a_partial_checksum(stack, monkeypatch):
    """A frame that takes the slow path without TP_STATUS_CSUMNOTREADY
    (longer than a cluster) goes up without vnet.decode being asked."""
    n = Nic(stack, framesize=BIG, rxframes=2, txframes=2)
    asked = []
    real = vnet.decode
    monkeypatch.setattr(vnet, "decode", lambda *a: asked.append(1) or real(*a))
    n.kernel.rx(frame(1, 3000), hdr(vnet.VIRTIO_NET_HDR_F_DATA_VALID))
    n.sc.intr(EPOLLIN)
    assert n.frames() == [frame(1, 3000)] and asked == [] and n.meta == [(0, 0, 0)]


def test_the_longest_frame_a_cluster_and_a_jumbo_hold_goes_up(stack):
    """With the largest ring frame (v2, 67600 bytes), a frame of exactly a
    cluster's room plus a jumbo cluster goes up; one byte more is
    too_long."""
    n = Nic(stack, framesize=67600, rxframes=2, txframes=1)
    n.kernel.rx(frame(1, ROOM + MJUMBYTES))
    n.kernel.rx(frame(2, ROOM + MJUMBYTES + 1))
    n.sc.intr(EPOLLIN)
    assert n.frames() == [frame(1, ROOM + MJUMBYTES)]
    assert n.sc.rx_too_long == 1 and n.ifp.in_discards["too_long"] == 1


# -- frames dropped on receive: each counted once, the mbuf freed ----------------
def test_each_receive_drop_counts_one_input_packet(stack):
    """too_long, a VLAN tag and a lying vnet header: each drop is one
    ipackets, its reason once, and the cluster is back in the pool."""
    n = Nic(stack, framesize=BIG, rxframes=8, txframes=2)
    pool = stack.pool
    kinds = [(frame(1), vnet.ZERO_HDR, 0, 70000, "too_long"),
             (frame(2), vnet.ZERO_HDR, TP_STATUS_VLAN_VALID, None, "unknown_ethertype"),
             (tcp_frame(100), hdr(NEEDS, 0, 0, 0, 34, 4000), TP_STATUS_CSUMNOTREADY, None,
              "bad_offload")]
    for k, (f, h, status, tlen, reason) in enumerate(kinds * 2):
        n.kernel.rx(f, h, status, tlen)
        n.sc.intr(EPOLLIN)
        assert n.ifp.ipackets == k + 1 and n.ifp.in_discards[reason] == 1 + k // 3
        assert pool.in_use == 0
    assert n.frames() == [] and n.sc.rx_too_long == 2


@pytest.mark.parametrize("ring", ["v2", "v3"], ids=["v2", "v3"])
def test_no_cluster_for_a_frame_is_nobufs_once_per_frame(stack, ring):
    """The pool empty: every frame read is one nobufs and one ipackets,
    and its slot or block goes back to the kernel."""
    n = Nic(stack, ring=ring)
    hog = hog_clusters(stack.pool)
    for i in range(3):
        n.kernel.rx(frame(i))
    if ring == "v3":
        n.kernel.close_block()
    n.sc.intr(EPOLLIN)
    assert n.ifp.ipackets == 3 and n.ifp.in_discards["nobufs"] == 3
    assert n.ifp.iqdrops == 3 and n.frames() == []
    slots = len(n.ring.rx_blocks) if ring == "v3" else 8
    assert n.kernel.rx_slots_ours() == slots
    give_back(stack.pool, hog)


def test_no_jumbo_for_a_long_frame_is_nobufs(stack):
    """A frame longer than a cluster and no jumbo cluster free: nobufs, one
    ipackets each, the cluster freed."""
    n = Nic(stack, framesize=BIG, rxframes=4, txframes=2)
    pool = stack.pool
    jumbos = [pool.get_jumbo() for _ in range(pool.njumbo)]
    for i in range(2):
        n.kernel.rx(frame(i, 3000))
        n.sc.intr(EPOLLIN)
        assert n.ifp.ipackets == i + 1 and n.ifp.in_discards["nobufs"] == i + 1
        assert pool.in_use == 0
    for j in jumbos:
        pool.free(j)


def test_superframes_are_counted_each(stack):
    """Two super-frames, segmented here: rx_superframes 2, sw_tso 2 and
    every segment of both in sw_tso_segs."""
    n = Nic(stack, framesize=BIG, rxframes=4, txframes=2, opts="tso4=0")
    for size in (3000, 5000):
        f, h = superframe(size, 1000)
        n.kernel.rx(f, h, TP_STATUS_CSUMNOTREADY)
    n.sc.intr(EPOLLIN)
    assert (n.sc.rx_super, n.ifp.sw_tso, n.ifp.sw_tso_segs) == (2, 2, 8)
    assert len(n.frames()) == 8


def test_a_superframe_that_is_not_tcp_is_bad_offload(stack):
    """A GSO TCPv4 header on a UDP frame: it cannot be segmented; dropped
    as bad_offload, one ipackets each, the mbuf freed."""
    n = Nic(stack, framesize=BIG, rxframes=4, txframes=2, opts="tso4=0")
    u = udp_frame(3000)
    h = hdr(NEEDS, vnet.VIRTIO_NET_HDR_GSO_TCPV4, 42, 1000, 34, 16)
    for i in range(2):
        n.kernel.rx(u, h, TP_STATUS_CSUMNOTREADY)
        n.sc.intr(EPOLLIN)
        assert n.ifp.ipackets == i + 1 and n.ifp.in_discards["bad_offload"] == i + 1
        assert stack.pool.in_use == 0 and stack.pool.jumbo_in_use == 0
    assert n.frames() == [] and n.ifp.sw_tso == 0


def test_no_cluster_for_a_segment_drops_the_superframe_as_nobufs(stack):
    """Segmenting runs out of clusters: the super-frame is one nobufs, one
    ipackets, and nothing of it is left in use."""
    n = Nic(stack, framesize=BIG, rxframes=4, txframes=2, opts="tso4=0")
    f, h = superframe(5000, 1000)
    hog = hog_clusters(stack.pool, leave=3)     # the frame's and two segments'
    for i in range(2):
        n.kernel.rx(f, h, TP_STATUS_CSUMNOTREADY)
        n.sc.intr(EPOLLIN)
        assert n.ifp.ipackets == i + 1 and n.ifp.in_discards["nobufs"] == i + 1
        assert stack.pool.in_use == len(hog)
    assert n.frames() == [] and n.ifp.sw_tso == 0
    give_back(stack.pool, hog)


def test_a_segment_without_room_for_its_ethernet_header_is_nobufs(stack):
    """A pool without headroom: each segment's Ethernet header takes a
    cluster of its own. When none is left that segment is one nobufs and
    the others still go up, in order."""
    stack.pool = pool = MbufPool(64, headroom=0)
    n = Nic(stack, framesize=BIG, rxframes=4, txframes=2, opts="offload=0")
    f, h = superframe(5000, 1000)
    # The frame's cluster and five segments; the frame's cluster is back
    # before the headers are added: two headers, then a dropped segment's
    # cluster serves the next one's header.
    hog = hog_clusters(pool, leave=7)
    n.kernel.rx(f, h, TP_STATUS_CSUMNOTREADY)
    n.sc.intr(EPOLLIN)
    want = [ETH + s for s in expected_segments(f[14:], 1000)]
    assert n.frames() == [want[0], want[1], want[3]]
    assert n.ifp.ipackets == 2 and n.ifp.in_discards["nobufs"] == 2
    assert (n.ifp.sw_tso, n.ifp.sw_tso_segs) == (1, 5) and pool.in_use == len(hog)
    give_back(pool, hog)


# -- v3 blocks -------------------------------------------------------------------
def test_an_empty_v3_block_is_handed_back_and_reading_goes_on(stack):
    """A block with no frames (its timer ran out) goes back to the kernel
    and the same interrupt reads the next one."""
    n = Nic(stack, ring="v3")
    n.kernel.close_block()                      # empty
    n.kernel.rx(frame(1))
    n.kernel.close_block()
    n.sc.intr(EPOLLIN)
    assert n.frames() == [frame(1)] and n.sc.rx_blocks == 2
    assert n.kernel.rx_slots_ours() == len(n.ring.rx_blocks)


def test_v3_blocks_are_read_in_ring_order(stack):
    """Three blocks and more: each block goes back and the next one in the
    ring is read, around the ring."""
    n = Nic(stack, ring="v3", rxframes=300)
    assert len(n.ring.rx_blocks) == 3
    for i in range(7):
        n.kernel.rx(frame(i))
        n.kernel.close_block()
        n.sc.intr(EPOLLIN)
    assert n.frames() == [frame(i) for i in range(7)] and n.sc.rx_blocks == 7


# -- too_long, said once ---------------------------------------------------------
@pytest.mark.parametrize("offload,mtu,tlen,why", [
    (0, 1500, 1518, ""),
    (0, 1500, 1519, "; it is a super-frame from the peer's TSO/GSO: turn that off on the "
                    "peer (ethtool -K PEER tso off gso off) or mount with offload=1"),
    (1, 1000, 1500, "; give a larger framesize"),
    (1, 9000, 1972, ""),
    (1, 9000, 1973, "; give a larger framesize"),
], ids=["at_mtu", "gso_no_offload", "gso_offload", "ring_edge", "beyond_ring"])
def test_too_long_says_why_once(stack, caplog, offload, mtu, tlen, why):
    """The warning for a frame cut short: its length, the ring frame's, and
    why: a super-frame (longer than the MTU and a VLAN tag) from the peer,
    or a frame longer than the ring frame carries, or nothing to add."""
    n = Nic(stack, opts=f"offload={offload}", mtu=mtu)
    for _ in range(2):
        n.kernel.rx(frame(1), tp_len=tlen)
    n.sc.intr(EPOLLIN)
    assert messages(caplog, "too_long") == [
        f"afp0: a {tlen}-byte frame does not fit a 2048-byte ring frame (1972 bytes of data): "
        f"dropped as too_long{why} (said once)"]
    assert n.sc.rx_too_long == 2


# -- the link: flags and MTU -----------------------------------------------------
def poll(clock, stack):
    clock.advance(1.1)
    stack._run_callouts()


@pytest.mark.parametrize("framesize,mtu,ours,said", [
    (BIG, 65000, 9000, "afp0: veth1's MTU is now 65000; ours 9000, what a 65632-byte ring "
                       "frame carries"),
    (BIG, 9001, 9000, "afp0: veth1's MTU is now 9001; ours 9000, what a 65632-byte ring "
                      "frame carries"),
    (2048, 4000, 1954, "afp0: veth1's MTU is now 4000; ours 1954, what a 2048-byte ring "
                       "frame carries"),
    (2048, 1400, 1400, "afp0: veth1's MTU is now 1400"),
    (2048, 60, 68, "afp0: veth1's MTU is now 60"),
], ids=["cap", "cap_edge", "ring", "same", "floor"])
def test_a_new_linux_mtu_is_followed_and_said(stack, clock, caplog, framesize, mtu, ours, said):
    """A new MTU on the Linux interface: ours follows it within 68..9000
    and what a ring frame carries, said once (not again while unchanged);
    nicinfo shows the Linux one."""
    caplog.set_level(logging.INFO, "iopkt")
    n = Nic(stack, framesize=framesize, rxframes=2, txframes=2)
    n.link[2] = mtu
    poll(clock, stack)
    poll(clock, stack)
    assert n.ifp.mtu == ours and messages(caplog, "MTU") == [said]
    assert n.sc.extra_info(n.ifp)["linux_mtu"] == mtu


def test_a_renamed_interface_shows_its_new_name(stack, clock):
    """The interface is known by index: renamed, nicinfo shows the name."""
    n = Nic(stack)
    n.link[0] = "eth9"
    poll(clock, stack)
    assert n.sc.extra_info(n.ifp)["linux_if"] == "eth9" and n.sc.lxname == "eth9"


@pytest.mark.parametrize("flags", [lxif.LX_IFF_RUNNING, lxif.LX_IFF_UP, 0],
                         ids=["carrier_only", "up_only", "none"])
def test_the_link_is_up_only_with_both_up_and_carrier(stack, clock, flags):
    """IFF_UP and IFF_RUNNING both: either alone is a link down."""
    n = Nic(stack)
    n.link[1] = flags
    poll(clock, stack)
    assert n.ifp.link_state == LINK_STATE_DOWN and not n.ifp.flags & IFF_RUNNING


def test_link_changes_are_said_and_counted_once_each(stack, clock, caplog):
    """Down (no carrier), down again, up, up again, down (admin): three
    changes, three lines; the interface keeps its own flags."""
    caplog.set_level(logging.INFO, "iopkt")
    n = Nic(stack)
    ifp = n.ifp
    flags = ifp.flags
    for lx in (lxif.LX_IFF_UP, lxif.LX_IFF_UP, UP, UP, 0):
        n.link[1] = lx
        poll(clock, stack)
    assert messages(caplog, "link") == ["afp0: link down (veth1 has no carrier)",
                                        "afp0: link up (veth1)",
                                        "afp0: link down (veth1 is down)"]
    assert n.sc.link_changes == 3
    assert ifp.flags == flags & ~IFF_RUNNING
    n.link[1] = UP
    poll(clock, stack)
    assert ifp.flags == flags and ifp.link_state == LINK_STATE_UP


def test_set_link_down_without_flags_says_is_down(stack, caplog):
    """set_link(False) alone: the Linux interface is taken as down."""
    caplog.set_level(logging.INFO, "iopkt")
    n = Nic(stack)
    n.sc.set_link(False)
    assert messages(caplog, "link down") == ["afp0: link down (veth1 is down)"]


def test_an_interface_ifconfig_took_down_stays_down_when_the_link_comes_back(stack, clock):
    """Carrier back while our interface is down (ifconfig down): the link
    is up but the interface does not run."""
    n = Nic(stack)
    stack.if_down(n.ifp)
    n.link[1] = 0
    poll(clock, stack)
    n.link[1] = UP
    poll(clock, stack)
    assert n.ifp.link_state == LINK_STATE_UP and not n.ifp.flags & (IFF_RUNNING | IFF_UP)


def test_an_interface_without_carrier_at_attach_does_not_run(stack):
    """Attached while the Linux interface has no carrier: up but not
    running, the link down."""
    n = Nic(stack, flags=lxif.LX_IFF_UP)
    assert n.ifp.flags & IFF_UP and not n.ifp.flags & IFF_RUNNING
    assert n.ifp.link_state == LINK_STATE_DOWN


# -- link loss -------------------------------------------------------------------
def lost_said(caplog):
    return [r.getMessage() for r in caplog.records if "link lost" in r.getMessage()]


def test_an_interface_gone_at_the_poll_is_said_with_its_errno(stack, clock, caplog):
    """SIOCGIFNAME says ENODEV: link lost, said with that error, and the
    socket leaves the epoll set."""
    n = Nic(stack)
    fd = n.sc.fd
    n.link = OSError(errno.ENODEV, "No such device")
    poll(clock, stack)
    assert lost_said(caplog) == ["afp0: link lost: veth1: No such device (the interface is "
                                 "gone); interface marked down"]
    assert fd not in stack._handlers


def test_a_kick_that_says_enxio_is_said_with_its_errno(stack, caplog):
    """send() says ENXIO: link lost with that error."""
    n = Nic(stack)
    n.sock.errors = [errno.ENXIO]
    n.send(frame(1))
    assert lost_said(caplog) == ["afp0: link lost: veth1: No such device or address (the "
                                 "interface is gone); interface marked down"]


def test_a_socket_error_that_says_enxio_is_link_lost(stack, caplog):
    """EPOLLERR with ENXIO: link lost with that error, the link not even
    looked at."""
    n = Nic(stack)
    n.link = OSError(errno.EPERM, "looked at")
    n.sock.so_error = errno.ENXIO
    n.sc.intr(afp.EPOLLERR)
    assert lost_said(caplog) == ["afp0: link lost: veth1: No such device or address (the "
                                 "interface is gone); interface marked down"]


def test_a_socket_error_read_that_fails_with_enodev_is_link_lost(stack, caplog):
    """Reading SO_ERROR itself fails with ENODEV: that is the error."""
    n = Nic(stack)

    def gone(level, opt, size=None):
        raise OSError(errno.ENODEV, "No such device")

    n.sock.getsockopt = gone
    n.sc.intr(afp.EPOLLERR)
    assert n.sc._lost and n.sc.sock_errors == 1
    assert lost_said(caplog) == ["afp0: link lost: veth1: No such device (the interface is "
                                 "gone); interface marked down"]


def test_enetdown_on_the_socket_is_not_link_loss(stack):
    """EPOLLERR with ENETDOWN, twice: the link is looked at, not lost; each
    socket error counted."""
    n = Nic(stack)
    n.link[1] = 0
    for _ in range(2):
        n.sock.so_error = errno.ENETDOWN
        n.sc.intr(afp.EPOLLERR)
    assert not n.sc._lost and n.sc.sock_errors == 2
    assert n.ifp.link_state == LINK_STATE_DOWN


def test_a_link_loss_without_an_errno_says_error(stack, caplog):
    """_link_lost(None): the reason reads 'error'."""
    n = Nic(stack)
    n.sc._link_lost(None)
    assert lost_said(caplog) == ["afp0: link lost: veth1: error (the interface is gone); "
                                 "interface marked down"]


# -- events ----------------------------------------------------------------------
def test_epollin_alone_reads_the_ring_and_nothing_else(stack):
    """EPOLLIN: no socket error read, the transmit side not looked at."""
    n = Nic(stack)
    looked = []
    n.sc._tx_ready = lambda: looked.append(1)
    n.kernel.rx(frame(1))
    n.sc.intr(EPOLLIN)
    assert n.frames() == [frame(1)] and n.sc.sock_errors == 0 and looked == []
    assert n.sc.rx_intrs == 1


def test_epollout_alone_does_not_read_the_ring(stack):
    """EPOLLOUT: the RX ring is not read, no interrupt counted."""
    from iopkt.kern.loop import EPOLLOUT
    n = Nic(stack)
    n.kernel.rx(frame(1))
    n.sc.intr(EPOLLOUT)
    assert n.frames() == [] and n.sc.rx_intrs == 0


def test_an_error_that_loses_the_link_stops_the_interrupt(stack):
    """EPOLLERR (ENXIO) with EPOLLIN: the link is lost, the ring not read."""
    n = Nic(stack)
    n.kernel.rx(frame(1))
    n.sock.so_error = errno.ENXIO
    n.sc.intr(afp.EPOLLERR | EPOLLIN)
    assert n.sc._lost and n.sc.rx_intrs == 0 and n.frames() == []


# -- ring statistics -------------------------------------------------------------
class StatsSock(FakeSock):
    """getsockopt as the kernel answers it: without a buffer length an
    int; PACKET_STATISTICS copies at most its own struct (8 bytes for v2,
    12 for v3) however large the buffer asked."""

    def __init__(self, v3: bool):
        super().__init__()
        self.v3 = v3

    def getsockopt(self, level, opt, *size):
        if level == pm.SOL_PACKET and not size:
            return struct.unpack("i", struct.pack("I", self.stats[0]))[0]
        (n,) = size or (None,)
        if not isinstance(n, int):
            raise TypeError("an integer is required")
        out = super().getsockopt(level, opt, 12)
        return out[:min(n, 12 if self.v3 else 8)]


@pytest.mark.parametrize("ring", ["v2", "v3"], ids=["v2", "v3"])
def test_ring_statistics_are_read_with_the_struct_of_the_version(stack, ring):
    """PACKET_STATISTICS is asked with the size of its version's struct
    and summed."""
    v3 = ring == "v3"
    n = Nic(stack, ring=ring, sock=StatsSock(v3))
    n.sock.stats = [10, 2, 1]
    n.sc.read_stats()
    n.sock.stats = [5, 1, 4]
    n.sc.read_stats()
    assert (n.sc.tp_packets, n.sc.tp_drops, n.sc.tp_freeze) == (15, 3, 5 if v3 else 0)


def test_ring_statistics_read_failing_change_nothing(stack):
    """getsockopt failing: the sums stay."""
    n = Nic(stack)

    def fails(level, opt, size=None):
        raise OSError(errno.EBADF, "Bad file descriptor")

    n.sock.stats = [3, 1, 0]
    n.sc.read_stats()
    n.sock.getsockopt = fails
    n.sc.read_stats()
    assert (n.sc.tp_packets, n.sc.tp_drops) == (3, 1)


def test_ioctl_other_than_siocsifcap_is_refused_by_name(stack):
    """An ioctl the driver does not know: OSError naming it."""
    n = Nic(stack)
    with pytest.raises(OSError) as e:
        n.sc.ioctl(n.ifp, 0x1234, 0)
    assert str(e.value) == "afp0: ioctl 4660 not supported"
