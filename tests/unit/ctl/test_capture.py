"""Capture streams over the control socket (control.py's `capture`, bpf.py)
and the `iopkt capture` client (capture.py), against a real Stack whose
loop runs in a thread, with fake interfaces fed from the test through a
soft interrupt (so every frame is injected in the stack thread)."""

import gc
import io
import json
import os
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from iopkt.cmd import capture
from iopkt.ctl import control, ops, server
from iopkt.ctl.control import UsageError
from iopkt.ctl.server import ControlServer
from iopkt.net import bpf
from iopkt.net.bpf import BPF_D_IN, BPF_D_OUT, BPF_END, parse_records
from iopkt.stack.stack import Stack

from fakenet import Router as R
from fakenet import inject

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


class Served:
    """A stack with two fake interfaces (fk0, fk1: the Router of
    fakenet.py, neighbours known) and its control server, its loop in a
    thread; call() runs a function in that thread and waits for it."""

    def __init__(self, tmp_path):
        self.st = Stack("unit", nmbclusters=1024)
        self.net = R(self.st, None)
        self.net.learn(self.net.if0, R.H0, R.H0_MAC)
        self.net.learn(self.net.if1, R.H1, R.H1_MAC)
        self.srv = ControlServer(self.st, "unit")
        self.jobs = queue.Queue()
        self.st.softint_establish(self._run_jobs)
        self.gaps = {"last": None, "max": 0.0}
        self.st.timeout(0.005, self._tick)
        self.thread = threading.Thread(target=self.st.run)
        self.thread.start()

    def _tick(self):
        now = time.monotonic()
        if self.gaps["last"] is not None:
            self.gaps["max"] = max(self.gaps["max"], now - self.gaps["last"])
        self.gaps["last"] = now
        self.st.timeout(0.005, self._tick)

    def _run_jobs(self):
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return
            job()

    def call(self, fn, *args):
        done = threading.Event()
        box = {}

        def job():
            try:
                box["r"] = fn(*args)
            except BaseException as e:      # handed to the test thread
                box["e"] = e
            finally:
                done.set()
        self.jobs.put(job)
        self.st.wakeup()
        assert done.wait(5), "the stack thread did not run the job"
        if "e" in box:
            raise box["e"]
        return box.get("r")

    def pings(self, n, start=0, size=40):
        """n echo requests H0 -> H1 as one burst on fk0 (forwarded out fk1)."""
        frames = [self.net.from_h0(IP(src=R.H0, dst=R.H1) / ICMP(id=0x77, seq=start + i)
                                   / (b"p" * size)) for i in range(n)]
        self.call(inject, self.net.if0, *frames)
        return frames

    def close(self):
        self.st.stop()
        self.thread.join(5)
        assert not self.thread.is_alive()
        self.srv.close()
        self.st.close()


@pytest.fixture
def served(tmp_path, monkeypatch):
    monkeypatch.setattr(control, "RUN_DIR", str(tmp_path))
    # Deadlines long enough for a client thread descheduled on a busy
    # machine; the tests of the deadlines themselves shorten them.
    monkeypatch.setattr(server, "REQUEST_TIMEOUT", 5.0)
    monkeypatch.setattr(server, "ANSWER_TIMEOUT", 5.0)
    # What earlier tests left on this process's heap is not the stack's:
    # keep the garbage collector's full passes over it out of the timings.
    gc.collect()
    gc.freeze()
    s = Served(tmp_path)
    yield s
    s.close()
    gc.unfreeze()
    assert s.st.pool.in_use == 0


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def read_to_eof(sock, timeout=3.0):
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return data
        data += chunk


def stream(**args):
    return control.open_stream("unit", "capture", **args)


