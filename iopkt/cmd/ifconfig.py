"""`iopkt ifconfig`: show or configure interfaces, in BSD's words."""

from __future__ import annotations

from iopkt.cmd import nicinfo, util


def cmd_ifconfig(args) -> None:
    from iopkt.net.ifnet import CAP_KEYWORDS
    from iopkt.net.route import prefix_problem
    from iopkt.netinet6.in6 import parse_prefix6
    kw = {"ifname": args.ifname}
    words = [w.removeprefix(util.DASH_WORD) for w in args.words]
    while words:
        w = words.pop(0)
        if w.lstrip("-") in CAP_KEYWORDS:
            kw.setdefault("caps", []).append(w)
        elif w in ("up", "down"):
            kw["up"] = w == "up"
        elif w in ("mtu", "inet", "inet6", "alias", "delete", "-alias") and not words:
            need = "mtu 68..9000" if w == "mtu" else w + " A/P"
            util.fail(f"ifconfig: {w} needs a value ({need})", util.EXIT_USAGE)
        elif w == "mtu":
            text = words.pop(0)
            try:
                kw["mtu"] = int(text)
            except ValueError:
                util.fail(f"ifconfig: mtu {text}: expected a whole number 68..9000",
                          util.EXIT_USAGE)
            if not 68 <= kw["mtu"] <= 9000:
                util.fail(f"ifconfig: mtu {text}: must be 68..9000", util.EXIT_USAGE)
        elif w in ("inet", "alias"):
            kw["inet"] = words.pop(0)
            if "/" not in kw["inet"]:
                util.fail(f"ifconfig: {w} {kw['inet']}: give a prefix length, e.g. "
                          f"{kw['inet']}/24", util.EXIT_USAGE)
            if prefix_problem(kw["inet"]):
                util.fail(f"ifconfig: {w} {kw['inet']}: {prefix_problem(kw['inet'])}",
                          util.EXIT_USAGE)
        elif w == "inet6":
            text = words.pop(0)
            if words and words[0] in ("delete", "-alias"):
                words.pop(0)
                kw["delete6"] = text
            else:
                if "/" not in text:
                    util.fail(f"ifconfig: inet6 {text}: give a prefix length, e.g. {text}/64",
                              util.EXIT_USAGE)
                kw["inet6"] = text
            try:
                parse_prefix6(text)
            except ValueError as e:
                util.fail(f"ifconfig: inet6 {text}: {e}", util.EXIT_USAGE)
        elif w in ("delete", "-alias"):
            kw["delete"] = words.pop(0)
            if prefix_problem(kw["delete"]):
                util.fail(f"ifconfig: {w} {kw['delete']}: {prefix_problem(kw['delete'])}",
                          util.EXIT_USAGE)
        else:
            util.fail(f"ifconfig: cannot understand '{w}' (use: inet A/P, delete A, "
                      "inet6 A/P, inet6 A delete, "
                      "mtu N, up, down, or a capability: tso4, tso6, tcp4csum, udp4csum, "
                      "tcp6csum, udp6csum, ip4csum, each also -rx/-tx and -word to turn off)",
                      util.EXIT_USAGE)
    if not args.ifname and args.words:
        util.fail("ifconfig: name the interface to change", util.EXIT_USAGE)
    res = util.req(args, "ifconfig", **kw)
    if args.json:
        return util.dump(res, "interfaces")
    for d in res:
        print(f"{d['name']}: flags=<{d['flags']}> mtu {d['mtu']}  ({d['driver']})")
        print(f"\taddress: {d['mac']}")
        if d["capabilities_raw"]:
            print(f"\tcapabilities={d['capabilities']}")
            print(f"\tenabled={d['enabled']}")
        print(f"\tmedia: Ethernet {nicinfo.media(d)}  status: {d['link_state']}")
        for a in d["inet"]:
            print(f"\tinet {a}")
        for a in d.get("inet6", ()):
            print(f"\tinet6 {a}")


def register(sub) -> None:
    sp = util.show_parser(sub, "ifconfig", "show or configure interfaces", cmd_ifconfig)
    sp.add_argument("ifname", nargs="?")
    sp.add_argument("words", nargs="*", help="inet A/P | delete A | inet6 A/P | "
                    "inet6 A delete | mtu N | up | down | "
                    "[-]tso4 | [-]tso6 | [-]tcp4csum[-rx|-tx] | [-]udp4csum[-rx|-tx] | "
                    "[-]tcp6csum[-rx|-tx] | [-]udp6csum[-rx|-tx] | [-]ip4csum[-rx|-tx]")
