"""The bench's results folder without traffic: a plot per claim, the note
when matplotlib is missing, `iopkt bench compare` (text and --json), and
the meta that says what ran where."""

import io
import json
import os
import re
import subprocess
import sys

import matplotlib  # noqa: F401  (a test dependency: missing, the module fails, not skips)
import pytest

from iopkt.bench import compare, measure, plots, report, stats

from bench_canned import default_records, meta, write_folder

CLAIM_PLOTS = {"plot-claim1-slow-link.png", "plot-claim2-small-frames.png",
               "plot-claim3-low-power-cpu.png", "plot-tso.png", "plot-latency.png"}


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """plot() on the canned default matrix; what each figure shows."""
    from matplotlib.figure import Figure
    tmp_path = tmp_path_factory.mktemp("plots")
    seen = {}
    save = Figure.savefig

    def spy(fig, path, *a, **kw):
        seen[os.path.basename(path)] = {
            "legends": [t.get_text() for ax in fig.axes if ax.get_legend()
                        for t in ax.get_legend().get_texts()],
            "yscales": [ax.get_yscale() for ax in fig.axes if ax.get_visible()],
            "titles": [ax.get_title() for ax in fig.axes]}
        return save(fig, path, *a, **kw)
    recs = default_records()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Figure, "savefig", spy)
        made = plots.plot(str(tmp_path), stats.summarise(recs), stats.summarise_latency(recs))
    return tmp_path, made, seen


def test_a_plot_for_every_claim_and_each_file_is_a_png(drawn):
    out, made, seen = drawn
    names = [fn for fn, _ in made]
    assert CLAIM_PLOTS <= set(names)
    assert set(names) == CLAIM_PLOTS | {"plot-udp-linknone.png", "plot-udp-link100.png"}
    for fn in names:
        with open(out / fn, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", fn
    assert sorted(os.listdir(out)) == sorted(names)
    # one figure per row of the verdict table (the seed's three claims,
    # offload, latency)
    recs = default_records()
    rows = report.verdict(stats.summarise(recs), stats.summarise_latency(recs))[2:]
    assert len(rows) == len(CLAIM_PLOTS) == 5


def test_the_figures_say_shim_zero_copy_use_kpps_ratios_and_log_axes(drawn):
    _, made, seen = drawn
    for fn, s in seen.items():
        assert not any(re.search(r"\bshim0\b", t) for t in s["legends"]), (fn, s["legends"])
    assert "shim zero-copy" in seen["plot-claim1-slow-link.png"]["legends"]
    assert "shim zero-copy / native, throughput" in seen["plot-claim1-slow-link.png"]["legends"]
    assert "shim / native, 100 Mbit/s link" in seen["plot-claim2-small-frames.png"]["legends"]
    assert "line rate" in seen["plot-claim2-small-frames.png"]["legends"]
    # small frames: packets per second; 8 to 200 kpps spans a decade: log
    assert seen["plot-claim2-small-frames.png"]["yscales"][0] == "log"
    assert "forwarded kpps" in seen["plot-udp-link100.png"]["titles"]
    # native with offload against the shim spans decades; the ratios do not
    assert seen["plot-tso.png"]["yscales"][0] == "log"
    assert seen["plot-claim1-slow-link.png"]["yscales"][2] == "linear"
    # p50, p99 and max on each panel (idle, under load), then the hand-off's
    # cost: of the shim and of zero-copy at p50, of the shim at p99
    assert seen["plot-latency.png"]["legends"] == [
        "p50", "p99", "max", "p50", "p99", "max", "shim − native, p50",
        "shim zero-copy − native, p50", "shim − native, p99"]
    what = dict(made)
    assert what["plot-claim3-low-power-cpu.png"] == (
        "claim 3, low-power CPU: throughput with the stack capped (cgroup) and on a whole core, "
        "and the shim/native throughput ratio against the CPU budget")
    assert what["plot-latency.png"] == (
        "latency: ping RTT p50, p99 and max per driver and Linux routing, idle and under load, "
        "and the hand-off's cost per crossing")


def test_results_md_names_every_plot(tmp_path):
    recs = default_records()
    err = io.StringIO()
    report.write_results(str(tmp_path), meta(), recs, log=err)
    assert err.getvalue() == ""
    md = (tmp_path / "results.md").read_text()
    pngs = sorted(f for f in os.listdir(tmp_path) if f.endswith(".png"))
    assert set(pngs) == CLAIM_PLOTS | {"plot-udp-linknone.png", "plot-udp-link100.png"}
    for fn in pngs:
        assert f"- [{fn}]({fn}): " in md
    assert "## Latency" in md and "## Plots" in md
    assert "Code: iopkt 0.1.0, git 0123456789ab; iperf 3.12." in md
    data = json.loads((tmp_path / "results.json").read_text())
    assert {r["kind"] for r in data["runs"]} == {"throughput", "latency"}


def test_without_matplotlib_one_line_on_stderr_and_a_note_in_results_md(tmp_path, monkeypatch):
    def no_matplotlib(*a, **kw):
        raise ImportError("No module named 'matplotlib'")
    monkeypatch.setattr(plots, "plot", no_matplotlib)
    err = io.StringIO()
    report.write_results(str(tmp_path), meta(), default_records(), log=err)
    assert err.getvalue() == f"iopkt bench: no plots: {report.NO_MATPLOTLIB}\n"
    md = (tmp_path / "results.md").read_text()
    assert "## Plots\n\nNone drawn: matplotlib is not installed" in md
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".png")]
    assert "## Verdicts" in md                  # the tables are all there


