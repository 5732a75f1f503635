"""Provenance records: git commit, package versions, device."""

from __future__ import annotations

import json

import torch

from patchlesion import provenance as provenance_module
from patchlesion.provenance import PACKAGES, device_info, git_commit, package_versions, provenance


def test_git_commit_outside_a_checkout_is_unknown(tmp_path):
    assert git_commit.__wrapped__(str(tmp_path)) == {"commit": "unknown", "dirty": None}


def test_git_commit_of_this_checkout(monkeypatch):
    info = git_commit.__wrapped__()
    assert info["commit"] == "unknown" or (len(info["commit"]) == 40 and isinstance(info["dirty"], bool))


def test_versions_and_device_are_recorded(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    versions = package_versions()
    assert set(PACKAGES) <= set(versions) and versions["torch"] and versions["python"]
    machine = device_info(torch.device("cpu"))
    assert machine["device"] == "cpu" and machine["device_name"] and machine["torch_threads"] >= 1
    assert machine["SLURM_JOB_ID"] == "77"
    record = provenance(torch.device("cpu"))
    assert set(record) == {"git", "versions", "machine"}
    json.dumps(record)  # JSON-serialisable as it is


def test_missing_package_is_none(monkeypatch):
    monkeypatch.setattr(provenance_module, "PACKAGES", ("surely-not-installed-package",))
    assert package_versions()["surely-not-installed-package"] is None
