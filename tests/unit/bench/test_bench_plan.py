"""iopkt.bench without traffic: which drivers and baselines run where, and
the verdict on offload decided from given figures."""

import pytest

from iopkt.bench import compare, matrix, measure, report, runner, stats
from iopkt.bench.matrix import Plan, Point


def test_native_with_offload_runs_only_where_offload_applies():
    plan = Plan(points=matrix.default_points(), drivers=list(matrix.DRIVERS))
    ran = {p.key for p in plan.points if "native-tso" in plan.drivers_for(p)}
    assert ran == {"tcp-1518-loadunlimited-linknone-cpu1",
                   "tcp6-1518-loadunlimited-linknone-cpu1",
                   "tcp-1518-loadunlimited-link1000-cpu1"}
    # The seed's claim points keep wire-sized frames: native is offload=0.
    assert matrix.DRIVERS["native"] == ("devnp-tap", "offload=0")
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
    plan = Plan(points=matrix.default_points(), drivers=list(matrix.DRIVERS))
    groups = plan.groups()
    assert len(groups) == 4                 # no extra lab set-up for latency
    assert [p.key for p in groups[("none", 1.0)][-2:]] == [
        "rtt-idle-linknone-cpu1", "rtt-load200M-linknone-cpu1"]
    plan = Plan(points=[Point("udp", 64, "unlimited", "100", 1.0)], drivers=["shim"])
    assert list(plan.groups()) == [("100", 1.0), ("none", 1.0)]
    plan.latency = False
    assert list(plan.groups()) == [("100", 1.0)]


def test_the_default_bench_with_latency_stays_within_ten_minutes():
    plan = Plan(points=matrix.default_points(), drivers=list(matrix.DRIVERS))
    # IPv6 adds 3 drivers and 3 baselines, 3 repetitions each, to the 123.
    assert plan.throughput_runs() == 123 + 18 and plan.latency_runs() == 24
    est = plan.estimate_s()
    assert est < 600, est
    assert est == pytest.approx(579.1)
    # Calibration: without latency the IPv4 matrix took 428 s on the
    # README's machine; the estimate should be near that, a little above.
    v4 = Plan(points=[p for p in plan.points if p.family == 4], drivers=plan.drivers,
              latency=False)
    assert v4.estimate_s() == pytest.approx(441.7)       # 3% above
    # The IPv6 point: 18 runs of 3 s and the run's overhead, and the 4 labs
    # of its group dual-stack (the stack's DAD wait).
    plan.latency = False
    assert plan.estimate_s() - v4.estimate_s() == pytest.approx(18 * 3.5 + 4 * 1.6)
    # 12 idle runs of 2 s, 12 loaded ones with the load's lead and tail,
    # and Linux routing's lab once.
    assert est - plan.estimate_s() == pytest.approx(12 * 2.15 + 12 * 3.45 + 0.8)


def test_latency_seconds_sets_each_latency_run_and_the_estimate():
    pts = [Point("udp", 64, "unlimited", "none", 1.0)]
    plan = Plan(points=pts, drivers=["native", "shim"], reps=1)
    assert plan.latency_seconds == matrix.LATENCY_SECONDS == 2.0
    est = plan.estimate_s()
    plan.latency_seconds = 0.5
    plan.check()
    # 6 latency runs (idle and loaded; native, shim, Linux), 1.5 s shorter each
    assert est - plan.estimate_s() == pytest.approx(6 * 1.5)
    rec = runner._record(plan.latency_points()[0], "shim", 0, 0, "tap", plan.latency_seconds)
    assert rec["seconds"] == 0.5
    for bad in (0.4, 60.5, float("nan")):
        plan.latency_seconds = bad
        with pytest.raises(measure.BenchError, match=r"^latency run of .*s: must be 0\.5\.\.60 "):
            plan.check()


def _summary(figs: dict) -> dict:
    """A summary with one repetition per (point, driver): figs maps
    (link, driver) -> (Mbit/s, CPU s per GB)."""
    recs = []
    for (link, kind), (mbps, spg) in figs.items():
        p = Point("tcp", 1518, "unlimited", link, 1.0)
        recs.append({**runner._record(p, kind, 0, 0), "ok": True,
                     "throughput_bps": mbps * 1e6, "cpu_s_per_gb": spg})
    return stats.summarise(recs)


def test_the_offload_verdict_compares_native_with_offload_to_the_shim_and_linux():
    s = _summary({("none", "native-tso"): (9000, 0.5), ("none", "native"): (1000, 7.0),
                  ("none", "shim"): (600, 11.0), ("none", "kernel"): (12000, None),
                  ("1000", "native-tso"): (940, 2.4), ("1000", "native"): (860, 8.7),
                  ("1000", "shim"): (470, 16.0)})
    (row,) = report.tso_row(s)
    assert "native with offload 9000, native 1000, shim 600 Mbit/s" in row
    assert "Linux routing 12000 (native with offload / Linux 0.75)" in row
    assert "native with offload (TSO) 940 Mbit/s at 2.40 CPU s/GB" in row
    assert "shim 470 Mbit/s at 16.00 CPU s/GB" in row
    assert row.endswith("| shown |")
    s = _summary({("none", "native-tso"): (1100, 5.0), ("none", "native"): (1000, 7.0),
                  ("none", "shim"): (600, 11.0)})
    assert report.tso_row(s)[0].endswith("| NOT shown |")
    assert report.tso_row(_summary({("none", "native"): (1000, 7.0)})) == []


