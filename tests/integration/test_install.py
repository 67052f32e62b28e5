"""iopkt as a user installs it: `pip install .` (not editable) of the
package alone (no scripts/, no tests/) into a fresh virtual environment,
then, from another folder, the commands a user runs first: `iopkt drivers
-v`, `iopkt lab up`, `iopkt capture` with a filter, `iopkt bench` and `iopkt
lab down`. What they import at run time must have come with the install."""

import json
import os
import shutil
import subprocess
import sys
import time

from conftest import unique_prefix

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEEP_OUT = (".git", ".venv", "scripts", "tests", "mutants", "results", "build", "*.egg-info",
            ".pytest_cache", ".ruff_cache", "__pycache__", ".coverage", "htmlcov")


def test_pip_install_then_the_first_commands_work(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*KEEP_OUT))
    venv = tmp_path / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)],
                   check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(src)],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-3000:]
    shutil.rmtree(src)                      # nothing may come from the copy any more
    iopkt = str(venv / "bin" / "iopkt")
    run = dict(capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    r = subprocess.run([iopkt, "drivers", "-v"], **run)
    assert r.returncode == 0 and all(d in r.stdout for d in (
        "devnp-tap", "devn-tap", "devnp-shim", "devnp-afpacket", "devn-afpacket")), r
    p = unique_prefix("ins")
    try:
        r = subprocess.run([iopkt, "lab", "up", "--prefix", p], **run)
        assert r.returncode == 0, r.stderr
        r = subprocess.run([iopkt, "ifconfig", "--instance", p, "--json"], **run)
        ifa = json.loads(r.stdout)["interfaces"][0]["name"]
        cap = subprocess.Popen([iopkt, "capture", "--instance", p, "-ni", ifa, "-c", "2", "icmp"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=str(tmp_path))
        time.sleep(1)
        subprocess.run(["ip", "netns", "exec", f"{p}-a", "ping", "-c", "1", "198.19.0.2"],
                       capture_output=True, timeout=30)
        out, err = cap.communicate(timeout=60)
        assert cap.returncode == 0 and len(out.splitlines()) == 2 and "ICMP" in out, err
    finally:
        r = subprocess.run([iopkt, "lab", "down", "--prefix", p], **run)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([iopkt, "bench", "--drivers", "native", "--protocols", "udp",
                        "--frames", "512", "--loads", "10M", "--links", "100", "--reps", "1",
                        "--seconds", "1", "--prefix", unique_prefix("inb"), "--out",
                        str(tmp_path / "res"), "--no-latency"], **run)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "res" / "results.json").exists()
