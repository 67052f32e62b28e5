"""`make compare` (iopkt.bench.relays) without traffic: which kinds run,
what an IPv6 kind asks of the lab and iperf3, and the ratios against their
targets and aims."""

import contextlib

import pytest

from iopkt.bench import labs, measure, relays


def test_ipv6_adds_native_with_and_without_tso6_after_the_defaults():
    kinds, notes = relays.choose_kinds(",".join(relays.KINDS), False, True)
    assert kinds == ("native-tso", "native", "shim", "relay-offload", "relay", "native6",
                     "native-tso6")
    assert notes == []
    assert relays.choose_kinds(",".join(relays.KINDS), False)[0] == relays.KINDS


def test_naming_an_ipv6_kind_brings_in_what_it_is_compared_with():
    kinds, notes = relays.choose_kinds("native-tso6", False)
    assert kinds == ("native", "native6", "native-tso6")
    assert notes == ["added native6: native-tso6 is compared with it",
                     "added native: native6 is compared with it"]
    assert relays.choose_kinds("shim,native6", False) == (
        ("shim", "native", "native6"), ["added native: native6 is compared with it"])
    # as before for the veth kinds
    assert relays.choose_kinds("native-veth", False)[0] == ("native", "native-veth")
    with pytest.raises(SystemExit, match="--kinds native7: choose from"):
        relays.choose_kinds("native7", False, True)


@pytest.mark.parametrize("kind,offload,args,server,family", [
    ("native6", False, ["-6"], "2001:2:0:b::2", 6),
    ("native-tso6", True, ["-6"], "2001:2:0:b::2", 6),
    ("native", False, [], "198.19.0.2", 4)])
def test_an_ipv6_kind_runs_iperf3_over_ipv6_and_counts_ipv6_forwarding(
        monkeypatch, kind, offload, args, server, family):
    seen = {}

    @contextlib.contextmanager
    def fake_lab(spec, cores):
        seen["spec"] = spec
        yield {"prefix": spec.prefix}

    def fake_measure(st, seconds, iperf_args, cores, server_ip, fam):
        seen["call"] = (iperf_args, server_ip, fam)
        return {"iperf3": {"end": {"sum_received": {"bits_per_second": 8e8}}},
                "forwarded": 1000, "cpu_user_s": 0.5, "cpu_sys_s": 0.25,
                "ctxsw_voluntary": 10, "ctxsw_involuntary": 10}
    monkeypatch.setattr(labs, "stack_lab", fake_lab)
    monkeypatch.setattr(measure, "measure_stack", fake_measure)
    out = relays.run_one(kind, "cmpx", 1.0, {0}, {1})
    assert seen["call"] == (args, server, family)
    assert (seen["spec"].driver_a, seen["spec"].offload, seen["spec"].link) == (
        "devnp-tap", offload, "tap")
    assert out["bps"] == 8e8 and out["cpu_us_per_pkt"] == 750.0 and out["ctxsw_per_pkt"] == 0.02


def _runs(**mbps):
    runs = []
    for rep in range(3):
        r = {k: {"bps": v[rep] * 1e6} for k, v in mbps.items()}
        relays.add_ratios(r)
        runs.append(r)
    return runs


def test_the_ipv6_ratios_are_taken_run_by_run_and_held_against_their_aims():
    runs = _runs(native=(1000, 1100, 900), native6=(950, 990, 900),
                 **{"native-tso6": (4000, 4900, 4500), "native-tso": (5500, 5000, 6300)})
    assert [round(r["native6/native"], 4) for r in runs] == [0.95, 0.9, 1.0]
    assert [round(r["native-tso6/native6"], 4) for r in runs] == [4.2105, 4.9495, 5.0]
    assert relays.ratio_lines(runs) == [
        f"{'native-tso/native':26}   5.50 [4.55-7.00]  target >= 5: met",
        f"{'native6/native':26}   0.95 [0.90-1.00]  aim >= 0.9: met",
        f"{'native-tso6/native6':26}   4.95 [4.21-5.00]  aim >= 5: NOT met"]
    runs = _runs(native=(1000, 1000, 1000), native6=(800, 950, 890))
    assert relays.ratio_lines(runs) == [
        f"{'native6/native':26}   0.89 [0.80-0.95]  aim >= 0.9: NOT met"]
