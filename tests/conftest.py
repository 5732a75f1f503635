"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest
from hypothesis import settings

from httpfake import FakeServer
from patchlesion.data.acquire import download as dl


@pytest.fixture
def server(monkeypatch):
    """A fake Dataverse / ISIC HTTP server on 127.0.0.1 (tests/httpfake.py); retry back-off cut to 10 ms."""
    monkeypatch.setattr(dl, "BACKOFF_BASE", 0.01)
    srv = FakeServer().start()
    yield srv
    srv.stop()


# Property tests (tests/test_properties_*.py): the same examples on every run, no example database
# written into the checkout, no per-example deadline on slow shared CI machines. Each property sets
# its own max_examples.
settings.register_profile("patchlesion", derandomize=True, database=None, deadline=None, print_blob=True)
settings.load_profile("patchlesion")
