"""Every place between two lab hosts where a packet may be dropped, and the
counter each place keeps, so that a test can account for every datagram it
sent: delivered, or counted as dropped by name.

On the stack's side: each interface's drop, discard and error counters
(its own and its driver's) and the mbuf pool's. On the kernel's: in each
namespace of the lab, UDP's socket errors (a full send or receive buffer:
/proc/net/snmp and snmp6), every link's dropped counts (a TAP's full queue,
a veth or a backlog that overflowed) and every qdisc's drops.

A loaded machine may drop anywhere; a forwarder that loses a packet
without counting it shows as more lost than counted.
"""

from __future__ import annotations

import subprocess

from pyroute2 import NetNS

from iopkt.lab import netns

# A counter counts drops if its path holds one of these: BSD's words
# (in_discards and out_discards by reason, iqdrops, oerrors) and io-net's
# (rx_nobufs: no npkt for a frame; rx_not_taken; tx_failed).
DROP_WORDS = ("drop", "discard", "error", "lost", "nobufs", "not_taken", "failed",
              "too_long")
_SNMP = {"Udp:": ("InErrors", "RcvbufErrors", "SndbufErrors"),
         "Udp6": ("Udp6InErrors", "Udp6RcvbufErrors", "Udp6SndbufErrors")}


def _leaves(d, path: str):
    """(path, number) of every numeric leaf of a nested dict."""
    for k, v in d.items():
        p = f"{path}.{k}"
        if isinstance(v, dict):
            yield from _leaves(v, p)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            yield p, v


def stack_drops(lb) -> dict[str, int]:
    """The stack's own: per interface (bpf's drops are a capture's, not
    the packet's, and are left out) and the pool's."""
    out = {}
    for nic in lb.req("nicinfo"):
        for part in ("counters", "driver_info"):
            for p, v in _leaves(nic.get(part) or {}, part):
                if any(w in p for w in DROP_WORDS) and ".bpf" not in p:
                    out[f"{nic['name']}.{p}"] = v
    mb = lb.netstat()["mbuf"]
    out.update({f"mbuf.{k}": v for k, v in mb.items() if "drops" in k})
    return out


def _snmp(ns: str) -> dict[str, int]:
    out = {}
    for name in ("/proc/net/snmp", "/proc/net/snmp6"):
        p = netns.ns_popen(ns, ["cat", name], stdout=subprocess.PIPE, text=True)
        text = p.communicate(timeout=30)[0].splitlines()
        if name.endswith("6"):              # "Udp6InErrors   0"
            for line in text:
                k, _, v = line.partition(" ")
                if k in _SNMP["Udp6"]:
                    out[f"{ns}.{k}"] = int(v)
            continue
        rows = [ln.split() for ln in text if ln.startswith("Udp:")]
        for k, v in zip(rows[0][1:], rows[1][1:]):      # a names line, then a values line
            if k in _SNMP["Udp:"]:
                out[f"{ns}.Udp{k}"] = int(v)
    return out


def kernel_drops(namespaces) -> dict[str, int]:
    """In each namespace: UDP's socket errors, each link's rx and tx
    dropped, each qdisc's drops."""
    out = {}
    for ns in namespaces:
        out.update(_snmp(ns))
        with NetNS(ns) as n:
            names = {}
            for ln in n.get_links():
                name = ln.get_attr("IFLA_IFNAME")
                names[ln["index"]] = name
                st = ln.get_attr("IFLA_STATS64") or {}
                for k in ("rx_dropped", "tx_dropped", "rx_missed_errors", "rx_fifo_errors",
                          "tx_fifo_errors", "rx_over_errors"):
                    out[f"{ns}.{name}.{k}"] = st.get(k, 0)
            for q in n.get_qdiscs():
                st = q.get_attr("TCA_STATS") or {}
                out[f"{ns}.{names.get(q['index'], q['index'])}.qdisc{q['handle']:x}.drops"] = \
                    st.get("drops", 0)
    return out


def path_drops(lb) -> dict[str, int]:
    """Every drop counter on the path between the lab's hosts."""
    spaces = [lb.ns_a, lb.ns_b] + ([lb.state["ns_s"]] if lb.state.get("ns_s") else [])
    return {**stack_drops(lb), **kernel_drops(spaces)}


def moved(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The counters that moved, and by how much."""
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def tcp_buf_max(ns: str, key: str) -> int:
    """The most a TCP socket buffer may hold in namespace `ns`: the third
    field of net.ipv4.tcp_wmem or tcp_rmem (per namespace since Linux 4.15)."""
    p = netns.ns_popen(ns, ["cat", f"/proc/sys/net/ipv4/{key}"], stdout=subprocess.PIPE,
                       text=True)
    return int(p.communicate(timeout=30)[0].split()[2])
