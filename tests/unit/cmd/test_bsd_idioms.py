"""What a NetBSD (or QNX) user types, as NetBSD's man pages mean it: each
command line and the requests it sends the stack, in order. The refusals
are in test_bad_input.py; what the lines look like in test_cli_output.py.
"""

import pytest
from canned import ROUTES, nic, run

T = "tap0"
V6 = {"family": "inet6"}

# (command line, the requests it makes: (op, args), in order)
IDIOMS = [
    # netstat(1)
    ("netstat", [("netstat", {})]),
    ("netstat -s", [("netstat", {})]),
    ("netstat -s -p ip", [("netstat", {})]),
    ("netstat -sp icmp6", [("netstat", {})]),
    ("netstat -rn", [("route", {}), ("route", V6)]),
    ("netstat -nr", [("route", {}), ("route", V6)]),
    ("netstat -rn -f inet", [("route", {})]),
    ("netstat -r -f inet6", [("route", V6)]),
    ("netstat -rna", [("route", {}), ("route", V6), ("arp", {}), ("ndp", {})]),
    ("netstat -in", [("nicinfo", {})]),
    ("netstat -i -f inet6", [("nicinfo", {})]),
    ("netstat -an", [("netstat", {})]),
    ("netstat -I tap0", [("nicinfo", {"ifname": T})]),
    ("netstat -m", [("netstat", {})]),
    ("netstat -w 1 -c 1", [("nicinfo", {})]),
    ("netstat -I tap0 -w 1 -c 1", [("nicinfo", {"ifname": T})]),
    ("netstat -j", [("netstat", {})]),
    # ifconfig(8)
    ("ifconfig", [("ifconfig", {})]),
    ("ifconfig -a", [("ifconfig", {})]),
    ("ifconfig tap0", [("ifconfig", {"ifname": T})]),
    ("ifconfig tap0 inet 10.0.0.1/24", [("ifconfig", {"ifname": T, "inet": "10.0.0.1/24",
                                                      "replace": True})]),
    ("ifconfig tap0 10.0.0.1/24", [("ifconfig", {"ifname": T, "inet": "10.0.0.1/24",
                                                 "replace": True})]),
    ("ifconfig tap0 inet 10.0.0.1 netmask 255.255.255.0",
     [("ifconfig", {"ifname": T, "inet": "10.0.0.1/24", "replace": True})]),
    ("ifconfig tap0 inet 10.0.0.2/24 alias", [("ifconfig", {"ifname": T,
                                                            "inet": "10.0.0.2/24"})]),
    ("ifconfig tap0 alias 10.0.0.2 netmask 255.255.0.0",
     [("ifconfig", {"ifname": T, "inet": "10.0.0.2/16"})]),
    ("ifconfig tap0 inet 10.0.0.2 -alias", [("ifconfig", {"ifname": T, "delete": "10.0.0.2"})]),
    ("ifconfig tap0 -alias 10.0.0.2", [("ifconfig", {"ifname": T, "delete": "10.0.0.2"})]),
    ("ifconfig tap0 delete 10.0.0.2", [("ifconfig", {"ifname": T, "delete": "10.0.0.2"})]),
    ("ifconfig tap0 inet6 2001:db8::1/64", [("ifconfig", {"ifname": T,
                                                          "inet6": "2001:db8::1/64"})]),
    ("ifconfig tap0 inet6 2001:db8::1 prefixlen 64",
     [("ifconfig", {"ifname": T, "inet6": "2001:db8::1/64"})]),
    ("ifconfig tap0 inet6 2001:db8::1 delete", [("ifconfig", {"ifname": T,
                                                              "delete6": "2001:db8::1"})]),
    ("ifconfig tap0 inet6 2001:db8::1/64 -alias", [("ifconfig", {"ifname": T,
                                                                 "delete6": "2001:db8::1/64"})]),
    ("ifconfig tap0 up", [("ifconfig", {"ifname": T, "up": True})]),
    ("ifconfig tap0 down", [("ifconfig", {"ifname": T, "up": False})]),
    ("ifconfig tap0 mtu 1400", [("ifconfig", {"ifname": T, "mtu": 1400})]),
    ("ifconfig tap0 -tso4 tcp4csum", [("ifconfig", {"ifname": T, "caps": ["-tso4",
                                                                          "tcp4csum"]})]),
    ("ifconfig tap0 inet 10.0.0.1/24 mtu 1400 up",
     [("ifconfig", {"ifname": T, "inet": "10.0.0.1/24", "replace": True, "mtu": 1400,
                    "up": True})]),
    ("ifconfig tap0 up --json", [("ifconfig", {"ifname": T, "up": True})]),
    # route(8)
    ("route", [("route", {}), ("route", V6)]),
    ("route show", [("route", {}), ("route", V6)]),
    ("route -n show", [("route", {}), ("route", V6)]),
    ("route show -inet", [("route", {})]),
    ("route -n show -inet6", [("route", V6)]),
    ("route -inet6", [("route", V6)]),
    ("route get 10.0.0.5", [("route_get", {"dst": "10.0.0.5"})]),
    ("route -n get -inet6 2001:db8::5", [("route_get", {"dst": "2001:db8::5", **V6})]),
    ("route get 2001:db8::5", [("route_get", {"dst": "2001:db8::5", **V6})]),
    ("route add default 198.18.0.2", [("route", {"add": "default",
                                                 "gateway": "198.18.0.2"})]),
    ("route add -net 10.9.0.0/16 198.18.0.2", [("route", {"add": "10.9.0.0/16",
                                                          "gateway": "198.18.0.2"})]),
    ("route add -net 10.9.0.0 -netmask 255.255.0.0 198.18.0.2",
     [("route", {"add": "10.9.0.0/16", "gateway": "198.18.0.2"})]),
    ("route add -host 10.9.0.7 198.18.0.2", [("route", {"add": "10.9.0.7",
                                                        "gateway": "198.18.0.2"})]),
    ("route add 10.9.0.0/16 198.18.0.2 -ifp tap0",
     [("route", {"add": "10.9.0.0/16", "gateway": "198.18.0.2", "ifname": T})]),
    ("route add -net 10.9.0.0/16 -interface tap0",
     [("route", {"add": "10.9.0.0/16", "interface": T})]),
    ("route add -net 10.9.0.0/16 -iface 198.18.0.1",
     [("route", {"add": "10.9.0.0/16", "interface": "198.18.0.1"})]),
    ("route add -inet6 default 2001:2:0:b::2", [("route", {"add": "default",
                                                           "gateway": "2001:2:0:b::2", **V6})]),
    ("route add -inet6 2001:db8:: -prefixlen 32 2001:2:0:b::2",
     [("route", {"add": "2001:db8::/32", "gateway": "2001:2:0:b::2", **V6})]),
    ("route -q change -net 10.9.0.0/16 198.18.0.3",
     [("route", {"change": "10.9.0.0/16", "gateway": "198.18.0.3"})]),
    ("route delete -net 10.9.0.0/16", [("route", {"delete": "10.9.0.0/16"})]),
    ("route del default", [("route", {"delete": "default"})]),
    ("route delete -inet6 2001:db8::/32", [("route", {"delete": "2001:db8::/32", **V6})]),
    ("route flush", [("route_flush", {}), ("route_flush", V6)]),
    ("route -q flush -inet", [("route_flush", {})]),
    ("route flush -inet6", [("route_flush", V6)]),
    ("route show --instance lab", [("route", {}), ("route", V6)]),
    # arp(8)
    ("arp", [("arp", {})]),
    ("arp -a", [("arp", {})]),
    ("arp -an", [("arp", {})]),
    ("arp -n 198.18.0.2", [("arp", {})]),
    ("arp -d 198.18.0.2", [("arp", {"delete": "198.18.0.2"})]),
    ("arp -d -a", [("arp", {"delete": "all"})]),
    ("arp -da", [("arp", {"delete": "all"})]),
    ("arp -s 198.18.0.7 02:00:00:00:00:07", [("arp", {"set": "198.18.0.7",
                                                      "mac": "02:00:00:00:00:07"})]),
    ("arp -s 198.18.0.7 02:00:00:00:00:07 temp",
     [("arp", {"set": "198.18.0.7", "mac": "02:00:00:00:00:07", "permanent": False})]),
    ("arp -s 198.18.0.7 02:00:00:00:00:07 permanent",
     [("arp", {"set": "198.18.0.7", "mac": "02:00:00:00:00:07", "permanent": True})]),
    # ndp(8)
    ("ndp -an", [("ndp", {})]),
]


