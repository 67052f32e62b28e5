"""`iopkt lab up|down|status`: two host namespaces with the stack between them."""

from __future__ import annotations

import argparse

from iopkt.cmd import util
from iopkt.ctl.control import ControlError


def _speed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = None
    if v not in (0, 10, 100, 1000, 10000):
        raise argparse.ArgumentTypeError(f"--speed {text}: one of 10, 100, 1000, 10000 "
                                         "(Mbit/s), or 0 for no limit")
    return v



def cmd_lab(args) -> None:
    from iopkt.lab import lab
    if args.lab_cmd == "up":
        # The drivers are checked against the link before root is asked for,
        # as every other value is: a usage error is one line and exit 2.
        d = args.driver or lab.default_driver(args.link)
        try:
            da = lab.check_driver(args.driver_a or d, args.link).name
            db = lab.check_driver(args.driver_b or d, args.link).name
            for flag in ("options", "options_a", "options_b"):
                lab.check_options(getattr(args, flag), "--" + flag.replace("_", "-"))
        except lab.LabError as e:
            util.fail(str(e), util.EXIT_USAGE)
    util.need_root()
    try:
        if args.lab_cmd == "up":
            spec = lab.LabSpec(prefix=lab.check_prefix(args.prefix), driver_a=da, driver_b=db,
                               opts_a=args.options_a or args.options or "",
                               opts_b=args.options_b or args.options or "",
                               speed=args.speed, link=args.link, family=args.family,
                               offload=None if args.offload is None else args.offload == "on")
            st = lab.up(spec)
            if args.json:
                return util.dump(st)
            p = args.prefix
            veth = st.get("link") == "veth"
            print(f"lab '{p}' is up" + (" over veth pairs" if veth else "")
                  + f": stack pid {st['pid']} ({st['driver_a']}, {st['driver_b']})")
            if veth:
                print(f"  {st['ns_a']}: 198.18.0.2/24 {st['host_if_a']} === {st['port_a']} --- "
                      f"{st['if_a']} 198.18.0.1 [iopkt] 198.19.0.1 {st['if_b']} --- "
                      f"{st['port_b']} === {st['host_if_b']} {st['ns_b']}: 198.19.0.2/24")
                print(f"  (=== a veth pair; {st['port_a']} and {st['port_b']} are in "
                      f"{st['ns_s']}, without addresses: the drivers open them there)")
            else:
                print(f"  {st['ns_a']}: 198.18.0.2/24 --- {st['if_a']} 198.18.0.1 [iopkt] "
                      f"198.19.0.1 {st['if_b']} --- {st['ns_b']}: 198.19.0.2/24")
            print("Try:")
            if st.get("family", "both") != "6":
                print(f"  sudo ip netns exec {st['ns_a']} ping -c 3 198.19.0.2")
            if st.get("family", "both") != "4":
                print(f"  sudo ip netns exec {st['ns_a']} ping -6 -c 3 2001:2:0:b::2")
            print(f"  sudo ip netns exec {st['ns_b']} iperf3 -s -D")
            print(f"  sudo ip netns exec {st['ns_a']} iperf3 -c 198.19.0.2 -t 5")
            print(f"  sudo .venv/bin/iopkt nicinfo --instance {p}")
            print(f"  sudo .venv/bin/iopkt nicinfo -w 1 --instance {p}     # live rates")
            print(f"  sudo env {util.INSTANCE_ENV}={p} .venv/bin/iopkt netstat -m    "
                  f"# {util.INSTANCE_ENV} chooses the stack too")
            print(f"  sudo .venv/bin/iopkt lab down --prefix {p}")
            print(f"The veth pairs stay (their ends in {st['ns_s']}) when a driver is unmounted; "
                  "to mount it again:" if veth else
                  "The TAPs stay when a driver is unmounted; to mount it again:")
            for side in ("a", "b"):
                print(f"  after 'iopkt umount --instance {p} {st['if_' + side]}': "
                      f"sudo .venv/bin/{st['mount_' + side]}")
        elif args.lab_cmd == "down":
            res = lab.down(lab.check_prefix(args.prefix))
            if args.json:
                util.dump(res)
            else:
                removed, left = res["removed"], res.get("left")
                what = ("; removed: " + ", ".join(removed)) if removed else ""
                if left:
                    print(f"lab '{args.prefix}': " + ("partly down" + what if removed
                                                      else "nothing taken down"))
                else:
                    print(f"lab '{args.prefix}' is down" + (what or " (nothing was up)"))
                for line in res["said"]:
                    print(line)
            if res.get("left"):
                util.fail(f"left alone, not made by lab '{args.prefix}': {', '.join(res['left'])}")
        else:
            res = lab.status()
            if args.json:
                return util.dump(res, "labs")
            if not res:
                print("no lab is up")
            for s in res:
                if "error" in s:
                    print(f"{s['prefix']}: {s['error']}")
                    continue
                ns = ", ".join(f"{k}{'' if v else ' (missing)'}"
                               for k, v in s["namespaces"].items())
                fam = {"4": "IPv4", "6": "IPv6", "both": "IPv4 and IPv6"}.get(
                    s.get("family", "4"), s.get("family"))
                print(f"{s['prefix']}: over {s.get('link', 'tap')}, {fam}, stack pid {s['pid']} "
                      f"{'answering' if s['answering'] else 'NOT answering'}"
                      f"{', up ' + str(s['uptime']) + 's' if s.get('uptime') else ''}; "
                      f"drivers {'/'.join(s['drivers'])}; interfaces "
                      f"{'/'.join(str(i) for i in s['interfaces'])}; namespaces {ns}")
    except (lab.LabError, ControlError) as e:
        util.fail(str(e), util.EXIT_USAGE if e.usage else 1)
    except Exception as e:                  # netlink and friends: still one line
        util.fail(f"lab {args.lab_cmd}: {type(e).__name__}: {e}")


