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

import contextlib
import datetime
import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass

from iopkt.bench import benchlib
from iopkt.lab import cgroup, lab, netns

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
LATENCY_OVERHEAD_S = {"idle": 0.15, "200M": 1.45}


class BenchError(Exception):
    pass


@dataclass(frozen=True)
class Point:
    proto: str          # tcp | udp
    frame: int          # Ethernet frame size with FCS (RFC 2544)
    load: str           # offered load: 10M | 100M | 1G | unlimited
    link: str           # emulated link speed, Mbit/s: none | 10 | 100 | 1000
    cpu: float          # CPU budget of the stack, cores (1.0 = unlimited)

    @property
    def key(self) -> str:
        return (f"{self.proto}-{self.frame}-load{self.load}-link{self.link}"
                f"-cpu{self.cpu:g}")

    def label(self) -> str:
        parts = [self.proto.upper(), f"{self.frame} B"]
        if self.load != "unlimited":
            parts.append(f"offered {self.load}")
        parts.append("no link limit" if self.link == "none" else f"{self.link} Mbit/s link")
        if self.cpu < 1:
            parts.append(f"CPU {self.cpu:g} core")
        return ", ".join(parts)

    @property
    def mss(self) -> int:
        """TCP MSS for the frame size (frame - 58), raised to the smallest
        MSS Linux lets a socket ask for (88); the frame really seen is
        recorded per run as frame_measured."""
        return max(TCP_MIN_MSS, self.frame - 58)

    def iperf_args(self) -> list[str]:
        args = []
        if self.proto == "udp":
            args += ["-u", "-l", str(self.frame - 46), "-b", str(LOADS[self.load])]
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
    frame-size sweep per link rate for the plots (about 7 minutes; 8.5 with latency):

      slow link, large packets     TCP 1518 B on a 100 Mbit/s link
      ... and its opposite         TCP 1518 B, no link limit
      full link rate, 64 B         UDP 64 B offered at the 100 Mbit/s link's line rate
      ... and its opposite         UDP 1518 B on the same link
      low-power CPU                TCP 1518 B on the 100 Mbit/s link, stack capped at 0.1 core
      ... and its opposite         the same on a whole core

    and TCP on an emulated 1 Gbit/s link, where native with offload runs too.
    Latency (Plan.latency) comes on top: ping idle and under a 200 Mbit/s
    TCP load, each driver and Linux routing.
    """
    pts = []
    for link in ("none", "100"):
        for frame in (64, 512, 1518):
            pts.append(Point("udp", frame, "unlimited", link, 1.0))
        pts.append(Point("tcp", 1518, "unlimited", link, 1.0))
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


def make_points(protos, frames, loads, links, cpus) -> list[Point]:
    """The cross product of the chosen values, each checked."""
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
    return [Point(p, f, ld, lk, c) for lk in links for c in cpus for p in protos
            for f in frames for ld in loads]


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
        applies (TCP, no link limit or 1 Gbit/s, a whole core); at a
        latency point native, shim and shim zero-copy."""
        if isinstance(point, LatencyPoint):
            return [d for d in self.drivers if d in LATENCY_DRIVERS]
        return [d for d in self.drivers if d != "native-tso" or
                (point.proto == "tcp" and point.link in ("none", "1000") and point.cpu >= 1)]

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
        labs = sum(len({d for p in pts for d in self.drivers_for(p)})
                   for pts in self.groups().values())
        labs += bool(self.latency_points() and self.baselines)     # Linux routing's, once
        return t + LAB_SETUP_S * labs

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


# -- running ----------------------------------------------------------------
# Set by the CLI's SIGINT/SIGTERM handler, which also raises
# KeyboardInterrupt. That exception can be swallowed when the signal lands
# where Python only reports errors (a fork hook, a __del__); the flag makes
# the next step between runs stop the bench all the same.
stop_requested = False


class Progress:
    def __init__(self, total: int, estimate: float, out=sys.stderr):
        self.total = total
        self.done = 0
        self.t0 = time.monotonic()
        self.estimate = estimate
        self.out = out

    def step(self, what: str) -> None:
        """One run begins: say so with the time left. Raises
        KeyboardInterrupt when a stop was asked for and got lost."""
        if stop_requested:
            raise KeyboardInterrupt
        el = time.monotonic() - self.t0
        if self.done:
            left = el / self.done * (self.total - self.done)
        else:
            left = self.estimate
        print(f"[{self.done + 1:3}/{self.total}] {what:58} elapsed {_mmss(el)}, "
              f"~{_mmss(left)} left", file=self.out, flush=True)
        self.done += 1


def _mmss(s: float) -> str:
    return f"{int(s) // 60}:{int(s) % 60:02}"


# What joins the hosts to a baseline, whatever the bench's --link.
BASELINE_LINKS = {"kernel": "veth", "relay": "tap", "relay-offload": "tap"}


def _record(point, kind: str, rep: int, order: int, link: str = "tap",
            latency_seconds: float = LATENCY_SECONDS) -> dict:
    """A run's record before it runs. `link_kind` is what joined the hosts
    to the forwarder (tap | veth: the bench's --link for the stack's
    drivers; a baseline's own); `link` stays the point's emulated speed."""
    lk = BASELINE_LINKS.get(kind, link)
    if isinstance(point, LatencyPoint):
        return {"kind": "latency", "point": point.key, "label": point.label(),
                "proto": point.proto, "frame": point.frame, **asdict(point), "driver": kind,
                "link_kind": lk, "rep": rep, "order": order, "ok": False, "error": None,
                "seconds": latency_seconds, "interval_s": benchlib.PING_INTERVAL,
                "warmup": benchlib.PING_WARMUP, "load_args": point.load_args()}
    return {"kind": "throughput", "point": point.key, "label": point.label(), **asdict(point),
            "driver": kind, "link_kind": lk, "mss": point.mss if point.proto == "tcp" else None,
            "rep": rep, "order": order, "ok": False, "error": None}


def _rank(vals: list, p: float):
    """The p-th percentile of sorted `vals` by nearest rank: the smallest
    value with at least p % of the values at or below it."""
    return vals[max(0, math.ceil(p * len(vals) / 100) - 1)]


def rtt_stats(rtts_us: list) -> dict:
    """p50, p99 (nearest rank), max, min and mean of RTTs in µs."""
    v = sorted(rtts_us)
    if not v:
        return {f"rtt_{k}_us": None for k in ("p50", "p99", "max", "min", "mean")}
    return {"rtt_p50_us": _rank(v, 50), "rtt_p99_us": _rank(v, 99), "rtt_max_us": v[-1],
            "rtt_min_us": v[0], "rtt_mean_us": round(sum(v) / len(v), 2)}


def rtt_histogram(rtts_us: list) -> dict:
    """Counts per bin of a 1-2-5 series in µs (a value falls in the first
    bin whose upper edge `le_us` it does not exceed); empty bins left out."""
    edges = [m * 10 ** e for e in range(8) for m in (1, 2, 5)]
    counts: dict = {}
    for r in rtts_us:
        le = next((x for x in edges if r <= x), edges[-1])
        counts[le] = counts.get(le, 0) + 1
    return {"le_us": sorted(counts), "count": [counts[k] for k in sorted(counts)]}


def _fill_latency(rec: dict, res: dict, outdir: str, tag: str) -> None:
    fn = os.path.join("ping", f"{tag}.txt")
    os.makedirs(os.path.join(outdir, "ping"), exist_ok=True)
    with open(os.path.join(outdir, fn), "w") as f:
        f.write(res["output"])
    rec["ping_output"] = fn
    rtts = res["rtts_us"]
    rec.update(rtt_stats(rtts))
    rec.update({"sent": res["sent"], "received": res["received"],
                "loss_percent": res["loss_percent"], "rtt_histogram": rtt_histogram(rtts)})
    if res.get("iperf3"):
        ifn = os.path.join("iperf3", f"{tag}.json")
        with open(os.path.join(outdir, ifn), "w") as f:
            json.dump({k: v for k, v in res["iperf3"].items() if k != "server"}, f, indent=1)
        rec["iperf3_json"] = ifn
        rec["load_bps"] = benchlib.received_bps(res["iperf3"])
        rec["load_retransmits"] = res["iperf3"]["end"]["sum_sent"].get("retransmits")
    if not rtts:
        raise BenchError(f"no echo reply came back ({res['sent']} requests)")
    rec["ok"] = True