# -- the stream --------------------------------------------------------------
def test_header_then_count_frames_then_the_trailer(served):
    sock, header, rest = stream(ifname="fk0", count=3)
    assert header["capture"] == "fk0" and header["count"] == 3
    assert header["record"] == bpf.REC.format and header["linktype"] == 1
    sent = served.pings(5)
    recs, off = parse_records(rest + read_to_eof(sock))
    sock.close()
    assert [(d, f) for _, d, f, _w in recs[:3]] == [(BPF_D_IN, bytes(f)) for f in sent[:3]]
    assert recs[3][1] == BPF_END
    assert recs[3][2]["reason"] == "count" and recs[3][2]["captured"] == 3
    assert len(recs) == 4
    wait_for(lambda: not served.srv.streams)
    assert served.net.if0.if_bpf is None
    assert served.srv.capture_stats()["bpf"] == {"open": 0, "captured": 3, "dropped": 0,
                                                 "refused": 0}


@pytest.mark.parametrize("args,usage,needle", [
    ({"ifname": "zz0"}, False, "no interface 'zz0'"),
    ({"ifname": "fk0", "direction": "sideways"}, True, "direction 'sideways'"),
    ({"ifname": "fk0", "count": -1}, True, "count -1"),
    ({"ifname": "fk0", "count": "3"}, True, "argument 'count' is str"),
    ({"ifname": "fk0", "conn": 1}, True, "unknown argument 'conn'"),
    ({}, True, "missing 1 required positional argument: 'ifname'"),
])
def test_a_bad_capture_request_is_refused_in_one_answer(served, args, usage, needle):
    with pytest.raises(control.ControlError, match=needle) as e:
        stream(**args)
    assert e.value.usage is usage
    assert not served.srv.streams and served.net.if0.if_bpf is None
    assert control.request("unit", "ping")["name"] == "unit"


def test_the_client_closing_ends_the_capture(served):
    sock, _, _ = stream(ifname="fk1", direction="out")
    served.pings(2)
    wait_for(lambda: served.srv.capture_stats()["bpf"]["captured"] == 2)
    sock.close()
    wait_for(lambda: not served.srv.streams)
    assert served.net.if1.if_bpf is None
    served.pings(2)                                 # nothing taps any more
    assert served.srv.capture_stats()["bpf"]["captured"] == 2


def test_shutting_down_the_sending_side_gets_the_rest_and_the_counts(served):
    sock, _, rest = stream(ifname="fk1")
    sent = served.pings(4)
    wait_for(lambda: served.srv.capture_stats()["bpf"]["captured"] == 4)
    sock.shutdown(socket.SHUT_WR)
    recs, _ = parse_records(rest + read_to_eof(sock))
    sock.close()
    assert [d for _, d, _, _w in recs] == [BPF_D_OUT] * 4 + [BPF_END]
    assert [Ether(f)[ICMP].seq for _, _, f, _w in recs[:4]] == [0, 1, 2, 3]
    assert Ether(recs[0][2])[IP].ttl == Ether(bytes(sent[0]))[IP].ttl - 1
    assert recs[-1][2]["reason"] == "client" and recs[-1][2]["captured"] == 4


def test_the_deadlines_do_not_cut_a_quiet_capture(served, monkeypatch):
    monkeypatch.setattr(server, "REQUEST_TIMEOUT", 0.3)
    monkeypatch.setattr(server, "ANSWER_TIMEOUT", 0.3)
    sock, _, rest = stream(ifname="fk0")
    time.sleep(1.0)                                 # > REQUEST_TIMEOUT + ANSWER_TIMEOUT
    served.pings(1)
    sock.settimeout(10)
    data = rest
    while not parse_records(data)[0]:
        data += sock.recv(65536)
    assert parse_records(data)[0][0][1] == BPF_D_IN
    assert served.srv.cut == {"idle": 0, "oversized": 0, "evicted": 0, "unread": 0,
                              "reset": 0}
    sock.close()


