"""The lab is safe to take down: it signals only its own stack, its run
directory and files are root's alone whatever the umask, it ends what was
left in its namespaces, keeps the stack's log, and its TAPs persist across
a driver's umount so that one `iopkt mount` brings a side back."""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

from iopkt.bench import measure
from iopkt.ctl import control, rundir
from iopkt.lab import lab, netns, ownership


def iopkt(*args, env=None, umask=None):
    return subprocess.run([sys.executable, "-m", "iopkt", *args], capture_output=True,
                          text=True, timeout=90, env=env,
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def nothing_left(prefix):
    assert not [n for n in netns.ns_list() if n in (f"{prefix}-a", f"{prefix}-b")]
    assert not netns.link_exists(f"{prefix}-a0") and not netns.link_exists(f"{prefix}-b0")


def drop_log(prefix):
    try:
        os.unlink(lab.log_path(prefix))
    except FileNotFoundError:
        pass


def alive(p: subprocess.Popen) -> bool:
    return p.poll() is None


need_iperf3 = pytest.mark.skipif(not shutil.which("iperf3"), reason="needs iperf3")


# -- 1. only the lab's own stack is signalled ------------------------------
def test_down_leaves_a_process_that_got_the_stacks_pid_alone(fresh_prefix):
    p = fresh_prefix
    st = lab.up(lab.LabSpec(prefix=p))
    os.kill(st["pid"], signal.SIGKILL)          # the stack dies...
    os.waitpid(st["pid"], 0)
    sleeper = subprocess.Popen(["sleep", "60"])     # ...and a stranger gets "its" PID
    try:
        st["owned"]["stack"]["pid"] = sleeper.pid
        rundir.write_private(lab.state_path(p), json.dumps(st))
        r = iopkt("lab", "down", "--prefix", p)
        assert r.returncode == 0, r.stderr
        time.sleep(0.2)
        assert alive(sleeper), r.stdout
        assert (f"pid {sleeper.pid} is not this lab's stack (it is now 'sleep'); "
                "not signalled") in r.stdout
        assert f"netns {p}-a" in r.stdout
        nothing_left(p)
        assert not os.path.exists(lab.state_path(p))
    finally:
        sleeper.kill()
        sleeper.wait()
        drop_log(p)


def test_down_stops_a_stack_that_does_not_answer(fresh_prefix):
    """SIGSTOPped, the stack never answers `stop`: down falls back to
    SIGTERM (and SIGCONT), then SIGKILL, of the checked stack process."""
    p = fresh_prefix
    st = lab.up(lab.LabSpec(prefix=p))
    os.kill(st["pid"], signal.SIGSTOP)
    try:
        r = iopkt("lab", "down", "--prefix", p)
        assert r.returncode == 0, r.stderr
        assert f"stack pid {st['pid']}" in r.stdout
        time.sleep(0.2)
        lab._wait_exit(st["pid"], 5.0)
        assert not lab._pid_alive(st["pid"])
        nothing_left(p)
    finally:
        if lab._pid_alive(st["pid"]):
            os.kill(st["pid"], signal.SIGKILL)
        lab._wait_exit(st["pid"], 5.0)
        drop_log(p)


def test_a_state_file_others_could_write_is_not_trusted(fresh_prefix, monkeypatch, tmp_path):
    rd = tmp_path / "run"
    rundir.ensure_run_dir(str(rd))
    monkeypatch.setattr(control, "RUN_DIR", str(rd))
    p = fresh_prefix
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        path = lab.state_path(p)
        with open(path, "w") as f:
            json.dump({"prefix": p, "version": ownership.VERSION,
                       "owned": {"netns": [], "links": [], "socket": None,
                                 "stack": {"token": "x", "pid": sleeper.pid}}}, f)
        os.chmod(path, 0o666)
        with pytest.raises(lab.LabError, match=f"refusing file {path}: .*mode 0666"):
            lab.read_state(p)
        with pytest.raises(lab.LabError, match="nothing touched"):
            lab.down(p)
        time.sleep(0.2)
        assert alive(sleeper)
        assert os.path.exists(path)             # not the lab's to remove either
    finally:
        sleeper.kill()
        sleeper.wait()


# -- 2. the run directory and its files are root's, whatever the umask -----
def test_run_dir_state_and_log_are_private_under_umask_000(fresh_prefix):
    p = fresh_prefix
    top = tempfile.mkdtemp(prefix="iopkt-rd-")      # short: socket paths are limited
    rd = os.path.join(top, "run")
    env = {**os.environ, "IOPKT_RUN_DIR": rd}
    try:
        r = iopkt("lab", "up", "--prefix", p, env=env, umask=0)
        assert r.returncode == 0, r.stderr
        st = os.stat(rd)
        assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) & 0o022 == 0, oct(st.st_mode)
        for fn in (f"lab-{p}.json", f"lab-{p}.log"):
            st = os.stat(os.path.join(rd, fn))
            assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600, (fn, oct(st.st_mode))
        r = iopkt("lab", "down", "--prefix", p, env=env, umask=0)
        assert r.returncode == 0, r.stderr
        nothing_left(p)
    finally:
        iopkt("lab", "down", "--prefix", p, env=env)
        shutil.rmtree(top, ignore_errors=True)


def test_a_run_dir_anyone_can_write_is_refused(fresh_prefix):
    p = fresh_prefix
    top = tempfile.mkdtemp(prefix="iopkt-rd-")
    rd = os.path.join(top, "run")
    os.mkdir(rd)
    os.chmod(rd, 0o777)
    env = {**os.environ, "IOPKT_RUN_DIR": rd}
    try:
        for cmd in ("up", "down"):
            r = iopkt("lab", cmd, "--prefix", p, env=env)
            assert r.returncode == 1, r
            assert "Traceback" not in r.stderr
            assert len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert rd in r.stderr and "0777" in r.stderr and "chmod 755" in r.stderr, r.stderr
        assert os.listdir(rd) == []
        nothing_left(p)
    finally:
        shutil.rmtree(top, ignore_errors=True)


