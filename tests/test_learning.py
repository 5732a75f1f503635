"""The tiny model learns: training loss falls and validation MC-sensitivity ends far above chance.

The other training tests check outputs, determinism and resumption, all of which hold just as well
for a model that never takes an optimizer step. This one fails when the weights do not move (see
tests/mutants/noop_optimizer.py, which makes every torch.optim step a no-op from outside).

The synthetic classes differ in a fine texture (patchlesion.data.synthetic); 700 images of 48x36 px,
32 px Multi-Crop crops and balanced batches make the tiny CNN learn it within 10 epochs (about
3 s on one CPU thread). Measured over run seeds 0-3: final validation MC-sensitivity 0.60-0.88,
training loss 1.86-1.93 -> 0.26-0.34; without optimizer steps both stay at chance (1/7, ~1.9).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from patchlesion.data.ham10000 import read_dataset
from patchlesion.data.splits import stratified_split
from patchlesion.data.synthetic import make_synthetic_ham10000

# Product code: the few entry points this test goes through.
from patchlesion.engine.evaluate import evaluate_run
from patchlesion.engine.settings import TrainSettings
from patchlesion.engine.training import train_run
from patchlesion.method.runs import RunSpec

CHANCE = 1 / 7
RUN = RunSpec("tiny", "multi_crop", 4, "mean", "balanced_batches")
SETTINGS = TrainSettings(
    epochs=10, batch_size=16, learning_rate=3e-3, lr_halving_epochs=(), validation_every=5,
    image_size=(48, 36), crop_size=32, device="cpu", seed=0,
)  # fmt: skip


@pytest.fixture(scope="module")
def one_thread():
    """One CPU thread: reproducible, and far faster than two on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("learning")
    make_synthetic_ham10000(root / "data", n_images=700, image_size=SETTINGS.image_size, seed=1)
    index = read_dataset(root / "data")
    split = stratified_split(index, seed=0)
    history = train_run(RUN, SETTINGS, index, split, 1, root / "run")
    return root, index, split, history


def test_training_loss_falls(trained):
    _, _, _, history = trained
    loss = history["train_loss"].to_numpy()
    assert len(loss) == SETTINGS.epochs and np.isfinite(loss).all()
    # Cross-entropy at chance is ln 7 = 1.95; a model that learns ends well below half of its first epoch.
    assert loss[0] > 1.5, loss
    assert loss[-1] < 0.5 * loss[0], loss
    assert loss[-3:].mean() < loss[:3].mean() - 0.8, loss


def test_validation_mc_sensitivity_ends_far_above_chance(trained):
    _, _, _, history = trained
    validated = history.dropna(subset=["val_mc_sensitivity"])
    assert list(validated["epoch"]) == [1, 5, 10]
    final = validated["val_mc_sensitivity"].iloc[-1]
    assert final > 3 * CHANCE, validated[["epoch", "val_mc_sensitivity"]]
    assert final > validated["val_mc_sensitivity"].iloc[0] + 0.2, validated[["epoch", "val_mc_sensitivity"]]


def test_best_model_classifies_the_test_part_above_chance(trained):
    """model.pt (best validation epoch) on the untouched test part; MC-sensitivity recomputed here
    from predictions.csv with scikit-learn's balanced accuracy."""
    root, index, split, _ = trained
    out = root / "run"
    metrics = evaluate_run(RUN, SETTINGS, index, split, 1, out / "model.pt", out / "p.csv", out / "m.json")
    predictions = pd.read_csv(out / "p.csv")
    assert len(predictions) > 50 and set(predictions["true_class"]) == set(index["class_name"])
    independent = balanced_accuracy_score(predictions["true_class"], predictions["predicted_class"])
    assert metrics["mc_sensitivity"] == pytest.approx(independent)
    assert json.loads((out / "m.json").read_text())["mc_sensitivity"] == pytest.approx(independent)
    assert independent > 3 * CHANCE, independent
