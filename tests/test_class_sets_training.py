"""One tiny training and evaluation run (CPU, 1 epoch, a handful of PNG images) on a 3-class and a
9-class dataset without lesion groups or diagnosis types (issue 15): the model has one output per
class, run.json records the classes, and evaluation, predictions and ``predict`` read them from there."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from patchlesion.data.description import DatasetDescription
from patchlesion.data.splits import stratified_split
from patchlesion.engine.evaluate import evaluate_run
from patchlesion.engine.predict import predict_images
from patchlesion.engine.settings import TrainSettings
from patchlesion.engine.training import train_run
from patchlesion.errors import PatchlesionError
from patchlesion.method.classes import ClassSet
from patchlesion.method.runs import RunSpec
from patchlesion.results.metrics import classification_metrics

RUN = RunSpec("tiny", "multi_crop", 4, "mean", "loss_weighting")
SETTINGS = TrainSettings(epochs=1, batch_size=8, learning_rate=1e-2, lr_halving_epochs=(), validation_every=1,
                         image_size=(40, 32), crop_size=16, device="cpu", seed=0)  # fmt: skip


def _folder_dataset(root, names: tuple[str, ...], per_class: int) -> tuple[DatasetDescription, pd.DataFrame]:
    """``per_class`` PNG images per class, each class a colour of its own, in nested folders."""
    description = DatasetDescription(
        f"plain{len(names)}", ClassSet(names, benign=names[1:2]), label_column="diagnosis", group_column=None, diagnosis_type_column=None
    )  # fmt: skip
    rng = np.random.default_rng(len(names))
    rows = []
    for c, name in enumerate(names):
        folder = root / name / "sub"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 40, (32, 40, 3)) + np.array([(37 * c) % 200, (91 * c) % 200, (53 * c) % 200])
            path = folder / f"{name}_{i}.png"
            Image.fromarray(pixels.astype(np.uint8)).save(path)
            rows.append({"image_id": f"{name}_{i}", "diagnosis": name, "path": str(path), "width": 40, "height": 32})
    return description, pd.DataFrame(rows)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("names", [("cat", "dog", "owl"), tuple(f"C{i}" for i in range(9))])
def test_train_and_evaluate_any_class_count(tmp_path, names):
    description, index = _folder_dataset(tmp_path / "images", names, per_class=4)
    split = stratified_split(index, description=description)
    out = tmp_path / "run"
    train_run(RUN, SETTINGS, index, split, 1, out, dataset=description)
    assert torch.load(out / "model.pt", weights_only=True)["head.classifier.weight"].shape[0] == len(names)
    record = json.loads((out / "run.json").read_text())
    assert record["dataset"]["classes"] == list(names) and record["dataset"]["diagnosis_type_column"] is None

    metrics = evaluate_run(RUN, SETTINGS, index, split, 1, out / "model.pt", out / "p.csv", out / "m.json")
    predictions = pd.read_csv(out / "p.csv")
    assert list(predictions.columns) == ["image_id", "true_class", "predicted_class", *names]
    assert metrics["class_names"] == list(names) and len(metrics["confusion_matrix"]) == len(names)
    # every test image once, its true class from the dataset's label column (each class has one of its 4 in each part)
    assert sorted(predictions["true_class"]) == sorted(names)
    assert predictions["true_class"].tolist() == index.set_index("image_id").loc[predictions["image_id"], "diagnosis"].tolist()
    # the written metrics are those of the written predictions (6-decimal rounding cannot move an argmax here)
    again = classification_metrics(
        predictions["true_class"].map(names.index), predictions["predicted_class"].map(names.index), class_names=names
    )
    assert again["confusion_matrix"] == metrics["confusion_matrix"]

    frame = predict_images(None, out / "model.pt", [index["path"].iloc[0]])
    assert list(frame.columns) == ["image", "predicted_class", *names]
    assert frame.loc[0, list(names)].sum() == pytest.approx(1.0)


def test_diagnosis_weighting_without_diagnosis_types_is_refused_before_anything_is_written(tmp_path):
    description, index = _folder_dataset(tmp_path / "images", ("cat", "dog", "owl"), per_class=4)
    split = stratified_split(index, description=description)
    with pytest.raises(PatchlesionError, match="dataset plain3 has no diagnosis types"):
        train_run(RUN.__class__("tiny", "multi_crop", 4, "mean", "diagnosis_weighting"), SETTINGS, index, split, 1, tmp_path / "run", dataset=description)
    assert not (tmp_path / "run").exists()


def test_cli_trains_splits_and_refuses_with_a_description_file(tmp_path, capsys):
    from patchlesion.cli import main

    description, index = _folder_dataset(tmp_path / "images", ("cat", "dog", "owl"), per_class=4)
    (tmp_path / "plain3.json").write_text(json.dumps(description.to_dict()))
    index.to_csv(tmp_path / "index.csv", index=False)
    common = ["--index", str(tmp_path / "index.csv"), "--dataset", str(tmp_path / "plain3.json")]
    assert main(["split", *common, "--out", str(tmp_path / "split.csv")]) == 0
    fold = [*common, "--split", str(tmp_path / "split.csv"), "--fold", "1", "--out-dir", str(tmp_path / "run")]
    capsys.readouterr()
    for run, expected in [
        ("tiny-multi_crop-nc4-mean-diagnosis_weighting-k1-scope_benign", "dataset plain3 has no diagnosis types"),
        ("tiny-multi_crop-nc4-mean-loss_weighting-k1", "unknown dataset 'isic2019'; choose one of ham10000, derm7pt, synthetic"),
    ]:
        args = ["train", *fold, "--run", run, "--device", "cpu"] + (["--dataset", "isic2019"] if "isic" in expected else [])
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("patchlesion train: error: ") and expected in err[0], err
    assert not (tmp_path / "run").exists()
    assert pd.read_csv(tmp_path / "split.csv")["part"].value_counts().sort_index().tolist() == [3, 3, 3, 3]
