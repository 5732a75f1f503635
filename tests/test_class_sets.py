"""Any class set from 2 up (issue 15): class sets, dataset descriptions, the split, the balancing
losses and samplers, and the metrics with a 3-class and a 9-class label set; values worked by hand."""

import numpy as np
import pandas as pd
import pytest
import torch

from patchlesion.data.description import DERM7PT, DESCRIPTIONS, HAM10000, SYNTHETIC, DatasetDescription, load_description
from patchlesion.data.splits import check_split, split_summary, stratified_split
from patchlesion.errors import PatchlesionError, SplitError
from patchlesion.method.balancing import EpochSampler, class_weights, diagnosis_factors, make_loss, scope_classes
from patchlesion.method.classes import CLASSES, HAM10000_CLASSES, ClassSet
from patchlesion.results.metrics import classification_metrics

THREE = ClassSet(("cat", "dog", "owl"), benign=("dog",))
NINE = ClassSet(tuple(f"C{i}" for i in range(9)), benign=("C2", "C5"))
#: A folder dataset: no group column, no diagnosis types.
PLAIN3 = DatasetDescription("plain3", THREE, label_column="label_name", group_column=None, diagnosis_type_column=None)
PLAIN9 = DatasetDescription("plain9", NINE, label_column="label_name", group_column=None, diagnosis_type_column=None)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _index(description: DatasetDescription, per_class: list[int], groups: list[str] | None = None) -> pd.DataFrame:
    names = np.repeat(description.classes.names, per_class)
    frame = pd.DataFrame({"image_id": [f"img{i:03d}" for i in range(len(names))], "label_name": names})
    if groups is not None:
        frame["group"] = groups
    return frame


# --- class sets and descriptions ---


def test_the_three_known_datasets_keep_ham10000s_classes_and_columns():
    assert set(DESCRIPTIONS) == {"ham10000", "derm7pt", "synthetic"}
    for description in (HAM10000, DERM7PT, SYNTHETIC):
        assert description.classes.names == CLASSES == ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
        assert description.classes.benign == ("NV", "BKL", "DF", "VASC")
        assert (description.label_column, description.group_column, description.diagnosis_type_column) == ("class_name", "lesion_id", "dx_type")


def test_class_set_checks_its_names():
    assert len(NINE) == 9 and NINE.index("C8") == 8 and THREE.index("owl") == 2
    with pytest.raises(PatchlesionError, match="at least two classes"):
        ClassSet(("only",))
    with pytest.raises(PatchlesionError, match="unique.*'dog'"):
        ClassSet(("dog", "cat", "dog"))
    with pytest.raises(PatchlesionError, match="benign class\\(es\\) fish are not among the classes cat, dog"):
        ClassSet(("cat", "dog"), benign=("fish",))


def test_description_round_trips_through_json(tmp_path):
    path = tmp_path / "plain9.json"
    import json

    path.write_text(json.dumps(PLAIN9.to_dict()))
    assert load_description(path) == PLAIN9
    assert load_description("derm7pt") is DERM7PT
    with pytest.raises(PatchlesionError, match="unknown dataset 'isic2019'; choose one of ham10000, derm7pt, synthetic"):
        load_description("isic2019")


def test_labels_groups_and_unknown_classes():
    index = _index(PLAIN3, [2, 1, 2])
    assert PLAIN3.labels(index).tolist() == [0, 0, 1, 2, 2]
    assert PLAIN3.groups(index).tolist() == index["image_id"].tolist()  # no group column: each image its own group
    assert PLAIN3.diagnosis_types(index) is None
    index.loc[3, "label_name"] = "bat"
    with pytest.raises(PatchlesionError, match="image img003: class 'bat' is not one of dataset plain3's classes cat, dog, owl"):
        PLAIN3.labels(index)


