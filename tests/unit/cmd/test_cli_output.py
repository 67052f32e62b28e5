"""What the CLI prints, from canned answers of a stack (no root, no stack):
the instance convention (--instance, $SOCK), BSD's netstat and arp flags,
nicinfo's layout, live rates (nicinfo -w) and the timestamp of every --json
output."""

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from canned import (
    ARP,
    NETSTAT,
    ROUTES,
    SHIM_INFO,
    TAP_INFO,
    nic,
    one_line,
    parse_ts,
    run,
)

from iopkt.cmd import cli, nicinfo, util
from iopkt.ctl import control

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))



# -- 1. the instance convention ---------------------------------------------
SHOW = [["nicinfo"], ["ifconfig"], ["route"], ["netstat"], ["arp"],
        ["mount", "tap", "name=x"], ["umount", "tap0"]]


@pytest.mark.parametrize("argv", SHOW, ids=lambda a: a[0])
def test_show_commands_take_instance_then_sock_then_iopkt(argv, stack, capsys, monkeypatch):
    asked = []
    # SOCK as QNX writes it (a path prefix) or as a bare name; the option wins.
    for sock, extra in ((None, []), ("fromenv", []), ("/alt", []), ("/alt/", []),
                        ("fromenv", ["--instance", "lab"])):
        if sock is not None:
            monkeypatch.setenv("SOCK", sock)
        stack.calls.clear()
        assert run([*argv, *extra], capsys)[0] == 0
        asked.append({c[0] for c in stack.calls})
    assert asked == [{"iopkt"}, {"fromenv"}, {"alt"}, {"alt"}, {"lab"}]


@pytest.mark.parametrize("argv", [a for a in SHOW if a[0] != "netstat"], ids=lambda a: a[0])
def test_dash_i_on_a_show_command_says_what_replaced_it(argv, stack, capsys):
    code, out, err = run([*argv, "-i", "lab"], capsys)
    assert code == 2 and out == "" and stack.calls == []
    assert ("-i lab: the show commands choose the stack with --instance lab (or SOCK=lab); "
            "-i names the instance only for 'iopkt run'") in one_line(err)


def test_run_keeps_dash_i():
    args = cli.build_parser().parse_args(["run", "-i", "lab", "-d", "tap"])
    assert args.instance == "lab"


def test_a_bad_sock_is_a_usage_error_naming_it(stack, capsys, monkeypatch):
    monkeypatch.setenv("SOCK", "bad name!")
    code, _, err = run(["nicinfo"], capsys)
    assert code == 2 and stack.calls == []
    assert one_line(err).startswith("iopkt nicinfo: SOCK=bad name!: instance name 'bad name!'")


@pytest.mark.parametrize("value, shown", [("a\nb", "a\\nb"), ("a\x1b[31mb", "a\\x1b[31mb"),
                                          ("x\ry", "x\\ry"), ("relé", "relé")])
def test_a_sock_with_control_characters_is_shown_escaped_on_one_line(stack, capsys,
                                                                     monkeypatch, value, shown):
    monkeypatch.setenv("SOCK", value)
    code, out, err = run(["nicinfo"], capsys)
    assert code == 2 and stack.calls == [] and out == ""
    assert err.count("\n") == 1 and "\r" not in err and "\x1b" not in err, repr(err)
    assert err.startswith(f"iopkt nicinfo: SOCK={shown}: instance name "), err


