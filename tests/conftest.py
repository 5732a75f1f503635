"""Fixtures shared by the test modules."""

from __future__ import annotations

import os
import stat

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


def pytest_collection_modifyitems(items):
    """The slow (Snakemake end-to-end) tests first, the longest (``@pytest.mark.slow(minutes=N)``, about
    N minutes on a 2-core CI machine; 1 if not given) at the head: with several workers (pyproject.toml's
    ``-n auto``) they then start at once instead of ending the run alone."""

    def minutes(item) -> float:
        marker = item.get_closest_marker("slow")
        return 0.0 if marker is None else float(marker.kwargs.get("minutes", 1))

    items.sort(key=minutes, reverse=True)  # stable: the collection order otherwise


# Property tests (tests/test_properties_*.py): the same examples on every run, no example database
# written into the checkout, no per-example deadline on slow shared CI machines. Each property sets
# its own max_examples.
settings.register_profile("patchlesion", derandomize=True, database=None, deadline=None, print_blob=True)
settings.load_profile("patchlesion")


#: The PATH of the test session before :func:`_scontrol_answers_at_once` put its stand-in first
#: (tests/test_slurm.py gives its Snakemake runs this PATH).
REAL_PATH = "PATCHLESION_TEST_REAL_PATH"


@pytest.fixture(scope="session", autouse=True)
def _scontrol_answers_at_once(tmp_path_factory):
    """Keep every Snakemake run of the tests from waiting 9 s for SLURM.

    snakemake-executor-plugin-slurm (the slurm extra, installed for the tests) is imported by every
    Snakemake start and then runs ``scontrol show config``; with SLURM's tools installed but no
    controller up, as on a CI machine after the SLURM test stopped its cluster, that call waits for its
    10 s timeout, so each of the ~150 Snakemake runs of the suite took 9 s longer. A stand-in
    ``scontrol`` first on PATH fails that one query at once (the plugin then keeps its defaults) and
    hands everything else to the real one; tests/test_slurm.py runs its own Snakemake with the real PATH."""
    folder = tmp_path_factory.mktemp("scontrol")
    stand_in = folder / "scontrol"
    stand_in.write_text(
        "#!/bin/sh\n"
        '[ "$1 $2" = "show config" ] && exit 1\n'
        'PATH="$PATCHLESION_TEST_REAL_PATH" exec scontrol "$@"\n'
    )
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    saved = {key: os.environ.get(key) for key in ("PATH", REAL_PATH)}
    os.environ[REAL_PATH] = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([str(folder), os.environ[REAL_PATH]])
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
