"""Nothing a control client does may stall forwarding: idle, slow, oversized
and flooding clients are cut off and counted while ping runs through the
lab, and the next valid request is answered at once."""

import json
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

from iopkt.ctl import control, server
from iopkt.lab import lab, netns

from conftest import running_lab, unique_prefix

PING_S = 3.0


def rtt_stats(out: str) -> tuple[int, int, float]:
    """(sent, received, max RTT in ms) from ping's summary."""
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    r = re.search(r"= [\d.]+/[\d.]+/([\d.]+)/", out)
    assert m and r, out
    return int(m.group(1)), int(m.group(2)), float(r.group(1))


def ping_during(lb, hostile, seconds=PING_S):
    """Ping A -> B every 10 ms while `hostile()` runs in a thread; return
    the ping output and what hostile() returned."""
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("r", hostile()))
    p = netns.ns_popen(lb.ns_a, ["ping", "-n", "-q", "-i", "0.01", "-W", "1",
                                 "-c", str(int(seconds * 100)), "198.19.0.2"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.3)                         # ping is running before the clients come
    t.start()
    out, _ = p.communicate(timeout=seconds + 10)
    t.join(15)
    return out, got.get("r")


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def timed_request(prefix):
    t0 = time.monotonic()
    res = control.request(prefix, "ping", timeout=2.0)
    return res, time.monotonic() - t0


@pytest.fixture(scope="module")
def lab_(request):
    with running_lab(lab.LabSpec(prefix=unique_prefix("cp"))) as lb:
        yield lb


@pytest.mark.alone
def test_slowloris_and_200_idle_connections_do_not_stall_forwarding(lab_):
    lb = lab_
    path = control.sock_path(lb.prefix)
    before = lb.netstat()["control"]["cut"]

    def hostile():
        idle = [connect(path) for _ in range(200)]
        slow = connect(path)
        # One byte every 0.4 s, as the probe did, with a valid request
        # between bytes; the server cuts the slow client off at its deadline.
        sent = 0
        waits = []
        try:
            for _ in range(6):
                slow.send(b"{")
                sent += 1
                time.sleep(0.2)
                waits.append(timed_request(lb.prefix)[1])
                time.sleep(0.2)
        except OSError:
            pass
        waits.append(timed_request(lb.prefix)[1])
        for s in idle + [slow]:
            s.close()
        return {"sent": sent, "waits": waits}

    out, r = ping_during(lb, hostile)
    sent, received, rtt_max = rtt_stats(out)
    assert received == sent, out
    # A server that waited for the slow client would stall for its whole
    # 1 s deadline; half of that bounds a descheduled but unblocked stack.
    assert rtt_max < 500, out               # the longest forwarding gap
    assert max(r["waits"]) < 0.5, r        # valid requests answered at once
    # Cut off at its 1 s deadline: at most its fourth byte went in (fewer
    # when a busy machine spaced them wider).
    assert 1 <= r["sent"] <= 4, r
    cut = lb.netstat()["control"]["cut"]
    # Every hostile connection was cut (they outlive their deadline), none
    # of the valid ones: the oldest were evicted by newer ones, the rest
    # (the slow one among them) ran out of time.
    evicted, idle = cut["evicted"] - before["evicted"], cut["idle"] - before["idle"]
    assert evicted + idle == 201, cut
    assert evicted >= 201 - server.MAX_CONNS, cut


@pytest.mark.alone
def test_oversized_and_flooding_clients_are_cut_and_counted(lab_):
    lb = lab_
    path = control.sock_path(lb.prefix)
    before = lb.netstat()["control"]

    def hostile():
        # Far more than a request may be, with no newline: refused, cut.
        big = connect(path)
        big.settimeout(2)
        try:
            big.sendall(b"x" * (server.MAX_REQUEST + 4096))
        except OSError:
            pass
        answer = big.recv(4096)
        big.close()
        # A connection flood, each sending garbage and leaving.
        for _ in range(300):
            s = connect(path)
            s.send(b"nonsense\n")
            s.close()
        return answer, timed_request(lb.prefix)[1]

    out, (answer, wait) = ping_during(lb, hostile)
    sent, received, rtt_max = rtt_stats(out)
    assert received == sent and rtt_max < 500, out     # never stalled (see above)
    assert wait < 0.5
    assert json.loads(answer) == {"ok": False, "usage": True,
                                  "error": f"request larger than {server.MAX_REQUEST} bytes"}
    after = lb.netstat()["control"]
    assert after["cut"]["oversized"] == before["cut"]["oversized"] + 1
    assert after["errors"] - before["errors"] == 301      # 300 nonsense + the big one


def test_a_full_backlog_is_one_line_and_lab_down_still_works(make_lab):
    import os
    import signal
    lb = make_lab()
    path = control.sock_path(lb.prefix)
    os.kill(lb.pid, signal.SIGSTOP)         # the stack accepts nothing now
    socks = []
    try:
        while len(socks) < 10000:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(path)
            except BlockingIOError:
                s.close()
                break
            socks.append(s)
        assert len(socks) < 10000
        r = subprocess.run([sys.executable, "-m", "iopkt", "netstat", "--instance", lb.prefix],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1, r
        assert r.stderr.strip() == (f"iopkt netstat: the stack '{lb.prefix}' is busy: its control "
                                    f"socket {path} has a full backlog of connections"), r.stderr
        r = subprocess.run([sys.executable, "-m", "iopkt", "lab", "down", "--prefix", lb.prefix],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r
        assert "Traceback" not in r.stderr
    finally:
        for s in socks:
            s.close()
        try:
            os.kill(lb.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert not netns.ns_exists(lb.ns_a) and not netns.ns_exists(lb.ns_b)
    assert not lab._pid_alive(lb.pid)