def test_no_such_stack_lists_the_running_ones_and_how_to_choose(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(util, "need_root", lambda: None)
    monkeypatch.setattr(control, "RUN_DIR", str(tmp_path))
    (tmp_path / "lab1.sock").touch()
    code, _, err = run(["nicinfo", "--instance", "other"], capsys)
    assert code == 1
    line = one_line(err)
    assert "no stack named 'other' is running" in line
    assert line.endswith("running: lab1 (choose with --instance NAME or SOCK=NAME)")


def test_lab_up_prints_show_commands_with_instance(monkeypatch, capsys):
    from iopkt.lab import lab
    st = {"pid": 42, "driver_a": "devnp-tap", "driver_b": "devn-tap", "ns_a": "p-a",
          "ns_b": "p-b", "if_a": "tap0", "if_b": "en0",
          "mount_a": "iopkt mount --instance p devnp-tap name=p-a0,netns=p-a",
          "mount_b": "iopkt mount --instance p devn-tap name=p-b0,netns=p-b"}
    monkeypatch.setattr(util, "need_root", lambda: None)
    monkeypatch.setattr(lab, "up", lambda spec: st)
    code, out, _ = run(["lab", "up", "--prefix", "p"], capsys)
    assert code == 0
    assert "sudo .venv/bin/iopkt nicinfo --instance p\n" in out
    assert "sudo env SOCK=p .venv/bin/iopkt netstat -m" in out
    assert ("after 'iopkt umount --instance p tap0': sudo .venv/bin/iopkt mount --instance p "
            "devnp-tap name=p-a0,netns=p-a") in out
    assert not re.search(r"iopkt (nicinfo|netstat|umount|mount)\b[^\n]* -i ", out), out


def test_readme_show_commands_use_instance():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    old = re.findall(r"iopkt (?:nicinfo|ifconfig|route|netstat|arp|mount|umount)\b"
                     r"[^\n`|]*?\s-i \[?[A-Z]", text)
    assert not old, old


# -- 2. BSD habits: netstat -s/-r/-i/-m, arp -a/-n ---------------------------
@pytest.mark.parametrize("flag", [[], ["-s"]])
def test_netstat_default_and_s_are_protocol_statistics(flag, stack, capsys):
    code, out, _ = run(["netstat", *flag], capsys)
    assert code == 0 and out.startswith("ip:\n\t6 total\n\t6 forward\n")
    assert [c[1] for c in stack.calls] == ["netstat"]


def test_netstat_r_is_the_routing_table_of_both_families(stack, capsys):
    stack.seq["route"] = [ROUTES, [{"destination": "::/0", "gateway": "2001:2:0:b::2",
                                    "flags": "UGS", "interface": "en0", "use": 7}]]
    code, out, _ = run(["netstat", "-r"], capsys)
    assert code == 0 and [(c[1], c[2]) for c in stack.calls] == [
        ("route", {}), ("route", {"family": "inet6"})]
    lines = out.splitlines()
    assert lines[0] == "Internet:"
    assert lines[1].split() == ["Destination", "Gateway", "Flags", "Use", "Interface"]
    assert lines[3].split() == ["default", "198.18.0.2", "UGS", "0", "tap0"]
    six = lines.index("Internet6:")
    assert lines[six + 2].split() == ["default", "2001:2:0:b::2", "UGS", "7", "en0"]


@pytest.mark.parametrize("argv", [["-rn"], ["-r", "-n"], ["-nr"]], ids=["rn", "r_n", "nr"])
def test_netstat_rn_as_bsd_typed_it_is_the_routing_table(argv, stack, capsys):
    code, out, _ = run(["netstat", *argv], capsys)
    assert code == 0 and [c[1] for c in stack.calls] == ["route", "route"]
    assert out.splitlines()[0] == "Internet:"


def test_netstat_in_is_the_interface_table(stack, capsys):
    code, out, _ = run(["netstat", "-in"], capsys)
    assert code == 0 and [c[1] for c in stack.calls] == ["nicinfo"]
    assert out.split()[:2] == ["Name", "Mtu"]


@pytest.mark.parametrize("argv,want", [
    (["route", "add", "-inet6", "2001:db8::/32", "2001:2:0:b::2"],
     {"add": "2001:db8::/32", "gateway": "2001:2:0:b::2", "family": "inet6"}),
    (["route", "add", "2001:db8::/32", "2001:2:0:b::2", "-inet6", "-ifp", "en1"],
     {"add": "2001:db8::/32", "gateway": "2001:2:0:b::2", "ifname": "en1", "family": "inet6"}),
    (["route", "delete", "-inet6", "2001:db8::/32"],
     {"delete": "2001:db8::/32", "family": "inet6"}),
    (["route", "-inet6"], {"family": "inet6"}),
    (["route", "-inet", "add", "10.9.0.0/16", "198.18.0.2"],
     {"add": "10.9.0.0/16", "gateway": "198.18.0.2"}),
], ids=["add", "add_after_ifp", "delete", "show", "inet"])
def test_route_inet6_as_the_readme_writes_it(argv, want, stack, capsys):
    # -inet6 starts like the refused -i NAME; it is route's word all the same.
    stack.seq["route"] = [[]]
    code, _, err = run(argv, capsys)
    assert (code, err) == (0, "")
    assert [(c[1], c[2]) for c in stack.calls] == [("route", want)]


def test_netstat_rf_inet6_is_the_ipv6_table_alone(stack, capsys):
    code, out, _ = run(["netstat", "-r", "-f", "inet6"], capsys)
    assert code == 0 and [(c[1], c[2]) for c in stack.calls] == [("route", {"family": "inet6"})]
    assert out.splitlines()[0].split()[0] == "Destination"


def test_netstat_i_is_the_bsd_interface_table(stack, capsys):
    stack.answers["nicinfo"] = [
        nic(ipackets=4, ierrors=1, iqdrops=2, opackets=12345, oerrors=3, oqdrops=5),
        nic("en0", "devnp-shim", info=SHIM_INFO, inet=(), mac="02:6b:5a:e4:e7:f9")]
    code, out, _ = run(["netstat", "-i"], capsys)
    assert code == 0 and [c[1] for c in stack.calls] == ["nicinfo"]
    lines = out.splitlines()
    assert lines[0].split() == ["Name", "Mtu", "Network", "Address", "Ipkts", "Ierrs",
                                "Idrop", "Opkts", "Oerrs", "Odrop"]
    assert [ln.split() for ln in lines[1:]] == [
        ["tap0", "1500", "<Link>", "02:d3:40:13:c5:0e", "4", "1", "2", "12345", "3", "5"],
        ["tap0", "1500", "198.18.0.0/24", "198.18.0.1", "4", "1", "2", "12345", "3", "5"],
        ["en0", "1500", "<Link>", "02:6b:5a:e4:e7:f9", "0", "0", "0", "0", "0", "0"]]
    # Columns: every line as long as the header, each column starts where its header does.
    assert len({len(ln) for ln in lines}) == 1, out
    for head in ("Network", "Address"):
        col = lines[0].index(head)
        assert all(ln[col - 1] == " " and ln[col] != " " for ln in lines), out


@pytest.mark.parametrize("flags", [["-r", "-i"], ["-s", "-m"], ["-i", "-m"], ["-rim"]])
def test_netstat_conflicting_flags(flags, stack, capsys):
    code, out, err = run(["netstat", *flags], capsys)
    assert code == 2 and out == "" and stack.calls == []
    line = one_line(err)
    assert line.startswith("iopkt netstat: argument -") and "not allowed with argument -" in line


def test_netstat_i_with_an_old_instance_name_says_so(stack, capsys):
    code, _, err = run(["netstat", "-i", "lab"], capsys)
    assert code == 2 and stack.calls == []
    assert "unexpected 'lab' (choose the stack with --instance NAME or SOCK=NAME" in one_line(err)


@pytest.mark.parametrize("flags", [[], ["-a"], ["-n"], ["-an"], ["-a", "-n"]])
def test_arp_accepts_a_and_n_and_shows_whole_seconds(flags, stack, capsys):
    code, out, _ = run(["arp", *flags], capsys)
    assert code == 0
    # As BSD's arp -an prints an entry.
    assert out.splitlines() == [
        "? (198.18.0.2) at 92:57:40:bb:07:23 on tap0 expires in 1199 seconds [ethernet]",
        "? (198.18.0.9) at (incomplete) on tap0 [ethernet] (2 held)"]


# -- 3. output polish ------------------------------------------------------------
DOTTED = re.compile(r"^( +)(\S.*?) (\.{2,}) (\S.*)$")


def dotted_rows(out: str) -> list[tuple[str, int]]:
    """(label, column where its value starts) for every dotted row."""
    rows = []
    for ln in out.splitlines():
        m = DOTTED.match(ln)
        if m:
            rows.append((m.group(2), m.start(4)))
    return rows


def test_nicinfo_values_start_in_one_column(stack, capsys):
    stack.answers["nicinfo"][0]["counters"]["in_discards"]["runt"] = 3
    code, out, _ = run(["nicinfo"], capsys)
    assert code == 0
    rows = dotted_rows(out)
    labels = [lab for lab, _ in rows]
    for must in ("Broadcast/Multicast Packets Transmitted",
                 "Broadcast/Multicast Packets Received", "discarded in: runt",
                 "Frames handed up zero-copy", "Packets Waiting".capitalize(),
                 "Bytes transmitted OK", "Send queue (len/max/hiwat/drops)"):
        assert must in labels, (must, labels)
    # per family, indented under the totals they divide
    first = out.split("\nen0:")[0]                 # the first interface's block
    fam = {m[1]: m[2] for m in re.finditer(r"^    (\S+ Packets \w+) \.+ (\d+)$", first, re.M)}
    assert fam == {"IPv4 Packets Received": "5", "IPv6 Packets Received": "2",
                   "ARP Packets Received": "0", "IPv4 Packets Transmitted": "4",
                   "IPv6 Packets Transmitted": "1", "ARP Packets Transmitted": "1"}, out
    # every line with a label and a value is a dotted row
    descriptions = {f"  {d['description']}" for d in stack.answers["nicinfo"]}
    body = [ln for ln in out.splitlines() if ln.startswith("  ") and not ln.endswith(":")
            and ln not in descriptions]
    assert len(body) == len(rows), out
    assert len({col for _, col in rows}) == 1, out


def test_nicinfo_driver_counters_have_readable_names(stack, capsys):
    out = run(["nicinfo"], capsys)[1]
    assert "Frames handed up zero-copy .." in out
    assert "Offload requests dropped before the driver" in out
    assert "Hand-off queue:" in out and "Legacy driver statistics (nic_stats_t):" in out
    assert "Receive interrupts ..." in out and "Receive thread alive ...." in out
    for raw in [*TAP_INFO, *SHIM_INFO, *SHIM_INFO["handoff_queue"],
                *SHIM_INFO["legacy_driver_stats"], *SHIM_INFO["contract_violations"]]:
        if "_" not in raw and raw not in ("maxlen", "wakeups", "enqueued", "dequeued"):
            continue                        # a word (drops), or an option's name (lenient)
        assert not re.search(rf"(?<![\w-]){raw}(?![\w-])", out), raw
    assert " True" not in out and " yes" in out         # flags in words


def test_nicinfo_prints_no_empty_section(stack, capsys):
    out = run(["nicinfo", "en0"], capsys)[1]
    assert "driver_errors" not in out and "Legacy driver failures" not in out
    headings = [ln for ln in out.splitlines() if ln.endswith(":") and ln.startswith("  ")]
    lines = out.splitlines()
    for h in headings:                      # each heading has rows under it
        assert DOTTED.match(lines[lines.index(h) + 1]), h
    info = stack.answers["nicinfo"][1]["driver_info"]
    info["driver_errors"] = {"rx_down": 2}
    out = run(["nicinfo", "en0"], capsys)[1]
    assert "  Legacy driver failures:\n    in rx_down ...." in out


@pytest.mark.parametrize("bps, text", [(1_000_000_000, "1000 Mb/s full duplex"),
                                       (100_000_000, "100 Mb/s full duplex"),
                                       (10_000_000_000, "10000 Mb/s full duplex"),
                                       (0, "unknown")])
def test_media_rate_with_duplex(bps, text, stack, capsys):
    stack.answers["nicinfo"] = [nic(media_bps=bps)]
    stack.answers["ifconfig"] = [nic(media_bps=bps)]
    out = run(["nicinfo"], capsys)[1]
    assert re.search(rf"  Media Rate \.+ {re.escape(text)}\n", out), out
    out = run(["ifconfig"], capsys)[1]
    assert f"\tmedia: Ethernet {text}  status: up" in out


def test_route_prints_default(stack, capsys):
    out = run(["route", "-inet"], capsys)[1]
    assert out.splitlines()[2].split()[0] == "default" and "0.0.0.0/0" not in out
    out = run(["route", "-inet", "--json"], capsys)[1]
    assert json.loads(out)["routes"][1]["destination"] == "0.0.0.0/0"   # JSON as the stack says


def test_drivers_v_aligned_with_one_default(capsys):
    cli.main(["drivers", "-v"])
    out = capsys.readouterr().out
    opts = [ln for ln in out.splitlines() if ln.startswith("  ")]
    from iopkt.stack import drvload
    assert len(opts) == sum(len(d.options) for d in drvload.available().values())  # one each
    cols = {re.match(r"  \S+=\w+ +", ln).end() for ln in opts}
    assert len(cols) == 1, out                          # help in one column, every driver
    for ln in opts:
        assert ln.count("(default") == 1, ln
    assert re.search(r"  mac=str +our MAC address \(default: random 02:xx:..\)$", out, re.M)
    assert re.search(r"  offload=bool +.*\(default: 1\)$", out, re.M)
    assert re.search(r"  mtu=int +MTU of both sides, 68..9000 \(default: 1500\)$", out, re.M)


def test_version_prints_the_package_version_and_commit(capsys):
    from importlib import metadata
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"iopkt {metadata.version('iopkt')}")
    git = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=12", "HEAD"],
                         capture_output=True, text=True)
    if os.path.exists(os.path.join(ROOT, ".git")) and git.returncode == 0:
        assert re.fullmatch(rf"iopkt \S+ \(git {git.stdout.strip()}(, modified)?\)", out), out


