"""iopkt.ionet.ionet: the header a legacy driver is written against. A
driver reads the packet structures' fields as io-net leaves them, so each
starts at its exact value; parse_options is checked for every kind of
option (int, str, bool), every word a bool accepts, and every error."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iopkt.ionet.ionet import net_buf_t, net_iov_t, npkt_t, parse_options

# -- the packet structures ---------------------------------------------------------


def test_a_fragment_is_empty_unless_given_its_buffer_address_and_length():
    v = net_iov_t()
    assert (v.base, v.phys, v.len) == (None, 0, 0)
    buf = bytearray(60)
    v = net_iov_t(buf, 77, 42)
    assert v.base is buf and (v.phys, v.len) == (77, 42)


def test_a_net_buf_holds_the_very_list_given_or_a_new_empty_one():
    iovs = [net_iov_t(), net_iov_t()]
    nb = net_buf_t(iovs)
    assert nb.net_iov is iovs and nb.niov == 2
    a, b = net_buf_t(), net_buf_t()
    assert a.net_iov == [] and a.niov == 0
    a.net_iov.append(net_iov_t())
    assert (a.niov, b.niov) == (1, 0)               # no list shared between them
    assert net_buf_t([]).niov == 0


def test_a_new_npkt_has_every_field_at_its_io_net_start():
    n = npkt_t()
    assert n.buffers == [] and n.next is None and n.org_data is None
    assert (n.flags, n.framelen, n.tot_iov, n.csum_flags, n.ref_cnt) == (0, 0, 0, 0, 0)
    assert (n.cell, n.endpoint, n.iface, n.req_complete) == (0, 0, 0, 0)
    assert n.inter_module is None and n._done == []
    assert list(n.iovs()) == []
    m = npkt_t()
    n.buffers.append(net_buf_t())
    n._done.append((1, 2))
    assert (m.buffers, m._done) == ([], [])         # nothing shared between npkts


def test_iovs_walks_every_fragment_of_every_buffer_in_order():
    frags = [net_iov_t(None, i, i) for i in range(5)]
    n = npkt_t()
    n.buffers = [net_buf_t(frags[:2]), net_buf_t([]), net_buf_t(frags[2:])]
    assert list(n.iovs()) == frags


# -- parse_options -------------------------------------------------------------------
KNOWN = {"npkts": 64, "name": "tap0", "promisc": False, "verbose": True}


def test_no_options_give_the_defaults():
    for text in (None, "", ",", " , ,"):
        assert parse_options(text, KNOWN) == KNOWN
    assert parse_options(None, KNOWN) is not KNOWN


def test_each_option_takes_its_default_s_type():
    assert parse_options("npkts=8,name=lab0", KNOWN) == {
        "npkts": 8, "name": "lab0", "promisc": False, "verbose": True}
    assert parse_options(" npkts=8 ", KNOWN)["npkts"] == 8


def test_empty_items_anywhere_are_skipped_not_the_end():
    assert parse_options(",npkts=8,,name=x,", KNOWN) == {
        "npkts": 8, "name": "x", "promisc": False, "verbose": True}


def test_an_option_with_no_value_is_its_type_s_empty_value_or_true():
    assert parse_options("npkts,name,promisc", KNOWN) == {
        "npkts": 0, "name": "", "promisc": True, "verbose": True}
    # "key=" is an empty value, not a missing one: a bool takes it as true
    assert parse_options("name=,promisc=", KNOWN) == {
        "npkts": 64, "name": "", "promisc": True, "verbose": True}
    with pytest.raises(ValueError, match="^option npkts=: expected int$"):
        parse_options("npkts=", KNOWN)


@pytest.mark.parametrize("word", ["1", "yes", "on", "true", "YES", "On", "True"])
def test_a_bool_is_true_for_each_yes_word(word):
    assert parse_options(f"promisc={word}", KNOWN)["promisc"] is True


@pytest.mark.parametrize("word", ["0", "no", "off", "false", "2", "y", "maybe"])
def test_a_bool_is_false_for_anything_else(word):
    assert parse_options(f"verbose={word}", KNOWN)["verbose"] is False


def test_a_value_may_hold_an_equals_sign():
    assert parse_options("name=a=b", KNOWN)["name"] == "a=b"


def test_an_unknown_option_is_named_with_the_known_ones_sorted():
    with pytest.raises(ValueError) as e:
        parse_options("npkts=8,mtu=1400", KNOWN)
    assert str(e.value) == "unknown option 'mtu' (options: name, npkts, promisc, verbose)"


def test_a_bad_value_names_the_option_and_the_type_expected():
    with pytest.raises(ValueError) as e:
        parse_options("npkts=lots", KNOWN)
    assert str(e.value) == "option npkts=lots: expected int"
    assert e.value.__cause__ is None and e.value.__suppress_context__ is True


def test_the_defaults_given_are_left_as_they_were():
    known = dict(KNOWN)
    parse_options("npkts=1,promisc", known)
    assert known == KNOWN


@given(st.dictionaries(st.sampled_from(sorted(KNOWN)),
                       st.one_of(st.integers(0, 10**6), st.booleans(),
                                 st.text("abcxyz019", min_size=1, max_size=8))))
def test_parse_options_matches_a_plain_model(given_opts):
    """Any list of key=value items gives the defaults with each value
    converted by its default's type (a bool by the yes words)."""
    items, want = [], dict(KNOWN)
    for key, v in given_opts.items():
        text = str(v).lower() if isinstance(v, bool) else str(v)
        items.append(f"{key}={text}")
        typ = type(KNOWN[key])
        if typ is bool:
            want[key] = text in ("1", "yes", "on", "true")
        elif typ is int:
            try:
                want[key] = int(text)
            except ValueError:
                with pytest.raises(ValueError):
                    parse_options(",".join(items), KNOWN)
                return
        else:
            want[key] = text
    assert parse_options(",".join(items), KNOWN) == want
