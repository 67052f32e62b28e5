"""The README's quick start, pasted as a user pastes it: every shell block
of the section, run top to bottom from the checkout with bash -e (each
command must succeed), `sudo ` taken off as root needs none. The first
block (`sudo make bench`, `sudo make test`) is the one left out: it is the
main job and this very suite, not something to try by hand.

The blocks use the lab names a user gets (`iopkt`, `lab2`); if a lab of
either name is up already, the test fails saying so instead of touching it.
"""

import os
import re
import subprocess

from iopkt.lab import lab

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAMES = ("iopkt", "lab2")


def quickstart_blocks() -> list[str]:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```sh\n(.*?)^```", section, re.S | re.M)
    return [b for b in blocks if "make bench" not in b]


def test_the_quick_start_has_the_blocks_this_test_runs():
    blocks = quickstart_blocks()
    assert len(blocks) >= 2 and all("lab up" in b and "lab down" in b for b in blocks)


def test_every_quick_start_block_runs_as_written():
    up = {s.get("prefix") for s in lab.status()} & set(NAMES)
    assert not up, f"a lab named {up} is up: this test pastes the README, which uses it"
    try:
        for block in quickstart_blocks():
            script = re.sub(r"(^|[;&|]\s*)sudo ", r"\1", block, flags=re.M)
            r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=ROOT,
                               capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, f"{block}\nexit {r.returncode}\n{r.stdout}\n{r.stderr}"
    finally:
        for p in NAMES:
            lab.down(p, quiet=True)
    assert not {s.get("prefix") for s in lab.status()} & set(NAMES)
