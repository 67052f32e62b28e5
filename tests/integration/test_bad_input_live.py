"""Bad input against a running stack and real TAPs (root): the exit code and
the one line a user gets, through `python -m iopkt` as a user runs it.

Usage errors exit 2, run-time failures (no such interface, a TAP that will
not open) exit 1; stderr is one line, never a traceback.
"""

import json
import subprocess
import sys

import pytest

from iopkt.lab import lab

from conftest import unique_prefix


def iopkt(*args):
    return subprocess.run([sys.executable, "-m", "iopkt", *args], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def live(request):
    """One lab for the module: devnp-tap on side A, devn-tap on side B."""
    spec = lab.LabSpec(prefix=unique_prefix("bad"), driver_a="devnp-tap", driver_b="devn-tap")
    request.addfinalizer(lambda: lab.down(spec.prefix, quiet=True))
    st = lab.up(spec)
    return {"p": spec.prefix, "a": st["if_a"], "b": st["if_b"], "tap_a": st["tap_a"],
            "ns_a": st["ns_a"]}


def _one_line(res) -> str:
    assert "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {res.stderr!r}"
    return lines[0]


# (argv with {p} {a} {b} {tap_a} {ns_a} filled in from the lab, exit code, fragment)
LIVE = [
    (["ifconfig", "{a}", "mtu", "99999"], 2, "mtu 99999: must be 68..9000"),
    (["ifconfig", "{a}", "inet", "300.1.1.1/24"], 2,
     "inet 300.1.1.1/24: 300.1.1.1 is not an IPv4 address"),
    (["route", "add", "10.0.0.0/33", "198.19.0.2"], 2, "route: add 10.0.0.0/33: prefix length /33"),
    (["route", "add", "10.9.0.0/16", "198.19.0.2", "-ifp"], 2, "add: give -ifp its value"),
    (["ifconfig", "nosuch0", "mtu", "1400"], 1, "no interface 'nosuch0'"),
    (["route", "add", "10.9.0.0/16", "198.19.0.2", "-ifp", "nosuch0"], 1,
     "no interface 'nosuch0'"),
    (["nicinfo", "nosuch0"], 1, "no interface 'nosuch0'"),
    (["umount", "nosuch0"], 1, "nosuch0"),
    (["mount", "tap", "txqlen=0"], 2, "devnp-tap: option txqlen=0: must be 1..65536"),
    (["mount", "devn-tap", "mac=zz"], 2,
     "devn-tap: option mac=zz: expected six hex bytes like 02:00:00:00:00:01"),
    (["mount", "tap", "name=lo"], 1,
     "devnp-tap: cannot open TAP lo: a link named lo exists and is not a TAP"),
    (["mount", "devn-tap", "name=lo"], 1,
     "devn-tap: cannot open TAP lo: a link named lo exists and is not a TAP"),
    (["mount", "tap", "name={tap_a},netns={ns_a}"], 1,
     "devnp-tap: cannot open TAP {tap_a}: {tap_a} is open already"),
]


@pytest.mark.parametrize("argv, code, fragment", LIVE, ids=[" ".join(c[0]) for c in LIVE])
def test_bad_input_live(live, argv, code, fragment):
    res = iopkt(*[a.format(**live) for a in argv], "--instance", live["p"])
    line = _one_line(res)
    assert (res.returncode, fragment.format(**live) in line) == (code, True), line


def test_route_add_with_ifp_as_the_help_prints_it(live):
    """`route add DST GW -ifp IF`: the syntax `iopkt route --help` prints."""
    p, b = live["p"], live["b"]
    res = iopkt("route", "add", "10.9.0.0/16", "198.19.0.2", "-ifp", b, "--instance", p,
                "--json")
    assert res.returncode == 0, res.stderr
    route = next(r for r in json.loads(res.stdout)["routes"]
                 if r["destination"] == "10.9.0.0/16")
    assert (route["gateway"], route["interface"]) == ("198.19.0.2", b)
    assert iopkt("route", "delete", "10.9.0.0/16", "--instance", p).returncode == 0


# `iopkt run` as a user starts it: the drivers' log lines before a failure
# (tap0 attached, detached) must not reach stderr, only the one line.
RUN = [
    (["-d", "tap", "name=lo"], 1,
     "iopkt run: devnp-tap: cannot open TAP lo: a link named lo exists and is not a TAP"),
    (["-d", "devn-tap", "name=lo"], 1,
     "iopkt run: devn-tap: cannot open TAP lo: a link named lo exists and is not a TAP"),
    (["-d", "tap", "-d", "tap", "name=lo"], 1, "iopkt run: devnp-tap: cannot open TAP lo"),
    (["-d", "tap", "txqlen=0"], 2, "iopkt run: devnp-tap: option txqlen=0: must be 1..65536"),
    (["-d", "devn-tap", "batch=2"], 2, "iopkt run: devn-tap: option batch=2: must be 0..1"),
    (["-d", "tap", "--inet", "tap9=10.0.0.1/24"], 2, "IF one of tap0"),
]


@pytest.mark.parametrize("args, code, fragment", RUN, ids=[" ".join(c[0]) for c in RUN])
def test_run_refuses_in_one_line(args, code, fragment):
    res = iopkt("run", "-i", unique_prefix("r"), *args)
    line = _one_line(res)
    assert (res.returncode, line.startswith(fragment) or fragment in line) == (code, True), line


def test_run_with_a_name_in_use_names_the_stack(live):
    res = iopkt("run", "-i", live["p"], "-d", "tap")
    line = _one_line(res)
    assert res.returncode == 1 and live["p"] in line, line