def test_no_commit_outside_a_checkout(tmp_path):
    assert cli._git_commit(str(tmp_path)) is None


# -- 4. live rates: nicinfo -w ---------------------------------------------------
class Clock:
    """time.monotonic and time.sleep for the CLI: sleeping moves the clock."""

    def __init__(self, monkeypatch, on_sleep=None):
        self.t = 1000.0
        self.on_sleep = on_sleep
        self.sleeps = 0
        monkeypatch.setattr(nicinfo.time, "monotonic", lambda: self.t)
        monkeypatch.setattr(nicinfo.time, "sleep", self.sleep)

    def sleep(self, s):
        self.sleeps += 1
        if self.on_sleep:
            self.on_sleep(self.sleeps)
        self.t += s


def samples(*ctrs, clock=None):
    """nicinfo answers, one per set of tap0 counters (and the stack's clock)."""
    out = []
    for i, c in enumerate(ctrs):
        d = nic(**c)
        if clock is not None:
            d["clock"] = clock[i]
        out.append([d])
    return out


A = {"ipackets": 1000, "ibytes": 1_000_000, "opackets": 500, "obytes": 300_000,
     "iqdrops": 1, "oqdrops": 0, "ierrors": 0, "oerrors": 2}
B = {"ipackets": 3000, "ibytes": 3_500_000, "opackets": 1500, "obytes": 800_000,
     "iqdrops": 4, "oqdrops": 2, "ierrors": 1, "oerrors": 2}