def test_diagnosis_weighting_without_diagnosis_types_is_refused_naming_the_dataset():
    for balancing in ("none", "oversampling", "balanced_batches", "loss_weighting"):
        PLAIN3.check_balancing(balancing)
    HAM10000.check_balancing("diagnosis_weighting")
    with pytest.raises(PatchlesionError, match="dataset plain3 has no diagnosis types .* balancing 'diagnosis_weighting' cannot"):
        PLAIN3.check_balancing("diagnosis_weighting")


# --- balancing ---


def test_scope_classes_of_any_class_set():
    assert scope_classes("benign", NINE) == ("C2", "C5")
    assert scope_classes("all", THREE) == ("cat", "dog", "owl")
    assert scope_classes("benign") == ("NV", "BKL", "DF", "VASC")
    with pytest.raises(PatchlesionError, match="diagnosis scope 'nevus' names no class of this dataset"):
        scope_classes("nevus", THREE)
    with pytest.raises(PatchlesionError, match="diagnosis scope 'benign' names no class"):
        scope_classes("benign", ClassSet(("a", "b")))


def test_diagnosis_factors_follow_the_class_sets_benign_classes():
    # NINE: benign C2 and C5. Factors: histo 4, confocal 3, follow_up 2, consensus 1.
    labels = [2, 5, 0, 8, 2]
    dx_types = ["histo", "follow_up", "histo", "confocal", "consensus"]
    assert diagnosis_factors(labels, dx_types, "benign", NINE).tolist() == [4.0, 2.0, 1.0, 1.0, 1.0]
    assert diagnosis_factors(labels, dx_types, "all", NINE).tolist() == [4.0, 2.0, 4.0, 3.0, 1.0]
    # The same labels read as HAM10000 classes: BCC(2) is not benign, DF(5) is.
    assert diagnosis_factors(labels, dx_types, "benign").tolist() == [1.0, 2.0, 1.0, 1.0, 1.0]


def test_class_weights_of_nine_classes_by_hand():
    # 18 images: C0 x6, C1 x3, C2 x2, C3..C8 x1 except C7 absent, C8 x2 -> (18/N_c)^1
    labels = np.repeat(np.arange(9), [6, 3, 2, 1, 1, 1, 1, 0, 3])
    assert len(labels) == 18
    assert class_weights(labels, 9).tolist() == [3.0, 6.0, 9.0, 18.0, 18.0, 18.0, 18.0, 0.0, 6.0]
    assert class_weights(labels, 9, k=0.5)[2] == pytest.approx(3.0)


def test_loss_weighting_and_diagnosis_weighting_with_three_classes_by_hand():
    labels = np.array([0, 0, 0, 1, 2, 2])  # weights 6/3=2, 6/1=6, 6/2=3
    logits = torch.zeros(3, 3)  # every example's cross-entropy is ln 3
    target = torch.tensor([0, 1, 2])
    weighted = make_loss("loss_weighting", labels, 3, 1.0, "cpu", classes=THREE)
    assert weighted(logits, target).item() == pytest.approx(np.log(3))  # weighted mean of equal losses
    dx_types = np.array(["histo", "histo", "histo", "follow_up", "histo", "consensus"])
    loss = make_loss("diagnosis_weighting", labels, 3, 1.0, "cpu", dx_types, "benign", classes=THREE)
    # positions 0 (cat, w 2, d 1), 3 (dog benign follow_up: w 6, d 2), 5 (owl, w 3, d 1): mean of w*d*ln3
    assert loss(logits, target, torch.tensor([0, 3, 5])).item() == pytest.approx((2 + 12 + 3) / 3 * np.log(3))
    with pytest.raises(PatchlesionError, match="3 model outputs but 9 classes"):
        make_loss("loss_weighting", labels, 3, 1.0, "cpu", classes=NINE)


def test_balanced_batches_of_three_classes_cycle_through_them():
    labels = np.array([2, 0, 0, 1, 0, 2, 0, 0, 0])
    order = EpochSampler("balanced_batches", labels, _generator()).epoch_order().numpy()
    assert labels[order].tolist() == [0, 1, 2] * 3