def run_latency(point: LatencyPoint, kind: str, st: dict, load_cores, rec: dict,
                outdir: str, tag: str) -> None:
    """One latency run through lab `st` (a stack's, or Linux routing's);
    for a stack, its CPU and context switches per forwarded packet too."""
    from iopkt.ctl import control
    stack = "pid" in st
    if stack:
        fwd0 = control.request(st["prefix"], "netstat")["ip"]["forward"]
        s0 = benchlib.proc_sample(st["pid"])
    res = benchlib.latency(st["ns_a"], st["ns_b"], "198.19.0.2", rec["seconds"],
                           point.load_args(), load_cores)
    if stack:
        s1 = benchlib.proc_sample(st["pid"])
        fwd = control.request(st["prefix"], "netstat")["ip"]["forward"] - fwd0
        d = benchlib.proc_delta(st["pid"], s0, s1)
        rec.update(d)
        rec["forwarded"] = fwd
        rec["ctxsw_per_pkt"] = (d["ctxsw_voluntary"] + d["ctxsw_involuntary"]) / max(1, fwd)
        rec["cpu_us_per_pkt"] = 1e6 * (d["cpu_user_s"] + d["cpu_sys_s"]) / max(1, fwd)
    _fill_latency(rec, res, outdir, tag)


def _fill_iperf(rec: dict, res: dict, point: Point, outdir: str, tag: str) -> None:
    fn = os.path.join("iperf3", f"{tag}.json")
    with open(os.path.join(outdir, fn), "w") as f:
        json.dump({k: v for k, v in res.items() if k != "server"}, f, indent=1)
    if res.get("server"):
        with open(os.path.join(outdir, "iperf3", f"{tag}.server.json"), "w") as f:
            json.dump(res["server"], f, indent=1)
    rec["iperf3_json"] = fn
    end = res["end"]
    if point.proto == "udp":
        s = end.get("sum_received") or end["sum"]       # the receiver's side
        rec["throughput_bps"] = s["bits_per_second"]
        rec["udp_lost_percent"] = s.get("lost_percent")
        rec["udp_jitter_ms"] = s.get("jitter_ms")
        rec["udp_packets_sent"] = s.get("packets")
    else:
        rec["throughput_bps"] = end["sum_received"]["bits_per_second"]
        rec["tcp_retransmits"] = end["sum_sent"].get("retransmits")


def run_stack(point: Point, kind: str, st: dict, seconds: float, load_cores,
              rec: dict, outdir: str, tag: str) -> None:
    from iopkt.ctl import control
    nic0 = control.request(st["prefix"], "nicinfo", ifname=st["if_b"])[0]["counters"]
    m = benchlib.measure_stack(st, seconds, point.iperf_args(), load_cores)
    nic1 = control.request(st["prefix"], "nicinfo", ifname=st["if_b"])[0]["counters"]
    _fill_iperf(rec, m.pop("iperf3"), point, outdir, tag)
    rec.update(m)
    dur = seconds
    fwd = max(1, m["forwarded"])
    cpu = m["cpu_user_s"] + m["cpu_sys_s"]
    op = nic1["opackets"] - nic0["opackets"]
    rec["pps"] = m["forwarded"] / dur
    rec["cpu_us_per_pkt"] = 1e6 * cpu / fwd
    rec["ctxsw_per_pkt"] = (m["ctxsw_voluntary"] + m["ctxsw_involuntary"]) / fwd
    rec["cpu_utilisation"] = cpu / dur
    gbytes = (nic1["obytes"] - nic0["obytes"]) / 1e9
    rec["cpu_s_per_gb"] = cpu / gbytes if gbytes else None
    # The frames that really crossed (the kernel may clamp a small MSS):
    # bytes out towards B over frames out, plus the 4-byte FCS a TAP omits.
    rec["frame_measured"] = round((nic1["obytes"] - nic0["obytes"]) / op + 4, 1) if op else None
    rec["ok"] = True


def run_relay(point: Point, cores, load_cores, seconds, prefix, rec, outdir, tag,
              offload: bool = False) -> None:
    with benchlib.relay_lab(prefix, cores, offload=offload) as st:
        s0 = benchlib.proc_sample(st["pid"])
        res = benchlib.iperf3(st["ns_a"], st["ns_b"], st["server_ip"], seconds,
                              point.iperf_args(), cores=load_cores)
        s1 = benchlib.proc_sample(st["pid"])
    _fill_iperf(rec, res, point, outdir, tag)
    d = benchlib.proc_delta(st["pid"], s0, s1)
    rec.update(d)
    rec["cpu_utilisation"] = (d["cpu_user_s"] + d["cpu_sys_s"]) / seconds
    rec["ok"] = True


def run_kernel(point: Point, load_cores, seconds, prefix, rec, outdir, tag) -> None:
    with benchlib.kernel_lab(prefix) as st:
        res = benchlib.iperf3(st["ns_a"], st["ns_b"], "198.19.0.2", seconds,
                              point.iperf_args(), cores=load_cores)
    _fill_iperf(rec, res, point, outdir, tag)
    rec["ok"] = True


@contextlib.contextmanager
def _labs(plan: Plan, pts: list, link: str, cpu: float, cores):
    """One lab per driver for a (link, cpu) group of points, all up at once
    so the runs can alternate without rebuilding; the stacks pinned, and
    capped when cpu < 1."""
    stack = contextlib.ExitStack()
    with stack:
        labs = {}
        needed = {d for p in pts for d in plan.drivers_for(p)}
        for i, kind in enumerate(d for d in plan.drivers if d in needed):
            drv, opts = plan.driver_map()[kind]
            spec = lab.LabSpec(prefix=f"{plan.prefix}{i}", driver_a=drv, driver_b=drv,
                               opts_a=opts, opts_b=opts, speed=LINKS[link], link=plan.link)
            st = stack.enter_context(benchlib.stack_lab(spec, cores))
            if cpu < 1:
                stack.enter_context(cgroup.cpu_limit(st["pid"], cpu, spec.prefix))
            labs[kind] = st
        yield labs


