"""Tests for patchlesion.results.metrics: the paper's MC-Sensitivity, MC-Specificity and (swapped) F1."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    multilabel_confusion_matrix,
    recall_score,
    roc_auc_score,
)

from patchlesion.errors import PatchlesionError
from patchlesion.method.classes import CLASSES
from patchlesion.results.metrics import classification_metrics, one_vs_rest_specificity, paper_f1


def labels_from_confusion(cm: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Expand a confusion matrix (rows = true, columns = predicted) into (y_true, y_pred)."""
    y_true: list[int] = []
    y_pred: list[int] = []
    for t, row in enumerate(cm):
        for p, count in enumerate(row):
            y_true += [t] * count
            y_pred += [p] * count
    return np.array(y_true), np.array(y_pred)


# --------------------------------------------------------------------------------------------------
# 3-class case worked by hand (classes A, B, C; n = 10)
#
#              pred A  pred B  pred C   | row sum (true count)
#   true A       3       1       0      |   4
#   true B       0       2       1      |   3
#   true C       2       0       1      |   3
#   col sum      5       3       2      |  10   (predicted counts)
#
# Recall:       A 3/4, B 2/3, C 1/3               -> MC-Sensitivity = (3/4 + 2/3 + 1/3)/3 = 7/12
# Specificity:  A: TN = 2+1+0+1 = 4, FP = 0+2 = 2  -> 4/6
#               B: TN = 3+0+2+1 = 6, FP = 1+0 = 1  -> 6/7
#               C: TN = 3+1+0+2 = 6, FP = 0+1 = 1  -> 6/7
#               MC-Specificity = (4/6 + 6/7 + 6/7)/3 = 50/63
# Per-class F1 = 2 TP / (true + predicted):  A 6/9 = 2/3, B 4/6 = 2/3, C 2/5
# Paper F1 (weights = predicted counts 5, 3, 2): (5*2/3 + 3*2/3 + 2*2/5)/10 = 92/150 = 46/75
# Normal weighted F1 (weights = true counts 4, 3, 3): (4*2/3 + 3*2/3 + 3*2/5)/10 = 88/150 = 44/75
# Macro F1 = (2/3 + 2/3 + 2/5)/3 = 26/45;  accuracy = (3+2+1)/10 = 6/10
# --------------------------------------------------------------------------------------------------
CM3 = [
    [3, 1, 0],
    [0, 2, 1],
    [2, 0, 1],
]
NAMES3 = ("A", "B", "C")


def test_three_class_hand_values() -> None:
    y_true, y_pred = labels_from_confusion(CM3)
    m = classification_metrics(y_true, y_pred, class_names=NAMES3)
    assert m["confusion_matrix"] == CM3
    assert m["n_images"] == 10
    assert m["class_names"] == list(NAMES3)
    assert m["mc_sensitivity"] == pytest.approx(7 / 12)
    assert m["mc_specificity"] == pytest.approx(50 / 63)
    assert m["f1"] == pytest.approx(46 / 75)
    assert m["macro_f1"] == pytest.approx(26 / 45)
    assert m["accuracy"] == pytest.approx(6 / 10)
    assert m["per_class_recall"] == pytest.approx({"A": 3 / 4, "B": 2 / 3, "C": 1 / 3})
    assert m["per_class_specificity"] == pytest.approx({"A": 4 / 6, "B": 6 / 7, "C": 6 / 7})
    # no probabilities -> no AUC
    assert m["per_class_auc"] == {"A": None, "B": None, "C": None}


def test_three_class_swapped_f1_differs_from_normal_weighted_f1() -> None:
    y_true, y_pred = labels_from_confusion(CM3)
    normal = f1_score(y_true, y_pred, average="weighted")
    assert normal == pytest.approx(44 / 75)
    assert paper_f1(y_true, y_pred) == pytest.approx(46 / 75)
    assert paper_f1(y_true, y_pred) != pytest.approx(normal)


