"""Low-power CPU emulation: cap a process at a fraction of one core with
the kernel's CPU bandwidth controller.

cgroup v2: a child group with `cpu.max = "QUOTA PERIOD"`; cgroup v1: the
cpu controller's `cpu.cfs_quota_us` / `cpu.cfs_period_us`. Whichever the
machine has; a clear CgroupError where it has neither.
"""

from __future__ import annotations

import contextlib
import os

ROOT = "/sys/fs/cgroup"
PERIOD_US = 100_000


class CgroupError(Exception):
    pass


def _v2_root() -> str | None:
    for path in (ROOT, os.path.join(ROOT, "unified")):
        ctl = os.path.join(path, "cgroup.controllers")
        if os.path.exists(ctl):
            with open(ctl) as f:
                if "cpu" in f.read().split():
                    return path
    return None


def _v1_root() -> str | None:
    path = os.path.join(ROOT, "cpu")
    if os.path.exists(os.path.join(path, "cpu.cfs_quota_us")):
        return path
    return None


def available() -> str | None:
    """'v2', 'v1' or None."""
    if _v2_root():
        return "v2"
    if _v1_root():
        return "v1"
    return None


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


@contextlib.contextmanager
def cpu_limit(pid: int, fraction: float, name: str):
    """Run `pid` (all its threads) with at most `fraction` of one core
    until the block ends; then move it back and remove the group."""
    if not 0.01 <= fraction <= 1.0:
        raise CgroupError(f"CPU budget {fraction}: must be between 0.01 and 1 core")
    quota = int(PERIOD_US * fraction)
    v2 = _v2_root()
    v1 = None if v2 else _v1_root()
    if not v2 and not v1:
        raise CgroupError("this machine has no cgroup CPU controller (neither cgroup v2 "
                          "cpu.max nor v1 cpu.cfs_quota_us): cannot emulate a low-power CPU")
    base = v2 or v1
    group = os.path.join(base, f"iopkt-{name}")
    os.makedirs(group, exist_ok=True)
    try:
        if v2:
            try:
                _write(os.path.join(base, "cgroup.subtree_control"), "+cpu")
            except OSError:
                pass
            _write(os.path.join(group, "cpu.max"), f"{quota} {PERIOD_US}")
        else:
            _write(os.path.join(group, "cpu.cfs_period_us"), str(PERIOD_US))
            _write(os.path.join(group, "cpu.cfs_quota_us"), str(quota))
        _write(os.path.join(group, "cgroup.procs"), str(pid))
        yield group
    finally:
        try:
            if os.path.exists(f"/proc/{pid}"):
                _write(os.path.join(base, "cgroup.procs"), str(pid))
        except OSError:
            pass
        try:
            os.rmdir(group)
        except OSError:
            pass


def leftovers() -> list[str]:
    out = []
    for base in filter(None, (_v2_root(), _v1_root())):
        out += [os.path.join(base, d) for d in os.listdir(base) if d.startswith("iopkt-")]
    return out
