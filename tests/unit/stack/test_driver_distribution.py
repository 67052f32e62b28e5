"""A driver from another distribution: a small wheel built here, installed
with pip into a folder of its own, is found through the entry-point group
iopkt.drivers by `iopkt drivers -v`, resolved by its short name and mounted
into a stack like the drivers of this repository."""

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile

import pytest

DRIVER = '''"""devnp-null: an Ethernet interface whose frames go nowhere (counted)."""
from iopkt.dev.autoconf import Driver, Option
from iopkt.net.ether import ether_ifattach, mac_aton
from iopkt.net.ifnet import IFF_RUNNING, Ifnet


def attach(stack, opts):
    ifp = Ifnet("null", stack.next_unit("null"), "devnp-null")
    ether_ifattach(ifp, mac_aton(opts["mac"]))
    ifp.mtu = opts["mtu"]
    ifp.if_ioctl = lambda ifp, cmd, data: None
    ifp.dropped = 0

    def transmit(ifp, pkts):
        for m in pkts:
            ifp.dropped += 1
            stack.pool.freem(m)
    ifp.if_transmit = transmit
    stack.if_attach(ifp)
    stack.if_up(ifp)
    ifp.flags |= IFF_RUNNING
    return ifp


DRIVER = Driver(name="devnp-null", kind="native",
                description="an interface whose frames go nowhere",
                options={"mac": Option(str, "02:00:00:00:00:99", "its MAC address"),
                         "mtu": Option(int, 1500, "its MTU")},
                attach=attach)
'''


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(folder) -> str:
    """iopkt_null-0.1-py3-none-any.whl: the package devnp_null and its
    dist-info, entry point included, as any build backend writes them."""
    info = "iopkt_null-0.1.dist-info"
    files = {
        "devnp_null/__init__.py": DRIVER.encode(),
        f"{info}/METADATA": b"Metadata-Version: 2.1\nName: iopkt-null\nVersion: 0.1\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
        f"{info}/entry_points.txt": b"[iopkt.drivers]\ndevnp-null = devnp_null:DRIVER\n",
    }
    record = [_record_line(n, d) for n, d in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = os.path.join(folder, "iopkt_null-0.1-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel installed by pip into a folder of its own (not the
    project's environment: other tests run beside this one)."""
    tmp = tmp_path_factory.mktemp("dist")
    site = tmp / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                        "--target", str(site), build_wheel(str(tmp))],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (site / "iopkt_null-0.1.dist-info" / "entry_points.txt").exists()
    env = {k: v for k, v in os.environ.items() if k != "IOPKT_DRIVER_PATH"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return env


def test_iopkt_drivers_lists_the_installed_driver_with_its_options(installed):
    r = subprocess.run([sys.executable, "-m", "iopkt", "drivers", "-v"], capture_output=True,
                       text=True, timeout=60, env=installed)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    names = [ln.split()[0] for ln in lines if not ln.startswith(" ")]
    assert names == sorted(["devn-afpacket", "devn-tap", "devnp-afpacket", "devnp-null",
                            "devnp-shim", "devnp-tap"]), lines
    at = lines.index(next(ln for ln in lines if ln.startswith("devnp-null ")))
    assert "native" in lines[at] and "frames go nowhere" in lines[at]
    assert lines[at + 1].split() == ["mac=str", "its", "MAC", "address", "(default:",
                                     "02:00:00:00:00:99)"], lines[at + 1]
    assert lines[at + 2].split()[0] == "mtu=int"


def test_the_installed_driver_resolves_by_short_name_and_mounts(installed):
    code = ("import json; from iopkt.stack import drvload; from iopkt.stack.stack import Stack\n"
            "s = Stack('t', nmbclusters=8)\n"
            "d = drvload.resolve('null')\n"
            "ifp = drvload.mount(s, d, 'mtu=1400')\n"
            "print(json.dumps([d.name, ifp.name, ifp.mtu, ifp.dname]))\n"
            "s.close()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, env=installed)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == ["devnp-null", "null0", 1400, "devnp-null"]


def test_a_driver_that_will_not_load_is_named_and_the_others_still_work(tmp_path):
    """An entry point whose module raises: `iopkt drivers` lists the rest
    and names the broken one in one line on stderr, exit 1."""
    info = tmp_path / "iopkt_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: iopkt-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[iopkt.drivers]\ndevnp-broken = devnp_broken:DRIVER\n")
    (tmp_path / "devnp_broken.py").write_text("raise ImportError('no such hardware library')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "iopkt", "drivers"], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 1
    assert "devnp-tap" in r.stdout and "devnp-broken" not in r.stdout
    assert r.stderr.strip() == ("iopkt drivers: driver devnp-broken did not load: "
                                "devnp_broken:DRIVER: ImportError: no such hardware library")
