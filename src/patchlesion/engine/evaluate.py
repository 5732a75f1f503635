"""Test evaluation (Sec. II-B; docs/method.md §7): each fold's model on the held-out test part, its
classes those its training recorded in run.json (HAM10000's for a model without one); the workflow
evaluates every fold of a run in one job (:func:`evaluate_folds`)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from patchlesion.data.splits import select
from patchlesion.engine.accel import resolve_device
from patchlesion.engine.batches import image_source
from patchlesion.engine.inference import load_state, predict_probabilities, trained_dataset
from patchlesion.engine.settings import TrainSettings
from patchlesion.method.classes import CLASSES
from patchlesion.method.model import build_model
from patchlesion.method.runs import RunSpec
from patchlesion.provenance import provenance
from patchlesion.results.metrics import classification_metrics

__all__ = ["FoldOutputs", "evaluate_folds", "evaluate_run", "predictions_frame"]


def predictions_frame(image_ids: list[str], true_labels, probabilities, class_names=CLASSES) -> pd.DataFrame:
    """One row per image: image_id, true_class, predicted_class and one probability column per class."""
    frame = pd.DataFrame({"image_id": image_ids})
    frame["true_class"] = [class_names[i] for i in true_labels]
    frame["predicted_class"] = [class_names[i] for i in probabilities.argmax(axis=1)]
    for i, name in enumerate(class_names):
        frame[name] = probabilities[:, i]
    return frame


def evaluate_run(
    spec: RunSpec,
    settings: TrainSettings,
    index: pd.DataFrame,
    split: pd.DataFrame,
    fold: int,
    model_path: str | Path,
    predictions_path: str | Path,
    metrics_path: str | Path,
    cache: str | Path | None = None,
) -> dict:
    """Predict the test part with one fold's model; write predictions.csv and metrics.json (images
    from the prepared ``cache`` directory when given, else decoded). The classes are those of the
    model's training (:func:`trained_dataset`)."""
    return evaluate_folds(spec, settings, index, split, [FoldOutputs(fold, model_path, predictions_path, metrics_path)], cache)[0]


@dataclass(frozen=True)
class FoldOutputs:
    """One fold's model and the two files its evaluation writes."""

    fold: int
    model: str | Path
    predictions: str | Path
    metrics: str | Path


def evaluate_folds(
    spec: RunSpec,
    settings: TrainSettings,
    index: pd.DataFrame,
    split: pd.DataFrame,
    folds: Sequence[FoldOutputs],
    cache: str | Path | None = None,
) -> list[dict]:
    """:func:`evaluate_run` for several folds of one run, one after the other in this process (the
    workflow's evaluation job of a run): the test images are read once for all folds that share the
    test part, and the process starts once. Each fold's outputs are exactly those of its own
    :func:`evaluate_run`. Returns the folds' metrics in order."""
    device = resolve_device(settings.device)
    images = {}  # test image ids -> their images, shared by the folds with the same test part
    return [_evaluate_fold(spec, settings, index, split, outputs, cache, device, images) for outputs in folds]


def _evaluate_fold(spec, settings, index, split, outputs: FoldOutputs, cache, device, images: dict) -> dict:
    started = time.perf_counter()
    torch.manual_seed(0)
    dataset = trained_dataset(outputs.model)
    names = dataset.classes.names
    model = load_state(build_model(spec, len(names)), outputs.model, spec.name).to(device)
    test_ids = select(split, outputs.fold, "test")
    if tuple(test_ids) not in images:
        images[tuple(test_ids)] = image_source(index, test_ids, settings.image_size, cache, settings.resize)
    true_labels = pd.Series(dataset.labels(index), index=index["image_id"].astype(str)).loc[test_ids].to_numpy()
    probabilities = predict_probabilities(model, images[tuple(test_ids)], spec, settings, device)
    predictions = predictions_frame(test_ids, true_labels, probabilities, names)
    Path(outputs.predictions).parent.mkdir(parents=True, exist_ok=True)
    predictions.to_csv(outputs.predictions, index=False, float_format="%.6f")
    metrics = classification_metrics(true_labels, probabilities.argmax(axis=1), probabilities, class_names=names)
    metrics = {"run": spec.name, "fold": outputs.fold, "part": "test", "model": str(outputs.model), **metrics}
    training_record = Path(outputs.model).with_name("run.json")  # the training job's settings and provenance
    metrics["provenance"] = {
        "training": str(training_record) if training_record.is_file() else None,
        "settings": settings.to_dict("evaluate"), "wall_seconds": time.perf_counter() - started, **provenance(device),
    }  # fmt: skip
    Path(outputs.metrics).parent.mkdir(parents=True, exist_ok=True)
    Path(outputs.metrics).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
