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

With link="veth" the hosts are joined to the stack by veth pairs, as two
machines by cables to a router's NICs:

    P-a: 198.18.0.2/24 P-a0 ==veth== P-sa  [netns P-s]  P-sb ==veth== P-b0 P-b: 198.19.0.2/24
                                       |                  |
                              devnp-afpacket ifname=P-sa,netns=P-s ... (the stack, root netns)

P-s holds the stack's ends, up, without addresses, IPv6 and forwarding
off, so Linux there neither answers nor routes; the AF_PACKET drivers
open their sockets in P-s (netns=) while the stack stays where it is. A
host's end keeps the kernel's offloads (TSO, partial checksums) only when
the driver facing it takes super-frames (a native driver with offload);
otherwise they are off, so that what crosses the veth is what crosses a
wire: frames of at most the MTU with complete checksums.

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
LINKS = ("tap", "veth")
# What each link kind is driven with: (native, legacy through the shim).
LINK_DRIVERS = {"tap": ("devnp-tap", "devn-tap"), "veth": ("devnp-afpacket", "devn-afpacket")}


class LabError(Exception):
    """The lab cannot be built or removed; str() is the line for the user.
    `usage` is true when the request itself was wrong (the CLI exits 2)."""

    usage = False


def _usage(msg: str) -> LabError:
    e = LabError(msg)
    e.usage = True
    return e


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
    link: str = "tap"       # tap: TAPs; veth: veth pairs, the stack's ends in P-s

    @property
    def ns_a(self) -> str:
        return f"{self.prefix}-a"

    @property
    def ns_b(self) -> str:
        return f"{self.prefix}-b"

    @property
    def ns_s(self) -> str:
        """link=veth: the namespace of the stack's veth ends."""
        return f"{self.prefix}-s"

    @property
    def tap_a(self) -> str:
        """The host's interface in P-a: the TAP, or the host's veth end."""
        return f"{self.prefix}-a0"

    @property
    def tap_b(self) -> str:
        return f"{self.prefix}-b0"

    @property
    def port_a(self) -> str:
        """link=veth: the stack's veth end facing host A, in P-s."""
        return f"{self.prefix}-sa"

    @property
    def port_b(self) -> str:
        return f"{self.prefix}-sb"


def check_prefix(prefix: str) -> str:
    if not prefix or len(prefix) > 12 or not all(c.isalnum() or c in "-_" for c in prefix):
        raise LabError(f"--prefix {prefix!r}: use 1-12 letters, digits, '-' or '_' "
                       "(it names namespaces and TAPs, at most 15 characters)")
    return prefix


def check_link(link: str) -> str:
    if link not in LINKS:
        raise _usage(f"--link {link}: one of {', '.join(LINKS)}")
    return link


def default_driver(link: str) -> str:
    """The lab's driver when none is named: the native one for the link."""
    return LINK_DRIVERS[check_link(link)][0]


def driver_link(drv) -> str | None:
    """The link kind a driver (drvload.Driver) attaches to, by what it
    takes: `ifname=` an existing link (through AF_PACKET): veth; `name=` a
    TAP it opens: tap; None for neither (devnp-shim)."""
    if "ifname" in drv.options:
        return "veth"
    if "name" in drv.options:
        return "tap"
    return None


def check_driver(name: str, link: str):
    """The driver `name` (full or short, as `-d` takes it) if it can drive
    a side of a lab over `link`; else LabError (usage) in one line naming
    the drivers that can."""
    from . import drvload
    check_link(link)
    native, legacy = LINK_DRIVERS[link]
    try:
        drv = drvload.resolve(name)
    except drvload.DriverError as e:
        if link == "veth":
            have = ", ".join(sorted(drvload.available()))
            raise _usage(f"--link veth: no driver '{name}' here (drivers: {have}); the lab "
                         f"over veth takes {native} (native) or {legacy} (legacy, through "
                         "the shim)") from None
        raise _usage(str(e)) from None
    kind = driver_link(drv)
    if kind == link:
        return drv
    if kind is None:
        raise _usage(f"driver {drv.name} cannot face a host in the lab; --link {link} takes "
                     f"{native} (native) or {legacy} (legacy, through the shim)")
    if link == "veth":
        mate = native if drv.kind == "native" else legacy
        raise _usage(f"driver {drv.name} opens a TAP and cannot attach to a veth: with --link "
                     f"veth use {mate}" + (f" (or {legacy}, legacy through the shim)"
                                           if mate == native else f" (or {native}, native)")
                     + ", the AF_PACKET drivers")
    raise _usage(f"driver {drv.name} attaches to an existing link through AF_PACKET, not to a "
                 f"TAP: use it with --link veth (--link tap takes {native} or {legacy})")


