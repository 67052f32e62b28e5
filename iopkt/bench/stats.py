"""Statistics of the records: medians with min and max per figure, ratios
taken repetition by repetition, RTT percentiles and histograms."""

from __future__ import annotations

import math
import statistics


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
# Kinds compared across families: an IPv6 point's run over its IPv4 twin's
# of the same repetition, named "<kind> IPv6/IPv4" at the IPv6 point.
FAMILY_RATIOS = ("native", "shim")
RATIO_FIGURES = ("throughput_bps", "cpu_us_per_pkt", "ctxsw_per_pkt", "cpu_s_per_gb")


def _ratio(num_reps, den_reps, num: str, den: str) -> dict:
    """{figure: stats} of num's figure over den's, repetition by repetition
    (`*_reps`: {rep: {kind: record}})."""
    rs = {}
    for f in RATIO_FIGURES:
        vals = [n[num][f] / den_reps[rep][den][f] for rep, n in num_reps.items()
                if num in n and den in den_reps.get(rep, {}) and n[num].get(f) is not None
                and den_reps[rep][den].get(f)]
        rs[f] = _stats(vals)
    return rs


def summarise(records: list[dict]) -> dict:
    """{point: {"label", "point", "drivers": {kind: {figure: stats}},
    "ratios": {"shim/native": {figure: stats}, ...}}}; ratios pair by pair
    (same point, same repetition), and at an IPv6 point "native IPv6/IPv4"
    (and shim's) against its IPv4 twin, repetition by repetition."""
    out: dict = {}
    for r in records:
        if not r.get("ok") or r.get("kind", "throughput") != "throughput":
            continue
        e = out.setdefault(r["point"], {"label": r["label"], "point": {
            **{k: r[k] for k in ("proto", "frame", "load", "link", "cpu")},
            "family": r.get("family", 4)},          # older records: IPv4
            "drivers": {}, "_by_rep": {}})
        e["_by_rep"].setdefault(r["rep"], {})[r["driver"]] = r
    for e in out.values():
        kinds = {k for rep in e["_by_rep"].values() for k in rep}
        for k in kinds:
            e["drivers"][k] = {f: _stats([rep[k].get(f) for rep in e["_by_rep"].values()
                                          if k in rep]) for f in FIGURES}
        e["ratios"] = {}
        for num, den in RATIOS:
            rs = _ratio(e["_by_rep"], e["_by_rep"], num, den)
            if any(rs.values()):
                e["ratios"][f"{num}/{den}"] = rs
    for e in out.values():
        p = e["point"]
        twin = p["family"] == 6 and find(out, **{**p, "family": 4})
        for k in FAMILY_RATIOS if twin else ():
            rs = _ratio(e["_by_rep"], twin["_by_rep"], k, k)
            if any(rs.values()):
                e["ratios"][f"{k} IPv6/IPv4"] = rs
    for e in out.values():
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


def find(summary, **kw):
    """The first entry whose point has the values given; IPv4 unless
    family=6 is asked for."""
    kw.setdefault("family", 4)
    for e in summary.values():
        if all(e["point"].get(k, 4 if k == "family" else None) == v for k, v in kw.items()):
            return e
    return None
