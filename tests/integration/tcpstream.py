"""A TCP stream between the lab's hosts checked byte for byte: the source
sends seeded random bytes, the sink hashes what arrives."""

import subprocess
import sys

from iopkt.lab import netns

SINK = """
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5999)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    d = c.recv(65536)
    if not d: break
    h.update(d); n += len(d)
print(n, h.hexdigest(), flush=True)
"""

SOURCE = """
import hashlib, socket, random, sys
data = random.Random(7).randbytes(int(sys.argv[1]))
s = socket.create_connection((sys.argv[2], 5999)); s.sendall(data); s.close()
print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
"""


def tcp_stream(lb, nbytes: int, reverse: bool = False, timeout: float = 60) -> tuple[list, list]:
    """Send `nbytes` from A to B (B to A with `reverse`) through lab `lb`.
    Returns ([length, sha256] sent, [length, sha256] received)."""
    (src_ns, dst_ns, dst) = (lb.ns_b, lb.ns_a, "198.18.0.2") if reverse else \
        (lb.ns_a, lb.ns_b, "198.19.0.2")
    sink = netns.ns_popen(dst_ns, [sys.executable, "-c", SINK, dst], stdout=subprocess.PIPE,
                          text=True)
    try:
        assert sink.stdout.readline().strip() == "ready"
        src = lb.run(src_ns, [sys.executable, "-c", SOURCE, str(nbytes), dst], check=True,
                     timeout=timeout)
        out, _ = sink.communicate(timeout=30)
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.communicate()
    return src.stdout.split(), out.split()
