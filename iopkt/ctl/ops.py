"""The control socket's operations: what each request reads or changes in
the stack (the server, server.py, runs them in the stack thread and
checks their arguments against their type hints first)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading

from iopkt.ctl.control import MAX_COUNT, ControlError, UsageError
from iopkt.net.bpf import BPF_BUFSIZE, DIRECTIONS, REC, SNAPLEN_MAX, BpfDesc, bpf_attach
from iopkt.net.bpf_filter import BpfProgram, FilterError
from iopkt.net.ether import mac_aton
from iopkt.net.ifnet import caps_str, flags_str, parse_capwords
from iopkt.net.route import RTF_GATEWAY, aton, ntoa, parse_prefix
from iopkt.netinet6.in6 import parse_prefix6

MAX_CAPTURES = 8            # capture streams open at once; one more is refused


class Ops:
    """The operations, as methods op_NAME of the server (a mixin: they use
    its stack, streams and counters)."""

    def op_ping(self) -> dict:
        st = self.stack
        return {"name": st.name, "pid": os.getpid(),
                "uptime": round(st.clock() - st.started, 1),
                "threads": threading.active_count(),
                "interfaces": list(st.ifnets), "python": sys.version.split()[0],
                "switchinterval": sys.getswitchinterval()}

    def _ifconfig_one(self, ifp) -> dict:
        return {"name": ifp.name, "driver": ifp.dname,
                "description": ifp.description,
                "flags": flags_str(ifp.flags), "flags_raw": ifp.flags,
                "mtu": ifp.mtu, "mac": ifp.mac_str(),
                "inet": [f"{ntoa(ia.addr)}/{ia.plen}" for ia in ifp.in_addrs],
                "inet6": [ia.text() for ia in ifp.in6_addrs],
                "link_state": {0: "unknown", 1: "down", 2: "up"}[ifp.link_state],
                "media_bps": ifp.baudrate,
                "capabilities": caps_str(ifp.capabilities), "capabilities_raw": ifp.capabilities,
                "enabled": caps_str(ifp.capenable), "enabled_raw": ifp.capenable}

    def op_ifconfig(self, ifname: str | None = None, inet: str | None = None,
                    delete: str | None = None, mtu: int | None = None,
                    up: bool | None = None, caps: list | None = None,
                    inet6: str | None = None, delete6: str | None = None,
                    replace: bool = False) -> list[dict]:
        """Show interfaces, or change one. Every argument is checked first
        (a bad one is a UsageError and changes nothing); what the state
        then refuses (an address already there) is a ControlError. With
        `replace`, `inet` takes the place of the first IPv4 address (NetBSD's
        ifconfig without alias); if it is refused, the old one stays."""
        st = self.stack
        if ifname is None:
            return [self._ifconfig_one(i) for i in st.ifnets.values()]
        ifp = self._ifp(ifname)
        if mtu is not None and not 68 <= mtu <= 9000:
            raise UsageError(f"mtu {mtu}: must be 68..9000")
        old = parse_prefix(delete)[0] if delete is not None else None
        if inet is not None:
            if "/" not in inet:
                raise UsageError(f"inet {inet}: give a prefix length, e.g. {inet}/24")
            addr, plen = parse_prefix(inet)
            if not 1 <= plen <= 32:
                raise UsageError(f"inet {inet}: prefix length /{plen} must be 1..32")
        old6 = _prefix6("delete6", delete6)[0] if delete6 is not None else None
        if inet6 is not None:
            if "/" not in inet6:
                raise UsageError(f"inet6 {inet6}: give a prefix length, e.g. {inet6}/64")
            addr6, plen6 = _prefix6("inet6", inet6)
            if not 1 <= plen6 <= 128:
                raise UsageError(f"inet6 {inet6}: prefix length /{plen6} must be 1..128")
        capenable = parse_capwords(caps, ifp.capenable) if caps else ifp.capenable
        with _refused():
            if capenable != ifp.capenable:
                ifp.set_capenable(capenable)
            if mtu is not None:
                ifp.mtu = mtu
            if old is not None:
                st.ip.del_address(ifp, old)
            if inet is not None:
                first = ifp.in_addrs[0] if replace and ifp.in_addrs else None
                if first is not None and (first.addr, first.plen) != (addr, plen):
                    st.ip.del_address(ifp, first.addr)
                    try:
                        st.ip.add_address(ifp, addr, plen)
                    except ValueError:
                        st.ip.add_address(ifp, first.addr, first.plen)
                        ifp.in_addrs.insert(0, ifp.in_addrs.pop())     # first again
                        raise
                elif first is None:
                    st.ip.add_address(ifp, addr, plen)
                st.if_up(ifp)
            if old6 is not None:
                st.ip6.del_address(ifp, old6)
            if inet6 is not None:
                st.ip6.add_address(ifp, addr6, plen6)
                st.if_up(ifp)
        if up is True:
            st.if_up(ifp)
        elif up is False:
            st.if_down(ifp)
        return [self._ifconfig_one(ifp)]

    def op_nicinfo(self, ifname: str | None = None) -> list[dict]:
        ifps = [self._ifp(ifname)] if ifname else list(self.stack.ifnets.values())
        out = []
        for ifp in ifps:
            d = self._ifconfig_one(ifp)
            d["counters"] = ifp.counters()
            d["if_snd"] = ifp.if_snd.stats()
            d["driver_info"] = ifp.if_extra_info(ifp)
            d["clock"] = self.stack.clock()     # when the counters were read: live rates
            out.append(d)
        return out

    def op_route(self, add: str | None = None, delete: str | None = None,
                 gateway: str | None = None, ifname: str | None = None,
                 family: str = "inet", change: str | None = None,
                 interface: str | None = None) -> list[dict]:
        """Show the table of `family` (inet or inet6), or change it (BSD's
        route add, delete, change). A route goes through `gateway`, or
        straight out of `interface` (a name, or one of our addresses: BSD's
        -interface); `ifname` picks the interface of a gateway route (-ifp).
        A malformed prefix or address is a UsageError; what the table
        refuses (exists, no such route, gateway not on a connected network)
        a ControlError, and then nothing changed."""
        v6, rt, prefix = self._table(family)
        if sum(x is not None for x in (add, delete, change)) > 1:
            raise UsageError("route: one of add, delete, change at a time")
        dst = add if add is not None else change
        if dst is not None:
            dst, plen = prefix(dst)
            if (gateway is None) == (interface is None):
                raise UsageError("route: give a gateway or an interface, one of them")
            gw = 0
            if gateway is not None:
                gw = _prefix6("gateway", gateway)[0] if v6 else _addr4("gateway", gateway)
            ifp = self._ifp(ifname) if ifname else None
            if interface is not None:
                ifp = self._ifp_or_addr(interface, v6)
            with _refused():
                if change is not None:          # as one change: back if the add fails
                    old = rt.delete(dst, plen)
                    try:
                        rt.add(dst, plen, gw, ifp)
                    except ValueError:
                        rt.add(old.dst, old.plen, old.gateway, old.ifp, old.flags)
                        raise
                else:
                    rt.add(dst, plen, gw, ifp)
        if delete is not None:
            dst, plen = prefix(delete)
            with _refused():
                rt.delete(dst, plen)
        return rt.to_list()

    def op_route_get(self, dst: str, family: str = "inet") -> dict:
        """BSD's route get: the route `dst` takes, with its mask and the
        next hop, or a ControlError if none does."""
        v6, rt, _ = self._table(family)
        a = _prefix6("route get", dst)[0] if v6 else _addr4("route get", dst)
        r = rt.match(a)
        if r is None:
            raise ControlError(f"route get {dst}: not in table")
        fmt = rt.ntoa
        return {"route_to": fmt(a), **r.to_dict(fmt), "mask": fmt(r.mask),
                "next_hop": fmt(r.gateway or a)}

    def op_route_flush(self, family: str = "inet") -> list[dict]:
        """BSD's route flush: remove every route through a gateway (the
        connected routes stay, as their addresses do); the routes removed."""
        _, rt, _ = self._table(family)
        gone = [r for r in rt.routes if r.flags & RTF_GATEWAY]
        for r in gone:
            rt.delete(r.dst, r.plen)
        return [r.to_dict(rt.ntoa) for r in gone]

    def _table(self, family: str):
        """(is IPv6, its table, its prefix parser) for a request's family."""
        if family not in ("inet", "inet6"):
            raise UsageError(f"route: family {family!r}: inet or inet6")
        if family == "inet6":
            return True, self.stack.ip6.routes, lambda t: _prefix6("route", t)
        return False, self.stack.ip.routes, parse_prefix   # its ValueError: a usage error

    def _ifp_or_addr(self, text: str, v6: bool):
        """An interface named by its name or by one of our addresses."""
        if text in self.stack.ifnets:
            return self.stack.ifnets[text]
        try:
            a = parse_prefix6(text)[0] if v6 else aton(text)
        except ValueError:
            return self._ifp(text)              # "no such interface", by name
        for ifp in self.stack.ifnets.values():
            if any(ia.addr == a for ia in (ifp.in6_addrs if v6 else ifp.in_addrs)):
                return ifp
        raise ControlError(f"-interface {text}: not an address of this stack")

    def op_netstat(self) -> dict:
        st = self.stack
        return {"mbuf": st.pool.stats(), "ip": st.ip.stats(),
                "icmp": {**st.icmp.stats, "inhist": st.icmp.inhist,
                         "outhist": st.icmp.outhist},
                "arp": st.arp.stats,
                "ip6": st.ip6.stats(),
                "icmp6": {**st.icmp6.stats, "inhist": st.icmp6.inhist,
                          "outhist": st.icmp6.outhist},
                "nd6": st.nd6.stats,
                "stack": {"loops": st.loops, "wakeups": st.wakeups,
                          "handler_errors": st.handler_errors},
                "control": self.stats(), **self.capture_stats()}

    def capture_stats(self) -> dict:
        """netstat's view of packet capture: "bpf" (streams open; frames
        captured and dropped for slow readers, ended captures included;
        captures refused) and "captures", one entry per open stream."""
        live = [c.stream for c in self.streams.values()]
        t = self.capture_totals
        return {"bpf": {"open": len(live),
                        "captured": t["captured"] + sum(d.captured for d in live),
                        "dropped": t["dropped"] + sum(d.dropped for d in live),
                        "refused": t["refused"]},
                "captures": [{"ifname": d.ifp.name, **d.stats()} for d in live]}

    def op_capture(self, conn, ifname: str, direction: str = "both", count: int = 0,
                   filter: str = "", snaplen: int = SNAPLEN_MAX) -> dict:
        """Capture frames on `ifname` (any interface, enN too): this
        connection becomes the capture's stream, and what this returns is
        its header line. `direction` is in, out or both; `count` ends it
        after that many frames (0: when the client closes or the interface
        goes); `filter` is a tcpdump expression (libpcap compiles it here,
        once; "" takes every frame) and `snaplen` the bytes kept of each
        frame. `conn` comes from handle(), never from the client (it has
        no type hint, so request.check_args refuses it as an argument)."""
        if direction not in DIRECTIONS:
            raise UsageError(f"capture: direction {direction!r}: one of in, out, both")
        if not 0 <= count <= MAX_COUNT:
            raise UsageError(f"capture: count {count}: must be 0..{MAX_COUNT} (0: no limit)")
        if not 1 <= snaplen <= SNAPLEN_MAX:
            raise UsageError(f"capture: snaplen {snaplen}: must be 1..{SNAPLEN_MAX}")
        ifp = self._ifp(ifname)
        if conn is None:
            raise UsageError("capture: a stream needs a connection of its own")
        if len(self.streams) >= MAX_CAPTURES:
            self.capture_totals["refused"] += 1
            raise ControlError(f"capture: {MAX_CAPTURES} captures are open already, "
                               "the most at once; end one first")
        program = None
        if filter.strip():
            try:
                program = BpfProgram(filter, snaplen)
            except FilterError as e:
                raise UsageError(f"capture: {e}") from None
        d = BpfDesc(DIRECTIONS[direction], count, BPF_BUFSIZE,
                    ready=lambda: self._stream_ready(conn),
                    done=lambda why: self._stream_end(conn, why), program=program,
                    snaplen=snaplen)
        bpf_attach(ifp, d)
        conn.stream = d
        self.streams[conn.fd] = conn
        return {"capture": ifp.name, "driver": ifp.dname, "linktype": 1,
                "direction": direction, "count": count, "record": REC.format,
                "bufsize": BPF_BUFSIZE, "mtu": ifp.mtu, "snaplen": snaplen,
                "filter": filter.strip(),
                "filter_insns": len(program.insns) if program is not None else 0,
                "enabled": caps_str(ifp.capenable)}

    def op_arp(self, delete: str | None = None, set: str | None = None,
               mac: str | None = None, permanent: bool = True,
               ifname: str | None = None) -> list[dict]:
        """The ARP table; or BSD's arp -d HOST (delete: an address, or
        "all"), or arp -s HOST MAC [temp] (set: a static entry on the
        interface whose network holds HOST, or `ifname`; `permanent`
        False expires it as a learned one does)."""
        arp = self.stack.arp
        if delete is not None:
            addr = None if delete == "all" else _addr4("arp -d", delete)
            with _refused():
                arp.delete(addr)
        if set is not None:
            if mac is None:
                raise UsageError(f"arp -s {set}: give the MAC address")
            addr = _addr4("arp -s", set)
            try:
                lladdr = mac_aton(mac)
            except ValueError:
                raise UsageError(f"arp -s {set} {mac}: not a MAC address "
                                 "(six hex bytes, like 02:00:00:00:00:01)") from None
            ifp = self._ifp(ifname) if ifname else None
            with _refused():
                arp.set_static(addr, lladdr, permanent, ifp)
        return arp.table()

    def op_ndp(self) -> list[dict]:
        """The IPv6 neighbour cache (NetBSD's ndp -an)."""
        return self.stack.nd6.table()

    def op_detach(self, ifname: str) -> dict:
        """Unmount an interface while the stack runs. A shim interface in
        zero-copy mode finishes later, when the mbufs it lent come back."""
        ifp = self._ifp(ifname)
        shim = ifp.softc if hasattr(ifp.softc, "up_held") else None
        self.stack.if_detach(ifp)
        out = {"detached": ifname, "mbufs_in_use": self.stack.pool.in_use}
        if shim is not None:
            out["waiting_for_lent_mbufs"] = len(shim.up_held)
        return out

    def op_mount(self, driver: str, options: str = "") -> dict:
        """Mount a driver into the running stack (io-pkt's `mount -T io-pkt`)."""
        from iopkt.stack.drvload import mount, resolve
        # A DriverError (bad name or option) is a ValueError: a usage error.
        ifp = mount(self.stack, resolve(driver), options)
        return {"mounted": ifp.name, "driver": ifp.dname, "description": ifp.description}

    def op_stop(self) -> dict:
        self.stack.stop()
        return {"stopping": True}


def _addr4(what: str, text: str) -> int:
    """An IPv4 address from a request, or a UsageError naming it."""
    try:
        return aton(text)
    except ValueError as e:
        raise UsageError(f"{what} {e}") from None


def _prefix6(what: str, text: str) -> tuple[int, int]:
    """An IPv6 address or prefix from a request, or a UsageError naming it."""
    try:
        return parse_prefix6(text)
    except ValueError as e:
        raise UsageError(f"{what} {text}: {e}") from None


@contextlib.contextmanager
def _refused():
    """Around a change the state may refuse (the arguments were checked
    already): its ValueError is a run-time failure, not a usage error."""
    try:
        yield
    except ValueError as e:
        raise ControlError(str(e)) from None
