"""`iopkt drivers [-v]`: the drivers that can be mounted, with their options."""

from __future__ import annotations

import sys


def cmd_drivers(args) -> None:
    """Every driver that loads; one line on stderr for each that does not
    (exit 1): someone else's broken driver hides none of the others."""
    from iopkt.stack.drvload import available, load_errors
    drvs = sorted(available().values(), key=lambda d: d.name)
    name_w = max([12] + [len(d.name) for d in drvs])
    # One column for every driver's option help: the longest key=type.
    opt_w = max([0] + [len(f"{k}={o.type.__name__}") for d in drvs
                       for k, o in d.options.items()])
    for d in drvs:
        print(f"{d.name:{name_w}} {d.kind:7} {d.description}")
        if args.verbose and d.options:
            print(d.options_help(opt_w))
    for name, why in sorted(load_errors.items()):
        print(f"iopkt drivers: driver {name} did not load: {why}", file=sys.stderr)
    if load_errors:
        sys.exit(1)


def register(sub) -> None:
    d = sub.add_parser("drivers", help="list the drivers that can be mounted")
    d.add_argument("-v", "--verbose", action="store_true", help="with their options")
    d.set_defaults(fn=cmd_drivers)
