"""The official-test-set protocol: the ISIC 2018 leaderboard score, predictions and the table."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import sklearn.metrics
import torch

from patchlesion.cli import main
from patchlesion.data.synthetic import make_synthetic_ham10000
from patchlesion.engine.inference import save_state
from patchlesion.method.classes import CLASSES
from patchlesion.method.model import build_model
from patchlesion.method.runs import RunSpec
from patchlesion.results.leaderboard import (
    UNDECIDED,
    balanced_multiclass_accuracy,
    challenge_labels,
    score_predictions,
    summarise_official,
)

MEL, NV, BCC, DF = (CLASSES.index(c) for c in ("MEL", "NV", "BCC", "DF"))


def _one_hot_probabilities(*rows):
    """Rows given as {class index: probability}; the rest of each row is 0."""
    out = np.zeros((len(rows), len(CLASSES)))
    for i, row in enumerate(rows):
        for c, p in row.items():
            out[i, c] = p
    return out


def test_hand_computed_score_with_a_tie_and_the_zero_weight_image():
    ids = ["ISIC_1", "ISIC_2", "ISIC_3", "ISIC_0035068", "ISIC_5", "ISIC_6", "ISIC_0035068x"]
    truth = [MEL, MEL, NV, NV, BCC, BCC, DF]
    probabilities = _one_hot_probabilities(
        {MEL: 0.9, NV: 0.1},  # MEL right
        {MEL: 0.4, NV: 0.4, BCC: 0.2},  # tie MEL/NV: undecided, wrong although argmax says MEL
        {NV: 0.6, MEL: 0.4},  # NV right
        {MEL: 0.7, NV: 0.3},  # wrong, but weight 0
        {NV: 0.8, BCC: 0.2},  # BCC wrong
        {BCC: 0.5, DF: 0.3, NV: 0.2},  # BCC right
        {NV: 1.0},  # DF wrong (the id only resembles the zero-weight one)
    )
    assert list(challenge_labels(probabilities)) == [MEL, UNDECIDED, NV, MEL, NV, BCC, NV]
    # MEL 1/2, NV 1/1 (the zero-weight image left out), BCC 1/2, DF 0/1; absent classes not averaged
    assert balanced_multiclass_accuracy(truth, probabilities, ids) == pytest.approx((0.5 + 1 + 0.5 + 0) / 4)
    # without the weights NV is 1/2; without tie handling sklearn would count image 2 as MEL
    assert balanced_multiclass_accuracy(truth, probabilities) == pytest.approx((0.5 + 0.5 + 0.5 + 0) / 4)
    assert sklearn.metrics.balanced_accuracy_score(truth, probabilities.argmax(1)) == pytest.approx((1 + 0.5 + 0.5 + 0) / 4)


def test_class_present_only_as_the_zero_weight_image_is_left_out():
    probabilities = _one_hot_probabilities({MEL: 1.0}, {MEL: 1.0})
    assert balanced_multiclass_accuracy([MEL, DF], probabilities, ["ISIC_1", "ISIC_0035068"]) == 1.0
    assert math.isnan(balanced_multiclass_accuracy([MEL], probabilities[:1], ["ISIC_0035068"]))


def _scorer_reference(truth: np.ndarray, probabilities: np.ndarray, weights: np.ndarray) -> float:
    """isic-challenge-scoring's aggregate as its source describes it (docs/data.md §6), on DataFrames."""
    categories = pd.Index(CLASSES)

    def labels(frame):
        out = frame.idxmax(axis="columns")
        out[frame.eq(frame.max(axis="columns"), axis="rows").sum(axis="columns") > 1] = "undecided"
        return out

    truth_frame = pd.DataFrame(np.eye(len(CLASSES))[truth], columns=categories)
    truth_labels, predicted = labels(truth_frame), labels(pd.DataFrame(probabilities, columns=categories))
    cm = sklearn.metrics.confusion_matrix(truth_labels, predicted, labels=categories, sample_weight=weights)
    frequency = pd.Series(weights).groupby(truth_labels.to_numpy()).sum().reindex(categories, fill_value=0)
    return pd.Series(cm.diagonal(), index=categories).divide(frequency).mean()


@pytest.mark.parametrize("seed", range(5))
def test_score_equals_the_challenge_scorer_on_random_predictions_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 200
    truth = rng.integers(0, len(CLASSES) - 1, n)  # VASC absent: left out of both means
    probabilities = rng.integers(0, 4, (n, len(CLASSES))).astype(float) / 4  # many ties
    ids = [f"ISIC_{i:07d}" for i in range(35000, 35000 + n)]  # includes ISIC_0035068
    expected = _scorer_reference(truth, probabilities, np.where(np.array(ids) == "ISIC_0035068", 0.0, 1.0))
    assert balanced_multiclass_accuracy(truth, probabilities, ids) == pytest.approx(expected, abs=1e-12)


