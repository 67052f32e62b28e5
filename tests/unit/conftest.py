"""Shared fixtures for the unit tests: a real Stack with fake Ethernet
interfaces and a fake clock (helpers live in fakenet.py).

No root, no TAP, no namespace: a fake interface's if_transmit records every
frame's bytes in `ifp.sent` and frees the mbuf at once, so after each test
the pool must be back to in_use == 0 (checked by the `stack` fixture).
"""

import pytest

from iopkt.stack.stack import Stack

from fakenet import FakeClock, Router


@pytest.fixture(autouse=True)
def no_auto_linklocal(monkeypatch):
    """The unit tests of IPv4, drivers and the control plane count frames
    exactly: their interfaces get no automatic IPv6 (no DAD probe leaving
    at the first timer tick). The IPv6 tests turn it on (net6.py)."""
    monkeypatch.setattr(Stack, "auto_linklocal", False)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def stack(clock):
    st = Stack("unit", nmbclusters=256, clock=clock)
    yield st
    # Held packets (ARP hold queues, if_snd) belong to the stack: detaching
    # every interface frees them. Anything still out after that leaked.
    st.shutdown()
    try:
        assert st.pool.in_use == 0, f"{st.pool.in_use} mbuf clusters leaked"
        assert st.pool.ext_in_use == 0
        assert st.pool.jumbo_in_use == 0, f"{st.pool.jumbo_in_use} jumbo clusters leaked"
    finally:
        st.close()


@pytest.fixture
def router(stack, clock):
    """Two interfaces, neighbours not resolved yet."""
    return Router(stack, clock)


@pytest.fixture
def net(router):
    """Two interfaces with H0 and H1 already in the ARP table."""
    router.learn(router.if0, Router.H0, Router.H0_MAC)
    router.learn(router.if1, Router.H1, Router.H1_MAC)
    return router
