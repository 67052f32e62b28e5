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

Results go to a folder: every iperf3 JSON as iperf3 wrote it,
results.json (one record per run), results.md (the tables and the verdict
on each claim) and PNG plots.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass

from . import benchlib, cgroup, lab, netns

DRIVERS = {
    "native": ("devnp-tap", "offload=0"),
    "native-tso": ("devnp-tap", "offload=1"),
    "shim": ("devn-tap", ""),
    "shim0": ("devn-tap", "shimrxcopy=0"),
}
DRIVER_LABELS = {"native": "native", "native-tso": "native with offload (TSO)",
                 "shim": "shim", "shim0": "shim zero-copy", "kernel": "Linux routing",
                 "relay": "plain relay", "relay-offload": "relay with offload"}
KINDS = ("native", "native-tso", "shim", "shim0", "kernel", "relay", "relay-offload")
PROTOCOLS = ("tcp", "udp")
FRAMES = (64, 128, 256, 512, 1024, 1280, 1518)        # RFC 2544, with FCS
LOADS = {"10M": 10_000_000, "100M": 100_000_000, "1G": 1_000_000_000, "unlimited": 0}
LINKS = {"none": 0, "10": 10, "100": 100, "1000": 1000}
SCHEMA_VERSION = 1
TCP_MIN_MSS = 88            # Linux refuses a smaller TCP_MAXSEG
LOW_POWER_CPU = 0.1         # cores: the default matrix's "low-power CPU"


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


