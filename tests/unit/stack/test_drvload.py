"""iopkt.drvload: finding drivers by name and checking their options."""

import pytest

from iopkt.dev.autoconf import Driver, DriverError, Option, split_options
from iopkt.stack import drvload
from iopkt.stack.drvload import resolve


def test_resolve_short_name():
    d = resolve("tap")
    assert d.name == "devnp-tap" and d.kind == "native"
    assert callable(d.attach)


def test_resolve_full_name():
    assert resolve("devnp-tap") is resolve("tap")


def test_available_lists_tap():
    assert "devnp-tap" in drvload.available()


def test_unknown_driver():
    with pytest.raises(DriverError) as ei:
        resolve("nosuch")
    msg = str(ei.value)
    assert "'nosuch'" in msg
    assert "devnp-nosuch" in msg and "devn-nosuch" in msg
    listed = msg.split("drivers: ", 1)[1].rstrip(")").split(", ")
    assert "devnp-tap" in listed
    assert listed == sorted(drvload.available())


def test_parse_options_ints():
    opts = resolve("tap").parse_options("mtu=1400,burst=8")
    assert opts["mtu"] == 1400 and type(opts["mtu"]) is int
    assert opts["burst"] == 8 and type(opts["burst"]) is int
    assert opts == {"name": "", "netns": "", "mac": "", "mtu": 1400, "burst": 8, "txqlen": 256,
                    "speed": 0, "offload": True, "tso4": True, "tso6": True, "tcp4csum": True,
                    "udp4csum": True, "tcp6csum": True, "udp6csum": True}


def test_parse_options_defaults_and_spacing():
    d = resolve("tap")
    assert d.parse_options(None) == d.parse_options("") == {
        "name": "", "netns": "", "mac": "", "mtu": 1500, "burst": 64, "txqlen": 256, "speed": 0,
        "offload": True, "tso4": True, "tso6": True, "tcp4csum": True, "udp4csum": True,
        "tcp6csum": True, "udp6csum": True}
    assert d.parse_options("offload=0,tso4=off")["offload"] is False
    assert d.parse_options(" mtu = 9000 , ,name=lab0")["mtu"] == 9000
    assert d.parse_options("name=lab0")["name"] == "lab0"


def test_unknown_option_named():
    with pytest.raises(DriverError) as ei:
        resolve("tap").parse_options("mtu=1400,sped=100")
    msg = str(ei.value)
    assert "unknown option 'sped'" in msg
    assert "devnp-tap" in msg
    assert ("burst, mac, mtu, name, netns, offload, speed, tcp4csum, tcp6csum, tso4, tso6, "
            "txqlen, udp4csum, udp6csum" in msg)         # what it would accept


def test_non_integer_mtu_named():
    with pytest.raises(DriverError) as ei:
        resolve("tap").parse_options("mtu=big")
    assert str(ei.value) == "devnp-tap: option mtu=big: expected int"


def test_option_without_value():
    with pytest.raises(DriverError, match=r"option mtu needs a value"):
        resolve("tap").parse_options("mtu")


def test_bool_option():
    d = Driver("devnp-x", "native", "test", {"promisc": Option(bool, False, "h")})
    assert d.parse_options("promisc")["promisc"] is True
    assert d.parse_options("promisc=off")["promisc"] is False
    assert d.parse_options("promisc=1")["promisc"] is True
    with pytest.raises(DriverError, match=r"option promisc=maybe: expected 0 or 1"):
        d.parse_options("promisc=maybe")


def test_driver_without_options():
    d = Driver("devnp-x", "native", "test")
    with pytest.raises(DriverError, match=r"unknown option 'a' \(options: none\)"):
        d.parse_options("a=1")


def test_split_options():
    assert split_options(None) == [] and split_options("") == []
    assert split_options("a=1, b ,,c=") == ["a=1", "b", "c="]


def test_options_help_mentions_every_option():
    text = resolve("tap").options_help()
    for k in ("name", "mac", "mtu", "burst", "txqlen"):
        assert f"  {k}=" in text


@pytest.mark.parametrize("opt, msg", [
    ("mtu=50", "option mtu=50: must be 68..9000"),
    ("mtu=9001", "option mtu=9001: must be 68..9000"),
    ("burst=0", "option burst=0: must be >= 1"),
    ("mac=zz", "option mac=zz: expected xx:xx:xx:xx:xx:xx"),
    ("name=averyveryverylongname", "at most 15 characters"),
])
def test_tap_attach_rejects_bad_values_before_opening(stack, opt, msg):
    d = resolve("tap")
    with pytest.raises(DriverError, match=msg):
        d.attach(stack, d.parse_options(opt))
    assert stack.ifnets == {}
