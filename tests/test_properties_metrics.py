"""Property tests of the paper's metrics (src/patchlesion/results/metrics.py, docs/method.md §7) on
random labels and scores, each against scikit-learn and against a computation written here from the
definitions: MC-sensitivity (= balanced accuracy), per-class sensitivity and one-vs-rest specificity,
AUC (Mann-Whitney), and the paper's F1 (sklearn's weighted F1 with its arguments swapped, i.e. each
class's F1 weighted by how many images were *predicted* as that class)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, recall_score, roc_auc_score

from patchlesion.errors import PatchlesionError
from patchlesion.results.metrics import classification_metrics

#: Scores from a small set, so that ties (which AUC counts as one half) are common.
SCORES = st.one_of(st.sampled_from((0.0, 0.25, 0.5, 1.0)), st.floats(0, 1, allow_nan=False))


@st.composite
def predictions(draw) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    n_classes = draw(st.integers(2, 7))
    n = draw(st.integers(1, 40))
    y_true = np.array(draw(st.lists(st.integers(0, n_classes - 1), min_size=n, max_size=n)))
    scores = np.array(draw(st.lists(st.lists(SCORES, min_size=n_classes, max_size=n_classes), min_size=n, max_size=n)))
    if draw(st.booleans()):
        y_pred = scores.argmax(axis=1)  # as evaluation does
    else:
        y_pred = np.array(draw(st.lists(st.integers(0, n_classes - 1), min_size=n, max_size=n)))
    return [f"C{i}" for i in range(n_classes)], y_true, y_pred, scores


def _by_hand(names, y_true, y_pred, scores) -> dict:
    """The definitions of docs/method.md §7, from the confusion matrix counted here."""
    k, n = len(names), len(y_true)
    cm = np.zeros((k, k), dtype=int)
    for t, p in zip(y_true, y_pred):
        cm[t, p] += 1
    true_count, predicted_count, hits = cm.sum(axis=1), cm.sum(axis=0), np.diag(cm)
    present = [c for c in range(k) if true_count[c] > 0]
    recall = {c: hits[c] / true_count[c] for c in present}
    specificity = {}
    for c in present:
        negatives = n - true_count[c]  # TN + FP: every image of another class
        if negatives:
            specificity[c] = (negatives - (predicted_count[c] - hits[c])) / negatives
    f1 = [2 * hits[c] / (true_count[c] + predicted_count[c]) if true_count[c] + predicted_count[c] else 0.0 for c in range(k)]
    seen = [c for c in range(k) if true_count[c] or predicted_count[c]]
    auc = {}
    for c in present:
        if len(present) > 1:
            positive, negative = scores[y_true == c, c], scores[y_true != c, c]
            wins = (positive[:, None] > negative[None, :]).sum() + 0.5 * (positive[:, None] == negative[None, :]).sum()
            auc[c] = wins / (len(positive) * len(negative))
    return {
        "cm": cm,
        "mc_sensitivity": np.mean(list(recall.values())),
        "recall": recall,
        "specificity": specificity,
        "mc_specificity": np.mean(list(specificity.values())) if specificity else None,
        "paper_f1": sum(predicted_count[c] / n * f1[c] for c in range(k)),
        "macro_f1": np.mean([f1[c] for c in seen]),
        "accuracy": hits.sum() / n,
        "auc": auc,
    }


@settings(max_examples=60)
@given(case=predictions())
def test_metrics_equal_the_definitions_and_scikit_learn(case):
    names, y_true, y_pred, scores = case
    metrics = classification_metrics(y_true, y_pred, scores, class_names=names)
    hand = _by_hand(names, y_true, y_pred, scores)
    labels = list(range(len(names)))

    assert metrics["confusion_matrix"] == hand["cm"].tolist() == confusion_matrix(y_true, y_pred, labels=labels).tolist()
    with warnings.catch_warnings():  # scikit-learn warns about classes absent from one side, by design
        warnings.simplefilter("ignore")
        balanced = balanced_accuracy_score(y_true, y_pred)
        recalls = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
        swapped = f1_score(y_pred, y_true, average="weighted", zero_division=0)
    assert metrics["mc_sensitivity"] == pytest.approx(hand["mc_sensitivity"], abs=1e-12) and metrics["mc_sensitivity"] == balanced  # to the bit
    for c, name in enumerate(names):
        assert metrics["per_class_recall"][name] == (pytest.approx(hand["recall"][c]) if c in hand["recall"] else None)
        if c in hand["recall"]:
            assert metrics["per_class_recall"][name] == recalls[c]
        assert metrics["per_class_specificity"][name] == (pytest.approx(hand["specificity"][c]) if c in hand["specificity"] else None)
        assert metrics["per_class_auc"][name] == (pytest.approx(hand["auc"][c]) if c in hand["auc"] else None)
        if c in hand["auc"]:
            assert metrics["per_class_auc"][name] == pytest.approx(roc_auc_score(y_true == c, scores[:, c]), abs=1e-15)
    if hand["mc_specificity"] is None:
        assert metrics["mc_specificity"] is None
    else:
        assert metrics["mc_specificity"] == pytest.approx(hand["mc_specificity"])
    assert metrics["f1"] == pytest.approx(hand["paper_f1"], abs=1e-12) and metrics["f1"] == swapped
    assert metrics["macro_f1"] == pytest.approx(hand["macro_f1"])
    assert metrics["accuracy"] == pytest.approx(hand["accuracy"])
    assert metrics["n_images"] == len(y_true) and metrics["class_names"] == names


@settings(max_examples=60)
@given(
    y_true=st.lists(st.integers(-2, 8), max_size=6),
    y_pred=st.lists(st.integers(-2, 8), max_size=6),
    scores=st.one_of(st.none(), st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=7, max_size=7), max_size=6)),
)
def test_bad_inputs_end_in_a_patchlesion_error(y_true, y_pred, scores):
    """Labels outside the classes, lengths that differ, no images, NaN or infinite scores: the
    project's error, never another exception; otherwise a result."""
    try:
        metrics = classification_metrics(y_true, y_pred, scores)
    except PatchlesionError:
        return
    assert len(y_true) == len(y_pred) > 0 and all(0 <= v < 7 for v in [*y_true, *y_pred])
    assert scores is None or (len(scores) == len(y_true) and np.isfinite(scores).all())
    assert metrics["n_images"] == len(y_true)
