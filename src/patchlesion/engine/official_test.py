"""The ISIC 2018 Task 3 official test set as a second evaluation protocol, scored like the leaderboard.

The paper reports each fold model on a held-out part of HAM10000 (Sec. II-A) and explains that it
does not use the ISIC 2018 challenge test set because its ground truth was not public then. It is
now (1,511 images on the HAM10000 Dataverse record), so the workflow also predicts it with every
fold model of every Table II run and with their ensemble (the mean of the fold models' class
probabilities), and scores both as the challenge did: **balanced multiclass accuracy**, the
aggregate of ``isic-challenge-scoring classification`` (DATA_SOURCES §6), reproduced exactly by
:func:`balanced_multiclass_accuracy`:

* each image's label is the argmax of its probabilities; an image whose maximum is tied between two
  or more classes is "undecided" and counts as wrong;
* image ``ISIC_0035068`` has weight 0 (hard-coded in the scorer), every other image weight 1;
* the score is the mean over classes of (weighted correct images of the class) / (weighted images of
  the class); a class without (weighted) images is left out of the mean.

Probabilities are scored as written to the CSV files (six decimals), so the submission file
(``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC``) gives the same number with ``isic-challenge-scoring``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from patchlesion.errors import PatchlesionError
from patchlesion.method.classes import CLASSES

__all__ = [
    "UNDECIDED",
    "ZERO_WEIGHT_IMAGES",
    "balanced_multiclass_accuracy",
    "challenge_labels",
    "evaluate_official_test",
    "render_markdown",
    "score_predictions",
    "submission_frame",
    "summarise_official",
    "write_official_table",
]

#: Images the ISIC scorer gives weight 0 (``isic_challenge_scoring``: ISIC_0035068).
ZERO_WEIGHT_IMAGES: frozenset[str] = frozenset({"ISIC_0035068"})
#: Label of an image whose highest probability is shared by several classes (always wrong).
UNDECIDED = -1
_FLOAT_FORMAT = "%.6f"


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


def _probabilities(frame: pd.DataFrame, where: str) -> np.ndarray:
    missing = [c for c in CLASSES if c not in frame.columns]
    if missing:
        raise PatchlesionError(f"{where}: no probability column(s) {', '.join(missing)}.")
    return frame[list(CLASSES)].to_numpy(dtype=np.float64)


def score_predictions(frame: pd.DataFrame, where: str = "predictions") -> dict[str, Any]:
    """Leaderboard score of a predictions frame (image_id, true_class, one probability column per class)."""
    probabilities = _probabilities(frame, where)
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
    format) and ``metrics.json`` (:func:`score_predictions` of each fold and of the ensemble) into
    ``out_dir``; returns the metrics. Images come from the prepared ``cache`` directory when given,
    else are decoded.
    """
    from patchlesion.engine.accel import resolve_device
    from patchlesion.engine.batches import image_source
    from patchlesion.engine.evaluate import predictions_frame
    from patchlesion.engine.inference import load_state, predict_probabilities
    from patchlesion.method.model import build_model

    if len(folds) != len(model_paths) or not folds:
        raise PatchlesionError(f"give one model per fold: {len(folds)} fold(s), {len(model_paths)} model(s).")
    out_dir = Path(out_dir)
    device = resolve_device(settings.device)
    image_ids = index["image_id"].astype(str).tolist()
    true_labels = index["label"].to_numpy()
    images = image_source(index, image_ids, settings.image_size, cache)
    fold_scores, fold_probabilities = [], []
    for fold, model_path in zip(folds, model_paths):
        torch.manual_seed(0)
        model = load_state(build_model(spec, len(CLASSES)), model_path).to(device)
        probabilities = predict_probabilities(model, images, spec, settings, device)
        written = _write_and_reread(predictions_frame(image_ids, true_labels, probabilities), out_dir / f"fold{fold}_predictions.csv")
        fold_probabilities.append(_probabilities(written, str(model_path)))
        fold_scores.append({"fold": int(fold), "model": str(model_path), **score_predictions(written)})
    ensemble = np.mean(fold_probabilities, axis=0)
    written = _write_and_reread(predictions_frame(image_ids, true_labels, ensemble), out_dir / "ensemble_predictions.csv")
    submission = _write_and_reread(submission_frame(image_ids, _probabilities(written, "ensemble")), out_dir / "submission.csv")
    ensemble_score = score_predictions(written)
    if not np.array_equal(submission[list(CLASSES)].to_numpy(), written[list(CLASSES)].to_numpy()):
        raise PatchlesionError(f"{out_dir}/submission.csv does not hold the scored ensemble probabilities.")
    metrics = {"run": spec.name, "n_images": len(image_ids), "folds": fold_scores, "ensemble": {"folds": [int(f) for f in folds], **ensemble_score}}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