def run(plan: Plan, outdir: str, log=sys.stderr) -> dict:
    """Run the plan; write everything into `outdir` as it goes. On Ctrl-C
    everything made is torn down and what was gathered is kept."""
    global stop_requested
    stop_requested = False
    plan.check()
    benchlib.need_iperf3()
    if plan.latency:
        benchlib.need_ping()
    os.makedirs(os.path.join(outdir, "iperf3"), exist_ok=True)
    cores, load_cores = benchlib.cpus()
    info = benchlib.machine_info()
    meta = {"schema": SCHEMA_VERSION, "started": datetime.datetime.now().isoformat(
        timespec="seconds"), "machine": benchlib.machine_line(info), **info,
        "switchinterval": sys.getswitchinterval(), "link_kind": plan.link,
        "drivers_map": {k: list(v) for k, v in plan.driver_map().items()
                        if k in plan.drivers}, "plan": {
            "points": [asdict(p) for p in plan.points], "drivers": plan.drivers,
            "link_kind": plan.link,
            "reps": plan.reps, "seconds": plan.seconds, "baselines": plan.baselines,
            "latency": [asdict(p) for p in plan.latency_points()],
            "latency_seconds": plan.latency_seconds, "ping_interval_s": benchlib.PING_INTERVAL},
        "estimate_s": round(plan.estimate_s(), 1),
        "stack_cores": sorted(cores), "iperf3_cores": sorted(load_cores),
        "interrupted": False}
    records: list[dict] = []
    prog = Progress(plan.runs(), plan.estimate_s(), log)
    t0 = time.monotonic()
    try:
        for (link, cpu), pts in plan.groups().items():
            try:
                labs_cm = _labs(plan, pts, link, cpu, cores)
                labs = labs_cm.__enter__()
            except Exception as e:          # this group cannot run; the others can
                msg = f"setting up the labs failed: {type(e).__name__}: {e}"
                print(f"      {msg}", file=log)
                for p in pts:
                    for rep in range(plan.reps):
                        for kind in plan.kinds_for(p):
                            prog.step(f"{kind:6} {p.label()} rep {rep + 1}/{plan.reps} (skipped)")
                            records.append({**_record(p, kind, rep, 0, plan.link,
                                                              plan.latency_seconds),
                                            "error": msg})
                continue
            try:
                with contextlib.ExitStack() as kernel_cm:
                    for p in pts:
                        kinds = plan.kinds_for(p)
                        for rep in range(plan.reps):
                            k = len(kinds)
                            order = [kinds[(rep + i) % k] for i in range(k)]
                            for i, kind in enumerate(order):
                                rec = _record(p, kind, rep, i, plan.link, plan.latency_seconds)
                                tag = f"{p.key}-{kind}-{rep}"
                                prog.step(f"{kind:6} {p.label()} rep {rep + 1}/{plan.reps}")
                                try:
                                    if not isinstance(p, LatencyPoint):
                                        run_stack(p, kind, labs[kind], plan.seconds, load_cores,
                                                  rec, outdir, tag)
                                    else:
                                        if kind == "kernel" and "kernel" not in labs:
                                            # Linux routing, up for the group's latency runs
                                            labs["kernel"] = kernel_cm.enter_context(
                                                benchlib.kernel_lab(f"{plan.prefix}k"))
                                        run_latency(p, kind, labs[kind], load_cores, rec,
                                                    outdir, tag)
                                except Exception as e:      # recorded; the bench goes on
                                    rec["error"] = f"{type(e).__name__}: {e}"
                                    print(f"      run failed: {rec['error']}", file=log)
                                records.append(rec)
            finally:
                labs_cm.__exit__(*sys.exc_info())
        for p in plan.baseline_points():
            for rep in range(plan.reps):
                for kind in plan.baselines_for(p):
                    rec = _record(p, kind, rep, 0, plan.link)
                    tag = f"{p.key}-{kind}-{rep}"
                    prog.step(f"{kind:6} {p.label()} rep {rep + 1}/{plan.reps}")
                    try:
                        if kind == "kernel":
                            run_kernel(p, load_cores, plan.seconds, f"{plan.prefix}k", rec,
                                       outdir, tag)
                        else:
                            run_relay(p, cores, load_cores, plan.seconds, f"{plan.prefix}r",
                                      rec, outdir, tag, offload=kind == "relay-offload")
                    except Exception as e:              # recorded; the bench goes on
                        rec["error"] = f"{type(e).__name__}: {e}"
                        print(f"      run failed: {rec['error']}", file=log)
                    records.append(rec)
    except KeyboardInterrupt:
        meta["interrupted"] = True
        print("\ninterrupted: everything made is torn down; keeping the results so far",
              file=log)
    finally:
        meta["elapsed_s"] = round(time.monotonic() - t0, 1)
        write_results(outdir, meta, records)
    return {"meta": meta, "records": records}


# -- results -----------------------------------------------------------------
NO_MATPLOTLIB = ("matplotlib is not installed; pip install 'iopkt[bench]' (or "
                 "'sudo make bench', which installs it) and draw them again with "
                 "iopkt.bench.plot")


def write_results(outdir: str, meta: dict, records: list[dict], log=sys.stderr) -> None:
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump({"meta": meta, "runs": records}, f, indent=1)
    summary, latency = summarise(records), summarise_latency(records)
    try:
        plots = plot(outdir, summary, latency)
    except ImportError:
        plots = NO_MATPLOTLIB
    except Exception as e:                  # the tables matter more than the pictures
        plots = f"plotting failed: {type(e).__name__}: {e}"
    if isinstance(plots, str):
        print(f"iopkt bench: no plots: {plots}", file=log)
    with open(os.path.join(outdir, "results.md"), "w") as f:
        f.write(render_md(meta, summary, latency, plots))