def test_rates_from_two_samples_on_the_stacks_clock(stack, capsys, monkeypatch):
    Clock(monkeypatch)                  # the client's clock says 1 s: the stack's 2.5 s wins
    stack.seq["nicinfo"] = samples(A, B, clock=[50.0, 52.5])
    code, out, _ = run(["nicinfo", "-w", "1", "-c", "1"], capsys)
    assert code == 0
    head, line = out.splitlines()
    assert head.split() == ["iface", "pkts/s", "in", "pkts/s", "out", "Mbit/s", "in",
                            "Mbit/s", "out", "drops", "errs"]
    # 2000 packets and 2.5 MB in, 1000 packets and 0.5 MB out, in 2.5 s;
    # drops 3 in + 2 out, errors 1 in + 0 out
    assert line.split() == ["tap0", "800", "400", "8.00", "1.60", "5", "1"]


def test_rates_on_the_clients_clock_and_as_json_lines(stack, capsys, monkeypatch):
    clock = Clock(monkeypatch)
    stack.seq["nicinfo"] = samples(A, B, B)
    before = datetime.now(timezone.utc)
    code, out, _ = run(["nicinfo", "-w", "2", "-c", "2", "--json", "tap0"], capsys)
    assert code == 0 and clock.sleeps == 2
    assert all(c[2] == {"ifname": "tap0"} for c in stack.calls)
    first, second = [json.loads(ln) for ln in out.splitlines()]       # JSON Lines
    for rec in (first, second):
        ts = parse_ts(rec["timestamp"])
        # milliseconds, cut: at most 1 ms before `before`
        assert before - timedelta(milliseconds=1) <= ts <= datetime.now(timezone.utc)
        assert rec["interval"] == 2.0
    assert first["interfaces"] == [{
        "name": "tap0", "ipackets_per_s": 1000.0, "opackets_per_s": 500.0,
        "imbit_per_s": 10.0, "ombit_per_s": 2.0, "idrops": 3, "odrops": 2,
        "ierrors": 1, "oerrors": 0}]
    assert second["interfaces"][0]["ipackets_per_s"] == 0.0


