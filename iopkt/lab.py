"""The lab: the stack between two host namespaces.

    P-a: 198.18.0.2/24 --(TAP P-a0)-- stack 198.18.0.1 | 198.19.0.1 --(TAP P-b0)-- P-b: 198.19.0.2/24

`up` creates the namespaces and in each a persistent TAP, its host side
configured (address, default route through the stack, link speed), then
starts `iopkt run -i P` in the background with one interface facing each:
the drivers open the TAPs inside the namespaces (option netns=), so a
driver's umount leaves the TAP and its host as they were, and one `iopkt
mount` brings the link back. `down` stops the stack and removes everything
`up` made, also after a crash (it works from the prefix alone), and keeps
the stack's log. Everything a lab makes is named after its prefix, so labs
with different prefixes run side by side.

Root acts on the lab's state file, so `down` signals the PID it names only
after checking the process there is still this lab's stack (start time and
command line), and the run directory and its files are root's alone
(rundir.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

import psutil

from . import control, netns, rundir

DEFAULT_PREFIX = "iopkt"
A_NET = ("198.18.0.1", "198.18.0.2", 24)      # stack side, host side, plen
B_NET = ("198.19.0.1", "198.19.0.2", 24)


class LabError(Exception):
    """The lab cannot be built or removed; str() is the line for the user.
    `usage` is true when the request itself was wrong (the CLI exits 2)."""

    usage = False


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


def _driver_opts(name: str, tap: str, ns: str, opts: str, speed: int,
                 offload: bool | None = None) -> str:
    """The driver options for one side: the TAP's name and namespace and
    the emulated speed go to the driver (native, or legacy through the
    shim); offload only to a native driver (io-net drivers never had any)."""
    o = f"name={tap},netns={ns}" + (f",speed={speed}" if speed else "")
    if offload is not None and name.startswith("devnp-"):
        o += f",offload={int(offload)}"
    return o + (f",{opts}" if opts else "")


def _run_dir() -> None:
    try:
        rundir.ensure_run_dir(control.RUN_DIR)
    except rundir.RunDirError as e:
        raise LabError(str(e)) from None


def up(spec: LabSpec, wait: float = 15.0) -> dict:
    """Build the lab. Returns its state (also written to state_path)."""
    check_prefix(spec.prefix)
    if spec.speed not in (0, 10, 100, 1000, 10000):
        raise LabError(f"--speed {spec.speed}: one of 10, 100, 1000, 10000 (Mbit/s)")
    _run_dir()
    if os.path.exists(state_path(spec.prefix)) or netns.ns_exists(spec.ns_a):
        st = read_state(spec.prefix)
        if st and _stack_process(st)[0] is not None:
            raise LabError(f"lab '{spec.prefix}' is already up; "
                           f"'iopkt lab down --prefix {spec.prefix}' first")
        down(spec.prefix, quiet=True)           # leftovers of a crash
    sides = ((spec.driver_a, spec.tap_a, spec.ns_a, spec.opts_a, A_NET),
             (spec.driver_b, spec.tap_b, spec.ns_b, spec.opts_b, B_NET))
    dopts = [_driver_opts(d, tap, ns, o, spec.speed, spec.offload) for d, tap, ns, o, _ in sides]
    state = {"prefix": spec.prefix, "driver_a": spec.driver_a, "speed": spec.speed,
             "driver_b": spec.driver_b, "ns_a": spec.ns_a, "ns_b": spec.ns_b,
             "tap_a": spec.tap_a, "tap_b": spec.tap_b, "pid": None,
             "log": log_path(spec.prefix), "created": time.time(),
             "spec": asdict(spec),
             # What brings a side back after `iopkt umount --instance P IF`.
             "mount_a": f"iopkt mount --instance {spec.prefix} {spec.driver_a} {dopts[0]}",
             "mount_b": f"iopkt mount --instance {spec.prefix} {spec.driver_b} {dopts[1]}"}
    try:
        # The hosts are wired before the stack starts: the TAPs persist,
        # and the drivers open them where they are.
        for _, tap, ns, _, (gw, addr, plen) in sides:
            netns.ns_create(ns)
            netns.tap_create(ns, tap)
            netns.host_setup(ns, tap, addr, plen, gw)
            if spec.speed:
                netns.link_rate(ns, tap, spec.speed)
        cmd = [sys.executable, "-m", "iopkt", "run", "-i", spec.prefix,
               "-d", spec.driver_a, dopts[0], "-d", spec.driver_b, dopts[1], *spec.stack_args]
        fd = rundir.open_private(state["log"], truncate=True)      # a fresh log per lab
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                                    start_new_session=True,
                                    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        finally:
            os.close(fd)
        # Who the stack is, so that `down` never signals a stranger that
        # got its PID later.
        state["pid"] = proc.pid
        state["cmdline"] = cmd
        try:
            state["create_time"] = psutil.Process(proc.pid).create_time()
        except psutil.NoSuchProcess:
            pass                                # died at once: wait_ready says so
        _write_state(state)
        try:
            info = control.wait_ready(spec.prefix, wait, proc)
        except control.ControlError as e:
            if proc.poll() is not None:
                # The stack refused to start and said why in one line
                # ("iopkt: ..."): that line is the error; exit 2 stays 2.
                last = _tail(state["log"], 1).strip().removeprefix("iopkt: ")
                err = LabError(f"the lab's stack did not start: {last or e} "
                               f"(log: {state['log']})")
                err.usage = proc.returncode == 2
                raise err from None
            raise LabError(f"{e}; see {state['log']}:\n{_tail(state['log'])}") from None
        ifs = info["interfaces"]
        if len(ifs) != 2:
            raise LabError(f"the stack has interfaces {ifs}, expected two")
        state["if_a"], state["if_b"] = ifs
        control.request(spec.prefix, "ifconfig", ifname=ifs[0], inet=f"{A_NET[0]}/{A_NET[2]}")
        control.request(spec.prefix, "ifconfig", ifname=ifs[1], inet=f"{B_NET[0]}/{B_NET[2]}")
        _write_state(state)
        return state
    except BaseException:
        down(spec.prefix, quiet=True)
        raise


def down(prefix: str, quiet: bool = False) -> dict:
    """Stop the lab's stack, end what still runs in its namespaces and
    remove the namespaces, TAPs, socket and state; keep the log. Safe to
    call on a half-built or crashed lab. Returns {"removed": [what],
    "said": [sentences for the user]}."""
    check_prefix(prefix)
    removed: list[str] = []
    said: list[str] = []
    if os.path.exists(control.RUN_DIR):
        try:
            rundir.check_run_dir(control.RUN_DIR)
        except rundir.RunDirError as e:
            raise LabError(str(e)) from None
    try:
        st = read_state(prefix) or {}
    except LabError as e:
        said.append(f"{e}; no process signalled")
        st = {}
    proc, why = _stack_process(st)
    if why:
        said.append(why)
    answered = False
    if os.path.exists(control.sock_path(prefix)):
        try:
            control.request(prefix, "stop", timeout=2.0)
            answered = True
        except (control.ControlError, OSError, ValueError):
            pass                # not answering (stopped, backlog full, gone)
    if proc is not None:
        if not (answered and _wait_gone(proc, 5.0)):
            _terminate(proc)
        removed.append(f"stack pid {proc.pid}")
    names = (f"{prefix}-a", f"{prefix}-b")
    said += _end_ns_processes(names)
    for ns in names:
        if netns.link_delete(f"{ns}0", ns):
            removed.append(f"link {ns}0")
        if netns.ns_remove(ns):
            removed.append(f"netns {ns}")
    for tap in (f"{n}0" for n in names):    # older labs made them in the root namespace
        if netns.link_delete(tap):
            removed.append(f"link {tap}")
    for path in (control.sock_path(prefix), state_path(prefix)):
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    if os.path.exists(log_path(prefix)):
        said.append(f"stack log kept: {log_path(prefix)}")
    return {"removed": removed, "said": said}


def status() -> list[dict]:
    """Every lab this machine knows of, with whether its parts are alive."""
    out = []
    if not os.path.isdir(control.RUN_DIR):
        return out
    for fn in sorted(os.listdir(control.RUN_DIR)):
        if not (fn.startswith("lab-") and fn.endswith(".json")):
            continue
        try:
            st = read_state(fn[4:-5]) or {}
        except LabError as e:
            out.append({"prefix": fn[4:-5], "error": str(e)})
            continue
        if not st:
            continue
        prefix = st["prefix"]
        item = {"prefix": prefix, "pid": st.get("pid"),
                "stack_alive": _stack_process(st)[0] is not None,
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
    """The lab's state, None if there is none (or it is unreadable);
    LabError if the file is not root's alone (then it cannot be trusted)."""
    try:
        text = rundir.read_private(state_path(prefix))
    except rundir.RunDirError as e:
        raise LabError(str(e)) from None
    try:
        st = json.loads(text) if text is not None else None
    except json.JSONDecodeError:
        return None
    return st if isinstance(st, dict) else None


