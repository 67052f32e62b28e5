"""The lab touches only what it made. Each test plants a victim that
carries a lab's names (a namespace with a process in it, an alias, root
namespace TAPs, a stack started with `iopkt run`, a socket symlink), runs
`lab down` and `lab up` as a user would, and checks that the victim is
intact and its process alive, while the lab's own objects are all removed.
Also: a crash at each step of `lab up` leaves a record that `lab down`
clears completely."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import pytun

from iopkt.ctl import control
from iopkt.lab import lab, netns, ownership

from conftest import unique_prefix


def iopkt(*args, timeout=90):
    return subprocess.run([sys.executable, "-m", "iopkt", *args], capture_output=True,
                          text=True, timeout=timeout)


def one_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def alive(p) -> bool:
    return p.poll() is None


class Victims:
    """Namespaces, links and processes that no lab made, removed after
    the test whatever happens."""

    def __init__(self):
        self.names: list[str] = []
        self.links: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def netns(self, name: str, sleeper: bool = True):
        """A namespace `name` (as `ip netns add`), with a process in it."""
        self.names.append(name)
        ident = netns.ns_create(name)
        proc = None
        if sleeper:
            proc = netns.ns_popen(name, ["sleep", "600"])
            self.procs.append(proc)
            deadline = time.monotonic() + 5
            while proc.pid not in netns.ns_pids(name) and time.monotonic() < deadline:
                time.sleep(0.02)
        return ident, proc

    def alias(self, name: str, pid: int) -> None:
        """`ip netns attach NAME PID`: another name for PID's namespace."""
        self.names.append(name)
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            netns.ns_attach(fd, name)
        finally:
            os.close(fd)

    def root_tap(self, name: str) -> int:
        """A persistent TAP `name` in the root namespace; its ifindex."""
        self.links.append(name)
        tap = pytun.TunTapDevice(name=name, flags=pytun.IFF_TAP | pytun.IFF_NO_PI)
        tap.persist(True)
        tap.close()
        return netns.link_index(name)

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for name in reversed(self.names):
            netns.ns_remove(name)
        for name in self.links:
            netns.link_delete(name)


@pytest.fixture
def victims():
    v = Victims()
    yield v
    v.cleanup()


def no_lab_parts(p):
    """Nothing of a lab `p` was made: no record, no P-b, no socket."""
    assert lab.read_state(p) is None
    assert not netns.ns_exists(f"{p}-b")
    assert not os.path.lexists(control.sock_path(p))


def drop_log(prefix):
    try:
        os.unlink(lab.log_path(prefix))
    except FileNotFoundError:
        pass


# -- down and up leave a victim namespace, its links and process ------------------
def test_down_without_a_record_leaves_a_namespace_of_its_name(fresh_prefix, victims):
    p = fresh_prefix
    ident, sleeper = victims.netns(f"{p}-a")
    netns.tap_create(f"{p}-a", f"{p}-a0")
    tap = netns.link_index(f"{p}-a0", f"{p}-a")
    r = iopkt("lab", "down", "--prefix", p)
    assert r.returncode == 1, r
    assert one_line(r) == f"iopkt lab down: left alone, not made by lab '{p}': netns {p}-a"
    assert f"lab '{p}' has no record" in r.stdout
    time.sleep(0.2)
    assert alive(sleeper)
    assert netns.ns_lookup(f"{p}-a") == ident
    assert tap is not None and netns.link_index(f"{p}-a0", f"{p}-a") == tap    # the same TAP


def test_up_refuses_over_a_namespace_of_its_name(fresh_prefix, victims):
    p = fresh_prefix
    ident, sleeper = victims.netns(f"{p}-a")
    r = iopkt("lab", "up", "--prefix", p)
    assert r.returncode == 1, r
    line = one_line(r)
    assert line.startswith(f"iopkt lab up: lab '{p}' cannot be made: in the way, and not made by a "
                           f"lab '{p}': netns {p}-a;"), line
    time.sleep(0.2)
    assert alive(sleeper)
    assert netns.ns_lookup(f"{p}-a") == ident
    no_lab_parts(p)


def test_an_alias_never_leads_down_to_another_namespace(fresh_prefix, victims):
    """`ip netns attach P-a PID` names another namespace P-a: neither
    down nor up acts on it, and that namespace's process lives."""
    p = fresh_prefix
    _, sleeper = victims.netns(f"{p}-v")
    victims.alias(f"{p}-a", sleeper.pid)
    r = iopkt("lab", "down", "--prefix", p)
    assert r.returncode == 1 and f"netns {p}-a" in one_line(r), r
    r = iopkt("lab", "up", "--prefix", p)
    assert r.returncode == 1 and f"in the way, and not made by a lab '{p}': netns {p}-a;" \
        in one_line(r), r
    time.sleep(0.2)
    assert alive(sleeper)
    assert netns.ns_exists(f"{p}-v") and netns.ns_exists(f"{p}-a")
    no_lab_parts(p)


