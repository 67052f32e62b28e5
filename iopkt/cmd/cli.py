"""The `iopkt` command.

    iopkt run -i NAME -d tap name=tapA -d tap name=tapB [--inet IF=A/P] [--route DST=GW]
    iopkt nicinfo [-w SECONDS [-c COUNT]] [IF] | ifconfig [-a | IF ...]
    iopkt route [-n] [show|get|add|delete|change|flush ...]
    iopkt netstat [-s|-r|-i|-m|-I IF|-w SECONDS] [-an] [-f inet|inet6] [-p PROTO]
    iopkt arp [-an] | arp -d HOST | arp -s HOST MAC | ndp [-an]
    iopkt lab up|down|status
    iopkt drivers [-v]

The show commands (nicinfo, ifconfig, route, netstat, arp, ndp, mount, umount)
ask the stack named by --instance NAME, else by the environment variable
SOCK (as QNX utilities choose their stack: SOCK=/alt or SOCK=alt), else
"iopkt". Errors are one line on stderr, "iopkt CMD: message": exit 2 for
a usage error, 1 for a failure at run time. `-i NAME` names
the instance only for `iopkt run`, as io-pkt's own -i does; `netstat -i`
is the interface table, as on BSD.
"""

from __future__ import annotations

import argparse
import os
import sys

from iopkt.cmd import (
    arp,
    bench,
    capture,
    drivers,
    ifconfig,
    lab,
    mount,
    ndp,
    netstat,
    nicinfo,
    route,
    run,
    util,
)

# One module per command family, as NetBSD has one program per command;
# `iopkt --help` lists them in this order.
COMMANDS = (run, nicinfo, ifconfig, route, netstat, arp, ndp, mount, capture, drivers, lab,
            bench)


# -- version -------------------------------------------------------------
def version_line() -> str:
    """'iopkt 0.1.0', and in a git checkout the commit it runs from."""
    from importlib import metadata
    try:
        v = metadata.version("iopkt")
    except metadata.PackageNotFoundError:
        from iopkt import __version__ as v
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    commit = _git_commit(root)
    return f"iopkt {v}" + (f" (git {commit})" if commit else "")


def _git_commit(root: str) -> str | None:
    """The checkout's commit ('037cd57a1b2c', ', modified' if tracked files
    differ from it), or None: not a checkout, no git, or git refuses."""
    import subprocess
    if not os.path.exists(os.path.join(root, ".git")):
        return None
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=5)
        if head.returncode != 0 or not head.stdout.strip():
            return None
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + (", modified" if dirty.stdout.strip() else "")


class _Version(argparse.Action):
    """--version: worked out only when asked (it may run git)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_line())
        parser.exit()


# -- parser --------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = util.Parser(prog="iopkt", description="QNX io-pkt's driver model on Linux: "
                    "a Python IPv4 router with native and legacy (io-net) drivers.")
    p.add_argument("--version", action=_Version, nargs=0,
                   help="print the version (and the git commit of a checkout) and exit")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for cmd in COMMANDS:
        cmd.register(sub)
    return p


def main(argv=None) -> None:
    parser = build_parser()
    args, extra = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if extra:
        # capture's expression may follow its options (`capture tap0 -c 5 icmp`),
        # as tcpdump's does: what argparse left over is the rest of it.
        if args.cmd != "capture" or any(x.startswith("-") for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.words += extra
    util.prog = " ".join(filter(None, ("iopkt", args.cmd, getattr(args, "lab_cmd", None),
                                       getattr(args, "bench_cmd", None))))
    if isinstance(getattr(args, "words", None), list):
        util.take_options(args)
    util.resolve_instance(args)
    try:
        args.fn(args)
        sys.stdout.flush()                  # a pipe's reader may leave before this
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:                 # the reader left (| head): it had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except Exception as e:                  # a bug: still one line, unless debugging
        if os.environ.get("IOPKT_DEBUG") == "1":
            raise
        util.fail(f"internal error: {type(e).__name__}: "
                  f"{' '.join(str(e).split())} (run with IOPKT_DEBUG=1 for the traceback)")

if __name__ == "__main__":
    main()
