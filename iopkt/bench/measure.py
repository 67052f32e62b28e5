"""Pieces for measuring forwarders with real traffic: iperf3 between two
host namespaces, through the iopkt lab or through a baseline, with the
forwarder pinned to one core and iperf3 to the other.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time

from iopkt.lab import netns

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER_START_S = 10.0       # how long an iperf3 server may take to listen


class BenchError(Exception):
    pass


def cpus() -> tuple[set[int], set[int]]:
    """(forwarder cores, iperf3 cores): split the machine in two."""
    avail = sorted(os.sched_getaffinity(0))
    if len(avail) < 2:
        return set(avail), set(avail)
    return {avail[0]}, set(avail[1:])


def pin(pid: int, cores: set[int]) -> None:
    """Pin every thread of `pid` (affinity is per thread on Linux)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except (ProcessLookupError, OSError):
            pass


def need_iperf3() -> str:
    path = shutil.which("iperf3")
    if not path:
        raise BenchError("iperf3 is not installed: 'sudo make bench' installs it "
                         "(Debian package iperf3), or apt-get install iperf3")
    return path


def need_ping() -> str:
    path = shutil.which("ping")
    if not path:
        raise BenchError("ping is not installed: 'sudo make bench' installs it "
                         "(Debian package iputils-ping), or apt-get install iputils-ping")
    return path


def iperf3(ns_client: str, ns_server: str, server_ip: str, seconds: float,
           extra: list[str] | None = None, cores: set[int] | None = None,
           timeout: float | None = None) -> dict:
    """One iperf3 run, client in `ns_client`, server in `ns_server`.
    Returns the client's JSON as iperf3 wrote it, with the server's own
    JSON (which counts every byte that arrived) under "server"."""
    port = str(5201 + (os.getpid() % 500))
    srv = iperf3_server(ns_server, ["-p", port, "-J"], cores=cores,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        extra = list(extra or [])
        limit = [] if {"-n", "-k"} & set(extra) else ["-t", str(seconds)]
        cmd = ["iperf3", "-c", server_ip, "-p", port, *limit, "-J", *extra]
        res = _iperf3_client(ns_client, cmd, cores, timeout or seconds + 20)
        if "error" in res:
            raise BenchError(f"iperf3: {res['error']}")
        try:
            sout, _ = srv.communicate(timeout=15)
            res["server"] = json.loads(sout)
        except (subprocess.TimeoutExpired, json.JSONDecodeError):
            res["server"] = None
        return res
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.communicate()


def iperf3_server(ns: str, args: list[str], cores: set[int] | None = None,
                  **popen_kw) -> subprocess.Popen:
    """`iperf3 -s -1 ARGS` in namespace `ns`, returned once it listens. A
    client started before that is refused, and on a loaded machine the
    server may take a second or more to get there."""
    need_iperf3()
    port = int(args[args.index("-p") + 1]) if "-p" in args else 5201
    srv = netns.ns_popen(ns, ["iperf3", "-s", "-1", *args], cpus=cores, **popen_kw)
    deadline = time.monotonic() + SERVER_START_S
    while not _listening(srv.pid, port):
        if srv.poll() is not None or time.monotonic() > deadline:
            srv.kill()
            srv.communicate()
            raise BenchError(f"iperf3 -s {' '.join(args)} in {ns} did not listen on port "
                             f"{port} within {SERVER_START_S:.0f} s")
        time.sleep(0.02)
    return srv


def _listening(pid: int, port: int) -> bool:
    """Whether process `pid` has a TCP socket listening on `port`:
    /proc/PID/net shows that process's own namespace."""
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}") as f:
                next(f)
                for line in f:
                    f = line.split()            # sl local_address rem_address st ...
                    if f[3] == "0A" and int(f[1].rpartition(":")[2], 16) == port:
                        return True
        except (FileNotFoundError, ProcessLookupError):
            pass
    return False


def _finish(p: subprocess.Popen, limit: float, what: str):
    """p's (stdout, stderr) once it ends. Killed, with a BenchError, if it
    runs past `limit` seconds; killed too on Ctrl-C, so nothing is left."""
    try:
        return p.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise BenchError(f"{what} did not finish within {limit:.0f}s") from None
    except BaseException:
        p.kill()
        p.communicate()
        raise