def test_detach_tells_the_client(served):
    sock, _, rest = stream(ifname="fk0")
    served.pings(1)
    served.call(served.st.if_detach, served.net.if0)
    recs, _ = parse_records(rest + read_to_eof(sock))
    sock.close()
    assert [d for _, d, _, _w in recs] == [BPF_D_IN, BPF_END]
    assert recs[-1][2]["reason"] == "detached"
    wait_for(lambda: not served.srv.streams)


@pytest.mark.alone
def test_a_reader_that_never_reads_gets_drops_not_a_stalled_stack(served, monkeypatch):
    monkeypatch.setattr(ops, "BPF_BUFSIZE", 256 * 1024)
    sock, _, rest = stream(ifname="fk0")           # and then it reads nothing
    n = 0
    for _ in range(40):
        served.pings(50, start=n, size=1400)
        n += 50
        assert control.request("unit", "ping")["name"] == "unit"    # still answering
    st = served.srv.capture_stats()
    cap = st["captures"][0]
    assert cap["dropped"] > 0 and cap["captured"] + cap["dropped"] == n == 2000
    assert cap["pending"] <= 256 * 1024 + 4096
    assert st["bpf"]["dropped"] == cap["dropped"]
    assert served.net.if0.counters()["bpf_dropped"] == cap["dropped"]
    assert len(served.net.if1.sent) == n            # forwarding lost nothing
    assert served.gaps["max"] < 2.0                 # never blocked on the reader
    assert served.srv.cut["unread"] == 0            # held, not cut, while capturing
    # It reads at last: every frame it was counted as getting, in order, then the counts.
    sock.shutdown(socket.SHUT_WR)
    recs, _ = parse_records(rest + read_to_eof(sock))
    sock.close()
    seqs = [Ether(f)[ICMP].seq for _, d, f, _w in recs if d != BPF_END]
    assert len(seqs) == cap["captured"] and seqs == sorted(seqs)
    assert recs[-1][2]["captured"] == cap["captured"]
    assert recs[-1][2]["dropped"] == cap["dropped"]


def test_an_ended_capture_that_is_never_read_is_cut(served, monkeypatch):
    sock, _, _ = stream(ifname="fk0", count=5)
    served.pings(5, size=1400)
    wait_for(lambda: served.srv.cut["unread"] == 0 and not served.srv.streams, 10)
    assert served.srv.cut["unread"] == 0            # the socket buffer took it all
    sock.close()
    monkeypatch.setattr(ops, "BPF_BUFSIZE", 1 << 20)
    monkeypatch.setattr(server, "ANSWER_TIMEOUT", 0.3)
    sock, _, _ = stream(ifname="fk0", count=300)    # 430 KB: more than the socket takes
    for i in range(6):
        served.pings(50, start=50 * i, size=1400)
    assert served.srv.capture_stats()["bpf"]["dropped"] == 0
    wait_for(lambda: served.srv.cut["unread"] == 1)     # ANSWER_TIMEOUT after its end
    assert not served.srv.streams
    sock.close()


def test_several_captures_on_one_interface_and_a_limit(served, monkeypatch):
    monkeypatch.setattr(ops, "MAX_CAPTURES", 2)
    a, _, ra = stream(ifname="fk0", count=2)
    b, _, rb = stream(ifname="fk0", count=2, direction="in")
    with pytest.raises(control.ControlError, match="2 captures are open already") as e:
        stream(ifname="fk1")
    assert not e.value.usage
    served.pings(2)
    for s, rest in ((a, ra), (b, rb)):
        recs, _ = parse_records(rest + read_to_eof(s))
        s.close()
        assert [d for _, d, _, _w in recs] == [BPF_D_IN, BPF_D_IN, BPF_END]
    assert served.srv.capture_stats()["bpf"]["refused"] == 1


def test_a_capture_is_never_evicted_by_new_connections(served, monkeypatch):
    monkeypatch.setattr(server, "MAX_CONNS", 3)
    sock, _, rest = stream(ifname="fk0", count=1)
    idle = []
    for _ in range(5):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(served.srv.path)
        idle.append(s)
    wait_for(lambda: served.srv.accepted == 6)
    assert served.srv.cut["evicted"] == 3
    served.pings(1)
    recs, _ = parse_records(rest + read_to_eof(sock))
    assert [d for _, d, _, _w in recs] == [BPF_D_IN, BPF_END]
    for s in idle + [sock]:
        s.close()


