"""The CLI's own promises that need no root: usage errors, help, and the
one-line refusal without root."""

import os

import pytest

from iopkt.cmd import cli, util

ROOT_LINE = ("needs root (CAP_NET_ADMIN for TAPs, namespaces and the control "
             "socket): run it with sudo")


@pytest.mark.parametrize("argv, prog", [(["nicinfo"], "iopkt nicinfo"),
                                        (["lab", "up"], "iopkt lab up"),
                                        (["run", "-d", "tap"], "iopkt run"),
                                        (["netstat", "-m"], "iopkt netstat"),
                                        (["route"], "iopkt route")])
def test_without_root_says_so_in_one_line(argv, prog, monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err == f"{prog}: {ROOT_LINE}\n"


COMMANDS = ("'run', 'nicinfo', 'ifconfig', 'route', 'netstat', 'arp', 'ndp', 'mount', "
            "'umount', 'capture', 'drivers', 'lab', 'bench'")


@pytest.mark.parametrize("argv, line", [
    ([], "iopkt: the following arguments are required: COMMAND (see 'iopkt --help')"),
    (["frobnicate"], f"iopkt: argument COMMAND: invalid choice: 'frobnicate' (choose from "
     f"{COMMANDS}) (see 'iopkt --help')"),
    (["lab"], "iopkt lab: the following arguments are required: up|down|status "
     "(see 'iopkt lab --help')"),
    (["lab", "sideways"], "iopkt lab: argument up|down|status: invalid choice: 'sideways' "
     "(choose from 'up', 'down', 'status') (see 'iopkt lab --help')"),
    (["nicinfo", "--instance", "bad name!"], "iopkt nicinfo: --instance bad name!: instance "
     "name 'bad name!': use 1-32 ASCII letters, digits, '-' or '_'")],
    ids=["nothing", "frobnicate", "lab", "lab-sideways", "bad-instance"])
def test_bad_arguments_exit_2(argv, line, capsys):
    """One line, not argparse's usage block: it says where the help is
    (the help of the command that was given)."""
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    assert capsys.readouterr().err == line + "\n"


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["nicinfo", "--help"],
                                  ["lab", "up", "--help"], ["netstat", "--help"]])
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 0
    # The help of the command asked for, not the top-level one.
    prog = " ".join(["iopkt", *argv[:-1]])
    assert capsys.readouterr().out.startswith(f"usage: {prog} [-h]")


def test_drivers_lists_devnp_tap(capsys):
    cli.main(["drivers", "-v"])
    out = capsys.readouterr().out
    assert "devnp-tap" in out and "burst=" in out


def test_ifconfig_capability_words_reach_the_stack_in_order(monkeypatch):
    """-tso4 is a word, not an option: it reaches the control request
    with the others, in the order given."""
    seen = {}

    def fake_req(args, op, **kw):
        seen.update(kw, op=op, instance=args.instance)
        return []

    monkeypatch.setattr(util, "req", fake_req)
    cli.main(["ifconfig", "tap1", "-tso4", "tcp4csum", "-udp4csum-rx", "--instance", "lab",
              "--json"])
    assert seen == {"op": "ifconfig", "instance": "lab", "ifname": "tap1",
                    "caps": ["-tso4", "tcp4csum", "-udp4csum-rx"]}


def test_ifconfig_dash_alias_deletes(monkeypatch):
    seen = {}
    monkeypatch.setattr(util, "req", lambda args, op, **kw: seen.update(kw) or [])
    cli.main(["ifconfig", "tap0", "-alias", "10.0.0.1"])
    assert seen == {"ifname": "tap0", "delete": "10.0.0.1"}


def test_ifconfig_unknown_word_names_the_capabilities(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["ifconfig", "tap0", "tso7"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "cannot understand 'tso7'" in err and "tso4" in err and "tcp4csum" in err


def test_lab_up_offload_takes_on_or_off(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["lab", "up", "--offload", "maybe"])
    assert e.value.code == 2
    assert "invalid choice: 'maybe'" in capsys.readouterr().err
