"""`iopkt mount` and `umount`: drivers into and out of a running stack
(io-pkt's mount -T io-pkt)."""

from __future__ import annotations

from iopkt.cmd import util


def cmd_mount(args) -> None:
    res = util.req(args, "mount", driver=args.driver, options=",".join(args.options))
    if args.json:
        return util.dump(res)
    print(f"{res['mounted']}: {res['driver']} {res['description']}")


def cmd_umount(args) -> None:
    res = util.req(args, "detach", ifname=args.ifname)
    if args.json:
        return util.dump(res)
    msg = f"{res['detached']}: unmounted"
    if res.get("waiting_for_lent_mbufs"):
        msg += (f"; the shim waits for {res['waiting_for_lent_mbufs']} mbufs it lent "
                "to the stack before the driver is shut down")
    print(msg)


def register(sub) -> None:
    sp = util.show_parser(sub, "mount", "mount a driver into a running stack (-d NAME OPTIONS)",
                          cmd_mount)
    sp.add_argument("driver", help="tap, devn-tap, devnp-tap, ...")
    sp.add_argument("options", nargs="*", help="key=value,key=value")
    sp = util.show_parser(sub, "umount", "unmount an interface from a running stack", cmd_umount)
    sp.add_argument("ifname")

