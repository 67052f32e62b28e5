"""`iopkt bench`: what does a legacy driver under the shim cost, and when
does it matter? Real traffic (iperf3) through the lab, native and shim side
by side, with the stack's CPU and context switches per forwarded packet.

A *point* is one traffic condition: protocol, frame size, offered load,
emulated link speed, CPU budget. For each point every driver runs `reps`
times, the drivers alternating run by run, so slow drift on a shared
machine hits them alike; ratios are computed repetition by repetition and
reported as median with min and max. Baselines (Linux routing over veth,
the plain Python TAP relay, and for TCP the relay moving super-frames) run
at the unlimited points.

The seed's claims are about wire-sized frames, so `native` runs devnp-tap
with offload=0. `native-tso` (offload on: TSO and checksum offload through
the TAP's virtio-net header) runs where offload can show what it buys: the
TCP points with no link limit or a 1 Gbit/s link. io-net drivers never had
offload, so the shim has no such variant.

IPv6: a point has a family (4 or 6); the IPv6 ones run over the same
dual-stack labs to host B's 2001:2:0:b::2, so an IPv6 point and its IPv4
twin (same protocol, frame, load, link, CPU) alternate repetition by
repetition, and "IPv6 / IPv4" ratios pair their runs. The default matrix
has TCP 1518 B over IPv6 with no link limit: native, native with TSO6,
shim and the baselines (Linux routing IPv6, the relays carrying it at
layer 2).

Latency: ping from host A to host B every 2 ms (64-byte frames) through
native, shim and shim zero-copy, and through Linux routing as the
baseline, idle and while iperf3 pushes TCP at 200 Mbit/s through the same
path (a rate every forwarder carries, so the queueing measured is the
stack's, not a full link's). An RTT crosses the stack twice, so the
hand-off's cost per crossing is (p50 shim - p50 native) / 2, taken
repetition by repetition.

`link` ("tap", the default, or "veth": `iopkt bench --link veth`) is what
joins the hosts to the stack: the lab's TAPs with devnp-tap and devn-tap,
or veth pairs driven through AF_PACKET by devnp-afpacket (native,
native-tso with offload=0/1) and devn-afpacket (shim, shim0) under the
same kind names. Each record says which (`link_kind`; `link` is the
point's emulated link speed). The baselines do not change with it.

Results go to a folder: every iperf3 JSON and ping output as the tools
wrote them, results.json (one record per run), results.md (the tables and
the verdict on each claim) and PNG plots, one per claim.
"""

from __future__ import annotations

from dataclasses import dataclass

from iopkt.bench.measure import BenchError  # noqa: F401 (raised here, caught as matrix.BenchError)
from iopkt.lab import cgroup, lab

DRIVERS = {
    "native": ("devnp-tap", "offload=0"),
    "native-tso": ("devnp-tap", "offload=1"),
    "shim": ("devn-tap", ""),
    "shim0": ("devn-tap", "shimrxcopy=0"),
}
# The same kinds over veth pairs (lab link="veth"): the AF_PACKET drivers.
VETH_DRIVERS = {
    "native": ("devnp-afpacket", "offload=0"),
    "native-tso": ("devnp-afpacket", "offload=1"),
    "shim": ("devn-afpacket", ""),
    "shim0": ("devn-afpacket", "shimrxcopy=0"),
}
LINK_KINDS = {"tap": DRIVERS, "veth": VETH_DRIVERS}
LINK_LABELS = {"tap": "TAPs (devnp-tap, devn-tap)",
               "veth": "veth pairs through AF_PACKET (devnp-afpacket, devn-afpacket), "
                       "the stack's ends in a namespace of their own"}
DRIVER_LABELS = {"native": "native", "native-tso": "native with offload (TSO)",
                 "shim": "shim", "shim0": "shim zero-copy", "kernel": "Linux routing",
                 "relay": "plain relay", "relay-offload": "relay with offload"}
