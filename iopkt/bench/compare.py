"""`iopkt bench compare OLD NEW`: every figure of two results folders side
by side, as median [min-max] with its change."""

from __future__ import annotations

import json
import os

from iopkt.bench.matrix import KINDS, BenchError
from iopkt.bench.stats import summarise, summarise_latency

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


def compare(old_dir: str, new_dir: str) -> str:
    """The change of every figure between two results folders, as a table
    (compare_rows() has them as data)."""
    c = compare_rows(old_dir, new_dir)

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
