"""What every iopkt command shares: exit codes and one-line errors, root,
the stack instance a show command asks, argument types, JSON output."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from datetime import datetime, timezone

from iopkt.ctl import control
from iopkt.ctl.control import ControlError

# Exit codes. A usage error (a value out of range, a bad address or prefix,
# an unknown option, a size this machine cannot hold) exits 2; a failure at
# run time (no such stack, interface or TAP; a device that will not open)
# exits 1; a reader that went away (| head) ends the command with 0. Either
# way stderr gets one line, "iopkt CMD: message", naming the value or the
# object; an unexpected exception is one line too (IOPKT_DEBUG=1: the
# traceback).
EXIT_USAGE = 2

# The command being run, as its error lines start ("iopkt netstat"):
# cli.main sets it once the command line is parsed.
prog = "iopkt"


def need_root() -> None:
    if os.geteuid() != 0:
        fail("needs root (CAP_NET_ADMIN for TAPs, namespaces and the "
             "control socket): run it with sudo")


def fail(msg: str, code: int = 1) -> None:
    """The command's one error line, "iopkt CMD: msg", and exit `code`."""
    print(f"{prog}: {msg}", file=sys.stderr)
    sys.exit(code)


def shown(text: str) -> str:
    """`text` as one line: control characters escaped (\\n, \\x1b), so a
    value from the environment cannot break or forge lines of output."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode()
                   for c in text)


def instance_name(name: str) -> str:
    try:
        return control.check_instance_name(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"-i {name}: {e}") from None


DEFAULT_INSTANCE = "iopkt"
INSTANCE_ENV = "SOCK"       # as QNX utilities choose their stack


def _show_instance(name: str) -> str:
    try:
        return control.check_instance_name(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--instance {name}: {e}") from None


def _old_instance_option(text: str) -> str:
    """`-i NAME` on a show command: it named the instance once; say what does now."""
    raise argparse.ArgumentTypeError(
        f"-i {text}: the show commands choose the stack with --instance {text} "
        f"(or {INSTANCE_ENV}={text}); -i names the instance only for 'iopkt run'")


def resolve_instance(args) -> None:
    """A show command's stack: --instance, else $SOCK (a name, or a path
    prefix as QNX writes it: SOCK=/alt), else "iopkt"."""
    if getattr(args, "instance", "") is not None:
        return                              # given, or a command without one
    env = os.environ.get(INSTANCE_ENV)
    if env is None or env == "":
        args.instance = DEFAULT_INSTANCE
        return
    # QNX's SOCK is a path prefix: SOCK=/alt makes a utility use the stack
    # whose socket is under /alt (io-pkt -i alt). A bare name is ours.
    name = env[1:].rstrip("/") if env.startswith("/") else env
    try:
        args.instance = control.check_instance_name(name)
    except ValueError as e:
        fail(f"{INSTANCE_ENV}={shown(env)}: {e} (the environment variable {INSTANCE_ENV} names "
             "the stack instance; --instance NAME overrides it)", EXIT_USAGE)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (no usage block)."""

    def error(self, message):
        m = re.match(r"argument ([^:]+): (.*)", message, re.S)
        if m and any(m.group(2).startswith(n + " ") for n in m.group(1).split("/")):
            line = m.group(2)               # our types name the option themselves
        else:
            line = f"{message} (see '{self.prog} --help')"
        self.exit(EXIT_USAGE, f"{self.prog}: {' '.join(line.split())}\n")


def int_in(opt: str, lo: int, hi: int):
    """An argparse type: a whole number lo..hi, the message naming `opt`."""
    def conv(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{opt} {text}: expected a whole number "
                                             f"{lo}..{hi}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{opt} {text}: must be {lo}..{hi}")
        return v
    return conv


def float_in(opt: str, lo: float, hi: float):
    def conv(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = float("nan")
        if not lo <= v <= hi:               # nan and inf too
            raise argparse.ArgumentTypeError(f"{opt} {text}: must be a number {lo:g}..{hi:g}")
        return v
    return conv


MAX_INTERVAL = 3600.0       # s: nicinfo -w


def interval(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0 < v <= MAX_INTERVAL:           # nan and inf too
        raise argparse.ArgumentTypeError(f"-w {text}: must be a number of seconds, more "
                                         f"than 0 and at most {MAX_INTERVAL:g}")
    return v



def req(args, op, **kw):
    need_root()
    try:
        return control.request(args.instance, op, **kw)
    except ControlError as e:
        fail(str(e), EXIT_USAGE if e.usage else 1)


def timestamp(t: float | None = None) -> str:
    """ISO 8601, UTC, milliseconds: '2026-11-28T10:20:31.123Z'."""
    dt = datetime.fromtimestamp(time.time() if t is None else t, timezone.utc)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_flags(sp) -> None:
    """--json, and -j as iproute2 spells it."""
    sp.add_argument("-j", "--json", action="store_true",
                    help="print JSON, with a timestamp (ISO 8601, UTC)")


def dump(obj, key: str = "items") -> None:
    """--json: every output carries a "timestamp" (when the answer came).
    An object gets the key; a list is wrapped: {"timestamp": ..., key: [...]}
    (key: "interfaces", "routes", "neighbours", "labs")."""
    ts = timestamp()
    print(json.dumps({"timestamp": ts, key: obj} if isinstance(obj, list)
                     else {"timestamp": ts, **obj}, indent=2))



# ifconfig's and route's words come after the interface or the command, as
# BSD's do, and may start with a dash (-alias, -tso4, -net, -ifp): argparse
# takes them as a remainder. Options a user puts after them (--json, -j,
# --instance NAME) are taken back out by take_options.
def take_options(args) -> None:
    """Move --json, -j and --instance NAME from the remainder `args.words`
    to their attributes, leaving the command's own words in order."""
    words, out = list(args.words), []
    while words:
        w = words.pop(0)
        if w in ("--json", "-j"):
            args.json = True
        elif w == "--instance" or w.startswith("--instance="):
            name = w.partition("=")[2] if "=" in w else (words.pop(0) if words else "")
            if not name:
                fail("--instance needs a NAME", EXIT_USAGE)
            try:
                args.instance = _show_instance(name)
            except argparse.ArgumentTypeError as e:
                fail(str(e), EXIT_USAGE)
        else:
            out.append(w)
    args.words = out


def show_parser(sub, name, help_, fn, old_i=True, usage_text=None):
    """A show command's parser: --instance NAME (else $SOCK, else iopkt),
    --json, and the old -i refused with the hint that --instance replaced it.
    `usage_text` (the command's own lines, as its module's docstring lays
    them out) is its --help description, kept as written."""
    sp = sub.add_parser(name, help=help_, description=usage_text or help_,
                        formatter_class=argparse.RawDescriptionHelpFormatter
                        if usage_text else argparse.HelpFormatter)
    sp.add_argument("--instance", dest="instance", default=None, type=_show_instance,
                    metavar="NAME", help=f"the stack instance to ask (default: "
                    f"${INSTANCE_ENV}, else {DEFAULT_INSTANCE})")
    if old_i:       # netstat's -i is the interface table
        sp.add_argument("-i", dest="old_instance", type=_old_instance_option,
                        help=argparse.SUPPRESS)
    json_flags(sp)
    sp.set_defaults(fn=fn)
    return sp


def lab_prefix(text: str) -> str:
    from iopkt.lab import lab
    try:
        return lab.check_prefix(text)       # its message starts with --prefix
    except lab.LabError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