def _iperf3_client(ns: str, cmd: list[str], cores, timeout: float) -> dict:
    """Run the iperf3 client `cmd` in `ns`; its JSON (an "error" key when
    iperf3 reports one)."""
    cli = netns.ns_popen(ns, cmd, cpus=cores, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = _finish(cli, timeout, "iperf3")
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        raise BenchError(f"iperf3 printed no JSON: "
                         f"{err.decode(errors='replace')[-300:]}") from None


def received_bps(res: dict) -> float:
    end = res["end"]
    s = end.get("sum_received") or end.get("sum")
    return float(s["bits_per_second"])


def proc_sample(pid: int) -> dict:
    """CPU per thread and context switches of every thread of `pid`, from
    /proc (psutil's num_ctx_switches() reads only the main thread)."""
    import psutil
    p = psutil.Process(pid)
    threads = {}
    for t in p.threads():
        threads[t.id] = (t.user_time, t.system_time)
    vol = invol = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        invol += int(line.split()[1])
        except FileNotFoundError:
            pass
    ct = p.cpu_times()
    with open(f"/proc/{pid}/status") as f:
        hwm = next((int(ln.split()[1]) for ln in f if ln.startswith("VmHWM")), 0)
    return {"user": ct.user, "system": ct.system, "threads": threads,
            "vol": vol, "invol": invol, "rss_peak_kb": hwm}


def proc_delta(pid: int, a: dict, b: dict) -> dict:
    """What the process spent between samples a and b; the main thread is
    the stack thread, any other is a legacy driver's receive thread."""
    stack_cpu = other_cpu = 0.0
    for tid, (u, s) in b["threads"].items():
        u0, s0 = a["threads"].get(tid, (0.0, 0.0))
        d = (u - u0) + (s - s0)
        if tid == pid:
            stack_cpu += d
        else:
            other_cpu += d
    return {"cpu_user_s": b["user"] - a["user"], "cpu_sys_s": b["system"] - a["system"],
            "cpu_stack_thread_s": stack_cpu, "cpu_other_threads_s": other_cpu,
            "ctxsw_voluntary": b["vol"] - a["vol"],
            "ctxsw_involuntary": b["invol"] - a["invol"],
            "rss_peak_kb": b["rss_peak_kb"], "threads": len(b["threads"])}


def forwarded(prefix: str, family: int = 4) -> int:
    """The stack's forwarded-packet counter of IPv4 (ip) or IPv6 (ip6)."""
    from iopkt.ctl import control
    return control.request(prefix, "netstat")["ip6" if family == 6 else "ip"]["forward"]


def measure_stack(st: dict, seconds: float, iperf_args: list[str], cores,
                  server_ip: str = "198.19.0.2", family: int = 4) -> dict:
    """One iperf3 run A -> B (host B at `server_ip`) through a running lab
    `st`, with the stack process's CPU, context switches and forwarded
    packets of that family around it."""
    from iopkt.ctl import control
    prefix = st["prefix"]
    fwd0 = forwarded(prefix, family)
    s0 = proc_sample(st["pid"])
    res = iperf3(st["ns_a"], st["ns_b"], server_ip, seconds, iperf_args, cores=cores)
    s1 = proc_sample(st["pid"])
    info = control.request(prefix, "ping")
    fwd = forwarded(prefix, family) - fwd0
    out = {"iperf3": res, "forwarded": fwd, **proc_delta(st["pid"], s0, s1),
           "switchinterval": info["switchinterval"]}
    return out


def machine_line(info: dict | None = None) -> str:
    info = info or machine_info()
    return (f"{info['cpu_model']}, {info['cpu_count']} cores, Linux {info['kernel']}, "
            f"Python {info['python']}")


def _first_line(cmd: list[str]) -> str | None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = (r.stdout or r.stderr).strip().splitlines()
    return lines[0].strip() if r.returncode == 0 and lines else None


def git_state(path: str = ROOT) -> tuple[str | None, bool | None]:
    """(commit, modified) of the checkout at `path`; (None, None) when it
    is not a git checkout or git is missing. Tracked files only: results
    folders and other untracked files do not make it dirty."""
    if not os.path.exists(os.path.join(path, ".git")):
        return None, None
    git = ["git", "-c", f"safe.directory={path}", "-C", path]
    commit = _first_line([*git, "rev-parse", "HEAD"])
    if commit is None:
        return None, None
    try:
        r = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=20)
        dirty = bool(r.stdout.strip()) if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        dirty = None
    return commit, dirty


def iopkt_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
        return version("iopkt")
    except PackageNotFoundError:
        from iopkt import __version__
        return __version__


