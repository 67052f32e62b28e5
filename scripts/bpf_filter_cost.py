"""What a capture filter costs per frame (bpf_filter.py, bpf.BpfDesc.catch).

One capture (BpfDesc) is given bursts of 64 real frames (IPv4 UDP of the
size asked) from the mbuf pool, as the taps give them, in three variants
alternated round by round in random order:

  reject     a filter that takes nothing ("host 192.0.2.99"): all a frame
             the user did not ask for costs (the loop, the filter's call
             through ctypes and its run in C; no copy)
  accept     a filter that takes everything ("ip"): the filter, then the copy
  nofilter   no filter: the copy alone (what `capture IF` costs)

It prints each variant's median time per frame over the rounds, with the
range. The buffer is emptied after every burst, as a reader that keeps up
would. About 5 seconds of one core; no root.

    make bpf-filter-cost [ARGS='--rounds 21 --size 1514']
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from scapy.compat import raw
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from iopkt.kern.mbuf import MbufPool
from iopkt.net.bpf import BPF_D_IN, BpfDesc
from iopkt.net.bpf_filter import BpfProgram, lib_version

BURST = 64


class _If:
    bpf_captured = 0
    bpf_dropped = 0


def variants() -> dict:
    out = {}
    for name, kw in (("reject", {"program": BpfProgram("host 192.0.2.99")}),
                     ("accept", {"program": BpfProgram("ip")}),
                     ("nofilter", {})):
        d = BpfDesc(**kw)
        d.ifp = _If()
        out[name] = d
    return out


def per_frame(d: BpfDesc, burst: list, bursts: int) -> float:
    """Seconds per frame for `bursts` bursts through d.catch."""
    catch = d.catch
    buf = d.buf
    t = time.perf_counter()
    for _ in range(bursts):
        catch(burst, BPF_D_IN, 0.0)
        buf.clear()
    return (time.perf_counter() - t) / (bursts * len(burst))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--bursts", type=int, default=300)
    ap.add_argument("--size", type=int, default=98, help="frame size in bytes (60..1514)")
    args = ap.parse_args()
    pool = MbufPool(BURST + 8)
    pay = max(0, args.size - 42)
    frame = raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                / IP(src="198.18.0.2", dst="198.19.0.2") / UDP(sport=4000, dport=5201)
                / (b"x" * pay))
    burst = [pool.from_bytes(frame) for _ in range(BURST)]
    ds = variants()
    times = {k: [] for k in ds}
    for d in ds.values():                   # warm up
        per_frame(d, burst, 20)
    for _ in range(args.rounds):
        order = list(ds)
        random.shuffle(order)
        for k in order:
            times[k].append(per_frame(ds[k], burst, args.bursts))
    print(f"{lib_version()}; frames of {len(frame)} bytes in bursts of {BURST}, "
          f"{args.rounds} rounds of {args.bursts} bursts")
    med = {}
    for k, ts in times.items():
        med[k] = statistics.median(ts) * 1e9
        print(f"  {k:9} {med[k]:7.0f} ns/frame  [{min(ts) * 1e9:.0f}-{max(ts) * 1e9:.0f}]")
    assert ds["reject"].captured == 0 and ds["reject"].seen > 0


if __name__ == "__main__":
    main()
