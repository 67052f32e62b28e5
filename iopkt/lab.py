"""The lab: the stack between two host namespaces.

    P-a: 198.18.0.2/24 --(TAP P-a0)-- stack 198.18.0.1 | 198.19.0.1 --(TAP P-b0)-- P-b: 198.19.0.2/24

`up` creates the namespaces, starts `iopkt run -i P` in the background with
one interface facing each, moves each TAP's netdev into its host namespace
and configures the hosts to route through the stack. `down` stops the stack
and removes everything `up` made, also after a crash (it works from the
prefix alone). Everything a lab makes is named after its prefix, so labs
with different prefixes run side by side.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

from . import control, netns

DEFAULT_PREFIX = "iopkt"
A_NET = ("198.18.0.1", "198.18.0.2", 24)      # stack side, host side, plen
B_NET = ("198.19.0.1", "198.19.0.2", 24)


class LabError(Exception):
    pass


@dataclass
class LabSpec:
    prefix: str = DEFAULT_PREFIX
    driver_a: str = "devnp-tap"
    driver_b: str = "devnp-tap"
    opts_a: str = ""
    opts_b: str = ""
    stack_args: list = field(default_factory=list)   # extra `iopkt run` args
    speed: int = 0          # emulated link speed, Mbit/s, both sides (0: none)
    offload: bool | None = None     # native drivers' offload=1/0 (None: their default)

    @property
    def ns_a(self) -> str:
        return f"{self.prefix}-a"

    @property
    def ns_b(self) -> str:
        return f"{self.prefix}-b"

    @property
    def tap_a(self) -> str:
        return f"{self.prefix}-a0"

    @property
    def tap_b(self) -> str:
        return f"{self.prefix}-b0"


def check_prefix(prefix: str) -> str:
    if not prefix or len(prefix) > 12 or not all(c.isalnum() or c in "-_" for c in prefix):
        raise LabError(f"--prefix {prefix!r}: use 1-12 letters, digits, '-' or '_' "
                       "(it names namespaces and TAPs, at most 15 characters)")
    return prefix


def state_path(prefix: str) -> str:
    return os.path.join(control.RUN_DIR, f"lab-{prefix}.json")


def log_path(prefix: str) -> str:
    return os.path.join(control.RUN_DIR, f"lab-{prefix}.log")


def _driver_args(name: str, tap: str, opts: str, speed: int,
                 offload: bool | None = None) -> list[str]:
    """The `-d` arguments for one side: the TAP's name and the emulated
    speed go to the driver (native, or legacy through the shim); offload
    only to a native driver (io-net drivers never had any)."""
    o = f"name={tap}" + (f",speed={speed}" if speed else "")
    if offload is not None and name.startswith("devnp-"):
        o += f",offload={int(offload)}"
    return ["-d", name, o + (f",{opts}" if opts else "")]


def up(spec: LabSpec, wait: float = 15.0) -> dict:
    """Build the lab. Returns its state (also written to state_path)."""
    check_prefix(spec.prefix)
    if os.path.exists(state_path(spec.prefix)) or netns.ns_exists(spec.ns_a):
        st = read_state(spec.prefix)
        if st and _pid_alive(st.get("pid")):
            raise LabError(f"lab '{spec.prefix}' is already up; "
                           f"'iopkt lab down --prefix {spec.prefix}' first")
        down(spec.prefix, quiet=True)           # leftovers of a crash
    os.makedirs(control.RUN_DIR, exist_ok=True)
    if spec.speed not in (0, 10, 100, 1000, 10000):
        raise LabError(f"--speed {spec.speed}: one of 10, 100, 1000, 10000 (Mbit/s)")
    state = {"prefix": spec.prefix, "driver_a": spec.driver_a, "speed": spec.speed,
             "driver_b": spec.driver_b, "ns_a": spec.ns_a, "ns_b": spec.ns_b,
             "tap_a": spec.tap_a, "tap_b": spec.tap_b, "pid": None,
             "log": log_path(spec.prefix), "created": time.time(),
             "spec": asdict(spec)}
    try:
        netns.ns_create(spec.ns_a)
        netns.ns_create(spec.ns_b)
        cmd = [sys.executable, "-m", "iopkt", "run", "-i", spec.prefix,
               *_driver_args(spec.driver_a, spec.tap_a, spec.opts_a, spec.speed, spec.offload),
               *_driver_args(spec.driver_b, spec.tap_b, spec.opts_b, spec.speed, spec.offload),
               *spec.stack_args]
        log = open(state["log"], "ab")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, start_new_session=True,
                                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        log.close()
        state["pid"] = proc.pid
        _write_state(state)
        try:
            info = control.wait_ready(spec.prefix, wait, proc)
        except control.ControlError as e:
            raise LabError(f"{e}; see {state['log']}:\n{_tail(state['log'])}") from None
        ifs = info["interfaces"]
        if len(ifs) != 2:
            raise LabError(f"the stack has interfaces {ifs}, expected two")
        state["if_a"], state["if_b"] = ifs
        control.request(spec.prefix, "ifconfig", ifname=ifs[0], inet=f"{A_NET[0]}/{A_NET[2]}")
        control.request(spec.prefix, "ifconfig", ifname=ifs[1], inet=f"{B_NET[0]}/{B_NET[2]}")
        for tap, ns, (gw, addr, plen) in ((spec.tap_a, spec.ns_a, A_NET),
                                          (spec.tap_b, spec.ns_b, B_NET)):
            netns.link_move(tap, ns)
            netns.host_setup(ns, tap, addr, plen, gw)
            if spec.speed:
                netns.link_rate(ns, tap, spec.speed)
        _write_state(state)
        return state
    except BaseException:
        down(spec.prefix, quiet=True)
        raise


def down(prefix: str, quiet: bool = False) -> list[str]:
    """Stop the lab's stack and remove its namespaces, TAPs, socket, state
    and log. Safe to call on a half-built or crashed lab. Returns what it
    removed."""
    check_prefix(prefix)
    removed = []
    st = read_state(prefix) or {}
    pid = st.get("pid")
    if os.path.exists(control.sock_path(prefix)):
        try:
            control.request(prefix, "stop", timeout=2.0)
        except control.ControlError:
            pass
    if pid and _pid_alive(pid):
        _wait_exit(pid, 5.0) or _kill(pid)
        removed.append(f"stack pid {pid}")
    for ns in (f"{prefix}-a", f"{prefix}-b"):
        if netns.ns_remove(ns):
            removed.append(f"netns {ns}")
    for tap in (f"{prefix}-a0", f"{prefix}-b0"):
        if netns.link_delete(tap):
            removed.append(f"link {tap}")
    for path in (control.sock_path(prefix), state_path(prefix), log_path(prefix)):
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


def status() -> list[dict]:
    """Every lab this machine knows of, with whether its parts are alive."""
    out = []
    if not os.path.isdir(control.RUN_DIR):
        return out
    for fn in sorted(os.listdir(control.RUN_DIR)):
        if not (fn.startswith("lab-") and fn.endswith(".json")):
            continue
        st = read_state(fn[4:-5]) or {}
        if not st:
            continue
        prefix = st["prefix"]
        item = {"prefix": prefix, "pid": st.get("pid"),
                "stack_alive": _pid_alive(st.get("pid")),
                "drivers": [st.get("driver_a"), st.get("driver_b")],
                "namespaces": {ns: netns.ns_exists(ns) for ns in (st["ns_a"], st["ns_b"])},
                "interfaces": [st.get("if_a"), st.get("if_b")]}
        try:
            info = control.request(prefix, "ping", timeout=1.0)
            item["uptime"] = info["uptime"]
            item["answering"] = True
        except control.ControlError:
            item["answering"] = False
        out.append(item)
    return out


def read_state(prefix: str) -> dict | None:
    try:
        with open(state_path(prefix)) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_state(state: dict) -> None:
    tmp = state_path(state["prefix"]) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, state_path(state["prefix"]))


def _pid_alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def _kill(pid: int) -> None:
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if _wait_exit(pid, wait):
            return


def _tail(path: str, n: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""
