"""Training and evaluation of one run on tiny synthetic data, through the CLI."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from patchlesion.cli import main
from patchlesion.method.classes import CLASSES

RUN = "tiny-multi_crop-nc9-mean-loss_weighting-k1"
SETTINGS = ["--epochs", "2", "--batch-size", "8", "--plain-batch-size", "8", "--learning-rate", "0.001", "--lr-halving-epochs", "2",
            "--validation-every", "1", "--image-size", "64", "48", "--crop-size", "24",
            "--device", "cpu", "--threads", "1"]  # fmt: skip
# evaluate takes the data geometry and device only
EVALUATION_SETTINGS = ["--image-size", "64", "48", "--crop-size", "24", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    assert main(["synthesize", "--out", str(root / "data"), "--n-images", "70", "--image-size", "64", "48", "--seed", "3"]) == 0
    assert main(["index", "--data-dir", str(root / "data"), "--out", str(root / "index.csv")]) == 0
    assert main(["split", "--index", str(root / "index.csv"), "--out", str(root / "split.csv")]) == 0
    return root


def _train(data, out_dir):
    args = ["train", "--index", str(data / "index.csv"), "--split", str(data / "split.csv"), "--fold", "2", "--run", RUN, "--out-dir", str(out_dir)]
    assert main(args + SETTINGS) == 0


def test_training_is_deterministic_and_writes_its_outputs(data):
    _train(data, data / "a")
    _train(data, data / "b")
    for name in ("model.pt", "model_last.pt", "history.csv", "run.json"):
        assert (data / "a" / name).is_file()
    history_a, history_b = pd.read_csv(data / "a" / "history.csv"), pd.read_csv(data / "b" / "history.csv")
    pd.testing.assert_frame_equal(history_a.drop(columns="seconds"), history_b.drop(columns="seconds"))
    assert list(history_a["epoch"]) == [1, 2] and history_a["val_mc_sensitivity"].notna().all()
    a = torch.load(data / "a" / "model_last.pt", weights_only=True)
    b = torch.load(data / "b" / "model_last.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    info = json.loads((data / "a" / "run.json").read_text())
    assert info["run"] == RUN and info["fold"] == 2 and info["settings"]["crop_size"] == 24


def test_evaluation_writes_probabilities_and_metrics(data):
    if not (data / "a" / "model.pt").exists():
        _train(data, data / "a")
    args = ["evaluate", "--index", str(data / "index.csv"), "--split", str(data / "split.csv"), "--fold", "2", "--run", RUN,
            "--model", str(data / "a" / "model.pt"), "--predictions", str(data / "p.csv"), "--metrics", str(data / "m.json")]  # fmt: skip
    assert main(args + EVALUATION_SETTINGS) == 0
    predictions = pd.read_csv(data / "p.csv")
    split = pd.read_csv(data / "split.csv")
    assert set(predictions["image_id"]) == set(split.loc[split["part"] == 0, "image_id"])
    assert list(predictions.columns) == ["image_id", "true_class", "predicted_class", *CLASSES]
    assert predictions[list(CLASSES)].sum(axis=1).sub(1).abs().max() < 1e-4
    assert (predictions["predicted_class"] == predictions[list(CLASSES)].idxmax(axis=1)).all()
    metrics = json.loads((data / "m.json").read_text())
    for key in ("mc_sensitivity", "mc_specificity", "f1", "macro_f1", "accuracy", "per_class_recall", "per_class_auc"):
        assert key in metrics
    # recomputed from the predictions with scikit-learn, not trusted
    assert metrics["mc_sensitivity"] == pytest.approx(balanced_accuracy_score(predictions["true_class"], predictions["predicted_class"]))
    assert metrics["accuracy"] == pytest.approx((predictions["true_class"] == predictions["predicted_class"]).mean())
    assert metrics["n_images"] == len(predictions) and metrics["run"] == RUN



def test_one_evaluation_job_of_several_folds_writes_what_each_fold_alone_writes(data):
    """The workflow's evaluation job of a run: folds 1 and 2 in one process, the same files as one process per fold."""
    _train_fold(data, 1, data / "f1")
    if not (data / "a" / "model.pt").exists():
        _train(data, data / "a")
    common = ["--index", str(data / "index.csv"), "--split", str(data / "split.csv"), "--run", RUN, *EVALUATION_SETTINGS]
    models = {1: data / "f1" / "model.pt", 2: data / "a" / "model.pt"}
    for fold, model in models.items():
        alone = ["evaluate", *common, "--fold", str(fold), "--model", str(model)]
        assert main(alone + ["--predictions", str(data / f"alone{fold}.csv"), "--metrics", str(data / f"alone{fold}.json")]) == 0
    together = ["evaluate", *common, "--fold", "1", "2", "--model", str(models[1]), str(models[2]), "--predictions",
                str(data / "together1.csv"), str(data / "together2.csv"), "--metrics", str(data / "together1.json"), str(data / "together2.json")]  # fmt: skip
    assert main(together) == 0
    for fold in (1, 2):
        assert (data / f"together{fold}.csv").read_bytes() == (data / f"alone{fold}.csv").read_bytes()
        alone, joint = (json.loads((data / f"{kind}{fold}.json").read_text()) for kind in ("alone", "together"))
        assert joint["fold"] == fold and joint["model"] == str(models[fold])
        assert {k: v for k, v in joint.items() if k != "provenance"} == {k: v for k, v in alone.items() if k != "provenance"}
    # the two folds' models differ, so equal files are not one model's predictions twice
    assert (data / "together1.csv").read_bytes() != (data / "together2.csv").read_bytes()


