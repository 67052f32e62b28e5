"""Canned answers of a stack for the CLI's unit tests (no root, no stack),
the fake behind control.request that gives them, and helpers to run the
CLI and read what it printed."""

import copy
import re
from datetime import datetime, timezone

from iopkt.cmd import cli, util
from iopkt.ctl import control
from iopkt.net.ifnet import IN_DISCARD_REASONS, OUT_DISCARD_REASONS


# -- canned answers ------------------------------------------------------------
def counters(**kw):
    c = {"ipackets": 0, "ibytes": 0, "imcasts": 0, "ierrors": 0, "iqdrops": 0, "noproto": 0,
         "opackets": 0, "obytes": 0, "omcasts": 0, "oerrors": 0, "oqdrops": 0,
         "collisions": 0, "in_discards": dict.fromkeys(IN_DISCARD_REASONS, 0),
         "out_discards": dict.fromkeys(OUT_DISCARD_REASONS, 0),
         "sw_tso": 0, "sw_tso_segs": 0, "sw_csum": 0,
         "families": {"inet": {"ipackets": 5, "opackets": 4},
                      "inet6": {"ipackets": 2, "opackets": 1},
                      "arp": {"ipackets": 0, "opackets": 1}}}
    c.update(kw)
    return c


TAP_INFO = {"driver": "devnp-tap (native, stack thread)", "tap": "lab-a0", "rx_burst": 64,
            "paced_waits": 0, "rx_interrupts": 4, "tx_blocked": 0, "rx_spill": True,
            "vnet_hdr": True, "tun_offload": "CSUM,TSO4", "tun_offload_refused": "none",
            "rx_superframes": 0, "rx_partial_csum": 0, "tx_superframes": 0,
            "tx_gso_refused": 0}
SHIM_INFO = {"driver": "devnp-shim (io-net emulation) running devn-tap in its own thread",
             "legacy_driver": "devn-tap", "shimrxcopy": 0, "lenient": 0, "rx_copied": 0,
             "rx_wrapped": 7, "rx_refused": 0, "tx_again": 0, "tx_offload_leaked": 0,
             "npkts_lent_to_stack": 0, "tx_npkts_free": 512,
             "handoff_queue": {"len": 0, "maxlen": 512, "enqueued": 7, "dequeued": 7,
                               "drops": 0, "hiwat": 1, "wakeups": 5},
             "contract_violations": {"tx_done_twice": 0, "tx_done_unknown": 0,
                                     "bad_framelen": 0, "bad_tot_iov": 0, "bad_ref_cnt": 0,
                                     "not_up": 0, "up_while_held": 0, "bad_reg_hdl": 0},
             "driver_errors": {},
             "legacy_driver_stats": {"txed_ok": 4, "octets_txed_ok": 336, "tx_failed": 0,
                                     "rxed_ok": 7, "octets_rxed_ok": 588,
                                     "rx_thread_alive": True}}


def nic(name="tap0", driver="devnp-tap", media_bps=0, info=None, inet=("198.18.0.1/24",),
        mac="02:d3:40:13:c5:0e", **ctr):
    return {"name": name, "driver": driver, "description": f"TAP {name} in netns lab-a",
            "flags": "UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST", "flags_raw": 34883,
            "mtu": 1500, "mac": mac, "inet": list(inet), "link_state": "up",
            "media_bps": media_bps, "capabilities": "0<>", "capabilities_raw": 0,
            "enabled": "0<>", "enabled_raw": 0, "counters": counters(**ctr),
            "if_snd": {"len": 0, "maxlen": 256, "enqueued": 0, "dequeued": 0, "drops": 0,
                       "hiwat": 0},
            "driver_info": copy.deepcopy(info if info is not None else TAP_INFO)}


ROUTES = [{"destination": "198.18.0.0/24", "gateway": "link#tap0", "flags": "UC",
           "interface": "tap0", "use": 3},
          {"destination": "0.0.0.0/0", "gateway": "198.18.0.2", "flags": "UGS",
           "interface": "tap0", "use": 0}]
ARP = [{"interface": "tap0", "address": "198.18.0.2", "mac": "92:57:40:bb:07:23",
        "state": "reachable", "expires_in": 1199.1, "held": 0},
       {"interface": "tap0", "address": "198.18.0.9", "mac": None, "state": "incomplete",
        "expires_in": None, "held": 2}]
NETSTAT = {"mbuf": {"mclbytes": 2048, "headroom": 128, "clusters_total": 4096,
                    "clusters_in_use": 0, "clusters_free": 4096, "clusters_hiwat": 9,
                    "cluster_drops": 0, "ext_total": 512, "ext_in_use": 0, "ext_hiwat": 0,
                    "ext_drops": 0, "jumbo_bytes": 65536, "jumbo_total": 256,
                    "jumbo_in_use": 1, "jumbo_hiwat": 2, "jumbo_drops": 0},
           "ip": {"total": 6, "forward": 6}, "icmp": {"inhist": {}, "outhist": {}},
           "arp": {"rxrequests": 1}, "bpf": {"open": 0},
           "stack": {"loops": 1, "wakeups": 1, "handler_errors": 0},
           "control": {"requests": 1}}


def run(argv, capsys):
    """cli.main(argv) -> (exit code, stdout, stderr)."""
    code = 0
    try:
        cli.main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def parse_ts(text: str) -> datetime:
    """An ISO 8601 UTC timestamp with milliseconds, as the CLI writes it."""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text), text
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)



def fake_stack(monkeypatch):
    """A fake stack behind control.request: answers[op] is the answer (a
    list of answers is given one per call, the last one repeated; an
    exception is raised). `calls` records (instance, op, args)."""
    class Fake:
        calls = []
        answers = {"nicinfo": [nic(), nic("en0", "devnp-shim", info=SHIM_INFO,
                                          inet=("198.19.0.1/24",), mac="02:6b:5a:e4:e7:f9")],
                   "ifconfig": [nic()], "route": ROUTES, "arp": ARP, "netstat": NETSTAT,
                   "mount": {"mounted": "tap0", "driver": "devnp-tap", "description": "x"},
                   "detach": {"detached": "tap0", "mbufs_in_use": 0}}
        seq = {}

        def __call__(self, instance, op, timeout=5.0, **args):
            self.calls.append((instance, op, args))
            if op in self.seq:
                q = self.seq[op]
                ans = q.pop(0) if len(q) > 1 else q[0]
            else:
                ans = self.answers[op]
            if isinstance(ans, Exception):
                raise ans
            return copy.deepcopy(ans)
    fake = Fake()
    fake.calls = []
    monkeypatch.setattr(util, "need_root", lambda: None)
    monkeypatch.setattr(control, "request", fake)
    monkeypatch.delenv("SOCK", raising=False)
    return fake