# --------------------------------------------------------------------------------------------------
# 7-class case worked by hand (classes in CLASSES order; n = 23)
#
#               MEL  NV  BCC AKIEC BKL  DF VASC | true count
#   MEL          2    2   0    0    0    0   0  |  4
#   NV           1    8   0    0    1    0   0  | 10
#   BCC          0    0   1    1    0    0   0  |  2
#   AKIEC        0    0   0    1    1    0   0  |  2
#   BKL          0    1   0    0    2    0   0  |  3
#   DF           0    1   0    0    0    0   0  |  1
#   VASC         0    0   0    0    0    0   1  |  1
#   predicted    3   12   1    2    4    0   1  | 23
#
# Recall: 2/4, 8/10, 1/2, 1/2, 2/3, 0/1, 1/1
#   MC-Sensitivity = (1/2 + 4/5 + 1/2 + 1/2 + 2/3 + 0 + 1)/7 = (119/30)/7 = 17/30
# Specificity = TN/(TN+FP) with TN+FP = n - true count, FP = predicted count - TP:
#   MEL   FP = 3-2 = 1,  TN+FP = 19 -> 18/19
#   NV    FP = 12-8 = 4, TN+FP = 13 ->  9/13
#   BCC   FP = 1-1 = 0,  TN+FP = 21 -> 21/21
#   AKIEC FP = 2-1 = 1,  TN+FP = 21 -> 20/21
#   BKL   FP = 4-2 = 2,  TN+FP = 20 -> 18/20
#   DF    FP = 0,        TN+FP = 22 -> 22/22
#   VASC  FP = 0,        TN+FP = 22 -> 22/22
#   MC-Specificity = (18/19 + 9/13 + 1 + 20/21 + 9/10 + 1 + 1)/7
# Per-class F1 = 2 TP/(true + predicted):
#   MEL 4/7, NV 16/22 = 8/11, BCC 2/3, AKIEC 2/4 = 1/2, BKL 4/7, DF 0/1 = 0, VASC 2/2 = 1
# Paper F1 (weights = predicted counts 3, 12, 1, 2, 4, 0, 1):
#   (3*4/7 + 12*8/11 + 1*2/3 + 2*1/2 + 4*4/7 + 0*0 + 1*1)/23 = (12/7 + 96/11 + 2/3 + 1 + 16/7 + 1)/23
# Normal weighted F1 (weights = true counts 4, 10, 2, 2, 3, 1, 1):
#   (4*4/7 + 10*8/11 + 2*2/3 + 2*1/2 + 3*4/7 + 1*0 + 1*1)/23 = (16/7 + 80/11 + 4/3 + 1 + 12/7 + 1)/23
# Accuracy = (2+8+1+1+2+0+1)/23 = 15/23
# --------------------------------------------------------------------------------------------------
CM7 = [
    [2, 2, 0, 0, 0, 0, 0],
    [1, 8, 0, 0, 1, 0, 0],
    [0, 0, 1, 1, 0, 0, 0],
    [0, 0, 0, 1, 1, 0, 0],
    [0, 1, 0, 0, 2, 0, 0],
    [0, 1, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 1],
]
SPEC7 = [18 / 19, 9 / 13, 1.0, 20 / 21, 9 / 10, 1.0, 1.0]
PAPER_F1_7 = (12 / 7 + 96 / 11 + 2 / 3 + 1 + 16 / 7 + 1) / 23
NORMAL_F1_7 = (16 / 7 + 80 / 11 + 4 / 3 + 1 + 12 / 7 + 1) / 23


def test_seven_class_hand_values() -> None:
    y_true, y_pred = labels_from_confusion(CM7)
    m = classification_metrics(y_true, y_pred)
    assert m["class_names"] == list(CLASSES)
    assert m["confusion_matrix"] == CM7
    assert m["n_images"] == 23
    assert m["mc_sensitivity"] == pytest.approx(17 / 30)
    assert m["mc_specificity"] == pytest.approx(sum(SPEC7) / 7)
    assert m["mc_specificity"] == pytest.approx(0.927437, abs=1e-6)
    assert m["f1"] == pytest.approx(PAPER_F1_7)
    assert m["f1"] == pytest.approx(0.669302, abs=1e-6)
    assert m["accuracy"] == pytest.approx(15 / 23)
    assert list(m["per_class_recall"].values()) == pytest.approx([1 / 2, 4 / 5, 1 / 2, 1 / 2, 2 / 3, 0.0, 1.0])
    assert list(m["per_class_specificity"].values()) == pytest.approx(SPEC7)
    assert one_vs_rest_specificity(np.array(CM7)) == pytest.approx(SPEC7)


