"""A lab for devnp-afpacket: two hosts on veth pairs, the stack between.

    P-a: P-a0 198.18.0.2/24 ==veth== P-a1 (in P-n) -- afp0 [stack]
                                    [stack] afp1 -- P-b1 (in P-n) ==veth== P-b0 198.19.0.2/24 :P-b

The stack-side veth ends live in a namespace of their own (P-n, the
"NICs"), which the drivers reach with netns=; the stack runs as `python -m
iopkt run -i P` in this namespace. Everything is named after the prefix and
removed by down(), also when up() failed half way: the namespaces (and
with them the veths) and a veth end still in this namespace.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

from iopkt.bench import measure
from iopkt.ctl import control
from iopkt.lab import netns

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
A_GW, A_HOST = "198.18.0.1", "198.18.0.2"
B_GW, B_HOST = "198.19.0.1", "198.19.0.2"

# ethtool's legacy feature switches (linux/ethtool.h): struct ethtool_value.
ETHTOOL_STXCSUM = 0x17
ETHTOOL_STSO = 0x1f
ETHTOOL_SGSO = 0x24
SIOCETHTOOL = 0x8946


def ethtool_set(ns: str, ifname: str, cmd: int, on: bool) -> None:
    """`ethtool -K IF ...` for one legacy feature, inside `ns` (no ethtool
    binary needed)."""
    with netns.inside(ns):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            import array
            val = array.array("B", struct.pack("II", cmd, int(on)))
            ifr = struct.pack("16sP", ifname.encode(), val.buffer_info()[0])
            fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)


def peer_offload(ns: str, ifname: str, on: bool) -> None:
    """The host side's TSO, GSO and TX checksum offload on or off: off, it
    sends only wire-sized frames with complete checksums."""
    if on:
        for cmd in (ETHTOOL_STXCSUM, ETHTOOL_STSO, ETHTOOL_SGSO):
            ethtool_set(ns, ifname, cmd, True)
    else:
        for cmd in (ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_STXCSUM):
            ethtool_set(ns, ifname, cmd, False)


class VethLab:
    def __init__(self, prefix: str, opts_a: str = "", opts_b: str = "",
                 stack_args: tuple = (), pin: bool = False):
        assert len(prefix) <= 11, prefix
        self.prefix = p = prefix
        self.ns_a, self.ns_b, self.ns_n = f"{p}-a", f"{p}-b", f"{p}-n"
        self.host_a, self.nic_a = f"{p}-a0", f"{p}-a1"
        self.host_b, self.nic_b = f"{p}-b0", f"{p}-b1"
        self.opts_a, self.opts_b = opts_a, opts_b
        self.stack_args = list(stack_args)
        self.pin = pin
        self.proc = None
        self.log = os.path.join(control.RUN_DIR, f"afplab-{p}.log")
        self.if_a, self.if_b = "afp0", "afp1"

    # -- building ------------------------------------------------------------
    def wire(self) -> None:
        """The namespaces and veths, hosts configured; no stack yet."""
        for ns in (self.ns_a, self.ns_b, self.ns_n):
            netns.ns_create(ns)
        for host, nic, ns, (gw, addr) in ((self.host_a, self.nic_a, self.ns_a, (A_GW, A_HOST)),
                                          (self.host_b, self.nic_b, self.ns_b, (B_GW, B_HOST))):
            netns.veth_pair(host, nic)
            netns.link_move(nic, self.ns_n)
            netns.link_move(host, ns)
            netns.host_setup(ns, host, addr, 24, gw)

    def drv(self, nic: str, opts: str) -> str:
        return f"ifname={nic},netns={self.ns_n}" + (f",{opts}" if opts else "")

    def start(self, wait: float = 15.0) -> dict:
        os.makedirs(control.RUN_DIR, exist_ok=True)
        cmd = [sys.executable, "-m", "iopkt", "run", "-i", self.prefix,
               "-d", "afpacket", self.drv(self.nic_a, self.opts_a),
               "-d", "afpacket", self.drv(self.nic_b, self.opts_b),
               "--inet", f"afp0={A_GW}/24", "--inet", f"afp1={B_GW}/24", *self.stack_args]
        fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        pin = self.pin

        def child():
            if pin:
                os.sched_setaffinity(0, {0})
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                                         cwd=ROOT, start_new_session=True, preexec_fn=child)
        finally:
            os.close(fd)
        try:
            return control.wait_ready(self.prefix, wait, self.proc)
        except control.ControlError as e:
            raise AssertionError(f"stack did not start: {e}\n{self.log_text()}") from None

    def up(self) -> "VethLab":
        try:
            self.wire()
            self.start()
        except BaseException:
            self.down()
            raise
        return self

    def stop_stack(self, timeout: float = 10.0) -> int | None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return p.returncode if p else None
        p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            return None

    def down(self) -> None:
        self.stop_stack()
        for ns in (self.ns_a, self.ns_b, self.ns_n):
            for pid in netns.ns_pids(ns):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                netns.ns_remove(ns)
        for name in (self.host_a, self.nic_a, self.host_b, self.nic_b):
            with contextlib.suppress(Exception):
                netns.link_delete(name)

    def log_text(self) -> str:
        try:
            with open(self.log) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    # -- talking to it -------------------------------------------------------
    def req(self, op, **kw):
        return control.request(self.prefix, op, **kw)

    def nic(self, ifname: str) -> dict:
        return self.req("nicinfo", ifname=ifname)[0]

    def info(self, ifname: str) -> dict:
        return self.nic(ifname)["driver_info"]

    def netstat(self) -> dict:
        return self.req("netstat")

    def run(self, ns, cmd, timeout=30, check=False, cpus=None):
        p = netns.ns_popen(ns, cmd, cpus=cpus, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            raise AssertionError(f"{cmd} timed out; output: "
                                 f"{out.decode(errors='replace')}") from None
        res = subprocess.CompletedProcess(cmd, p.returncode, out.decode(errors="replace"))
        if check:
            assert res.returncode == 0, f"{cmd} failed: {res.stdout}"
        return res

    def ping(self, ns=None, dst=B_HOST, *extra, count=1):
        return self.run(ns or self.ns_a, ["ping", "-n", "-c", str(count), "-i", "0.2",
                                          "-W", "2", *extra, dst])

    def iperf(self, seconds: float = 3, reverse: bool = False, extra=(), cpus=None) -> dict:
        """iperf3 TCP from A to B (B to A with reverse); its JSON."""
        srv = measure.iperf3_server(self.ns_b, ["-B", B_HOST], cores=cpus,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            res = self.run(self.ns_a, ["iperf3", "-c", B_HOST, "-t", str(seconds), "-J",
                                       *(["-R"] if reverse else []), *extra],
                           timeout=seconds + 30, cpus=cpus)
        finally:
            try:
                srv.wait(5)
            except subprocess.TimeoutExpired:
                srv.kill()
                srv.wait()
        data = json.loads(res.stdout[res.stdout.index("{"):])
        assert "error" not in data, data["error"]
        return data

    def wait_idle_pool(self, timeout: float = 3.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            mb = self.netstat()["mbuf"]
            if (mb["clusters_in_use"] == 0 and mb["jumbo_in_use"] == 0) \
                    or time.monotonic() > deadline:
                return mb
            time.sleep(0.1)

    def nic_link(self, which: str, state: str) -> None:
        """The stack-side veth end (`which` a or b) up or down."""
        from pyroute2 import NetNS
        name = self.nic_a if which == "a" else self.nic_b
        with NetNS(self.ns_n) as n:
            n.link("set", index=n.link_lookup(ifname=name)[0], state=state)

    def host_link(self, which: str, state: str) -> None:
        """The host's veth end up or down (its peer, the stack's end, loses
        its carrier); up again, the host gets back its default route (Linux
        removed it with the link)."""
        from pyroute2 import NetNS
        ns, name, gw = (self.ns_a, self.host_a, A_GW) if which == "a" else \
            (self.ns_b, self.host_b, B_GW)
        with NetNS(ns) as n:
            n.link("set", index=n.link_lookup(ifname=name)[0], state=state)
            if state == "up":
                n.route("replace", dst="default", gateway=gw)


def mbps(iperf_json: dict) -> float:
    return iperf_json["end"]["sum_received"]["bits_per_second"] / 1e6
