"""`iopkt route`: show or change the routing tables, in NetBSD's words
(route(8)):

    route [-nq] [show] [-inet|-inet6]
    route [-nq] get [-inet|-inet6] DST
    route [-nq] add|change [-net|-host] [-inet|-inet6] DST GATEWAY [-ifp IF]
    route [-nq] add|change [-net|-host] DST -interface IF|ADDR
    route [-nq] delete [-net|-host] [-inet|-inet6] DST
    route [-nq] flush [-inet|-inet6]

DST is `default`, an address, or a prefix (A/P, or A with -netmask M,
-prefixlen N for IPv6); -net wants a prefix, -host an address. flush
removes the routes through a gateway; the connected ones stay with their
addresses. -n (numeric) is always so; -q says nothing after a change.
"""

from __future__ import annotations

import argparse

from iopkt.cmd import util

VERBS = ("show", "get", "add", "change", "delete", "flush")


class Words:
    """The words after the command, taken one by one with clear errors."""

    def __init__(self, verb: str, words: list[str]):
        self.verb = verb
        self.words = words

    def take(self, what: str) -> str:
        if not self.words:
            util.fail(f"{self.verb}: give {what} ({_usage(self.verb)})", util.EXIT_USAGE)
        return self.words.pop(0)

    def done(self) -> None:
        if self.words:
            util.fail(f"{self.verb}: cannot understand '{' '.join(self.words)}' "
                      f"({_usage(self.verb)})", util.EXIT_USAGE)


def _usage(verb: str) -> str:
    return {"show": "route show [-inet|-inet6]",
            "get": "route get [-inet6] DST",
            "add": "route add [-net|-host] DST GATEWAY [-ifp IF], or DST -interface IF",
            "change": "route change [-net|-host] DST GATEWAY [-ifp IF], or DST -interface IF",
            "delete": "route delete [-net|-host] DST",
            "flush": "route flush [-inet|-inet6]"}[verb]


def parse_words(words: list[str], family: str | None) -> tuple[str, dict]:
    """BSD's route words -> (verb, the request's arguments). Exits 2 with
    one line naming what it cannot take."""
    words = list(words)
    verb = words.pop(0) if words and not words[0].startswith("-") else "show"
    if verb == "del":
        verb = "delete"
    if verb not in VERBS:
        util.fail(f"unknown command '{verb}': one of {', '.join(VERBS)}", util.EXIT_USAGE)
    mods, rest = {}, []
    w = Words(verb, words)
    while w.words:
        x = w.words.pop(0)
        if x in ("-inet", "-inet6"):
            family = x[1:]
        elif x in ("-net", "-host", "-interface", "-iface"):
            mods[x.removeprefix("-").replace("iface", "interface")] = True
        elif x in ("-netmask", "-prefixlen", "-ifp"):
            mods[x[1:]] = w.take(f"{x} its value")
        elif x.startswith("-") and len(x) > 1 and not x[1].isdigit():
            util.fail(f"{verb}: unknown modifier '{x}' ({_usage(verb)})", util.EXIT_USAGE)
        else:
            rest.append(x)
    w = Words(verb, rest)
    if verb in ("show", "flush"):
        w.done()
        if mods:
            util.fail(f"{verb}: takes no -{', -'.join(mods)}", util.EXIT_USAGE)
        return verb, {} if family is None else {"family": family}
    family = family or ("inet6" if any(":" in x for x in rest[:2]) else "inet")
    kw = {"family": family} if family == "inet6" else {}
    dst = _destination(verb, w.take("the destination"), mods, family)
    if verb == "get":
        w.done()
        return verb, {**kw, "dst": dst}
    if verb == "delete":
        w.done()
        return verb, {**kw, "delete": dst}
    kw[verb] = dst
    gw = w.take("the gateway (or -interface IF)")
    if mods.get("interface"):
        kw["interface"] = gw
        if "ifp" in mods:
            util.fail(f"{verb}: -ifp goes with a gateway, -interface names the interface "
                      "already", util.EXIT_USAGE)
    else:
        problem = _address_problem(gw, family)
        if problem:
            util.fail(f"{verb} {dst}: gateway {problem}", util.EXIT_USAGE)
        kw["gateway"] = gw
    if "ifp" in mods:
        kw["ifname"] = mods["ifp"]
    w.done()
    return verb, kw


def _destination(verb: str, text: str, mods: dict, family: str) -> str:
    """DST as the stack takes it ('default', 'A/P' or 'A'), after -net,
    -host, -netmask and -prefixlen; exits 2 naming what is wrong."""
    from iopkt.net.route import prefix_problem
    if mods.get("net") and mods.get("host"):
        util.fail(f"{verb}: -net or -host, not both", util.EXIT_USAGE)
    mask = mods.get("netmask") or mods.get("prefixlen")
    if mask is not None:
        if "/" in text or text == "default":
            util.fail(f"{verb} {text}: a prefix length and a -netmask; give one",
                      util.EXIT_USAGE)
        plen = _mask_len(mask, family, verb)
        text = f"{text}/{plen}"
    if text == "default":
        return text
    if mods.get("host") and "/" in text:
        util.fail(f"{verb} -host {text}: a host is an address, without /PLEN", util.EXIT_USAGE)
    if mods.get("net") and "/" not in text:
        util.fail(f"{verb} -net {text}: give the prefix length ({text}/24) or "
                  "-netmask M", util.EXIT_USAGE)
    if family == "inet6":
        from iopkt.netinet6.in6 import parse_prefix6
        try:
            parse_prefix6(text)
        except ValueError as e:
            util.fail(f"{verb} {text}: {e}", util.EXIT_USAGE)
    elif prefix_problem(text):
        util.fail(f"{verb} {text}: {prefix_problem(text)}", util.EXIT_USAGE)
    return text


