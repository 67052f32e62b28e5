"""The labs a bench run measures: the iopkt lab (lab/lab.py) with its stack
pinned, and the baselines: the plain Python TAP relay (tap_relay.py; with
--offload moving super-frames) and Linux itself routing. Each refuses to
start over anything of its names and takes away only what it made
(lab/ownership.py).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys

from iopkt.bench.measure import BenchError, pin
from iopkt.lab import lab, netns, ownership

RELAY = [sys.executable, "-m", "iopkt.bench.tap_relay"]
RELAY6 = ("2001:2:0:a::2", "2001:2:0:a::3")     # the relay's hosts over IPv6: one segment


@contextlib.contextmanager
def stack_lab(spec: lab.LabSpec, cores: set[int] | None = None):
    """The iopkt lab, its stack pinned to `cores`; torn down on exit."""
    st = lab.up(spec)
    try:
        if cores:
            pin(st["pid"], cores)
        yield st
    finally:
        lab.down(spec.prefix, quiet=True)


@contextlib.contextmanager
def _owned(prefix: str, spaces: list[str], links: list[str]):
    """A record (kept in memory) of what a baseline lab makes: it refuses
    to start over anything of its names, and takes away only what it
    made (ownership.py)."""
    way = ownership.in_the_way(prefix, spaces, links)
    if way:
        raise BenchError(f"prefix {prefix}: in the way, and not made by this bench: "
                         f"{', '.join(way)}; remove them or choose another --prefix")
    rec = ownership.Record.new(None, prefix)
    try:
        yield rec
    finally:
        rec.release()


@contextlib.contextmanager
def relay_lab(prefix: str, cores: set[int] | None = None, offload: bool = False,
              inet6: bool = False):
    """The baseline: hosts P-a 198.18.0.2/24 and P-b 198.18.0.3/24 on one
    Ethernet segment joined by scripts/tap_relay.py (with --offload: moving
    super-frames through virtio-net headers); with `inet6` also
    2001:2:0:a::2/64 and 2001:2:0:a::3/64 (the relay carries any frame).
    Its TAPs are the relay's (not persistent): they go with it, or with
    the namespaces."""
    lab.check_prefix(prefix)
    ns_a, ns_b, tap_a, tap_b = f"{prefix}-a", f"{prefix}-b", f"{prefix}-a0", f"{prefix}-b0"
    with _owned(prefix, [ns_a, ns_b], [tap_a, tap_b]) as rec:
        for ns in (ns_a, ns_b):
            rec.make_netns(ns)
            if inet6:
                netns.ns_ipv6(ns)       # before the TAPs move in: they take its defaults
        proc = subprocess.Popen([*RELAY, "--tap-a", tap_a, "--tap-b", tap_b,
                                 *(["--offload"] if offload else [])],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            if proc.stdout.readline().strip() != b"ready":
                raise BenchError(f"tap_relay did not start: "
                                 f"{proc.stderr.read().decode()[-300:]}")
            if cores:
                pin(proc.pid, cores)
            netns.link_move(tap_a, ns_a)
            netns.link_move(tap_b, ns_b)
            six = {ns_a: (RELAY6[0], 64, None), ns_b: (RELAY6[1], 64, None)} if inet6 else {}
            if inet6:
                # A host's first IPv6 frames (DAD, MLD) go out as its link comes
                # up; written to the other TAP while that is still down they
                # fail (EIO) and the relay, which stops on any error, ends.
                # So both links come up with IPv6 off, and it goes on after.
                for ns, tap in ((ns_a, tap_a), (ns_b, tap_b)):
                    netns.ns_sysctl(ns, f"net/ipv6/conf/{tap}/disable_ipv6", "1")
                for ns, tap in ((ns_a, tap_a), (ns_b, tap_b)):
                    netns.link_up(ns, tap)
                for ns, tap in ((ns_a, tap_a), (ns_b, tap_b)):
                    netns.ns_sysctl(ns, f"net/ipv6/conf/{tap}/disable_ipv6", "0")
            netns.host_setup(ns_a, tap_a, "198.18.0.2", 24, None, inet6=six.get(ns_a))
            netns.host_setup(ns_b, tap_b, "198.18.0.3", 24, None, inet6=six.get(ns_b))
            yield {"pid": proc.pid, "ns_a": ns_a, "ns_b": ns_b, "server_ip": "198.18.0.3",
                   "server_ip6": RELAY6[1] if inet6 else None}
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.communicate(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()


# -- process accounting ----------------------------------------------------


@contextlib.contextmanager
def kernel_lab(prefix: str, inet6: bool = False):
    """The upper bound: Linux itself routing between the same two hosts,
    over veth pairs through a router namespace P-r; with `inet6` IPv6 too,
    the lab's addresses (A 2001:2:0:a::2, B 2001:2:0:b::2, the router
    ::1 on each), all without DAD so traffic can start at once."""
    lab.check_prefix(prefix)
    ns_a, ns_r, ns_b = f"{prefix}-a", f"{prefix}-r", f"{prefix}-b"
    links = (f"{prefix}-a0", f"{prefix}-ra", f"{prefix}-b0", f"{prefix}-rb")
    with _owned(prefix, [ns_a, ns_r, ns_b], list(links)) as rec:
        for ns in (ns_a, ns_r, ns_b):
            rec.make_netns(ns)
            if inet6:
                netns.ns_ipv6(ns)       # before the veths: they take its defaults
        rec.make_veth(links[0], ns_a, links[1], ns_r)
        rec.make_veth(links[2], ns_b, links[3], ns_r)
        netns.ns_sysctl(ns_r, "net/ipv4/ip_forward", "1")
        # (address, plen, gateway) per end; A6_NET, B6_NET: (router, host, plen)
        ra6 = rb6 = ha6 = hb6 = None
        if inet6:
            netns.ns_sysctl(ns_r, "net/ipv6/conf/all/forwarding", "1")
            (ra, ha, pa), (rb, hb, pb) = lab.A6_NET, lab.B6_NET
            ra6, rb6, ha6, hb6 = (ra, pa, None), (rb, pb, None), (ha, pa, ra), (hb, pb, rb)
        netns.host_setup(ns_r, links[1], "198.18.0.1", 24, None, inet6=ra6)
        netns.host_setup(ns_r, links[3], "198.19.0.1", 24, None, inet6=rb6)
        netns.host_setup(ns_a, links[0], "198.18.0.2", 24, "198.18.0.1", inet6=ha6)
        netns.host_setup(ns_b, links[2], "198.19.0.2", 24, "198.19.0.1", inet6=hb6)
        yield {"ns_a": ns_a, "ns_b": ns_b}
