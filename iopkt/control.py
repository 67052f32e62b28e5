"""The control socket: how `iopkt nicinfo`, `ifconfig`, `route`, `netstat`
read and change a running stack.

A UNIX stream socket at /run/iopkt/<instance>.sock, mode 0600 (root only).
One JSON request per connection, one JSON answer:

    -> {"op": "nicinfo", "args": {"ifname": "tap0"}}
    <- {"ok": true, "result": {...}}   or   {"ok": false, "error": "..."}

The listening socket sits in the stack's epoll set, so requests are served
in the stack thread and see a consistent state without locks.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time

from .ifnet import caps_str, flags_str, parse_capwords
from .route import aton, ntoa, parse_prefix

RUN_DIR = os.environ.get("IOPKT_RUN_DIR", "/run/iopkt")
MAX_REQUEST = 65536


class ControlError(Exception):
    """A request failed; str() is the message for the user."""


def sock_path(instance: str) -> str:
    return os.path.join(RUN_DIR, f"{instance}.sock")


def check_instance_name(name: str) -> str:
    if not name or len(name) > 32 or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(f"instance name {name!r}: use 1-32 letters, digits, '-', '_' or '.'")
    return name


class ControlServer:
    def __init__(self, stack, instance: str):
        self.stack = stack
        self.path = sock_path(instance)
        os.makedirs(RUN_DIR, mode=0o755, exist_ok=True)
        if os.path.exists(self.path):
            if _alive(self.path):
                raise ControlError(f"a stack named '{instance}' is already running "
                                   f"({self.path}); pick another with -i")
            os.unlink(self.path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.sock.bind(self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.requests = 0
        stack.interrupt_attach(self.sock.fileno(), self._accept)
        self.ops = {
            "ping": self.op_ping, "ifconfig": self.op_ifconfig,
            "nicinfo": self.op_nicinfo, "route": self.op_route,
            "netstat": self.op_netstat, "arp": self.op_arp, "stop": self.op_stop,
            "detach": self.op_detach, "mount": self.op_mount,
        }

    def close(self) -> None:
        self.stack.interrupt_detach(self.sock.fileno())
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    # -- serving (stack thread) ----------------------------------------------
    def _accept(self, _events: int) -> None:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        with conn:
            conn.settimeout(0.5)            # we are the stack thread: never wait long
            try:
                data = b""
                while not data.endswith(b"\n") and len(data) < MAX_REQUEST:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                answer = self.handle(data)
                conn.sendall(json.dumps(answer).encode() + b"\n")
            except OSError:
                pass

    def handle(self, data: bytes) -> dict:
        self.requests += 1
        try:
            req = json.loads(data)
            if not isinstance(req, dict) or not isinstance(req.get("args", {}), dict):
                raise ControlError("a request is a JSON object {\"op\": ..., \"args\": {...}}")
            op = self.ops.get(req.get("op"))
            if op is None:
                raise ControlError(f"unknown request {req.get('op')!r}")
            return {"ok": True, "result": op(**req.get("args", {}))}
        except (ControlError, ValueError, KeyError, TypeError, OSError) as e:
            return {"ok": False, "error": str(e)}
        except Exception as e:          # a bug behind one request must not stop the stack
            self.stack.log.exception("control request failed")
            return {"ok": False, "error": f"internal error: {type(e).__name__}: {e}"}

    def _ifp(self, ifname: str):
        ifp = self.stack.ifnets.get(ifname)
        if ifp is None:
            raise ControlError(f"no interface '{ifname}' (interfaces: "
                               f"{', '.join(self.stack.ifnets) or 'none'})")
        return ifp

    # -- operations ------------------------------------------------------
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
                "link_state": {0: "unknown", 1: "down", 2: "up"}[ifp.link_state],
                "media_bps": ifp.baudrate,
                "capabilities": caps_str(ifp.capabilities), "capabilities_raw": ifp.capabilities,
                "enabled": caps_str(ifp.capenable), "enabled_raw": ifp.capenable}

    def op_ifconfig(self, ifname: str | None = None, inet: str | None = None,
                    delete: str | None = None, mtu: int | None = None,
                    up: bool | None = None, caps: list | None = None) -> list[dict]:
        st = self.stack
        if ifname is None:
            return [self._ifconfig_one(i) for i in st.ifnets.values()]
        ifp = self._ifp(ifname)
        if caps:
            new = parse_capwords(caps, ifp.capenable)
            if new != ifp.capenable:
                ifp.set_capenable(new)
        if mtu is not None:
            if not 68 <= int(mtu) <= 9000:
                raise ControlError(f"mtu {mtu}: must be 68..9000")
            ifp.mtu = int(mtu)
        if delete is not None:
            st.ip.del_address(ifp, parse_prefix(delete)[0])
        if inet is not None:
            addr, plen = parse_prefix(inet)
            if "/" not in inet:
                raise ControlError(f"inet {inet}: give a prefix length, e.g. {inet}/24")
            st.ip.add_address(ifp, addr, plen)
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
            out.append(d)
        return out

    def op_route(self, add: str | None = None, delete: str | None = None,
                 gateway: str | None = None, ifname: str | None = None) -> list[dict]:
        rt = self.stack.ip.routes
        if add is not None:
            dst, plen = parse_prefix(add)
            ifp = self._ifp(ifname) if ifname else None
            rt.add(dst, plen, aton(gateway) if gateway else 0, ifp)
        if delete is not None:
            dst, plen = parse_prefix(delete)
            rt.delete(dst, plen)
        return rt.to_list()

    def op_netstat(self) -> dict:
        st = self.stack
        return {"mbuf": st.pool.stats(), "ip": st.ip.stats(),
                "icmp": {**st.icmp.stats, "inhist": st.icmp.inhist,
                         "outhist": st.icmp.outhist},
                "arp": st.arp.stats,
                "stack": {"loops": st.loops, "wakeups": st.wakeups,
                          "requests": self.requests, "handler_errors": st.handler_errors}}

    def op_arp(self) -> list[dict]:
        return self.stack.arp.table()

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
        from .drvload import DriverError, mount, resolve
        try:
            ifp = mount(self.stack, resolve(driver), options)
        except DriverError as e:
            raise ControlError(str(e)) from None
        return {"mounted": ifp.name, "driver": ifp.dname, "description": ifp.description}

    def op_stop(self) -> dict:
        self.stack.stop()
        return {"stopping": True}


# -- client ------------------------------------------------------------
def request(instance: str, op: str, timeout: float = 5.0, **args):
    """Send one request to the running stack `instance`; return its result
    or raise ControlError with a message for the user."""
    path = sock_path(instance)
    if not os.path.exists(path):
        raise ControlError(f"no stack named '{instance}' is running "
                           f"(no {path}); start one with 'iopkt run' or 'iopkt lab up'")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(json.dumps({"op": op, "args": args}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except PermissionError:
        raise ControlError(f"{path}: permission denied (the control socket is root's)") from None
    except (ConnectionRefusedError, FileNotFoundError):
        raise ControlError(f"the stack '{instance}' is not answering ({path} is stale)") from None
    except socket.timeout:
        raise ControlError(f"the stack '{instance}' did not answer within {timeout}s") from None
    finally:
        s.close()
    if not data:
        raise ControlError(f"the stack '{instance}' closed the connection without answering")
    ans = json.loads(data)
    if not ans.get("ok"):
        raise ControlError(ans.get("error", "request failed"))
    return ans["result"]


def wait_ready(instance: str, timeout: float = 10.0, proc=None) -> dict:
    """Poll until the stack answers `ping`; raise ControlError on timeout or
    if `proc` (a Popen) exits first."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ControlError(f"the stack exited with status {proc.returncode} before answering")
        try:
            return request(instance, "ping", timeout=1.0)
        except ControlError as e:
            last = e
        time.sleep(0.05)
    raise ControlError(f"the stack '{instance}' did not come up within {timeout}s ({last})")


def _alive(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()
