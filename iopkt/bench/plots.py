"""The plots, one PNG per claim (matplotlib, when installed)."""

from __future__ import annotations

import os

from iopkt.bench.matrix import DRIVER_LABELS
from iopkt.bench.stats import find

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
    slow = find(summary, proto="tcp", frame=1518, link="100", load="unlimited", cpu=1.0)
    full = find(summary, proto="tcp", frame=1518, link="none", load="unlimited", cpu=1.0)
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
    for i, ((proto, frame, link, _load), es) in enumerate(series.items()):
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
    full = find(summary, proto="tcp", frame=1518, link="none", load="unlimited", cpu=1.0)
    gbe = find(summary, proto="tcp", frame=1518, link="1000", load="unlimited", cpu=1.0)
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
    # IPv4 only: the claims are about it, and an IPv6 point would join its
    # twin's series (same protocol, frame, link) and blur them.
    summary = {k: e for k, e in summary.items() if e["point"].get("family", 4) == 4}
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