# -- 3 and 4. down ends what runs in the namespaces, and keeps the log -----
@need_iperf3
def test_down_ends_processes_left_in_the_namespaces_and_keeps_the_log(make_lab):
    lb = make_lab()
    lb.run(lb.ns_b, ["iperf3", "-s", "-D", "-p", "5397"], check=True)
    sleeper_a = netns.ns_popen(lb.ns_a, ["sleep", "300"])
    outsider = subprocess.Popen(["sleep", "300"])           # in our namespace
    try:
        deadline = time.time() + 30      # generous: a busy machine
        while not netns.ns_pids(lb.ns_b) and time.time() < deadline:
            time.sleep(0.05)
        (iperf_pid,) = netns.ns_pids(lb.ns_b)
        r = iopkt("lab", "down", "--prefix", lb.prefix)
        assert r.returncode == 0, r.stderr
        assert f"ended iperf3 (pid {iperf_pid}) in {lb.ns_b}" in r.stdout, r.stdout
        assert f"ended sleep (pid {sleeper_a.pid}) in {lb.ns_a}" in r.stdout, r.stdout
        assert f"stack log kept: {lab.log_path(lb.prefix)}" in r.stdout, r.stdout
        assert ownership._wait_procs([psutil.Process(iperf_pid)], 2.0) == []     # exited
        # Ended by SIGTERM, or by SIGKILL when down says it had to.
        killed = f"ended sleep (pid {sleeper_a.pid}) in {lb.ns_a} (killed:" in r.stdout
        assert sleeper_a.wait(5) == -(signal.SIGKILL if killed else signal.SIGTERM)
        assert alive(outsider)
        assert "attached" in open(lab.log_path(lb.prefix)).read()
        nothing_left(lb.prefix)
    finally:
        for proc in (sleeper_a, outsider):
            proc.kill()
            proc.wait()
        drop_log(lb.prefix)


def test_a_failed_up_points_at_a_log_that_exists(fresh_prefix):
    p = fresh_prefix
    try:
        r = iopkt("lab", "up", "--prefix", p, "--options", "bogus=1")
        assert r.returncode == 2                # the stack refused a usage error
        assert r.stderr.strip() == (
            "iopkt lab up: the lab's stack did not start: devnp-tap: unknown option 'bogus' "
            "(options: burst, mac, mtu, name, netns, offload, speed, tcp4csum, tcp6csum, tso4, "
            f"tso6, txqlen, udp4csum, udp6csum) (log: {lab.log_path(p)})"), r.stderr
        assert "unknown option 'bogus'" in open(lab.log_path(p)).read()
        nothing_left(p)
    finally:
        drop_log(p)


# -- 5. the TAPs persist: umount, then one mount brings traffic back --------
@need_iperf3
@pytest.mark.parametrize("driver", ["devnp-tap", "devn-tap"])
def test_umount_then_one_mount_brings_traffic_back(make_lab, driver):
    lb = make_lab(driver)
    p, ifa = lb.prefix, lb.if_a
    one_command = f"name={p}-a0,netns={lb.ns_a}"
    assert lb.state["mount_a"] == f"iopkt mount --instance {p} {driver} {one_command}"
    lb.req("route", add="198.18.77.0/24", gateway="198.18.0.2")
    lb.req("ifconfig", ifname=ifa, mtu=1400)
    srv = measure.iperf3_server(lb.ns_b, ["-p", "5398", "-J"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert "1 received" in lb.ping(lb.ns_a, "198.19.0.2").stdout
        r = iopkt("umount", "--instance", p, ifa)
        assert r.returncode == 0, r.stderr
        assert "0 received" in lb.ping(lb.ns_a, "198.19.0.2", "-W", "1").stdout
        assert netns.link_exists(f"{p}-a0", lb.ns_a)    # the "NIC" is still there

        r = iopkt("mount", "--instance", p, driver, f"name={p}-a0,netns={p}-nosuch")
        # A bad option's value: a usage error, whichever driver.
        assert r.returncode == 2 and r.stderr == (
            f"iopkt mount: {driver}: option netns={p}-nosuch: no network namespace '{p}-nosuch' "
            "(see 'ip netns list')\n"), r

        r = iopkt("mount", "--instance", p, driver, one_command)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"{ifa}: "), r.stdout       # the same name again
        conf = lb.req("ifconfig", ifname=ifa)[0]
        assert conf["inet"] == ["198.18.0.1/24"] and conf["mtu"] == 1400, conf
        routes = {rt["destination"]: rt for rt in lb.req("route")}
        assert routes["198.18.77.0/24"]["interface"] == ifa
        cli = lb.run(lb.ns_a, ["iperf3", "-c", "198.19.0.2", "-p", "5398", "-t", "1", "-J"],
                     timeout=30)
        res = json.loads(cli.stdout)
        assert "error" not in res, res["error"]
        assert res["end"]["sum_received"]["bytes"] > 0
        assert "2 received" in lb.ping(lb.ns_a, "198.19.0.2", count=2).stdout
        log = open(lb.state["log"]).read()
        assert (f"{ifa}: restored 198.18.0.1/24, 2001:2:0:a::1/64 and 1 route from before "
                "its umount") in log, log
    finally:
        if srv.poll() is None:
            srv.kill()
        srv.communicate()
        lb.down()
        drop_log(p)