def _stats(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    med = statistics.median(vals)
    spread = max(abs(v - med) for v in vals) / med if med else 0.0
    return {"median": med, "min": min(vals), "max": max(vals), "n": len(vals),
            "spread": spread}


FIGURES = ("throughput_bps", "pps", "cpu_us_per_pkt", "ctxsw_per_pkt", "cpu_s_per_gb",
           "cpu_stack_thread_s", "cpu_other_threads_s", "cpu_utilisation",
           "udp_lost_percent", "tcp_retransmits", "frame_measured", "rss_peak_kb")
RATIOS = (("shim", "native"), ("shim0", "native"), ("native", "kernel"), ("native", "relay"),
          ("shim", "relay"), ("native-tso", "native"), ("native-tso", "kernel"),
          ("native-tso", "relay-offload"), ("shim", "native-tso"))


def summarise(records: list[dict]) -> dict:
    """{point: {"label", "point", "drivers": {kind: {figure: stats}},
    "ratios": {"shim/native": {figure: stats}, ...}}}; ratios pair by pair
    (same point, same repetition)."""
    out: dict = {}
    for r in records:
        if not r.get("ok") or r.get("kind", "throughput") != "throughput":
            continue
        e = out.setdefault(r["point"], {"label": r["label"], "point": {
            k: r[k] for k in ("proto", "frame", "load", "link", "cpu")},
            "drivers": {}, "_by_rep": {}})
        e["_by_rep"].setdefault(r["rep"], {})[r["driver"]] = r
    for e in out.values():
        kinds = {k for rep in e["_by_rep"].values() for k in rep}
        for k in kinds:
            e["drivers"][k] = {f: _stats([rep[k].get(f) for rep in e["_by_rep"].values()
                                          if k in rep]) for f in FIGURES}
        e["ratios"] = {}
        for num, den in RATIOS:
            rs = {}
            for f in ("throughput_bps", "cpu_us_per_pkt", "ctxsw_per_pkt", "cpu_s_per_gb"):
                vals = [rep[num][f] / rep[den][f] for rep in e["_by_rep"].values()
                        if num in rep and den in rep and rep[num].get(f) is not None
                        and rep[den].get(f)]
                rs[f] = _stats(vals)
            if any(rs.values()):
                e["ratios"][f"{num}/{den}"] = rs
        del e["_by_rep"]
    return out


LAT_FIGURES = ("rtt_p50_us", "rtt_p99_us", "rtt_max_us", "rtt_mean_us", "rtt_min_us",
               "loss_percent", "load_bps", "ctxsw_per_pkt", "cpu_us_per_pkt")
# Per crossing of the stack, µs: (RTT of the first - RTT of the second) / 2.
LAT_DIFFS = (("shim", "native"), ("shim0", "native"), ("native", "kernel"))


def summarise_latency(records: list[dict]) -> dict:
    """{point: {"label", "point", "drivers": {kind: {figure: stats}},
    "diffs": {"shim-native": {"p50": stats, "p99": stats}, ...}}}: the
    differences per crossing of the stack ((a - b) / 2, an RTT crosses it
    twice), repetition by repetition. "shim-native" is the hand-off's cost."""
    out: dict = {}
    for r in records:
        if not r.get("ok") or r.get("kind") != "latency":
            continue
        e = out.setdefault(r["point"], {"label": r["label"], "point": {
            k: r[k] for k in ("load", "link", "cpu")}, "drivers": {}, "_by_rep": {}})
        e["_by_rep"].setdefault(r["rep"], {})[r["driver"]] = r
    for e in out.values():
        reps = list(e["_by_rep"].values())
        for k in {k for rep in reps for k in rep}:
            e["drivers"][k] = {f: _stats([rep[k].get(f) for rep in reps if k in rep])
                               for f in LAT_FIGURES}
        e["diffs"] = {}
        for a, b in LAT_DIFFS:
            d = {q: _stats([(rep[a][f] - rep[b][f]) / 2 for rep in reps
                            if a in rep and b in rep])
                 for q, f in (("p50", "rtt_p50_us"), ("p99", "rtt_p99_us"))}
            if d["p50"]:
                e["diffs"][f"{a}-{b}"] = d
        del e["_by_rep"]
    return out


def _lat(latency: dict, load: str):
    return next((e for e in latency.values() if e["point"]["load"] == load), None)


def render_latency(latency: dict, seconds: float = LATENCY_SECONDS) -> list[str]:
    """The "## Latency" section of results.md; `seconds` of pings a run."""
    if not latency:
        return []
    L = ["## Latency", "",
         f"ping from host A to host B every {benchlib.PING_INTERVAL * 1000:g} ms, 64-byte "
         f"frames, {seconds:g} s per run (the first {benchlib.PING_WARMUP} "
         "requests not counted), percentiles by nearest rank of every RTT of a run; "
         "no link limit, stack on a whole core. Loaded: iperf3 TCP at 200 Mbit/s A -> B "
         "through the same path, a rate every forwarder here carries (so the queueing is "
         "the forwarder's, not a full link's buffer); it starts "
         f"{benchlib.LOAD_LEAD:g} s before the first request. Medians of the runs with "
         "[min–max], in µs.", "",
         "| condition | driver | p50 | p99 | max | mean | loss % | load Mbit/s "
         "| ctx sw / fwd pkt |", "|---|---|---|---|---|---|---|---|---|"]
    for e in latency.values():
        for k in KINDS:
            d = e["drivers"].get(k)
            if d:
                L.append(f"| {e['label']} | {DRIVER_LABELS[k]} | {_m(d['rtt_p50_us'], '{:.0f}')} "
                         f"| {_m(d['rtt_p99_us'], '{:.0f}')} | {_m(d['rtt_max_us'], '{:.0f}')} "
                         f"| {_m(d['rtt_mean_us'], '{:.0f}')} | {_m(d['loss_percent'], '{:.1f}')} "
                         f"| {_m(d['load_bps'], '{:.0f}', 1e-6)} "
                         f"| {_m(d['ctxsw_per_pkt'], '{:.2f}')} |")
    L += ["", "Per crossing of the forwarder, (RTT of one − RTT of the other) / 2, "
          "repetition by repetition, µs: a ping's RTT crosses it twice (request, reply), "
          "and in a shim lab each crossing goes through one hand-off, so shim − native is "
          "what the hand-off costs.", "",
          "| condition | difference | p50 | p99 |", "|---|---|---|---|"]
    names = {"shim-native": "hand-off: shim − native",
             "shim0-native": "hand-off: shim zero-copy − native",
             "native-kernel": "native − Linux routing"}
    for e in latency.values():
        for name, d in e["diffs"].items():
            L.append(f"| {e['label']} | {names.get(name, name)} | {_m(d['p50'])} "
                     f"| {_m(d['p99'])} |")
    return L + [""]


def _m(st, fmt="{:.1f}", scale=1.0):
    if not st:
        return "–"
    return (fmt.format(st["median"] * scale) + " [" + fmt.format(st["min"] * scale) + "–"
            + fmt.format(st["max"] * scale) + "]")


def render_md(meta: dict, summary: dict, latency: dict | None = None,
              plots: list | str | None = None) -> str:
    """results.md; `plots`: the (file, what) list plot() drew, or why none."""
    latency = latency or {}
    code = (f"iopkt {meta['iopkt_version']}" if meta.get("iopkt_version") else "iopkt") + (
        f", git {meta['git_commit'][:12]}{' (modified)' if meta.get('git_dirty') else ''}"
        if meta.get("git_commit") else "")
    tools = ", ".join(x for x in (meta.get("iperf3_version"), meta.get("ping_version")) if x)
    L = [f"# iopkt bench — {meta['started']}", "",
         f"Code: {code}" + (f"; {tools}" if tools else "") + ".", "",
         f"Machine: {meta['machine']}. Stack pinned to core(s) {meta['stack_cores']}, "
         f"iperf3 to {meta['iperf3_cores']}. sys.getswitchinterval() = "
         f"{meta['switchinterval']} s. {meta['plan']['reps']} repetitions of "
         f"{meta['plan']['seconds']} s per driver and point, drivers alternating; "
         f"medians with [min–max]. Took {meta.get('elapsed_s', 0):.0f} s"
         + (f" (estimated {meta['estimate_s']:.0f} s)" if meta.get("estimate_s") else "")
         + (" — INTERRUPTED, partial results." if meta.get("interrupted") else "."), ""]
    lk = meta.get("link_kind", "tap")
    dm = meta.get("drivers_map") or {k: list(v) for k, v in LINK_KINDS.get(lk, {}).items()}
    L += [f"Link: the hosts are joined to the stack by {LINK_LABELS.get(lk, lk)} "
          f"(`iopkt bench --link {lk}`): "
          + ", ".join(f"{k} = {d}" + (f" {o}" if o else "") for k, (d, o) in dm.items())
          + ". The baselines are the same whatever the link: Linux routing over veth "
          "pairs, the plain relay between TAPs.", ""]
    L += ["## Per point and driver", "",
          "| point | driver | Mbit/s | kpps | CPU µs/pkt | CPU s/GB | ctx sw/pkt "
          "| stack thread CPU s | legacy thread CPU s | loss % / retrans | frame seen |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, e in summary.items():
        for k in KINDS:
            d = e["drivers"].get(k)
            if not d:
                continue
            lr = d["udp_lost_percent"] if e["point"]["proto"] == "udp" else d["tcp_retransmits"]
            L.append(f"| {e['label']} | {k} | {_m(d['throughput_bps'], scale=1e-6)} | "
                     f"{_m(d['pps'], scale=1e-3)} | {_m(d['cpu_us_per_pkt'], '{:.2f}')} | "
                     f"{_m(d['cpu_s_per_gb'], '{:.2f}')} | "
                     f"{_m(d['ctxsw_per_pkt'], '{:.3f}')} | "
                     f"{_m(d['cpu_stack_thread_s'], '{:.2f}')} | "
                     f"{_m(d['cpu_other_threads_s'], '{:.2f}')} | {_m(lr, '{:.1f}')} | "
                     f"{_m(d['frame_measured'], '{:.0f}')} |")
    L += ["", "## Ratios, pair by pair", "",
          "| point | ratio | throughput | CPU per packet | CPU per GB | ctx switches per packet |",
          "|---|---|---|---|---|---|"]
    for key, e in summary.items():
        for name, rs in e["ratios"].items():
            L.append(f"| {e['label']} | {name} | {_m(rs['throughput_bps'], '{:.2f}')} | "
                     f"{_m(rs['cpu_us_per_pkt'], '{:.2f}')} | "
                     f"{_m(rs['cpu_s_per_gb'], '{:.2f}')} | "
                     f"{_m(rs['ctxsw_per_pkt'], '{:.2f}')} |")
    sp = [(e["label"], k, d["cpu_us_per_pkt"]["spread"]) for e in summary.values()
          for k, d in e["drivers"].items() if d.get("cpu_us_per_pkt")]
    if sp:
        worst = max(sp, key=lambda x: x[2])
        within = sum(1 for x in sp if x[2] <= 0.10)
        L += ["", f"Spread of CPU µs per packet around its median: {within} of {len(sp)} "
              f"point/driver cells within 10%; the widest is {worst[2] * 100:.0f}% "
              f"({worst[1]}, {worst[0]})."]
    L += [""] + render_latency(latency, meta.get("plan", {}).get("latency_seconds",
                                                                 LATENCY_SECONDS))
    L += ["## Verdicts: the seed's claims, what offload buys, what the hand-off costs", ""]
    L += verdict(summary, latency)
    L += ["", "## Plots", ""]
    if isinstance(plots, str):
        L.append(f"None drawn: {plots}")
    elif plots:
        L += [f"- [{fn}]({fn}): {what}" for fn, what in plots]
    else:
        L.append("None: no point had what a figure needs.")
    return "\n".join(L) + "\n"


def _find(summary, **kw):
    for e in summary.values():
        if all(e["point"][k] == v for k, v in kw.items()):
            return e
    return None


def verdict(summary: dict, latency: dict | None = None) -> list[str]:
    """One row per claim of the seed, decided from the measurements."""
    rows = ["| claim | conditions run | measured | verdict |", "|---|---|---|---|"]

    def ratio(e, f="throughput_bps", name="shim/native"):
        rs = e and e["ratios"].get(name, {}).get(f)
        return rs["median"] if rs else None

    slow = _find(summary, proto="tcp", frame=1518, link="100", cpu=1.0)
    if slow and "native" in slow["drivers"] and "shim" in slow["drivers"]:
        n = slow["drivers"]["native"]["throughput_bps"]["median"] / 1e6
        s = slow["drivers"]["shim"]["throughput_bps"]["median"] / 1e6
        tr, cr = ratio(slow), ratio(slow, "cpu_us_per_pkt")
        same = 0.95 <= tr <= 1.05 and n > 85 and s > 85
        cpu_same = cr is not None and cr < 1.15
        rows.append(
            f"| Slow link, large packets: native and shim hard to tell apart, about 90 Mbit/s "
            f"both, CPU difference hard to measure | {slow['label']} | native {n:.1f}, shim "
            f"{s:.1f} Mbit/s (shim/native {tr:.2f}); CPU per packet shim/native {cr:.2f} | "
            + ("throughput: reproduced" if same else "throughput: NOT reproduced")
            + ("; CPU: reproduced |" if cpu_same else
               "; CPU: not reproduced — the difference is easy to measure here (see note) |"))
    small = _find(summary, proto="udp", frame=64, link="100", load="unlimited", cpu=1.0)
    large = _find(summary, proto="udp", frame=1518, link="100", load="unlimited", cpu=1.0)
    if small and large and ratio(small) and ratio(large):
        free = _find(summary, proto="udp", frame=64, link="none", load="unlimited", cpu=1.0)
        rows.append(
            f"| Native wins most at full link speed with minimum-size packets | "
            f"{small['label']} vs {large['label']}, both offered beyond the link rate | "
            f"shim/native throughput {ratio(small):.2f} at 64 B vs {ratio(large):.2f} at "
            f"1518 B; CPU per packet shim/native {ratio(small, 'cpu_us_per_pkt'):.2f} vs "
            f"{ratio(large, 'cpu_us_per_pkt'):.2f}"
            + (f"; with no link limit {ratio(free):.2f} at 64 B" if free and ratio(free) else "")
            + " | " + ("reproduced" if ratio(small) < ratio(large) - 0.03 else "NOT reproduced")
            + " |")
    low = _find(summary, proto="tcp", frame=1518, link="100", cpu=LOW_POWER_CPU)
    ref = _find(summary, proto="tcp", frame=1518, link="100", cpu=1.0)
    if low and ref and ratio(low) and ratio(ref):
        rows.append(
            f"| Native wins most on low-power CPUs | {low['label']} vs {ref['label']} | "
            f"shim/native throughput {ratio(low):.2f} on {LOW_POWER_CPU:g} core vs "
            f"{ratio(ref):.2f} on a whole core | "
            + ("reproduced" if ratio(low) < ratio(ref) - 0.03 else
               "NOT reproduced: the gap does not widen") + " |")
    rows += tso_row(summary)
    rows += latency_row(latency or {})
    return rows


def latency_row(latency: dict) -> list[str]:
    """The shim forces a context switch on receive (the legacy driver's
    thread hands each packet to the stack thread): where a user feels it
    is the round-trip time. Shown when the hand-off adds time in every
    repetition, idle."""
    idle, busy = _lat(latency, "idle"), _lat(latency, "200M")
    hand = idle and idle["diffs"].get("shim-native")
    if not hand:
        return []

    def p50(e, k, q="rtt_p50_us"):
        st = e and e["drivers"].get(k, {}).get(q)
        return st["median"] if st else None

    def drivers(e, q="rtt_p50_us"):
        return ", ".join(f"{DRIVER_LABELS[k]} {p50(e, k, q):.0f}" for k in
                         ("native", "shim", "shim0", "kernel") if p50(e, k, q) is not None)

    def hands(e):
        out = []
        for name, what in (("shim-native", "shim"), ("shim0-native", "shim zero-copy")):
            d = e and e["diffs"].get(name)
            if d:
                out.append(f"{what} {_m(d['p50'])}")
        return ", ".join(out)

    cs = [(k, idle["drivers"][k]["ctxsw_per_pkt"]) for k in ("native", "shim")
          if idle["drivers"].get(k, {}).get("ctxsw_per_pkt")]
    part = [f"p50 RTT idle: {drivers(idle)} µs; p99 idle: {drivers(idle, 'rtt_p99_us')} µs"]
    if busy:
        part.append(f"under load p50: {drivers(busy)}; p99: {drivers(busy, 'rtt_p99_us')} µs")
    part.append(f"the hand-off per crossing, p50: idle {hands(idle)} µs"
                + (f"; under load {hands(busy)} µs" if busy and hands(busy) else ""))
    if len(cs) == 2:
        part.append(f"context switches per forwarded packet idle: native "
                    f"{cs[0][1]['median']:.2f}, shim {cs[1][1]['median']:.2f}")
    nat = p50(idle, "native")
    shown = hand["p50"]["min"] > 0
    what = (f"shown: each crossing of the hand-off adds {hand['p50']['median']:.0f} µs, "
            f"{2 * hand['p50']['median'] / nat * 100:.0f} % of native's RTT"
            if shown and nat else "NOT shown: the hand-off does not add time in every run")
    return [f"| Under the shim each received packet costs a forced context switch (the legacy "
            f"driver's thread hands it to the stack thread); a user feels it as latency | "
            f"ping A -> B every {benchlib.PING_INTERVAL * 1000:g} ms, 64 B frames, through "
            f"each driver and Linux routing, idle and under TCP at 200 Mbit/s (every "
            f"forwarder carries it), no link limit | {'; '.join(part)} | {what} |"]


def tso_row(summary: dict) -> list[str]:
    """Not a claim of the seed but of io-pkt's: a native driver can use
    the NIC's TSO, an io-net driver under the shim cannot."""
    full = _find(summary, proto="tcp", frame=1518, link="none", cpu=1.0)
    gbe = _find(summary, proto="tcp", frame=1518, link="1000", cpu=1.0)

    def med(e, k, f="throughput_bps", scale=1e-6):
        st = e and e["drivers"].get(k, {}).get(f)
        return st["median"] * scale if st else None

    if not full or med(full, "native-tso") is None or med(full, "shim") is None:
        return []
    tso, nat, shim, kern = (med(full, k) for k in ("native-tso", "native", "shim", "kernel"))
    part = [f"no link limit: native with offload {tso:.0f}, native {nat or 0:.0f}, shim "
            f"{shim:.0f} Mbit/s" + (f", Linux routing {kern:.0f} (native with offload / Linux "
                                    f"{tso / kern:.2f})" if kern else "")]
    if gbe and med(gbe, "native-tso") is not None and med(gbe, "shim") is not None:
        part.append("1 Gbit/s link: " + ", ".join(
            f"{DRIVER_LABELS[k]} {med(gbe, k):.0f} Mbit/s at "
            f"{med(gbe, k, 'cpu_s_per_gb', 1):.2f} CPU s/GB"
            for k in ("native-tso", "native", "shim") if med(gbe, k) is not None))
    shown = nat and tso > 2 * nat and tso > 2 * shim
    return [f"| Native drivers can use the NIC's TSO; io-net drivers under the shim cannot | "
            f"TCP, 1518 B frames on the wire, no link limit and a 1 Gbit/s link | "
            f"{'; '.join(part)} | " + ("shown" if shown else "NOT shown") + " |"]


PLOT_STYLE = {"native": ("o", "-", "C0"), "native-tso": ("v", "-", "C1"),
              "shim": ("s", "-", "C3"), "shim0": ("^", "--", "C4"),
              "kernel": ("d", ":", "C2"), "relay": ("x", ":", "C7"),
              "relay-offload": ("+", ":", "C8")}
CLAIM_KINDS = ("native", "shim", "shim0")


def _st(e, k, f):
    return e["drivers"].get(k, {}).get(f) if e else None


def _ratio_label(name: str) -> str:
    a, b = name.split("/")
    return f"{DRIVER_LABELS[a]} / {DRIVER_LABELS[b]}"


def _log_if_wide(ax, values, axis="y") -> None:
    """A log axis where the values span a decade or more."""
    if any(x is not None and x <= 0 for x in values):
        return                              # a log axis would hide them
    v = [x for x in values if x]
    if v and max(v) / min(v) >= 10:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def _whiskers(sts, scale=1.0):
    ys = [s["median"] * scale for s in sts]
    return ys, [[(s["median"] - s["min"]) * scale for s in sts],
                [(s["max"] - s["median"]) * scale for s in sts]]


def _bars(ax, conds, series, title, ylabel=None, one=False):
    """Grouped bars: a group per condition (x label, entry), a bar per
    series (label, colour, get(entry) -> stats or None, scale), median with
    [min–max] whiskers; a line at 1 for ratios (`one`)."""
    series = [s for s in series if any(s[2](e) for _, e in conds)]
    w = 0.8 / max(1, len(series))
    vals = []
    for j, (label, colour, get, scale) in enumerate(series):
        pts = [(i, get(e)) for i, (_, e) in enumerate(conds) if get(e)]
        ys, err = _whiskers([st for _, st in pts], scale)
        xs = [i + (j - (len(series) - 1) / 2) * w for i, _ in pts]
        ax.bar(xs, ys, w * 0.9, yerr=err, capsize=3, label=label, color=colour)
        vals += ys
    ax.set_xticks(range(len(conds)), [c for c, _ in conds])
    ax.set_title(title, fontsize=10)
    if ylabel:
        ax.set_ylabel(ylabel)
    if one:
        ax.axhline(1.0, color="k", lw=0.8)
    else:
        _log_if_wide(ax, vals)
    ax.grid(axis="y", alpha=0.3)
    if series:
        ax.legend(fontsize=8)


def _driver_series(kinds, f, scale=1.0):
    return [(DRIVER_LABELS[k], PLOT_STYLE[k][2], lambda e, k=k: _st(e, k, f), scale)
            for k in kinds]


def _ratio_series(names, figs=(("throughput_bps", "throughput"),
                               ("cpu_us_per_pkt", "CPU per packet"))):
    colours = iter(f"C{i}" for i in range(10))
    return [(f"{_ratio_label(n)}, {what}", next(colours),
             lambda e, n=n, f=f: e and e["ratios"].get(n, {}).get(f), 1.0)
            for f, what in figs for n in names]


def _lines(ax, entries, kinds, f, scale, title, ylabel=None, x="frame"):
    """Median with [min–max] whiskers against the point's `x`, a line per driver."""
    vals = []
    for k in kinds:
        pts = [(e["point"][x], _st(e, k, f)) for e in entries if _st(e, k, f)]
        if not pts:
            continue
        ys, err = _whiskers([st for _, st in pts], scale)
        marker, ls, colour = PLOT_STYLE[k]
        ax.errorbar([p for p, _ in pts], ys, yerr=err, marker=marker, ls=ls, color=colour,
                    label=DRIVER_LABELS[k], capsize=3)
        vals += ys
    ax.set_title(title, fontsize=10)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.set_xlabel("frame size (bytes, with FCS)" if x == "frame" else "CPU budget (cores)")
    _log_if_wide(ax, vals)
    ax.grid(alpha=0.3)
    return vals


def _claim1(plt, summary):
    slow = _find(summary, proto="tcp", frame=1518, link="100", load="unlimited", cpu=1.0)
    full = _find(summary, proto="tcp", frame=1518, link="none", load="unlimited", cpu=1.0)
    if not slow:
        return None
    conds = [("100 Mbit/s link\n(the claim)", slow)] + (
        [("no link limit\n(the opposite)", full)] if full else [])
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    _bars(axes[0], conds, _driver_series(CLAIM_KINDS, "throughput_bps", 1e-6),
          "throughput", "Mbit/s")
    _bars(axes[1], conds, _driver_series(CLAIM_KINDS, "cpu_us_per_pkt"),
          "stack CPU per forwarded packet", "µs")
    _bars(axes[2], conds, _ratio_series(("shim/native", "shim0/native")),
          "ratios, repetition by repetition", one=True)
    fig.suptitle("Claim 1: with a slow link and large packets native and shim are hard to "
                 "tell apart (TCP, 1518 B frames, offload off)")
    return fig, ("claim 1, slow link and large packets: TCP 1518 B on a 100 Mbit/s link "
                 "and with no link limit; throughput, CPU per packet, shim/native ratios")


def _claim2(plt, summary):
    def sweep(link):
        return sorted((e for e in summary.values() if e["point"]["proto"] == "udp"
                       and e["point"]["link"] == link and e["point"]["load"] == "unlimited"
                       and e["point"]["cpu"] >= 1), key=lambda e: e["point"]["frame"])
    slow, free = sweep("100"), sweep("none")
    if not slow:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    _lines(axes[0], slow, CLAIM_KINDS, "pps", 1e-3, "100 Mbit/s link, UDP offered beyond it",
           "forwarded kpps")
    frames = [e["point"]["frame"] for e in slow]
    fr = [min(frames) + (max(frames) - min(frames)) * i / 50 for i in range(51)]
    axes[0].plot(fr, [100e6 / (8 * (f + 20)) / 1e3 for f in fr], color="grey", ls="--",
                 lw=0.8, label="line rate")
    axes[0].legend(fontsize=8)
    if free:
        _lines(axes[1], free, CLAIM_KINDS, "pps", 1e-3, "no link limit", "forwarded kpps")
        axes[1].legend(fontsize=8)
    else:
        axes[1].set_visible(False)
    vals = []
    for (link, es), ls in ((("100 Mbit/s link", slow), "-"), (("no link limit", free), ":")):
        for name, colour in (("shim/native", "C3"), ("shim0/native", "C4")):
            pts = [(e["point"]["frame"], e["ratios"].get(name, {}).get("throughput_bps"))
                   for e in es]
            pts = [(x, st) for x, st in pts if st]
            if pts:
                ys, err = _whiskers([st for _, st in pts])
                axes[2].errorbar([x for x, _ in pts], ys, yerr=err, ls=ls, marker="o",
                                 color=colour, capsize=3, label=f"{_ratio_label(name)}, {link}")
                vals += ys
    axes[2].axhline(1.0, color="k", lw=0.8)
    axes[2].set_title("throughput ratio", fontsize=10)
    axes[2].set_xlabel("frame size (bytes, with FCS)")
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    fig.suptitle("Claim 2: native wins most at full link speed with minimum-size packets "
                 "(UDP, offered load unlimited)")
    return fig, ("claim 2, full link speed and small frames: forwarded kpps against frame "
                 "size on a 100 Mbit/s link (with its line rate) and with no link limit, "
                 "and the shim/native throughput ratio")


def _claim3(plt, summary):
    series: dict = {}
    for e in summary.values():
        p = e["point"]
        series.setdefault((p["proto"], p["frame"], p["link"], p["load"]), []).append(e)
    series = {k: sorted(v, key=lambda e: e["point"]["cpu"]) for k, v in series.items()
              if len({e["point"]["cpu"] for e in v}) >= 2}
    if not series:
        return None
    main = series.get(("tcp", 1518, "100", "unlimited")) or next(iter(series.values()))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    conds = [(f"{e['point']['cpu']:g} core", e) for e in main]
    _bars(axes[0], conds, _driver_series(CLAIM_KINDS, "throughput_bps", 1e-6),
          f"throughput, {main[0]['label'].rsplit(', CPU', 1)[0]}", "Mbit/s")
    for i, ((proto, frame, link, load), es) in enumerate(series.items()):
        pts = [(e["point"]["cpu"], e["ratios"].get("shim/native", {}).get("throughput_bps"))
               for e in es]
        pts = [(x, st) for x, st in pts if st]
        if pts:
            ys, err = _whiskers([st for _, st in pts])
            axes[1].errorbar([x for x, _ in pts], ys, yerr=err, marker="o", capsize=3,
                             color=f"C{i}", label=f"{proto.upper()} {frame} B, "
                             + ("no link limit" if link == "none" else f"{link} Mbit/s link"))
    axes[1].axhline(1.0, color="k", lw=0.8)
    axes[1].set_title("shim / native throughput against the stack's CPU budget", fontsize=10)
    axes[1].set_xlabel("CPU budget (cores, cgroup)")
    axes[1].grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle("Claim 3: native wins most on low-power CPUs")
    return fig, ("claim 3, low-power CPU: throughput with the stack capped (cgroup) and on a "
                 "whole core, and the shim/native throughput ratio against the CPU budget")


def _tso(plt, summary):
    full = _find(summary, proto="tcp", frame=1518, link="none", load="unlimited", cpu=1.0)
    gbe = _find(summary, proto="tcp", frame=1518, link="1000", load="unlimited", cpu=1.0)
    conds = [(c, e) for c, e in (("no link limit", full), ("1 Gbit/s link", gbe))
             if e and "native-tso" in e["drivers"]]
    if not conds:
        return None
    kinds = ("native-tso", "native", "shim", "shim0", "kernel", "relay", "relay-offload")
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.4))
    _bars(axes[0], conds, _driver_series(kinds, "throughput_bps", 1e-6), "throughput",
          "Mbit/s")
    _bars(axes[1], conds, _driver_series(kinds, "cpu_s_per_gb"),
          "stack CPU per GB sent towards B", "CPU s / GB")
    fig.suptitle("Native drivers can use the NIC's TSO; io-net drivers under the shim "
                 "cannot (TCP, 1518 B frames on the wire)")
    return fig, ("what offload buys: TCP throughput and CPU per GB with no link limit and "
                 "on a 1 Gbit/s link, native with offload against native, the shim and "
                 "the baselines")