def machine_info() -> dict:
    """What the results depend on besides the code: CPU, kernel, Python,
    the tools' versions, and which code (version, git commit) ran."""
    import platform
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    u = os.uname()
    commit, dirty = git_state()
    return {"cpu_model": cpu, "cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)),
            "kernel": u.release, "kernel_version": u.version, "arch": u.machine,
            "python": platform.python_version(),
            "python_implementation": platform.python_implementation(),
            "iopkt_version": iopkt_version(), "git_commit": commit, "git_dirty": dirty,
            "iperf3_version": _first_line(["iperf3", "--version"]),
            "ping_version": _first_line(["ping", "-V"]),
            "packages": package_versions()}


# The Python packages a run depends on (pyproject.toml's dependencies).
PACKAGES = ("python-pytun", "pyroute2", "psutil", "scapy", "matplotlib")


def package_versions() -> dict:
    """{package: version, or None when it is not installed}."""
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


# -- latency -----------------------------------------------------------------
PING_INTERVAL = 0.002       # s between echo requests (root may go below 0.2 s)
PING_PAYLOAD = 18           # bytes: 64-byte frames (+ 8 ICMP, 20 IP, 14 Ethernet, 4 FCS)
PING_WARMUP = 10            # first requests not counted (ARP, cold caches)
LOAD_LEAD = 0.4             # s the load runs before the first echo request

_REPLY = re.compile(r"icmp_seq=(\d+) .*?time=([\d.]+) ms(.*)$")


def parse_ping(text: str, warmup: int, count: int) -> dict:
    """Per-packet RTTs from ping's reply lines, in µs, in sequence order;
    requests 1..warmup are not counted, nor duplicates."""
    got: dict[int, float] = {}
    for line in text.splitlines():
        m = _REPLY.search(line)
        if not m or "DUP!" in m.group(3):
            continue
        seq = int(m.group(1))
        if warmup < seq <= warmup + count and seq not in got:
            got[seq] = round(float(m.group(2)) * 1000, 1)
    rtts = [got[k] for k in sorted(got)]
    return {"rtts_us": rtts, "sent": count, "received": len(rtts),
            "loss_percent": 100.0 * (count - len(rtts)) / count if count else None}


def ping(ns: str, ip: str, count: int, cores: set[int] | None = None,
         interval: float = PING_INTERVAL, warmup: int = PING_WARMUP) -> dict:
    """`count` echo requests (plus `warmup` first) every `interval` from
    namespace `ns` to `ip`, with ping's own output under "output"."""
    total = count + warmup
    cmd = ["ping", "-n", "-i", f"{interval:g}", "-c", str(total), "-s", str(PING_PAYLOAD),
           "-W", "1", ip]
    p = netns.ns_popen(ns, cmd, cpus=cores, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    out, err = _finish(p, total * interval + 10, "ping")
    if "packets transmitted" not in out:
        raise BenchError(f"ping failed: {(err or out).strip()[-300:]}")
    return {**parse_ping(out, warmup, count), "output": out}


def latency(ns_a: str, ns_b: str, ip: str, seconds: float, load: list[str] | None = None,
            cores: set[int] | None = None) -> dict:
    """ping from A to B for `seconds`; with `load` (iperf3 arguments), an
    iperf3 run A -> B over the same path that starts before the first echo
    request and ends after the last. The load's iperf3 JSON under "iperf3"."""
    count = max(1, round(seconds / PING_INTERVAL))
    bg: dict = {}
    th = None
    if load is not None:
        def run_load():
            try:
                bg["iperf3"] = iperf3(ns_a, ns_b, ip, seconds + LOAD_LEAD + 1, load,
                                      cores=cores)
            except Exception as e:          # handed to the caller below
                bg["error"] = e
        th = threading.Thread(target=run_load, name="latency-load", daemon=True)
        th.start()
        time.sleep(0.3 + LOAD_LEAD)         # iperf3's server start, then the ramp
        if "error" in bg:
            raise bg["error"]
    try:
        res = ping(ns_a, ip, count, cores)
    except BaseException:
        if th is not None:                  # the load ends by itself within seconds
            th.join(timeout=5)
        raise
    if th is not None:
        th.join(timeout=seconds + 40)
        if "error" in bg:
            raise bg["error"]
        if "iperf3" not in bg:
            raise BenchError("the load's iperf3 did not finish")
        res["iperf3"] = bg["iperf3"]
    return res
