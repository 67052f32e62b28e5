"""`iopkt ndp`: the IPv6 neighbour cache, as NetBSD's ndp -an."""

from __future__ import annotations

from iopkt.cmd import util


def cmd_ndp(args) -> None:
    # -a (all entries) is what ndp shows anyway; -n (numeric) is all it
    # knows: iopkt never looks a name up.
    res = util.req(args, "ndp")
    if args.json:
        return util.dump(res, "neighbours")
    w = max([26] + [len(e["address"]) + 1 for e in res])
    print(f"{'Neighbor':{w}} {'Linklayer Address':18} {'Netif':6} {'Expire':8} S Flags")
    for e in res:
        exp = e["expires_in"]
        print(f"{e['address']:{w}} {e['mac'] or '(incomplete)':18} {e['interface']:6} "
              f"{(f'{max(0, round(exp))}s' if exp is not None else 'permanent'):8} "
              f"{e['state'][0]} {'R' if e['router'] else ''}"
              + (f" ({e['held']} held)" if e["held"] else "")
              + f"  {e['state']}")


def register(sub) -> None:
    sp = util.show_parser(sub, "ndp", "the IPv6 neighbour cache", cmd_ndp)
    sp.add_argument("-a", action="store_true", help="all entries (the default)")
    sp.add_argument("-n", action="store_true",
                    help="numeric addresses (always: iopkt never looks names up)")
