"""The ownership record, against a fake machine (no root): each thing is
written down before it is made; a crash after any step leaves a record
that release() clears completely; release() removes only what still
matches the record, and keeps what it may not touch."""

import json
import os
import time

import pytest

from iopkt.lab import netns, ownership
from iopkt.lab.netns import NsFile, NsId


class Crash(BaseException):
    pass


class FakeNet:
    """Namespaces and links by name, as the netns calls ownership uses
    see them. Every call that makes something first checks that the
    record on disk already names it; `crash_at` makes the k-th making
    call raise Crash right after it made its thing."""

    def __init__(self, rec_path):
        self.rec_path = rec_path
        self.ns: dict[str, NsId] = {}
        self.anon: dict[int, NsId] = {}
        self.links: dict[tuple, int] = {}       # (ns, name) -> ifindex
        self.files: dict[str, float] = {}       # names whose mount never came
        self.seq = 100
        self.made = 0
        self.crash_at = None

    def _on_disk(self) -> dict:
        with open(self.rec_path) as f:
            return json.load(f)["owned"]

    def _step(self) -> None:
        self.made += 1
        if self.made == self.crash_at:
            raise Crash(self.made)

    def ns_new(self):
        fd = os.open(os.devnull, os.O_RDONLY)
        self.seq += 1
        self.anon[fd] = NsId(4026530000 + self.seq, 4, self.seq)
        return fd

    def ns_ident(self, fd):
        return self.anon[fd]

    def ns_attach(self, fd, name):
        ident = self.anon[fd]
        assert {"name": name, "ino": ident.ino, "cookie": ident.cookie} \
            .items() <= next(e for e in self._on_disk()["netns"] if e["name"] == name).items()
        if name in self.ns or name in self.files:
            raise FileExistsError(name)
        self.files[name] = time.time()
        self._step()                            # a crash between file and mount
        del self.files[name]
        self.ns[name] = ident
        self._step()

    def ns_setup(self, name):
        pass

    def ns_lookup(self, name):
        if name in self.files:
            return NsFile(self.files[name])
        return self.ns.get(name)

    def ns_mounts(self, ino):
        return [netns.ns_path(n) for n, i in self.ns.items() if i.ino == ino]

    def host_ns(self):
        return {(4026531833, 4)}

    def ns_exists(self, name):
        return name in self.ns or name in self.files

    def ns_remove(self, name):
        self.links = {k: v for k, v in self.links.items() if k[0] != name}
        return (self.ns.pop(name, None) or self.files.pop(name, None)) is not None

    def ns_id_pids(self, ino, dev):
        return []

    def _link(self, ns, name):
        assert any(e["name"] == name and e["netns"] == ns for e in self._on_disk()["links"])
        self.seq += 1
        self.links[(ns, name)] = self.seq

    def tap_create(self, ns, name):
        self._link(ns, name)
        self._step()

    def veth_create(self, name, ns, peer, peer_ns):
        self._link(ns, name)
        self._link(peer_ns, peer)
        self._step()

    def link_index(self, name, ns=None):
        return self.links.get((ns, name))

    def link_delete(self, name, ns=None, ifindex=None):
        idx = self.links.get((ns, name))
        if idx is not None and ifindex in (None, idx):
            del self.links[(ns, name)]
            return True
        return False


@pytest.fixture
def world(tmp_path, monkeypatch):
    path = str(tmp_path / "lab-p.json")
    net = FakeNet(path)
    for name in ("ns_new", "ns_ident", "ns_attach", "ns_setup", "ns_lookup", "ns_mounts",
                 "host_ns", "ns_exists", "ns_remove", "ns_id_pids", "tap_create",
                 "veth_create", "link_index", "link_delete"):
        monkeypatch.setattr(netns, name, getattr(net, name))
    return net, path, str(tmp_path / "p.sock")