def test_netstat_and_nicinfo_show_the_counts(served):
    sock, _, _ = stream(ifname="fk0", direction="in")
    served.pings(3)
    ns = control.request("unit", "netstat")
    assert ns["bpf"]["open"] == 1 and ns["bpf"]["captured"] == 3
    assert ns["captures"][0]["ifname"] == "fk0" and ns["captures"][0]["direction"] == "in"
    nic = control.request("unit", "nicinfo", ifname="fk0")[0]
    assert nic["counters"]["bpf_captured"] == 3 and nic["counters"]["bpf_dropped"] == 0
    sock.close()


# -- the client: iopkt capture ------------------------------------------------
def run_client(served, **kw):
    """capture.run in a thread (as the CLI runs it); returns (thread, box)."""
    box = {"out": kw.pop("stdout", None) or io.StringIO(), "err": io.StringIO()}
    wait_for(lambda: not served.srv.streams)        # an earlier one may be closing still

    def go():
        box["code"] = capture.run("unit", kw.pop("ifname", "fk0"), stdout=box["out"],
                                  stderr=box["err"], **kw)
    t = threading.Thread(target=go)
    t.start()
    wait_for(lambda: served.srv.streams)
    return t, box


def test_client_writes_pcapng_with_directions(served, tmp_path):
    path = str(tmp_path / "cap.pcapng")
    t, box = run_client(served, write=path, count=6, pcapng=True)
    t0 = time.time()
    served.pings(3)                                     # in on fk0
    served.call(inject, served.net.if1, *[served.net.from_h1(
        IP(src=R.H1, dst=R.H0) / ICMP(type=0, id=0x77, seq=i)) for i in range(3)])  # out
    t.join(5)
    t1 = time.time()
    assert box["code"] == 0
    pk = rdpcap(path)
    assert len(pk) == 6
    assert [p.direction for p in pk] == [BPF_D_IN] * 3 + [BPF_D_OUT] * 3
    assert [p[ICMP].type for p in pk] == [8] * 3 + [0] * 3
    assert [p[ICMP].seq for p in pk] == [0, 1, 2, 0, 1, 2]
    assert all(p.sniffed_on == "fk0" for p in pk)
    # Stamped when the stack saw them, between the first injection and the
    # end (pcapng keeps microseconds).
    times = [float(p.time) for p in pk]
    assert t0 - 1e-6 <= times[0] and times == sorted(times) and times[-1] <= t1, (t0, times, t1)
    assert box["err"].getvalue().splitlines()[-1] == "6 frames captured, 0 dropped by a slow reader"


# scapy's summary of the echo requests pings() sends (40 bytes of payload).
SUMMARY = "IP / ICMP 10.0.0.2 > 10.0.1.2 echo-request 0 / Raw"


def test_client_prints_a_line_per_frame(served):
    t, box = run_client(served, count=2, direction="in")
    served.pings(2)
    t.join(5)
    lines = box["out"].getvalue().splitlines()
    assert len(lines) == 2 and box["code"] == 0
    for ln in lines:
        assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{6} In  " + re.escape(SUMMARY) + ", length 82",
                            ln), ln
    t, box = run_client(served, count=1, as_json=True)
    served.pings(1)
    t.join(5)
    obj = json.loads(box["out"].getvalue())
    assert obj["direction"] == "in" and obj["length"] == 82 and obj["summary"] == SUMMARY