def state_path(prefix: str) -> str:
    return os.path.join(control.RUN_DIR, f"lab-{prefix}.json")


def log_path(prefix: str) -> str:
    return os.path.join(control.RUN_DIR, f"lab-{prefix}.log")


def _driver_opts(name: str, tap: str, ns: str, opts: str, speed: int,
                 offload: bool | None = None) -> str:
    """The driver options for one side of a TAP lab: the TAP's name and
    namespace and the emulated speed go to the driver (native, or legacy
    through the shim); offload only to a native driver (io-net drivers
    never had any)."""
    o = f"name={tap},netns={ns}" + (f",speed={speed}" if speed else "")
    if offload is not None and name.startswith("devnp-"):
        o += f",offload={int(offload)}"
    return o + (f",{opts}" if opts else "")


def _veth_driver_opts(drv, port: str, ns_s: str, opts: str, speed: int,
                      offload: bool | None = None) -> str:
    """The driver options for one side of a veth lab: the stack's veth end
    and its namespace; the speed only to a driver that paces (has a speed
    option; else the lab puts a tbf on the stack's end); offload only to a
    native driver that has it."""
    o = f"ifname={port},netns={ns_s}"
    if speed and "speed" in drv.options:
        o += f",speed={speed}"
    if offload is not None and drv.kind == "native" and "offload" in drv.options:
        o += f",offload={int(offload)}"
    return o + (f",{opts}" if opts else "")


def side_offload(drv, opts: str, offload: bool | None) -> bool:
    """Whether the driver facing a host takes super-frames and partial
    checksums: a native driver with offload on (its default, the lab's
    --offload, then its own options, as the stack reads them in that
    order); an io-net driver never."""
    from . import drvload
    o = drv.options.get("offload")
    if drv.kind != "native" or not isinstance(o, drvload.Option):
        return False
    on = o.default if offload is None else offload
    for item in drvload.split_options(opts):
        key, eq, value = item.partition("=")
        if key.strip() == "offload":
            try:
                on = o.parse(drv.name, "offload", value if eq else None)
            except drvload.DriverError as e:
                raise _usage(str(e)) from None
    return bool(on)


def _run_dir() -> None:
    try:
        rundir.ensure_run_dir(control.RUN_DIR)
    except rundir.RunDirError as e:
        raise LabError(str(e)) from None


