"""bpf: packet capture taps on interfaces (BSD's net/bpf.c, much reduced).

Each Ifnet has `if_bpf`: None while nobody captures on it, else a BpfIf
holding the captures open on it (BpfDesc, BSD's bpf_d). The hot path taps
once per burst, as BSD's bpf_mtap is called where frames cross the driver
boundary:

    receive   ether_input   (ifp.if_input: every frame a driver hands up)
    transmit  ether_output, ether_output_frame, arp's requests
              (every frame just before ifp.if_transmit hands it to the driver)

    bpf = ifp.if_bpf
    if bpf is not None:
        bpf.mtap(pkts, BPF_D_IN)

With no capture that is one attribute load and one compare per burst, not
per packet (scripts/bpf_overhead.py measures it). A frame is captured as
the interface carries it: a super-frame (TSO, offload on) is one frame of
up to 64 KB, as tcpdump on Linux shows it; a frame the stack segmented in
software for an interface without TSO is captured as its segments, since
segmentation happens before ether_output. Offload headers (virtio-net) are
never part of a frame. An outgoing frame is captured when the stack hands
it to the driver, so one that if_snd then drops (qfull) is in the capture
all the same, and one the kernel refuses as a GSO write (devnp-tap then
segments it itself, which is rare) is captured as the super-frame.

A capture copies each frame it wants into its own bounded buffer, which is
also what is waiting to be sent to its client (the control server streams
it, control.py). A record is REC (timestamp as a double of Unix seconds,
direction, length kept, length on the wire; network byte order) then the
frame's bytes: all of them, or the first `snaplen` (tcpdump's -s). When a
record does not fit in what is left of the bound (BPF_BUFSIZE) the frame
is dropped and counted: a slow reader never makes the stack wait or grow.
A capture may have a filter (bpf_filter.py: a tcpdump expression compiled
by libpcap): it runs first, on the frame where it lies, and a frame it
rejects is neither copied nor counted as captured. The end of a capture
is a record of direction BPF_END whose bytes are a JSON object: why it
ended, frames seen, captured and dropped.

Stack thread only, like everything that touches an Ifnet.
"""

from __future__ import annotations

import json
import struct
import time

BPF_END = 0                 # record direction: the trailer, JSON
BPF_D_IN = 1                # received by the interface (pcapng's epb_flags inbound)
BPF_D_OUT = 2               # sent by the interface (outbound)
BPF_D_INOUT = BPF_D_IN | BPF_D_OUT
DIRECTIONS = {"in": BPF_D_IN, "out": BPF_D_OUT, "both": BPF_D_INOUT}
DIRECTION_NAMES = {BPF_D_IN: "In", BPF_D_OUT: "Out"}

REC = struct.Struct("!dBII")    # timestamp, direction, length kept, length on the wire
SNAPLEN_MAX = 262144            # tcpdump's default snap length: every frame whole
BPF_BUFSIZE = 4 << 20           # bytes a capture may hold for its client
BPF_MAXFRAME = 65535 + 14 + 4   # the longest frame: an IP datagram of 64 KB, a VLAN-sized header


class BpfDesc:
    """One capture (BSD's bpf_d): which directions it wants, how many
    frames at most (0: no limit), and `buf`, the records waiting for the
    client, never longer than `bufsize` (the header and trailer aside).

    `ready()` is called when `buf` goes from empty to not empty (the server
    then waits for the socket to be writable); `done(reason)` when the
    capture ends by itself: "count" (COUNT frames captured) or "detached"
    (the interface went away). Both are called in the stack thread, from
    inside the packet path: they must not block."""

    __slots__ = ("ifp", "direction", "count", "bufsize", "buf", "captured",
                 "dropped", "seen", "ready", "done", "ended", "reason", "match", "snaplen")

    def __init__(self, direction: int = BPF_D_INOUT, count: int = 0,
                 bufsize: int = BPF_BUFSIZE, ready=None, done=None, program=None,
                 snaplen: int = SNAPLEN_MAX):
        if bufsize < REC.size + BPF_MAXFRAME:
            raise ValueError(f"bpf buffer of {bufsize} bytes cannot hold one frame")
        self.ifp = None
        self.direction = direction
        self.count = count
        self.bufsize = bufsize
        self.buf = bytearray()
        self.captured = 0
        self.dropped = 0
        self.seen = 0               # frames offered (BSD's bd_rcount): the filter's input
        self.ready = ready or _nop
        self.done = done or _nop
        self.ended = False
        self.reason = ""
        # The filter (bpf_filter.BpfProgram, compiled with the same snap
        # length) or None for every frame; frames are cut to `snaplen` bytes.
        self.match = program.match if program is not None else None
        self.snaplen = snaplen

    def catch(self, pkts: list, direction: int, ts: float) -> None:
        """Copy each frame of the burst `pkts` (mbufs, data at the Ethernet
        header) that the filter takes into `buf` as a record, at most
        `snaplen` bytes of it, until `count` is reached; a frame that does
        not fit within `bufsize` is dropped and counted. A frame the filter
        rejects costs the filter's run and nothing else. The mbufs stay the
        caller's, unchanged. Calls ready() and done() as the class says."""
        buf = self.buf
        was_empty = not buf
        room = self.bufsize - len(buf)
        left = self.count - self.captured if self.count else len(pkts)
        pack = REC.pack
        match = self.match
        snaplen = self.snaplen
        n = dropped = seen = 0
        for m in pkts:
            if n >= left:
                break
            seen += 1
            wirelen = m.len if m.next is None else m.chain_len()
            if match is not None:
                keep = match(m, wirelen)        # compiled with snaplen: keep <= it
                if not keep:
                    continue
                caplen = keep if keep < wirelen else wirelen
            else:
                caplen = snaplen if snaplen < wirelen else wirelen
            if REC.size + caplen > room:
                dropped += 1
                continue
            buf += pack(ts, direction, caplen, wirelen)
            x = m                           # one mbuf, or a chain (a super-frame)
            want = caplen
            while want:
                k = x.len if x.len < want else want
                buf += x.view[x.off:x.off + k]
                want -= k
                x = x.next
            room -= REC.size + caplen
            n += 1
        self.seen += seen
        self.captured += n
        self.dropped += dropped
        ifp = self.ifp
        ifp.bpf_captured += n
        ifp.bpf_dropped += dropped
        if was_empty and buf:
            self.ready()
        if self.count and self.captured >= self.count:
            self.done("count")

    def put(self, data: bytes) -> None:
        """Queue bytes for the client outside the bound (the stream's
        header line); ready() as for a frame."""
        was_empty = not self.buf
        self.buf += data
        if was_empty and self.buf:
            self.ready()

    def finish(self, reason: str) -> None:
        """End the capture: detach it from its interface (if still on
        one) and queue the trailer record, outside the bound, saying
        `reason` and the counts. Idempotent: only the first reason counts."""
        if self.ended:
            return
        bpf_detach(self)
        self.ended = True
        self.reason = reason
        body = json.dumps(self.stats()).encode()
        self.put(REC.pack(time.time(), BPF_END, len(body), 0) + body)

    def stats(self) -> dict:
        return {"reason": self.reason, "captured": self.captured, "dropped": self.dropped,
                "seen": self.seen,
                "direction": _direction_name(self.direction), "count": self.count,
                "pending": len(self.buf)}


