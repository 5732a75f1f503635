"""Test evaluation (Sec. II-B; docs/method.md §7): each fold's model on the held-out test part, its
classes those its training recorded in run.json (HAM10000's for a model without one)."""

from __future__ import annotations

import json
import time
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

__all__ = ["evaluate_run", "predictions_frame"]


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
    started = time.perf_counter()
    device = resolve_device(settings.device)
    torch.manual_seed(0)
    dataset = trained_dataset(model_path)
    names = dataset.classes.names
    model = load_state(build_model(spec, len(names)), model_path, spec.name).to(device)
    test_ids = select(split, fold, "test")
    images = image_source(index, test_ids, settings.image_size, cache)
    true_labels = pd.Series(dataset.labels(index), index=index["image_id"].astype(str)).loc[test_ids].to_numpy()
    probabilities = predict_probabilities(model, images, spec, settings, device)
    predictions = predictions_frame(test_ids, true_labels, probabilities, names)
    Path(predictions_path).parent.mkdir(parents=True, exist_ok=True)
    predictions.to_csv(predictions_path, index=False, float_format="%.6f")
    metrics = classification_metrics(true_labels, probabilities.argmax(axis=1), probabilities, class_names=names)
    metrics = {"run": spec.name, "fold": fold, "part": "test", "model": str(model_path), **metrics}
    training_record = Path(model_path).with_name("run.json")  # the training job's settings and provenance
    metrics["provenance"] = {
        "training": str(training_record) if training_record.is_file() else None,
        "settings": settings.to_dict("evaluate"), "wall_seconds": time.perf_counter() - started, **provenance(device),
    }  # fmt: skip
    Path(metrics_path).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
