"""Class-balancing axis (Sec. II-F): how an epoch is sampled and how the training loss is weighted.

Five schemes, one registry entry each (METHOD §5; the authors' ``balance_classes`` mode in brackets):

* ``none`` (0): uniform shuffle, plain mean cross-entropy;
* ``oversampling`` (3): every class repeated up to the size of the largest one, pool shuffled;
* ``balanced_batches`` (12): a class round-robin stream, so batches of a multiple of C images are
  exactly balanced;
* ``loss_weighting`` (5): uniform shuffle, class weights n_i = (N/N_i)^k in PyTorch's weighted mean;
* ``diagnosis_weighting`` (6): uniform shuffle, per-example loss x class weight x diagnosis factor
  (how the ground truth was established), plain batch mean.

Pure functions give the weights (:func:`class_weights`, :func:`diagnosis_factors`);
:class:`EpochSampler` holds the sampling state of one training run and :func:`make_loss` returns
its criterion. torch is imported inside the functions so that the registry stays importable
without torch (the workflow plans runs from it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from patchlesion.errors import PatchlesionError
from patchlesion.method.classes import BENIGN_CLASSES, CLASSES, DX_TYPES

__all__ = [
    "BALANCINGS",
    "DIAGNOSIS_FACTORS",
    "DIAGNOSIS_SCOPE_CLASSES",
    "Balancing",
    "EpochSampler",
    "class_weights",
    "diagnosis_factors",
    "make_loss",
]

#: Diagnosis-guided loss weighting (Sec. II-F): factor per HAM10000 ``dx_type``, the authors'
#: ``diagnosis_type_penalty`` (METHOD §5.2); costlier ground truth -> larger loss.
DIAGNOSIS_FACTORS: dict[str, float] = {"consensus": 1.0, "follow_up": 2.0, "confocal": 3.0, "histo": 4.0}

#: Classes whose examples receive their diagnosis factor, per ``diagnosis_scope`` (METHOD §5.2, §10.5):
#: ``benign`` the paper's text, ``nevus`` the released code's comment, ``all`` what the released code
#: effectively did (its nevus test reads a leftover loop variable that is always NV).
DIAGNOSIS_SCOPE_CLASSES: dict[str, tuple[str, ...]] = {
    "benign": BENIGN_CLASSES,
    "nevus": ("NV",),
    "all": CLASSES,
}


def class_weights(labels: np.ndarray, n_classes: int, k: float = 1.0) -> np.ndarray:
    """Loss weighting (Sec. II-F): n_i = (N / N_i)^k from the training labels of one fold.

    A class without training images gets weight 0: no target has it, so its weight never enters
    the weighted mean. That is how a dataset without some class trains on the classes it has, as
    the authors' six-class model on derm7pt, which has no AKIEC (Sec. II-A).
    """
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_classes).astype(float)
    if not counts.any():
        raise PatchlesionError("no training labels: loss weights (N/N_c)^k need at least one training image.")
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = (counts.sum() / counts[present]) ** k
    return weights


def diagnosis_factors(labels: np.ndarray, dx_types, scope: str = "benign") -> np.ndarray:
    """Diagnosis-guided loss weighting (Sec. II-F): each example's factor d_i.

    d_i is :data:`DIAGNOSIS_FACTORS` of the image's *own* ``dx_type`` if its class is in ``scope``
    (:data:`DIAGNOSIS_SCOPE_CLASSES`), else 1.0. ``labels`` are class indices in :data:`CLASSES`
    order. The released code's misaligned lookup -- the sample's position in the fold's training
    list used as a global image index, so that most images get the factor of an unrelated image
    (METHOD §5.2) -- is deliberately not reproduced.
    """
    if scope not in DIAGNOSIS_SCOPE_CLASSES:
        raise PatchlesionError(
            f"diagnosis scope {scope!r} is unknown; choose one of {', '.join(DIAGNOSIS_SCOPE_CLASSES)}."
        )
    labels = np.asarray(labels, dtype=int)
    dx_types = np.asarray(dx_types, dtype=object)
    if labels.shape != dx_types.shape or labels.ndim != 1:
        raise PatchlesionError(
            f"diagnosis weighting needs one dx_type per training image; got {dx_types.shape} dx_types "
            f"for {labels.shape} labels."
        )
    unknown = sorted({str(t) for t in dx_types} - set(DIAGNOSIS_FACTORS))
    if unknown:
        raise PatchlesionError(
            f"dx_type value(s) {', '.join(map(repr, unknown))} have no diagnosis factor; the metadata's "
            f"dx_type column must hold one of {', '.join(DX_TYPES)}."
        )
    in_scope = np.isin(labels, [CLASSES.index(c) for c in DIAGNOSIS_SCOPE_CLASSES[scope]])
    own = np.array([DIAGNOSIS_FACTORS[str(t)] for t in dx_types], dtype=float)
    return np.where(in_scope, own, 1.0)


@dataclass(frozen=True)
class Balancing:
    """A registry entry: how an epoch is sampled (``uniform``, ``oversampling`` or
    ``balanced_batches``), whether the loss is weighted by class (then ``k`` matters) and by each
    image's diagnosis type (then the diagnosis scope matters)."""

    name: str
    weighted_loss: bool
    diagnosis_factors: bool = False
    sampling: str = "uniform"


