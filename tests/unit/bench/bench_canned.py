"""Canned bench records, as runner.run() writes them, for tests that need
no root: the default matrix with made-up but plausible figures, and
latency runs with given percentiles."""

import json
import os

from iopkt.bench import matrix, runner
from iopkt.bench.matrix import LatencyPoint, Plan

# Mbit/s per driver at no link limit; on a 100 Mbit/s link every driver
# carries about the link rate, except where the seed says native wins.
FULL_MBPS = {"native": 1000, "native-tso": 12000, "shim": 600, "shim0": 550,
             "kernel": 11000, "relay": 1400, "relay-offload": 12500}
CPU_US = {"native": 8.0, "native-tso": 25.0, "shim": 14.0, "shim0": 16.0}


def throughput_record(p, kind, rep, scale=1.0):
    """One ok run at point `p`; `scale` multiplies the throughput."""
    mbps = FULL_MBPS[kind]
    if p.link != "none":
        mbps = min(mbps, 0.94 * int(p.link))
        if p.proto == "udp" and p.frame == 64 and kind.startswith("shim"):
            mbps *= 0.5                     # the shim's packet rate caps it first
    if p.cpu < 1:
        mbps *= 0.45 if kind == "native" else 0.3
    mbps *= scale * (1 + 0.02 * (rep - 1))  # a little spread across repetitions
    frame = 63000 if kind in ("native-tso", "relay-offload") else p.frame
    pps = mbps * 1e6 / 8 / frame
    r = {**runner._record(p, kind, rep, 0), "ok": True, "throughput_bps": mbps * 1e6}
    if kind in CPU_US:
        cpu = CPU_US[kind] * (1 + 0.01 * rep)
        r.update(pps=pps, cpu_us_per_pkt=cpu, ctxsw_per_pkt=0.2 if "shim" in kind else 0.0,
                 cpu_s_per_gb=cpu * 1e-6 * pps / (mbps / 8 * 1e-3), frame_measured=frame)
    return r


def latency_record(load, kind, rep, p50, p99=None, mx=None, loss=0.0, ctxsw=None):
    r = {**runner._record(LatencyPoint(load), kind, rep, 0), "ok": True,
         "rtt_p50_us": p50, "rtt_p99_us": p99 if p99 is not None else 4 * p50,
         "rtt_max_us": mx if mx is not None else 10 * p50, "rtt_mean_us": 1.2 * p50,
         "rtt_min_us": p50 / 2, "loss_percent": loss, "sent": 1000,
         "received": round(1000 * (1 - loss / 100))}
    if ctxsw is not None:
        r["ctxsw_per_pkt"] = ctxsw
    if load != "idle":
        r["load_bps"] = 2e8
    return r


# p50 RTT per (load, driver) and repetition, µs
LATENCY_P50 = {("idle", "native"): (200, 210, 190), ("idle", "shim"): (240, 250, 260),
               ("idle", "shim0"): (270, 270, 280), ("idle", "kernel"): (20, 21, 19),
               ("200M", "native"): (170, 180, 160), ("200M", "shim"): (560, 500, 600),
               ("200M", "shim0"): (600, 620, 640), ("200M", "kernel"): (20, 22, 24)}


def latency_records():
    return [latency_record(load, kind, rep, p50s[rep],
                           ctxsw=(2.0 if kind == "shim" else 0.5) if kind != "kernel" else None)
            for (load, kind), p50s in LATENCY_P50.items() for rep in range(3)]


def default_records(scale=1.0):
    """Every run of the default plan, three repetitions, all ok."""
    plan = Plan(points=matrix.default_points(), drivers=list(matrix.DRIVERS))
    recs = []
    for rep in range(3):
        for p in plan.points:
            for kind in plan.drivers_for(p):
                recs.append(throughput_record(p, kind, rep, scale))
        for p in plan.baseline_points():
            for kind in plan.baselines_for(p):
                recs.append(throughput_record(p, kind, rep, scale))
    return recs + latency_records()


def meta(**kw):
    return {"schema": matrix.SCHEMA_VERSION, "started": "2026-11-28T09:10:30",
            "machine": "AMD EPYC, 2 cores, Linux 6.18, Python 3.11.7",
            "iopkt_version": "0.1.0", "git_commit": "0123456789abcdef" * 2 + "01234567",
            "git_dirty": False, "iperf3_version": "iperf 3.12", "switchinterval": 0.005,
            "plan": {"reps": 3, "seconds": 3.0}, "stack_cores": [0], "iperf3_cores": [1],
            "interrupted": False, "elapsed_s": 500.0, **kw}


def write_folder(path, records, **meta_kw):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "results.json"), "w") as f:
        json.dump({"meta": meta(**meta_kw), "runs": records}, f)
    return str(path)