def test_over_veth_the_same_kinds_are_the_af_packet_drivers():
    assert matrix.LINK_KINDS["tap"] is matrix.DRIVERS
    v = matrix.VETH_DRIVERS
    assert v == {"native": ("devnp-afpacket", "offload=0"),
                 "native-tso": ("devnp-afpacket", "offload=1"),
                 "shim": ("devn-afpacket", ""), "shim0": ("devn-afpacket", "shimrxcopy=0")}
    assert set(v) == set(matrix.DRIVERS)
    plan = Plan(points=matrix.default_points(), drivers=list(matrix.DRIVERS), link="veth")
    assert plan.driver_map() is v
    # The matrix does not change with the link: the same runs, the same estimate.
    tap = Plan(points=matrix.default_points(), drivers=list(matrix.DRIVERS))
    assert plan.runs() == tap.runs() and plan.estimate_s() == tap.estimate_s()


def test_a_veth_plan_names_the_drivers_it_lacks(monkeypatch):
    from iopkt.stack import drvload
    have = {"devnp-tap": None, "devn-tap": None, "devn-afpacket": None}
    monkeypatch.setattr(drvload, "available", lambda: have)
    plan = Plan(points=matrix.default_points(), drivers=["native", "native-tso", "shim"],
                link="veth")
    with pytest.raises(measure.BenchError, match=r"--link veth: no driver devnp-afpacket "
                       r"\(for native, native-tso\) here"):
        plan.check()
    Plan(points=plan.points, drivers=["shim", "shim0"], link="veth").check()
    with pytest.raises(measure.BenchError, match="--link fiber: one of tap, veth"):
        Plan(points=plan.points, drivers=["shim"], link="fiber").check()
    # Over TAPs nothing is looked up: the TAP drivers are part of iopkt.
    monkeypatch.setattr(drvload, "available", lambda: {})
    Plan(points=plan.points, drivers=["native"]).check()


def test_records_say_what_joined_the_hosts_and_results_md_too():
    p = Point("tcp", 1518, "unlimited", "none", 1.0)
    r = runner._record(p, "native", 0, 0, "veth")
    assert r["link_kind"] == "veth" and r["link"] == "none"     # link: the emulated speed
    assert runner._record(p, "shim", 0, 0)["link_kind"] == "tap"
    # The baselines' own links, whatever the bench's.
    assert runner._record(p, "kernel", 0, 0, "tap")["link_kind"] == "veth"
    assert runner._record(p, "relay", 0, 0, "veth")["link_kind"] == "tap"
    lat = runner._record(matrix.latency_points()[0], "shim0", 0, 0, "veth")
    assert lat["link_kind"] == "veth"
    meta = {"started": "2026-11-28T09:10:30", "machine": "m", "stack_cores": [0],
            "iperf3_cores": [1], "switchinterval": 0.005,
            "plan": {"reps": 1, "seconds": 1.0}, "link_kind": "veth",
            "drivers_map": {"native": ["devnp-afpacket", "offload=0"],
                            "shim": ["devn-afpacket", ""]}}
    md = report.render_md(meta, {}, {}, [])
    assert ("Link: the hosts are joined to the stack by veth pairs through AF_PACKET "
            "(devnp-afpacket, devn-afpacket)") in md
    assert "native = devnp-afpacket offload=0, shim = devn-afpacket." in md
    # Folders from before --link ran over TAPs and say so.
    del meta["link_kind"], meta["drivers_map"]
    assert "by TAPs (devnp-tap, devn-tap) (`iopkt bench --link tap`)" in report.render_md(
        meta, {}, {}, [])


def test_compare_says_when_the_two_runs_had_other_links(tmp_path):
    from bench_canned import default_records, write_folder
    old = write_folder(tmp_path / "old", default_records())
    new = write_folder(tmp_path / "new", default_records(), link_kind="veth")
    out = compare.compare(old, new).splitlines()
    assert not out[0].endswith("over veth") and out[1].endswith(", over veth")
    assert "(old ran over tap, new over veth: native, shim and their kin are other drivers " \
           "in each)" in out
    assert not any("ran over" in ln for ln in compare.compare(new, new).splitlines())


def test_a_stop_whose_exception_got_lost_ends_the_bench_at_the_next_run(monkeypatch):
    # The signal handler's KeyboardInterrupt can be swallowed (a fork hook,
    # a __del__); the flag it also sets stops the next run from starting.
    import io
    out = io.StringIO()
    prog = runner.Progress(3, 30.0, out=out)
    prog.step("native 64 B rep 1/3")
    monkeypatch.setattr(runner, "stop_requested", True)
    with pytest.raises(KeyboardInterrupt):
        prog.step("native 64 B rep 2/3")
    assert prog.done == 1 and out.getvalue().count("\n") == 1
