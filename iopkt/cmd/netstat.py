"""`iopkt netstat`: protocol statistics, the routing table, the interface
table, the mbuf pool and live interface rates, as NetBSD's netstat -s, -r,
-i, -m, -I and -w.

What NetBSD's flags mean here (netstat(1)):
    -s          protocol statistics (the default: the stack has no sockets
                to list); -p PROTO one protocol's; -f FAMILY one family's;
                -a also the counters that are zero
    -r          the routing tables; -f one family's; -a with the
                link-layer entries (ARP and NDP) as host routes, flag L
    -i          the interface table, a <Link> row and a row per address;
                -f one family's rows
    -I IF       -i for one interface
    -w SECONDS  every SECONDS, the packets, errors and bytes in and out
                (all interfaces, or -I IF's); the first line since the
                interface started; -d adds the drops; -c COUNT lines,
                then stop
    -m          the mbuf pool
    -n          numeric: always so (iopkt never looks a name up)
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import time

from iopkt.cmd import route, util

FAMILIES = {"inet": ("ip", "icmp", "arp"), "inet6": ("ip6", "icmp6", "nd6")}
PROTOCOLS = ("ip", "icmp", "arp", "ip6", "icmp6", "nd6", "bpf")


def cmd_netstat(args) -> None:
    if args.stray:
        util.fail(f"unexpected '{' '.join(args.stray)}' (choose the stack with --instance "
                  f"NAME or {util.INSTANCE_ENV}=NAME; -i alone shows the interfaces)",
                  util.EXIT_USAGE)
    if args.count is not None and args.wait is None:
        util.fail("-c COUNT goes with -w SECONDS (the interval)", util.EXIT_USAGE)
    if args.wait is not None:
        if args.r or args.s or args.m or args.proto:
            util.fail("-w SECONDS shows interface rates: it goes with -I IF or -i, "
                      "not with -r, -s, -m or -p", util.EXIT_USAGE)
        return _watch(args)
    if args.proto and (args.r or args.i or args.m or args.iface):
        util.fail("-p PROTO goes with -s (protocol statistics)", util.EXIT_USAGE)
    if args.proto and args.f and args.proto not in FAMILIES[args.f]:
        util.fail(f"-p {args.proto} is not a protocol of -f {args.f}", util.EXIT_USAGE)
    if args.r:
        return _routes(args)
    if args.i or args.iface:
        return _interfaces(args)
    res = util.req(args, "netstat")
    if args.m:
        return util.dump(res["mbuf"]) if args.json else _print_mbufs(res["mbuf"])
    protos = ((args.proto,) if args.proto
              else FAMILIES[args.f] if args.f else PROTOCOLS)
    if args.json:       # all of it (the loop's and the control socket's too) unless -p, -f
        return util.dump({p: res[p] for p in protos if p in res}
                         if args.proto or args.f else res)
    _print_stats({p: res[p] for p in protos if p in res}, args.a)


# -- -s ------------------------------------------------------------------
def _print_stats(res: dict, zeros: bool) -> None:
    for proto, counters in res.items():
        print(f"{proto}:")
        for k, v in counters.items():
            if isinstance(v, dict):         # a histogram: icmp's inhist, outhist
                for kk, vv in v.items():
                    print(f"\t{vv} {k} {kk}")
            elif v or zeros:
                print(f"\t{v} {k}")


def _print_mbufs(mb: dict) -> None:
    print(f"{mb['clusters_in_use']}/{mb['clusters_free']}/{mb['clusters_total']} "
          "mbuf clusters in use (current/free/max)")
    print(f"{mb['clusters_hiwat']} mbuf clusters in use at most (high-water mark)")
    print(f"{mb['mclbytes']} bytes per cluster, {mb['headroom']} bytes headroom")
    print(f"{mb['ext_in_use']}/{mb['ext_total']} external-storage mbufs in use "
          f"(high-water {mb['ext_hiwat']})")
    print(f"{mb['jumbo_in_use']}/{mb['jumbo_total'] - mb['jumbo_in_use']}/"
          f"{mb['jumbo_total']} {mb['jumbo_bytes'] // 1024}k jumbo clusters in use "
          f"(current/free/max; high-water {mb['jumbo_hiwat']})")
    print(f"{mb['cluster_drops']} requests for mbufs denied")
    print(f"{mb['jumbo_drops']} requests for jumbo clusters denied")
    print(f"{mb['ext_drops']} requests for external mbufs denied")


# -- -r ------------------------------------------------------------------
def _routes(args) -> None:
    fams = [args.f] if args.f else ["inet", "inet6"]
    res = {f: util.req(args, "route", **({"family": f} if f == "inet6" else {}))
           for f in fams}
    if args.a:          # the neighbour caches, as BSD showed its llinfo routes
        for f, op in (("inet", "arp"), ("inet6", "ndp")):
            if f in res:
                res[f] = res[f] + link_routes(util.req(args, op))
    route.show_tables(res, args.json)


def link_routes(neighbours: list) -> list[dict]:
    """ARP or NDP entries as the host routes BSD's netstat -ra showed for
    them: gateway the MAC (or "incomplete"), flags UHL."""
    return [{"destination": e["address"], "gateway": e["mac"] or "incomplete",
             "flags": "UHL", "interface": e["interface"], "use": 0} for e in neighbours]


# -- -i and -I -----------------------------------------------------------
IF_TABLE_COLUMNS = (("Name", "name", "<"), ("Mtu", "mtu", ">"), ("Network", "network", "<"),
                    ("Address", "address", "<"), ("Ipkts", "ipkts", ">"),
                    ("Ierrs", "ierrs", ">"), ("Idrop", "idrop", ">"), ("Opkts", "opkts", ">"),
                    ("Oerrs", "oerrs", ">"), ("Odrop", "odrop", ">"))


def if_table(res: list, family: str | None = None) -> list[dict]:
    """netstat -i's rows from a nicinfo answer: per interface a <Link> row
    with its MAC, then one row per address with its network (IPv4, then
    IPv6; `family` keeps one family's rows alone, as -f does); each row
    carries the interface's counters, as NetBSD's netstat -i does."""
    rows = []
    for d in res:
        c = d["counters"]
        base = {"name": d["name"], "mtu": d["mtu"], "ipkts": c["ipackets"],
                "ierrs": c["ierrors"], "idrop": c["iqdrops"], "opkts": c["opackets"],
                "oerrs": c["oerrors"], "odrop": c["oqdrops"]}
        if family is None:
            rows.append({**base, "network": "<Link>", "address": d["mac"]})
        addrs = [a for f, key in (("inet", "inet"), ("inet6", "inet6"))
                 if family in (None, f) for a in d.get(key, ())]
        for a in addrs:
            ia = ipaddress.ip_interface(a.split()[0])     # "addr/plen tentative"
            rows.append({**base, "network": str(ia.network), "address": str(ia.ip)})
    return rows


def _interfaces(args) -> None:
    rows = if_table(util.req(args, "nicinfo", **({"ifname": args.iface} if args.iface
                                                 else {})), args.f)
    if args.json:
        return util.dump(rows, "interfaces")
    cols = IF_TABLE_COLUMNS
    width = {k: max([len(h)] + [len(str(r[k])) for r in rows]) for h, k, _ in cols}
    for r in [{k: h for h, k, _ in cols}, *rows]:
        print(" ".join(f"{str(r[k]):{a}{width[k]}}" for _, k, a in cols).rstrip())


# -- -w ------------------------------------------------------------------
HEADER_EVERY = 21           # lines between headers, as NetBSD's netstat -w
WATCH_KEYS = ("ipackets", "ierrors", "iqdrops", "ibytes", "opackets", "oerrors", "oqdrops",
              "obytes", "collisions")


def _totals(res: list) -> dict:
    return {k: sum(d["counters"][k] for d in res) for k in WATCH_KEYS}


def _watch(args) -> None:
    """NetBSD's interval display: a line every -w seconds with what moved
    in the interval (the first line: since the interfaces started), for
    -I IF or all interfaces together; a header every 21 lines; -c lines,
    or until Ctrl-C (exit 0)."""
    who = args.iface or "Total"
    cols = [("packets", "ipackets", 8), ("errs", "ierrors", 5)] + \
        ([("drops", "iqdrops", 5)] if args.d else []) + [("bytes", "ibytes", 10)]
    cols += [(h, "o" + k[1:], w) for h, k, w in cols] + [("colls", "collisions", 5)]
    half = sum(w + 1 for _, _, w in cols[:len(cols) // 2])
    head1 = f"{'input':>{half // 2}}{f'({who})':>{half - half // 2}}" \
        f"{'output':>{half // 2 + 3}}"
    head2 = " ".join(f"{h:>{w}}" for h, _, w in cols)
    kw = {"ifname": args.iface} if args.iface else {}
    prev = dict.fromkeys(WATCH_KEYS, 0)
    n = 0
    start = time.monotonic()
    try:
        while args.count is None or n < args.count:
            cur = _totals(util.req(args, "nicinfo", **kw))
            moved = {k: cur[k] - prev[k] if cur[k] >= prev[k] else cur[k] for k in WATCH_KEYS}
            if args.json:
                print(json.dumps({"timestamp": util.timestamp(), "interface": who,
                                       "since_start": n == 0, **moved}), flush=True)
            else:
                if n % HEADER_EVERY == 0:
                    print(head1.rstrip())
                    print(head2)
                print(" ".join(f"{moved[k]:>{w}}" for _, k, w in cols), flush=True)
            prev = cur
            n += 1
            if args.count is not None and n >= args.count:
                break
            delay = start + n * args.wait - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -args.wait:        # fell behind (stopped?): no burst of catch-up
                start = time.monotonic() - n * args.wait
    except KeyboardInterrupt:
        sys.stdout.flush()


def register(sub) -> None:
    sp = util.show_parser(sub, "netstat", "protocol statistics (-s, the default), the routing "
                          "tables (-r), the interfaces (-i, -I IF), their rates (-w SECONDS) "
                          "or the mbuf pool (-m), as NetBSD's netstat", cmd_netstat,
                          old_i=False, usage_text=__doc__.split("\n\n", 1)[1])
    mode = sp.add_mutually_exclusive_group()
    mode.add_argument("-s", action="store_true", help="protocol statistics (the default)")
    mode.add_argument("-r", action="store_true", help="the routing tables")
    mode.add_argument("-i", action="store_true", help="the interface table: a <Link> row "
                      "and a row per address, with packets and errors in and out")
    mode.add_argument("-I", dest="iface", metavar="IF", help="the interface table for IF alone "
                      "(with -w: IF's rates)")
    mode.add_argument("-m", action="store_true", help="mbuf pool statistics")
    sp.add_argument("-w", dest="wait", type=util.interval, metavar="SECONDS",
                    help="every SECONDS, the packets, errors and bytes in and out")
    sp.add_argument("-c", dest="count", type=util.int_in("-c", 1, 1_000_000), metavar="COUNT",
                    help="with -w: stop after COUNT lines")
    sp.add_argument("-f", choices=("inet", "inet6"), help="one address family")
    sp.add_argument("-p", dest="proto", choices=PROTOCOLS, metavar="PROTO",
                    help=f"one protocol's statistics: {', '.join(PROTOCOLS)}")
    sp.add_argument("-a", action="store_true", help="all: zero counters too (-s); the "
                    "link-layer entries as host routes (-r)")
    sp.add_argument("-d", action="store_true", help="with -w: the drops too (the -i table "
                    "always shows them)")
    sp.add_argument("-n", action="store_true",
                    help="addresses as numbers (always so; accepted as BSD's netstat -rn)")
    sp.add_argument("stray", nargs="*", help=argparse.SUPPRESS)
