"""`iopkt ifconfig`: show or configure interfaces, in NetBSD's words
(ifconfig(8)):

    ifconfig [-a]                      every interface
    ifconfig IF                        one
    ifconfig IF [inet] ADDR/PLEN       IF's address (it replaces the first one)
    ifconfig IF [inet] ADDR netmask M  the same, the mask spelled out
    ifconfig IF [inet] ADDR/PLEN alias one more address (also: alias ADDR/PLEN)
    ifconfig IF [inet] ADDR -alias     remove one (also: delete ADDR)
    ifconfig IF inet6 ADDR/PLEN        an IPv6 address (added; prefixlen N too)
    ifconfig IF inet6 ADDR delete      remove one (-alias too)
    ifconfig IF up | down | mtu N
    ifconfig IF [-]tso4 [-]tcp4csum ...  offload capabilities on or off

Words combine, as on NetBSD: `ifconfig tap0 inet 10.0.0.1/24 mtu 1400 up`.
"""

from __future__ import annotations

import argparse

from iopkt.cmd import nicinfo, util

WORDS_HELP = ("inet ADDR/PLEN [netmask M] [alias|-alias|delete] | inet6 ADDR/PLEN "
              "[prefixlen N] [delete] | mtu N | up | down | a capability: tso4, tso6, "
              "tcp4csum, udp4csum, tcp6csum, udp6csum, ip4csum, each also -rx/-tx and "
              "-word to turn off")


def parse_words(words: list[str]) -> dict:
    """NetBSD's ifconfig words -> the request's arguments. Exits 2 with one
    line naming a word it cannot take."""
    from iopkt.net.ifnet import CAP_KEYWORDS
    words = list(words)
    kw: dict = {}
    family = None           # inet or inet6, from its word or the address
    addr = None             # the address the words are about
    mask = None
    action = None           # None (set), "alias" or "delete"

    def value(w: str, need: str) -> str:
        if not words:
            util.fail(f"{w} needs a value ({need})", util.EXIT_USAGE)
        return words.pop(0)

    while words:
        w = words.pop(0)
        if w in ("inet", "inet6"):
            if family is not None and family != w:
                util.fail(f"{family} and {w}: one address family at a time", util.EXIT_USAGE)
            family = w
        elif w in ("alias", "-alias", "delete"):
            action = "alias" if w == "alias" else "delete"
        elif w in ("netmask", "prefixlen"):
            mask = (w, value(w, "a netmask like 255.255.255.0" if w == "netmask"
                              else "a prefix length 1..128"))
        elif w == "mtu":
            try:
                kw["mtu"] = util.int_in("mtu", 68, 9000)(value(w, "68..9000"))
            except argparse.ArgumentTypeError as e:
                util.fail(str(e), util.EXIT_USAGE)
        elif w in ("up", "down"):
            kw["up"] = w == "up"
        elif w.lstrip("-") in CAP_KEYWORDS:
            kw.setdefault("caps", []).append(w)
        elif addr is None and ("." in w or ":" in w or w[:1].isdigit()):
            addr = w
        else:
            util.fail(f"cannot understand '{w}' (use: {WORDS_HELP})", util.EXIT_USAGE)
    if addr is None:
        if family or action or mask:
            util.fail(f"{family or action or mask[0]} needs an address", util.EXIT_USAGE)
        return kw
    family = family or ("inet6" if ":" in addr else "inet")
    if mask is not None:
        if "/" in addr:
            util.fail(f"{addr} {mask[0]} {mask[1]}: a prefix length and a {mask[0]}; "
                      "give one", util.EXIT_USAGE)
        if (mask[0] == "netmask") != (family == "inet"):
            util.fail(f"{mask[0]} goes with {'inet' if mask[0] == 'netmask' else 'inet6'}",
                      util.EXIT_USAGE)
        addr = f"{addr}/{_plen(mask, family)}"
    if family == "inet6":
        _check6(addr, action)
        kw["delete6" if action == "delete" else "inet6"] = addr
        return kw
    _check4(addr, action)
    if action == "delete":
        kw["delete"] = addr.split("/")[0]
    else:
        kw["inet"] = addr
        if action is None:
            kw["replace"] = True            # NetBSD: without alias, it replaces the first
    return kw


def _plen(mask: tuple, family: str) -> int:
    import ipaddress
    word, text = mask
    if word == "prefixlen":
        if text.isdigit() and 1 <= int(text) <= 128:
            return int(text)
        util.fail(f"prefixlen {text}: must be 1..128", util.EXIT_USAGE)
    try:
        return ipaddress.ip_network(f"0.0.0.0/{text}").prefixlen
    except ValueError:
        util.fail(f"netmask {text}: not a netmask (contiguous ones, like 255.255.255.0)",
                  util.EXIT_USAGE)


def _check4(addr: str, action: str | None) -> None:
    from iopkt.net.route import prefix_problem
    word = "delete" if action == "delete" else "inet"
    if action != "delete" and "/" not in addr:
        util.fail(f"inet {addr}: give a prefix length or a netmask, e.g. {addr}/24 or "
                  f"{addr} netmask 255.255.255.0", util.EXIT_USAGE)
    if prefix_problem(addr):
        util.fail(f"{word} {addr}: {prefix_problem(addr)}", util.EXIT_USAGE)


def _check6(addr: str, action: str | None) -> None:
    from iopkt.netinet6.in6 import parse_prefix6
    if action != "delete" and "/" not in addr:
        util.fail(f"inet6 {addr}: give a prefix length, e.g. {addr}/64 or {addr} "
                  "prefixlen 64", util.EXIT_USAGE)
    try:
        parse_prefix6(addr)
    except ValueError as e:
        util.fail(f"inet6 {addr}: {e}", util.EXIT_USAGE)


def cmd_ifconfig(args) -> None:
    if args.ifname is None and args.words:
        util.fail("name the interface to change", util.EXIT_USAGE)
    if args.a and args.ifname is not None:
        util.fail(f"-a shows every interface; '{args.ifname}' names one (choose)",
                  util.EXIT_USAGE)
    kw = {"ifname": args.ifname, **parse_words(args.words)} if args.ifname else {}
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
    sp = util.show_parser(sub, "ifconfig", "show or configure interfaces, in NetBSD's words",
                          cmd_ifconfig,
                          usage_text=__doc__.split("\n\n", 1)[1])
    sp.add_argument("-a", action="store_true", help="every interface (also without IF)")
    sp.add_argument("ifname", nargs="?", metavar="IF")
    sp.add_argument("words", nargs=argparse.REMAINDER, metavar="WORD", help=WORDS_HELP)
