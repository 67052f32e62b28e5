"""The plain Python TAP-to-TAP relay: the baseline iopkt is measured against.

No stack, no mbufs, no routing: two TAPs, one epoll loop, os.read() from one
and os.write() to the other. Whatever it costs is the floor for any Python
forwarder on this machine. Frames the other TAP cannot take are dropped
(and counted) as a plain relay would.

With --offload both TAPs are opened with IFF_VNET_HDR and TUNSETOFFLOAD
(CSUM, TSO4, TSO6): the kernel hands over TCP super-frames of up to 64 KB with
partial checksums, and the relay writes them out as they came, virtio-net
header and all. That is the ceiling for a forwarder with offload.

    python -m iopkt.bench.tap_relay --tap-a NAME --tap-b NAME [--offload]   # until SIGINT/SIGTERM
"""

import argparse
import json
import os
import select
import signal
import sys

import pytun

from iopkt.net import vnet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tap-a", required=True)
    ap.add_argument("--tap-b", required=True)
    ap.add_argument("--burst", type=int, default=64)
    ap.add_argument("--offload", action="store_true",
                    help="virtio-net headers, checksum offload and TSO: relay super-frames")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("tap_relay: needs root (CAP_NET_ADMIN) to open TAPs")
    flags = pytun.IFF_TAP | pytun.IFF_NO_PI | (pytun.IFF_VNET_HDR if args.offload else 0)
    taps = [pytun.TunTapDevice(name=n, flags=flags) for n in (args.tap_a, args.tap_b)]
    fds = [t.fileno() for t in taps]
    for fd in fds:
        os.set_blocking(fd, False)
        if args.offload:
            vnet.set_vnet_hdr_sz(fd)
            # TSO6 too: IPv6 super-frames relayed whole, the ceiling for TSO6
            vnet.set_offload(fd, vnet.TUN_F_CSUM | vnet.TUN_F_TSO4 | vnet.TUN_F_TSO6)
        else:
            vnet.set_offload(fd, 0)
    peer = {fds[0]: fds[1], fds[1]: fds[0]}
    counts = {"frames": 0, "bytes": 0, "dropped": 0}
    ep = select.epoll()
    for fd in fds:
        ep.register(fd, select.EPOLLIN)
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    signal.signal(signal.SIGINT, lambda *_: stop.__setitem__(0, True))
    print("ready", flush=True)
    read, write, burst = os.read, os.write, args.burst
    frames = nbytes = dropped = 0
    while not stop[0]:
        try:
            events = ep.poll(0.5)
        except InterruptedError:
            continue
        for fd, _ in events:
            out = peer[fd]
            for _ in range(burst):
                try:
                    f = read(fd, 65536 + 64)
                except BlockingIOError:
                    break
                except OSError:
                    stop[0] = True
                    break
                try:
                    write(out, f)
                    frames += 1
                    nbytes += len(f)
                except BlockingIOError:
                    dropped += 1
                except OSError:
                    stop[0] = True
                    break
    counts.update(frames=frames, bytes=nbytes, dropped=dropped)
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
