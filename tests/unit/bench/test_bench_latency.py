"""The bench's latency figures from canned ping output and records:
percentiles, the hand-off's cost per crossing, the table, the verdict."""

from iopkt.bench import matrix, measure, report, runner, stats

from bench_canned import LATENCY_P50, latency_record, latency_records

PING_OUT = """PING 198.19.0.2 (198.19.0.2) 18(46) bytes of data.
26 bytes from 198.19.0.2: icmp_seq=1 ttl=63 time=0.987 ms
26 bytes from 198.19.0.2: icmp_seq=2 ttl=63 time=0.225 ms
26 bytes from 198.19.0.2: icmp_seq=3 ttl=63 time=0.150 ms
26 bytes from 198.19.0.2: icmp_seq=3 ttl=63 time=0.400 ms (DUP!)
26 bytes from 198.19.0.2: icmp_seq=6 ttl=63 time=12.3 ms
26 bytes from 198.19.0.2: icmp_seq=5 ttl=63 time=1.05 ms

--- 198.19.0.2 ping statistics ---
6 packets transmitted, 5 received, +1 duplicates, 16.6667% packet loss, time 10ms
"""


def test_ping_output_gives_rtts_in_sequence_without_warmup_or_duplicates():
    r = measure.parse_ping(PING_OUT, warmup=1, count=5)
    assert r["rtts_us"] == [225.0, 150.0, 1050.0, 12300.0]   # seq 2, 3, 5, 6; 4 lost
    assert (r["sent"], r["received"], r["loss_percent"]) == (5, 4, 20.0)
    assert measure.parse_ping(PING_OUT, warmup=0, count=6)["rtts_us"][0] == 987.0


def test_percentiles_are_nearest_rank_of_every_rtt():
    s = stats.rtt_stats(list(range(200, 0, -1)))             # 1..200 in any order
    assert s == {"rtt_p50_us": 100, "rtt_p99_us": 198, "rtt_max_us": 200, "rtt_min_us": 1,
                 "rtt_mean_us": 100.5}
    s = stats.rtt_stats([5, 1, 4, 2, 3, 10, 9, 8, 7, 6])
    assert (s["rtt_p50_us"], s["rtt_p99_us"], s["rtt_max_us"]) == (5, 10, 10)
    assert stats.rtt_stats([42.0])["rtt_p99_us"] == 42.0
    assert stats.rtt_stats([])["rtt_p50_us"] is None
    h = stats.rtt_histogram([15, 20, 21, 180, 200, 201, 4000])
    assert h == {"le_us": [20, 50, 200, 500, 5000], "count": [2, 1, 2, 1, 1]}


def test_the_hand_off_costs_half_the_rtt_difference_rep_by_rep():
    lat = stats.summarise_latency(latency_records())
    idle = lat["rtt-idle-linknone-cpu1"]
    busy = lat["rtt-load200M-linknone-cpu1"]
    nat = idle["drivers"]["native"]["rtt_p50_us"]
    assert (nat["median"], nat["min"], nat["max"], nat["n"]) == (200, 190, 210, 3)
    # shim - native per repetition: (240-200)/2, (250-210)/2, (260-190)/2
    h = idle["diffs"]["shim-native"]["p50"]
    assert (h["median"], h["min"], h["max"]) == (20, 20, 35)
    h = idle["diffs"]["shim0-native"]["p50"]
    assert (h["median"], h["min"], h["max"]) == (35, 30, 45)
    h = idle["diffs"]["native-kernel"]["p50"]
    assert (h["median"], h["min"], h["max"]) == (90, 85.5, 94.5)
    assert idle["diffs"]["shim-native"]["p99"]["median"] == 80       # p99 = 4 x p50
    h = busy["diffs"]["shim-native"]["p50"]
    assert (h["median"], h["min"], h["max"]) == (195, 160, 220)
    # failed runs and throughput runs do not count; a missing pair is left out
    recs = latency_records() + [{**latency_record("idle", "shim", 3, 9999), "ok": False}]
    assert stats.summarise_latency(recs) == lat
    one = [r for r in latency_records() if r["driver"] != "native"]
    assert "shim-native" not in stats.summarise_latency(one)["rtt-idle-linknone-cpu1"]["diffs"]
    assert stats.summarise(latency_records()) == {}


