"""NetBSD's commands as a NetBSD user types them, run as programs
(python -m iopkt) against a running lab, and checked by what the traffic
then does: an ARP entry set by hand steers frames, a route to an
interface makes the stack ask for the destination on that link."""

import subprocess
import sys

A_GW, B_GW, B_HOST = "198.18.0.1", "198.19.0.1", "198.19.0.2"


def iopkt(lb, *args, check=True):
    r = subprocess.run([sys.executable, "-m", "iopkt", *args, "--instance", lb.prefix],
                       capture_output=True, text=True, timeout=60)
    if check:
        assert (r.returncode, r.stderr) == (0, ""), (args, r)
    return r


def test_the_show_commands_as_netbsd_users_type_them(make_lab):
    lb = make_lab()
    lb.ping(lb.ns_a, B_HOST)                # B in the stack's ARP table
    rn = iopkt(lb, "netstat", "-rn").stdout.splitlines()
    assert rn[0] == "Internet:" and "Internet6:" in rn
    v4 = {ln.split()[0]: ln.split() for ln in rn[2:rn.index("Internet6:")] if ln.strip()}
    assert v4["198.18.0.0/24"][1:3] == [f"link#{lb.if_a}", "UC"]
    assert v4["198.19.0.0/24"][-1] == lb.if_b
    assert iopkt(lb, "route", "-n", "show").stdout.splitlines() == rn
    a = iopkt(lb, "ifconfig", "-a").stdout
    assert f"{lb.if_a}: flags=<" in a and f"\tinet {A_GW}/24" in a and f"\tinet {B_GW}/24" in a
    arp = iopkt(lb, "arp", "-an").stdout.splitlines()
    assert any(ln.startswith(f"? ({B_HOST}) at ") and f" on {lb.if_b} expires in " in ln
               for ln in arp), arp
    rows = [ln.split() for ln in iopkt(lb, "netstat", "-in").stdout.splitlines()]
    assert rows[0][:4] == ["Name", "Mtu", "Network", "Address"]
    assert [lb.if_b, "1500", "198.19.0.0/24", B_GW] == rows[[r[:4] for r in rows].index(
        [lb.if_b, "1500", "198.19.0.0/24", B_GW])][:4]
    got = iopkt(lb, "route", "-n", "get", B_HOST).stdout
    assert "destination: 198.19.0.0" in got and f"interface: {lb.if_b}" in got
    one = iopkt(lb, "netstat", "-I", lb.if_b, "-w", "0.2", "-c", "2").stdout.splitlines()
    assert f"({lb.if_b})" in one[0] and len(one) == 4


def test_arp_s_steers_frames_and_arp_d_gives_the_neighbour_back(make_lab):
    lb = make_lab()
    assert "1 received" in lb.ping(lb.ns_a, B_HOST).stdout
    iopkt(lb, "arp", "-s", B_HOST, "02:00:00:00:de:ad")
    assert iopkt(lb, "arp", "-n", B_HOST).stdout.split()[3] == "02:00:00:00:de:ad"
    # Frames for B now go to a MAC nobody has: B never sees the pings.
    assert "0 received" in lb.ping(lb.ns_a, B_HOST, count=2).stdout
    iopkt(lb, "arp", "-d", B_HOST)
    assert "1 received" in lb.wait_reachable(lb.ns_a, B_HOST).stdout


def test_route_add_change_get_delete_and_flush(make_lab):
    lb = make_lab()
    iopkt(lb, "route", "add", "-net", "10.77.0.0", "-netmask", "255.255.0.0", B_HOST)
    assert "gateway: 198.19.0.2" in iopkt(lb, "route", "get", "10.77.1.1").stdout
    iopkt(lb, "route", "-q", "change", "-net", "10.77.0.0/16", "-interface", lb.if_a)
    got = iopkt(lb, "route", "get", "10.77.1.1").stdout
    assert "gateway:" not in got and f"interface: {lb.if_a}" in got
    # Through the interface: the stack asks for 10.77.1.1 itself on A's link.
    lb.ping(lb.ns_b, "10.77.1.1", count=1)
    assert any(e["address"] == "10.77.1.1" and e["interface"] == lb.if_a
               for e in lb.req("arp"))
    iopkt(lb, "route", "add", "default", B_HOST)
    assert "done" in iopkt(lb, "route", "flush").stdout
    left = {r["destination"] for r in lb.req("route")}
    assert left == {"198.18.0.0/24", "198.19.0.0/24", "10.77.0.0/16"}
    iopkt(lb, "route", "delete", "-net", "10.77.0.0/16")
    r = iopkt(lb, "route", "delete", "-net", "10.77.0.0/16", check=False)
    assert (r.returncode, r.stderr) == (1, "iopkt route: no route 10.77.0.0/16\n")


def test_ifconfig_without_alias_replaces_and_with_alias_adds(make_lab):
    lb = make_lab()

    def inet():
        return [ln.strip() for ln in iopkt(lb, "ifconfig", lb.if_b).stdout.splitlines()
                if ln.strip().startswith("inet ")]
    iopkt(lb, "ifconfig", lb.if_b, "inet", "198.19.9.1/24", "alias")
    assert inet() == ["inet 198.19.0.1/24", "inet 198.19.9.1/24"]
    iopkt(lb, "ifconfig", lb.if_b, "198.19.9.1", "-alias")
    assert inet() == ["inet 198.19.0.1/24"]
    # Without alias the address replaces the first: the same one, nothing moves.
    iopkt(lb, "ifconfig", lb.if_b, "inet", "198.19.0.1", "netmask", "255.255.255.0")
    assert inet() == ["inet 198.19.0.1/24"]
    assert "1 received" in lb.ping(lb.ns_a, B_HOST).stdout