KINDS = ("native", "native-tso", "shim", "shim0", "kernel", "relay", "relay-offload")
PROTOCOLS = ("tcp", "udp")
FAMILIES = (4, 6)
# Host B, iperf3's server, by family: the lab's addresses (lab.py).
SERVER_IP = {4: lab.B_NET[1], 6: lab.B6_NET[1]}
# Bytes of a frame (with FCS) that are not payload: Ethernet 14 + FCS 4,
# IP (20 | 40), then TCP 20 (what is left is the MSS) or UDP 8.
TCP_OVERHEAD = {4: 58, 6: 78}
UDP_OVERHEAD = {4: 46, 6: 66}
FRAMES = (64, 128, 256, 512, 1024, 1280, 1518)        # RFC 2544, with FCS
LOADS = {"10M": 10_000_000, "100M": 100_000_000, "1G": 1_000_000_000, "unlimited": 0}
LINKS = {"none": 0, "10": 10, "100": 100, "1000": 1000}
SCHEMA_VERSION = 2          # 2: records have a "kind" (throughput | latency); meta has versions
TCP_MIN_MSS = 88            # Linux refuses a smaller TCP_MAXSEG
LOW_POWER_CPU = 0.1         # cores: the default matrix's "low-power CPU"
LATENCY_LOADS = {"idle": None, "200M": ["-b", "200M"]}     # iperf3 TCP (1518 B frames)
LATENCY_DRIVERS = ("native", "shim", "shim0")
LATENCY_SECONDS = 2.0       # of pings (1000 at 2 ms) per run, by default
LATENCY_SECONDS_RANGE = (0.5, 60.0)
# What a run costs besides its traffic, measured on the 2-core VM of the
# README's results (123 runs of 3 s took 428 s): iperf3's server start, the
# samples and control requests; a lab up and down; a latency run's load
# starting before the first ping and ending after the last.
RUN_OVERHEAD_S = 0.5
LAB_SETUP_S = 0.8
LAB_SETUP6_S = 1.6          # more for a dual-stack lab: the stack's DAD wait (measured)
LATENCY_OVERHEAD_S = {"idle": 0.15, "200M": 1.45}


@dataclass(frozen=True)
class Point:
    proto: str          # tcp | udp
    frame: int          # Ethernet frame size with FCS (RFC 2544)
    load: str           # offered load: 10M | 100M | 1G | unlimited
    link: str           # emulated link speed, Mbit/s: none | 10 | 100 | 1000
    cpu: float          # CPU budget of the stack, cores (1.0 = unlimited)
    family: int = 4     # IP version: 4 | 6

    @property
    def key(self) -> str:
        # IPv4 keys stay as before the family existed: old folders compare.
        fam = "6" if self.family == 6 else ""
        return (f"{self.proto}{fam}-{self.frame}-load{self.load}-link{self.link}"
                f"-cpu{self.cpu:g}")

    def label(self) -> str:
        parts = [self.proto.upper() + (" over IPv6" if self.family == 6 else ""),
                 f"{self.frame} B"]
        if self.load != "unlimited":
            parts.append(f"offered {self.load}")
        parts.append("no link limit" if self.link == "none" else f"{self.link} Mbit/s link")
        if self.cpu < 1:
            parts.append(f"CPU {self.cpu:g} core")
        return ", ".join(parts)

    @property
    def mss(self) -> int:
        """TCP MSS for the frame size (frame - 58; over IPv6 frame - 78),
        raised to the smallest MSS Linux lets a socket ask for (88); the
        frame really seen is recorded per run as frame_measured."""
        return max(TCP_MIN_MSS, self.frame - TCP_OVERHEAD[self.family])

    @property
    def server_ip(self) -> str:
        return SERVER_IP[self.family]

    @property
    def twin(self) -> tuple:
        """What a point shares with its other family's twin."""
        return (self.proto, self.frame, self.load, self.link, self.cpu)

    def iperf_args(self) -> list[str]:
        args = ["-6"] if self.family == 6 else []
        if self.proto == "udp":
            args += ["-u", "-l", str(self.frame - UDP_OVERHEAD[self.family]),
                     "-b", str(LOADS[self.load])]
        else:
            args += ["-M", str(self.mss)]
            if LOADS[self.load]:
                args += ["-b", str(LOADS[self.load])]
        return args


@dataclass(frozen=True)
class LatencyPoint:
    """ping RTT from A to B through the stack, idle or under a TCP load
    through the same path; always without link limit on a whole core (a
    rate-limited link would measure its queue, not the stack)."""
    load: str           # idle | 200M
    link: str = "none"
    cpu: float = 1.0
    proto = "icmp"
    frame = 64          # ping -s 18: 64-byte frames with FCS

    @property
    def key(self) -> str:
        load = "idle" if self.load == "idle" else f"load{self.load}"
        return f"rtt-{load}-link{self.link}-cpu{self.cpu:g}"

    def label(self) -> str:
        return ("ping RTT, idle" if self.load == "idle"
                else f"ping RTT, under TCP at {self.load.rstrip('M')} Mbit/s")

    def load_args(self) -> list[str] | None:
        return LATENCY_LOADS[self.load]


def latency_points() -> list[LatencyPoint]:
    return [LatencyPoint(ld) for ld in LATENCY_LOADS]


