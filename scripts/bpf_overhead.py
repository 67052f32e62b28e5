"""What the capture taps cost when nobody captures (bpf.py).

A real Stack with two fake interfaces (no root, no TAP): bursts of 64
frames go in one interface (ether_input), are forwarded, and go out the
other (ether_output -> if_transmit, which frees them). Four variants of
the two Ethernet functions:

  check      the code as it is: one `if ifp.if_bpf is not None` per burst
             in ether_input and in ether_output, no capture attached
  nocheck    the same functions with the tap lines taken out, i.e. the
             code before capture existed (both compiled here from the
             module's source, the same way)
  module     the module's own functions: the same code as check, so
             module - check shows what noise alone makes of a difference
  capturing  the code as it is with a capture on each interface (the
             copy each frame costs while someone captures)

The first three alternate burst by burst, in random order, then comes
capturing. It prints the median time per burst and per frame of each, the
median difference check - nocheck and module - check with their range
over the rounds, and the test alone measured with timeit. About 5 seconds
of one core: not a benchmark of the machine.

    make bpf-overhead [ARGS='--rounds 21 --bursts 200']

(the Makefile puts tests/unit, where the unit tests' fake interfaces live,
on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import inspect
import random
import statistics
import sys
import time
import timeit

from scapy.compat import raw
from scapy.layers.inet import IP, UDP

from iopkt.net import ether
from iopkt.net.bpf import BpfDesc, bpf_attach, bpf_detach
from iopkt.stack.stack import Stack

from fakenet import Router  # the unit tests' fake interfaces: make bpf-overhead

BURST = 64
TAP_LINES = {
    "ether_input": "    if ifp.if_bpf is not None:\n        ifp.if_bpf.mtap(pkts, BPF_D_IN)\n",
    "ether_output": "    if ifp.if_bpf is not None:\n        ifp.if_bpf.mtap(pkts, BPF_D_OUT)\n",
}


def recompiled(name: str, taps: bool):
    """ether.<name> compiled again from its source, with or without its
    tap lines, in a copy of the module's namespace (same globals, same
    helpers): "check" and "nocheck" are made the same way, so they differ
    by those lines only."""
    src = inspect.getsource(getattr(ether, name))
    if TAP_LINES[name] not in src:
        sys.exit(f"bpf_overhead: the tap lines of ether.{name} are not where expected")
    ns = dict(vars(ether))
    exec(compile(src if taps else src.replace(TAP_LINES[name], ""),
                 f"<{name}{'' if taps else ' without taps'}>", "exec"), ns)
    return ns[name]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--bursts", type=int, default=200, help="bursts per variant per round")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every round")
    args = ap.parse_args()

    st = Stack("bpfbench", nmbclusters=4 * BURST)
    net = Router(st, None)
    net.learn(net.if0, Router.H0, Router.H0_MAC)
    net.learn(net.if1, Router.H1, Router.H1_MAC)
    pool = st.pool

    def transmit(ifp, pkts):                    # a driver that sends instantly
        for m in pkts:
            pool.freem(m)
    net.if1.if_transmit = transmit
    frame = raw(net.from_h0(IP(src=Router.H0, dst=Router.H1) / UDP(sport=9, dport=9)
                            / (b"x" * 18)))       # 64 bytes on the wire, without FCS
    assert len(frame) == 60

    variants = {
        "check": (recompiled("ether_input", True), recompiled("ether_output", True)),
        "nocheck": (recompiled("ether_input", False), recompiled("ether_output", False)),
        "module": (ether.ether_input, ether.ether_output),   # = check: the noise floor
        "capturing": (ether.ether_input, ether.ether_output),
    }
    caps = {}

    def one_burst(name: str) -> int:
        """ns to forward one burst of BURST frames with variant `name`."""
        fin, fout = variants[name]
        net.if0.if_input, net.if1.if_output = fin, fout
        if name == "capturing":
            for ifp in (net.if0, net.if1):
                caps[ifp] = d = BpfDesc()
                bpf_attach(ifp, d)
        ifp = net.if0
        pkts = []
        for _ in range(BURST):
            m = pool.from_bytes(frame)
            m.rcvif = ifp
            pkts.append(m)
        t0 = time.perf_counter_ns()
        fin(ifp, pkts)
        t = time.perf_counter_ns() - t0
        for d in caps.values():
            bpf_detach(d)
        caps.clear()
        assert pool.in_use == 0 and net.if0.if_bpf is None and net.if1.if_bpf is None
        return t

    names = ["check", "nocheck", "module"]
    rng = random.Random(1)
    for i in range(50):                         # warm up
        one_burst(names[i % 3])
    # The variants alternate burst by burst (each trio in a random order),
    # so each trio sees the same machine: this VM's speed changes by 40%
    # from one second to the next when its neighbours work. Capturing comes
    # after the trio, then a burst not counted: its copies would slow
    # whichever burst came next.
    per = {name: [] for name in variants}
    round_diffs, round_aa = [], []
    for r in range(args.rounds):
        diffs, aa = [], []
        for _ in range(args.bursts):
            rng.shuffle(names)
            got = {name: one_burst(name) for name in names}
            got["capturing"] = one_burst("capturing")
            one_burst("module")                 # not counted: it pays for the copies
            for name, t in got.items():
                per[name].append(t)
            diffs.append(got["check"] - got["nocheck"])
            aa.append(got["module"] - got["check"])
        round_diffs.append(statistics.median(diffs))
        round_aa.append(statistics.median(aa))
        if args.verbose:
            print(f"  round {r}: check - nocheck {round_diffs[-1]:+.0f} ns per burst, "
                  f"module - check {round_aa[-1]:+.0f}")

    print(f"{args.rounds} rounds x {args.bursts} bursts of {BURST} frames of 60 bytes, "
          "forwarded fk0 -> fk1 (ether_input ... ether_output); medians")
    med = {k: statistics.median(v) for k, v in per.items()}
    for name, v in med.items():
        print(f"  {name:10} {v / 1000:9.1f} us per burst   {v / BURST:8.0f} ns per frame")
    d = statistics.median(round_diffs)
    lo, hi = min(round_diffs), max(round_diffs)
    print(f"  check - nocheck: {d:+.0f} ns per burst (rounds from {lo:+.0f} to {hi:+.0f}), "
          f"{d / med['nocheck'] * 100:+.2f}% of a burst, {d / BURST:+.1f} ns per frame")
    a = statistics.median(round_aa)
    print(f"  module - check (the same code twice: the noise floor): {a:+.0f} ns per burst "
          f"(rounds from {min(round_aa):+.0f} to {max(round_aa):+.0f})")
    print(f"  capturing - module: {(med['capturing'] - med['module']) / BURST:+.0f} ns per frame "
          "(the copy, while a capture is open)")

    ifp = net.if0
    n = 3_000_000
    t_check = t_empty = float("inf")
    for _ in range(7):                          # interleaved, best of 7 each
        t_check = min(t_check, timeit.timeit("if ifp.if_bpf is not None: pass",
                                             globals={"ifp": ifp}, number=n) / n * 1e9)
        t_empty = min(t_empty, timeit.timeit("if ifp is None: pass",
                                             globals={"ifp": ifp}, number=n) / n * 1e9)
    print(f"  the test alone (timeit): {t_check - t_empty:.1f} ns; two per forwarded burst: "
          f"{2 * (t_check - t_empty):.0f} ns per burst = "
          f"{2 * (t_check - t_empty) / BURST:.2f} ns per frame")
    st.shutdown(quiet=True)
    st.close()


if __name__ == "__main__":
    main()