def test_a_filter_takes_only_its_frames_and_the_counts_say_what_it_saw(served):
    t, box = run_client(served, count=2, filter="icmp[icmptype] = icmp-echo and icmp[7] & 1 = 1")
    served.pings(6)                                 # seq 0..5: the odd ones match
    t.join(5)
    lines = box["out"].getvalue().splitlines()
    assert box["code"] == 0 and len(lines) == 2
    err = box["err"].getvalue().splitlines()
    assert err[0].startswith("listening on fk0 (fake), filter 'icmp[icmptype] = icmp-echo "
                             "and icmp[7] & 1 = 1', link-type EN10MB (Ethernet), snapshot "
                             "length 262144 bytes, both")
    # In: 0 1 2 3 (the second match ends it); out: never reached (one burst in first).
    assert err[-1] == "2 frames captured, 4 seen by the filter, 0 dropped by a slow reader"


def test_a_bad_filter_is_a_usage_error_naming_it(served):
    with pytest.raises(control.ControlError) as e:
        capture.run("unit", "fk0", filter="icmp and")
    assert e.value.usage and str(e.value).startswith("capture: filter 'icmp and': ")
    assert served.srv.streams == {}


def test_e_and_v_print_the_link_header_and_the_ip_fields(served):
    t, box = run_client(served, count=1, direction="in", show=capture.Show(True, 1, True))
    served.pings(1)
    t.join(5)
    first, *dump = box["out"].getvalue().splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{6} In  " + re.escape(
        f"{R.H0_MAC} > {R.MAC0}, ethertype IPv4 (0x0800), length 82: " + SUMMARY
        + " (tos 0x0, ttl 64, id 1, offset 0, flags [none], proto 1, length 68), length 82"),
        first), first
    assert dump[0].startswith("0000  02 00 00 00 00 01 02 AA") and len(dump) == 6


def test_snaplen_keeps_the_first_bytes_and_the_file_says_the_wire_length(served, tmp_path):
    path = str(tmp_path / "cut.pcap")
    t, box = run_client(served, count=2, direction="in", write=path, snaplen=34)
    served.pings(2)
    t.join(5)
    pk = rdpcap(path)
    assert [(len(p), p.wirelen) for p in pk] == [(34, 82), (34, 82)]
    assert all(p[IP].src == R.H0 for p in pk)       # the headers are all there


def test_client_says_the_interface_was_unmounted(served):
    t, box = run_client(served, ifname="fk1")
    served.pings(2)
    wait_for(lambda: served.srv.capture_stats()["bpf"]["captured"] == 2)
    served.call(served.st.if_detach, served.net.if1)
    t.join(5)
    assert box["code"] == 1
    assert box["err"].getvalue().splitlines()[-2:] == [
        "2 frames captured, 0 dropped by a slow reader", "iopkt capture: fk1 was unmounted"]


def test_client_ends_cleanly_when_its_pipe_reader_leaves(served):
    r, w = os.pipe()
    out = os.fdopen(w, "w")
    t, box = run_client(served, write="-", stdout=out)
    served.pings(1)
    head = os.read(r, 4)
    assert head == b"\xd4\xc3\xb2\xa1"                 # a pcap file header, as tcpdump -w
    os.close(r)                                      # the reader leaves
    for i in range(5):
        served.pings(1, start=i)
        if not t.is_alive():
            break
        time.sleep(0.1)
    t.join(5)
    assert box["code"] == 0
    # The frames written before the broken pipe showed, at most the six
    # sent; none dropped by the stack's bound.
    last = box["err"].getvalue().splitlines()[-1]
    m = re.fullmatch(r"(\d+) frames? captured, 0 dropped by a slow reader", last)
    assert m and int(m.group(1)) <= 6, last
    wait_for(lambda: not served.srv.streams)
    out.close()