def build(path):
    """What a veth lab's up makes, in its order."""
    rec = ownership.Record.new(path, "p")
    rec.make_netns("p-s")
    for side in ("a", "b"):
        rec.make_netns(f"p-{side}")
        rec.make_veth(f"p-{side}0", f"p-{side}", f"p-s{side}", "p-s")
    return rec


def test_each_thing_is_written_down_before_it_is_made(world):
    net, path, _ = world
    build(path)                         # FakeNet asserts the order at every step
    on_disk = ownership.Record.load(path).owned
    assert [e["name"] for e in on_disk["netns"]] == ["p-s", "p-a", "p-b"]
    assert {(ln["netns"], ln["name"]): ln["ifindex"] for ln in on_disk["links"]} == net.links
    assert all((e["ino"], e["cookie"]) == net.ns[e["name"]][::2] for e in on_disk["netns"])


def test_a_tap_is_written_down_before_it_is_made(world):
    net, path, _ = world
    rec = ownership.Record.new(path, "p")
    rec.make_netns("p-a")
    rec.make_tap("p-a", "p-a0")
    assert ownership.Record.load(path).owned["links"] == [
        {"name": "p-a0", "netns": "p-a", "ifindex": net.links[("p-a", "p-a0")]}]


def test_a_name_that_is_taken_is_never_made(world):
    net, path, _ = world
    net.ns["p-a"] = NsId(1, 4, 1)
    rec = ownership.Record.new(path, "p")
    with pytest.raises(FileExistsError):
        rec.make_netns("p-a")
    assert net.ns["p-a"] == NsId(1, 4, 1)
    out = ownership.Record.load(path).release(world[2])
    assert out.left == ["netns p-a (another namespace has its name now)"]
    assert net.ns == {"p-a": NsId(1, 4, 1)}


STEPS = 8           # making calls of build(): 3 namespaces x 2 (file, mount), 2 veths

# What stands after the crash at each making call of build(): (namespaces
# mounted, names whose mount never came, links), in its order: p-s, then
# p-a and its veth, then p-b and its.
_VETH_A = {("p-a", "p-a0"), ("p-s", "p-sa")}
_VETH_B = {("p-b", "p-b0"), ("p-s", "p-sb")}
MADE = {1: ([], ["p-s"], set()), 2: (["p-s"], [], set()),
        3: (["p-s"], ["p-a"], set()), 4: (["p-s", "p-a"], [], set()),
        5: (["p-s", "p-a"], [], _VETH_A), 6: (["p-s", "p-a"], ["p-b"], _VETH_A),
        7: (["p-s", "p-a", "p-b"], [], _VETH_A), 8: (["p-s", "p-a", "p-b"], [], _VETH_A | _VETH_B)}


@pytest.mark.parametrize("k", range(1, STEPS + 1))
def test_a_crash_after_any_step_leaves_a_record_release_clears(world, k):
    net, path, sock = world
    net.crash_at = k
    with pytest.raises(Crash):
        build(path)
    assert (list(net.ns), list(net.files), set(net.links)) == MADE[k]
    rec = ownership.Record.load(path)
    out = rec.release(sock)
    assert out.left == [] and (net.ns, net.links, net.files) == ({}, {}, {}), out.removed
    assert not os.path.exists(path)


def test_steps_counts_every_making_call(world):
    net, path, _ = world
    build(path)
    assert net.made == STEPS


def test_release_removes_only_what_still_matches(world):
    net, path, sock = world
    build(path)
    net.ns["p-b"] = NsId(77, 4, 77)                 # p-b went; another took its name
    net.links[("p-b", "p-b0")] = 5
    net.links[(None, "p-a0")] = 9                   # a root-namespace link of a lab name
    out = ownership.Record.load(path).release(sock)
    assert out.left == ["netns p-b (another namespace has its name now)"]
    assert net.ns == {"p-b": NsId(77, 4, 77)}
    assert set(net.links) == {("p-b", "p-b0"), (None, "p-a0")}
    assert sorted(out.removed) == ["link p-a0", "link p-sa", "link p-sb",
                                   "netns p-a", "netns p-s"]
    assert not os.path.exists(path)


