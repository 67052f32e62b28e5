"""IPv6 in the bench without traffic: the points (keys, labels, MSS,
iperf3 arguments), where they run, the order their runs take beside their
IPv4 twins, and the IPv6 ratios and rows of the report."""

import pytest

from iopkt.bench import matrix, report, runner, stats
from iopkt.bench.matrix import BenchError, Plan, Point

TCP4 = Point("tcp", 1518, "unlimited", "none", 1.0)
TCP6 = Point("tcp", 1518, "unlimited", "none", 1.0, family=6)
LABEL6 = "TCP over IPv6, 1518 B, no link limit"


def test_an_ipv6_point_has_its_own_key_label_target_and_mss():
    assert TCP6.key == "tcp6-1518-loadunlimited-linknone-cpu1"
    assert TCP6.label() == LABEL6
    assert TCP6.server_ip == "2001:2:0:b::2"
    assert TCP6.mss == 1518 - 78 == 1440
    assert TCP6.iperf_args() == ["-6", "-M", "1440"]
    # IPv4 stays as it was: old results folders still compare point by point.
    assert TCP4.family == 4 and TCP4.key == "tcp-1518-loadunlimited-linknone-cpu1"
    assert TCP4.label() == "TCP, 1518 B, no link limit"
    assert TCP4.server_ip == "198.19.0.2"
    assert TCP4.iperf_args() == ["-M", "1460"]
    assert TCP4.twin == TCP6.twin and TCP4 != TCP6


@pytest.mark.parametrize("frame,mss4,mss6", [(64, 88, 88), (128, 88, 88), (166, 108, 88),
                                             (256, 198, 178), (1280, 1222, 1202)])
def test_mss_is_frame_minus_headers_raised_to_88(frame, mss4, mss6):
    assert Point("tcp", frame, "unlimited", "none", 1.0).mss == mss4
    assert Point("tcp", frame, "unlimited", "none", 1.0, 6).mss == mss6


def test_ipv6_iperf_arguments_with_a_load_and_for_udp():
    assert Point("tcp", 512, "100M", "none", 1.0, 6).iperf_args() == [
        "-6", "-M", "434", "-b", "100000000"]
    # UDP payload: the frame less Ethernet 14, FCS 4, IPv6 40, UDP 8
    assert Point("udp", 1518, "10M", "100", 1.0, 6).iperf_args() == [
        "-6", "-u", "-l", "1452", "-b", "10000000"]
    assert Point("udp", 128, "unlimited", "none", 1.0, 6).iperf_args() == [
        "-6", "-u", "-l", "62", "-b", "0"]
    assert Point("udp", 128, "unlimited", "none", 1.0).iperf_args() == [
        "-u", "-l", "82", "-b", "0"]


def test_make_points_puts_each_ipv6_point_beside_its_ipv4_twin():
    pts = matrix.make_points(["tcp"], [512, 1518], ["unlimited"], ["none"], [1.0], [4, 6])
    assert [p.key for p in pts] == ["tcp-512-loadunlimited-linknone-cpu1",
                                    "tcp6-512-loadunlimited-linknone-cpu1",
                                    "tcp-1518-loadunlimited-linknone-cpu1",
                                    "tcp6-1518-loadunlimited-linknone-cpu1"]
    # The family defaults to IPv4 alone.
    assert [p.family for p in matrix.make_points(["udp"], [64], ["unlimited"], ["none"],
                                                 [1.0])] == [4]
    with pytest.raises(BenchError, match=r"^IP version '5': choose from 4, 6$"):
        matrix.make_points(["tcp"], [1518], ["unlimited"], ["none"], [1.0], [5])
    with pytest.raises(BenchError, match=r"^frame size 64: too small for UDP over IPv6 "
                                         r"\(66 B of headers\); choose 128 or more$"):
        matrix.make_points(["udp"], [64, 1518], ["unlimited"], ["none"], [1.0], [6])
    # TCP over IPv6 at 64 B is fine: the MSS is raised to 88.
    assert len(matrix.make_points(["tcp"], [64], ["unlimited"], ["none"], [1.0], [6])) == 1