def test_official_test_command_writes_fold_ensemble_and_submission_files(tmp_path):
    meta = make_synthetic_ham10000(tmp_path / "data", n_images=60, image_size=(64, 48), seed=3)
    assert main(["index", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "index.csv")]) == 0
    run = "tiny-multi_crop-nc5-mean-loss_weighting-k1"
    models = []
    for fold in (1, 2):
        model = build_model(RunSpec.from_name(run), len(CLASSES))
        for parameter in model.parameters():
            parameter.data.normal_(0, 0.5, generator=__import__("torch").Generator().manual_seed(fold))
        save_state(model, tmp_path / f"model{fold}.pt")
        models.append(str(tmp_path / f"model{fold}.pt"))
    out = tmp_path / "official"
    settings = ["--image-size", "64", "48", "--crop-size", "24", "--device", "cpu"]
    assert main(["official-test", "--index", str(tmp_path / "index.csv"), "--run", run, "--folds", "1", "2",
                 "--models", *models, "--out-dir", str(out), *settings]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    folds = [pd.read_csv(out / f"fold{k}_predictions.csv") for k in (1, 2)]
    ensemble = pd.read_csv(out / "ensemble_predictions.csv")
    submission = pd.read_csv(out / "submission.csv")
    assert list(submission.columns) == ["image", *CLASSES] and len(submission) == len(meta) == 60
    mean = (folds[0][list(CLASSES)].to_numpy() + folds[1][list(CLASSES)].to_numpy()) / 2
    np.testing.assert_allclose(ensemble[list(CLASSES)].to_numpy(), mean, atol=1e-6)
    np.testing.assert_array_equal(submission[list(CLASSES)].to_numpy(), ensemble[list(CLASSES)].to_numpy())
    assert metrics["ensemble"]["balanced_multiclass_accuracy"] == score_predictions(ensemble)["balanced_multiclass_accuracy"]
    assert [f["fold"] for f in metrics["folds"]] == [1, 2] and metrics["n_images"] == 60
    # where and how it ran, as an evaluation's metrics.json: the machine, the libraries, the settings
    provenance = metrics["provenance"]
    assert provenance["settings"]["image_size"] == [64, 48] and provenance["settings"]["crop_size"] == 24
    assert provenance["training"] == [None, None]  # the test's models have no run.json beside them
    assert provenance["machine"]["cpu_model"] and provenance["versions"]["torch"] == torch.__version__.split("+")[0], provenance

    md = tmp_path / "t.md"
    heldout = []
    for fold, value in ((1, 0.5), (2, 0.7)):
        heldout.append(tmp_path / f"heldout{fold}.json")
        heldout[-1].write_text(json.dumps({"run": run, "fold": fold, "mc_sensitivity": value}))
    assert main(["official-table", "--metrics", str(out / "metrics.json"), "--label", run, "Multi-Crop",
                 "--heldout-metrics", *map(str, heldout),
                 "--csv", str(tmp_path / "t.csv"), "--markdown", str(md), "--latex", str(tmp_path / "t.tex")]) == 0  # fmt: skip
    text = md.read_text()
    assert "| tiny | Multi-Crop |" in text and "ISIC_0035068 has weight 0" in text
    assert " | 60.0 | 2 | 60 |" in text, "the held-out test part's mean MC-Sensitivity beside the official scores"
    assert "\\toprule" in (tmp_path / "t.tex").read_text()


def test_table_rows_are_fold_mean_population_std_and_ensemble():
    result = {
        "run": "densenet121-multi_crop-nc9-mean-loss_weighting-k1",
        "folds": [{"balanced_multiclass_accuracy": v} for v in (0.5, 0.6, 0.7)],
        "ensemble": {"balanced_multiclass_accuracy": 0.75, "n_scored": 1511, "n_undecided": 0},
    }
    row = summarise_official([result], {result["run"]: "Multi-Crop"}).iloc[0]
    assert row["row"] == "Multi-Crop" and row["n_folds"] == 3
    assert row["bma_folds"] == pytest.approx(60.0) and row["bma_folds_std"] == pytest.approx(math.sqrt(200 / 3))
    assert row["bma_ensemble"] == pytest.approx(75.0)
    assert math.isnan(row["heldout_mc_sensitivity"]), "no held-out metrics given"