def _latency(plt, latency):
    if not latency:
        return None
    es = list(latency.values())
    kinds = ("native", "shim", "shim0", "kernel")
    fig, axes = plt.subplots(1, len(es) + 1, figsize=(6 * len(es) + 5, 4.4))
    quant = (("p50", "rtt_p50_us", "C0"), ("p99", "rtt_p99_us", "C1"),
             ("max", "rtt_max_us", "C3"))
    for ax, e in zip(axes, es):
        conds = [(DRIVER_LABELS[k].replace(" ", "\n", 1), e.get("drivers", {}).get(k))
                 for k in kinds if k in e["drivers"]]
        _bars(ax, [(c, {"drivers": {"x": d}}) for c, d in conds],
              [(q, colour, lambda x, f=f: _st(x, "x", f), 1.0) for q, f, colour in quant],
              e["label"], "RTT (µs)")
    conds = [("idle" if e["point"]["load"] == "idle" else "under load", e) for e in es]
    _bars(axes[-1], conds,
          [(f"{DRIVER_LABELS[a]} − {DRIVER_LABELS[b]}, {q}", colour,
            lambda e, n=f"{a}-{b}", q=q: e["diffs"].get(n, {}).get(q), 1.0)
           for (a, b), q, colour in ((("shim", "native"), "p50", "C3"),
                                     (("shim0", "native"), "p50", "C4"),
                                     (("shim", "native"), "p99", "C5"))],
          "the hand-off per crossing of the stack", "µs")
    fig.suptitle("Latency: ping RTT from host A to host B through each forwarder, "
                 "idle and under TCP at 200 Mbit/s")
    return fig, ("latency: ping RTT p50, p99 and max per driver and Linux routing, idle "
                 "and under load, and the hand-off's cost per crossing")