def default_points() -> list[Point]:
    """The seed's three conditions and their opposites, plus a small UDP
    frame-size sweep per link rate for the plots (about 7 minutes):

      slow link, large packets     TCP 1518 B on a 100 Mbit/s link
      ... and its opposite         TCP 1518 B, no link limit
      full link rate, 64 B         UDP 64 B offered at the 100 Mbit/s link's line rate
      ... and its opposite         UDP 1518 B on the same link
      low-power CPU                TCP 1518 B on the 100 Mbit/s link, stack capped at 0.1 core
      ... and its opposite         the same on a whole core

    and TCP on an emulated 1 Gbit/s link, where native with offload runs too.
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

    def check(self) -> None:
        for d in self.drivers:
            if d not in DRIVERS:
                raise BenchError(f"driver '{d}': choose from {', '.join(DRIVERS)}")
        if not 1 <= self.reps <= 50:
            raise BenchError(f"repetitions {self.reps}: must be 1..50")
        if not 1 <= self.seconds <= 120:
            raise BenchError(f"duration {self.seconds}s: must be 1..120 seconds")
        if any(p.cpu < 1 for p in self.points) and not cgroup.available():
            raise BenchError("a CPU budget below 1 core needs the kernel's cgroup CPU "
                             "controller, which this machine does not have")
        lab.check_prefix(self.prefix)

    def drivers_for(self, point: Point) -> list:
        """The drivers that run at `point`: native-tso only where offload
        applies (TCP, no link limit or 1 Gbit/s, a whole core)."""
        return [d for d in self.drivers if d != "native-tso" or
                (point.proto == "tcp" and point.link in ("none", "1000") and point.cpu >= 1)]

    def baseline_points(self) -> list:
        if not self.baselines:
            return []
        return [p for p in self.points if p.link == "none" and p.cpu >= 1 and p.load == "unlimited"]

    @staticmethod
    def baselines_for(point: Point) -> tuple:
        return ("kernel", "relay", "relay-offload") if point.proto == "tcp" else ("kernel", "relay")

    def runs(self) -> int:
        return (sum(len(self.drivers_for(p)) for p in self.points)
                + sum(len(self.baselines_for(p)) for p in self.baseline_points())) * self.reps

    def estimate_s(self) -> float:
        return self.runs() * (self.seconds + 1.3) + 6 * len(self.groups())

    def groups(self):
        """Points that share a lab set-up (link speed and CPU budget)."""
        g: dict = {}
        for p in self.points:
            g.setdefault((p.link, p.cpu), []).append(p)
        return g


# -- running ----------------------------------------------------------------
class Progress:
    def __init__(self, total: int, estimate: float, out=sys.stderr):
        self.total = total
        self.done = 0
        self.t0 = time.monotonic()
        self.estimate = estimate
        self.out = out

    def step(self, what: str) -> None:
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


def _record(point: Point, kind: str, rep: int, order: int) -> dict:
    return {"point": point.key, "label": point.label(), **asdict(point), "driver": kind,
            "mss": point.mss if point.proto == "tcp" else None,
            "rep": rep, "order": order, "ok": False, "error": None}


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
    from . import control
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
            drv, opts = DRIVERS[kind]
            spec = lab.LabSpec(prefix=f"{plan.prefix}{i}", driver_a=drv, driver_b=drv,
                               opts_a=opts, opts_b=opts, speed=LINKS[link])
            st = stack.enter_context(benchlib.stack_lab(spec, cores))
            if cpu < 1:
                stack.enter_context(cgroup.cpu_limit(st["pid"], cpu, spec.prefix))
            labs[kind] = st
        yield labs


def run(plan: Plan, outdir: str, log=sys.stderr) -> dict:
    """Run the plan; write everything into `outdir` as it goes. On Ctrl-C
    everything made is torn down and what was gathered is kept."""
    plan.check()
    benchlib.need_iperf3()
    os.makedirs(os.path.join(outdir, "iperf3"), exist_ok=True)
    cores, load_cores = benchlib.cpus()
    meta = {"schema": SCHEMA_VERSION, "started": datetime.datetime.now().isoformat(
        timespec="seconds"), "machine": benchlib.machine_line(),
        "switchinterval": sys.getswitchinterval(), "plan": {
            "points": [asdict(p) for p in plan.points], "drivers": plan.drivers,
            "reps": plan.reps, "seconds": plan.seconds, "baselines": plan.baselines},
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
                        for kind in plan.drivers_for(p):
                            prog.step(f"{kind:6} {p.label()} rep {rep + 1}/{plan.reps} (skipped)")
                            records.append({**_record(p, kind, rep, 0), "error": msg})
                continue
            try:
                for p in pts:
                    drivers = plan.drivers_for(p)
                    for rep in range(plan.reps):
                        k = len(drivers)
                        order = [drivers[(rep + i) % k] for i in range(k)]
                        for i, kind in enumerate(order):
                            rec = _record(p, kind, rep, i)
                            tag = f"{p.key}-{kind}-{rep}"
                            prog.step(f"{kind:6} {p.label()} rep {rep + 1}/{plan.reps}")
                            try:
                                run_stack(p, kind, labs[kind], plan.seconds, load_cores,
                                          rec, outdir, tag)
                            except Exception as e:      # recorded; the bench goes on
                                rec["error"] = f"{type(e).__name__}: {e}"
                                print(f"      run failed: {rec['error']}", file=log)
                            records.append(rec)
            finally:
                labs_cm.__exit__(*sys.exc_info())
        for p in plan.baseline_points():
            for rep in range(plan.reps):
                for kind in plan.baselines_for(p):
                    rec = _record(p, kind, rep, 0)
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
def write_results(outdir: str, meta: dict, records: list[dict]) -> None:
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump({"meta": meta, "runs": records}, f, indent=1)
    summary = summarise(records)
    with open(os.path.join(outdir, "results.md"), "w") as f:
        f.write(render_md(meta, summary))
    try:
        plot(outdir, summary)
    except ImportError:
        pass


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
        if not r.get("ok"):
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


def _m(st, fmt="{:.1f}", scale=1.0):
    if not st:
        return "–"
    return (fmt.format(st["median"] * scale) + " [" + fmt.format(st["min"] * scale) + "–"
            + fmt.format(st["max"] * scale) + "]")


def render_md(meta: dict, summary: dict) -> str:
    L = [f"# iopkt bench — {meta['started']}", "",
         f"Machine: {meta['machine']}. Stack pinned to core(s) {meta['stack_cores']}, "
         f"iperf3 to {meta['iperf3_cores']}. sys.getswitchinterval() = "
         f"{meta['switchinterval']} s. {meta['plan']['reps']} repetitions of "
         f"{meta['plan']['seconds']} s per driver and point, drivers alternating; "
         f"medians with [min–max]. Took {meta.get('elapsed_s', 0):.0f} s"
         + (" — INTERRUPTED, partial results." if meta.get("interrupted") else "."), ""]
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
    L += ["", "## Verdicts: the seed's claims, and what offload buys", ""] + verdict(summary)
    return "\n".join(L) + "\n"


def _find(summary, **kw):
    for e in summary.values():
        if all(e["point"][k] == v for k, v in kw.items()):
            return e
    return None


def verdict(summary: dict) -> list[str]:
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
    return rows


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


def plot(outdir: str, summary: dict) -> list[str]:
    """Throughput, CPU per packet and context switches per packet against
    frame size, one figure per protocol and link rate, drivers side by side."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    made = []
    groups: dict = {}
    for e in summary.values():
        p = e["point"]
        if p["cpu"] >= 1 and p["load"] == "unlimited":
            groups.setdefault((p["proto"], p["link"]), []).append(e)
    for (proto, link), es in groups.items():
        frames = sorted({e["point"]["frame"] for e in es})
        if len(frames) < 2:
            continue
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        for ax, (f, title, scale) in zip(axes, (
                ("throughput_bps", "throughput (Mbit/s)", 1e-6),
                ("cpu_us_per_pkt", "stack CPU per forwarded packet (µs)", 1),
                ("ctxsw_per_pkt", "context switches per forwarded packet", 1))):
            for k, style in (("native", "o-"), ("native-tso", "v-"), ("shim", "s-"),
                             ("shim0", "^--"),
                             ("relay", "x:"), ("kernel", "d:")):
                xs, ys, lo, hi = [], [], [], []
                for fr in frames:
                    e = next(x for x in es if x["point"]["frame"] == fr)
                    st = e["drivers"].get(k, {}).get(f)
                    if st:
                        xs.append(fr)
                        ys.append(st["median"] * scale)
                        lo.append((st["median"] - st["min"]) * scale)
                        hi.append((st["max"] - st["median"]) * scale)
                if xs:
                    ax.errorbar(xs, ys, yerr=[lo, hi], fmt=style, label=k, capsize=3)
            ax.set_title(title)
            ax.set_xlabel("frame size (bytes, with FCS)")
            ax.grid(alpha=0.3)
        axes[0].legend()
        fig.suptitle(f"{proto.upper()}, " + ("no link limit" if link == "none"
                                             else f"{link} Mbit/s link"))
        fig.tight_layout()
        fn = f"plot-{proto}-link{link}.png"
        fig.savefig(os.path.join(outdir, fn), dpi=90)
        plt.close(fig)
        made.append(fn)
    return made


