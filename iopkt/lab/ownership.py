"""The lab's ownership record: what a lab made, and the proof that each
thing still is what it made.

Root may delete any namespace and kill any process, so the lab acts only
on what it can prove it made. `lab up` keeps a record (the lab's state file
in the run directory, root's alone: rundir.py) and writes each entry down
*before* it makes the thing the entry names, so that a crash at any step
leaves a record that covers everything made so far:

- a namespace is made without a name (netns.ns_new), its identity written
  down (nsfs inode and device, and the cookie the kernel never reuses),
  and only then named;
- a link: its name and namespace written down, the link made, then its
  ifindex;
- the stack: a random token written down, the stack started with it in its
  environment (IOPKT_LAB_TOKEN), then its PID, start time and command line;
- the control socket: its inode, once the stack answers on it (checked by
  the peer's PID, never through a symlink).

`release()` (what `lab down` does) acts on an entry only while it still
matches: a name that leads to the recorded namespace, a link with the
recorded ifindex in it, the recorded process. Anything else of that name
is not the lab's: it is named and left alone. A namespace of the lab that
some other path names too (an alias, `ip netns attach`) is left whole, its
processes too, and stays in the record until that path is gone; no process
is ever ended in this process's own namespace or PID 1's.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import stat
import subprocess
import time

import psutil

from iopkt.ctl import control, rundir
from iopkt.lab import netns

VERSION = 2
TOKEN_ENV = "IOPKT_LAB_TOKEN"
_NS_FIELDS = ("name", "ino", "dev", "cookie", "at")
_LINK_FIELDS = ("name", "netns", "ifindex")


class RecordError(Exception):
    """The record cannot be trusted or read; str() is one line for the
    user. Nothing was touched."""


class Outcome:
    """What release() did: `removed` (things it took away), `left` (things
    of the lab's names it left alone, each with why: the caller exits 1),
    `said` (other sentences for the user)."""

    def __init__(self):
        self.removed: list[str] = []
        self.left: list[str] = []
        self.said: list[str] = []


class Record:
    """A lab's ownership record, saved to `path` (None: kept in memory, for
    a bench lab that lives inside one process) after every change."""

    def __init__(self, path: str | None, data: dict):
        self.path = path
        self.data = data

    @classmethod
    def new(cls, path: str | None, prefix: str, **info) -> Record:
        """An empty record (nothing owned yet), saved at once."""
        rec = cls(path, {"version": VERSION, "prefix": prefix, "created": time.time(), **info,
                         "owned": {"netns": [], "links": [], "stack": None, "socket": None}})
        rec.save()
        return rec

    @classmethod
    def load(cls, path: str) -> Record | None:
        """The record at `path`; None if there is none. RecordError if it
        is not root's alone, is not JSON, or lacks what it must say."""
        try:
            text = rundir.read_private(path)
        except rundir.RunDirError as e:
            raise RecordError(str(e)) from None
        if text is None:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            raise RecordError(f"{path} is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("prefix"), str):
            raise RecordError(f"{path} does not name its lab")
        if data.get("version") != VERSION:
            raise RecordError(f"{path} was written by an older iopkt and proves no ownership "
                              "of namespaces or links (take that lab down with the iopkt "
                              "that made it, or by hand)")
        _check_owned(path, data.get("owned"))
        return cls(path, data)

    @property
    def owned(self) -> dict:
        return self.data["owned"]

    @property
    def prefix(self) -> str:
        return self.data["prefix"]

    def save(self) -> None:
        if self.path is not None:
            rundir.write_private(self.path, json.dumps(self.data, indent=1))

    def forget(self) -> None:
        """Remove the record itself (everything it named is gone)."""
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def paths(self) -> set[str]:
        return {netns.ns_path(e["name"]) for e in self.owned["netns"]}

    # -- making things, each written down first -------------------------------
    def make_netns(self, name: str) -> None:
        """Make namespace `name`: FileExistsError if the name is taken."""
        fd = netns.ns_new()
        try:
            ident = netns.ns_ident(fd)
            self.owned["netns"].append({"name": name, "ino": ident.ino, "dev": ident.dev,
                                        "cookie": ident.cookie, "at": time.time()})
            self.save()
            netns.ns_attach(fd, name)
        finally:
            os.close(fd)
        netns.ns_setup(name)

    def _links_made(self, links: list[dict], make) -> None:
        self.owned["links"] += links
        self.save()
        make()
        for ln in links:
            ln["ifindex"] = netns.link_index(ln["name"], ln["netns"])
        self.save()

    def make_tap(self, ns: str, name: str) -> None:
        """A persistent TAP `name` in the lab's namespace `ns`."""
        self._links_made([{"name": name, "netns": ns, "ifindex": None}],
                         lambda: netns.tap_create(ns, name))

    def make_veth(self, name: str, ns: str, peer: str, peer_ns: str) -> None:
        """A veth pair, `name` in `ns` and `peer` in `peer_ns`."""
        self._links_made([{"name": name, "netns": ns, "ifindex": None},
                          {"name": peer, "netns": peer_ns, "ifindex": None}],
                         lambda: netns.veth_create(name, ns, peer, peer_ns))

    def start_stack(self, cmd: list[str], **popen) -> subprocess.Popen:
        """Start the lab's stack, `cmd`, with the record's token in its
        environment; PID, start time and command line written down."""
        token = secrets.token_hex(16)
        self.owned["stack"] = {"token": token, "pid": None, "create_time": None, "cmdline": cmd}
        self.save()
        proc = subprocess.Popen(cmd, env={**os.environ, TOKEN_ENV: token}, **popen)
        self.owned["stack"]["pid"] = proc.pid
        try:
            self.owned["stack"]["create_time"] = psutil.Process(proc.pid).create_time()
        except psutil.NoSuchProcess:
            pass                                # died at once: its caller says why
        self.save()
        return proc

    def note_socket(self, path: str) -> None:
        """The control socket the lab's stack answers on (the caller has
        checked its peer is the stack): its inode."""
        st = os.lstat(path)
        self.owned["socket"] = {"path": path, "ino": st.st_ino, "dev": st.st_dev}
        self.save()

    # -- taking them away -----------------------------------------------------
    def release(self, sock_path: str | None = None) -> Outcome:
        """Stop the recorded stack, end what runs in the recorded
        namespaces and remove them, their links and the control socket at
        `sock_path` (a lab with a stack), each only while it still is what
        the record says.
        What stays the lab's but cannot be taken now (a namespace with an
        alias) stays in the record; the record goes once it names nothing."""
        out = Outcome()
        o = self.owned
        stack = o.get("stack")
        if stack:
            proc, why = stack_process(stack, self.prefix)
            if why:
                out.said.append(why)
            if proc is not None:
                stop_stack(proc, self.prefix)
                out.removed.append(f"stack pid {proc.pid}")
        state = {e["name"]: _ns_state(e, self.paths()) for e in o["netns"]}
        ours = [e for e in o["netns"] if state[e["name"]][0] == "ours"]
        out.said += end_processes(ours)
        keep_links = []
        for ln in o["links"]:           # each in one of the lab's namespaces
            st = state.get(ln["netns"], ("other",))[0]
            if st == "aliased":
                keep_links.append(ln)
            elif st == "ours" and ln["ifindex"] is not None \
                    and netns.link_delete(ln["name"], ln["netns"], ln["ifindex"]):
                out.removed.append(f"link {ln['name']}")
            # else: gone with its namespace, or goes with it (a link of
            # that name but another ifindex in the lab's namespace too)
        keep_ns = []
        for e in o["netns"]:
            st, why = state[e["name"]]
            if st == "ours" and netns.ns_remove(e["name"]):
                out.removed.append(f"netns {e['name']}")
            elif st == "unnamed" and netns.ns_remove(e["name"]):   # its naming never finished
                out.removed.append(f"netns {e['name']} (a name never finished)")
            elif st in ("other", "aliased"):
                out.left.append(f"netns {e['name']} ({why})")
                if st == "aliased":
                    keep_ns.append(e)
        if sock_path is not None:
            self._release_socket(sock_path, stack, out)
        o.update(netns=keep_ns, links=keep_links, stack=None, socket=None)
        if keep_ns:
            self.save()
        else:
            self.forget()
        return out

    def _release_socket(self, path: str, stack: dict | None, out: Outcome) -> None:
        """Remove the control socket if it is the one the stack answered
        on (the recorded inode); if the stack never got as far as that, a
        socket nobody serves that appeared after the stack started."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        rec = self.owned.get("socket")
        if rec is not None:
            mine = (st.st_ino, st.st_dev) == (rec["ino"], rec["dev"]) and stat.S_ISSOCK(st.st_mode)
        else:
            started = (stack or {}).get("create_time")
            mine = (stat.S_ISSOCK(st.st_mode) and isinstance(started, (int, float))
                    and st.st_ctime >= started - 1 and not control.served(path))
        if mine:
            os.unlink(path)
            out.removed.append(path)
        elif rec is not None or stack:
            out.left.append(f"{path} (not the lab's stack's socket)")


def _check_owned(path: str, owned) -> None:
    """RecordError unless `owned` has the shape the record promises."""
    def bad(what):
        return RecordError(f"{path} is broken: {what}")
    if not isinstance(owned, dict):
        raise bad("no 'owned' section")
    for key, fields in (("netns", _NS_FIELDS), ("links", _LINK_FIELDS)):
        items = owned.get(key)
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise bad(f"'owned.{key}' is not a list of entries")
        for i in items:
            missing = [f for f in fields if f not in i]
            if missing or not isinstance(i["name"], str):
                raise bad(f"an entry of 'owned.{key}' lacks {', '.join(missing) or 'a name'}")
    stack = owned.get("stack")
    if stack is not None and not (isinstance(stack, dict) and "token" in stack):
        raise bad("'owned.stack' has no token")
    sock = owned.get("socket")
    if sock is not None and not (isinstance(sock, dict) and {"ino", "dev"} <= set(sock)):
        raise bad("'owned.socket' has no inode")


def _ns_state(e: dict, named: set[str]) -> tuple[str, str]:
    """What the recorded namespace `e` is now: ("ours", "") while its name
    leads to it and nothing else; ("aliased", why) when another path names
    it too; ("gone", "") when its name is gone; ("unnamed", "") for the
    empty file a crash in the naming left; ("other", why) when the name
    leads elsewhere."""
    cur = netns.ns_lookup(e["name"])
    if cur is None:
        return "gone", ""
    if isinstance(cur, netns.NsFile):       # made after the entry: the lab's own
        if cur.ctime >= e["at"] - 1:
            return "unnamed", ""
        return "other", "a file the lab did not make has its name"
    if cur == "other":
        return "other", "its name leads to something that is not a network namespace"
    if (cur.ino, cur.dev) != (e["ino"], e["dev"]) or cur.cookie != e["cookie"]:
        return "other", "another namespace has its name now"
    if (cur.ino, cur.dev) in netns.host_ns():
        return "other", "its name leads to this machine's own namespace"
    aliases = [p for p in netns.ns_mounts(cur.ino) if p not in named]
    if aliases:
        return "aliased", (f"also named {', '.join(aliases)}, which the lab did not make: "
                           "left whole, its processes too, until that name is gone")
    return "ours", ""


# -- the stack's process ------------------------------------------------------
def stack_instance(cmd: list[str]) -> str | None:
    """The instance name of `iopkt run` in a command line (`python -m
    iopkt run -i NAME ...`, `.../bin/iopkt run ...`; "iopkt" without -i),
    or None if `cmd` is not a stack."""
    for k in range(1, len(cmd)):
        if cmd[k] == "run" and (cmd[k - 1] == "iopkt" or cmd[k - 1].endswith("/iopkt")):
            rest = cmd[k + 1:]
            for j, a in enumerate(rest):
                if a == "-i" and j + 1 < len(rest):
                    return rest[j + 1]
                if a.startswith("-i") and len(a) > 2:
                    return a[2:]
            return "iopkt"
    return None


def running_stacks(instance: str) -> list[int]:
    """PIDs of the stacks running as `instance`, whoever started them."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        if p.pid != os.getpid() and stack_instance(p.info["cmdline"] or []) == instance:
            out.append(p.pid)
    return out


def stack_process(rec: dict, prefix: str) -> tuple[psutil.Process | None, str | None]:
    """The live process of the recorded stack, checked: the recorded start
    time, a stack's command line for `prefix` and the record's token in its
    environment. Else None and, if a process that is not the stack holds
    the PID, why it is left alone. A stack whose PID never got recorded (a
    crash right after its start) is found by its token."""
    pid = rec.get("pid")
    if pid is None:
        return _by_token(rec.get("token"), prefix), None
    if not isinstance(pid, int) or pid <= 0:
        return None, None
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            _reap(pid)
            return None, None
        ctime, cmd, name = p.create_time(), p.cmdline(), p.name()
        env = p.environ()
    except psutil.NoSuchProcess:        # a zombie too
        _reap(pid)
        return None, None
    except psutil.AccessDenied:
        return None, f"pid {pid} cannot be inspected; not signalled"
    rec_time = rec.get("create_time")
    if not isinstance(rec_time, (int, float)) or abs(ctime - rec_time) > 0.05 \
            or stack_instance(cmd) != prefix or env.get(TOKEN_ENV) != rec.get("token"):
        return None, f"pid {pid} is not this lab's stack (it is now {name!r}); not signalled"
    return p, None


def _by_token(token, prefix: str) -> psutil.Process | None:
    if not isinstance(token, str) or not token:
        return None
    for pid in running_stacks(prefix):
        try:
            p = psutil.Process(pid)
            if p.environ().get(TOKEN_ENV) == token:
                return p
        except psutil.Error:
            continue
    return None


def stop_stack(p: psutil.Process, prefix: str) -> None:
    """Ask the checked stack process `p` to stop through its control
    socket (only if `p` itself serves it: no symlink, no other stack);
    if it does not go within 5 s, SIGTERM, then SIGKILL."""
    try:
        control.request(prefix, "stop", timeout=2.0, peer=p.pid)
        if wait_gone(p, 5.0):
            return
    except (control.ControlError, OSError, ValueError):
        pass                # not answering (stopped, backlog full, gone, not its socket)
    terminate(p)


def _reap(pid: int) -> None:
    """Collect our own dead child (lab up in this process started it)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_gone(p: psutil.Process, timeout: float) -> bool:
    """Wait for `p` to exit; collect it if it is our child."""
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


def terminate(p: psutil.Process) -> None:
    """SIGTERM (with SIGCONT, in case it is stopped), then SIGKILL. psutil
    checks before each signal that the PID still is this process."""
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
        try:
            p.send_signal(sig)
            if sig == signal.SIGTERM:
                p.send_signal(signal.SIGCONT)
        except psutil.NoSuchProcess:
            return
        if wait_gone(p, wait):
            return


def end_processes(spaces: list[dict]) -> list[str]:
    """End what still runs inside the lab's namespaces `spaces` (record
    entries, checked as ours: a user's iperf3 -s -D, say), so that none is
    left in a namespace without a name: SIGTERM, a moment, SIGKILL. Found
    by the recorded inode, never in this process's namespace or PID 1's;
    this process and its ancestors are spared. Returns what it said."""
    spare = {os.getpid()} | {a.pid for a in psutil.Process().parents()}
    host = netns.host_ns()
    found: dict[psutil.Process, str] = {}
    for e in spaces:
        if (e["ino"], e["dev"]) in host:
            continue
        for pid in netns.ns_id_pids(e["ino"], e["dev"]):
            if pid in spare:
                continue
            try:
                found[psutil.Process(pid)] = e["name"]
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


def in_the_way(prefix: str, spaces: list[str], links: list[str],
               sock: str | None = None) -> list[str]:
    """What already carries a name the lab `prefix` is about to use:
    namespaces `spaces`, root-namespace links `links`; for a lab with a
    stack, its control socket `sock` (whatever it is: a symlink too) and a
    running stack of that instance name. Each as the user would look for it."""
    out = [f"netns {n}" for n in spaces if netns.ns_lookup(n) is not None]
    out += [f"link {n}" for n in links if netns.link_index(n) is not None]
    if sock is not None:
        if os.path.lexists(sock):
            out.append(f"control socket {sock}")
        out += [f"stack pid {pid} (iopkt run -i {prefix})" for pid in running_stacks(prefix)]
    return out
