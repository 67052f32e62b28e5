"""The lab's link kinds without building anything: which drivers drive
which link, the options each side gets, where the offloads go, and the
usage errors of `lab up --link` and `bench --link` (checked before root)."""

import subprocess
import sys

import pytest

from iopkt.dev.autoconf import Driver, Option
from iopkt.lab import lab
from iopkt.stack import drvload


def _fake(name, kind, **opts):
    return Driver(name=name, kind=kind, description="",
                  options={k: Option(type(v), v, "") for k, v in opts.items()})


AFP = _fake("devnp-afpacket", "native", ifname="", netns="", offload=True)
LAFP = _fake("devn-afpacket", "legacy", ifname="", netns="", npkts=256)


def _tap_drivers() -> dict:
    """The TAP drivers and the shim as installed, nothing else (another
    driver being written may not import yet)."""
    import importlib
    out = {}
    for mod in ("devnp_tap", "devn_tap", "devnp_shim"):
        d = importlib.import_module(mod).DRIVER
        out[d.name] = d
    return out


@pytest.fixture
def drivers(monkeypatch):
    """The TAP drivers plus stand-ins for the AF_PACKET ones (declaring
    the options they take), whether or not those are installed yet."""
    have = {**_tap_drivers(), "devnp-afpacket": AFP, "devn-afpacket": LAFP}
    monkeypatch.setattr(drvload, "available", lambda: have)
    return have


def test_each_link_takes_its_own_drivers(drivers):
    assert lab.default_driver("tap") == "devnp-tap"
    assert lab.default_driver("veth") == "devnp-afpacket"
    assert lab.check_driver("tap", "tap").name == "devnp-tap"      # short names too
    assert lab.check_driver("devn-tap", "tap").name == "devn-tap"
    assert lab.check_driver("devnp-afpacket", "veth") is AFP
    assert lab.check_driver("afpacket", "veth") is AFP
    assert lab.check_driver("devn-afpacket", "veth") is LAFP


@pytest.mark.parametrize("name,link,words", [
    ("devn-tap", "veth", ["driver devn-tap opens a TAP", "with --link veth use devn-afpacket",
                          "devnp-afpacket"]),
    ("devnp-tap", "veth", ["with --link veth use devnp-afpacket", "devn-afpacket"]),
    ("devnp-afpacket", "tap", ["through AF_PACKET, not to a TAP", "use it with --link veth",
                               "devnp-tap or devn-tap"]),
    ("devnp-shim", "veth", ["cannot face a host", "devnp-afpacket", "devn-afpacket"]),
    ("nosuch", "veth", ["no driver 'nosuch'", "devnp-afpacket (native) or devn-afpacket"]),
    ("nosuch", "tap", ["no driver 'nosuch'"]),
])
def test_a_driver_on_the_wrong_link_is_one_usage_line(drivers, name, link, words):
    with pytest.raises(lab.LabError) as e:
        lab.check_driver(name, link)
    assert e.value.usage is True
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_a_missing_afpacket_driver_is_named(monkeypatch):
    real = _tap_drivers()
    monkeypatch.setattr(drvload, "available", lambda: real)
    with pytest.raises(lab.LabError, match=r"--link veth: no driver 'devnp-afpacket' here"):
        lab.check_driver("devnp-afpacket", "veth")


def test_veth_side_options_speed_only_to_a_driver_that_paces():
    assert lab._veth_driver_opts(AFP, "P-sa", "P-s", "", 100, False) == \
        "ifname=P-sa,netns=P-s,offload=0"
    paced = _fake("devnp-afpacket", "native", ifname="", netns="", speed=0, offload=True)
    assert lab._veth_driver_opts(paced, "P-sa", "P-s", "burst=8", 100, None) == \
        "ifname=P-sa,netns=P-s,speed=100,burst=8"
    # io-net drivers never had offload: --offload does not reach them.
    assert lab._veth_driver_opts(LAFP, "P-sb", "P-s", "shimrxcopy=0", 0, True) == \
        "ifname=P-sb,netns=P-s,shimrxcopy=0"
    # The TAP lab's options are as they were.
    assert lab._driver_opts("devnp-tap", "P-a0", "P-a", "", 100, False) == \
        "name=P-a0,netns=P-a,speed=100,offload=0"


def test_a_hosts_veth_end_keeps_offloads_only_for_a_driver_that_takes_them():
    assert lab.side_offload(AFP, "", None) is True              # the driver's default
    assert lab.side_offload(AFP, "", False) is False            # lab up --offload off
    assert lab.side_offload(AFP, "offload=0", None) is False    # bench's native
    assert lab.side_offload(AFP, "offload=1", False) is True    # its own options win
    assert lab.side_offload(LAFP, "", True) is False            # io-net: never
    with pytest.raises(lab.LabError, match="offload=maybe"):
        lab.side_offload(AFP, "offload=maybe", None)


def test_the_spec_names_every_part_after_the_prefix():
    s = lab.LabSpec(prefix="P", link="veth")
    assert (s.ns_a, s.ns_b, s.ns_s) == ("P-a", "P-b", "P-s")
    assert (s.tap_a, s.tap_b, s.port_a, s.port_b) == ("P-a0", "P-b0", "P-sa", "P-sb")
    long = lab.LabSpec(prefix="x" * 12)
    assert max(len(n) for n in (long.port_a, long.tap_b, long.ns_s)) <= 15


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "iopkt", *args], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("args,needle", [
    (["lab", "up", "--link", "fiber"], "argument --link: invalid choice: 'fiber'"),
    (["lab", "up", "--link", "veth", "--driver", "devn-tap"],
     "with --link veth use devn-afpacket"),
    (["lab", "up", "--link", "tap", "--driver-b", "nosuch"], "no driver 'nosuch'"),
    (["bench", "--link", "fiber"], "argument --link: invalid choice: 'fiber'"),
])
def test_link_usage_errors_exit_2_in_one_line_before_root(args, needle):
    r = _cli(*args)
    assert r.returncode == 2, r
    assert needle in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "root" not in r.stderr