def test_a_lab_namespace_with_an_alias_is_left_whole(make_lab, victims):
    """The lab's P-a is also named by a path the lab did not make: down
    leaves P-a and its processes, takes the rest, keeps the record for
    P-a; once the alias is gone, down finishes."""
    lb = make_lab()
    sleeper = netns.ns_popen(lb.ns_a, ["sleep", "600"])
    victims.procs.append(sleeper)
    alias = f"{unique_prefix('x')}-x"
    victims.alias(alias, _pid_in(lb.ns_a, sleeper))
    r = iopkt("lab", "down", "--prefix", lb.prefix)
    assert r.returncode == 1, r
    line = one_line(r)
    assert f"netns {lb.ns_a} (also named {netns.ns_path(alias)}, which the lab did not make" \
        in line, line
    assert f"record kept for what is left: {lab.state_path(lb.prefix)}" in r.stdout
    time.sleep(0.2)
    assert alive(sleeper)
    assert netns.ns_exists(lb.ns_a) and not netns.ns_exists(lb.ns_b)
    assert not psutil.pid_exists(lb.pid) or psutil.Process(lb.pid).status() == "zombie"
    netns.ns_remove(alias)
    r = iopkt("lab", "down", "--prefix", lb.prefix)
    assert r.returncode == 0, r
    assert f"ended sleep (pid {sleeper.pid}) in {lb.ns_a}" in r.stdout, r.stdout
    assert f"netns {lb.ns_a}" in r.stdout
    assert not netns.ns_exists(lb.ns_a) and lab.read_state(lb.prefix) is None
    # Ended by SIGTERM, or by SIGKILL when down says it had to.
    killed = f"ended sleep (pid {sleeper.pid}) in {lb.ns_a} (killed:" in r.stdout
    assert sleeper.wait(5) == -(signal.SIGKILL if killed else signal.SIGTERM)
    drop_log(lb.prefix)


def _pid_in(ns, proc):
    deadline = time.monotonic() + 5
    while proc.pid not in netns.ns_pids(ns) and time.monotonic() < deadline:
        time.sleep(0.02)
    return proc.pid


# -- root-namespace links ---------------------------------------------------------
def test_root_namespace_links_of_its_names_are_left(fresh_prefix, victims):
    p = fresh_prefix
    idx = {n: victims.root_tap(n) for n in (f"{p}-a0", f"{p}-sb")}
    r = iopkt("lab", "down", "--prefix", p)
    assert r.returncode == 1, r
    assert one_line(r) == (f"iopkt lab down: left alone, not made by lab '{p}': link {p}-a0, "
                           f"link {p}-sb")
    r = iopkt("lab", "up", "--prefix", p)
    assert r.returncode == 1 and f"not made by a lab '{p}': link {p}-a0;" in one_line(r), r
    assert {n: netns.link_index(n) for n in idx} == idx
    no_lab_parts(p)