def test_counters_that_went_back_count_from_zero():
    prev = samples(B)[0]
    cur = samples({"ipackets": 10, "ibytes": 1000})[0]
    r = nicinfo.rates(prev, cur, 1.0)[0]
    assert (r["ipackets_per_s"], r["imbit_per_s"], r["opackets_per_s"]) == (10.0, 0.008, 0.0)


def test_an_interface_new_since_the_last_sample_waits_an_interval():
    assert nicinfo.rates([], samples(A)[0], 1.0) == []


def test_the_header_repeats_every_20_intervals(stack, capsys, monkeypatch):
    Clock(monkeypatch)
    code, out, _ = run(["nicinfo", "-w", "1", "-c", "45"], capsys)
    lines = out.splitlines()
    heads = [i for i, ln in enumerate(lines) if ln.startswith("iface")]
    assert code == 0 and heads == [0, 41, 82]           # 2 interfaces: 40 lines between
    assert len(lines) == 3 + 45 * 2


def test_ctrl_c_ends_with_exit_0(stack, capsys, monkeypatch):
    def interrupt(n):
        if n == 3:
            raise KeyboardInterrupt
    Clock(monkeypatch, interrupt)
    code, out, err = run(["nicinfo", "-w", "1"], capsys)
    assert code == 0 and err == ""
    assert len(out.splitlines()) == 1 + 2 * 2           # header, two intervals