def test_compare_prints_units_and_spread(tmp_path):
    old = write_folder(tmp_path / "old", default_records())
    new = write_folder(tmp_path / "new", default_records(scale=1.1), git_dirty=True)
    out = compare.compare(old, new)
    lines = out.splitlines()
    assert lines[0].startswith(f"old: {old} — 2026-11-28T09:10:30, iopkt 0.1.0 git "
                               "0123456789ab, 3 reps of 3 s")
    assert "(modified)" in lines[1]
    assert "old median [min–max]" in out and "new median [min–max]" in out
    row = next(x for x in lines if x.startswith("TCP, 1518 B, no link limit")
               and " native " in x and "throughput" in x)
    # native 1000 Mbit/s x (0.98, 1.00, 1.02), then 10 % more
    assert re.search(r"Mbit/s\s+1000 \[980–1020\]\s+1100 \[1078–1122\]\s+\+10\.0% \*$",
                     row), row
    row = next(x for x in lines if x.startswith("TCP, 1518 B, no link limit")
               and "shim/native" in x and "throughput" in x)
    assert re.search(r"ratio\s+0\.60 \[0\.60–0\.60\]\s+0\.60 \[0\.60–0\.60\]\s+\+0\.0%$", row)
    row = next(x for x in lines if x.startswith("ping RTT, idle") and "shim-native" in x
               and "p50" in x)
    assert re.search(r"per crossing p50\s+µs\s+20\.0 \[20\.0–35\.0\]\s+20\.0 \[20\.0–35\.0\]"
                     r"\s+\+0\.0%$", row), row
    # latency is not scaled: native's p99 under load, 4 x its p50s (170 [160-180])
    assert any(re.fullmatch(r"ping RTT, under TCP at 200 Mbit/s\s+native\s+RTT p99\s+µs\s+"
                            r"680 \[640–720\]\s+680 \[640–720\]\s+\+0\.0%", x) for x in lines)
    assert "* old and new ranges [min–max] do not overlap" in out
    # A folder against itself: every figure unchanged (no change at all
    # where the old median is 0), each row saying +0.0%.
    same = compare.compare_rows(old, old)["rows"]
    assert all(r["change_percent"] == (0.0 if r["old"]["median"] else None) for r in same)
    assert sum(ln.endswith(" +0.0%") for ln in compare.compare(old, old).splitlines()) == \
        sum(r["change_percent"] == 0.0 for r in same)