def up(spec: LabSpec, wait: float = 15.0) -> dict:
    """Build the lab. Returns its state (also written to state_path)."""
    check_prefix(spec.prefix)
    check_link(spec.link)
    if spec.speed not in (0, 10, 100, 1000, 10000):
        raise LabError(f"--speed {spec.speed}: one of 10, 100, 1000, 10000 (Mbit/s)")
    drvs = [check_driver(spec.driver_a, spec.link), check_driver(spec.driver_b, spec.link)]
    veth = spec.link == "veth"
    _run_dir()
    if os.path.exists(state_path(spec.prefix)) or netns.ns_exists(spec.ns_a) \
            or netns.ns_exists(spec.ns_s):
        st = read_state(spec.prefix)
        if st and _stack_process(st)[0] is not None:
            raise LabError(f"lab '{spec.prefix}' is already up; "
                           f"'iopkt lab down --prefix {spec.prefix}' first")
        down(spec.prefix, quiet=True)           # leftovers of a crash
    sides = ((drvs[0], spec.tap_a, spec.ns_a, spec.opts_a, A_NET, spec.port_a),
             (drvs[1], spec.tap_b, spec.ns_b, spec.opts_b, B_NET, spec.port_b))
    if veth:
        dopts = [_veth_driver_opts(d, port, spec.ns_s, o, spec.speed, spec.offload)
                 for d, _, _, o, _, port in sides]
        host_offload = [side_offload(d, o, spec.offload) for d, _, _, o, _, _ in sides]
        # A driver that cannot pace leaves its direction to a tbf on its end.
        stack_tbf = [bool(spec.speed) and "speed" not in d.options for d, *_ in sides]
    else:
        dopts = [_driver_opts(d.name, tap, ns, o, spec.speed, spec.offload)
                 for d, tap, ns, o, _, _ in sides]
    names = [d.name for d in drvs]
    state = {"prefix": spec.prefix, "link": spec.link, "driver_a": names[0],
             "speed": spec.speed, "driver_b": names[1], "ns_a": spec.ns_a, "ns_b": spec.ns_b,
             # The hosts' interfaces (TAPs, or the hosts' veth ends): host_if_*,
             # and under their older names tap_*.
             "tap_a": spec.tap_a, "tap_b": spec.tap_b,
             "host_if_a": spec.tap_a, "host_if_b": spec.tap_b,
             "ns_s": spec.ns_s if veth else None,
             "port_a": spec.port_a if veth else None, "port_b": spec.port_b if veth else None,
             "pid": None, "log": log_path(spec.prefix), "created": time.time(),
             "spec": asdict(spec),
             # What brings a side back after `iopkt umount --instance P IF`.
             "mount_a": f"iopkt mount --instance {spec.prefix} {names[0]} {dopts[0]}",
             "mount_b": f"iopkt mount --instance {spec.prefix} {names[1]} {dopts[1]}"}
    if veth:
        state["host_offload"] = host_offload
        state["stack_tbf"] = stack_tbf
    try:
        # The hosts are wired before the stack starts: the TAPs persist
        # (veth pairs do anyway), and the drivers open them where they are.
        if veth:
            netns.ns_create(spec.ns_s)
            netns.ns_sysctl(spec.ns_s, "net/ipv4/ip_forward", "0")
        for i, (_, tap, ns, _, (gw, addr, plen), port) in enumerate(sides):
            netns.ns_create(ns)
            if veth:
                netns.veth_create(tap, ns, port, spec.ns_s)
                if not host_offload[i]:
                    # As a wire: frames of at most the MTU, checksums complete.
                    netns.set_offloads(ns, tap, tx=False, tso=False)
                netns.set_offloads(spec.ns_s, port, gro=False)
                netns.link_up(spec.ns_s, port)
                if stack_tbf[i]:
                    netns.link_rate(spec.ns_s, port, spec.speed)
            else:
                netns.tap_create(ns, tap)
            netns.host_setup(ns, tap, addr, plen, gw)
            if spec.speed:
                netns.link_rate(ns, tap, spec.speed)
        cmd = [sys.executable, "-m", "iopkt", "run", "-i", spec.prefix,
               "-d", names[0], dopts[0], "-d", names[1], dopts[1], *spec.stack_args]
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
    remove the namespaces (P-s too), TAPs or veth pairs, socket and state;
    keep the log. Safe to
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
    # Whatever the link, from the prefix alone: a TAP lab has no P-s.
    hosts = (f"{prefix}-a", f"{prefix}-b")
    ns_s = f"{prefix}-s"
    ports = (f"{prefix}-sa", f"{prefix}-sb")
    said += _end_ns_processes((*hosts, ns_s))
    for ns in hosts:
        if netns.link_delete(f"{ns}0", ns):     # a TAP, or a veth pair with its P-s end
            removed.append(f"link {ns}0")
        if netns.ns_remove(ns):
            removed.append(f"netns {ns}")
    for port in ports:                      # a veth end whose host's end went first
        if netns.link_delete(port, ns_s):
            removed.append(f"link {port}")
    if netns.ns_remove(ns_s):
        removed.append(f"netns {ns_s}")
    # Older labs made their TAPs in the root namespace; a half-built veth
    # lab may have left an end there.
    for link in (*(f"{n}0" for n in hosts), *ports):
        if netns.link_delete(link):
            removed.append(f"link {link}")
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
        spaces = [st["ns_a"], st["ns_b"]] + ([st["ns_s"]] if st.get("ns_s") else [])
        item = {"prefix": prefix, "pid": st.get("pid"), "link": st.get("link", "tap"),
                "stack_alive": _stack_process(st)[0] is not None,
                "drivers": [st.get("driver_a"), st.get("driver_b")],
                "namespaces": {ns: netns.ns_exists(ns) for ns in spaces},
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
