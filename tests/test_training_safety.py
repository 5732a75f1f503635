"""Training-loop decisions checked against values worked out by hand:

* model.pt holds the weights of the *first* epoch with the best validation MC-sensitivity (scripted
  validation scores), and the history's ``best`` flags mark exactly the improvements, the last on it;
* Multi-Crop evaluation averages the per-crop softmax probabilities (not the softmax of the mean
  logits), on a stub model with known per-crop logits;
* a run interrupted after an epoch's checkpoint resumes with the learning-rate schedule (and the
  weights) of an uninterrupted run, with halving epochs on both sides of the interruption.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from patchlesion.data.ham10000 import read_dataset
from patchlesion.data.splits import stratified_split
from patchlesion.data.synthetic import make_synthetic_ham10000

# Product code: the few entry points these tests go through (training_module is monkeypatched).
from patchlesion.engine import training as training_module
from patchlesion.engine.inference import predict_probabilities
from patchlesion.engine.settings import TrainSettings
from patchlesion.engine.training import train_run
from patchlesion.method.classes import CLASSES
from patchlesion.method.runs import RunSpec

MULTI_CROP = RunSpec("tiny", "multi_crop", 4, "mean", "loss_weighting")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # reproducible, and fast on a shared 2-core machine
    root = tmp_path_factory.mktemp("safety")
    make_synthetic_ham10000(root / "data", n_images=70, image_size=(40, 32), seed=2)
    index = read_dataset(root / "data")
    yield root, index, stratified_split(index, seed=0)
    torch.set_num_threads(threads)


def _settings(**changes) -> TrainSettings:
    values = dict(epochs=4, batch_size=8, learning_rate=1e-2, lr_halving_epochs=(), validation_every=1,
                  image_size=(40, 32), crop_size=16, device="cpu", seed=0)  # fmt: skip
    return TrainSettings(**{**values, **changes})


def _weights(path) -> dict:
    return torch.load(path, weights_only=True)


def _equal(a: dict, b: dict) -> bool:
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------
# (b) model.pt is the first best validated epoch
# ---------------------------------------------------------------------------------------------


def test_model_pt_holds_the_first_best_validated_epoch(data, monkeypatch):
    root, index, split = data
    scripted = iter([0.3, 0.6, 0.6, 0.4])  # epochs 1-4: the best, 0.6, first reached at epoch 2
    weights_at_validation = []
    real_predict = training_module.predict_probabilities

    def recording_predict(model, *args, **kwargs):  # the weights each validation sees
        weights_at_validation.append({k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
        return real_predict(model, *args, **kwargs)

    def scripted_metrics(true, predicted, probabilities, *args, **kwargs):
        value = next(scripted)
        return {"mc_sensitivity": value, "mc_specificity": 0.5, "f1": 0.5, "accuracy": 0.5}

    monkeypatch.setattr(training_module, "predict_probabilities", recording_predict)
    monkeypatch.setattr(training_module, "classification_metrics", scripted_metrics)
    out = root / "best"
    history = train_run(MULTI_CROP, _settings(), index, split, 1, out)

    assert list(history["val_mc_sensitivity"]) == [0.3, 0.6, 0.6, 0.4]
    # ``best`` marks every new best (epoch 1 always is one); the last mark is model.pt's epoch
    assert list(history["best"]) == [True, True, False, False]
    assert len(weights_at_validation) == 4
    # the recorded weights are the training's own: the last validation saw model_last.pt's weights
    assert _equal(weights_at_validation[3], _weights(out / "model_last.pt"))
    # and the four epochs' weights differ, so the comparison below tells the epochs apart
    for i in range(4):
        for j in range(i + 1, 4):
            assert not _equal(weights_at_validation[i], weights_at_validation[j]), (i + 1, j + 1)
    best = _weights(out / "model.pt")
    assert _equal(best, weights_at_validation[1]), "model.pt is not epoch 2, the first best epoch"


def test_model_pt_is_not_replaced_by_a_later_worse_epoch(data, monkeypatch):
    """Validation at epochs 1, 3 (best), 5 (worse) of a 5-epoch run: model.pt is epoch 3."""
    root, index, split = data
    scripted = iter([0.2, 0.7, 0.1])
    weights_at_validation = []
    real_predict = training_module.predict_probabilities

    def recording_predict(model, *args, **kwargs):
        weights_at_validation.append({k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
        return real_predict(model, *args, **kwargs)

    monkeypatch.setattr(training_module, "predict_probabilities", recording_predict)
    monkeypatch.setattr(
        training_module, "classification_metrics",
        lambda *a, **k: {"mc_sensitivity": next(scripted), "mc_specificity": 0.5, "f1": 0.5, "accuracy": 0.5},
    )  # fmt: skip
    out = root / "later"
    history = train_run(MULTI_CROP, _settings(epochs=5, validation_every=3), index, split, 1, out)
    assert list(history["best"]) == [True, False, True, False, False]
    assert history["val_mc_sensitivity"].isna().tolist() == [False, True, False, True, False]
    assert _equal(_weights(out / "model.pt"), weights_at_validation[1])
    assert not _equal(_weights(out / "model.pt"), _weights(out / "model_last.pt"))


# ---------------------------------------------------------------------------------------------
# (c) Multi-Crop: mean of the per-crop softmax
# ---------------------------------------------------------------------------------------------

#: Per-crop logits of the stub model (4 crops, 7 classes), the same for every image.
CROP_LOGITS = [
    [2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
]


def _hand_mean_of_softmax() -> list[float]:
    """Worked by hand: softmax of [2, 0 x 6] is e^2 / (e^2 + 6) for class 0 and 1 / (e^2 + 6) for the
    others; of [0, 0, 4, 0 x 4] it is e^4 / (e^4 + 6) for class 2 and 1 / (e^4 + 6) for the others;
    of all zeros 1/7 each. Multi-Crop averages the four crops' probabilities."""
    e2, e4 = math.exp(2), math.exp(4)
    a, b = 1 / (e2 + 6), 1 / (e4 + 6)
    p0 = (e2 * a + b + b + 1 / 7) / 4
    p2 = (a + e4 * b + e4 * b + 1 / 7) / 4
    other = (a + b + b + 1 / 7) / 4
    return [p0, other, p2, other, other, other, other]