@pytest.mark.parametrize("line, want", IDIOMS, ids=[line for line, _ in IDIOMS])
def test_a_netbsd_idiom_sends_what_it_means(line, want, stack, capsys):
    stack.answers.update(route_get={"route_to": "10.0.0.5", **ROUTES[0], "mask": "255.255.255.0",
                                    "next_hop": "10.0.0.5"},
                         route_flush=[], ndp=[])
    code, _, err = run(line.split(), capsys)
    assert (code, err) == (0, "")
    assert [(op, args) for _, op, args in stack.calls] == want


def test_instance_after_the_words_is_the_instance(stack, capsys):
    assert run(["route", "show", "--instance", "lab"], capsys)[0] == 0
    assert run(["ifconfig", T, "up", "--instance=lab2"], capsys)[0] == 0
    assert [c[0] for c in stack.calls] == ["lab", "lab", "lab2"]


def test_netstat_w_prints_the_first_line_since_start_then_what_moved(stack, capsys,
                                                                    monkeypatch):
    import time
    monkeypatch.setattr(time, "sleep", lambda s: None)
    stack.seq["nicinfo"] = [[nic(ipackets=10, ibytes=1000, opackets=4, obytes=400)],
                            [nic(ipackets=15, ibytes=1600, opackets=4, obytes=400)]]
    code, out, _ = run(["netstat", "-I", T, "-w", "1", "-c", "2"], capsys)
    lines = out.splitlines()
    assert code == 0 and "(tap0)" in lines[0]
    assert lines[1].split() == ["packets", "errs", "bytes", "packets", "errs", "bytes", "colls"]
    assert [ln.split() for ln in lines[2:]] == [["10", "0", "1000", "4", "0", "400", "0"],
                                                ["5", "0", "600", "0", "0", "0", "0"]]