def test_oversampling_of_nine_classes_fills_each_up_to_the_largest():
    labels = np.repeat(np.arange(9), [4, 1, 2, 3, 1, 1, 2, 1, 1])
    order = EpochSampler("oversampling", labels, _generator()).epoch_order().numpy()
    assert len(order) == 9 * 4
    assert np.bincount(labels[order], minlength=9).tolist() == [4] * 9


# --- split ---


@pytest.mark.parametrize(("description", "per_class"), [(PLAIN3, [12, 8, 20]), (PLAIN9, [8, 4, 12, 4, 4, 8, 4, 16, 4])])
def test_stratified_split_without_groups_has_each_class_evenly_in_every_part(description, per_class):
    index = _index(description, per_class)
    split = stratified_split(index, description=description)
    summary = split_summary(index, split, description=description)
    assert list(summary.columns[: len(per_class)]) == list(description.classes.names)
    # each class divisible by 4 and no groups: exactly a quarter of each class in every part
    for part in range(4):
        assert summary.loc[part, list(description.classes.names)].tolist() == [n // 4 for n in per_class]
    assert summary.loc["total", "lesions"] == sum(per_class)  # each image its own group


def test_stratified_split_keeps_a_description_group_together():
    description = DatasetDescription("grouped3", THREE, label_column="label_name", group_column="group", diagnosis_type_column=None)
    groups = [f"g{i // 2}" for i in range(24)]  # pairs of images share a group
    index = _index(description, [8, 8, 8], groups)
    split = stratified_split(index, description=description)
    assert split.assign(group=groups).groupby("group")["part"].nunique().max() == 1
    leaked = split.copy()
    leaked.loc[0, "part"] = (split.loc[1, "part"] + 1) % 4
    with pytest.raises(SplitError, match="g0 in parts"):
        check_split(index, leaked, description=description)


def test_split_names_a_missing_label_column():
    with pytest.raises(SplitError, match="index of dataset plain3 lacks column\\(s\\) label_name"):
        stratified_split(pd.DataFrame({"image_id": ["a", "b"]}), description=PLAIN3)


# --- metrics ---


def test_metrics_of_three_classes_by_hand():
    # true  cat cat cat dog dog owl
    # pred  cat cat dog dog owl owl
    metrics = classification_metrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], class_names=THREE.names)
    assert metrics["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert metrics["per_class_recall"] == {"cat": pytest.approx(2 / 3), "dog": 0.5, "owl": 1.0}
    # specificity: cat TN 3 FP 0 -> 1; dog TN 3 FP 1 -> 3/4; owl TN 4 FP 1 -> 4/5
    assert metrics["per_class_specificity"] == {"cat": 1.0, "dog": 0.75, "owl": 0.8}
    assert metrics["mc_sensitivity"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert metrics["mc_specificity"] == pytest.approx((1 + 0.75 + 0.8) / 3)


def test_metrics_of_nine_classes_with_probabilities():
    y_true = np.arange(9).repeat(2)
    y_pred = y_true.copy()
    y_pred[[1, 3]] = [8, 0]  # one C0 called C8, one C1 called C0
    probabilities = np.eye(9)[y_pred] * 0.9 + 0.1 / 9
    metrics = classification_metrics(y_true, y_pred, probabilities, class_names=NINE.names)
    assert metrics["class_names"] == list(NINE.names) and len(metrics["confusion_matrix"]) == 9
    assert metrics["per_class_recall"]["C0"] == 0.5 and metrics["per_class_recall"]["C1"] == 0.5
    assert metrics["mc_sensitivity"] == pytest.approx((0.5 + 0.5 + 7) / 9)
    assert metrics["per_class_auc"]["C5"] == 1.0
    assert HAM10000_CLASSES.names == CLASSES