def test_a_stack_that_goes_away_is_one_line_exit_1(stack, capsys, monkeypatch):
    Clock(monkeypatch)
    gone = control.ControlError("the stack 'iopkt' is not answering (/run/iopkt/iopkt.sock "
                                "is stale)")
    stack.seq["nicinfo"] = [*samples(A, B), gone]
    code, out, err = run(["nicinfo", "-w", "1", "tap0"], capsys)
    assert code == 1 and len(out.splitlines()) == 2
    assert one_line(err) == ("iopkt nicinfo: the stack 'iopkt' is not answering "
                             "(/run/iopkt/iopkt.sock is stale)")


@pytest.mark.parametrize("bad", ["0", "-1", "3601", "abc", "nan", "inf", ""])
def test_bad_interval_is_a_usage_error(bad, stack, capsys):
    code, out, err = run(["nicinfo", "-w", bad], capsys)
    assert code == 2 and out == "" and stack.calls == []
    assert f"-w {bad}: must be a number of seconds, more than 0 and at most 3600" in \
        one_line(err)


def test_count_needs_an_interval(stack, capsys):
    code, _, err = run(["nicinfo", "-c", "3"], capsys)
    assert code == 2 and stack.calls == []
    assert "nicinfo: -c COUNT goes with -w SECONDS" in one_line(err)


# -- 5. every --json output has a timestamp ------------------------------------
def _bsd_rows(name, mac, inet):
    """netstat -i's rows of one interface of nic() (all its counters 0): its
    link-level row, then one per address."""
    zero = dict.fromkeys(("ipkts", "ierrs", "idrop", "opkts", "oerrs", "odrop"), 0)
    return [{"name": name, "mtu": 1500, **zero, "network": "<Link>", "address": mac},
            *({"name": name, "mtu": 1500, **zero, "network": net, "address": addr}
              for net, addr in inet)]