# -- stacks and sockets -----------------------------------------------------------
@pytest.fixture
def foreign_stack(fresh_prefix):
    """A stack started with `iopkt run -i P`: a user's, not a lab's."""
    p = fresh_prefix
    proc = subprocess.Popen([sys.executable, "-m", "iopkt", "run", "-i", p, "-d", "devnp-tap",
                             f"name={p}-x0"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        control.wait_ready(p, 15, proc)
        yield p, proc
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_stack_started_with_iopkt_run_is_never_the_labs(foreign_stack):
    p, proc = foreign_stack
    r = iopkt("lab", "down", "--prefix", p)
    assert r.returncode == 1, r
    assert one_line(r) == (f"iopkt lab down: left alone, not made by lab '{p}': control socket "
                           f"{control.sock_path(p)}, stack pid {proc.pid} (iopkt run -i {p})")
    r = iopkt("lab", "up", "--prefix", p)
    assert r.returncode == 1, r
    assert f"control socket {control.sock_path(p)}, stack pid {proc.pid}" in one_line(r)
    assert alive(proc)
    assert control.request(p, "ping", peer=proc.pid)["interfaces"] == ["tap0"]
    assert lab.read_state(p) is None and not netns.ns_exists(f"{p}-a")


def test_a_planted_socket_symlink_is_never_followed(make_lab):
    """A symlink at a lab's socket path leads to another lab's stack:
    neither `down` of a lab without a record, nor `down` of a lab whose
    own socket was replaced by it, stops that other stack."""
    other = make_lab()
    q = unique_prefix("q")
    link = control.sock_path(q)
    os.symlink(control.sock_path(other.prefix), link)
    try:
        r = iopkt("lab", "down", "--prefix", q)
        assert r.returncode == 1 and f"control socket {link}" in one_line(r), r
        assert os.path.islink(link)
    finally:
        os.unlink(link)
    lb = make_lab()
    os.unlink(control.sock_path(lb.prefix))
    os.symlink(control.sock_path(other.prefix), control.sock_path(lb.prefix))
    r = iopkt("lab", "down", "--prefix", lb.prefix)
    assert r.returncode == 1, r
    assert one_line(r) == (f"iopkt lab down: left alone, not made by lab '{lb.prefix}': "
                           f"{control.sock_path(lb.prefix)} (not the lab's stack's socket)")
    assert f"stack pid {lb.pid}" in r.stdout and f"netns {lb.ns_a}" in r.stdout
    assert ownership.wait_gone(psutil.Process(lb.pid), 5) if psutil.pid_exists(lb.pid) else True
    assert other.req("ping")["pid"] == other.pid
    assert os.path.islink(control.sock_path(lb.prefix))
    os.unlink(control.sock_path(lb.prefix))
    drop_log(lb.prefix)


# -- a crashed lab --------------------------------------------------------------
def test_up_clears_the_recorded_leftovers_of_a_crashed_lab(make_lab):
    lb = make_lab()
    os.kill(lb.pid, signal.SIGKILL)
    ownership.wait_gone(psutil.Process(lb.pid), 5)
    r = iopkt("lab", "up", "--prefix", lb.prefix)
    assert r.returncode == 0, r.stderr
    st = lab.read_state(lb.prefix)
    assert st["pid"] != lb.pid
    assert "1 received" in lb.ping(lb.ns_a, "198.19.0.2").stdout


class Crash(BaseException):
    """A crash of `lab up` at one step: nothing after it runs, no cleanup."""


def _crash_after(monkeypatch, mod, name):
    real = getattr(mod, name)

    def step(*a, **kw):
        real(*a, **kw)
        raise Crash(name)
    monkeypatch.setattr(mod, name, step)


def _crash_in_naming(*_a, **_kw):
    """ns_attach killed between making the name's file and mounting it."""
    fd, name = _a
    os.close(os.open(netns.ns_path(name), os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    raise Crash("ns_attach")


# The namespaces lab up has made (or begun) when it crashes at the first
# call of each step: side A's over TAPs (the stack's P-s first over veth);
# both once the stack is started.
MADE_BY = {"ns_attach-half": "a", "ns_attach": "a", "tap_create": "a", "veth_create": "sa",
           "host_setup": "a", "Popen": "ab", "wait_ready": "ab", "note_socket": "ab"}


@pytest.mark.parametrize("step", ["ns_attach-half", "ns_attach", "tap_create", "veth_create",
                                  "host_setup", "Popen", "wait_ready", "note_socket"])
def test_a_crash_at_each_step_of_up_leaves_a_record_down_clears(fresh_prefix, monkeypatch,
                                                                step):
    p = fresh_prefix
    spec = lab.LabSpec(prefix=p, link="veth" if step == "veth_create" else "tap",
                       driver_a=lab.default_driver("veth" if step == "veth_create" else "tap"))
    spec.driver_b = spec.driver_a
    drvs = [lab.check_driver(spec.driver_a, spec.link)] * 2
    rec = lab._claim(spec)
    with monkeypatch.context() as m:
        if step == "ns_attach-half":
            m.setattr(netns, "ns_attach", _crash_in_naming)
        elif step in ("ns_attach", "tap_create", "veth_create", "host_setup"):
            _crash_after(m, netns, step)
        elif step == "Popen":
            _crash_after(m, ownership.subprocess, "Popen")
        elif step == "wait_ready":
            _crash_after(m, control, "wait_ready")
        else:
            _crash_after(m, ownership.Record, "note_socket")
        with pytest.raises(Crash):
            lab._build(spec, drvs, rec, 15.0)
    made = lab.read_state(p)["owned"]
    # Each namespace is written down before it is made: those of the
    # steps done, and the one the crash came in or after.
    assert [e["name"] for e in made["netns"]] == [f"{p}-{x}" for x in MADE_BY[step]], made
    time.sleep(0.2 if step == "Popen" else 0)
    r = iopkt("lab", "down", "--prefix", p)
    assert r.returncode == 0, r
    assert lab.read_state(p) is None
    for ns in (f"{p}-a", f"{p}-b", f"{p}-s"):
        assert netns.ns_lookup(ns) is None, (ns, r.stdout)
    assert not [link for link in (f"{p}-a0", f"{p}-b0") if netns.link_index(link)]
    assert not os.path.lexists(control.sock_path(p)), r.stdout
    assert not ownership.running_stacks(p), r.stdout
    drop_log(p)


# -- status ----------------------------------------------------------------------
def test_status_reports_a_broken_record_for_its_lab_alone(make_lab):
    lb = make_lab()
    q = unique_prefix("q")
    from iopkt.ctl import rundir
    rundir.write_private(lab.state_path(q), '{"prefix": "%s", "version": 2, '
                         '"owned": {"links": []}}' % q)
    try:
        r = iopkt("lab", "status")
        assert r.returncode == 0, r
        lines = r.stdout.splitlines()
        want = f"{lb.prefix}: over tap, IPv4 and IPv6, stack pid {lb.pid} answering"
        assert any(ln.startswith(want) for ln in lines), lines
        assert f"{q}: lab '{q}': {lab.state_path(q)} is broken: 'owned.netns' is not a list " \
            "of entries; nothing touched" in lines, lines
    finally:
        os.unlink(lab.state_path(q))
