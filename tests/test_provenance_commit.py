"""The recorded git commit is the checkout's real HEAD (never ``unknown`` inside a git checkout),
compared with what ``git rev-parse HEAD`` itself says."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

# Product code: the provenance module (its git_commit is cached; __wrapped__ is the uncached function).
import patchlesion
from patchlesion.provenance import git_commit, provenance

HEX40 = re.compile(r"[0-9a-f]{40}")
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(where: Path, *args: str) -> str:
    command = ["git", "-C", str(where), "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false", *args]
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=30).stdout.strip()


@pytest.fixture
def repository(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "code.py").write_text("x = 1\n")
    _git(repo, "add", "code.py")
    _git(repo, "commit", "-q", "-m", "first")
    (repo / "code.py").write_text("x = 2\n")
    _git(repo, "commit", "-q", "-am", "second")  # HEAD is not the root commit
    (repo / "sub").mkdir()
    return repo


def test_commit_of_a_temporary_checkout_is_its_head(repository):
    head = _git(repository, "rev-parse", "HEAD")
    assert HEX40.fullmatch(head)
    info = git_commit.__wrapped__(str(repository / "sub"))  # from a folder inside the checkout
    assert info == {"commit": head, "dirty": False}
    (repository / "code.py").write_text("x = 3\n")  # an uncommitted change to a tracked file
    assert git_commit.__wrapped__(str(repository)) == {"commit": head, "dirty": True}


def test_recorded_commit_is_the_package_checkouts_head():
    """provenance() (what run.json and metrics.json record) names the HEAD of the checkout holding
    the imported package's source; skipped when the package is not in a git checkout."""
    package_dir = Path(patchlesion.__file__).resolve().parent
    try:
        head = _git(package_dir, "rev-parse", "HEAD")
    except subprocess.CalledProcessError:
        pytest.skip(f"{package_dir} is not in a git checkout")
    assert HEX40.fullmatch(head)
    assert git_commit.__wrapped__()["commit"] == head
    git_commit.cache_clear()
    recorded = provenance(torch.device("cpu"))["git"]
    assert recorded["commit"] == head and isinstance(recorded["dirty"], bool)