def default_points() -> list[Point]:
    """The seed's three conditions and their opposites, plus a small UDP
    frame-size sweep per link rate for the plots (about 8.5 minutes; 9.7 with latency):

      slow link, large packets     TCP 1518 B on a 100 Mbit/s link
      ... and its opposite         TCP 1518 B, no link limit
      full link rate, 64 B         UDP 64 B offered at the 100 Mbit/s link's line rate
      ... and its opposite         UDP 1518 B on the same link
      low-power CPU                TCP 1518 B on the 100 Mbit/s link, stack capped at 0.1 core
      ... and its opposite         the same on a whole core

    and TCP on an emulated 1 Gbit/s link, where native with offload runs too;
    TCP 1518 B over IPv6 without link limit next to its IPv4 twin (native,
    native with TSO6, shim, and the baselines).
    Latency (Plan.latency) comes on top: ping idle and under a 200 Mbit/s
    TCP load, each driver and Linux routing.
    """
    pts = []
    for link in ("none", "100"):
        for frame in (64, 512, 1518):
            pts.append(Point("udp", frame, "unlimited", link, 1.0))
        pts.append(Point("tcp", 1518, "unlimited", link, 1.0))
        if link == "none":
            pts.append(Point("tcp", 1518, "unlimited", link, 1.0, family=6))
    pts.append(Point("tcp", 1518, "unlimited", "100", LOW_POWER_CPU))
    pts.append(Point("tcp", 1518, "unlimited", "1000", 1.0))       # what TSO buys on a GbE link
    return pts


def full_points() -> list[Point]:
    pts = []
    for link in LINKS:
        for proto in PROTOCOLS:
            for frame in FRAMES:
                pts.append(Point(proto, frame, "unlimited", link, 1.0))
    for load in ("10M", "100M", "1G"):
        for frame in (64, 1518):
            pts.append(Point("udp", frame, load, "none", 1.0))
    for cpu in (0.25, 0.5):
        for proto, frame in (("tcp", 1518), ("udp", 64)):
            pts.append(Point(proto, frame, "unlimited", "none", cpu))
    return pts


def make_points(protos, frames, loads, links, cpus, families=(4,)) -> list[Point]:
    """The cross product of the chosen values, each checked."""
    for fam in families:
        if fam not in FAMILIES:
            raise BenchError(f"IP version '{fam}': choose from 4, 6")
    for p in protos:
        if p not in PROTOCOLS:
            raise BenchError(f"protocol '{p}': choose from {', '.join(PROTOCOLS)}")
    for f in frames:
        if f not in FRAMES:
            raise BenchError(f"frame size {f}: choose from RFC 2544's "
                             f"{', '.join(map(str, FRAMES))}")
    for ld in loads:
        if ld not in LOADS:
            raise BenchError(f"offered load '{ld}': choose from {', '.join(LOADS)}")
    for lk in links:
        if lk not in LINKS:
            raise BenchError(f"link speed '{lk}': choose from {', '.join(LINKS)} (Mbit/s)")
    for c in cpus:
        if not 0.05 <= c <= 1.0:
            raise BenchError(f"CPU budget {c}: must be between 0.05 and 1 (cores)")
    if 6 in families and "udp" in protos and min(frames) <= UDP_OVERHEAD[6]:
        raise BenchError(f"frame size {min(frames)}: too small for UDP over IPv6 "
                         f"({UDP_OVERHEAD[6]} B of headers); choose 128 or more")
    # The families innermost: twins are neighbours, and run alternating.
    return [Point(p, f, ld, lk, c, fam) for lk in links for c in cpus for p in protos
            for f in frames for ld in loads for fam in families]