def _sweep(plt, proto, link, es):
    es = sorted(es, key=lambda e: e["point"]["frame"])
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    kinds = ("native", "native-tso", "shim", "shim0", "relay", "kernel")
    for ax, (f, title, scale) in zip(axes, (
            ("throughput_bps", "throughput (Mbit/s)", 1e-6),
            ("pps", "forwarded kpps", 1e-3),
            ("cpu_us_per_pkt", "stack CPU per forwarded packet (µs)", 1),
            ("ctxsw_per_pkt", "context switches per forwarded packet", 1))):
        _lines(ax, es, kinds, f, scale, title)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{proto.upper()}, " + ("no link limit" if link == "none"
                                         else f"{link} Mbit/s link") + ", by frame size")
    return fig, (f"{proto.upper()} " + ("with no link limit" if link == "none" else
                                        f"on a {link} Mbit/s link")
                 + ": throughput, kpps, CPU and context switches per packet against frame size")


def plot(outdir: str, summary: dict, latency: dict | None = None) -> list[tuple]:
    """A figure per claim of the seed (and for offload and latency), and
    per protocol and link rate with more than one frame size. Returns
    [(file, what it shows)]. ImportError when matplotlib is missing."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figs = [("plot-claim1-slow-link.png", _claim1(plt, summary)),
            ("plot-claim2-small-frames.png", _claim2(plt, summary)),
            ("plot-claim3-low-power-cpu.png", _claim3(plt, summary)),
            ("plot-tso.png", _tso(plt, summary)),
            ("plot-latency.png", _latency(plt, latency or {}))]
    groups: dict = {}
    for e in summary.values():
        p = e["point"]
        if p["cpu"] >= 1 and p["load"] == "unlimited":
            groups.setdefault((p["proto"], p["link"]), []).append(e)
    for (proto, link), es in groups.items():
        if len({e["point"]["frame"] for e in es}) >= 2:
            figs.append((f"plot-{proto}-link{link}.png", _sweep(plt, proto, link, es)))
    made = []
    for fn, made_fig in figs:
        if made_fig is None:
            continue
        fig, what = made_fig
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, fn), dpi=90)
        plt.close(fig)
        made.append((fn, what))
    return made


# -- compare -----------------------------------------------------------------
# (figure, what, unit, scale) compared between two results folders
COMPARE_FIGURES = (("throughput_bps", "throughput", "Mbit/s", 1e-6),
                   ("pps", "forwarded", "kpps", 1e-3),
                   ("cpu_us_per_pkt", "CPU per packet", "µs", 1.0),
                   ("ctxsw_per_pkt", "ctx switches", "per packet", 1.0),
                   ("cpu_s_per_gb", "CPU per GB", "s/GB", 1.0))
COMPARE_RATIOS = (("throughput_bps", "throughput", "ratio"),
                  ("cpu_us_per_pkt", "CPU per packet", "ratio"))
COMPARE_LATENCY = (("rtt_p50_us", "RTT p50", "µs"), ("rtt_p99_us", "RTT p99", "µs"),
                   ("rtt_max_us", "RTT max", "µs"), ("loss_percent", "ping loss", "%"))


def _load_results(d: str) -> dict:
    path = os.path.join(d, "results.json")
    if not os.path.exists(path):
        raise BenchError(f"{d}: no results.json (is it a bench results folder?)")
    try:
        with open(path) as f:
            data = json.load(f)
        runs = data["runs"]
        return {"meta": data.get("meta", {}), "summary": summarise(runs),
                "latency": summarise_latency(runs)}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise BenchError(f"{path}: not a results.json written by iopkt bench "
                         f"({type(e).__name__}: {e})") from None


def _scaled(st, scale):
    return {"median": st["median"] * scale, "min": st["min"] * scale,
            "max": st["max"] * scale, "n": st["n"]}


def compare_rows(old_dir: str, new_dir: str) -> dict:
    """Every figure both folders have, old and new as median [min–max] in
    the unit named, the change of the medians in %, and whether the two
    ranges overlap (if not, the change is beyond the repetitions' spread)."""
    old, new = _load_results(old_dir), _load_results(new_dir)
    rows = []

    def add(key, label, what, figure, unit, a, b, scale=1.0):
        if not a or not b:
            return
        a, b = _scaled(a, scale), _scaled(b, scale)
        rows.append({"point": key, "label": label, "driver": what, "figure": figure,
                     "unit": unit, "old": a, "new": b,
                     "change_percent": ((b["median"] - a["median"]) / abs(a["median"]) * 100
                                        if a["median"] else None),
                     "ranges_overlap": a["min"] <= b["max"] and b["min"] <= a["max"]})

    o, n = old["summary"], new["summary"]
    for key in [k for k in o if k in n]:
        lab = o[key]["label"]
        for k in [k for k in KINDS if k in o[key]["drivers"] and k in n[key]["drivers"]]:
            for f, what, unit, scale in COMPARE_FIGURES:
                add(key, lab, k, what, unit, o[key]["drivers"][k].get(f),
                    n[key]["drivers"][k].get(f), scale)
        for name in [x for x in o[key]["ratios"] if x in n[key]["ratios"]]:
            for f, what, unit in COMPARE_RATIOS:
                add(key, lab, name, what, unit, o[key]["ratios"][name].get(f),
                    n[key]["ratios"][name].get(f))
    o, n = old["latency"], new["latency"]
    for key in [k for k in o if k in n]:
        lab = o[key]["label"]
        for k in [k for k in KINDS if k in o[key]["drivers"] and k in n[key]["drivers"]]:
            for f, what, unit in COMPARE_LATENCY:
                add(key, lab, k, what, unit, o[key]["drivers"][k].get(f),
                    n[key]["drivers"][k].get(f))
        for name in [x for x in o[key]["diffs"] if x in n[key]["diffs"]]:
            for q in ("p50", "p99"):
                add(key, lab, name, f"per crossing {q}", "µs", o[key]["diffs"][name].get(q),
                    n[key]["diffs"][name].get(q))
    def keys(r):
        return set(r["summary"]) | set(r["latency"])

    def about(d, r):
        m = r["meta"]
        return {"dir": d, **{k: m.get(k) for k in (
            "started", "machine", "iopkt_version", "git_commit", "git_dirty", "iperf3_version",
            "elapsed_s")}, "reps": m.get("plan", {}).get("reps"),
            "seconds": m.get("plan", {}).get("seconds"),
            "link_kind": m.get("link_kind", "tap")}     # older folders: TAPs
    return {"old": about(old_dir, old), "new": about(new_dir, new), "rows": rows,
            "only_old": sorted(keys(old) - keys(new)), "only_new": sorted(keys(new) - keys(old))}


def _num(v) -> str:
    if v is None:
        return "–"
    a = abs(v)
    return (f"{v:.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 0.1
            else f"{v:.3f}" if a >= 0.001 or a == 0 else f"{v:.1e}")


def _range(st) -> str:
    return f"{_num(st['median'])} [{_num(st['min'])}–{_num(st['max'])}]"


def compare(old_dir: str, new_dir: str, as_json: bool = False) -> str:
    """The change of every figure between two results folders: a table, or
    with `as_json` the rows of compare_rows() as JSON."""
    c = compare_rows(old_dir, new_dir)
    if as_json:
        return json.dumps(c, indent=1)

    def head(which):
        m = c[which]
        code = " ".join(x for x in (
            m["iopkt_version"] and f"iopkt {m['iopkt_version']}",
            m["git_commit"] and f"git {m['git_commit'][:12]}"
            + (" (modified)" if m["git_dirty"] else "")) if x)
        return (f"{which}: {m['dir']} — {m['started'] or '?'}"
                + (f", {code}" if code else "")
                + (f", {m['reps']} reps of {m['seconds']:g} s" if m["reps"] else "")
                + (f", over {m['link_kind']}" if m.get("link_kind", "tap") != "tap" else ""))
    lines = [head("old"), head("new"), "",
             f"{'point':40} {'driver':14} {'figure':18} {'unit':10} "
             f"{'old median [min–max]':>26} {'new median [min–max]':>26} {'change':>8}"]
    for r in c["rows"]:
        ch = ("" if r["change_percent"] is None else f"{r['change_percent']:+.1f}%") + (
            "" if r["ranges_overlap"] else " *")
        lines.append(f"{r['label'][:40]:40} {r['driver']:14} {r['figure']:18} {r['unit']:10} "
                     f"{_range(r['old']):>26} {_range(r['new']):>26} {ch:>8}")
    if c["old"].get("link_kind", "tap") != c["new"].get("link_kind", "tap"):
        lines.append(f"(old ran over {c['old']['link_kind']}, new over "
                     f"{c['new']['link_kind']}: native, shim and their kin are other drivers "
                     "in each)")
    if any(not r["ranges_overlap"] for r in c["rows"]):
        lines.append("* old and new ranges [min–max] do not overlap: the change is larger "
                     "than the spread of the repetitions")
    for which in ("only_old", "only_new"):
        if c[which]:
            lines.append(f"(points only in the {which[5:]} one: {', '.join(c[which])})")
    return "\n".join(lines)


def leftovers(prefix: str) -> list[str]:
    """What a bench with this prefix could have left behind."""
    out = [n for n in netns.ns_list() if n.startswith(prefix)]
    out += cgroup.leftovers()
    return out


def print_summary(summary: dict, out=sys.stdout, latency: dict | None = None) -> None:
    if summary:
        _print_throughput(summary, out)
    if latency:
        print(file=out)
        print_latency(latency, out)


def print_latency(latency: dict, out=sys.stdout) -> None:
    print(f"{'latency (ping RTT, µs)':48} {'driver':13} {'p50':>7} {'p99':>7} {'max':>7} "
          f"{'loss %':>7}", file=out)
    for e in latency.values():
        for k in KINDS:
            d = e["drivers"].get(k)
            if not d:
                continue
            f = {x: (d[x]["median"] if d.get(x) else float("nan")) for x in LAT_FIGURES}
            print(f"{e['label'][:48]:48} {k:13} {f['rtt_p50_us']:7.0f} {f['rtt_p99_us']:7.0f} "
                  f"{f['rtt_max_us']:7.0f} {f['loss_percent']:7.1f}", file=out)
        for name in ("shim-native", "shim0-native"):
            d = e["diffs"].get(name)
            if d:
                print(f"{'':48} {name:14} hand-off per crossing, p50 "
                      f"{_m(d['p50'])} µs", file=out)


def _print_throughput(summary: dict, out) -> None:
    print(f"{'point':48} {'driver':13} {'Mbit/s':>9} {'kpps':>8} {'µs/pkt':>8} {'s/GB':>6} "
          f"{'cs/pkt':>7}", file=out)
    for e in summary.values():
        for k in KINDS:
            d = e["drivers"].get(k)
            if not d:
                continue
            f = {x: (d[x]["median"] if d.get(x) else float("nan")) for x in FIGURES}
            print(f"{e['label'][:48]:48} {k:13} {f['throughput_bps'] / 1e6:9.1f} "
                  f"{f['pps'] / 1e3:8.1f} {f['cpu_us_per_pkt']:8.2f} {f['cpu_s_per_gb']:6.2f} "
                  f"{f['ctxsw_per_pkt']:7.3f}", file=out)
        for name in ("shim/native", "shim0/native", "native/kernel", "native/relay",
                     "native-tso/native", "native-tso/kernel", "native-tso/relay-offload"):
            rs = e["ratios"].get(name)
            if rs and rs.get("throughput_bps"):
                print(f"{'':48} {name:14} throughput {rs['throughput_bps']['median']:.2f}"
                      + (f", CPU/pkt {rs['cpu_us_per_pkt']['median']:.2f}"
                         if rs.get("cpu_us_per_pkt") else ""), file=out)


def default_outdir() -> str:
    return os.path.join("results", datetime.datetime.now().strftime("bench-%Y%m%d-%H%M%S"))
