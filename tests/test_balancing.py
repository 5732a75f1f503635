"""Class-balancing axis (Sec. II-F): diagnosis factors, loss weighting and the epoch samplers."""

import numpy as np
import pytest
import torch

from patchlesion.errors import PatchlesionError
from patchlesion.method.balancing import BALANCINGS, EpochSampler, class_weights, diagnosis_factors, make_loss
from patchlesion.method.classes import class_index

MEL, NV, BCC, AKIEC, BKL, DF, VASC = range(7)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _unbalanced_labels() -> np.ndarray:
    """Seven classes with 2..13 images each, shuffled so that positions are not grouped by class."""
    labels = np.repeat(np.arange(7), [5, 13, 3, 2, 7, 4, 6])
    return np.random.default_rng(0).permutation(labels)


def test_registry_entries():
    assert set(BALANCINGS) == {"none", "oversampling", "balanced_batches", "loss_weighting", "diagnosis_weighting"}
    assert BALANCINGS["loss_weighting"].weighted_loss and not BALANCINGS["loss_weighting"].diagnosis_factors
    assert BALANCINGS["diagnosis_weighting"].weighted_loss and BALANCINGS["diagnosis_weighting"].diagnosis_factors
    assert not any(BALANCINGS[b].weighted_loss for b in ("none", "oversampling", "balanced_batches"))


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("benign", [4.0, 3.0, 1.0, 2.0, 1.0, 4.0, 1.0]),
        ("nevus", [4.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0]),
        ("all", [4.0, 3.0, 4.0, 2.0, 1.0, 4.0, 4.0]),
    ],
)
def test_diagnosis_factors_per_scope(scope, expected):
    labels = [NV, BKL, MEL, NV, DF, VASC, AKIEC]
    dx_types = ["histo", "confocal", "histo", "follow_up", "consensus", "histo", "histo"]
    assert class_index("BKL") == BKL
    np.testing.assert_array_equal(diagnosis_factors(np.array(labels), dx_types, scope), expected)


def test_diagnosis_factors_reject_unknown_dx_type_and_scope():
    with pytest.raises(PatchlesionError, match="'biopsy'"):
        diagnosis_factors(np.array([NV]), ["biopsy"])
    with pytest.raises(PatchlesionError, match="scope 'malignant'"):
        diagnosis_factors(np.array([NV]), ["histo"], "malignant")


def test_diagnosis_loss_is_the_plain_batch_mean_of_weighted_examples():
    train_labels = np.array([0, 0, 0, 1, 1, 2])  # 3 classes only (not the HAM order) -> weights 2, 3, 6
    dx_types = np.array(["histo", "histo", "histo", "histo", "follow_up", "consensus"])
    loss = make_loss("diagnosis_weighting", train_labels, 3, 1.0, "cpu", train_dx_types=dx_types, diagnosis_scope="all")
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([0, 1, 2])
    positions = torch.tensor([2, 4, 5])  # factors 4, 2, 1
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    expected = (2.0 * 4.0 * ce[0] + 3.0 * 2.0 * ce[1] + 6.0 * 1.0 * ce[2]) / 3
    torch.testing.assert_close(loss(logits, target, positions), expected)


def test_diagnosis_loss_with_benign_scope_uses_ham_classes():
    train_labels = np.array([MEL, NV, BCC, AKIEC, BKL, DF, VASC])
    dx_types = ["histo"] * 7
    loss = make_loss("diagnosis_weighting", train_labels, 7, 1.0, "cpu", train_dx_types=dx_types)
    logits = torch.zeros(2, 7)
    target = torch.tensor([MEL, NV])
    # all weights 7; MEL is not benign (d = 1), NV histo (d = 4); cross-entropy of zeros is log 7
    expected = torch.tensor((7 * 1 + 7 * 4) / 2 * np.log(7), dtype=torch.float32)
    torch.testing.assert_close(loss(logits, target, torch.tensor([0, 1])), expected)


def test_diagnosis_weighting_needs_dx_types():
    with pytest.raises(PatchlesionError, match="dx_type"):
        make_loss("diagnosis_weighting", np.array([0, 1]), 2, 1.0, "cpu")


def test_loss_weighting_is_a_weighted_mean_and_ignores_positions():
    labels = np.array([0, 0, 0, 1])
    loss = make_loss("loss_weighting", labels, 2, 1.0, "cpu")
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    target = torch.tensor([0, 1, 1])
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    w = torch.tensor([4 / 3, 4.0, 4.0])
    expected = (w * ce).sum() / w.sum()
    torch.testing.assert_close(loss(logits, target, torch.tensor([0, 3, 3])), expected)
    torch.testing.assert_close(loss(logits, target), expected)


@pytest.mark.parametrize("balancing", ["none", "oversampling", "balanced_batches"])
def test_unweighted_schemes_use_plain_mean_cross_entropy(balancing):
    loss = make_loss(balancing, np.array([0, 0, 1]), 3, 1.0, "cpu")  # class 2 absent: no weights needed
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    target = torch.tensor([0, 1])
    expected = torch.nn.functional.cross_entropy(logits, target)
    torch.testing.assert_close(loss(logits, target, torch.tensor([0, 2])), expected)


def test_weighted_schemes_need_training_labels():
    with pytest.raises(PatchlesionError, match="no training labels"):
        make_loss("loss_weighting", np.array([], dtype=int), 7, 1.0, "cpu")


@pytest.mark.parametrize("balancing", ["none", "loss_weighting", "diagnosis_weighting"])
def test_uniform_schemes_permute_the_training_list(balancing):
    labels = _unbalanced_labels()
    sampler = EpochSampler(balancing, labels, _generator())
    first, second = sampler.epoch_order(), sampler.epoch_order()
    assert first.dtype == torch.long and len(sampler) == len(labels)
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(len(labels)))
    assert first.tolist() != second.tolist()


