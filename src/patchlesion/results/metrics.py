"""Classification metrics exactly as in the paper and the authors' code (Sec. II-B).

The paper reports three numbers per experiment:

* **MC-Sensitivity** (mean class sensitivity): the mean over classes of the recall
  TP / (TP + FN), i.e. scikit-learn's ``balanced_accuracy_score``.
* **MC-Specificity** (mean class specificity): the mean over the same classes of the one-vs-rest
  specificity TN / (TN + FP), computed from the confusion matrix as in the authors' code
  (TN = sum of the confusion matrix without row c and column c, FP = column c without row c).
* **F1**: scikit-learn's ``f1_score(y_pred, y_true, average="weighted")`` with the arguments
  *swapped*, exactly as the authors' code calls it (see :func:`paper_f1`).

The arithmetic is scikit-learn's (the library the authors' code calls), written here in numpy in the
same order of operations, so the values are the same to the last bit (AUC: the same ROC area, summed
over every threshold instead of scikit-learn's thinned curve, to within 1e-15); importing
scikit-learn's metrics took about 1 s in every training and evaluation job
(docs/performance.md §7). tests/test_properties_metrics.py checks every value against
scikit-learn and against a hand computation on random labels.

Labels are integer class indices into :data:`patchlesion.method.classes.CLASSES` (or into the
``class_names`` given). All values are plain Python floats/ints/lists so the result can be
written with :func:`json.dump` as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from patchlesion.errors import PatchlesionError
from patchlesion.method.classes import CLASSES

__all__ = [
    "classification_metrics",
    "one_vs_rest_specificity",
    "paper_f1",
]


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix over the classes ``0..n_classes-1``: rows = true class, columns = predicted."""
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` as float64, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    denominator = np.asarray(denominator, dtype=np.float64).copy()
    zero = denominator == 0
    denominator[zero] = 1
    result = np.asarray(numerator, dtype=np.float64) / denominator
    result[zero] = 0.0
    return result


def _f_scores(cm: np.ndarray, labels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-class F1 of the classes ``labels`` (rows of ``cm`` = the true side) and their true counts:
    scikit-learn's 2 TP / (true + predicted), 0 where a class is neither true nor predicted."""
    tp = cm.diagonal()[labels]
    true, predicted = cm.sum(axis=1)[labels], cm.sum(axis=0)[labels]
    return _divide(2.0 * tp.astype(np.float64), 1.0 * true.astype(np.float64) + predicted.astype(np.float64)), true


def _binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the boolean ``positive``, by the trapezoidal rule over
    every distinct threshold (scikit-learn's ``roc_auc_score``, ties counted half)."""
    order = np.argsort(scores, kind="mergesort")[::-1]
    scores, positive = scores[order], positive[order].astype(np.float64)
    thresholds = np.r_[np.flatnonzero(np.diff(scores)), positive.size - 1]
    tps = np.cumsum(positive)[thresholds]
    fps = 1 + thresholds - tps
    tpr, fpr = np.r_[0.0, tps / tps[-1]], np.r_[0.0, fps / fps[-1]]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def _as_labels(values: Any, name: str, n_classes: int) -> np.ndarray:
    """Validate integer class indices in ``[0, n_classes)`` and return them as a 1-D int array."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise PatchlesionError(f"{name} must be a 1-D sequence of class indices, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise PatchlesionError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    bad = arr[(arr < 0) | (arr >= n_classes)]
    if bad.size:
        raise PatchlesionError(
            f"{name} holds class index {int(bad[0])}, outside 0..{n_classes - 1} "
            f"(there are {n_classes} classes)"
        )
    return arr


def one_vs_rest_specificity(cm: np.ndarray) -> list[float | None]:
    """Per-class one-vs-rest specificity TN / (TN + FP) from a confusion matrix (rows = true class).

    As in the authors' code: TN = sum of the matrix with row c and column c deleted, FP = column c
    with row c deleted. ``None`` where TN + FP = 0 (every image belongs to class c).
    """
    cm = np.asarray(cm)
    out: list[float | None] = []
    for c in range(cm.shape[0]):
        without_row = np.delete(cm, c, axis=0)
        tn = float(np.delete(without_row, c, axis=1).sum())
        fp = float(without_row[:, c].sum())
        out.append(tn / (tn + fp) if tn + fp > 0 else None)
    return out


def paper_f1(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> float:
    """The paper's F1: ``f1_score(y_pred, y_true, average="weighted")``, arguments swapped.

    The authors' code passes the predictions where scikit-learn expects the ground truth. Per-class
    F1 is symmetric in its two arguments, so the per-class values are the usual ones, but the
    "weighted" average then weights each class by its number of *predicted* images instead of its
    number of true images. A model that predicts the majority class (NV) often therefore scores a
    high F1 even when it misses the rare classes: this is why the unbalanced model of Table V
    ("No Balancing") has the highest F1 (84.7 for InceptionV3) while its MC-Sensitivity is the
    lowest. Classes that are never predicted get weight 0.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.size == 0 or y_true.shape != y_pred.shape:
        raise PatchlesionError(f"paper_f1 needs as many predictions as labels, at least one; got {y_true.size} and {y_pred.size}.")
    n_classes = int(max(np.max(y_true), np.max(y_pred))) + 1
    y_true, y_pred = _as_labels(y_true, "y_true", n_classes), _as_labels(y_pred, "y_pred", n_classes)  # whole numbers >= 0
    swapped = _confusion(y_pred, y_true, n_classes)  # scikit-learn's view: the predictions are "true"
    labels = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    scores, weights = _f_scores(swapped, labels)  # weights: images predicted as each class
    return float(np.average(scores, weights=weights))


def _checked_inputs(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    probabilities: Sequence[Sequence[float]] | np.ndarray | None,
    class_names: Sequence[str],
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray | None]:
    """Class names, true and predicted labels and probabilities of :func:`classification_metrics`, checked."""
    names = [str(n) for n in class_names]
    n_classes = len(names)
    if n_classes < 2:
        raise PatchlesionError(f"need at least two class names, got {names!r}")
    yt = _as_labels(y_true, "y_true", n_classes)
    yp = _as_labels(y_pred, "y_pred", n_classes)
    if yt.shape != yp.shape:
        raise PatchlesionError(f"y_true has {yt.size} labels but y_pred has {yp.size}; they must match")
    if yt.size == 0:
        raise PatchlesionError("cannot compute metrics on zero images (y_true is empty)")

    probs: np.ndarray | None = None
    if probabilities is not None:
        probs = np.asarray(probabilities, dtype=np.float64)
        if probs.shape != (yt.size, n_classes):
            raise PatchlesionError(
                f"probabilities must have shape ({yt.size}, {n_classes}) (images x classes), got {probs.shape}"
            )
        if not np.all(np.isfinite(probs)):
            raise PatchlesionError("probabilities contain NaN or infinite values")

    return names, yt, yp, probs


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    probabilities: Sequence[Sequence[float]] | np.ndarray | None = None,
    class_names: Sequence[str] = CLASSES,
) -> dict[str, Any]:
    """The paper's metrics (Sec. II-B): MC-Sensitivity, MC-Specificity and F1, plus per-class details.

    ``y_true`` and ``y_pred`` are integer class indices into ``class_names``; ``probabilities``
    (optional) is an ``(n_images, n_classes)`` array of class scores used for the per-class AUC.

    Returned keys (all JSON-serialisable):

    * ``mc_sensitivity`` -- mean class sensitivity = ``balanced_accuracy_score``; classes absent
      from ``y_true`` are left out of the mean.
    * ``mc_specificity`` -- mean one-vs-rest specificity over the same classes (the classes present
      in ``y_true``); ``None`` if it is undefined for all of them (a single class in ``y_true``).
    * ``f1`` -- the paper's prediction-weighted F1, ``f1_score(y_pred, y_true, average="weighted")``
      with the arguments swapped as in the authors' code: each class's F1 is weighted by the number
      of images *predicted* as that class. That is why Table V's unbalanced model has F1 84.7 (see
      :func:`paper_f1`).
    * ``macro_f1`` -- ordinary macro F1 (arguments in the normal order) over the classes present
      in ``y_true`` or ``y_pred``.
    * ``accuracy`` -- fraction of correct predictions.
    * ``per_class_recall`` -- ``{class: recall}``, ``None`` for classes absent from ``y_true``.
    * ``per_class_specificity`` -- ``{class: specificity}``, ``None`` for classes absent from
      ``y_true`` (they are not in the MC-Specificity mean) or where TN + FP = 0.
    * ``per_class_auc`` -- ``{class: one-vs-rest ROC AUC}`` from ``probabilities``; ``None`` when no
      probabilities are given, the class is absent from ``y_true`` or it is the only class present.
    * ``confusion_matrix`` -- list of lists, rows = true class, columns = predicted class, all
      classes in ``class_names`` order.
    * ``n_images`` and ``class_names``.
    """
    names, yt, yp, probs = _checked_inputs(y_true, y_pred, probabilities, class_names)
    n_classes = len(names)
    labels = list(range(n_classes))
    present = [c for c in labels if np.any(yt == c)]
    seen = sorted(set(yt.tolist()) | set(yp.tolist()))

    cm = _confusion(yt, yp, n_classes)
    recalls = _divide(cm.diagonal(), cm.sum(axis=1))
    # balanced_accuracy_score: the mean recall of the classes present in y_true, in class order
    mc_sensitivity = float(np.mean(cm.diagonal()[present] / cm.sum(axis=1)[present]))
    macro_f1 = float(np.mean(_f_scores(cm, seen)[0]))
    accuracy = float(np.average(yt == yp))
    f1 = paper_f1(yt, yp)

    specificities = one_vs_rest_specificity(cm)
    per_class_recall: dict[str, float | None] = {}
    per_class_specificity: dict[str, float | None] = {}
    per_class_auc: dict[str, float | None] = {}
    for c, name in enumerate(names):
        is_present = c in present
        per_class_recall[name] = float(recalls[c]) if is_present else None
        per_class_specificity[name] = specificities[c] if is_present else None
        auc: float | None = None
        if probs is not None and is_present and len(present) > 1:
            auc = _binary_auc(yt == c, probs[:, c])
        per_class_auc[name] = auc

    spec_values = [v for v in per_class_specificity.values() if v is not None]
    mc_specificity = float(np.mean(spec_values)) if spec_values else None

    return {
        "mc_sensitivity": mc_sensitivity,
        "mc_specificity": mc_specificity,
        "f1": f1,
        "macro_f1": macro_f1,
        "accuracy": accuracy,
        "per_class_recall": per_class_recall,
        "per_class_specificity": per_class_specificity,
        "per_class_auc": per_class_auc,
        "confusion_matrix": [[int(v) for v in row] for row in cm],
        "n_images": int(yt.size),
        "class_names": names,
    }