def test_the_default_bench_runs_tcp_over_ipv6_with_native_tso_shim_and_the_baselines():
    plan = Plan(points=matrix.default_points(), drivers=list(matrix.DRIVERS))
    six = [p for p in plan.points if p.family == 6]
    assert six == [TCP6]
    # right after its IPv4 twin, in the same lab group (no extra labs)
    assert plan.points[plan.points.index(TCP6) - 1] == TCP4
    assert TCP6 in plan.groups()[("none", 1.0)]
    assert plan.drivers_for(TCP6) == ["native", "native-tso", "shim"]
    assert plan.drivers_for(TCP4) == ["native", "native-tso", "shim", "shim0"]
    assert TCP6 in plan.baseline_points()
    assert plan.baselines_for(TCP6) == ("kernel", "relay", "relay-offload")
    # Only the group with an IPv6 point gets dual-stack labs.
    assert [Plan.has_ipv6(pts) for pts in plan.groups().values()] == [True, False, False,
                                                                       False]
    assert not Plan.has_ipv6(matrix.latency_points())


def test_a_record_says_the_family_and_the_mss():
    r = runner._record(TCP6, "native-tso", 2, 1)
    assert (r["point"], r["label"], r["family"], r["proto"], r["mss"]) == (
        TCP6.key, LABEL6, 6, "tcp", 1440)
    assert runner._record(TCP4, "native", 0, 0)["family"] == 4
    assert runner._record(Point("udp", 512, "unlimited", "none", 1.0, 6), "shim", 0, 0)[
        "mss"] is None


def test_twins_alternate_repetition_by_repetition_and_the_kinds_rotate():
    plan = Plan(points=[TCP4, TCP6], drivers=["native", "native-tso", "shim"], reps=2,
                latency=False)
    got = [(p.family, rep, i, kind) for p, rep, i, kind in
           plan.schedule(plan.points, plan.drivers_for)]
    assert got == [(4, 0, 0, "native"), (4, 0, 1, "native-tso"), (4, 0, 2, "shim"),
                   (6, 0, 0, "native"), (6, 0, 1, "native-tso"), (6, 0, 2, "shim"),
                   (6, 1, 0, "native-tso"), (6, 1, 1, "shim"), (6, 1, 2, "native"),
                   (4, 1, 0, "native-tso"), (4, 1, 1, "shim"), (4, 1, 2, "native")]
    # Points without a twin: each point's repetitions in turn, as before.
    udp = Point("udp", 64, "unlimited", "none", 1.0)
    plan = Plan(points=[udp, TCP4], drivers=["native", "shim"], reps=2)
    got = [(p.proto if isinstance(p, Point) else p.load, rep, kind)
           for p, rep, _, kind in plan.schedule(plan.groups()[("none", 1.0)], plan.kinds_for)]
    assert got == [("udp", 0, "native"), ("udp", 0, "shim"), ("udp", 1, "shim"),
                   ("udp", 1, "native"), ("tcp", 0, "native"), ("tcp", 0, "shim"),
                   ("tcp", 1, "shim"), ("tcp", 1, "native"),
                   ("idle", 0, "native"), ("idle", 0, "shim"), ("idle", 0, "kernel"),
                   ("idle", 1, "shim"), ("idle", 1, "kernel"), ("idle", 1, "native"),
                   ("200M", 0, "native"), ("200M", 0, "shim"), ("200M", 0, "kernel"),
                   ("200M", 1, "shim"), ("200M", 1, "kernel"), ("200M", 1, "native")]
    # The baselines alternate too, and the twins' as pairs.
    plan = Plan(points=[TCP4, TCP6], drivers=["native"], reps=2)
    got = [(p.family, rep, kind) for p, rep, _, kind in
           plan.schedule(plan.baseline_points(), plan.baselines_for)]
    assert got[:4] == [(4, 0, "kernel"), (4, 0, "relay"), (4, 0, "relay-offload"),
                       (6, 0, "kernel")]
    assert got[6:9] == [(6, 1, "relay"), (6, 1, "relay-offload"), (6, 1, "kernel")]
    assert len(got) == 2 * 2 * 3


# Mbit/s and CPU µs per packet per repetition
MBPS = {(4, "native"): (1000, 1100, 900), (6, "native"): (950, 990, 900),
        (6, "native-tso"): (5000, 6000, 4500), (4, "shim"): (600, 600, 500),
        (6, "shim"): (540, 600, 400)}
CPU_US = {(4, "native"): (8.0, 8.0, 8.0), (6, "native"): (8.8, 8.4, 9.6),
          (6, "native-tso"): (20.0, 20.0, 30.0), (4, "shim"): (10.0, 10.0, 10.0),
          (6, "shim"): (11.0, 12.0, 13.0)}


def _records(skip=()):
    recs = []
    for (fam, kind), mbps in MBPS.items():
        for rep, v in enumerate(mbps):
            if (fam, kind, rep) in skip:
                continue
            p = TCP6 if fam == 6 else TCP4
            recs.append({**runner._record(p, kind, rep, 0), "ok": True,
                         "throughput_bps": v * 1e6, "cpu_us_per_pkt": CPU_US[fam, kind][rep]})
    return recs


