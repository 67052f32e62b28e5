"""`iopkt route`: show or change the routing table, in BSD's words."""

from __future__ import annotations

from iopkt.cmd import util


def cmd_route(args) -> None:
    from iopkt.net.route import aton, prefix_problem
    from iopkt.netinet6.in6 import parse_prefix6
    kw = {}
    w = [x.removeprefix(util.DASH_WORD) for x in args.words]
    v6 = "-inet6" in w
    w = [x for x in w if x not in ("-inet6", "-inet")]
    if v6:                              # IPv6's prefixes and gateways
        def prefix_problem(text):       # noqa: F811 -- the same check, IPv6's words
            try:
                parse_prefix6(text)
            except ValueError as e:
                return str(e)

        def aton(text):                 # noqa: F811
            return parse_prefix6(text)[0]
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
                      "(use: route [show], route add DST GW [-ifp IF], route delete DST; "
                      "-inet6 for IPv6)",
                      util.EXIT_USAGE)
    if v6:
        kw["family"] = "inet6"
    res = util.req(args, "route", **kw)
    if args.json:
        return util.dump(res, "routes")
    print_routes(res)


def print_routes(res: list) -> None:
    w = max([20] + [len(r["destination"]) + 1 for r in res])
    g = max([18] + [len(r["gateway"]) + 1 for r in res])
    print(f"{'Destination':{w}} {'Gateway':{g}} {'Flags':6} {'Use':>10}  Interface")
    for r in res:
        dst = "default" if r["destination"] in ("0.0.0.0/0", "::/0") else r["destination"]
        print(f"{dst:{w}} {r['gateway']:{g}} {r['flags']:6} {r['use']:>10}  {r['interface']}")


def register(sub) -> None:
    sp = util.show_parser(sub, "route", "show or change the routing table", cmd_route)
    sp.add_argument("words", nargs="*", help="add DST GW [-ifp IF] | delete DST "
                    "(-inet6 anywhere: the IPv6 table)")