def register(sub) -> None:
    lb = sub.add_parser("lab", help="two host namespaces with the stack between them")
    lsub = lb.add_subparsers(dest="lab_cmd", required=True, metavar="up|down|status")
    lu = lsub.add_parser("up", help="build the lab and start its stack")
    lu.add_argument("--link", choices=("tap", "veth"), default="tap",
                    help="what joins the hosts to the stack: TAPs (default), or veth pairs "
                    "driven through AF_PACKET, their stack ends in a namespace P-s")
    lu.add_argument("--driver",
                    help="driver for both sides: with --link tap devnp-tap (default) or "
                    "devn-tap; with --link veth devnp-afpacket (default) or devn-afpacket")
    lu.add_argument("--driver-a", help="driver facing host A (mixed labs)")
    lu.add_argument("--driver-b", help="driver facing host B (mixed labs)")
    lu.add_argument("--options", help="extra driver options for both sides (key=value,...)")
    lu.add_argument("--options-a", help="driver options for side A only")
    lu.add_argument("--options-b", help="driver options for side B only")
    lu.add_argument("--family", choices=("4", "6", "both"), default="both",
                    help="the addresses the hosts and the stack get: IPv4 (4), IPv6 (6) "
                    "or both (the default)")
    lu.add_argument("--speed", type=_speed, default=0, metavar="MBPS",
                    help="emulate a 10, 100, 1000 or 10000 Mbit/s link in both directions")
    lu.add_argument("--offload", choices=("on", "off"),
                    help="TSO and checksum offload on native interfaces (default: on, "
                    "as the driver; the shim's interfaces never have any)")
    ld = lsub.add_parser("down", help="stop the stack and remove everything the lab made")
    ls = lsub.add_parser("status", help="what labs are up")
    for sp in (lu, ld):
        sp.add_argument("--prefix", default="iopkt", type=util.lab_prefix,
                        help="names the namespaces P-a, P-b and the stack instance "
                        "(default: iopkt)")
    for sp in (lu, ld, ls):
        sp.add_argument("--json", action="store_true")
    lb.set_defaults(fn=cmd_lab)