def test_compare_json_from_the_command_line(tmp_path):
    old = write_folder(tmp_path / "old", default_records())
    new = write_folder(tmp_path / "new", default_records(scale=1.1))
    r = subprocess.run([sys.executable, "-m", "iopkt", "bench", "compare", old, new, "--json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", c["timestamp"])
    assert c["old"]["dir"] == old and c["new"]["reps"] == 3
    assert c["old"]["git_commit"].startswith("0123456789ab")
    row = next(x for x in c["rows"] if x["point"] == "tcp-1518-loadunlimited-linknone-cpu1"
               and x["driver"] == "native" and x["figure"] == "throughput")
    assert row["unit"] == "Mbit/s"
    assert row["old"] == {"median": pytest.approx(1000), "min": pytest.approx(980),
                          "max": pytest.approx(1020), "n": 3}
    assert row["change_percent"] == pytest.approx(10.0)
    assert row["ranges_overlap"] is False
    units = {(x["figure"], x["unit"]) for x in c["rows"]}
    assert units == {("throughput", "Mbit/s"), ("forwarded", "kpps"), ("CPU per packet", "µs"),
                     ("ctx switches", "per packet"), ("CPU per GB", "s/GB"),
                     ("throughput", "ratio"), ("CPU per packet", "ratio"), ("RTT p50", "µs"),
                     ("RTT p99", "µs"), ("RTT max", "µs"), ("ping loss", "%"),
                     ("per crossing p50", "µs"), ("per crossing p99", "µs")}
    assert c["only_old"] == [] and c["only_new"] == []
    # and a folder that is not one
    r = subprocess.run([sys.executable, "-m", "iopkt", "bench", "compare", old,
                        str(tmp_path), "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no results.json" in r.stderr


def test_compare_reads_results_written_before_latency(tmp_path):
    """Schema 1 folders (no "kind", no versions in meta) still compare."""
    recs = [{k: v for k, v in r.items() if k != "kind"} for r in default_records()
            if r["kind"] == "throughput"]
    old = write_folder(tmp_path / "old", recs, iopkt_version=None, git_commit=None)
    new = write_folder(tmp_path / "new", default_records())
    c = compare.compare_rows(old, new)
    assert c["only_new"] == ["rtt-idle-linknone-cpu1", "rtt-load200M-linknone-cpu1"]
    assert compare.compare(old, new).splitlines()[0] == (f"old: {old} — 2026-11-28T09:10:30, "
                                                       "3 reps of 3 s")


def _out(*cmd):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=20)
    return r.returncode, (r.stdout or r.stderr).strip()


def test_meta_names_the_code_the_tools_and_the_machine():
    import platform
    from importlib import metadata
    info = measure.machine_info()
    assert info["iopkt_version"] == metadata.version("iopkt")
    assert info["kernel"] == os.uname().release and info["cpu_count"] == os.cpu_count()
    assert info["python"] == platform.python_version()
    with open("/proc/cpuinfo") as f:
        model = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
    assert info["cpu_model"] == (model[0] if model else platform.processor() or platform.machine())
    if os.path.exists(os.path.join(measure.ROOT, ".git")):
        git = ["git", "-c", f"safe.directory={measure.ROOT}", "-C", measure.ROOT]
        assert info["git_commit"] == _out(*git, "rev-parse", "HEAD")[1]
        # Tracked files only, as the check says (untracked results do not count).
        assert info["git_dirty"] is bool(_out(*git, "status", "--porcelain",
                                             "--untracked-files=no")[1])
    else:
        assert info["git_commit"] is None
    if measure.shutil.which("iperf3"):
        code, out = _out("iperf3", "--version")
        assert info["iperf3_version"] == (out.splitlines()[0].strip() if code == 0 else None)
    assert measure.machine_line(info).startswith(f"{info['cpu_model']}, ")
    # The Python packages it ran with, each as installed (None: not installed).
    assert set(info["packages"]) == set(measure.PACKAGES)
    assert info["packages"]["scapy"] == metadata.version("scapy")
    assert info["packages"]["psutil"] == metadata.version("psutil")
