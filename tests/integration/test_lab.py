"""The lab's life cycle, the CLI against a live stack, and failure paths."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from iopkt.bench import measure
from iopkt.ctl import control
from iopkt.lab import lab, netns

VETH_NATIVE, VETH_LEGACY = lab.LINK_DRIVERS["veth"]


def iopkt(*args, **kw):
    return subprocess.run([sys.executable, "-m", "iopkt", *args], capture_output=True,
                          text=True, timeout=60, **kw)


def leftovers(prefix):
    """What a lab left behind, over TAPs or veth pairs; its log is kept on
    purpose, so not counted."""
    names = [f"{prefix}-a", f"{prefix}-b", f"{prefix}-s"]
    links = [(f"{prefix}-a0", f"{prefix}-a"), (f"{prefix}-b0", f"{prefix}-b"),
             (f"{prefix}-sa", f"{prefix}-s"), (f"{prefix}-sb", f"{prefix}-s")]
    return {
        "netns": [n for n in netns.ns_list() if n in names],
        "links": [t for t, ns in links if netns.link_exists(t) or netns.link_exists(t, ns)],
        "files": [p for p in (control.sock_path(prefix), lab.state_path(prefix))
                  if os.path.exists(p)],
    }


def status_line(out: str, p: str, head: str, tail: str) -> bool:
    """Has `lab status` output `out` lab `p`'s line, answering, as given
    around its uptime (when it says one)?"""
    return any(re.fullmatch(rf"{re.escape(f'{p}: {head} answering')}(, up [\d.]+s)?; "
                            rf"drivers {re.escape(tail)}", ln) for ln in out.splitlines())


def test_lab_up_down_via_cli_leaves_nothing(fresh_prefix):
    p = fresh_prefix
    try:
        r = iopkt("lab", "up", "--prefix", p)
        assert r.returncode == 0, r.stderr
        assert f"ip netns exec {p}-a ping" in r.stdout
        assert f"iopkt nicinfo --instance {p}\n" in r.stdout
        pid = lab.read_state(p)["pid"]
        st = iopkt("lab", "status")
        # Its own line (other labs may be up; "NOT answering" says
        # "answering" too), in full.
        assert status_line(st.stdout, p, f"over tap, IPv4 and IPv6, stack pid {pid}",
                           "devnp-tap/devnp-tap; interfaces tap0/tap1; "
                           f"namespaces {p}-a, {p}-b"), st.stdout
        nic = iopkt("nicinfo", "--instance", p)
        assert "Packets Received OK" in nic.stdout and "tap0" in nic.stdout
    finally:
        r = iopkt("lab", "down", "--prefix", p)
    assert r.returncode == 0 and "is down" in r.stdout
    assert leftovers(p) == {"netns": [], "links": [], "files": []}
    assert f"stack log kept: {lab.log_path(p)}" in r.stdout
    assert "running: tap0, tap1" in open(lab.log_path(p)).read()
    os.unlink(lab.log_path(p))
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_live_rates_sock_and_a_stack_that_goes_away(make_lab):
    """nicinfo -w against a stack forwarding pings: rates that move, chosen
    through $SOCK; when the stack stops, one line and exit 1."""
    lb = make_lab("devnp-tap", "devn-tap")
    ping = netns.ns_popen(lb.ns_a, ["ping", "-n", "-q", "-i", "0.02", "-c", "100",
                                    "198.19.0.2"], stdout=subprocess.DEVNULL)
    try:
        r = iopkt("nicinfo", "-w", "0.5", "-c", "3", "--json", lb.if_b,
                  env={**os.environ, "SOCK": lb.prefix})
    finally:
        ping.wait(timeout=30)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert len(recs) == 3 and all(rec["timestamp"].endswith("Z") for rec in recs)
    en = [rec["interfaces"][0] for rec in recs]
    assert all(e["name"] == lb.if_b for e in en)
    assert max(e["opackets_per_s"] for e in en) > 0, en       # pings cross en0
    # At least the interval asked for (a busy machine may make it longer).
    assert all(rec["interval"] >= 0.45 for rec in recs), recs
    w = subprocess.Popen([sys.executable, "-m", "iopkt", "nicinfo", "-w", "0.2",
                          "--instance", lb.prefix], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    first = ""                              # until it shows a rate line: then the stack goes
    while lb.if_a not in first:
        line = w.stdout.readline()
        assert line, w.stderr.read()
        first += line
    os.kill(lb.pid, signal.SIGTERM)
    out, err = w.communicate(timeout=30)
    out = first + out
    assert w.returncode == 1, (out, err)
    assert out.startswith("iface") and lb.if_a in out
    assert len(err.splitlines()) == 1 and f"'{lb.prefix}'" in err, err


def test_two_labs_side_by_side(make_lab):
    a = make_lab()
    b = make_lab()
    for lb in (a, b):
        r = lb.ping(lb.ns_a, "198.19.0.2", count=2)
        assert "2 received" in r.stdout, r.stdout
    a.down()
    r = b.ping(b.ns_a, "198.19.0.2", count=1)
    assert "1 received" in r.stdout


def test_down_after_crash_removes_everything(make_lab):
    lb = make_lab()
    os.kill(lb.pid, signal.SIGKILL)
    psutil.Process(lb.pid).wait(timeout=30)  # gone (or a zombie), whatever the load
    removed = lab.down(lb.prefix)["removed"]
    assert f"netns {lb.prefix}-a" in removed
    assert leftovers(lb.prefix) == {"netns": [], "links": [], "files": []}


def test_sigterm_stops_cleanly_and_returns_every_mbuf(make_lab):
    lb = make_lab()
    lb.ping(lb.ns_a, "198.19.0.2", count=3)
    measure.iperf3(lb.ns_a, lb.ns_b, "198.19.0.2", 1)      # super-frames in flight
    log = lb.state["log"]
    os.kill(lb.pid, signal.SIGTERM)
    deadline = time.time() + 30      # generous: a busy machine
    while time.time() < deadline and lab._pid_alive(lb.pid):
        lab._wait_exit(lb.pid, 0.1)
    assert not lab._pid_alive(lb.pid)
    text = open(log).read()
    assert "all 4096 mbuf clusters and 256 jumbo clusters back in the pool" in text, text
    assert not os.path.exists(control.sock_path(lb.prefix))


def test_link_loss_marks_interface_down_and_stack_keeps_running(make_lab):
    lb = make_lab()
    assert "1 received" in lb.ping(lb.ns_a, "198.19.0.2").stdout
    netns.link_delete(lb.state["tap_b"], lb.ns_b)   # the B-side TAP is gone
    deadline = time.time() + 30      # generous: a busy machine
    while time.time() < deadline:
        lb.ping(lb.ns_a, "198.19.0.2")          # makes the stack use the TAP
        nic = lb.nic(lb.if_b)
        if nic["link_state"] == "down":
            break
    assert nic["link_state"] == "down" and "UP" not in nic["flags"].split(","), nic
    assert "1 received" in lb.ping(lb.ns_a, "198.18.0.1").stdout
    text = open(lb.state["log"]).read()
    assert text.count("link lost") == 1, text


def test_route_and_ifconfig_commands(make_lab):
    lb = make_lab()
    p = lb.prefix
    r = iopkt("route", "--instance", p, "add", "198.18.77.0/24", "198.19.0.2")
    assert (r.returncode, r.stdout) == (0, "add net 198.18.77.0/24: gateway 198.19.0.2\n"), r
    shown = iopkt("route", "--instance", p, "show", "-inet").stdout
    assert any(ln.split()[:3] == ["198.18.77.0/24", "198.19.0.2", "UGS"]
               for ln in shown.splitlines()), shown
    r = iopkt("route", "--instance", p, "add", "198.18.78.0/24", "10.9.9.9")
    assert r.returncode == 1 and "not on a connected network" in r.stderr
    r = iopkt("route", "--instance", p, "delete", "198.18.77.0/24")
    assert (r.returncode, r.stdout) == (0, "delete net 198.18.77.0/24\n"), r
    assert "198.18.77.0/24" not in iopkt("route", "--instance", p, "show").stdout
    r = iopkt("ifconfig", "--instance", p, "tap9")
    assert r.returncode == 1 and "no interface 'tap9'" in r.stderr
    r = iopkt("ifconfig", "--instance", p, lb.if_a, "mtu", "1400")
    assert r.returncode == 0 and "mtu 1400" in r.stdout
    r = iopkt("netstat", "-m", "--instance", p)
    # The pool of 4096 clusters, all of them either in use or free.
    m = re.search(r"^(\d+)/(\d+)/4096 mbuf clusters in use \(current/free/max\)$", r.stdout,
                  re.M)
    assert m and int(m[1]) + int(m[2]) == 4096, r.stdout


@pytest.mark.parametrize("args,code,needle", [
    (["run", "-d", "nosuch"], 2, "no driver 'nosuch'"),
    (["run", "-d", "tap", "mtu=1400,bogus=1"], 2, "unknown option 'bogus'"),
    (["run", "-d", "tap", "mtu=big"], 2, "option mtu=big"),
    (["lab", "up", "--prefix", "much-too-long-prefix"], 2, "--prefix"),
    (["nicinfo", "--instance", "no-such-stack"], 1, "no stack named 'no-such-stack'"),
])
def test_bad_input_is_one_clear_line(args, code, needle):
    """Usage errors exit 2; no such stack is a run-time failure, 1."""
    r = iopkt(*args)
    assert r.returncode == code, r
    assert needle in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.alone
def test_link_speed_emulation_both_directions(make_lab):
    """lab up --speed 100: the drivers' speed and a tbf on each host's TAP
    (the tbf alone would hold this rate; the stack's own pacer is proven by
    test_the_stacks_own_pacer_alone_holds_100_mbits)."""
    from iopkt.bench import measure
    lb = make_lab("devnp-tap", "devn-tap", speed=100)
    for name in (lb.if_a, lb.if_b):
        assert lb.nic(name)["media_bps"] == 100_000_000
    for ns, tap in ((lb.ns_a, lb.state["tap_a"]), (lb.ns_b, lb.state["tap_b"])):
        assert "tbf" in netns.qdisc_kinds(ns, tap)
    ab = measure.received_bps(measure.iperf3(lb.ns_a, lb.ns_b, "198.19.0.2", 1))
    ba = measure.received_bps(measure.iperf3(lb.ns_b, lb.ns_a, "198.18.0.2", 1))
    # A 100 Mbit/s Ethernet carries about 94 Mbit/s of TCP payload: the
    # ceiling holds under any load; the floor only says traffic flows (a
    # busy machine may forward less: the bench measures the rate).
    lo = PACED_100M_GOODPUT[0]
    assert lo < ab < 100e6, ab
    assert lo < ba < 100e6, ba


# A paced 100 Mbit/s Ethernet carries a full TCP segment (1448 B of payload
# with timestamps) in 1514 + 24 bytes of wire time: 94.1 Mbit/s of goodput.
# A pacer that forgot the 24 bytes of preamble, FCS and gap would let
# 95.6 through; one 8x too fast, whatever the stack can forward. The
# ceiling is what proves the pacer; the floor, as in the tbf test above,
# only says the link carries traffic (a busy CPU wakes the timer late, and
# the rate itself is the bench's to measure).
PACED_100M_GOODPUT = (1e6, 95e6)


@pytest.mark.alone
def test_the_stacks_own_pacer_alone_holds_100_mbits(make_lab):
    """The drivers' speed=100 option (`lab up --options speed=100`) and no
    --speed, so no tbf anywhere: what leaves the stack towards a host is
    held to the rate by the stack's pacer alone, devn-tap's (the shim's
    legacy driver) towards B and devnp-tap's towards A. Each direction's
    TCP goodput lies where a 100 Mbit/s Ethernet puts it, and the pacer
    facing the receiver is seen holding frames back."""
    lb = make_lab("devnp-tap", "devn-tap", opts_a="speed=100", opts_b="speed=100")
    assert lb.state["speed"] == 0
    for ns, host_if in ((lb.ns_a, lb.host_if_a), (lb.ns_b, lb.host_if_b)):
        assert "tbf" not in netns.qdisc_kinds(ns, host_if), host_if     # only the stack paces
    for name in (lb.if_a, lb.if_b):
        assert lb.nic(name)["media_bps"] == 100_000_000

    def held():
        """(devnp-tap's transmits held for the rate towards A, the shim's
        transmits devn-tap deferred, TX_DOWN_AGAIN, towards B)."""
        return (lb.nic(lb.if_a)["driver_info"]["paced_waits"],
                lb.nic(lb.if_b)["driver_info"]["tx_again"])

    h0 = held()
    ab = measure.received_bps(measure.iperf3(lb.ns_a, lb.ns_b, "198.19.0.2", 1))
    h1 = held()
    ba = measure.received_bps(measure.iperf3(lb.ns_b, lb.ns_a, "198.18.0.2", 1))
    h2 = held()
    lo, hi = PACED_100M_GOODPUT
    assert lo < ab < hi, f"A -> B {ab / 1e6:.1f} Mbit/s through devn-tap speed=100"
    assert lo < ba < hi, f"B -> A {ba / 1e6:.1f} Mbit/s through devnp-tap speed=100"
    # Each pacer held back the data it sent, hundreds of times a second.
    # Near the ceiling, each pacer must have held back what it sent (a
    # busy machine may forward below it, and then nothing needs holding).
    if ab > 0.9 * hi:
        assert h1[1] - h0[1] > 200, (h0, h1)
    if ba > 0.9 * hi:
        assert h2[0] - h1[0] > 200, (h1, h2)


def test_run_in_the_foreground_with_addresses_and_routes(fresh_prefix):
    p = fresh_prefix
    proc = subprocess.Popen(
        [sys.executable, "-m", "iopkt", "run", "-i", p, "-d", "tap", f"name={p}-a0",
         "-d", "devn-tap", f"name={p}-b0", "--inet", "tap0=198.18.0.1/24",
         "--inet", "en0=198.19.0.1/24", "--route", "198.18.77.0/24=198.19.0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        control.wait_ready(p, 10, proc)
        routes = {r["destination"]: r for r in control.request(p, "route")}
        assert routes["198.18.77.0/24"]["gateway"] == "198.19.0.2"
        assert routes["198.18.77.0/24"]["interface"] == "en0"
        assert routes["198.18.0.0/24"]["flags"] == "UC"
        ifs = {d["name"]: d for d in control.request(p, "ifconfig")}
        assert ifs["tap0"]["inet"] == ["198.18.0.1/24"] and ifs["en0"]["driver"] == "devnp-shim"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "all 4096 mbuf clusters and 256 jumbo clusters back in the pool" in err
    assert "devn-tap unmounted: 256/256 npkts back with the driver" in err
    assert not netns.link_exists(f"{p}-a0") and not netns.link_exists(f"{p}-b0")


def test_second_lab_with_the_same_prefix_is_refused(make_lab):
    lb = make_lab()
    with pytest.raises(lab.LabError, match="already up"):
        lab.up(lab.LabSpec(prefix=lb.prefix))
    assert "1 received" in lb.ping(lb.ns_a, "198.19.0.2").stdout    # the first one is intact


# -- the lab over veth pairs -------------------------------------------------
@pytest.mark.parametrize("driver", [VETH_NATIVE, VETH_LEGACY])
def test_lab_over_veth_via_cli_ping_iperf3_remount_and_nothing_left(fresh_prefix, driver):
    """lab up --link veth: the hosts' veth ends in P-a and P-b, the stack's
    in P-s; ping and iperf3 cross; status and the printed hints say veth;
    the printed mount command brings an unmounted side back; lab down
    removes all of it, P-s too."""
    p = fresh_prefix
    try:
        up = iopkt("lab", "up", "--prefix", p, "--link", "veth", "--driver", driver)
        assert up.returncode == 0, up.stderr
        assert f"lab '{p}' is up over veth pairs" in up.stdout, up.stdout
        assert f"{p}-sa and {p}-sb are in {p}-s" in up.stdout, up.stdout
        assert f"ip netns exec {p}-a ping" in up.stdout
        assert "The veth pairs stay" in up.stdout and "TAP" not in up.stdout, up.stdout
        st = lab.read_state(p)
        assert st["link"] == "veth" and st["ns_s"] == f"{p}-s"
        assert st["driver_a"] == st["driver_b"] == driver
        assert st["mount_b"] == (f"iopkt mount --instance {p} {driver} "
                                 f"ifname={p}-sb,netns={p}-s")
        # Where everything is: the hosts' ends with addresses, the stack's
        # ends up in P-s without any, and nothing of it in the root namespace.
        assert netns.link_exists(f"{p}-a0", f"{p}-a") and netns.link_exists(f"{p}-sa", f"{p}-s")
        assert not netns.link_exists(f"{p}-a0") and not netns.link_exists(f"{p}-sa")
        from pyroute2 import NetNS
        with NetNS(f"{p}-s") as n:
            for port in (f"{p}-sa", f"{p}-sb"):
                idx = n.link_lookup(ifname=port)[0]
                assert not n.get_addr(index=idx), port
                assert n.get_links(idx)[0].get_attr("IFLA_OPERSTATE") == "UP"
        # A host's end sends super-frames only to a driver that takes them.
        tso = VETH_NATIVE == driver
        off = netns.get_offloads(f"{p}-a", f"{p}-a0")
        assert (off["tso"], off["tx"]) == (tso, tso), off
        assert st["host_offload"] == [tso, tso]
        status = iopkt("lab", "status")
        assert status_line(status.stdout, p, f"over veth, IPv4 and IPv6, stack pid {st['pid']}",
                           f"{driver}/{driver}; interfaces {st['if_a']}/{st['if_b']}; "
                           f"namespaces {p}-s, {p}-a, {p}-b"), status.stdout

        r = iopkt("lab", "status", "--json")
        mine = [x for x in json.loads(r.stdout)["labs"] if x["prefix"] == p]
        assert mine[0]["link"] == "veth" and mine[0]["namespaces"][f"{p}-s"] is True

        ping = measure.ping(f"{p}-a", "198.19.0.2", 20, interval=0.01, warmup=2)
        assert ping["received"] == 20, ping["output"]
        # Both ways carry traffic (the rate is the bench's).
        res = measure.iperf3(f"{p}-a", f"{p}-b", "198.19.0.2", 1)
        assert measure.received_bps(res) > 1e6, res["end"]
        res = measure.iperf3(f"{p}-b", f"{p}-a", "198.18.0.2", 1)
        assert measure.received_bps(res) > 1e6, res["end"]

        # Unmount B's side, mount it again with the command lab up printed.
        if_b = st["if_b"]
        r = iopkt("umount", "--instance", p, if_b)
        assert r.returncode == 0, r.stderr
        assert netns.link_exists(f"{p}-sb", f"{p}-s")       # the "NIC" stays
        assert f"sudo .venv/bin/{st['mount_b']}" in up.stdout, up.stdout
        r = iopkt(*st["mount_b"].split()[1:])
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"{if_b}: "), r.stdout
        ping = measure.ping(f"{p}-a", "198.19.0.2", 10, interval=0.02, warmup=3)
        assert ping["received"] == 10, ping["output"]
    finally:
        r = iopkt("lab", "down", "--prefix", p)
    assert r.returncode == 0 and "is down" in r.stdout, r.stderr
    assert f"netns {p}-s" in r.stdout, r.stdout
    assert leftovers(p) == {"netns": [], "links": [], "files": []}
    os.unlink(lab.log_path(p))


def test_lab_over_veth_refuses_a_tap_driver_in_one_line():
    """A TAP driver cannot drive a veth: one line naming the AF_PACKET
    drivers, exit 2, nothing built (checked before anything is made)."""
    for driver, mate in (("devn-tap", VETH_LEGACY), ("devnp-tap", VETH_NATIVE)):
        r = iopkt("lab", "up", "--link", "veth", "--driver", driver, "--prefix", "nolab")
        assert r.returncode == 2, r
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert f"with --link veth use {mate}" in r.stderr, r.stderr
        assert VETH_NATIVE in r.stderr and VETH_LEGACY in r.stderr
    assert leftovers("nolab") == {"netns": [], "links": [], "files": []}


@pytest.mark.parametrize("driver", [VETH_NATIVE, VETH_LEGACY])
@pytest.mark.alone
def test_link_speed_over_veth_both_directions(make_lab, driver):
    """--speed over veth: a tbf on each host's end; towards the hosts the
    driver paces if it can (a speed option), else a tbf on the stack's end."""
    from iopkt.stack import drvload
    lb = make_lab(driver, link="veth", speed=100)
    paces = "speed" in drvload.resolve(driver).options
    for ns, host_if, port in ((lb.ns_a, lb.host_if_a, lb.state["port_a"]),
                              (lb.ns_b, lb.host_if_b, lb.state["port_b"])):
        assert "tbf" in netns.qdisc_kinds(ns, host_if)
        assert ("tbf" in netns.qdisc_kinds(lb.state["ns_s"], port)) == (not paces)
    assert lb.state["stack_tbf"] == [not paces] * 2
    ab = measure.received_bps(measure.iperf3(lb.ns_a, lb.ns_b, "198.19.0.2", 1))
    ba = measure.received_bps(measure.iperf3(lb.ns_b, lb.ns_a, "198.18.0.2", 1))
    lo = PACED_100M_GOODPUT[0]             # the ceiling is the test; the floor says it flows
    assert lo < ab < 100e6, ab
    assert lo < ba < 100e6, ba