def test_ipv6_ratios_pair_each_run_with_its_twins_of_the_same_repetition():
    s = stats.summarise(_records())
    e6 = s[TCP6.key]
    assert e6["point"] == {"proto": "tcp", "frame": 1518, "load": "unlimited", "link": "none",
                           "cpu": 1.0, "family": 6}
    nat = e6["ratios"]["native IPv6/IPv4"]["throughput_bps"]
    # 950/1000, 990/1100, 900/900
    assert (nat["median"], nat["min"], nat["max"], nat["n"]) == pytest.approx(
        (0.95, 0.9, 1.0, 3))
    cpu = e6["ratios"]["native IPv6/IPv4"]["cpu_us_per_pkt"]
    assert (cpu["median"], cpu["min"], cpu["max"]) == pytest.approx((1.1, 1.05, 1.2))
    tso = e6["ratios"]["native-tso/native"]["throughput_bps"]
    assert (tso["median"], tso["min"], tso["max"]) == pytest.approx(
        (5000 / 950, 5.0, 6000 / 990))
    shim = e6["ratios"]["shim IPv6/IPv4"]["throughput_bps"]
    assert (shim["median"], shim["min"], shim["max"]) == pytest.approx((0.9, 0.8, 1.0))
    # The IPv4 point has no cross-family ratios of its own.
    assert not any("IPv6" in name for name in s[TCP4.key]["ratios"])
    # A failed IPv4 run leaves its repetition out of the pairing, no other.
    s = stats.summarise(_records(skip={(4, "native", 1)}))
    nat = s[TCP6.key]["ratios"]["native IPv6/IPv4"]["throughput_bps"]
    assert (nat["n"], nat["min"], nat["max"]) == (2, 0.95, 1.0)
    # Without the IPv4 twin there is nothing to pair with.
    s = stats.summarise([r for r in _records() if r["family"] == 6])
    assert set(s[TCP6.key]["ratios"]) == {"native-tso/native", "shim/native",
                                          "shim/native-tso"}


def test_find_means_ipv4_unless_asked_and_old_records_are_ipv4():
    recs = _records()
    s = stats.summarise([r for r in recs if r["family"] == 6] + [r for r in recs
                                                               if r["family"] == 4])
    assert list(s) == [TCP6.key, TCP4.key]          # the IPv6 entry first
    assert stats.find(s, proto="tcp", frame=1518, link="none", cpu=1.0) is s[TCP4.key]
    assert stats.find(s, proto="tcp", frame=1518, family=6) is s[TCP6.key]
    old = [{k: v for k, v in r.items() if k != "family"} for r in recs if r["family"] == 4]
    assert stats.summarise(old)[TCP4.key]["point"]["family"] == 4


def test_results_md_shows_the_ipv6_rows_and_ratios():
    s = stats.summarise(_records())
    assert report.render_ipv6(s)[4:] == [
        "| point | ratio | throughput | CPU per packet |", "|---|---|---|---|",
        f"| {LABEL6} | IPv6 without offload vs IPv4 without offload (native) "
        "| 0.95 [0.90–1.00] | 1.10 [1.05–1.20] |",
        f"| {LABEL6} | IPv6 with TSO6 vs IPv6 without (native with offload / native) "
        "| 5.26 [5.00–6.06] | 2.38 [2.27–3.12] |",
        f"| {LABEL6} | IPv6 vs IPv4 under the shim (no offload in either) "
        "| 0.90 [0.80–1.00] | 1.20 [1.10–1.30] |", ""]
    assert report.render_ipv6(s)[:2] == ["## IPv6", ""]
    assert report.render_ipv6(stats.summarise([r for r in _records() if r["family"] == 4])) \
        == []
    meta = {"started": "2026-11-28T09:10:30", "machine": "m", "stack_cores": [0],
            "iperf3_cores": [1], "switchinterval": 0.005, "plan": {"reps": 3, "seconds": 1.0}}
    md = report.render_md(meta, s, {}, [])
    assert f"| {LABEL6} | native | 950.0 [900.0–990.0] |" in md
    assert f"| {LABEL6} | native-tso | 5000.0 [4500.0–6000.0] |" in md
    assert "| TCP, 1518 B, no link limit | native | 1000.0 [900.0–1100.0] |" in md
    assert f"| {LABEL6} | native IPv6/IPv4 | 0.95 [0.90–1.00] |" in md
    assert md.index("## IPv6") < md.index("## Verdicts")
