"""Predict the ISIC 2018 Task 3 official test set with every fold model of a run and with their ensemble.

The second evaluation protocol of the workflow: the fold models of Table II's runs on the official
challenge test set, scored as the leaderboard scores (balanced multiclass accuracy, docs/data.md §6).
The scoring and the table live in :mod:`patchlesion.results.leaderboard`; this module only runs the
models and writes their predictions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from patchlesion.errors import PatchlesionError
from patchlesion.method.classes import CLASSES
from patchlesion.provenance import provenance
from patchlesion.results.leaderboard import class_probabilities, score_predictions, submission_frame

__all__ = ["evaluate_official_test"]

#: Probabilities are written with six decimals, and scored as written.
_FLOAT_FORMAT = "%.6f"


def _write_and_reread(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Write a CSV with six-decimal probabilities and read it back, so scores use the written numbers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, float_format=_FLOAT_FORMAT)
    return pd.read_csv(path, dtype={"image_id": str, "image": str})


def evaluate_official_test(
    spec, settings, index: pd.DataFrame, folds: Sequence[int], model_paths: Sequence[str | Path], out_dir: str | Path,
    cache: str | Path | None = None,
) -> dict[str, Any]:
    """Predict every image of an official test set with each fold model and with their ensemble.

    Writes ``fold<k>_predictions.csv`` and ``ensemble_predictions.csv`` (image_id, true_class,
    predicted_class, one probability per class), ``submission.csv`` (the ensemble in the challenge's
    format) and ``metrics.json`` (:func:`patchlesion.results.leaderboard.score_predictions` of each fold and of the ensemble) into
    ``out_dir``; returns the metrics. Images come from the prepared ``cache`` directory when given,
    else are decoded.
    """
    from patchlesion.engine.accel import resolve_device
    from patchlesion.engine.batches import image_source
    from patchlesion.engine.evaluate import predictions_frame
    from patchlesion.engine.inference import load_state, predict_probabilities
    from patchlesion.method.model import build_model

    started = time.perf_counter()
    if len(folds) != len(model_paths) or not folds:
        raise PatchlesionError(f"give one model per fold: {len(folds)} fold(s), {len(model_paths)} model(s).")
    out_dir = Path(out_dir)
    device = resolve_device(settings.device)
    image_ids = index["image_id"].astype(str).tolist()
    true_labels = index["label"].to_numpy()
    images = image_source(index, image_ids, settings.image_size, cache, settings.resize)
    # every model file is checked before anything is written
    models = [load_state(build_model(spec, len(CLASSES)), model_path, spec.name) for model_path in model_paths]
    fold_scores, fold_probabilities = [], []
    for fold, model_path, model in zip(folds, model_paths, models):
        torch.manual_seed(0)
        model = model.to(device)
        probabilities = predict_probabilities(model, images, spec, settings, device)
        written = _write_and_reread(predictions_frame(image_ids, true_labels, probabilities), out_dir / f"fold{fold}_predictions.csv")
        fold_probabilities.append(class_probabilities(written, str(model_path)))
        fold_scores.append({"fold": int(fold), "model": str(model_path), **score_predictions(written)})
    ensemble = np.mean(fold_probabilities, axis=0)
    written = _write_and_reread(predictions_frame(image_ids, true_labels, ensemble), out_dir / "ensemble_predictions.csv")
    submission = _write_and_reread(submission_frame(image_ids, class_probabilities(written, "ensemble")), out_dir / "submission.csv")
    ensemble_score = score_predictions(written)
    if not np.array_equal(submission[list(CLASSES)].to_numpy(), written[list(CLASSES)].to_numpy()):
        raise PatchlesionError(f"{out_dir}/submission.csv does not hold the scored ensemble probabilities.")
    metrics = {"run": spec.name, "n_images": len(image_ids), "folds": fold_scores, "ensemble": {"folds": [int(f) for f in folds], **ensemble_score}}
    training = [Path(path).with_name("run.json") for path in model_paths]  # the training jobs' settings and provenance
    metrics["provenance"] = {
        "training": [str(record) if record.is_file() else None for record in training],
        "settings": settings.to_dict("evaluate"), "wall_seconds": time.perf_counter() - started, **provenance(device),
    }  # fmt: skip
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
