"""`iopkt drivers [-v]`: the drivers that can be mounted, with their options."""

from __future__ import annotations


def cmd_drivers(args) -> None:
    from iopkt.stack.drvload import available
    drvs = sorted(available().values(), key=lambda d: d.name)
    name_w = max([12] + [len(d.name) for d in drvs])
    # One column for every driver's option help: the longest key=type.
    opt_w = max([0] + [len(f"{k}={o.type.__name__}") for d in drvs
                       for k, o in d.options.items()])
    for d in drvs:
        print(f"{d.name:{name_w}} {d.kind:7} {d.description}")
        if args.verbose and d.options:
            print(d.options_help(opt_w))


def register(sub) -> None:
    d = sub.add_parser("drivers", help="list the drivers that can be mounted")
    d.add_argument("-v", "--verbose", action="store_true", help="with their options")
    d.set_defaults(fn=cmd_drivers)