def _mask_len(mask: str, family: str, verb: str) -> int:
    """-netmask 255.255.0.0 -> 16; -prefixlen 64 -> 64."""
    import ipaddress
    width = 128 if family == "inet6" else 32
    if mask.isdigit() and int(mask) <= width:
        return int(mask)
    try:
        return ipaddress.ip_network(f"0.0.0.0/{mask}").prefixlen
    except ValueError:
        util.fail(f"{verb}: -netmask {mask}: not a netmask (contiguous ones, like "
                  "255.255.255.0) or a prefix length", util.EXIT_USAGE)


def _address_problem(text: str, family: str) -> str | None:
    from iopkt.net.route import aton
    from iopkt.netinet6.in6 import aton6
    try:
        (aton6 if family == "inet6" else aton)(text)
    except ValueError as e:
        return str(e)
    return None


def cmd_route(args) -> None:
    verb, kw = parse_words(args.words, args.family)
    fam = "IPv6" if kw.get("family") == "inet6" else "IPv4"
    if verb == "get":
        r = util.req(args, "route_get", **kw)
        if args.json:
            return util.dump(r)
        print_get(r)
        return
    if verb in ("show", "flush"):
        fams = [kw["family"]] if kw else ["inet", "inet6"]
        op = "route" if verb == "show" else "route_flush"
        res = {f: util.req(args, op, **({"family": f} if f == "inet6" else {}))
               for f in fams}
        if verb == "flush":
            gone = [r for f in fams for r in res[f]]
            if args.json:
                return util.dump(gone, "routes")
            if not args.q:
                for r in gone:
                    print(f"{_dst(r):20} {r['gateway']:18} done")
            return
        return show_tables(res, args.json)
    res = util.req(args, "route", **kw)
    if args.json:
        return util.dump(res, "routes")
    if not args.q:                        # as BSD's route says what it did
        dst = kw.get(verb) or kw["delete"]
        kind = "host" if "/" not in dst and dst != "default" else "net"
        via = kw.get("gateway") or f"interface {kw.get('interface', '')}".strip()
        print(f"{verb} {kind} {dst}" + (f": gateway {via}" if verb != "delete" else "")
              + ("" if fam == "IPv4" else " (IPv6)"))


def _dst(r: dict) -> str:
    return "default" if r["destination"] in ("0.0.0.0/0", "::/0") else r["destination"]


def show_tables(res: dict, as_json: bool) -> None:
    """The tables of res ({"inet": [...], "inet6": [...]}, one or both),
    each headed by its family when both are shown, as NetBSD's route show
    and netstat -r print them."""
    if as_json:
        if len(res) == 1:
            return util.dump(next(iter(res.values())), "routes")
        return util.dump({"routes": res["inet"], "routes6": res["inet6"]})
    for i, (f, routes) in enumerate(res.items()):
        if len(res) > 1:
            print(("\n" if i else "") + ("Internet:" if f == "inet" else "Internet6:"))
        print_routes(routes)


def print_routes(res: list) -> None:
    w = max([20] + [len(r["destination"]) + 1 for r in res])
    g = max([18] + [len(r["gateway"]) + 1 for r in res])
    print(f"{'Destination':{w}} {'Gateway':{g}} {'Flags':6} {'Use':>10}  Interface")
    for r in res:
        print(f"{_dst(r):{w}} {r['gateway']:{g}} {r['flags']:6} {r['use']:>10}  "
              f"{r['interface']}")


FLAG_WORDS = {"U": "UP", "G": "GATEWAY", "H": "HOST", "S": "STATIC", "C": "CONNECTED",
              "L": "LLINFO"}


def print_get(r: dict) -> None:
    """As NetBSD's route get lays it out."""
    dst = r["destination"].split("/")[0]
    gw = r["gateway"] if not r["gateway"].startswith("link#") else None
    rows = [("route to", r["route_to"]), ("destination", "default" if r["destination"]
                                          in ("0.0.0.0/0", "::/0") else dst),
            ("mask", r["mask"])] + ([("gateway", gw)] if gw else []) + \
        [("interface", r["interface"]),
         ("flags", "<" + ",".join(FLAG_WORDS.get(f, f) for f in r["flags"]) + ">"),
         ("next hop", r["next_hop"])]
    for k, v in rows:
        print(f"{k:>11}: {v}")


def register(sub) -> None:
    sp = util.show_parser(sub, "route", "show or change the routing tables, in NetBSD's words",
                          cmd_route,
                          usage_text=__doc__.split("\n\n", 1)[1])
    sp.add_argument("-n", action="store_true", help="numeric (always so)")
    sp.add_argument("-q", action="store_true", help="quiet: nothing printed after a change")
    fam = sp.add_mutually_exclusive_group()
    fam.add_argument("-inet", dest="family", action="store_const", const="inet",
                     help="the IPv4 table (the default)")
    fam.add_argument("-inet6", dest="family", action="store_const", const="inet6",
                     help="the IPv6 table")
    sp.add_argument("words", nargs=argparse.REMAINDER, metavar="COMMAND ...",
                    help=f"{' | '.join(VERBS)}, then its modifiers and arguments "
                    "(show when none)")
