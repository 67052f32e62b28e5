"""`iopkt netstat`: protocol statistics, the routing table, the interface
table and the mbuf pool, as BSD's netstat -s, -r, -i and -m."""

from __future__ import annotations

import argparse

from iopkt.cmd import route, util

NETSTAT_MODES = ("-s (protocol statistics, the default), -r (the routing table), "
                 "-i (the interfaces), -m (the mbuf pool)")


def cmd_netstat(args) -> None:
    if args.stray:
        util.fail(f"netstat: unexpected '{' '.join(args.stray)}' (choose the stack with --instance "
                  f"NAME or {util.INSTANCE_ENV}=NAME; -i alone shows the interfaces)",
                  util.EXIT_USAGE)
    given = [f"-{f}" for f in "srim" if getattr(args, f)]
    if len(given) > 1:
        util.fail(f"netstat: {' and '.join(given)} do not go together: choose one of "
                  f"{NETSTAT_MODES}", util.EXIT_USAGE)
    if args.f and not args.r:
        util.fail("netstat: -f FAMILY goes with -r", util.EXIT_USAGE)
    if args.r:
        fams = [args.f] if args.f else ["inet", "inet6"]
        res = {f: util.req(args, "route", **({"family": f} if f == "inet6" else {}))
               for f in fams}
        if args.json:
            return util.dump(res.get("inet", res.get("inet6")), "routes") if args.f \
                else util.dump({"routes": res["inet"], "routes6": res["inet6"]})
        for i, f in enumerate(fams):
            if len(fams) > 1:           # as NetBSD's netstat -rn heads each family
                print(("\n" if i else "") + ("Internet:" if f == "inet" else "Internet6:"))
            route.print_routes(res[f])
        return
    if args.i:
        rows = if_table(util.req(args, "nicinfo"))
        return util.dump(rows, "interfaces") if args.json else _print_if_table(rows)
    res = util.req(args, "netstat")
    if args.json:
        return util.dump(res if not args.m else res["mbuf"])
    mb = res["mbuf"]
    if args.m:
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
        return
    for proto in ("ip", "icmp", "arp", "ip6", "icmp6", "nd6", "bpf"):
        if proto not in res:
            continue
        print(f"{proto}:")
        for k, v in res[proto].items():
            if isinstance(v, dict):
                for kk, vv in v.items():
                    print(f"\t{vv} {k} {kk}")
            elif v:
                print(f"\t{v} {k}")


IF_TABLE_COLUMNS = (("Name", "name", "<"), ("Mtu", "mtu", ">"), ("Network", "network", "<"),
                    ("Address", "address", "<"), ("Ipkts", "ipkts", ">"),
                    ("Ierrs", "ierrs", ">"), ("Idrop", "idrop", ">"), ("Opkts", "opkts", ">"),
                    ("Oerrs", "oerrs", ">"), ("Odrop", "odrop", ">"))


def if_table(res: list) -> list[dict]:
    """netstat -i's rows from a nicinfo answer: per interface a <Link> row
    with its MAC, then one row per IPv4 address with its network; each row
    carries the interface's counters (as NetBSD's netstat -i does)."""
    import ipaddress
    rows = []
    for d in res:
        c = d["counters"]
        base = {"name": d["name"], "mtu": d["mtu"], "ipkts": c["ipackets"],
                "ierrs": c["ierrors"], "idrop": c["iqdrops"], "opkts": c["opackets"],
                "oerrs": c["oerrors"], "odrop": c["oqdrops"]}
        rows.append({**base, "network": "<Link>", "address": d["mac"]})
        for a in d["inet"]:
            ia = ipaddress.ip_interface(a)
            rows.append({**base, "network": str(ia.network), "address": str(ia.ip)})
    return rows


def _print_if_table(rows: list) -> None:
    width = {k: max([len(h)] + [len(str(r[k])) for r in rows])
             for h, k, _ in IF_TABLE_COLUMNS}
    for r in [{k: h for h, k, _ in IF_TABLE_COLUMNS}, *rows]:
        print(" ".join(f"{str(r[k]):{a}{width[k]}}" for _, k, a in IF_TABLE_COLUMNS).rstrip())


def register(sub) -> None:
    sp = util.show_parser(sub, "netstat", "protocol statistics (-s, the default), the routing "
                          "table (-r), the interfaces (-i) or the mbuf pool (-m)", cmd_netstat,
                          old_i=False)
    sp.add_argument("-s", action="store_true", help="protocol statistics (the default)")
    sp.add_argument("-r", action="store_true", help="the routing table (as 'iopkt route')")
    sp.add_argument("-i", action="store_true", help="the interfaces: packets, errors and "
                    "drops in and out, one line per interface and address (as BSD netstat -i)")
    sp.add_argument("-m", action="store_true", help="mbuf pool statistics")
    sp.add_argument("-f", choices=("inet", "inet6"), help="with -r: one family's table "
                    "(both without it)")
    sp.add_argument("-n", action="store_true",
                    help="addresses as numbers (always so; accepted as BSD's netstat -rn)")
    sp.add_argument("stray", nargs="*", help=argparse.SUPPRESS)