def test_seven_class_swapped_f1_is_prediction_weighted() -> None:
    y_true, y_pred = labels_from_confusion(CM7)
    normal = f1_score(y_true, y_pred, average="weighted", zero_division=0)
    assert normal == pytest.approx(NORMAL_F1_7)
    assert paper_f1(y_true, y_pred) == pytest.approx(PAPER_F1_7)
    assert abs(PAPER_F1_7 - NORMAL_F1_7) > 0.03
    # equals the mean of per-class F1 weighted by the number of PREDICTED images per class
    per_class = f1_score(y_true, y_pred, labels=range(7), average=None, zero_division=0)
    predicted_counts = np.bincount(y_pred, minlength=7)
    assert paper_f1(y_true, y_pred) == pytest.approx(np.average(per_class, weights=predicted_counts))


def test_majority_predictor_gets_high_paper_f1() -> None:
    """The Table V effect: predicting the majority class inflates the paper's F1, not MC-Sensitivity."""
    # 90 NV, 10 MEL; the model predicts NV for everything except 1 correct MEL.
    y_true = np.array([1] * 90 + [0] * 10)
    y_pred = np.array([1] * 90 + [0] * 1 + [1] * 9)
    m = classification_metrics(y_true, y_pred)
    # NV F1 = 180/(90+99) = 20/21, MEL F1 = 2/(10+1) = 2/11
    assert m["f1"] == pytest.approx((99 * 20 / 21 + 1 * 2 / 11) / 100)
    assert m["f1"] > f1_score(y_true, y_pred, average="weighted")
    assert m["mc_sensitivity"] == pytest.approx((1.0 + 0.1) / 2)


