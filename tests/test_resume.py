"""Resumable training: per-epoch checkpoints, a SIGKILLed job resumed to the uninterrupted result."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from patchlesion.cli import main
from patchlesion.engine.checkpoint import capture_rng_states, load_checkpoint, restore_rng_states, save_checkpoint, settings_hash
from patchlesion.method.balancing import EpochSampler

SRC = Path(__file__).resolve().parents[1] / "src"
# Attention, patch dropout and balanced batches: every random source of the loop (global torch RNG,
# the run's generator, the sampler's class pointer) matters for the result.
RUN = "tiny-ordered-nc4-gru-balanced_batches-att_initial-pd0.5"
EPOCHS = 6
SETTINGS = ["--epochs", str(EPOCHS), "--batch-size", "7", "--learning-rate", "0.003", "--lr-halving-epochs", "3", "5",
            "--validation-every", "2", "--image-size", "64", "48", "--crop-size", "24",
            "--device", "cpu", "--threads", "1"]  # fmt: skip
# evaluate takes the data geometry and device only
EVALUATION_SETTINGS = ["--image-size", "64", "48", "--crop-size", "24", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    assert main(["synthesize", "--out", str(root / "data"), "--n-images", "150", "--image-size", "64", "48", "--seed", "5"]) == 0
    assert main(["index", "--data-dir", str(root / "data"), "--out", str(root / "index.csv")]) == 0
    assert main(["split", "--index", str(root / "index.csv"), "--out", str(root / "split.csv")]) == 0
    return root


def _command(data: Path, out_dir: Path, checkpoint: Path | None, settings: list[str] = SETTINGS) -> list[str]:
    command = [sys.executable, "-m", "patchlesion.cli", "train", "--index", str(data / "index.csv"), "--split", str(data / "split.csv"),
               "--fold", "1", "--run", RUN, "--out-dir", str(out_dir), *settings]  # fmt: skip
    return command + (["--checkpoint", str(checkpoint)] if checkpoint else [])


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}


def _run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stderr


def _head_of(path: Path) -> str:
    """``git rev-parse HEAD`` of the checkout holding ``path``; ``unknown`` outside one (as provenance says)."""
    result = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def _same_weights(a: Path, b: Path) -> None:
    first, second = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_killed_training_resumes_to_the_uninterrupted_result(data):
    _run(_command(data, data / "straight", None))

    # Kill the job (SIGKILL: no handler runs) right after its second checkpoint, mid-run.
    checkpoint = data / "checkpoints" / RUN / "fold1" / "resume.pt"
    process = subprocess.Popen(_command(data, data / "killed", checkpoint), stderr=subprocess.PIPE, text=True, env=_env())
    killed_after = None
    for line in process.stderr:
        if "checkpoint after epoch 2 written" in line:
            process.send_signal(signal.SIGKILL)
            killed_after = 2
            break
    process.wait(timeout=60)
    assert killed_after == 2 and process.returncode == -signal.SIGKILL
    assert checkpoint.is_file() and not (data / "killed" / "run.json").exists()
    finished = torch.load(checkpoint, weights_only=True)["epoch"]
    assert 2 <= finished < EPOCHS  # the kill came before the last epoch

    # What Snakemake does before rerunning an incomplete job: the declared outputs are deleted.
    for leftover in (data / "killed").glob("*"):
        leftover.unlink()
    log = _run(_command(data, data / "killed", checkpoint))
    assert f"epochs 1-{finished} done, continuing at epoch {finished + 1}" in log
    assert "epoch 1/" not in log  # nothing before the checkpoint was trained again

    for name in ("model.pt", "model_last.pt"):
        _same_weights(data / "straight" / name, data / "killed" / name)
    straight, resumed = pd.read_csv(data / "straight" / "history.csv"), pd.read_csv(data / "killed" / "history.csv")
    pd.testing.assert_frame_equal(straight.drop(columns="seconds"), resumed.drop(columns="seconds"), check_exact=True)
    assert straight["best"].any()
    info = json.loads((data / "killed" / "run.json").read_text())
    assert info["resumed_from_epoch"] == finished + 1 and len(info["epoch_seconds"]) == EPOCHS
    assert info["seed"] == 1000 * 0 + 1  # run_seed(seed 0, fold 1)
    assert info["settings"]["epochs"] == EPOCHS and info["settings"]["lr_halving_epochs"] == [3, 5]
    assert re.fullmatch(r"[0-9a-f]{16}", info["settings_hash"])
    assert info["versions"]["torch"] == torch.__version__.split("+")[0] and info["machine"]["device"] == "cpu"
    assert info["git"]["commit"] == _head_of(SRC)  # the checkout's HEAD, not "unknown"
    assert not checkpoint.exists() and not checkpoint.parent.exists()  # removed once the outputs are complete


def test_checkpoint_of_other_settings_is_ignored_with_a_warning(data):
    checkpoint = data / "other" / "resume.pt"
    shorter = [*SETTINGS]
    shorter[shorter.index("--epochs") + 1] = "2"
    process = subprocess.Popen(_command(data, data / "other_a", checkpoint, shorter), stderr=subprocess.PIPE, text=True, env=_env())
    for line in process.stderr:
        if "checkpoint after epoch 1 written" in line:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert checkpoint.is_file()
    changed = [*shorter]
    changed[changed.index("--learning-rate") + 1] = "0.01"
    log = _run(_command(data, data / "other_b", checkpoint, changed))
    assert "other settings" in log and str(checkpoint) in log and "resuming" not in log
    assert "epoch 1/2" in log and not checkpoint.exists()


def test_damaged_checkpoint_is_ignored(tmp_path, caplog):
    path = tmp_path / "resume.pt"
    save_checkpoint(path, {"settings_hash": "abc", "epoch": 1})
    path.write_bytes(path.read_bytes()[:100])  # a write cut short
    assert load_checkpoint(path, "abc") is None
    assert "cannot read the training checkpoint" in caplog.text and "weights_only" not in caplog.text  # not torch's advice


def test_a_file_that_is_no_checkpoint_is_refused_and_kept(data, tmp_path):
    """A model (or any file) given as --checkpoint is neither overwritten nor deleted: exit 2, one line."""
    for name, content in (("notes.txt", b"my notes"), ("model.pt", None)):
        path = tmp_path / name
        if content is None:
            torch.save({"weight": torch.zeros(2)}, path)  # a state dict, as model.pt holds
        else:
            path.write_bytes(content)
        before = path.read_bytes()
        result = subprocess.run(_command(data, tmp_path / f"out_{name}", path), capture_output=True, text=True, env=_env(), timeout=300)
        assert result.returncode == 2, result.stderr
        lines = [line for line in result.stderr.splitlines() if "error:" in line]
        assert len(lines) == 1 and str(path) in lines[0] and "not a training checkpoint" in lines[0], result.stderr
        assert path.read_bytes() == before and not (tmp_path / f"out_{name}" / "model.pt").exists()


def test_checkpoint_holds_only_tensors_and_plain_containers(tmp_path):
    path = tmp_path / "resume.pt"
    save_checkpoint(path, {"settings_hash": "h", "epoch": 3, "history": [{"epoch": 1, "best": True}], "best": float("-inf")})
    state = torch.load(path, weights_only=True)  # raises on any pickled object
    assert state["epoch"] == 3 and state["format"] == 1 and load_checkpoint(path, "h")["best"] == float("-inf")
    assert load_checkpoint(path, "other") is None
    assert list(tmp_path.iterdir()) == [path]  # the temporary file was renamed


def test_rng_states_round_trip():
    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(2), np.random.seed(3), random.seed(4)
    states = capture_rng_states(generator)
    path_states = [torch.rand(3, generator=generator), torch.rand(3), np.random.rand(3), random.random()]
    restore_rng_states(states, generator)
    again = [torch.rand(3, generator=generator), torch.rand(3), np.random.rand(3), random.random()]
    assert torch.equal(path_states[0], again[0]) and torch.equal(path_states[1], again[1])
    assert np.array_equal(path_states[2], again[2]) and path_states[3] == again[3]


def test_sampler_state_continues_the_class_cycle():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    first = EpochSampler("balanced_batches", labels, torch.Generator().manual_seed(0))
    first.epoch_order()
    state, generator_state = first.state_dict(), first.generator.get_state()
    expected = first.epoch_order()
    second = EpochSampler("balanced_batches", labels, torch.Generator())
    second.load_state_dict(state)
    second.generator.set_state(generator_state)
    assert state["class_pointer"] != 0  # 10 positions over 4 classes: the pointer carries over
    assert torch.equal(second.epoch_order(), expected)


def test_settings_hash_is_stable_and_sensitive():
    assert settings_hash(a=1, b=[1, 2]) == settings_hash(b=[1, 2], a=1)
    assert settings_hash(a=1, b=[1, 2]) != settings_hash(a=1, b=[2, 1])


def test_evaluation_records_its_provenance_and_the_training_record(data):
    model_dir = data / "straight"
    if not (model_dir / "model.pt").exists():
        _run(_command(data, model_dir, None))
    metrics_path = data / "metrics.json"
    args = ["evaluate", "--index", str(data / "index.csv"), "--split", str(data / "split.csv"), "--fold", "1", "--run", RUN,
            "--model", str(model_dir / "model.pt"), "--predictions", str(data / "predictions.csv"), "--metrics", str(metrics_path)]  # fmt: skip
    assert main(args + EVALUATION_SETTINGS) == 0
    record = json.loads(metrics_path.read_text())["provenance"]
    assert record["training"] == str(model_dir / "run.json") and record["wall_seconds"] > 0
    assert record["machine"]["device"] == "cpu" and record["versions"]["numpy"] == np.__version__
    # the settings evaluate takes (the data geometry and device), not the training-only ones
    assert record["settings"] == {"image_size": [64, 48], "resize": "stretch", "crop_size": 24, "device": "cpu", "amp": "auto", "channels_last": "auto"}
