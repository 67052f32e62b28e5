"""Bad input everywhere, without root and without a running stack.

The convention: a usage error (a value out of range, a bad address or
prefix, an unknown option, an impossible size) exits 2; a failure at run
time (a TAP that will not open, no such stack or interface) exits 1; either
way stderr gets exactly one line that names the value or the object, and
never a traceback. Every case here is refused before a TAP is opened or a
stack is asked, so `need_root` is bypassed: the checks must come first.
"""

import errno
import os
import subprocess
import sys
from collections import namedtuple

import pytest

from iopkt.cmd import cli, util
from iopkt.ctl import control
from iopkt.dev.autoconf import DeviceError
from iopkt.dev.tap import tap_open_error

T = "tap0"

# (argv, exit code, a fragment of the one line on stderr)
CASES = [
    # ifconfig: checked by the CLI before it asks the stack
    (["ifconfig", T, "mtu", "99999"], 2, "ifconfig: mtu 99999: must be 68..9000"),
    (["ifconfig", T, "mtu", "-5"], 2, "mtu -5: must be 68..9000"),
    (["ifconfig", T, "mtu", "abc"], 2, "mtu abc: expected a whole number 68..9000"),
    (["ifconfig", T, "mtu"], 2, "mtu needs a value"),
    (["ifconfig", T, "inet", "300.1.1.1/24"], 2,
     "inet 300.1.1.1/24: 300.1.1.1 is not an IPv4 address (four numbers 0..255"),
    (["ifconfig", T, "inet", "10.0.0.1/33"], 2, "prefix length /33: must be 0..32"),
    (["ifconfig", T, "inet", "10.0.0.1"], 2,
     "give a prefix length or a netmask, e.g. 10.0.0.1/24"),
    (["ifconfig", T, "10.0.0.1", "netmask", "255.0.255.0"], 2,
     "netmask 255.0.255.0: not a netmask"),
    (["ifconfig", T, "inet6", "2001:db8::1", "netmask", "255.0.0.0"], 2,
     "netmask goes with inet"),
    (["ifconfig", T, "10.0.0.1/24", "netmask", "255.0.0.0"], 2, "a prefix length and a netmask"),
    (["ifconfig", T, "alias"], 2, "alias needs an address"),
    (["ifconfig", T, "inet", "inet6", "::1/64"], 2, "one address family at a time"),
    (["ifconfig", "-a", T], 2, "-a shows every interface"),
    (["ifconfig", T, "delete", "1.2.3.400"], 2, "1.2.3.400 is not an IPv4 address"),
    (["ifconfig", T, "-frob"], 2, "ifconfig: cannot understand '-frob'"),
    # route
    (["route", "add", "10.0.0.0/33", "198.18.0.2"], 2,
     "route: add 10.0.0.0/33: prefix length /33: must be 0..32"),
    (["route", "add", "10.0.0.0/24", "198.18.0.256"], 2,
     "gateway 198.18.0.256: not an IPv4 address"),
    (["route", "delete", "10.0.0.0/40"], 2, "prefix length /40"),
    (["route", "add", "10.0.0.0/24", "198.18.0.2", "-ifp"], 2, "add: give -ifp its value"),
    (["route", "add", "10.0.0.0/24", "198.18.0.2", "-via", T], 2,
     "route: add: unknown modifier '-via'"),
    (["route", "show", "all"], 2, "route: show: cannot understand 'all'"),
    (["route", "delete", "10.0.0.0/8", "198.18.0.2"], 2,
     "delete: cannot understand '198.18.0.2' (route delete [-net|-host] DST)"),
    (["route", "add"], 2, "iopkt route: add: give the destination (route add [-net|-host] DST"),
    (["route", "frob"], 2, "iopkt route: unknown command 'frob': one of show, get, add"),
    (["route", "add", "-net", "10.0.0.0", "198.18.0.2"], 2,
     "add -net 10.0.0.0: give the prefix length (10.0.0.0/24) or -netmask M"),
    (["route", "add", "-host", "10.0.0.1/24", "198.18.0.2"], 2, "a host is an address"),
    (["route", "add", "-net", "10.0.0.0", "-netmask", "255.0.0.255", "198.18.0.2"], 2,
     "-netmask 255.0.0.255: not a netmask"),
    (["route", "add", "10.0.0.0/8", "-interface", T, "-ifp", T], 2, "-ifp goes with a gateway"),
    (["route", "get"], 2, "get: give the destination"),
    (["route", "flush", "-net"], 2, "flush: takes no -net"),
    (["route", "-inet", "-inet6"], 2, "not allowed with argument"),
    (["netstat", "-r", "-i"], 2, "iopkt netstat: argument -i: not allowed with argument -r"),
    (["netstat", "-c", "3"], 2, "iopkt netstat: -c COUNT goes with -w SECONDS"),
    (["netstat", "-w", "1", "-r"], 2, "-w SECONDS shows interface rates"),
    (["netstat", "-w", "0"], 2, "-w 0: must be a number of seconds"),
    (["netstat", "-r", "-p", "ip"], 2, "-p PROTO goes with -s"),
    (["netstat", "-f", "inet6", "-p", "icmp"], 2, "-p icmp is not a protocol of -f inet6"),
    (["netstat", "-p", "tcp"], 2, "argument -p: invalid choice: 'tcp'"),
    (["arp", "-d"], 2, "iopkt arp: -d HOST, or -d -a for every entry"),
    (["arp", "-d", "-a", "10.0.0.1"], 2, "-d HOST, or -d -a"),
    (["arp", "-s", "10.0.0.1"], 2, "-s HOST MAC [temp]"),
    (["arp", "-s", "10.0.0.1", "02:00:00:00:00:01", "pub"], 2, "proxy ARP is not supported"),
    (["arp", "-s", "10.0.0.1", "02:00:00:00:00:01", "soon"], 2, "cannot understand 'soon'"),
    (["arp", "-d", "-s", "10.0.0.1"], 2, "not allowed with argument"),
    (["arp", "gateway.example"], 2, "gateway.example: HOST is an IPv4 address"),
    (["arp", "10.0.0.1", "10.0.0.2"], 2, "one HOST at a time"),
    # capture
    (["capture"], 2, "iopkt capture: name the interface: 'capture IF' or 'capture -i IF'"),
    (["capture", T, "--pcapng"], 2, "iopkt capture: --pcapng goes with -w FILE"),
    (["capture", T, "-Q", "sideways"], 2, "argument -Q: invalid choice: 'sideways'"),
    (["capture", T, "-s", "-1"], 2, "-s -1: must be 0..262144"),
    (["capture", T, "-c", "0"], 2, "-c 0: must be 1.."),
    (["capture", T, "-w", "x", "--json"], 2, "--json prints one JSON line per frame"),
    # lab
    (["lab", "up", "--speed", "-5"], 2, "--speed -5: one of 10, 100, 1000, 10000"),
    (["lab", "up", "--speed", "fast"], 2, "--speed fast: one of 10, 100, 1000, 10000"),
    (["lab", "up", "--prefix", "bad name!"], 2, "--prefix 'bad name!': use 1-12 ASCII letters"),
    (["lab", "down", "--prefix", ""], 2, "--prefix '': use 1-12 ASCII letters"),
    (["lab", "down", "--prefix", "thirteenchars"], 2, "--prefix 'thirteenchars'"),
    (["lab", "up", "--prefix", "relé"], 2, "--prefix 'relé': use 1-12 ASCII letters"),
    (["lab", "down", "--prefix", "١٢"], 2, "--prefix '١٢': use 1-12 ASCII letters"),
    (["lab", "up", "--options-a", "name=relx"], 2,
     "--options-a name=relx: the lab sets 'name' itself"),
    (["lab", "up", "--options", "mtu=1400,netns=elsewhere"], 2,
     "--options netns=elsewhere: the lab sets 'netns' itself"),
    (["lab", "up", "--link", "veth", "--options-b", "ifname=eth0"], 2,
     "--options-b ifname=eth0: the lab sets 'ifname' itself"),
    (["lab", "up", "--options", "inet=10.0.0.1/24"], 2,
     "--options inet=10.0.0.1/24: the lab sets 'inet' itself"),
    # run: sizes, addresses, arguments
    (["run", "-d", "tap", "--mclbytes", "100"], 2, "--mclbytes 100: must be 256..65536"),
    (["run", "-d", "tap", "--nmbclusters", "0"], 2, "--nmbclusters 0: must be 1..1048576"),
    (["run", "-d", "tap", "--nmbclusters", "10000000"], 2, "--nmbclusters 10000000: must be"),
    (["run", "-d", "tap", "--nmbclusters", "many"], 2, "--nmbclusters many: expected a whole"),
    (["run", "-d", "tap", "--nmbjumbo", "-1"], 2, "--nmbjumbo -1: must be 0..4096"),
    (["run", "-d", "tap", "--inet", "tap0=1.2.3.4"], 2, "expected IF=ADDR/PLEN"),
    (["run", "-d", "tap", "--inet", "tap0=300.1.1.1/24"], 2, "300.1.1.1 is not an IPv4"),
    (["run", "-d", "tap", "--route", "10.0.0.0/33=198.18.0.2"], 2, "prefix length /33"),
    (["run", "-d", "tap", "--route", "default"], 2, "--route default: expected DST=GW"),
    (["run", "-d", "tap", "--route", "default=1.2.3"], 2, "gateway 1.2.3: not an IPv4"),
    (["run", "-d", "tap", "--frob"], 2, "unrecognized arguments: --frob"),
    (["run"], 2, "nothing to run"),
    # bench: checked before root and iperf3 are asked for
    (["bench", "--reps", "0"], 2, "--reps 0: must be 1..50"),
    (["bench", "--reps", "-3"], 2, "--reps -3: must be 1..50"),
    (["bench", "--seconds", "0"], 2, "--seconds 0: must be a number 1..120"),
    (["bench", "--seconds", "nan"], 2, "--seconds nan: must be a number"),
    (["bench", "--seconds", "inf"], 2, "--seconds inf: must be a number"),
    (["bench", "--latency-seconds", "0.2"], 2, "--latency-seconds 0.2: must be a number 0.5..60"),
    (["bench", "--latency-seconds", "x"], 2, "--latency-seconds x: must be a number 0.5..60"),
    (["bench", "--cpu", "0"], 2, "CPU budget 0.0: must be between 0.05 and 1"),
    (["bench", "--cpu", "-1"], 2, "CPU budget -1.0"),
    (["bench", "--frames", "0"], 2, "frame size 0: choose from RFC 2544"),
    (["bench", "--frames", "big"], 2, "--frames big: expected a whole number"),
    (["bench", "--prefix", "a b"], 2, "--prefix 'a b'"),
    (["bench", "--drivers", "fast"], 2, "driver 'fast': choose from"),
    (["nicinfo", "--instance", "bad name!"], 2,
     "--instance bad name!: instance name 'bad name!'"),
    (["nicinfo", "-i", "lab"], 2, "-i lab: the show commands choose the stack with "
     "--instance lab (or SOCK=lab)"),
    (["route", "-i", "lab"], 2, "-i lab: the show commands choose the stack with --instance"),
    (["run", "-d", "tap", "-i", "bad name!"], 2, "-i bad name!: instance name 'bad name!'"),
    (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    # driver options: refused before the TAP is opened
    (["run", "-d", "tap", "txqlen=0"], 2, "devnp-tap: option txqlen=0: must be 1..65536"),
    (["run", "-d", "tap", "txqlen=-1"], 2, "devnp-tap: option txqlen=-1: must be 1..65536"),
    (["run", "-d", "tap", "txqlen=100000"], 2, "option txqlen=100000: must be 1..65536"),
    (["run", "-d", "tap", "burst=0"], 2, "devnp-tap: option burst=0: must be >= 1"),
    (["run", "-d", "tap", "burst=100000"], 2, "option burst=100000: must be 1..4096"),
    (["run", "-d", "tap", "mtu=50"], 2, "devnp-tap: option mtu=50: must be 68..9000"),
    (["run", "-d", "tap", "speed=7"], 2, "option speed=7: one of 10, 100, 1000, 10000"),
    (["run", "-d", "tap", "mac=zz"], 2,
     "devnp-tap: option mac=zz: expected xx:xx:xx:xx:xx:xx, six hex bytes like "
     "02:00:00:00:00:01"),
    (["run", "-d", "tap", "mac=0x2:0:0:0:0:1"], 2, "option mac=0x2:0:0:0:0:1: expected"),
    (["run", "-d", "tap", "mac=01:00:5e:00:00:01"], 2, "(unicast: first byte even"),
    (["run", "-d", "tap", "name=a/b"], 2, "devnp-tap: option name=a/b: an interface name"),
    (["run", "-d", "tap", "offload=2"], 2, "option offload=2: expected 0 or 1"),
    (["run", "-d", "tap", "sped=100"], 2, "devnp-tap: unknown option 'sped'"),
    (["run", "-d", "devn-tap", "mac=zz"], 2,
     "devn-tap: option mac=zz: expected six hex bytes like 02:00:00:00:00:01"),
    (["run", "-d", "devn-tap", "mac=03:00:00:00:00:01"], 2, "a unicast address"),
    (["run", "-d", "devn-tap", "npkts=1"], 2, "devn-tap: option npkts=1: must be 2..65536"),
    (["run", "-d", "devn-tap", "npkts=1000000"], 2, "option npkts=1000000: must be 2..65536"),
    (["run", "-d", "devn-tap", "burst=0"], 2, "devn-tap: option burst=0: must be 1..4096"),
    (["run", "-d", "devn-tap", "batch=5"], 2, "devn-tap: option batch=5: must be 0..1"),
    (["run", "-d", "devn-tap", "mtu=2040"], 2, "devn-tap: option mtu=2040: must be 68..2034"),
    (["run", "-d", "devn-tap", "speed=-1"], 2, "devn-tap: option speed=-1: one of"),
    (["run", "-d", "devn-tap", "name=a b"], 2, "devn-tap: option name=a b: an interface name"),
    (["run", "-d", "devn-tap", "shimqlen=0"], 2, "devnp-shim: option shimqlen=0: must be 1..65536"),
    (["run", "-d", "devn-tap", "shimburst=-1"], 2, "option shimburst=-1: must be 1..4096"),
    (["run", "-d", "devn-tap", "shimrxcopy=2"], 2, "option shimrxcopy=2: must be 0 or 1"),
    (["run", "-d", "devn-tap", "lenient=7"], 2, "devnp-shim: option lenient=7: must be 0 or 1"),
    (["run", "-d", "devn-tap", "shimqlen=x"], 2, "option shimqlen=x: expected a whole number"),
    (["run", "-d", "shim"], 2, "devnp-shim: name the legacy driver"),
]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    return lines[0]


@pytest.fixture
def no_root_needed(monkeypatch):
    """Root is never the point here: a check that comes after need_root
    would be skipped for a user without it."""
    monkeypatch.setattr(util, "need_root", lambda: None)
    monkeypatch.setattr(control, "request", _no_stack)
    # A check that lets a bad option through must fail here, not run a
    # stack (with real TAPs, as root) until something kills it.
    import pytun

    from iopkt.stack.stack import Stack
    monkeypatch.setattr(Stack, "run", _no_stack)
    monkeypatch.setattr(pytun, "TunTapDevice", _no_stack)


def _no_stack(*a, **kw):
    raise AssertionError("a bad argument reached the stack")


@pytest.mark.parametrize("argv, code, fragment", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input(argv, code, fragment, no_root_needed, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    line = _one_line(capsys)
    assert (e.value.code, fragment in line) == (code, True), line


def test_the_check_comes_before_root(monkeypatch, capsys):
    """Without root, a bad value is still a usage error, not 'needs root'."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for argv in (["bench", "--cpu", "0"], ["ifconfig", T, "mtu", "1"],
                 ["run", "-d", "tap", "--route", "x=y"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2 and "root" not in _one_line(capsys)


Mem = namedtuple("Mem", "available")


def test_a_pool_larger_than_free_memory_is_refused_before_it_is_built(monkeypatch, capsys):
    import psutil
    monkeypatch.setattr(psutil, "virtual_memory", lambda: Mem(3_100_000_000))
    monkeypatch.setattr(util, "need_root", lambda: pytest.fail("built the pool"))
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "-d", "tap", "--nmbclusters", "1000000", "--mclbytes", "4096"])
    line = _one_line(capsys)
    assert e.value.code == 2
    assert line.startswith("iopkt run: --nmbclusters 1000000: 5.1 GB for the mbuf pool "
                           "(1000000 clusters of 4096 bytes and 256 of 64 KB")
    assert line.endswith("more than the 3.1 GB this machine has free")


def test_jumbo_pool_named_when_it_is_what_does_not_fit(monkeypatch, capsys):
    import psutil
    monkeypatch.setattr(psutil, "virtual_memory", lambda: Mem(100_000_000))
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "-d", "tap", "--nmbjumbo", "4096"])
    assert e.value.code == 2 and _one_line(capsys).startswith("iopkt run: --nmbjumbo 4096: 0.3 GB")


def test_route_add_with_ifp_as_the_help_prints_it(monkeypatch):
    seen = {}
    monkeypatch.setattr(util, "req", lambda args, op, **kw: seen.update(kw, op=op) or [])
    cli.main(["route", "add", "10.9.0.0/16", "198.18.0.2", "-ifp", "tap1", "--instance", "lab"])
    assert seen == {"op": "route", "add": "10.9.0.0/16", "gateway": "198.18.0.2",
                    "ifname": "tap1"}


def test_help_words_are_accepted(monkeypatch):
    """Every word ifconfig's help prints reaches the stack."""
    seen = []
    monkeypatch.setattr(util, "req", lambda args, op, **kw: seen.append(kw) or [])
    words = (["inet", "10.0.0.1/24"], ["delete", "10.0.0.1"], ["mtu", "1400"], ["up"],
             ["down"], ["-tso4"], ["tcp4csum-rx"], ["-udp4csum-tx"], ["-ip4csum"],
             ["alias", "10.0.0.2/24"], ["-alias", "10.0.0.2"])
    for w in words:
        cli.main(["ifconfig", "tap0", *w])
    # Each one as the request the stack is sent, in order.
    assert seen == [{"ifname": "tap0", **kw} for kw in (
        {"inet": "10.0.0.1/24", "replace": True}, {"delete": "10.0.0.1"}, {"mtu": 1400},
        {"up": True}, {"up": False}, {"caps": ["-tso4"]}, {"caps": ["tcp4csum-rx"]},
        {"caps": ["-udp4csum-tx"]}, {"caps": ["-ip4csum"]}, {"inet": "10.0.0.2/24"},
        {"delete": "10.0.0.2"})]


@pytest.mark.parametrize("driver", ["tap", "devn-tap"])
def test_a_tap_that_will_not_open_is_a_runtime_error_naming_it(driver, monkeypatch, capsys):
    """EINVAL on a link that exists and is not a TAP: exit 1, not 2, and a
    line that says which TAP and why (not '[Errno 22] Invalid argument')."""
    import pytun

    def refuse(name="", flags=0):
        raise pytun.Error(errno.EINVAL, "Invalid argument")
    monkeypatch.setattr(pytun, "TunTapDevice", refuse)
    monkeypatch.setattr(util, "need_root", lambda: None)
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "-d", driver, "name=lo"])
    line = _one_line(capsys)
    name = "devnp-tap" if driver == "tap" else "devn-tap"
    assert e.value.code == 1
    assert line.startswith(f"iopkt run: {name}: cannot open TAP lo: a link named lo exists "
                           "and is not a TAP")


@pytest.mark.parametrize("err, name, why", [
    (errno.EINVAL, "lo", "cannot open TAP lo: a link named lo exists and is not a TAP"),
    (errno.EBUSY, "lo", "cannot open TAP lo: lo is open already (another stack or program "
     "uses it)"),
    (errno.EINVAL, "nosuchlink9", "cannot open TAP nosuchlink9: Invalid argument"),
    (errno.EPERM, "t0", "cannot open TAP t0: Operation not permitted (needs CAP_NET_ADMIN, "
     "or the TAP belongs to another user)"),
    (errno.ENOENT, "", "cannot open a TAP: No such file or directory (/dev/net/tun: is the "
     "tun module loaded?)"),
])
def test_tap_open_error_says_what_is_in_the_way(err, name, why):
    e = tap_open_error("devnp-tap", name, OSError(err, os.strerror(err)))
    assert isinstance(e, DeviceError) and isinstance(e, OSError) and e.errno == err
    assert str(e) == f"devnp-tap: {why}"


def test_an_unexpected_exception_is_one_line(monkeypatch, capsys):
    def boom(args, op, **kw):
        raise RuntimeError("the\nbug")
    monkeypatch.setattr(util, "req", boom)
    monkeypatch.delenv("IOPKT_DEBUG", raising=False)
    with pytest.raises(SystemExit) as e:
        cli.main(["nicinfo"])
    assert e.value.code == 1
    assert _one_line(capsys) == ("iopkt nicinfo: internal error: RuntimeError: the bug "
                                 "(run with IOPKT_DEBUG=1 for the traceback)")
    monkeypatch.setenv("IOPKT_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(["nicinfo"])


def test_a_real_process_prints_one_line():
    """The same through `python -m iopkt`: what a user sees."""
    p = subprocess.run([sys.executable, "-m", "iopkt", "lab", "up", "--speed", "-5"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == ("iopkt lab up: --speed -5: one of 10, 100, 1000, 10000 (Mbit/s), "
                        "or 0 for no limit\n")