def test_a_cookie_tells_a_reused_inode_apart(world):
    net, path, sock = world
    rec = ownership.Record.new(path, "p")
    rec.make_netns("p-a")
    ino, dev, _ = net.ns["p-a"]
    net.ns["p-a"] = NsId(ino, dev, 999)             # same inode number, another namespace
    out = ownership.Record.load(path).release(sock)
    assert out.left == ["netns p-a (another namespace has its name now)"]
    assert "p-a" in net.ns


def test_the_machines_namespace_is_never_the_labs(world):
    net, path, sock = world
    rec = ownership.Record.new(path, "p")
    rec.make_netns("p-a")
    e = rec.owned["netns"][0]
    e["ino"], e["dev"], e["cookie"] = 4026531833, 4, 1
    rec.save()
    net.ns["p-a"] = NsId(4026531833, 4, 1)
    out = ownership.Record.load(path).release(sock)
    assert out.left == ["netns p-a (its name leads to this machine's own namespace)"]
    assert "p-a" in net.ns


def test_an_alias_keeps_the_namespace_its_links_and_the_record(world):
    net, path, sock = world
    build(path)
    net.ns["other"] = net.ns["p-a"]                 # ip netns attach other <pid in p-a>
    out = ownership.Record.load(path).release(sock)
    assert len(out.left) == 1 and out.left[0].startswith(
        f"netns p-a (also named {netns.ns_path('other')}, which the lab did not make"), out.left
    assert set(net.ns) == {"p-a", "other"} and ("p-a", "p-a0") in net.links
    kept = ownership.Record.load(path).owned
    assert [e["name"] for e in kept["netns"]] == ["p-a"]
    assert [ln["name"] for ln in kept["links"]] == ["p-a0"]
    del net.ns["other"]
    out = ownership.Record.load(path).release(sock)
    assert out.left == [] and out.removed == ["link p-a0", "netns p-a"] and net.ns == {}
    assert not os.path.exists(path)


@pytest.mark.parametrize("text, why", [
    ("{", "is not JSON"),
    ('{"version": 2}', "does not name its lab"),
    ('{"prefix": "p", "pid": 1, "ns_a": "p-a"}', "was written by an older iopkt"),
    ('{"prefix": "p", "version": 2}', "is broken: no 'owned' section"),
    ('{"prefix": "p", "version": 2, "owned": {"links": []}}',
     "is broken: 'owned.netns' is not a list of entries"),
    ('{"prefix": "p", "version": 2, "owned": {"netns": [{"name": "p-a"}], "links": []}}',
     "is broken: an entry of 'owned.netns' lacks ino, dev, cookie, at"),
    ('{"prefix": "p", "version": 2, "owned": {"netns": [], "links": [], "stack": {"pid": 1}}}',
     "is broken: 'owned.stack' has no token"),
])
def test_a_record_that_cannot_be_trusted_is_refused(tmp_path, text, why):
    from iopkt.ctl import rundir
    path = str(tmp_path / "lab-p.json")
    rundir.write_private(path, text)
    with pytest.raises(ownership.RecordError, match=f"^{path} {why}"):
        ownership.Record.load(path)


@pytest.mark.parametrize("cmd, name", [
    (["/usr/bin/python3", "-m", "iopkt", "run", "-i", "lab1", "-d", "tap"], "lab1"),
    (["/x/.venv/bin/python", "/x/.venv/bin/iopkt", "run", "-ilab2"], "lab2"),
    (["python", "-m", "iopkt", "run", "-d", "tap", "name=t0"], "iopkt"),
    (["python", "-m", "iopkt", "nicinfo", "-i"], None),
    (["python", "-m", "iopkt", "lab", "up", "run"], None),
    (["sleep", "run", "-i", "x"], None),
    ([], None),
])
def test_stack_instance_reads_iopkt_run_command_lines(cmd, name):
    assert ownership.stack_instance(cmd) == name
