"""`iopkt arp`: the ARP table, in NetBSD's words (arp(8)):

    arp [-n] -a                  every entry (also with no arguments)
    arp [-n] HOST                HOST's entry
    arp -d HOST | arp -d -a      forget HOST's entry, or every entry
    arp -s HOST MAC [temp]       set HOST's entry by hand: permanent (it never
                                 ages and ARP traffic does not change it),
                                 or temp (it ages as a learned one)

HOST is an IPv4 address (-n: iopkt never looks names up). Proxy ARP
(`pub`) and reading entries from a file (-f) are not supported.
"""

from __future__ import annotations

from iopkt.cmd import util


def cmd_arp(args) -> None:
    from iopkt.net.route import aton
    w = list(args.words)                    # -d and -s: argparse lets one through
    if w and not _is_addr(w[0], aton):
        util.fail(f"{w[0]}: HOST is an IPv4 address (iopkt never looks names up)",
                  util.EXIT_USAGE)
    kw = {}
    if args.delete:
        if args.a == bool(w):
            util.fail("-d HOST, or -d -a for every entry", util.EXIT_USAGE)
        kw["delete"] = "all" if args.a else w.pop(0)
    elif args.set:
        if len(w) < 2:
            util.fail("-s HOST MAC [temp]", util.EXIT_USAGE)
        kw = {"set": w.pop(0), "mac": w.pop(0)}
        for x in w:
            if x == "pub":
                util.fail("-s ... pub: proxy ARP is not supported", util.EXIT_USAGE)
            if x not in ("temp", "permanent"):
                util.fail(f"-s {kw['set']} {kw['mac']}: cannot understand '{x}' "
                          "(temp or permanent)", util.EXIT_USAGE)
            kw["permanent"] = x == "permanent"
        w.clear()
    if len(w) > 1:
        util.fail(f"one HOST at a time, not '{' '.join(w)}'", util.EXIT_USAGE)
    res = util.req(args, "arp", **kw)
    if w:
        res = [e for e in res if e["address"] == w[0]]
        if not res:
            util.fail(f"{w[0]}: no entry", 1)
    if args.json:
        return util.dump(res, "neighbours")
    if not (args.delete or args.set):       # as BSD's arp, a change prints nothing
        for e in res:
            print(entry_line(e))


def _is_addr(text: str, aton) -> bool:
    try:
        aton(text)
        return True
    except ValueError:
        return False


def entry_line(e: dict) -> str:
    """One entry as BSD's arp -an prints it."""
    exp = e["expires_in"]
    when = ("permanent" if e["state"] == "permanent"
            else f"expires in {max(0, round(exp))} seconds" if exp is not None and e["mac"]
            else "")
    return (f"? ({e['address']}) at {e['mac'] or '(incomplete)'} on {e['interface']}"
            + (f" {when}" if when else "") + " [ethernet]"
            + (f" ({e['held']} held)" if e["held"] else ""))


def register(sub) -> None:
    sp = util.show_parser(sub, "arp", "the ARP table, in NetBSD's words", cmd_arp,
                          usage_text=__doc__.split("\n\n", 1)[1])
    sp.add_argument("-a", action="store_true", help="every entry (the default); with -d: "
                    "forget every entry")
    sp.add_argument("-n", action="store_true",
                    help="numeric addresses (always: iopkt never looks names up)")
    act = sp.add_mutually_exclusive_group()
    act.add_argument("-d", dest="delete", action="store_true", help="forget HOST's entry")
    act.add_argument("-s", dest="set", action="store_true",
                     help="set HOST's entry to MAC: permanent, or temp")
    sp.add_argument("words", nargs="*", metavar="HOST [MAC [temp|permanent]]")
