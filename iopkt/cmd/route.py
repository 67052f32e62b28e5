"""`iopkt route`: show or change the routing table, in BSD's words."""

from __future__ import annotations

from iopkt.cmd import util


def cmd_route(args) -> None:
    from iopkt.net.route import aton, prefix_problem
    kw = {}
    w = [x.removeprefix(util.DASH_WORD) for x in args.words]
    if w:
        verb = w.pop(0)
        if verb in ("add", "delete", "del") and w:
            dst = w.pop(0)
            if prefix_problem(dst):
                util.fail(f"route {verb} {dst}: {prefix_problem(dst)}", util.EXIT_USAGE)
            if verb == "add":
                if not w:
                    util.fail("route add DST GATEWAY [-ifp IF]: give the gateway", util.EXIT_USAGE)
                kw = {"add": dst, "gateway": w.pop(0)}
                try:
                    aton(kw["gateway"])
                except ValueError as e:
                    util.fail(f"route add {dst}: gateway {e}", util.EXIT_USAGE)
                if len(w) == 2 and w[0] == "-ifp":
                    kw["ifname"] = w[1]
                    w.clear()
                elif w:
                    util.fail(f"route add: cannot understand '{' '.join(w)}' "
                              "(route add DST GW [-ifp IF])", util.EXIT_USAGE)
            else:
                kw = {"delete": dst}
        if verb not in ("add", "delete", "del", "show") or not kw and verb != "show" or w:
            said = " ".join(args.words).replace(util.DASH_WORD, "")
            util.fail(f"route: cannot understand '{said}' "
                      "(use: route [show], route add DST GW [-ifp IF], route delete DST)",
                      util.EXIT_USAGE)
    res = util.req(args, "route", **kw)
    if args.json:
        return util.dump(res, "routes")
    print_routes(res)


def print_routes(res: list) -> None:
    print(f"{'Destination':20} {'Gateway':18} {'Flags':6} {'Use':>10}  Interface")
    for r in res:
        dst = "default" if r["destination"] == "0.0.0.0/0" else r["destination"]
        print(f"{dst:20} {r['gateway']:18} {r['flags']:6} {r['use']:>10}  {r['interface']}")


def register(sub) -> None:
    sp = util.show_parser(sub, "route", "show or change the routing table", cmd_route)
    sp.add_argument("words", nargs="*", help="add DST GW [-ifp IF] | delete DST")