# -- compare -----------------------------------------------------------------
def compare(old_dir: str, new_dir: str) -> str:
    """The change of every figure between two results folders."""
    def load(d):
        path = os.path.join(d, "results.json")
        if not os.path.exists(path):
            raise BenchError(f"{d}: no results.json (is it a bench results folder?)")
        try:
            with open(path) as f:
                return summarise(json.load(f)["runs"])
        except (ValueError, KeyError, TypeError) as e:
            raise BenchError(f"{path}: not a results.json written by iopkt bench "
                             f"({type(e).__name__}: {e})") from None
    old, new = load(old_dir), load(new_dir)
    lines = [f"{'point':44} {'driver':7} {'figure':16} {'old':>12} {'new':>12} {'change':>8}"]
    for key in sorted(set(old) & set(new)):
        for k in sorted(set(old[key]["drivers"]) & set(new[key]["drivers"])):
            for f in ("throughput_bps", "pps", "cpu_us_per_pkt", "ctxsw_per_pkt", "cpu_s_per_gb"):
                a, b = old[key]["drivers"][k].get(f), new[key]["drivers"][k].get(f)
                if not a or not b:
                    continue
                ch = (b["median"] - a["median"]) / a["median"] * 100 if a["median"] else 0
                lines.append(f"{old[key]['label'][:44]:44} {k:7} {f:16} {a['median']:12.4g} "
                             f"{b['median']:12.4g} {ch:+7.1f}%")
    only = sorted(set(old) ^ set(new))
    if only:
        lines.append(f"(points in only one of the two: {', '.join(only)})")
    return "\n".join(lines)


def leftovers(prefix: str) -> list[str]:
    """What a bench with this prefix could have left behind."""
    out = [n for n in netns.ns_list() if n.startswith(prefix)]
    out += cgroup.leftovers()
    return out


def print_summary(summary: dict, out=sys.stdout) -> None:
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