def test_the_latency_table_has_percentiles_per_driver_and_the_hand_off():
    md = "\n".join(report.render_latency(stats.summarise_latency(latency_records())))
    assert md.startswith("## Latency")
    assert "64-byte frames, 2 s per run" in md
    short = report.render_latency(stats.summarise_latency(latency_records()), 0.5)
    assert "64-byte frames, 0.5 s per run" in "\n".join(short)
    assert "TCP at 200 Mbit/s" in md and "every forwarder here carries" in md
    assert ("| ping RTT, idle | native | 200 [190–210] | 800 [760–840] | 2000 [1900–2100] "
            "| 240 [228–252] | 0.0 [0.0–0.0] | – | 0.50 [0.50–0.50] |") in md
    assert "| ping RTT, idle | shim zero-copy | 270 [270–280] |" in md
    assert "| ping RTT, idle | Linux routing | 20 [19–21] |" in md
    assert ("| ping RTT, under TCP at 200 Mbit/s | shim | 560 [500–600] | 2240 [2000–2400] "
            "| 5600 [5000–6000] | 672 [600–720] | 0.0 [0.0–0.0] | 200 [200–200] |") in md
    assert ("| ping RTT, idle | hand-off: shim − native | 20.0 [20.0–35.0] "
            "| 80.0 [80.0–140.0] |") in md
    assert "| ping RTT, under TCP at 200 Mbit/s | hand-off: shim zero-copy − native " \
           "| 220.0 [215.0–240.0] |" in md
    assert report.render_latency({}) == []


def test_the_verdict_row_on_the_forced_context_switch():
    lat = stats.summarise_latency(latency_records())
    (row,) = report.latency_row(lat)
    assert row.startswith("| Under the shim each received packet costs a forced context switch")
    assert "p50 RTT idle: native 200, shim 250, shim zero-copy 270, Linux routing 20 µs" in row
    assert "p99 idle: native 800, shim 1000, shim zero-copy 1080, Linux routing 80 µs" in row
    assert "under load p50: native 170, shim 560, shim zero-copy 620, Linux routing 22" in row
    assert ("the hand-off per crossing, p50: idle shim 20.0 [20.0–35.0], shim zero-copy "
            "35.0 [30.0–45.0] µs; under load shim 195.0 [160.0–220.0], shim zero-copy "
            "220.0 [215.0–240.0] µs") in row
    assert "context switches per forwarded packet idle: native 0.50, shim 2.00" in row
    assert row.endswith("| shown: each crossing of the hand-off adds 20 µs, 20 % of "
                        "native's RTT |")
    # it is in the verdict table, after the seed's claims
    assert report.verdict({}, lat)[-1] == row
    # one repetition where the shim is not slower: not shown
    recs = [r for r in latency_records() if not (r["driver"] == "shim" and r["rep"] == 2)]
    recs.append(latency_record("idle", "shim", 2, 180))
    (row,) = report.latency_row(stats.summarise_latency(recs))
    assert row.endswith("| NOT shown: the hand-off does not add time in every run |")
    # no native or no shim: no row
    assert report.latency_row(stats.summarise_latency(
        [r for r in latency_records() if r["driver"] != "shim"])) == []
    assert report.latency_row({}) == []


def test_latency_records_are_marked_and_describe_the_run():
    p = matrix.LatencyPoint("200M")
    r = runner._record(p, "shim", 1, 2)
    assert r["kind"] == "latency" and r["point"] == "rtt-load200M-linknone-cpu1"
    assert (r["proto"], r["frame"], r["load"], r["link"], r["cpu"]) == ("icmp", 64, "200M",
                                                                      "none", 1.0)
    assert r["load_args"] == ["-b", "200M"] and r["interval_s"] == 0.002
    assert r["seconds"] == matrix.LATENCY_SECONDS and r["warmup"] == measure.PING_WARMUP
    assert runner._record(matrix.Point("udp", 64, "unlimited", "none", 1.0), "native", 0,
                         0)["kind"] == "throughput"
    assert set(LATENCY_P50) == {(ld, k) for ld in matrix.LATENCY_LOADS
                                for k in ("native", "shim", "shim0", "kernel")}