@dataclass
class Plan:
    points: list
    drivers: list
    reps: int = 3
    seconds: float = 3.0
    baselines: bool = True
    prefix: str = "ibench"
    latency: bool = True
    link: str = "tap"       # what joins the hosts to the stack: tap | veth
    latency_seconds: float = LATENCY_SECONDS    # of pings per latency run

    def check(self) -> None:
        if self.link not in LINK_KINDS:
            raise BenchError(f"--link {self.link}: one of {', '.join(LINK_KINDS)}")
        for d in self.drivers:
            if d not in DRIVERS:
                raise BenchError(f"driver '{d}': choose from {', '.join(DRIVERS)}")
        if self.link != "tap":
            self.check_drivers_present()
        if not 1 <= self.reps <= 50:
            raise BenchError(f"repetitions {self.reps}: must be 1..50")
        if not 1 <= self.seconds <= 120:
            raise BenchError(f"duration {self.seconds}s: must be 1..120 seconds")
        lo, hi = LATENCY_SECONDS_RANGE
        if not lo <= self.latency_seconds <= hi:
            raise BenchError(f"latency run of {self.latency_seconds:g}s: must be "
                             f"{lo:g}..{hi:g} seconds")
        if any(p.cpu < 1 for p in self.points) and not cgroup.available():
            raise BenchError("a CPU budget below 1 core needs the kernel's cgroup CPU "
                             "controller, which this machine does not have")
        lab.check_prefix(self.prefix)

    def driver_map(self) -> dict:
        """kind -> (driver, options) over this plan's link."""
        return LINK_KINDS[self.link]

    def check_drivers_present(self) -> None:
        """Every driver the plan's kinds need over its link is installed."""
        from iopkt.stack import drvload
        have = drvload.available()
        need: dict = {}
        for d in self.drivers:
            need.setdefault(self.driver_map()[d][0], []).append(d)
        missing = [f"{drv} (for {', '.join(kinds)})" for drv, kinds in need.items()
                   if drv not in have]
        if missing:
            raise BenchError(f"--link {self.link}: no driver {' or '.join(missing)} here "
                             f"(drivers: {', '.join(sorted(have))})")

    def drivers_for(self, point) -> list:
        """The drivers that run at `point`: native-tso only where offload
        applies (TCP, no link limit or 1 Gbit/s, a whole core); shim
        zero-copy not over IPv6 (what it changes, the hand-off's copy, is
        the same for both families; the default bench keeps its 10
        minutes); at a latency point native, shim and shim zero-copy."""
        if isinstance(point, LatencyPoint):
            return [d for d in self.drivers if d in LATENCY_DRIVERS]
        return [d for d in self.drivers if (d != "native-tso" or (
            point.proto == "tcp" and point.link in ("none", "1000") and point.cpu >= 1))
            and (d != "shim0" or point.family == 4)]

    def kinds_for(self, point) -> list:
        """What runs at a point inside its group's labs, alternating: the
        drivers, and at a latency point Linux routing too (a baseline)."""
        extra = ["kernel"] if isinstance(point, LatencyPoint) and self.baselines else []
        return self.drivers_for(point) + extra

    def latency_points(self) -> list:
        return latency_points() if self.latency else []

    def baseline_points(self) -> list:
        if not self.baselines:
            return []
        return [p for p in self.points if p.link == "none" and p.cpu >= 1 and p.load == "unlimited"]

    @staticmethod
    def baselines_for(point: Point) -> tuple:
        return ("kernel", "relay", "relay-offload") if point.proto == "tcp" else ("kernel", "relay")

    def throughput_runs(self) -> int:
        return (sum(len(self.drivers_for(p)) for p in self.points)
                + sum(len(self.baselines_for(p)) for p in self.baseline_points())) * self.reps

    def latency_runs(self) -> int:
        return sum(len(self.kinds_for(p)) for p in self.latency_points()) * self.reps

    def runs(self) -> int:
        return self.throughput_runs() + self.latency_runs()

    def estimate_s(self) -> float:
        """Seconds the plan takes: traffic plus what each run and each lab
        set-up costs (constants measured on a 2-core VM; see RUN_OVERHEAD_S)."""
        t = self.throughput_runs() * (self.seconds + RUN_OVERHEAD_S)
        t += sum(len(self.kinds_for(p)) * self.reps
                 * (self.latency_seconds + LATENCY_OVERHEAD_S[p.load])
                 for p in self.latency_points())
        t_labs = 0.0
        for pts in self.groups().values():
            n = len({d for p in pts for d in self.drivers_for(p)})
            t_labs += n * (LAB_SETUP_S + (LAB_SETUP6_S if self.has_ipv6(pts) else 0))
        t_labs += LAB_SETUP_S * bool(self.latency_points() and self.baselines)  # Linux's, once
        return t + t_labs

    @staticmethod
    def has_ipv6(pts: list) -> bool:
        """Whether any of `pts` is an IPv6 point (its labs are dual-stack)."""
        return any(getattr(p, "family", 4) == 6 for p in pts)

    def schedule(self, pts: list, kinds_of) -> list:
        """(point, rep, order, kind) in running order. Each point's kinds
        (`kinds_of(point)`) alternate, starting one further each repetition;
        an IPv4 point and its IPv6 twin run repetition by repetition too,
        the one first alternating, so drift hits both families alike and
        their runs pair up for the IPv6/IPv4 ratios."""
        blocks: dict = {}
        for p in pts:
            blocks.setdefault(p.twin if isinstance(p, Point) else id(p), []).append(p)
        out = []
        for block in blocks.values():
            for rep in range(self.reps):
                n = len(block)
                for p in (block[(rep + j) % n] for j in range(n)):
                    kinds = kinds_of(p)
                    k = len(kinds)
                    out += [(p, rep, i, kinds[(rep + i) % k]) for i in range(k)]
        return out

    def groups(self):
        """Points that share a lab set-up (link speed and CPU budget); the
        latency points go last into the group without link limit on a
        whole core (made for them if the throughput points have none)."""
        g: dict = {}
        for p in self.points:
            g.setdefault((p.link, p.cpu), []).append(p)
        for p in self.latency_points():
            g.setdefault((p.link, p.cpu), []).append(p)
        return g
