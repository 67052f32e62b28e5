"""iopkt.bench without traffic: which drivers and baselines run where, and
the verdict on offload decided from given figures."""

import pytest

from iopkt import bench
from iopkt.bench import Plan, Point


def test_native_with_offload_runs_only_where_offload_applies():
    plan = Plan(points=bench.default_points(), drivers=list(bench.DRIVERS))
    ran = {p.key for p in plan.points if "native-tso" in plan.drivers_for(p)}
    assert ran == {"tcp-1518-loadunlimited-linknone-cpu1",
                   "tcp-1518-loadunlimited-link1000-cpu1"}
    # The seed's claim points keep wire-sized frames: native is offload=0.
    assert bench.DRIVERS["native"] == ("devnp-tap", "offload=0")
    udp = Point("udp", 64, "unlimited", "none", 1.0)
    assert plan.drivers_for(udp) == ["native", "shim", "shim0"]
    assert plan.baselines_for(udp) == ("kernel", "relay")
    tcp = Point("tcp", 1518, "unlimited", "none", 1.0)
    assert plan.baselines_for(tcp) == ("kernel", "relay", "relay-offload")


def test_runs_counts_every_driver_and_baseline_run():
    pts = [Point("tcp", 1518, "unlimited", "none", 1.0),
           Point("tcp", 1518, "unlimited", "100", 1.0)]
    plan = Plan(points=pts, drivers=["native", "native-tso", "shim"], reps=2, latency=False)
    # 3 drivers + 3 baselines at the first point, 2 drivers at the second.
    assert plan.runs() == (3 + 3 + 2) * 2
    # Latency: idle and loaded, native and shim (never native-tso) and Linux routing.
    plan = Plan(points=pts, drivers=["native", "native-tso", "shim"], reps=2)
    assert plan.latency_runs() == 2 * 3 * 2
    assert plan.runs() == (3 + 3 + 2) * 2 + 2 * 3 * 2
    assert [plan.kinds_for(p) for p in plan.latency_points()] == [["native", "shim", "kernel"]] * 2
    plan.baselines = False
    assert plan.latency_runs() == 2 * 2 * 2


def test_latency_runs_in_the_group_without_link_limit_or_one_of_its_own():
    plan = Plan(points=bench.default_points(), drivers=list(bench.DRIVERS))
    groups = plan.groups()
    assert len(groups) == 4                 # no extra lab set-up for latency
    assert [p.key for p in groups[("none", 1.0)][-2:]] == [
        "rtt-idle-linknone-cpu1", "rtt-load200M-linknone-cpu1"]
    plan = Plan(points=[Point("udp", 64, "unlimited", "100", 1.0)], drivers=["shim"])
    assert list(plan.groups()) == [("100", 1.0), ("none", 1.0)]
    plan.latency = False
    assert list(plan.groups()) == [("100", 1.0)]


def test_the_default_bench_with_latency_stays_within_ten_minutes():
    plan = Plan(points=bench.default_points(), drivers=list(bench.DRIVERS))
    assert plan.throughput_runs() == 123 and plan.latency_runs() == 24
    est = plan.estimate_s()
    assert est < 600, est
    # Calibration: without latency the same matrix took 428 s on the
    # README's machine; the estimate should be near that, a little above.
    plan.latency = False
    assert 428 <= plan.estimate_s() <= 428 * 1.15
    # 12 idle runs of 2 s, 12 loaded ones with the load's lead and tail,
    # and Linux routing's lab once.
    assert est - plan.estimate_s() == pytest.approx(12 * 2.15 + 12 * 3.45 + 0.8)


def _summary(figs: dict) -> dict:
    """A summary with one repetition per (point, driver): figs maps
    (link, driver) -> (Mbit/s, CPU s per GB)."""
    recs = []
    for (link, kind), (mbps, spg) in figs.items():
        p = Point("tcp", 1518, "unlimited", link, 1.0)
        recs.append({**bench._record(p, kind, 0, 0), "ok": True,
                     "throughput_bps": mbps * 1e6, "cpu_s_per_gb": spg})
    return bench.summarise(recs)


def test_the_offload_verdict_compares_native_with_offload_to_the_shim_and_linux():
    s = _summary({("none", "native-tso"): (9000, 0.5), ("none", "native"): (1000, 7.0),
                  ("none", "shim"): (600, 11.0), ("none", "kernel"): (12000, None),
                  ("1000", "native-tso"): (940, 2.4), ("1000", "native"): (860, 8.7),
                  ("1000", "shim"): (470, 16.0)})
    (row,) = bench.tso_row(s)
    assert "native with offload 9000, native 1000, shim 600 Mbit/s" in row
    assert "Linux routing 12000 (native with offload / Linux 0.75)" in row
    assert "native with offload (TSO) 940 Mbit/s at 2.40 CPU s/GB" in row
    assert "shim 470 Mbit/s at 16.00 CPU s/GB" in row
    assert row.endswith("| shown |")
    s = _summary({("none", "native-tso"): (1100, 5.0), ("none", "native"): (1000, 7.0),
                  ("none", "shim"): (600, 11.0)})
    assert bench.tso_row(s)[0].endswith("| NOT shown |")
    assert bench.tso_row(_summary({("none", "native"): (1000, 7.0)})) == []