def test_oversampling_epoch_repeats_each_class_up_to_the_largest():
    labels = _unbalanced_labels()
    sampler = EpochSampler("oversampling", labels, _generator())
    counts = np.bincount(labels)
    for _ in range(2):
        order = sampler.epoch_order().numpy()
        assert len(order) == len(sampler) == 7 * counts.max()
        np.testing.assert_array_equal(np.bincount(labels[order]), [counts.max()] * 7)
        uses = np.bincount(order, minlength=len(labels))
        for c in range(7):
            class_uses = uses[labels == c]
            assert class_uses.min() >= 1 and class_uses.max() - class_uses.min() <= 1
        # cyclic in ascending order: the first images of a class get the extra repetition
        vasc = np.flatnonzero(labels == VASC)  # 6 images for 13 slots: 3, 2, 2, 2, 2, 2
        np.testing.assert_array_equal(uses[vasc], [3, 2, 2, 2, 2, 2])


@pytest.mark.parametrize("per_class", [1, 2])
def test_balanced_batches_of_a_multiple_of_c_are_exactly_balanced(per_class):
    labels = _unbalanced_labels()
    sampler = EpochSampler("balanced_batches", labels, _generator())
    batch = 7 * per_class
    stream = np.concatenate([sampler.epoch_order().numpy() for _ in range(4)])
    assert len(stream) == 4 * len(labels)
    for start in range(0, len(stream) - batch + 1, batch):
        np.testing.assert_array_equal(np.bincount(labels[stream[start : start + batch]], minlength=7), [per_class] * 7)


def test_balanced_batches_of_five_are_balanced_over_seven_batches():
    labels = _unbalanced_labels()
    sampler = EpochSampler("balanced_batches", labels, _generator())
    stream = np.concatenate([sampler.epoch_order().numpy() for _ in range(5)])
    for start in range(0, len(stream) - 35 + 1, 5):  # every window of 7 consecutive batches of 5
        np.testing.assert_array_equal(np.bincount(labels[stream[start : start + 35]], minlength=7), [5] * 7)
    for start in range(0, len(stream) - 5 + 1, 5):
        assert len(set(labels[stream[start : start + 5]])) == 5


def test_balanced_batches_use_every_image_of_a_class_before_repeating_one():
    labels = _unbalanced_labels()
    order = EpochSampler("balanced_batches", labels, _generator()).epoch_order().numpy()
    assert len(order) == len(labels)
    # 40 positions give each class 5 or 6 draws; the first N_c draws of a class are all distinct
    for c, n in enumerate(np.bincount(labels)):
        drawn = order[labels[order] == c]
        assert len(set(drawn[:n].tolist())) == min(n, len(drawn))


def test_balanced_batches_class_pointer_carries_over_between_epochs():
    labels = _unbalanced_labels()  # 40 images: epoch 1 ends on class 39 % 7 = 4
    sampler = EpochSampler("balanced_batches", labels, _generator())
    first, second = sampler.epoch_order().numpy(), sampler.epoch_order().numpy()
    assert labels[first[0]] == MEL and labels[first[-1]] == BKL
    assert labels[second[0]] == DF
    np.testing.assert_array_equal(labels[second[:7]], [DF, VASC, MEL, NV, BCC, AKIEC, BKL])


@pytest.mark.parametrize("balancing", ["none", "oversampling", "balanced_batches", "loss_weighting"])
def test_samplers_are_deterministic_per_seed(balancing):
    labels = _unbalanced_labels()

    def epochs(seed):
        sampler = EpochSampler(balancing, labels, _generator(seed))
        return [sampler.epoch_order().tolist() for _ in range(3)]

    assert epochs(1) == epochs(1)
    assert epochs(1) != epochs(2)


def test_samplers_skip_classes_absent_from_training():
    labels = np.array([MEL, NV, NV, NV, BKL, MEL, NV])  # only 3 of 7 classes present
    oversampled = EpochSampler("oversampling", labels, _generator()).epoch_order().numpy()
    assert len(oversampled) == 3 * 4
    np.testing.assert_array_equal(np.bincount(labels[oversampled], minlength=7), [4, 4, 0, 0, 4, 0, 0])
    balanced = EpochSampler("balanced_batches", labels, _generator()).epoch_order().numpy()
    np.testing.assert_array_equal(labels[balanced], [MEL, NV, BKL, MEL, NV, BKL, MEL])
    uniform = EpochSampler("none", labels, _generator()).epoch_order()
    assert sorted(uniform.tolist()) == list(range(7))


def test_sampler_iterates_one_epoch_for_a_dataloader():
    labels = _unbalanced_labels()
    sampler = EpochSampler("balanced_batches", labels, _generator(3))
    reference = EpochSampler("balanced_batches", labels, _generator(3))
    assert list(sampler) == reference.epoch_order().tolist()


def test_class_weights_still_hand_computed():
    np.testing.assert_allclose(class_weights(np.array([0, 0, 0, 1]), 2, 0.5), [np.sqrt(4 / 3), 2.0])


def test_class_without_training_images_gets_weight_zero_and_loss_ignores_it():
    # derm7pt has no AKIEC: the loss must train on the six classes it has (Table IV).
    weights = class_weights(np.array([0, 0, 0, 2]), 3, 1.0)
    np.testing.assert_allclose(weights, [4 / 3, 0.0, 4.0])
    loss = make_loss("loss_weighting", np.array([0, 0, 0, 2]), 3, 1.0, "cpu")
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    target = torch.tensor([0, 2])
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    expected = (4 / 3 * ce[0] + 4.0 * ce[1]) / (4 / 3 + 4.0)
    torch.testing.assert_close(loss(logits, target), expected)