class StubMultiCropModel(torch.nn.Module):
    """Known logits per crop; ``forward`` averages the logits over the crops, as the mean head does."""

    def __init__(self):
        super().__init__()
        self.logits = torch.tensor(CROP_LOGITS)  # (N, C)
        self.seen_crops = []

    def crop_logits(self, crops: torch.Tensor) -> torch.Tensor:  # (B, N, 3, s, s) -> (B, N, C)
        self.seen_crops.append(tuple(crops.shape))
        return self.logits.expand(crops.shape[0], -1, -1).clone()

    def forward(self, crops: torch.Tensor) -> torch.Tensor:  # (B, N, 3, s, s) -> (B, C)
        return self.crop_logits(crops).mean(dim=1)


def test_multi_crop_probability_is_the_mean_of_the_crop_softmaxes():
    expected = _hand_mean_of_softmax()
    assert sum(expected) == pytest.approx(1.0)
    # the mean of the softmaxes and the softmax of the mean logits (0.5, 0, 2, 0, ...) differ here
    mean_logits = [0.5, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0]
    softmax_of_mean = [math.exp(v) / sum(math.exp(w) for w in mean_logits) for v in mean_logits]
    assert abs(expected[0] - softmax_of_mean[0]) > 0.05  # 0.182 against 0.117

    model = StubMultiCropModel()
    images = torch.zeros((3, 3, 32, 40), dtype=torch.uint8)  # (B, 3, H, W)
    settings = TrainSettings(image_size=(40, 32), crop_size=16, device="cpu")
    probabilities = predict_probabilities(model, images, MULTI_CROP, settings, torch.device("cpu"))
    assert model.seen_crops and all(shape[1:] == (4, 3, 16, 16) for shape in model.seen_crops)
    assert probabilities.shape == (3, len(CLASSES))
    for row in probabilities:
        np.testing.assert_allclose(row, expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# (d) resume restores the learning-rate schedule
# ---------------------------------------------------------------------------------------------


class Interrupted(Exception):
    """Stands in for a killed job: raised right after an epoch's checkpoint is on disk."""


def test_interrupted_run_resumes_with_the_uninterrupted_learning_rates(data, monkeypatch):
    """Halving at epochs 2 and 4, interruption after epoch 3's checkpoint. By hand the learning rates
    of epochs 1-5 are lr, lr/2, lr/2, lr/4, lr/4. A scheduler that is not restored restarts its count
    at the resume and halves again one epoch later (epoch 5 at lr/8); an optimizer not restored
    restarts at lr."""
    root, index, split = data
    lr = 4e-3
    settings = _settings(epochs=5, learning_rate=lr, lr_halving_epochs=(2, 4), validation_every=2)
    by_hand = [lr, lr / 2, lr / 2, lr / 4, lr / 4]

    straight = train_run(MULTI_CROP, settings, index, split, 1, root / "straight")
    assert straight["learning_rate"].tolist() == pytest.approx(by_hand, rel=1e-12)

    checkpoint = root / "checkpoints" / "resume.pt"
    real_save = training_module.save_checkpoint

    def save_then_die(path, state):
        real_save(path, state)
        if state["epoch"] == 3:
            raise Interrupted

    monkeypatch.setattr(training_module, "save_checkpoint", save_then_die)
    with pytest.raises(Interrupted):
        train_run(MULTI_CROP, settings, index, split, 1, root / "resumed", checkpoint=checkpoint)
    monkeypatch.setattr(training_module, "save_checkpoint", real_save)
    assert checkpoint.is_file() and torch.load(checkpoint, weights_only=True)["epoch"] == 3
    for leftover in (root / "resumed").glob("*"):  # as Snakemake deletes an incomplete job's outputs
        leftover.unlink()

    resumed = train_run(MULTI_CROP, settings, index, split, 1, root / "resumed", checkpoint=checkpoint)
    assert resumed["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert resumed["learning_rate"].tolist() == pytest.approx(by_hand, rel=1e-12)
    assert resumed["learning_rate"].tolist() == straight["learning_rate"].tolist()
    assert json.loads((root / "resumed" / "run.json").read_text())["resumed_from_epoch"] == 4
    np.testing.assert_array_equal(resumed["train_loss"].to_numpy(), straight["train_loss"].to_numpy())
    assert resumed["best"].tolist() == straight["best"].tolist()
    for name in ("model.pt", "model_last.pt"):
        assert _equal(_weights(root / "resumed" / name), _weights(root / "straight" / name)), name
    assert not checkpoint.exists()