def test_ctrl_c_ends_the_capture_with_its_counts(served, tmp_path):
    """SIGINT to a real `capture.run` process: exit 0, the counts, and a
    file scapy reads; the stack's capture ends."""
    path = str(tmp_path / "c.pcapng")
    code = ("import sys; from iopkt.cmd import capture; "
            f"sys.exit(capture.run('unit', 'fk0', {path!r}))")
    env = {**os.environ, "IOPKT_RUN_DIR": control.RUN_DIR, "PYTHONPATH": ROOT}
    p = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE,
                         text=True)
    try:
        wait_for(lambda: served.srv.streams, 10)
        served.pings(3)
        wait_for(lambda: os.path.exists(path) and os.path.getsize(path) > 300)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert err.splitlines()[-1] == "3 frames captured, 0 dropped by a slow reader", err
    assert [q[ICMP].seq for q in rdpcap(path)] == [0, 1, 2]
    wait_for(lambda: not served.srv.streams)
    assert served.net.if0.if_bpf is None


def test_summary_lines_in_a_fresh_interpreter(served):
    """The text mode parses IP by itself (no test module imported scapy's
    inet layers for it)."""
    code = ("import sys; from iopkt.cmd import capture; "
            "sys.exit(capture.run('unit', 'fk0', None, 2))")
    env = {**os.environ, "IOPKT_RUN_DIR": control.RUN_DIR, "PYTHONPATH": ROOT}
    p = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: served.srv.streams, 10)
        served.pings(2)
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d\.\d{6} In  " + re.escape(SUMMARY) + ", length 82",
                            x) for x in lines), lines


def test_stream_request_without_a_connection_is_refused(served):
    ans = served.call(served.srv.handle, b'{"op": "capture", "args": {"ifname": "fk0"}}')
    assert ans["ok"] is False and ans["usage"] is True
    assert "connection of its own" in ans["error"]
    with pytest.raises(UsageError):
        stream(ifname="fk0", direction=3)


def _pcapng_blocks(data: bytes) -> list[tuple[int, int]]:
    """(block type, total length) of each whole block of a pcapng file."""
    out, off = [], 0
    while off + 8 <= len(data):
        kind, n = struct.unpack_from("<II", data, off)
        if off + n > len(data):
            break
        out.append((kind, n))
        off += n
    return out


class _FillsUp:
    """A file that takes `room` bytes, then fails as a full disk does."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(28, "No space left on device")
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)


@pytest.mark.parametrize("burst", [1, 10])
def test_a_full_disk_ends_the_capture_with_what_was_written(served, tmp_path, monkeypatch,
                                                            burst):
    """ENOSPC mid-capture: one line saying how many frames reached which
    file, exit 1; those frames are in the file (also those the failure
    caught unflushed, in one burst), and the stack's stream ended in order."""
    path = str(tmp_path / "full.pcapng")
    real = capture._open_sink
    header = {}

    def small_disk(*a):
        sink = real(*a)
        header["bytes"] = sink.w.f.tell()          # written before the disk fills
        sink.w.f = _FillsUp(sink.w.f, 2000)        # room for a few frames
        return sink
    monkeypatch.setattr(capture, "_open_sink", small_disk)
    t, box = run_client(served, write=path, pcapng=True)
    for i in range(0, 10, burst):
        served.pings(burst, start=i, size=200)
    t.join(5)
    assert box["code"] == 1
    last = box["err"].getvalue().splitlines()[-1]
    saved = len(rdpcap(path))
    # As many whole frames as 2000 bytes hold after the header (fk0's
    # interface block, then a block of one size per frame: equal pings):
    # the next one would not have fit.
    with open(path, "rb") as f:
        data = f.read()
    blocks = _pcapng_blocks(data)
    frame = [n for kind, n in blocks if kind == 6]              # enhanced packet blocks
    used = len(data) - header["bytes"]
    assert len(frame) == saved and set(frame) == {frame[0]}
    assert used <= 2000 < used + frame[0], (used, blocks)
    assert last == (f"iopkt capture: {path}: No space left on device; {saved} "
                    f"frame{'s' if saved != 1 else ''} written to {path} before it"), last
    wait_for(lambda: not served.srv.streams)
    assert control.request("unit", "netstat")["bpf"]["open"] == 0
