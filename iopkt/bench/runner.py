"""Running a plan: labs up, iperf3 and ping through them, the drivers alternating
run by run, every record written as it comes."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import sys
import time
from dataclasses import asdict

from iopkt.bench import labs, measure
from iopkt.bench.matrix import (
    LATENCY_SECONDS,
    LINKS,
    SCHEMA_VERSION,
    BenchError,
    LatencyPoint,
    Plan,
    Point,
)
from iopkt.bench.report import write_results
from iopkt.bench.stats import rtt_histogram, rtt_stats
from iopkt.lab import cgroup, lab, netns

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
                "seconds": latency_seconds, "interval_s": measure.PING_INTERVAL,
                "warmup": measure.PING_WARMUP, "load_args": point.load_args()}
    return {"kind": "throughput", "point": point.key, "label": point.label(), **asdict(point),
            "driver": kind, "link_kind": lk, "mss": point.mss if point.proto == "tcp" else None,
            "rep": rep, "order": order, "ok": False, "error": None}


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
        rec["load_bps"] = measure.received_bps(res["iperf3"])
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
        s0 = measure.proc_sample(st["pid"])
    res = measure.latency(st["ns_a"], st["ns_b"], "198.19.0.2", rec["seconds"],
                           point.load_args(), load_cores)
    if stack:
        s1 = measure.proc_sample(st["pid"])
        fwd = control.request(st["prefix"], "netstat")["ip"]["forward"] - fwd0
        d = measure.proc_delta(st["pid"], s0, s1)
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
    m = measure.measure_stack(st, seconds, point.iperf_args(), load_cores,
                              point.server_ip, point.family)
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
    six = point.family == 6
    with labs.relay_lab(prefix, cores, offload=offload, inet6=six) as st:
        s0 = measure.proc_sample(st["pid"])
        res = measure.iperf3(st["ns_a"], st["ns_b"], st["server_ip6" if six else "server_ip"],
                              seconds,
                              point.iperf_args(), cores=load_cores)
        s1 = measure.proc_sample(st["pid"])
    _fill_iperf(rec, res, point, outdir, tag)
    d = measure.proc_delta(st["pid"], s0, s1)
    rec.update(d)
    rec["cpu_utilisation"] = (d["cpu_user_s"] + d["cpu_sys_s"]) / seconds
    rec["ok"] = True


def run_kernel(point: Point, load_cores, seconds, prefix, rec, outdir, tag) -> None:
    with labs.kernel_lab(prefix, inet6=point.family == 6) as st:
        res = measure.iperf3(st["ns_a"], st["ns_b"], point.server_ip, seconds,
                              point.iperf_args(), cores=load_cores)
    _fill_iperf(rec, res, point, outdir, tag)
    rec["ok"] = True


@contextlib.contextmanager
def _labs(plan: Plan, pts: list, link: str, cpu: float, cores):
    """One lab per driver for a (link, cpu) group of points, all up at once
    so the runs can alternate without rebuilding; the stacks pinned, and
    capped when cpu < 1. Dual-stack only where an IPv6 point runs: IPv6
    on costs each lab the stack's DAD wait and adds the hosts' own IPv6
    chatter, which the IPv4 points need not have."""
    stack = contextlib.ExitStack()
    with stack:
        running = {}
        needed = {d for p in pts for d in plan.drivers_for(p)}
        family = "both" if Plan.has_ipv6(pts) else "4"
        for i, kind in enumerate(d for d in plan.drivers if d in needed):
            drv, opts = plan.driver_map()[kind]
            spec = lab.LabSpec(prefix=f"{plan.prefix}{i}", driver_a=drv, driver_b=drv,
                               opts_a=opts, opts_b=opts, speed=LINKS[link], link=plan.link,
                               family=family)
            st = stack.enter_context(labs.stack_lab(spec, cores))
            if cpu < 1:
                stack.enter_context(cgroup.cpu_limit(st["pid"], cpu, spec.prefix))
            running[kind] = st
        yield running


def run(plan: Plan, outdir: str, log=sys.stderr) -> dict:
    """Run the plan; write everything into `outdir` as it goes. On Ctrl-C
    everything made is torn down and what was gathered is kept."""
    global stop_requested
    stop_requested = False
    plan.check()
    measure.need_iperf3()
    if plan.latency:
        measure.need_ping()
    os.makedirs(os.path.join(outdir, "iperf3"), exist_ok=True)
    cores, load_cores = measure.cpus()
    info = measure.machine_info()
    meta = {"schema": SCHEMA_VERSION, "started": datetime.datetime.now().isoformat(
        timespec="seconds"), "machine": measure.machine_line(info), **info,
        "switchinterval": sys.getswitchinterval(), "link_kind": plan.link,
        "drivers_map": {k: list(v) for k, v in plan.driver_map().items()
                        if k in plan.drivers}, "plan": {
            "points": [asdict(p) for p in plan.points], "drivers": plan.drivers,
            "link_kind": plan.link,
            "reps": plan.reps, "seconds": plan.seconds, "baselines": plan.baselines,
            "latency": [asdict(p) for p in plan.latency_points()],
            "latency_seconds": plan.latency_seconds, "ping_interval_s": measure.PING_INTERVAL},
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
                running = labs_cm.__enter__()
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
                    for p, rep, i, kind in plan.schedule(pts, plan.kinds_for):
                        rec = _record(p, kind, rep, i, plan.link, plan.latency_seconds)
                        tag = f"{p.key}-{kind}-{rep}"
                        prog.step(f"{kind:6} {p.label()} rep {rep + 1}/{plan.reps}")
                        try:
                            if not isinstance(p, LatencyPoint):
                                run_stack(p, kind, running[kind], plan.seconds, load_cores,
                                          rec, outdir, tag)
                            else:
                                if kind == "kernel" and "kernel" not in running:
                                    # Linux routing, up for the group's latency runs
                                    running["kernel"] = kernel_cm.enter_context(
                                        labs.kernel_lab(f"{plan.prefix}k"))
                                run_latency(p, kind, running[kind], load_cores, rec,
                                            outdir, tag)
                        except Exception as e:      # recorded; the bench goes on
                            rec["error"] = f"{type(e).__name__}: {e}"
                            print(f"      run failed: {rec['error']}", file=log)
                        records.append(rec)
            finally:
                labs_cm.__exit__(*sys.exc_info())
        for p, rep, i, kind in plan.schedule(plan.baseline_points(), plan.baselines_for):
            rec = _record(p, kind, rep, i, plan.link)
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


def leftovers(prefix: str) -> list[str]:
    """What a bench with this prefix could have left behind."""
    out = [n for n in netns.ns_list() if n.startswith(prefix)]
    out += cgroup.leftovers()
    return out


def default_outdir() -> str:
    return os.path.join("results", datetime.datetime.now().strftime("bench-%Y%m%d-%H%M%S"))
