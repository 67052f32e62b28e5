"""iopkt.bench without traffic: which drivers and baselines run where, and
the verdict on offload decided from given figures."""

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
    plan = Plan(points=[Point("tcp", 1518, "unlimited", "none", 1.0),
                        Point("tcp", 1518, "unlimited", "100", 1.0)],
                drivers=["native", "native-tso", "shim"], reps=2)
    # 3 drivers + 3 baselines at the first point, 2 drivers at the second.
    assert plan.runs() == (3 + 3 + 2) * 2


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
