"""A short `iopkt bench` end to end: real runs, the results folder, the
verdict machinery, comparison, and nothing left behind."""

import json
import os
import re
import subprocess
import sys

import pytest

from iopkt.bench import compare
from iopkt.lab import cgroup, netns

# What `forwarded` counts besides iperf3's datagrams: ip.forward moves for
# every packet the stack forwards, both ways, during the run; iperf3 adds its
# TCP control connection (handshake, parameters, state bytes, results, FIN:
# about 30 packets, a few more or fewer as delayed ACKs fall) and the UDP
# stream's connect datagram and its reply. ARP is not IP: not counted.
CONTROL_PACKETS = (24, 40)


@pytest.mark.alone
def test_bench_smoke(tmp_path):
    """The bench end to end at a point every forwarder carries whole (512 B
    frames offered at 10 Mbit/s on a 100 Mbit/s link, some 2,700 datagrams a
    run): each run's forwarded count is what iperf3 sent and its server
    received, all of it, plus the control packets. At a point beyond what
    the stack carries the hosts' own queues drop too, uncounted, and no such
    relation holds: a stack dropping one packet in a hundred would pass."""
    out = tmp_path / "res"
    r = subprocess.run([sys.executable, "-m", "iopkt", "bench", "--drivers", "native,shim",
                        "--protocols", "udp", "--frames", "512", "--loads", "10M",
                        "--links", "100", "--reps", "2", "--seconds", "1", "--prefix", "smk",
                        "--out", str(out), "--no-latency"],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "[  1/4]" in r.stderr and "left" in r.stderr          # the progress display
    assert "shim/native" in r.stdout
    data = json.loads((out / "results.json").read_text())
    runs = data["runs"]
    assert len(runs) == 4 and all(x["ok"] for x in runs), runs
    for x in runs:
        # The figure is the stack's CPU over the packets it forwarded, and a
        # packet costs CPython between a microsecond and a millisecond.
        cpu = x["cpu_user_s"] + x["cpu_sys_s"]
        assert x["cpu_us_per_pkt"] == pytest.approx(1e6 * cpu / x["forwarded"]), x
        assert 1 <= x["cpu_us_per_pkt"] <= 1000, x
        assert x["cpu_stack_thread_s"] + x["cpu_other_threads_s"] == pytest.approx(cpu, abs=0.05)
        ends = [json.loads((out / fn).read_text())["end"]
                for fn in (x["iperf3_json"], x["iperf3_json"].replace(".json", ".server.json"))]
        sent = ends[0]["sum_sent"]["packets"]
        got = [e["sum_received"] for e in ends]        # the server's count, twice
        assert sent > 2000, x                          # 10 Mbit/s of 466 B datagrams for 1 s
        # `packets` is the highest sequence number the receiver saw, and
        # `lost_packets` the gaps below it.
        assert all(g["packets"] <= sent for g in got), (x["driver"], sent, got)
        r = got[0]
        assert x["udp_packets_sent"] == r["packets"], x
        assert x["udp_lost_percent"] == pytest.approx(r["lost_percent"]), x
        received = r["packets"] - r["lost_packets"]
        # Every datagram B received crossed the stack, and the stack forwarded
        # none A did not send (on a quiet machine: all of them, none lost).
        lo, hi = CONTROL_PACKETS
        assert received + lo <= x["forwarded"] <= sent + hi, (x["driver"], x["forwarded"],
                                                              received, sent)
        # Frames towards B: the datagrams' 512 B (with FCS) and a few
        # smaller control packets.
        assert 505 <= x["frame_measured"] <= 512.0, x["frame_measured"]
    shim = [x for x in runs if x["driver"] == "shim"]
    native = [x for x in runs if x["driver"] == "native"]
    assert all(x["threads"] == 3 for x in shim) and all(x["threads"] == 1 for x in native)
    # The legacy drivers' receive threads read every datagram: at least a
    # microsecond each.
    assert all(x["cpu_other_threads_s"] >= 1e-6 * x["udp_packets_sent"] for x in shim), shim
    assert all(x["cpu_other_threads_s"] == 0 for x in native)
    # drivers alternate, each rep starting with the other one
    assert [x["driver"] for x in runs] == ["native", "shim", "shim", "native"]
    md = (out / "results.md").read_text()
    assert "| UDP, 512 B, offered 10M, 100 Mbit/s link | shim/native |" in md
    # The folder against itself: every figure unchanged (no change at all
    # where the old median is 0), each such row saying +0.0%.
    same = compare.compare_rows(str(out), str(out))["rows"]
    assert all(r["change_percent"] == (0.0 if r["old"]["median"] else None) for r in same)
    assert sum(ln.endswith(" +0.0%") for ln in compare.compare(str(out), str(out)).splitlines()) \
        == sum(r["change_percent"] == 0.0 for r in same) > 0
    assert not [n for n in netns.ns_list() if n.startswith("smk")]
    assert not cgroup.leftovers()


@pytest.mark.alone
def test_bench_ipv6_smoke(tmp_path):
    """An IPv6 point through native: iperf3 talks IPv6 to host B, and the
    stack's IPv6 forwarded counter is what iperf3 sent plus its control
    packets, as over IPv4 (512 B frames at 10 Mbit/s, all carried). An
    offered load is not "unlimited": no baselines (the manual smoke run
    of the IPv6 default point covers Linux routing and the relays)."""
    out = tmp_path / "res"
    r = subprocess.run([sys.executable, "-m", "iopkt", "bench", "--drivers", "native",
                        "--family", "6", "--protocols", "udp", "--frames", "512", "--loads",
                        "10M", "--reps", "1", "--seconds", "1", "--prefix", "smk6",
                        "--out", str(out), "--no-latency"],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [(x["driver"], x["family"], x["ok"]) for x in runs] == [("native", 6, True)], runs
    nat = runs[0]
    res = json.loads((out / nat["iperf3_json"]).read_text())
    assert res["start"]["connected"][0]["remote_host"] == "2001:2:0:b::2"
    assert nat["udp_lost_percent"] == 0, nat
    sent = res["end"]["sum_sent"]["packets"]
    lo, hi = CONTROL_PACKETS
    assert sent > 2000 and lo <= nat["forwarded"] - sent <= hi, (nat["forwarded"], sent)
    assert 505 <= nat["frame_measured"] <= 512.0, nat["frame_measured"]
    md = (out / "results.md").read_text()
    assert "| UDP over IPv6, 512 B, offered 10M, no link limit | native |" in md
    assert not [n for n in netns.ns_list() if n.startswith("smk6")]
    assert not [i for i in os.listdir("/sys/class/net") if i.startswith("smk6")]


@pytest.mark.alone
def test_bench_latency_smoke(tmp_path):
    """ping through native, shim and Linux routing, idle and under load:
    real RTTs, no loss idle, the table, the verdict row and the plot. The
    one throughput point has a link limit, so no throughput baselines run
    (they run only without one); the latency runs have their own."""
    out = tmp_path / "res"
    r = subprocess.run([sys.executable, "-m", "iopkt", "bench", "--drivers", "native,shim",
                        "--protocols", "udp", "--frames", "64", "--links", "100", "--reps", "1",
                        "--seconds", "1", "--latency-seconds", "0.5", "--prefix", "slat",
                        "--out", str(out)],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "1 points x 2 drivers x 1 reps + latency = 8 runs" in r.stderr, r.stderr[:300]
    assert "hand-off per crossing" in r.stdout
    data = json.loads((out / "results.json").read_text())
    lat = [x for x in data["runs"] if x["kind"] == "latency"]
    assert len(lat) == 6 and all(x["ok"] for x in lat), lat
    # one repetition: native, shim, then Linux routing, idle then loaded
    assert [(x["load"], x["driver"]) for x in lat] == [
        (ld, k) for ld in ("idle", "200M") for k in ("native", "shim", "kernel")]
    by = {(x["load"], x["driver"]): x for x in lat}
    for (load, _kind), x in by.items():
        assert 0 < x["rtt_min_us"] <= x["rtt_p50_us"] <= x["rtt_p99_us"] <= x["rtt_max_us"]
        assert x["sent"] == 250 and x["received"] == sum(x["rtt_histogram"]["count"])
        assert (out / x["ping_output"]).exists()
        # Loss is the bench's to measure; the record must say what ping saw.
        assert x["loss_percent"] == pytest.approx(100 * (x["sent"] - x["received"]) / 250), x
        if load != "idle":
            assert 0 < x["load_bps"] <= 1.05 * 200e6, x     # iperf3 -b 200M: a ceiling
            assert (out / x["iperf3_json"]).exists()
    for load in ("idle", "200M"):
        # Linux routing is the faster forwarder
        assert by[(load, "kernel")]["rtt_p50_us"] < by[(load, "native")]["rtt_p50_us"]
    assert by[("idle", "shim")]["threads"] == 3 and by[("idle", "native")]["threads"] == 1
    md = (out / "results.md").read_text()
    assert "## Latency" in md and "| ping RTT, idle | hand-off: shim − native |" in md
    assert "64-byte frames, 0.5 s per run" in md
    assert "| Under the shim each received packet costs a forced context switch" in md
    assert (out / "plot-latency.png").exists() and "[plot-latency.png]" in md
    meta = data["meta"]
    from importlib import metadata
    iperf3 = subprocess.run(["iperf3", "--version"], capture_output=True, text=True)
    assert meta["schema"] == 2 and meta["iopkt_version"] == metadata.version("iopkt")
    assert meta["iperf3_version"] == iperf3.stdout.strip().splitlines()[0].strip()
    assert [p["load"] for p in meta["plan"]["latency"]] == ["idle", "200M"]
    assert meta["plan"]["latency_seconds"] == 0.5
    assert not [n for n in netns.ns_list() if n.startswith("slat")]


def test_bench_rejects_bad_matrix_values():
    for args, needle in ((["--frames", "100"], "frame size 100"),
                         (["--drivers", "fast"], "driver 'fast'"),
                         (["--links", "56k"], "link speed '56k'"),
                         (["--loads", "lots"], "offered load 'lots'"),
                         (["--cpu", "2"], "CPU budget 2"),
                         (["--family", "5"], "IP version '5'")):
        r = subprocess.run([sys.executable, "-m", "iopkt", "bench", *args],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and needle in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr


@pytest.mark.alone          # its cgroup is what the other tests check is not left
def test_cpu_limit_cgroup_is_applied_and_removed():
    import time
    p = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        import psutil
        proc = psutil.Process(p.pid)
        with cgroup.cpu_limit(p.pid, 0.1, "smoketest") as group:
            assert os.path.isdir(group)
            t0 = sum(proc.cpu_times()[:2])
            time.sleep(1.0)
            used = sum(proc.cpu_times()[:2]) - t0
        assert used < 0.2, used             # held near 0.1 core
        assert not os.path.exists(group)
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_tears_down_and_keeps_results(tmp_path, sig):
    import signal
    import time
    out = tmp_path / "res"
    prefix = f"intr{sig[3:].lower()}"               # one of its own per signal
    p = subprocess.Popen([sys.executable, "-m", "iopkt", "bench", "--drivers", "native,shim",
                          "--protocols", "udp", "--frames", "64,1518", "--reps", "3",
                          "--seconds", "1", "--prefix", prefix, "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait until the third run has started (two are done), however slow
    # the machine, then interrupt.
    seen = []
    deadline = time.time() + 120
    while time.time() < deadline:
        line = p.stderr.readline()
        seen.append(line)
        if line.startswith("[  3/") or not line:
            break
    p.send_signal(getattr(signal, sig))
    _, rest = p.communicate(timeout=60)
    err = "".join(seen) + rest
    assert p.returncode == 130, err[-2000:]
    assert "interrupted" in err
    data = json.loads((out / "results.json").read_text())
    assert data["meta"]["interrupted"] is True
    # Every run that began was recorded but the one the signal stopped
    # (none, if it came between runs), and the plan's were not all begun.
    began = [re.match(r"\[ *\d+/(\d+)\]", ln) for ln in err.splitlines()]
    began = [m for m in began if m]
    runs = data["runs"]
    assert len(began) - 1 <= len(runs) <= len(began) < int(began[0][1]), (len(runs), err)
    assert len([x for x in runs if x["ok"]]) >= 1
    assert not [n for n in netns.ns_list() if n.startswith(prefix)]
    assert not [i for i in os.listdir("/sys/class/net") if i.startswith(prefix)]
    assert not cgroup.leftovers()