class BpfIf:
    """The captures open on one interface (BSD's bpf_if): ifp.if_bpf while
    there is at least one. `descs` is a tuple, replaced (never changed in
    place) on attach and detach, so a capture may end in the middle of a
    burst it is tapping."""

    __slots__ = ("descs",)

    def __init__(self):
        self.descs: tuple = ()

    def mtap(self, pkts: list, direction: int) -> None:
        """bpf_mtap for a burst: give the frames in `pkts` (mbufs, data at
        the Ethernet header, still the caller's) to every capture that
        wants `direction`, all with one timestamp. Never blocks."""
        ts = time.time()
        for d in self.descs:
            if d.direction & direction:
                d.catch(pkts, direction, ts)


def bpf_attach(ifp, d: BpfDesc) -> None:
    """Start capture `d` on `ifp` (BSD's BIOCSETIF): from the next burst on,
    the taps copy frames into it."""
    if d.ifp is not None or d.ended:
        raise ValueError("this capture is attached already or has ended")
    bp = ifp.if_bpf
    if bp is None:
        bp = BpfIf()
    bp.descs = bp.descs + (d,)
    d.ifp = ifp
    ifp.if_bpf = bp


def bpf_detach(d: BpfDesc) -> None:
    """Stop capture `d` taking frames; the last one off an interface sets
    its if_bpf back to None, so the taps cost nothing again. Keeps
    `d.ifp` (for its name) and its counts; a no-op when not attached."""
    ifp = d.ifp
    bp = ifp.if_bpf if ifp is not None else None
    if bp is None or d not in bp.descs:
        return
    bp.descs = tuple(x for x in bp.descs if x is not d)
    if not bp.descs:
        ifp.if_bpf = None


def bpf_ifdetach(ifp) -> None:
    """The interface is going away (BSD's bpfdetach, called by if_detach):
    end every capture on it with reason "detached" (their done() tells the
    clients)."""
    bp = ifp.if_bpf
    if bp is None:
        return
    for d in bp.descs:
        bpf_detach(d)
        d.done("detached")
    ifp.if_bpf = None


# -- the stream, as a client reads it ---------------------------------------
def parse_records(buf, start: int = 0):
    """Split the records at the front of `buf` (bytes-like) from offset
    `start`. Returns (records, offset of the first incomplete byte): each
    record is (timestamp, direction, the bytes kept, the frame's length on
    the wire); a trailer is (timestamp, BPF_END, its JSON as a dict, 0).
    Raises ValueError on a record longer than any frame (not a capture
    stream)."""
    out = []
    off = start
    end = len(buf)
    unpack = REC.unpack_from
    with memoryview(buf) as mv:             # one copy per frame, none of the rest
        while end - off >= REC.size:
            ts, direction, size, wirelen = unpack(mv, off)
            if size > BPF_MAXFRAME + 65536 or direction > BPF_D_OUT:
                raise ValueError(f"not a capture record (direction {direction}, "
                                 f"length {size})")
            if end - off - REC.size < size:
                break
            data = mv[off + REC.size:off + REC.size + size].tobytes()
            off += REC.size + size
            out.append((ts, direction, json.loads(data) if direction == BPF_END else data,
                        wirelen))
    return out, off


def _direction_name(mask: int) -> str:
    return {v: k for k, v in DIRECTIONS.items()}.get(mask, str(mask))


def _nop(*_a) -> None:
    return None
