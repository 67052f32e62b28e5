"""The CLI's tests ask a fake stack: `stack` (canned.fake_stack)."""

import pytest
from canned import fake_stack


@pytest.fixture
def stack(monkeypatch):
    return fake_stack(monkeypatch)