@pytest.mark.parametrize("seed", range(5))
def test_cross_check_against_sklearn_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    y_true = rng.choice(7, size=n, p=[0.11, 0.67, 0.05, 0.03, 0.11, 0.015, 0.015])
    y_true[:7] = np.arange(7)  # every class present
    # a noisy classifier: correct 60 % of the time, otherwise a random class
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, 7, size=n))
    logits = rng.normal(size=(n, 7)) + 2.0 * np.eye(7)[y_true]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    m = classification_metrics(y_true, y_pred, probs)

    assert m["mc_sensitivity"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert m["f1"] == pytest.approx(f1_score(y_pred, y_true, average="weighted"))
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["confusion_matrix"] == confusion_matrix(y_true, y_pred).tolist()
    assert list(m["per_class_recall"].values()) == pytest.approx(recall_score(y_true, y_pred, average=None))
    mcm = multilabel_confusion_matrix(y_true, y_pred, labels=range(7))
    spec = [tn / (tn + fp) for (tn, fp), _ in mcm]
    assert list(m["per_class_specificity"].values()) == pytest.approx(spec)
    assert m["mc_specificity"] == pytest.approx(np.mean(spec))
    auc = roc_auc_score(y_true, probs, multi_class="ovr", average=None)
    assert list(m["per_class_auc"].values()) == pytest.approx(auc)


def test_auc_perfectly_separable_is_one() -> None:
    y_true = np.array([0, 0, 1, 1, 2, 2])
    probs = np.full((6, 7), 0.01)
    probs[np.arange(6), y_true] = 0.9
    m = classification_metrics(y_true, y_true, probs)
    assert m["per_class_auc"]["MEL"] == 1.0
    assert m["per_class_auc"]["NV"] == 1.0
    assert m["per_class_auc"]["BCC"] == 1.0
    assert m["per_class_auc"]["AKIEC"] is None  # absent from y_true
    assert m["mc_sensitivity"] == 1.0
    assert m["mc_specificity"] == 1.0


def test_auc_hand_computed_three_quarters() -> None:
    # Class A: positives score 0.9 and 0.4, negatives 0.6 and 0.1.
    # Pairs (pos > neg): (0.9, 0.6) yes, (0.9, 0.1) yes, (0.4, 0.6) no, (0.4, 0.1) yes -> AUC = 3/4.
    # Class B uses 1 - score: positives 0.4, 0.9 vs negatives 0.1, 0.6 -> the same 3/4.
    y_true = [0, 0, 1, 1]
    p_a = np.array([0.9, 0.4, 0.6, 0.1])
    probs = np.stack([p_a, 1 - p_a], axis=1)
    y_pred = probs.argmax(axis=1)
    m = classification_metrics(y_true, y_pred, probs, class_names=("A", "B"))
    assert m["per_class_auc"] == pytest.approx({"A": 0.75, "B": 0.75})


def test_absent_classes_left_out_of_means() -> None:
    # Only MEL (0) and NV (1) in y_true; the model also predicts BCC (2) once.
    #            MEL NV BCC
    #   MEL       2   1   1     recall 2/4
    #   NV        0   3   0     recall 3/3
    # MC-Sensitivity over present classes = (1/2 + 1)/2 = 3/4 (BCC, absent, not in the mean).
    # Specificity MEL: TN = 3, FP = 0 -> 1; NV: TN = 3 (row MEL w/o col NV: 2+0+1), FP = 1 -> 3/4.
    # MC-Specificity = (1 + 3/4)/2 = 7/8.
    y_true = [0, 0, 0, 0, 1, 1, 1]
    y_pred = [0, 0, 1, 2, 1, 1, 1]
    probs = np.full((7, 7), 1 / 7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the expected sklearn warnings are suppressed
        m = classification_metrics(y_true, y_pred, probs)
    assert m["mc_sensitivity"] == pytest.approx(3 / 4)
    assert m["mc_specificity"] == pytest.approx(7 / 8)
    assert m["per_class_recall"]["MEL"] == pytest.approx(0.5)
    assert m["per_class_recall"]["NV"] == 1.0
    for name in ("BCC", "AKIEC", "BKL", "DF", "VASC"):
        assert m["per_class_recall"][name] is None
        assert m["per_class_specificity"][name] is None
        assert m["per_class_auc"][name] is None
    assert m["per_class_auc"]["MEL"] == pytest.approx(0.5)
    assert m["confusion_matrix"][0] == [2, 1, 1, 0, 0, 0, 0]
    assert len(m["confusion_matrix"]) == 7
    # macro F1 over classes present in y_true or y_pred (MEL, NV, BCC):
    # MEL 2*2/(4+2) = 2/3, NV 2*3/(3+4) = 6/7, BCC 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 6 / 7 + 0) / 3)


def test_single_class_in_y_true() -> None:
    m = classification_metrics([1, 1, 1], [1, 0, 1], np.full((3, 7), 1 / 7))
    assert m["mc_sensitivity"] == pytest.approx(2 / 3)
    assert m["mc_specificity"] is None  # TN + FP = 0 for the only class
    assert all(v is None for v in m["per_class_auc"].values())


def test_result_is_json_serialisable_plain_python() -> None:
    y_true, y_pred = labels_from_confusion(CM7)
    probs = np.eye(7)[y_pred] * 0.8 + 0.2 / 7
    m = classification_metrics(y_true, y_pred, probs)
    json.dumps(m, allow_nan=False)
    for key in ("mc_sensitivity", "mc_specificity", "f1", "macro_f1", "accuracy"):
        assert type(m[key]) is float
    assert type(m["n_images"]) is int
    assert all(type(v) is float for v in m["per_class_auc"].values())
    assert all(type(v) is int for row in m["confusion_matrix"] for v in row)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "probs", "match"),
    [
        ([0, 1], [0], None, "must match"),
        ([0, 7], [0, 1], None, "outside 0..6"),
        ([0, -1], [0, 1], None, "outside"),
        ([], [], None, "zero images"),
        ([0, 1], [0, 1], np.ones((2, 3)), "shape"),
        ([0.5, 1], [0, 1], None, "integer"),
    ],
)
def test_invalid_input_raises(y_true, y_pred, probs, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PatchlesionError, match=match):
        classification_metrics(y_true, y_pred, probs)


def test_paper_f1_refuses_what_it_cannot_score():
    """Called on its own (not through classification_metrics), paper_f1 checks its labels too."""
    with pytest.raises(PatchlesionError, match="at least one"):
        paper_f1([], [])
    with pytest.raises(PatchlesionError, match="as many predictions as labels"):
        paper_f1([0, 1], [0])
    with pytest.raises(PatchlesionError, match="class index -1"):
        paper_f1([0, -1], [0, 1])