def test_netstat_ra_shows_neighbours_as_link_routes(stack, capsys):
    stack.answers["ndp"] = []
    code, out, _ = run(["netstat", "-rn", "-a", "-f", "inet"], capsys)
    assert code == 0
    assert out.splitlines()[-2].split() == ["198.18.0.2", "92:57:40:bb:07:23", "UHL", "0",
                                            "tap0"]
    assert out.splitlines()[-1].split() == ["198.18.0.9", "incomplete", "UHL", "0", "tap0"]


def test_route_get_prints_as_netbsd(stack, capsys):
    stack.answers["route_get"] = {"route_to": "10.9.1.1", "destination": "10.9.0.0/16",
                                  "gateway": "198.18.0.2", "flags": "UGS",
                                  "interface": T, "use": 0, "mask": "255.255.0.0",
                                  "next_hop": "198.18.0.2"}
    code, out, _ = run(["route", "get", "10.9.1.1"], capsys)
    assert code == 0 and out.splitlines() == [
        "   route to: 10.9.1.1", "destination: 10.9.0.0", "       mask: 255.255.0.0",
        "    gateway: 198.18.0.2", "  interface: tap0", "      flags: <UP,GATEWAY,STATIC>",
        "   next hop: 198.18.0.2"]


@pytest.mark.parametrize("line, said", [
    ("route add default 198.18.0.2", "add net default: gateway 198.18.0.2\n"),
    ("route add -host 10.9.0.7 198.18.0.2", "add host 10.9.0.7: gateway 198.18.0.2\n"),
    ("route add 10.9.0.0/16 -interface tap0", "add net 10.9.0.0/16: gateway interface tap0\n"),
    ("route delete 10.9.0.0/16", "delete net 10.9.0.0/16\n"),
    ("route -q delete 10.9.0.0/16", ""),
])
def test_route_says_what_it_did_unless_q(line, said, stack, capsys):
    assert run(line.split(), capsys)[:2] == (0, said)