# (argv, what the output holds besides its timestamp, from the fake stack's
# answers: it answers every interface whatever ifname, and both families'
# routes alike)
JSON_OUTPUTS = [
    (["nicinfo"], lambda a: {"interfaces": a["nicinfo"]}),
    (["nicinfo", "tap0"], lambda a: {"interfaces": a["nicinfo"]}),
    (["ifconfig"], lambda a: {"interfaces": a["ifconfig"]}),
    (["route"], lambda a: {"routes": ROUTES, "routes6": ROUTES}),
    (["route", "-inet6"], lambda a: {"routes": ROUTES}),
    (["arp"], lambda a: {"neighbours": ARP}),
    (["netstat", "-p", "ip"], lambda a: {"ip": NETSTAT["ip"]}),
    (["netstat", "-f", "inet"], lambda a: {p: NETSTAT[p] for p in ("ip", "icmp", "arp")}),
    (["netstat"], lambda a: NETSTAT), (["netstat", "-s"], lambda a: NETSTAT),
    (["netstat", "-m"], lambda a: NETSTAT["mbuf"]),
    (["netstat", "-r"], lambda a: {"routes": ROUTES, "routes6": ROUTES}),
    (["netstat", "-r", "-f", "inet6"], lambda a: {"routes": ROUTES}),
    (["netstat", "-i"], lambda a: {"interfaces": [
        *_bsd_rows("tap0", "02:d3:40:13:c5:0e", [("198.18.0.0/24", "198.18.0.1")]),
        *_bsd_rows("en0", "02:6b:5a:e4:e7:f9", [("198.19.0.0/24", "198.19.0.1")])]}),
    (["mount", "tap", "name=x"], lambda a: a["mount"]), (["umount", "tap0"], lambda a: a["detach"]),
]


@pytest.mark.parametrize("argv, want", JSON_OUTPUTS, ids=[" ".join(a) for a, _ in JSON_OUTPUTS])
def test_every_json_output_has_a_timestamp(argv, want, stack, capsys):
    before = datetime.now(timezone.utc) - timedelta(milliseconds=1)     # ms, cut
    code, out, _ = run([*argv, "--json"], capsys)
    assert code == 0
    res = json.loads(out)
    assert isinstance(res, dict)
    assert before <= parse_ts(res.pop("timestamp")) <= datetime.now(timezone.utc)
    assert res == want(stack.answers)


def test_netstat_m_json_is_the_pool_with_a_timestamp(stack, capsys):
    res = json.loads(run(["netstat", "-m", "--json"], capsys)[1])
    parse_ts(res.pop("timestamp"))
    assert res == NETSTAT["mbuf"]


@pytest.mark.parametrize("argv, fn, answer, key", [
    (["lab", "status", "--json"], "status", [{"prefix": "p", "pid": 1}], "labs"),
    (["lab", "down", "--json"], "down", {"removed": [], "said": []}, None),
])
def test_lab_json_has_a_timestamp(argv, fn, answer, key, monkeypatch, capsys):
    from iopkt.lab import lab
    monkeypatch.setattr(util, "need_root", lambda: None)
    monkeypatch.setattr(lab, fn, lambda *a, **kw: answer)
    res = json.loads(run(argv, capsys)[1])
    parse_ts(res.pop("timestamp"))
    assert res == ({key: answer} if key else answer)


def test_timestamp_format():
    t = datetime(2026, 11, 28, 10, 20, 31, 123456, timezone.utc).timestamp()
    assert util.timestamp(t) == "2026-11-28T10:20:31.123Z"


def test_sock_reaches_a_real_process():
    """The variable, through `python -m iopkt` as a user runs it."""
    env = {**os.environ, "SOCK": "nosuchstack9", "IOPKT_RUN_DIR": "/nonexistent-iopkt"}
    p = subprocess.run([sys.executable, "-m", "iopkt", "arp"], capture_output=True, text=True,
                       env=env, timeout=60, cwd=ROOT)
    if os.geteuid() != 0:
        assert "needs root" in p.stderr
        return
    assert p.returncode == 1 and "no stack named 'nosuchstack9'" in p.stderr
