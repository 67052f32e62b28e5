"""The CLI's own promises that need no root: usage errors, help, and the
one-line refusal without root."""

import pytest

from iopkt import cli

ROOT_LINE = ("iopkt: needs root (CAP_NET_ADMIN for TAPs, namespaces and the control "
             "socket): run it with sudo")


@pytest.mark.parametrize("argv", [["nicinfo"], ["lab", "up"], ["run", "-d", "tap"],
                                  ["netstat", "-m"], ["route"]])
def test_without_root_says_so_in_one_line(argv, monkeypatch, capsys):
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.strip() == ROOT_LINE


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["lab"], ["lab", "sideways"],
                                  ["nicinfo", "-i", "bad name!"]])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["nicinfo", "--help"],
                                  ["lab", "up", "--help"], ["netstat", "--help"]])
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 0
    assert "usage: iopkt" in capsys.readouterr().out


def test_drivers_lists_devnp_tap(capsys):
    cli.main(["drivers", "-v"])
    out = capsys.readouterr().out
    assert "devnp-tap" in out and "burst=" in out
