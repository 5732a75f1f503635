"""The ISIC 2018 Task 3 official test set, scored like the leaderboard, and its table.

The paper reports each fold model on a held-out part of HAM10000 (Sec. II-A) and explains that it
does not use the ISIC 2018 challenge test set because its ground truth was not public then. It is
now (1,511 images on the HAM10000 Dataverse record), so the workflow also predicts it with every
fold model of every Table II run and with their ensemble
(:func:`patchlesion.engine.official_test.evaluate_official_test`), and scores both as the challenge
did: **balanced multiclass accuracy**, the aggregate of ``isic-challenge-scoring classification``
(docs/data.md §6), reproduced exactly by :func:`balanced_multiclass_accuracy`:

* each image's label is the argmax of its probabilities; an image whose maximum is tied between two
  or more classes is "undecided" and counts as wrong;
* image ``ISIC_0035068`` has weight 0 (hard-coded in the scorer), every other image weight 1;
* the score is the mean over classes of (weighted correct images of the class) / (weighted images of
  the class); a class without (weighted) images is left out of the mean.

Probabilities are scored as written to the CSV files (six decimals), so the submission file
(``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC``, :func:`submission_frame`) gives the same number with
``isic-challenge-scoring``. :func:`summarise_official` and :func:`write_official_table` make the
table of all runs (rendered by :mod:`patchlesion.results.render`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from patchlesion.errors import PatchlesionError
from patchlesion.method.classes import CLASSES
from patchlesion.results.render import LATEX, MARKDOWN, Column, MeanStd, Table, Text, render
from patchlesion.results.tables import PAPER_BACKBONE_NAMES, read_metrics

__all__ = [
    "UNDECIDED",
    "ZERO_WEIGHT_IMAGES",
    "balanced_multiclass_accuracy",
    "challenge_labels",
    "class_probabilities",
    "official_table",
    "score_predictions",
    "score_weights",
    "submission_frame",
    "summarise_official",
    "summarise_official_runs",
    "write_official_table",
]

#: Images the ISIC scorer gives weight 0 (``isic_challenge_scoring``: ISIC_0035068).
ZERO_WEIGHT_IMAGES: frozenset[str] = frozenset({"ISIC_0035068"})
#: Label of an image whose highest probability is shared by several classes (always wrong).
UNDECIDED = -1


def challenge_labels(probabilities) -> np.ndarray:
    """Argmax of each row; :data:`UNDECIDED` where the maximum is tied (the scorer's ``undecided``)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] < 2:
        raise PatchlesionError(f"probabilities must be an (images x classes) array, got shape {probabilities.shape}")
    labels = probabilities.argmax(axis=1)
    tied = (probabilities == probabilities.max(axis=1, keepdims=True)).sum(axis=1) > 1
    labels[tied] = UNDECIDED
    return labels


def score_weights(image_ids: Sequence[str]) -> np.ndarray:
    """The scorer's weight of each image: 0 for :data:`ZERO_WEIGHT_IMAGES`, else 1."""
    return np.array([0.0 if str(i) in ZERO_WEIGHT_IMAGES else 1.0 for i in image_ids])


def balanced_multiclass_accuracy(true_labels, probabilities, image_ids: Sequence[str] | None = None, weights=None) -> float:
    """Balanced multiclass accuracy of the ISIC 2018 Task 3 leaderboard (mean per-class recall with
    ties counted wrong and ISIC_0035068 weighted 0); NaN if no class has a weighted image.

    ``true_labels`` are class indices, ``probabilities`` an (images x classes) array; ``weights``
    (default: :func:`score_weights` of ``image_ids``, or all 1 without ids) weigh each image.
    """
    true_labels = np.asarray(true_labels, dtype=int)
    predicted = challenge_labels(probabilities)
    if true_labels.shape != predicted.shape:
        raise PatchlesionError(f"{true_labels.size} true labels but {predicted.size} rows of probabilities")
    if weights is None:
        weights = score_weights(image_ids) if image_ids is not None else np.ones(true_labels.size)
    weights = np.asarray(weights, dtype=np.float64)
    recalls = []
    for c in range(np.asarray(probabilities).shape[1]):
        of_class = true_labels == c
        total = weights[of_class].sum()
        if total > 0:
            recalls.append(weights[of_class & (predicted == c)].sum() / total)
    return float(np.mean(recalls)) if recalls else math.nan


def class_probabilities(frame: pd.DataFrame, where: str) -> np.ndarray:
    """The (images x classes) probability columns of a predictions frame, in :data:`CLASSES` order."""
    missing = [c for c in CLASSES if c not in frame.columns]
    if missing:
        raise PatchlesionError(f"{where}: no probability column(s) {', '.join(missing)}.")
    return frame[list(CLASSES)].to_numpy(dtype=np.float64)


def score_predictions(frame: pd.DataFrame, where: str = "predictions") -> dict[str, Any]:
    """Leaderboard score of a predictions frame (image_id, true_class, one probability column per class)."""
    probabilities = class_probabilities(frame, where)
    unknown = sorted(set(frame["true_class"]) - set(CLASSES))
    if unknown:
        raise PatchlesionError(f"{where}: unknown true class(es) {', '.join(map(str, unknown))}.")
    truth = frame["true_class"].map(CLASSES.index).to_numpy()
    ids = frame["image_id"].astype(str).tolist()
    predicted = challenge_labels(probabilities)
    weights = score_weights(ids)
    return {
        "balanced_multiclass_accuracy": balanced_multiclass_accuracy(truth, probabilities, weights=weights),
        "accuracy": float((weights * (predicted == truth)).sum() / weights.sum()) if weights.sum() else math.nan,
        "n_images": len(frame),
        "n_scored": int((weights > 0).sum()),
        "n_undecided": int((predicted == UNDECIDED).sum()),
    }


def submission_frame(image_ids: Sequence[str], probabilities) -> pd.DataFrame:
    """The ISIC 2018 Task 3 submission format: ``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC``."""
    frame = pd.DataFrame({"image": list(image_ids)})
    for i, name in enumerate(CLASSES):
        frame[name] = np.asarray(probabilities)[:, i]
    return frame


def summarise_official(
    results: Iterable[Mapping[str, Any]],
    labels: Mapping[str, str] | None = None,
    heldout: Iterable[Mapping[str, Any]] = (),
) -> pd.DataFrame:
    """One row per run: backbone, row label, folds, fold-model BMA mean and population std (ddof = 0),
    ensemble BMA (percent), images scored and undecided ensemble predictions; with ``heldout`` (the
    runs' test-part metrics.json of :func:`patchlesion.engine.evaluate.evaluate_run`) also the fold models'
    MC-sensitivity on the held-out test part (Table II's protocol) for comparison."""
    from patchlesion.method.runs import RunSpec

    labels = dict(labels or {})
    heldout_by_run: dict[str, list[float]] = {}
    for metrics in heldout:
        heldout_by_run.setdefault(RunSpec.from_name(metrics["run"]).name, []).append(100.0 * float(metrics["mc_sensitivity"]))
    rows = []
    for result in results:
        spec = RunSpec.from_name(result["run"])
        scores = 100.0 * np.array([f["balanced_multiclass_accuracy"] for f in result["folds"]], dtype=float)
        rows.append(
            {
                "backbone": spec.backbone,
                "row": labels.get(spec.name, spec.name),
                "run": spec.name,
                "n_folds": len(scores),
                "bma_folds": float(np.mean(scores)),
                "bma_folds_std": float(np.std(scores, ddof=0)) if len(scores) > 1 else math.nan,
                "bma_ensemble": 100.0 * float(result["ensemble"]["balanced_multiclass_accuracy"]),
                "heldout_mc_sensitivity": float(np.mean(heldout_by_run[spec.name])) if spec.name in heldout_by_run else math.nan,
                "n_scored": int(result["ensemble"]["n_scored"]),
                "n_undecided": int(result["ensemble"]["n_undecided"]),
            }
        )
    return pd.DataFrame(rows)


_NOTE = (
    "Balanced multiclass accuracy (BMA, %) as on the ISIC 2018 Task 3 leaderboard: mean per-class recall, "
    "argmax labels, a tied maximum counts as wrong, ISIC_0035068 has weight 0. Folds: mean ± population "
    "standard deviation (ddof = 0) over the fold models; ensemble: the mean of the fold models' class "
    "probabilities, scored once (submission.csv, ready for isic-challenge-scoring). Held-out test part: "
    "the same fold models' mean MC-Sensitivity on the training dataset's held-out test part (Table II), "
    "the same statistic without ties or weights. The paper does not report this test set."
)

#: The official table marks a missing number with an em dash in both formats (``---`` in LaTeX).
_EM_DASH = "—"


def summarise_official_runs(
    metrics_paths: Iterable[str | Path],
    labels: Mapping[str, str] | None = None,
    heldout_paths: Iterable[str | Path] = (),
) -> pd.DataFrame:
    """:func:`summarise_official` of the runs' official-test metrics.json files (and their held-out test-part ones)."""
    heldout = [metrics for _, metrics in read_metrics(heldout_paths)]
    return summarise_official([metrics for _, metrics in read_metrics(metrics_paths, "official-test")], labels, heldout)


def official_table(table: pd.DataFrame, title: str) -> Table:
    """The layout of :func:`summarise_official`: Backbone, Row, BMA of the fold models (mean ± std), BMA of
    their ensemble, the held-out test part's MC-Sensitivity; Markdown also gives the folds and images."""
    columns = [
        Column("Backbone", align="l"),
        Column("Row", align="l"),
        Column("BMA folds"),
        Column("BMA ensemble"),
        Column("held-out test part", flat_heading="held-out test part MC-Sens."),
        Column("folds", latex=False),
        Column("images", latex=False),
    ]
    rows = [
        [
            Text(PAPER_BACKBONE_NAMES.get(rec["backbone"], rec["backbone"])),
            Text(rec["row"]),
            MeanStd(rec["bma_folds"], rec["bma_folds_std"], missing=_EM_DASH),
            MeanStd(rec["bma_ensemble"], missing=_EM_DASH),
            MeanStd(rec.get("heldout_mc_sensitivity", math.nan), missing=_EM_DASH),
            Text(rec["n_folds"]),
            Text(rec["n_scored"]),
        ]
        for rec in table.to_dict("records")
    ]
    return Table(title, columns, rows, notes=[_NOTE], grouped=1)


def write_official_table(table: pd.DataFrame, csv_path, md_path, tex_path, title: str) -> None:
    """Write the official-test-set table as CSV (two decimals), Markdown and LaTeX."""
    for path in (csv_path, md_path, tex_path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.round(2).to_csv(csv_path, index=False)
    layout = official_table(table, title)
    Path(md_path).write_text(render(layout, MARKDOWN), encoding="utf-8")
    Path(tex_path).write_text(render(layout, LATEX), encoding="utf-8")
