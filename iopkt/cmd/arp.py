"""`iopkt arp`: the ARP table, as BSD's arp -an."""

from __future__ import annotations

from iopkt.cmd import util


def cmd_arp(args) -> None:
    # -a (all entries) is what arp shows anyway; -n (numeric) is all it
    # knows: iopkt never looks a name up.
    res = util.req(args, "arp")
    if args.json:
        return util.dump(res, "neighbours")
    for e in res:
        expires = e["expires_in"]
        print(f"{e['address']:16} {e['mac'] or '(incomplete)':18} {e['interface']:6} "
              f"{e['state']}" + (f" expires in {round(expires)}s" if expires is not None
                                 and e["mac"] else "")
              + (f" ({e['held']} held)" if e["held"] else ""))


def register(sub) -> None:
    sp = util.show_parser(sub, "arp", "the ARP table", cmd_arp)
    sp.add_argument("-a", action="store_true", help="all entries (the default)")
    sp.add_argument("-n", action="store_true",
                    help="numeric addresses (always: iopkt never looks names up)")
