"""The report: results.json, results.md with the tables and a verdict per
claim, and the summaries printed at the end of a run."""

from __future__ import annotations

import json
import os
import sys

from iopkt.bench import measure, plots
from iopkt.bench.matrix import (
    DRIVER_LABELS,
    KINDS,
    LATENCY_SECONDS,
    LINK_KINDS,
    LINK_LABELS,
    LOW_POWER_CPU,
)
from iopkt.bench.stats import FIGURES, LAT_FIGURES, find, summarise, summarise_latency

# -- results -----------------------------------------------------------------
NO_MATPLOTLIB = ("matplotlib is not installed; pip install 'iopkt[bench]' (or "
                 "'sudo make bench', which installs it) and draw them again with "
                 "iopkt.bench.plots.plot")


def write_results(outdir: str, meta: dict, records: list[dict], log=sys.stderr) -> None:
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump({"meta": meta, "runs": records}, f, indent=1)
    summary, latency = summarise(records), summarise_latency(records)
    try:
        drawn = plots.plot(outdir, summary, latency)
    except ImportError:
        drawn = NO_MATPLOTLIB
    except Exception as e:                  # the tables matter more than the pictures
        drawn = f"plotting failed: {type(e).__name__}: {e}"
    if isinstance(drawn, str):
        print(f"iopkt bench: no plots: {drawn}", file=log)
    with open(os.path.join(outdir, "results.md"), "w") as f:
        f.write(render_md(meta, summary, latency, drawn))


# (ratio at an IPv6 point, what it says)
IPV6_RATIOS = (("native IPv6/IPv4", "IPv6 without offload vs IPv4 without offload (native)"),
               ("native-tso/native", "IPv6 with TSO6 vs IPv6 without (native with offload "
                                     "/ native)"),
               ("shim IPv6/IPv4", "IPv6 vs IPv4 under the shim (no offload in either)"))


def render_ipv6(summary: dict) -> list[str]:
    """The "## IPv6" section of results.md: at each IPv6 point, the ratios
    that say what IPv6 costs and what TSO6 buys, median [min–max] of the
    repetitions (the IPv4 twin's run of the same repetition)."""
    rows = []
    for e in summary.values():
        if e["point"].get("family", 4) != 6:
            continue
        for name, what in IPV6_RATIOS:
            rs = e["ratios"].get(name)
            if rs and rs.get("throughput_bps"):
                rows.append(f"| {e['label']} | {what} | {_m(rs['throughput_bps'], '{:.2f}')} "
                            f"| {_m(rs['cpu_us_per_pkt'], '{:.2f}')} |")
    if not rows:
        return []
    return ["## IPv6", "",
            "Ratios taken repetition by repetition, median [min–max]; IPv6 against IPv4 "
            "pairs each IPv6 run with the same driver's run at the IPv4 twin point (same "
            "protocol, frame, link and CPU; the two alternate repetition by repetition). "
            "`make compare ARGS=--ipv6` holds them against aims (IPv6/IPv4 without offload "
            "≥ 0.9, TSO6 ≥ 5× without).", "",
            "| point | ratio | throughput | CPU per packet |", "|---|---|---|---|",
            *rows, ""]


def _lat(latency: dict, load: str):
    return next((e for e in latency.values() if e["point"]["load"] == load), None)


def render_latency(latency: dict, seconds: float = LATENCY_SECONDS) -> list[str]:
    """The "## Latency" section of results.md; `seconds` of pings a run."""
    if not latency:
        return []
    L = ["## Latency", "",
         f"ping from host A to host B every {measure.PING_INTERVAL * 1000:g} ms, 64-byte "
         f"frames, {seconds:g} s per run (the first {measure.PING_WARMUP} "
         "requests not counted), percentiles by nearest rank of every RTT of a run; "
         "no link limit, stack on a whole core. Loaded: iperf3 TCP at 200 Mbit/s A -> B "
         "through the same path, a rate every forwarder here carries (so the queueing is "
         "the forwarder's, not a full link's buffer); it starts "
         f"{measure.LOAD_LEAD:g} s before the first request. Medians of the runs with "
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
    for e in summary.values():
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
    for e in summary.values():
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
    L += [""] + render_ipv6(summary)
    L += render_latency(latency, meta.get("plan", {}).get("latency_seconds",
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


def verdict(summary: dict, latency: dict | None = None) -> list[str]:
    """One row per claim of the seed, decided from the measurements."""
    rows = ["| claim | conditions run | measured | verdict |", "|---|---|---|---|"]

    def ratio(e, f="throughput_bps", name="shim/native"):
        rs = e and e["ratios"].get(name, {}).get(f)
        return rs["median"] if rs else None

    slow = find(summary, proto="tcp", frame=1518, link="100", cpu=1.0)
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
    small = find(summary, proto="udp", frame=64, link="100", load="unlimited", cpu=1.0)
    large = find(summary, proto="udp", frame=1518, link="100", load="unlimited", cpu=1.0)
    if small and large and ratio(small) and ratio(large):
        free = find(summary, proto="udp", frame=64, link="none", load="unlimited", cpu=1.0)
        rows.append(
            f"| Native wins most at full link speed with minimum-size packets | "
            f"{small['label']} vs {large['label']}, both offered beyond the link rate | "
            f"shim/native throughput {ratio(small):.2f} at 64 B vs {ratio(large):.2f} at "
            f"1518 B; CPU per packet shim/native {ratio(small, 'cpu_us_per_pkt'):.2f} vs "
            f"{ratio(large, 'cpu_us_per_pkt'):.2f}"
            + (f"; with no link limit {ratio(free):.2f} at 64 B" if free and ratio(free) else "")
            + " | " + ("reproduced" if ratio(small) < ratio(large) - 0.03 else "NOT reproduced")
            + " |")
    low = find(summary, proto="tcp", frame=1518, link="100", cpu=LOW_POWER_CPU)
    ref = find(summary, proto="tcp", frame=1518, link="100", cpu=1.0)
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
            f"ping A -> B every {measure.PING_INTERVAL * 1000:g} ms, 64 B frames, through "
            f"each driver and Linux routing, idle and under TCP at 200 Mbit/s (every "
            f"forwarder carries it), no link limit | {'; '.join(part)} | {what} |"]


def tso_row(summary: dict) -> list[str]:
    """Not a claim of the seed but of io-pkt's: a native driver can use
    the NIC's TSO, an io-net driver under the shim cannot."""
    full = find(summary, proto="tcp", frame=1518, link="none", cpu=1.0)
    gbe = find(summary, proto="tcp", frame=1518, link="1000", cpu=1.0)

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
                     "native-tso/native", "native-tso/kernel", "native-tso/relay-offload",
                     "native IPv6/IPv4", "shim IPv6/IPv4"):
            rs = e["ratios"].get(name)
            if rs and rs.get("throughput_bps"):
                print(f"{'':48} {name:14} throughput {rs['throughput_bps']['median']:.2f}"
                      + (f", CPU/pkt {rs['cpu_us_per_pkt']['median']:.2f}"
                         if rs.get("cpu_us_per_pkt") else ""), file=out)
