"""The lab: the stack between two host namespaces.

    P-a 198.18.0.2/24 --(TAP P-a0)-- stack 198.18.0.1 | 198.19.0.1 --(TAP P-b0)-- P-b 198.19.0.2/24
    2001:2:0:a::2/64                 2001:2:0:a::1 | 2001:2:0:b::1                 2001:2:0:b::2/64

Dual-stack by default (family="both"; "4" or "6" for one): IPv6 from the
benchmarking range of RFC 5180. The hosts' IPv6 addresses skip DAD
(IFA_F_NODAD: nothing else is on their link), so they work at once; the
stack's do DAD, and `up` returns once they are usable. The hosts keep
Linux's defaults otherwise (forwarding 0; they send Router Solicitations
at link-up, which the stack counts and does not answer: their routes are
static).

`up` creates the namespaces and in each a persistent TAP, its host side
configured (address, default route through the stack, link speed), then
starts `iopkt run -i P` in the background with one interface facing each:
the drivers open the TAPs inside the namespaces (option netns=), so a
driver's umount leaves the TAP and its host as they were, and one `iopkt
mount` brings the link back. `down` stops the stack and removes everything
`up` made, also after a crash, and keeps the stack's log. Everything a lab
makes is named after its prefix, so labs with different prefixes run side
by side.

The lab touches only what it made. `up` writes down each namespace, link,
the stack and its socket before it makes them (ownership.py), and `down`
removes each only while it still is what the record says; anything else
that carries the lab's names is named and left alone. `up` refuses to
start over anything of its names that is not the recorded leftover of a
lab that crashed.

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
after checking the process there is still this lab's stack (start time,
command line and the record's token in its environment), and the run
directory and its files are root's alone (rundir.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

from iopkt.ctl import control, rundir
from iopkt.dev import autoconf
from iopkt.lab import netns, ownership
from iopkt.stack import drvload

DEFAULT_PREFIX = "iopkt"
A_NET = ("198.18.0.1", "198.18.0.2", 24)      # stack side, host side, plen
B_NET = ("198.19.0.1", "198.19.0.2", 24)
A6_NET = ("2001:2:0:a::1", "2001:2:0:a::2", 64)
B6_NET = ("2001:2:0:b::1", "2001:2:0:b::2", 64)
FAMILIES = ("4", "6", "both")
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
    family: str = "both"    # 4, 6 or both: the addresses hosts and stack get

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


_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,12}")
# Driver options the lab sets itself: which TAP or link, in which namespace,
# with which address. An option of the user's that names them would leave
# the lab's hosts wired to nothing.
LAB_OPTIONS = ("name", "ifname", "netns", "inet")


def check_prefix(prefix: str) -> str:
    if not _PREFIX.fullmatch(prefix):
        raise LabError(f"--prefix {prefix!r}: use 1-12 ASCII letters, digits, '-' or '_' "
                       "(it names namespaces and TAPs, at most 15 characters)")
    return prefix


def check_options(opts: str, flag: str) -> str:
    """`opts` (a side's driver options) unless one sets what the lab sets
    itself (LAB_OPTIONS): then LabError (usage) naming the option."""
    for item in autoconf.split_options(opts or ""):
        key = item.partition("=")[0].strip()
        if key in LAB_OPTIONS:
            raise _usage(f"{flag} {item}: the lab sets '{key}' itself (its hosts' "
                         f"{'namespace' if key == 'netns' else 'link'}); "
                         "choose the link with --link, the names with --prefix")
    return opts


def check_link(link: str) -> str:
    if link not in LINKS:
        raise _usage(f"--link {link}: one of {', '.join(LINKS)}")
    return link


def default_driver(link: str) -> str:
    """The lab's driver when none is named: the native one for the link."""
    return LINK_DRIVERS[check_link(link)][0]


def driver_link(drv) -> str | None:
    """The link kind a driver (autoconf.Driver) attaches to, by what it
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
    check_link(link)
    native, legacy = LINK_DRIVERS[link]
    try:
        drv = drvload.resolve(name)
    except autoconf.DriverError as e:
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
    o = drv.options.get("offload")
    if drv.kind != "native" or not isinstance(o, autoconf.Option):
        return False
    on = o.default if offload is None else offload
    for item in autoconf.split_options(opts):
        key, eq, value = item.partition("=")
        if key.strip() == "offload":
            try:
                on = o.parse(drv.name, "offload", value if eq else None)
            except autoconf.DriverError as e:
                raise _usage(str(e)) from None
    return bool(on)


def _run_dir() -> None:
    try:
        rundir.ensure_run_dir(control.RUN_DIR)
    except rundir.RunDirError as e:
        raise LabError(str(e)) from None


def _names(prefix: str, link: str) -> tuple[list[str], list[str]]:
    """The namespaces and links a lab `prefix` over `link` makes."""
    spaces = [f"{prefix}-a", f"{prefix}-b"] + ([f"{prefix}-s"] if link == "veth" else [])
    links = [f"{prefix}-a0", f"{prefix}-b0"] + ([f"{prefix}-sa", f"{prefix}-sb"]
                                                if link == "veth" else [])
    return spaces, links


def _load(prefix: str) -> ownership.Record | None:
    try:
        return ownership.Record.load(state_path(prefix))
    except ownership.RecordError as e:
        raise LabError(f"lab '{prefix}': {e}; nothing touched") from None


def _claim(spec: LabSpec) -> ownership.Record:
    """Make room for the lab: the recorded leftovers of a lab of this
    prefix that crashed are cleared as `down` would; anything else that
    carries one of its names is in the way (LabError naming it). Returns
    the new, empty record."""
    old = _load(spec.prefix)
    if old is not None:
        stack = old.owned.get("stack")
        if stack and ownership.stack_process(stack, spec.prefix)[0] is not None:
            raise LabError(f"lab '{spec.prefix}' is already up; "
                           f"'iopkt lab down --prefix {spec.prefix}' first")
        old.release(control.sock_path(spec.prefix))         # a crashed lab's leftovers
    spaces, links = _names(spec.prefix, spec.link)
    way = ownership.in_the_way(spec.prefix, spaces, links, control.sock_path(spec.prefix))
    if os.path.exists(state_path(spec.prefix)):
        way.append(f"the record {state_path(spec.prefix)} of what is left")
    if way:
        raise LabError(f"lab '{spec.prefix}' cannot be made: in the way, and not made by a "
                       f"lab '{spec.prefix}': {', '.join(way)}; remove them or choose "
                       "another --prefix")
    return ownership.Record.new(state_path(spec.prefix), spec.prefix)


def up(spec: LabSpec, wait: float = 15.0) -> dict:
    """Build the lab. Returns its state (also written to state_path, with
    the record of what it owns: ownership.py)."""
    check_prefix(spec.prefix)
    check_link(spec.link)
    if spec.speed not in (0, 10, 100, 1000, 10000):
        raise LabError(f"--speed {spec.speed}: one of 10, 100, 1000, 10000 (Mbit/s)")
    check_options(spec.opts_a, "--options-a")
    check_options(spec.opts_b, "--options-b")
    drvs = [check_driver(spec.driver_a, spec.link), check_driver(spec.driver_b, spec.link)]
    _run_dir()
    rec = _claim(spec)
    try:
        return _build(spec, drvs, rec, wait)
    except BaseException:
        rec.release(control.sock_path(spec.prefix))
        raise


def _build(spec: LabSpec, drvs: list, rec: ownership.Record, wait: float) -> dict:
    """Make the lab's parts, each written down in `rec` before it is
    made; returns the lab's state. Whoever calls it clears `rec` if it
    fails (a crash leaves `rec` for `lab down`)."""
    veth = spec.link == "veth"
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
    state = rec.data
    state.update({
        "link": spec.link, "driver_a": names[0], "speed": spec.speed, "driver_b": names[1],
        "ns_a": spec.ns_a, "ns_b": spec.ns_b,
        # The hosts' interfaces (TAPs, or the hosts' veth ends): host_if_*,
        # and under their older names tap_*.
        "tap_a": spec.tap_a, "tap_b": spec.tap_b, "host_if_a": spec.tap_a, "host_if_b": spec.tap_b,
        "ns_s": spec.ns_s if veth else None,
        "port_a": spec.port_a if veth else None, "port_b": spec.port_b if veth else None,
        "pid": None, "log": log_path(spec.prefix), "spec": asdict(spec),
        # What brings a side back after `iopkt umount --instance P IF`.
        "mount_a": f"iopkt mount --instance {spec.prefix} {names[0]} {dopts[0]}",
        "mount_b": f"iopkt mount --instance {spec.prefix} {names[1]} {dopts[1]}"})
    if veth:
        state["host_offload"] = host_offload
        state["stack_tbf"] = stack_tbf
    rec.save()
    # The hosts are wired before the stack starts: the TAPs persist
    # (veth pairs do anyway), and the drivers open them where they are.
    if veth:
        rec.make_netns(spec.ns_s)
        netns.ns_sysctl(spec.ns_s, "net/ipv4/ip_forward", "0")
    for i, (_, tap, ns, _, (gw, addr, plen), port) in enumerate(sides):
        rec.make_netns(ns)
        if spec.family != "4":
            netns.ns_ipv6(ns)
        if veth:
            rec.make_veth(tap, ns, port, spec.ns_s)
            if not host_offload[i]:
                # As a wire: frames of at most the MTU, checksums complete.
                netns.set_offloads(ns, tap, tx=False, tso=False)
            netns.set_offloads(spec.ns_s, port, gro=False)
            netns.link_up(spec.ns_s, port)
            if stack_tbf[i]:
                netns.link_rate(spec.ns_s, port, spec.speed)
        else:
            rec.make_tap(ns, tap)
        six = (A6_NET, B6_NET)[i]
        netns.host_setup(ns, tap, addr if spec.family != "6" else None, plen,
                         gw if spec.family != "6" else None,
                         inet6=(six[1], six[2], six[0]) if spec.family != "4" else None)
        if spec.speed:
            netns.link_rate(ns, tap, spec.speed)
    cmd = [sys.executable, "-m", "iopkt", "run", "-i", spec.prefix,
           "-d", names[0], dopts[0], "-d", names[1], dopts[1], *spec.stack_args]
    fd = rundir.open_private(state["log"], truncate=True)      # a fresh log per lab
    try:
        proc = rec.start_stack(cmd, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                               start_new_session=True,
                               cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    finally:
        os.close(fd)
    state["pid"] = proc.pid                 # for the user; the proof is in "owned"
    rec.save()
    try:
        info = control.wait_ready(spec.prefix, wait, proc)
    except control.ControlError as e:
        if proc.poll() is not None:
            # The stack refused to start and said why in one line
            # ("iopkt run: ..."): that line is the error; exit 2 stays 2.
            last = re.sub(r"^iopkt( run)?: ", "", _tail(state["log"], 1).strip())
            err = LabError(f"the lab's stack did not start: {last or e} "
                           f"(log: {state['log']})")
            err.usage = proc.returncode == 2
            raise err from None
        raise LabError(f"{e}; see {state['log']}:\n{_tail(state['log'])}") from None
    rec.note_socket(control.sock_path(spec.prefix))
    ifs = info["interfaces"]
    if len(ifs) != 2:
        raise LabError(f"the stack has interfaces {ifs}, expected two")
    state["if_a"], state["if_b"] = ifs
    for ifname, (gw, _, plen), six in zip(ifs, (A_NET, B_NET), (A6_NET, B6_NET), strict=True):
        if spec.family != "6":
            control.request(spec.prefix, "ifconfig", peer=proc.pid, ifname=ifname,
                            inet=f"{gw}/{plen}")
        if spec.family != "4":
            control.request(spec.prefix, "ifconfig", peer=proc.pid, ifname=ifname,
                            inet6=f"{six[0]}/{six[2]}")
    if spec.family != "4":
        _wait_dad(spec.prefix, proc.pid, ifs)
    state["family"] = spec.family
    rec.save()
    return state


def _wait_dad(prefix: str, pid: int, ifs: list, timeout: float = 10.0) -> None:
    """Until the stack's IPv6 addresses have passed DAD (about a second),
    so the hosts can ping at once; a duplicate is an error."""
    deadline = time.monotonic() + timeout
    while True:
        addrs = [a for d in control.request(prefix, "ifconfig", peer=pid)
                 if d["name"] in ifs for a in d.get("inet6", [])]
        dup = [a for a in addrs if "duplicated" in a]
        if dup:
            raise LabError(f"the stack found its IPv6 address in use: {', '.join(dup)}")
        if not any("tentative" in a for a in addrs):
            return
        if time.monotonic() > deadline:
            raise LabError(f"the stack's IPv6 addresses are still tentative after "
                           f"{timeout:.0f} s: {', '.join(addrs)}")
        time.sleep(0.1)


def down(prefix: str, quiet: bool = False) -> dict:
    """Take the lab away as its record says (ownership.py): stop its
    stack, end what runs in its namespaces, remove them, its links, its
    socket and the record; keep the log. Safe on a half-built or crashed
    lab. Touches nothing the record does not prove the lab's. Returns
    {"removed": [what], "left": [what carries the lab's names but is
    not its, with why: the CLI exits 1], "said": [sentences]}."""
    check_prefix(prefix)
    if os.path.exists(control.RUN_DIR):
        try:
            rundir.check_run_dir(control.RUN_DIR)
        except rundir.RunDirError as e:
            raise LabError(str(e)) from None
    rec = _load(prefix)
    if rec is None:
        spaces, links = _names(prefix, "veth")
        way = ownership.in_the_way(prefix, spaces, links, control.sock_path(prefix))
        res = {"removed": [], "left": way, "said": []}
        if way:
            res["said"].append(f"lab '{prefix}' has no record ({state_path(prefix)}), so "
                               "nothing of its names is provably its")
    else:
        out = rec.release(control.sock_path(prefix))
        res = {"removed": out.removed, "left": out.left, "said": out.said}
        if os.path.exists(state_path(prefix)):
            res["said"].append(f"record kept for what is left: {state_path(prefix)}")
    if os.path.exists(log_path(prefix)):
        res["said"].append(f"stack log kept: {log_path(prefix)}")
    return res


def status() -> list[dict]:
    """Every lab this machine has a record of, with whether its parts are
    alive; a record that cannot be read is reported for its lab alone."""
    out = []
    if not os.path.isdir(control.RUN_DIR):
        return out
    for fn in sorted(os.listdir(control.RUN_DIR)):
        if not (fn.startswith("lab-") and fn.endswith(".json")):
            continue
        prefix = fn[4:-5]
        try:
            out.append(_status_one(prefix))
        except (LabError, KeyError, TypeError, ValueError) as e:
            what = f"missing {e}" if isinstance(e, KeyError) else str(e)
            out.append({"prefix": prefix, "error": f"record {state_path(prefix)} "
                        f"is broken: {what}" if not isinstance(e, LabError) else str(e)})
    return out


def _status_one(prefix: str) -> dict:
    rec = _load(prefix)
    if rec is None:                         # gone meanwhile
        raise LabError(f"lab '{prefix}': its record went away")
    st = rec.data
    stack = rec.owned.get("stack") or {}
    proc = ownership.stack_process(stack, prefix)[0] if stack else None
    spaces = [e["name"] for e in rec.owned["netns"]]
    item = {"prefix": prefix, "pid": stack.get("pid"), "link": st.get("link", "tap"),
            "stack_alive": proc is not None,
            "drivers": [st.get("driver_a"), st.get("driver_b")],
            "namespaces": {ns: netns.ns_exists(ns) for ns in spaces},
            "interfaces": [st.get("if_a"), st.get("if_b")],
            "family": st.get("family", "4")}
    try:
        if proc is None:
            raise control.ControlError("no stack")
        info = control.request(prefix, "ping", timeout=1.0, peer=proc.pid)
        item["uptime"] = info["uptime"]
        item["answering"] = True
    except control.ControlError:
        item["answering"] = False
    return item


def read_state(prefix: str) -> dict | None:
    """The lab's state (its record), None if there is none; LabError if it
    is not root's alone or is broken (then it cannot be trusted)."""
    rec = _load(prefix)
    return rec.data if rec is not None else None


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