BALANCINGS: dict[str, Balancing] = {
    b.name: b
    for b in (
        Balancing("none", weighted_loss=False),
        Balancing("oversampling", weighted_loss=False, sampling="oversampling"),
        Balancing("balanced_batches", weighted_loss=False, sampling="balanced_batches"),
        Balancing("loss_weighting", weighted_loss=True),
        Balancing("diagnosis_weighting", weighted_loss=True, diagnosis_factors=True),
    )
}


def _get(balancing: str) -> Balancing:
    if balancing not in BALANCINGS:
        raise ValueError(f"unknown balancing {balancing!r}; choose one of {', '.join(BALANCINGS)}.")
    return BALANCINGS[balancing]


class EpochSampler:
    """Order in which one run visits its training list, epoch by epoch (Sec. II-F sampling).

    :meth:`epoch_order` is called once per epoch and returns positions into the training list:

    * uniform schemes: a random permutation of all positions;
    * ``oversampling`` (METHOD §5.3): each class's positions, in ascending order, repeated
      cyclically up to the size of the largest class; this fixed pool is shuffled every epoch, so an
      epoch has C x max_c samples;
    * ``balanced_batches`` (METHOD §5.4, the authors' ``StratifiedSampler``): ``len(labels)``
      positions per epoch, cycling through the classes and taking the next element of that class's
      shuffled list; a class list is reshuffled when exhausted, all lists at every epoch start, and
      the class pointer carries over between epochs. Consecutive chunks of B = C*m positions are
      exactly balanced; with other B (the authors' 5 for 7 classes) only every C consecutive batches
      are.

    Classes without training images are skipped (C counts the classes present). All randomness
    comes from ``generator``. Iterating the sampler yields one epoch, so it can also serve as a
    DataLoader ``sampler``.
    """

    def __init__(self, balancing: str, labels, generator) -> None:
        self.balancing = _get(balancing)
        self.labels = np.asarray(labels, dtype=int)
        self.generator = generator
        self.classes = np.unique(self.labels)  # classes present in training, ascending
        self.class_positions = [np.flatnonzero(self.labels == c) for c in self.classes]
        if self.balancing.sampling == "oversampling":
            largest = max((len(p) for p in self.class_positions), default=0)
            self._pool = np.concatenate(
                [np.resize(p, largest) for p in self.class_positions] or [np.zeros(0, dtype=int)]
            )  # np.resize repeats cyclically
        self._class_pointer = 0  # balanced batches: next class to draw from, kept across epochs

    def __len__(self) -> int:
        """Number of positions per epoch."""
        if self.balancing.sampling == "oversampling":
            return len(self._pool)
        return len(self.labels)

    def __iter__(self):
        return iter(self.epoch_order().tolist())

    def state_dict(self) -> dict:
        """The sampler's position across epochs (its random draws come from the run's generator,
        whose state is saved separately), for resuming training."""
        return {"class_pointer": int(self._class_pointer)}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a position returned by :meth:`state_dict`."""
        self._class_pointer = int(state["class_pointer"])

    def epoch_order(self):
        """Positions into the training list for the next epoch, a ``torch.LongTensor``."""
        import torch

        if self.balancing.sampling == "oversampling":
            order = torch.from_numpy(self._pool)[torch.randperm(len(self._pool), generator=self.generator)]
            return order.long()
        if self.balancing.sampling == "balanced_batches":
            return torch.as_tensor(self._round_robin(), dtype=torch.long)
        return torch.randperm(len(self.labels), generator=self.generator)

    def _shuffled(self, positions: np.ndarray) -> np.ndarray:
        import torch

        return positions[torch.randperm(len(positions), generator=self.generator).numpy()]

    def _round_robin(self) -> np.ndarray:
        n_classes = len(self.classes)
        lists = [self._shuffled(p) for p in self.class_positions]
        cursors = [0] * n_classes
        order = np.empty(len(self.labels), dtype=np.int64)
        for i in range(len(order)):
            c = self._class_pointer
            if cursors[c] == len(lists[c]):
                lists[c], cursors[c] = self._shuffled(self.class_positions[c]), 0
            order[i] = lists[c][cursors[c]]
            cursors[c] += 1
            self._class_pointer = (c + 1) % n_classes
        return order


def make_loss(
    balancing: str,
    train_labels: np.ndarray,
    n_classes: int,
    k: float,
    device,
    train_dx_types=None,
    diagnosis_scope: str = "benign",
) -> Callable:
    """Training criterion of a balancing scheme: ``loss(logits, target, positions=None) -> scalar``.

    ``positions`` are the batch samples' positions in the training list (what
    :meth:`EpochSampler.epoch_order` yields); only diagnosis weighting uses them, to look up each
    example's diagnosis factor.

    * ``none``, ``oversampling``, ``balanced_batches``: plain mean cross-entropy.
    * ``loss_weighting`` (Sec. II-F): class weights w = (N/N_c)^k as PyTorch's weighted mean
      ``sum_i w_{y_i} l_i / sum_i w_{y_i}`` (so a global scale of the weights is irrelevant).
    * ``diagnosis_weighting`` (Sec. II-F): ``(1/B) sum_i w_{y_i} d_i l_i`` with d_i from
      :func:`diagnosis_factors` (``train_dx_types``, ``diagnosis_scope``) -- a *plain* batch mean,
      not divided by the sum of weights, because that is how the authors' code normalises mode 6
      (METHOD §5.2); the loss scale thus grows with the weights.
    """
    import torch
    from torch import nn
    from torch.nn import functional

    scheme = _get(balancing)
    if not scheme.weighted_loss:
        plain = nn.CrossEntropyLoss()
        return lambda logits, target, positions=None: plain(logits, target)
    weights = torch.tensor(class_weights(train_labels, n_classes, k), dtype=torch.float32, device=device)
    if not scheme.diagnosis_factors:
        weighted = nn.CrossEntropyLoss(weight=weights)
        return lambda logits, target, positions=None: weighted(logits, target)

    if train_dx_types is None:
        raise PatchlesionError(
            "balancing 'diagnosis_weighting' needs each training image's dx_type (the metadata's "
            "dx_type column); this dataset has none, so choose another balancing."
        )
    factors = torch.tensor(
        diagnosis_factors(train_labels, train_dx_types, diagnosis_scope), dtype=torch.float32, device=device
    )

    def diagnosis_weighted(logits, target, positions=None):
        if positions is None:
            raise ValueError("diagnosis weighting needs the samples' positions in the training list.")
        positions = torch.as_tensor(positions, dtype=torch.long, device=factors.device)
        per_example = functional.cross_entropy(logits, target, reduction="none")  # (B,)
        return (per_example * weights[target] * factors[positions]).mean()

    return diagnosis_weighted