def test_evaluate_needs_one_model_and_two_outputs_per_fold(data, capsys):
    args = ["evaluate", "--index", str(data / "index.csv"), "--split", str(data / "split.csv"), "--run", RUN, "--fold", "1", "2",
            "--model", str(data / "m.pt"), "--predictions", "p1.csv", "p2.csv", "--metrics", "m1.json", "m2.json", *EVALUATION_SETTINGS]  # fmt: skip
    assert main(args) == 2
    assert "one --model, --predictions and --metrics per --fold" in capsys.readouterr().err
    twice = [a if a != "2" else "1" for a in args]
    twice[twice.index("--model") + 1 : twice.index("--predictions")] = ["a.pt", "b.pt"]
    assert main(twice) == 2
    assert "each fold once" in capsys.readouterr().err


def _train_fold(data, fold, out_dir):
    args = ["train", "--index", str(data / "index.csv"), "--split", str(data / "split.csv"), "--fold", str(fold), "--run", RUN, "--out-dir", str(out_dir)]
    assert main(args + SETTINGS) == 0

def test_unknown_run_gives_a_clear_error(data, capsys):
    args = ["train", "--index", str(data / "index.csv"), "--split", str(data / "split.csv"), "--fold", "1",
            "--run", "resnet9000-multi_crop-nc9-mean-none", "--out-dir", str(data / "x")]  # fmt: skip
    assert main(args + SETTINGS) == 2
    assert "resnet9000" in capsys.readouterr().err


def test_a_last_batch_of_one_crop_that_batch_norm_cannot_train_is_refused_before_the_first_step(data, tmp_path, capsys):
    # fold 2 trains on 34 images: batches of 11 leave one image, whose one 32-pixel crop DenseNet121 pools from a 1 x 1 map
    args = ["train", "--index", str(data / "index.csv"), "--split", str(data / "split.csv"), "--fold", "2",
            "--run", "densenet121-multi_crop-nc9-mean-loss_weighting-k1", "--out-dir", str(tmp_path / "run"),
            *SETTINGS, "--batch-size", "11", "--plain-batch-size", "11", "--crop-size", "32"]  # fmt: skip
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "fold 2: an epoch trains on 34 images in batches of 11 (plain_batch_size), so its last batch holds one image" in error
    assert "densenet121 turns one 32-pixel crop into a 1 x 1 feature map" in error and "(e.g. 12)" in error
    assert not any((tmp_path / "run").iterdir())


def test_the_one_crop_batch_check_leaves_the_model_as_it_was():
    from patchlesion.engine.settings import TrainSettings
    from patchlesion.engine.training import check_one_image_batch
    from patchlesion.errors import PatchlesionError
    from patchlesion.method.model import build_model
    from patchlesion.method.runs import RunSpec

    torch.manual_seed(0)
    spec, settings = RunSpec.from_name(RUN), TrainSettings(plain_batch_size=11, crop_size=24)
    model = build_model(spec, len(CLASSES)).train()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    check_one_image_batch(spec, settings, model, 34, fold=2)  # tiny: a 3 x 3 map, the batch of one crop can train
    after = model.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)  # batch norm's running statistics untouched
    with pytest.raises(PatchlesionError, match="1 x 1 feature map"):
        check_one_image_batch(spec, TrainSettings(plain_batch_size=11, crop_size=8), model, 34, fold=2)
    check_one_image_batch(spec, TrainSettings(plain_batch_size=12, crop_size=8), model, 34, fold=2)  # 34 = 2 x 12 + 10
    with pytest.raises(PatchlesionError, match="e.g. 2"):  # a batch of one image: every batch is one crop
        check_one_image_batch(spec, TrainSettings(plain_batch_size=1, crop_size=8), model, 34, fold=2)