def _write_state(state: dict) -> None:
    rundir.write_private(state_path(state["prefix"]), json.dumps(state, indent=1))


# -- the stack's process ------------------------------------------------------
def _is_stack_cmdline(cmd: list[str], prefix: str) -> bool:
    """`... -m iopkt run -i PREFIX ...`"""
    want = ["-m", "iopkt", "run", "-i", prefix]
    return any(cmd[i:i + len(want)] == want for i in range(len(cmd)))


def _stack_process(st: dict) -> tuple[psutil.Process | None, str | None]:
    """The live process of the lab's stack, checked: same start time as
    recorded at `up` and a stack's command line for this prefix. Else None
    and, if a process that is not the stack holds the PID, why it is left
    alone."""
    pid = st.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return None, None
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            _reap(pid)
            return None, None
        ctime, cmd, name = p.create_time(), p.cmdline(), p.name()
    except psutil.NoSuchProcess:        # a zombie too
        _reap(pid)
        return None, None
    except psutil.AccessDenied:
        return None, f"pid {pid} cannot be inspected; not signalled"
    rec = st.get("create_time")
    if not isinstance(rec, (int, float)):
        return None, f"pid {pid}: the lab's state does not say when its stack started " \
                     f"(it is now {name!r}); not signalled"
    if abs(ctime - rec) > 0.05 or not _is_stack_cmdline(cmd, st.get("prefix", "")):
        return None, f"pid {pid} is not this lab's stack (it is now {name!r}); not signalled"
    return p, None