# --- the table ------------------------------------------------------------------------------------


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


def _cell(mean: float, std: float = math.nan, pm: str = "±") -> str:
    if mean is None or math.isnan(mean):
        return "—"
    return f"{mean:.1f}" if std is None or math.isnan(std) else f"{mean:.1f} {pm} {std:.1f}"


_NOTE = (
    "Balanced multiclass accuracy (BMA, %) as on the ISIC 2018 Task 3 leaderboard: mean per-class recall, "
    "argmax labels, a tied maximum counts as wrong, ISIC_0035068 has weight 0. Folds: mean ± population "
    "standard deviation (ddof = 0) over the fold models; ensemble: the mean of the fold models' class "
    "probabilities, scored once (submission.csv, ready for isic-challenge-scoring). Held-out test part: "
    "the same fold models' mean MC-Sensitivity on the training dataset's held-out test part (Table II), "
    "the same statistic without ties or weights. The paper does not report this test set."
)


def render_markdown(table: pd.DataFrame, title: str) -> str:
    """Markdown: Backbone, Row, BMA of the fold models (mean ± std), BMA of their ensemble."""
    from patchlesion.results.tables import PAPER_BACKBONE_NAMES

    lines = [f"## {title}", "", "| Backbone | Row | BMA folds | BMA ensemble | held-out test part MC-Sens. | folds | images |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for rec in table.to_dict("records"):
        backbone = PAPER_BACKBONE_NAMES.get(rec["backbone"], rec["backbone"])
        lines.append(
            f"| {backbone} | {str(rec['row']).replace('|', chr(92) + '|')} | {_cell(rec['bma_folds'], rec['bma_folds_std'])} | "
            f"{_cell(rec['bma_ensemble'])} | {_cell(rec.get('heldout_mc_sensitivity', math.nan))} | {rec['n_folds']} | {rec['n_scored']} |"
        )
    return "\n".join(lines + ["", _NOTE, ""])


def render_latex(table: pd.DataFrame, title: str) -> str:
    """A booktabs LaTeX version of :func:`render_markdown`."""
    from patchlesion.results.tables import PAPER_BACKBONE_NAMES, _latex_escape

    lines = ["\\begin{table}", "\\centering", f"\\caption{{{_latex_escape(title)}}}", "\\begin{tabular}{llrrr}", "\\toprule",
             "Backbone & Row & BMA folds & BMA ensemble & held-out test part \\\\", "\\midrule"]  # fmt: skip
    previous = None
    for rec in table.to_dict("records"):
        backbone = PAPER_BACKBONE_NAMES.get(rec["backbone"], rec["backbone"])
        if previous is not None and backbone != previous:
            lines.append("\\midrule")
        cells = [_latex_escape(backbone) if backbone != previous else "", _latex_escape(rec["row"]),
                 _latex_escape(_cell(rec["bma_folds"], rec["bma_folds_std"])), _latex_escape(_cell(rec["bma_ensemble"])),
                 _latex_escape(_cell(rec.get("heldout_mc_sensitivity", math.nan)))]  # fmt: skip
        lines.append(" & ".join(cells) + " \\\\")
        previous = backbone
    lines += ["\\bottomrule", "\\end{tabular}", "\\par\\smallskip", f"{{\\footnotesize {_latex_escape(_NOTE)}\\par}}", "\\end{table}", ""]
    return "\n".join(lines)


def write_official_table(table: pd.DataFrame, csv_path, md_path, tex_path, title: str) -> None:
    """Write the official-test-set table as CSV (two decimals), Markdown and LaTeX."""
    for path in (csv_path, md_path, tex_path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.round(2).to_csv(csv_path, index=False)
    Path(md_path).write_text(render_markdown(table, title), encoding="utf-8")
    Path(tex_path).write_text(render_latex(table, title), encoding="utf-8")
