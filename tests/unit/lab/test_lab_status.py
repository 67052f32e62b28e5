"""`lab status` and `lab down` read each lab's record alone: one that
cannot be trusted or read is reported for its lab, and the others go on."""

import json
import re

import pytest

from iopkt.ctl import control, rundir
from iopkt.lab import lab, ownership


def test_status_reports_each_broken_record_and_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(control, "RUN_DIR", str(tmp_path))
    rundir.write_private(lab.state_path("bad1"), '{"prefix": "bad1", "version": 2, '
                         '"owned": {"netns": [{"name": "bad1-a"}], "links": []}}')
    rundir.write_private(lab.state_path("bad2"), "not json")
    rundir.write_private(lab.state_path("old"), '{"prefix": "old", "pid": 1, "ns_b": "x"}')
    good = ownership.Record.new(lab.state_path("good"), "good", link="tap",
                                driver_a="devnp-tap", driver_b="devn-tap")
    good.save()
    res = {s["prefix"]: s for s in lab.status()}
    assert res["bad1"] == {"prefix": "bad1", "error": (
        f"lab 'bad1': {lab.state_path('bad1')} is broken: an entry of 'owned.netns' lacks "
        "ino, dev, cookie, at; nothing touched")}
    assert res["bad2"]["error"] == f"lab 'bad2': {lab.state_path('bad2')} is not JSON; " \
        "nothing touched"
    assert res["old"]["error"] == (
        f"lab 'old': {lab.state_path('old')} was written by an older iopkt and proves no "
        "ownership of namespaces or links (take that lab down with the iopkt that made it, or "
        "by hand); nothing touched")
    assert res["good"]["stack_alive"] is False and res["good"]["answering"] is False
    assert res["good"]["drivers"] == ["devnp-tap", "devn-tap"]


def test_down_of_a_broken_record_touches_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(control, "RUN_DIR", str(tmp_path))
    path = lab.state_path("bad")
    rundir.write_private(path, json.dumps({"prefix": "bad", "version": 2}))
    with pytest.raises(lab.LabError, match="^" + re.escape(
            f"lab 'bad': {path} is broken: no 'owned' section; nothing touched") + "$"):
        lab.down("bad")
    assert json.loads(open(path).read()) == {"prefix": "bad", "version": 2}