def _reap(pid: int) -> None:
    """Collect our own dead child (lab.up in this process started it)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _wait_gone(p: psutil.Process, timeout: float) -> bool:
    """Wait for the stack to exit; collect it if lab.up ran here."""
    gone = not _wait_procs([p], timeout)
    if gone:
        _reap(p.pid)
    return gone


def _wait_procs(procs: list, timeout: float) -> list:
    """Wait until every process in `procs` has exited (a zombie counts: its
    parent, maybe not us, collects it). Returns those still running."""
    deadline = time.monotonic() + timeout
    while True:
        procs = [p for p in procs if not _exited(p)]
        if not procs or time.monotonic() >= deadline:
            return procs
        time.sleep(0.05)


def _exited(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _terminate(p: psutil.Process) -> None:
    """SIGTERM (with SIGCONT, in case it is stopped), then SIGKILL. psutil
    checks before each signal that the PID still is this process."""
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
        try:
            p.send_signal(sig)
            if sig == signal.SIGTERM:
                p.send_signal(signal.SIGCONT)
        except psutil.NoSuchProcess:
            return
        if _wait_gone(p, wait):
            return


def _end_ns_processes(names) -> list[str]:
    """End what still runs inside the namespaces `names` (a user's iperf3
    -s -D, say), so none is left in a namespace without a name: SIGTERM,
    a moment, SIGKILL. Nothing outside them is touched, nor this process
    and its ancestors. Returns what it said."""
    spare = {os.getpid()} | {a.pid for a in psutil.Process().parents()}
    found: dict[psutil.Process, str] = {}
    for ns in names:
        for pid in netns.ns_pids(ns):
            if pid in spare:
                continue
            try:
                found[psutil.Process(pid)] = ns
            except psutil.NoSuchProcess:
                pass
    if not found:
        return []
    said = {p: f"ended {_name(p)} (pid {p.pid}) in {ns}" for p, ns in found.items()}
    for p in found:
        try:
            p.terminate()
            p.send_signal(signal.SIGCONT)
        except psutil.NoSuchProcess:
            pass
    alive = _wait_procs(list(found), 2.0)
    for p in alive:
        try:
            p.kill()
            said[p] += " (killed: it ignored SIGTERM)"
        except psutil.NoSuchProcess:
            pass
    _wait_procs(alive, 2.0)
    return list(said.values())


def _name(p: psutil.Process) -> str:
    try:
        return p.name()
    except psutil.Error:
        return "?"


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


def _tail(path: str, n: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""