def test_arp_host_shows_its_entry_alone_or_fails(stack, capsys):
    code, out, _ = run(["arp", "198.18.0.2"], capsys)
    assert code == 0 and out.splitlines() == [
        "? (198.18.0.2) at 92:57:40:bb:07:23 on tap0 expires in 1199 seconds [ethernet]"]
    code, out, err = run(["arp", "198.18.0.77"], capsys)
    assert (code, out, err) == (1, "", "iopkt arp: 198.18.0.77: no entry\n")


# -- tcpdump(1), as iopkt capture takes it -----------------------------------------
TCPDUMP = [
    ("capture tap0", dict(ifname=T, filter="", direction="both")),
    ("capture -i tap0", dict(ifname=T, filter="", direction="both")),
    ("capture -ni tap0 icmp", dict(ifname=T, filter="icmp")),
    ("capture -n -i tap0 -c 5 icmp6", dict(ifname=T, filter="icmp6", count=5)),
    ("capture tap0 tcp port 5201 and host 198.19.0.2",
     dict(ifname=T, filter="tcp port 5201 and host 198.19.0.2")),
    ("capture -i tap0 tcp[tcpflags] & tcp-syn != 0",
     dict(ifname=T, filter="tcp[tcpflags] & tcp-syn != 0")),
    ("capture -i tap0 -Q in", dict(ifname=T, direction="in")),
    ("capture -i tap0 -Q inout", dict(ifname=T, direction="both")),
    ("capture -i tap0 -s 96 -w x.pcap", dict(ifname=T, snaplen=96, write="x.pcap",
                                             pcapng=False)),
    ("capture -i tap0 -s 0", dict(ifname=T, snaplen=262144)),
    ("capture -i tap0 -w - --pcapng", dict(ifname=T, write="-", pcapng=True)),
    ("capture -nei tap0 -vX arp", dict(ifname=T, filter="arp", show=(True, 1, True))),
]


@pytest.mark.parametrize("line, want", TCPDUMP, ids=[line for line, _ in TCPDUMP])
def test_a_tcpdump_idiom_asks_for_what_it_means(line, want, monkeypatch):
    from iopkt.cmd import capture, util
    seen = {}

    def fake_run(instance, ifname, write=None, count=0, direction="both", as_json=False,
                 stdout=None, stderr=None, **kw):
        seen.update(ifname=ifname, write=write, count=count, direction=direction, **kw)
        show = kw["show"]
        seen["show"] = (show.link, show.verbose, show.hexdump)
        return 0
    monkeypatch.setattr(capture, "run", fake_run)
    monkeypatch.setattr(util, "need_root", lambda: None)
    with pytest.raises(SystemExit) as e:
        from iopkt.cmd import cli
        cli.main(line.split())
    assert e.value.code == 0
    assert {k: seen[k] for k in want} == want


def test_options_after_the_expression_start_are_still_options(monkeypatch):
    """tcpdump takes `tcpdump -i tap0 icmp` and iopkt `capture tap0 -c 5 icmp`:
    the words left after the options are the expression, in order; an
    unknown option is still refused."""
    from iopkt.cmd import capture, cli, util
    seen = {}
    monkeypatch.setattr(capture, "run", lambda *a, **kw: seen.update(a=a, **kw) or 0)
    monkeypatch.setattr(util, "need_root", lambda: None)
    with pytest.raises(SystemExit) as e:
        cli.main(["capture", T, "-w", "x.pcap", "host", "198.19.0.2", "-c", "5", "and", "icmp"])
    assert e.value.code == 0 and seen["filter"] == "host 198.19.0.2 and icmp"
    assert seen["a"][1:4] == (T, "x.pcap", 5)
    with pytest.raises(SystemExit) as e:
        cli.main(["capture", T, "icmp", "--frob"])
    assert e.value.code == 2
