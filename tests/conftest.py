"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest

from httpfake import FakeServer
from patchlesion.data.acquire import download as dl


@pytest.fixture
def server(monkeypatch):
    """A fake Dataverse / ISIC HTTP server on 127.0.0.1 (tests/httpfake.py); retry back-off cut to 10 ms."""
    monkeypatch.setattr(dl, "BACKOFF_BASE", 0.01)
    srv = FakeServer().start()
    yield srv
    srv.stop()
