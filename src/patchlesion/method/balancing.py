"""Class-balancing axis (Sec. II-F): how an epoch is sampled and how the training loss is weighted.

Five schemes, one registry entry each (docs/method.md §5; the authors' ``balance_classes`` mode in brackets):

* ``none`` (0): uniform shuffle, plain mean cross-entropy;
* ``oversampling`` (3): every class repeated up to the size of the largest one, pool shuffled;
* ``balanced_batches`` (12): a class round-robin stream, so batches of a multiple of C images are
  exactly balanced;
* ``loss_weighting`` (5): uniform shuffle, class weights n_i = (N/N_i)^k in PyTorch's weighted mean;
* ``diagnosis_weighting`` (6): uniform shuffle, per-example loss x class weight x diagnosis factor
  (how the ground truth was established), plain batch mean.

Each entry carries its behaviour: a sampling class (:class:`UniformSampling`,
:class:`Oversampling`, :class:`BalancedBatches`) and a loss builder (:func:`plain_loss`,
:func:`class_weighted_loss`, :func:`diagnosis_weighted_loss`); a new scheme is one registration
above a loss builder. Pure functions give the weights (:func:`class_weights`,
:func:`diagnosis_factors`); :class:`EpochSampler` holds the sampling state of one training run and
:func:`make_loss` returns its criterion. torch is imported inside the functions so that the registry stays importable
without torch (the workflow plans runs from it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from patchlesion.errors import PatchlesionError
from patchlesion.method.classes import BENIGN_CLASSES, CLASSES, DX_TYPES, HAM10000_CLASSES, ClassSet
from patchlesion.method.registry import Registry

__all__ = [
    "BALANCINGS",
    "DIAGNOSIS_FACTORS",
    "DIAGNOSIS_SCOPE_CLASSES",
    "BalancedBatches",
    "Balancing",
    "EpochSampler",
    "Oversampling",
    "UniformSampling",
    "class_weighted_loss",
    "class_weights",
    "diagnosis_factors",
    "diagnosis_weighted_loss",
    "make_loss",
    "plain_loss",
    "scope_classes",
]

#: Diagnosis-guided loss weighting (Sec. II-F): factor per HAM10000 ``dx_type``, the authors'
#: ``diagnosis_type_penalty`` (docs/method.md §5.2); costlier ground truth -> larger loss.
DIAGNOSIS_FACTORS: dict[str, float] = {"consensus": 1.0, "follow_up": 2.0, "confocal": 3.0, "histo": 4.0}

#: Classes whose examples receive their diagnosis factor, per ``diagnosis_scope``
#: (docs/method.md §5.2, docs/fidelity.md §5): ``benign`` the paper's text, ``nevus`` the released code's comment,
#: ``all`` what the released code effectively did (its nevus test reads a leftover loop variable
#: that is always NV). These are HAM10000's; :func:`scope_classes` gives them for any class set.
DIAGNOSIS_SCOPE_CLASSES: dict[str, tuple[str, ...]] = {
    "benign": BENIGN_CLASSES,
    "nevus": ("NV",),
    "all": CLASSES,
}


def scope_classes(scope: str, classes: ClassSet = HAM10000_CLASSES) -> tuple[str, ...]:
    """The classes of ``classes`` whose examples receive their diagnosis factor under ``scope``:
    ``benign`` the class set's benign classes, ``nevus`` its class NV, ``all`` every class."""
    if scope not in DIAGNOSIS_SCOPE_CLASSES:
        raise PatchlesionError(
            f"diagnosis scope {scope!r} is unknown; choose one of {', '.join(DIAGNOSIS_SCOPE_CLASSES)}."
        )
    chosen = {"benign": classes.benign, "nevus": ("NV",), "all": classes.names}[scope]
    if not set(chosen) <= set(classes.names) or not chosen:
        raise PatchlesionError(
            f"diagnosis scope {scope!r} names no class of this dataset ({', '.join(classes.names)}: "
            f"benign {', '.join(classes.benign) or 'none'}); choose diagnosis scope 'all', or declare the dataset's benign classes."
        )
    return chosen


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


def diagnosis_factors(labels: np.ndarray, dx_types, scope: str = "benign", classes: ClassSet = HAM10000_CLASSES) -> np.ndarray:
    """Diagnosis-guided loss weighting (Sec. II-F): each example's factor d_i.

    d_i is :data:`DIAGNOSIS_FACTORS` of the image's *own* ``dx_type`` if its class is in ``scope``
    (:func:`scope_classes` of ``classes``), else 1.0. ``labels`` are class indices in ``classes``
    order. The released code's misaligned lookup -- the sample's position in the fold's training
    list used as a global image index, so that most images get the factor of an unrelated image
    (docs/method.md §5.2) -- is deliberately not reproduced.
    """
    in_scope_names = scope_classes(scope, classes)
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
    in_scope = np.isin(labels, [classes.index(c) for c in in_scope_names])
    own = np.array([DIAGNOSIS_FACTORS[str(t)] for t in dx_types], dtype=float)
    return np.where(in_scope, own, 1.0)


class UniformSampling:
    """Sampling of the class-weighted and unbalanced schemes: a random permutation of all positions."""

    def __init__(self, labels: np.ndarray) -> None:
        self.n_positions = len(labels)

    def __len__(self) -> int:
        return self.n_positions

    def epoch_order(self, generator):
        import torch

        return torch.randperm(self.n_positions, generator=generator)

    def state_dict(self) -> dict:
        # One checkpoint format for every scheme: the class pointer of balanced batches, unused here.
        return {"class_pointer": 0}

    def load_state_dict(self, state: dict) -> None:
        pass


class Oversampling(UniformSampling):
    """Oversampling (docs/method.md §5.3): each class's positions, in ascending order, repeated
    cyclically up to the size of the largest class; this fixed pool is shuffled every epoch, so an
    epoch has C x max_c samples."""

    def __init__(self, labels: np.ndarray) -> None:
        class_positions = _class_positions(labels)
        largest = max((len(p) for p in class_positions), default=0)
        self._pool = np.concatenate(
            [np.resize(p, largest) for p in class_positions] or [np.zeros(0, dtype=int)]
        )  # np.resize repeats cyclically
        super().__init__(self._pool)

    def epoch_order(self, generator):
        import torch

        order = torch.from_numpy(self._pool)[torch.randperm(len(self._pool), generator=generator)]
        return order.long()


class BalancedBatches(UniformSampling):
    """Balanced batches (docs/method.md §5.4, the authors' ``StratifiedSampler``): ``len(labels)``
    positions per epoch, cycling through the classes and taking the next element of that class's
    shuffled list; a class list is reshuffled when exhausted, all lists at every epoch start, and
    the class pointer carries over between epochs (it is the state a checkpoint keeps). Consecutive
    chunks of B = C*m positions are exactly balanced; with other B (the authors' 5 for 7 classes)
    only every C consecutive batches are."""

    def __init__(self, labels: np.ndarray) -> None:
        super().__init__(labels)
        self.class_positions = _class_positions(labels)
        self._class_pointer = 0  # next class to draw from, kept across epochs

    def state_dict(self) -> dict:
        return {"class_pointer": int(self._class_pointer)}

    def load_state_dict(self, state: dict) -> None:
        self._class_pointer = int(state["class_pointer"])

    def epoch_order(self, generator):
        import torch

        return torch.as_tensor(self._round_robin(generator), dtype=torch.long)

    @staticmethod
    def _shuffled(positions: np.ndarray, generator) -> np.ndarray:
        import torch

        return positions[torch.randperm(len(positions), generator=generator).numpy()]

    def _round_robin(self, generator) -> np.ndarray:
        n_classes = len(self.class_positions)
        lists = [self._shuffled(p, generator) for p in self.class_positions]
        cursors = [0] * n_classes
        order = np.empty(self.n_positions, dtype=np.int64)
        for i in range(len(order)):
            c = self._class_pointer
            if cursors[c] == len(lists[c]):
                lists[c], cursors[c] = self._shuffled(self.class_positions[c], generator), 0
            order[i] = lists[c][cursors[c]]
            cursors[c] += 1
            self._class_pointer = (c + 1) % n_classes
        return order


def _class_positions(labels: np.ndarray) -> list[np.ndarray]:
    """Positions of each class present in ``labels``, classes ascending (absent classes skipped)."""
    return [np.flatnonzero(labels == c) for c in np.unique(labels)]


@dataclass(frozen=True)
class Balancing:
    """A registry entry: ``sampling`` (a class built from the training labels, giving each epoch's
    order) and ``loss`` (a builder of the training criterion, see :func:`make_loss`); whether the
    loss is weighted by class (then a run's ``k`` matters) and by each image's diagnosis type (then
    its diagnosis scope matters)."""

    name: str
    loss: Callable
    sampling: type[UniformSampling] = UniformSampling
    weighted_loss: bool = False
    diagnosis_factors: bool = False


#: Balancing schemes by name; ``@BALANCINGS.register(name, sampling=..., ...)`` above a loss builder
#: adds one (several schemes may share a builder).
BALANCINGS: Registry[Balancing] = Registry("balancing", make=Balancing)


@BALANCINGS.register("balanced_batches", sampling=BalancedBatches)
@BALANCINGS.register("oversampling", sampling=Oversampling)
@BALANCINGS.register("none")
def plain_loss(train_labels, n_classes, k, device, train_dx_types=None, diagnosis_scope="benign", classes=None) -> Callable:
    """Plain mean cross-entropy."""
    from torch import nn

    plain = nn.CrossEntropyLoss()
    return lambda logits, target, positions=None: plain(logits, target)


@BALANCINGS.register("loss_weighting", weighted_loss=True)
def class_weighted_loss(train_labels, n_classes, k, device, train_dx_types=None, diagnosis_scope="benign", classes=None) -> Callable:
    """Loss weighting (Sec. II-F): class weights w = (N/N_c)^k as PyTorch's weighted mean
    ``sum_i w_{y_i} l_i / sum_i w_{y_i}`` (so a global scale of the weights is irrelevant)."""
    import torch
    from torch import nn

    weights = torch.tensor(class_weights(train_labels, n_classes, k), dtype=torch.float32, device=device)
    weighted = nn.CrossEntropyLoss(weight=weights)
    return lambda logits, target, positions=None: weighted(logits, target)


@BALANCINGS.register("diagnosis_weighting", weighted_loss=True, diagnosis_factors=True)
def diagnosis_weighted_loss(train_labels, n_classes, k, device, train_dx_types=None, diagnosis_scope="benign", classes=None) -> Callable:
    """Diagnosis-guided weighting (Sec. II-F): ``(1/B) sum_i w_{y_i} d_i l_i`` with d_i from
    :func:`diagnosis_factors` (``train_dx_types``, ``diagnosis_scope``, ``classes``, by default
    HAM10000's) -- a *plain* batch mean, not
    divided by the sum of weights, because that is how the authors' code normalises mode 6
    (docs/method.md §5.2); the loss scale thus grows with the weights."""
    import torch
    from torch.nn import functional

    weights = torch.tensor(class_weights(train_labels, n_classes, k), dtype=torch.float32, device=device)
    if train_dx_types is None:
        raise PatchlesionError(
            "balancing 'diagnosis_weighting' needs each training image's dx_type (the metadata's "
            "dx_type column); this dataset has none, so choose another balancing."
        )
    factors = torch.tensor(
        diagnosis_factors(train_labels, train_dx_types, diagnosis_scope, classes or HAM10000_CLASSES), dtype=torch.float32, device=device
    )

    def diagnosis_weighted(logits, target, positions=None):
        if positions is None:
            raise ValueError("diagnosis weighting needs the samples' positions in the training list.")
        positions = torch.as_tensor(positions, dtype=torch.long, device=factors.device)
        per_example = functional.cross_entropy(logits, target, reduction="none")  # (B,)
        return (per_example * weights[target] * factors[positions]).mean()

    return diagnosis_weighted


class EpochSampler:
    """Order in which one run visits its training list, epoch by epoch (Sec. II-F sampling).

    :meth:`epoch_order` is called once per epoch and returns positions into the training list, as
    the scheme's sampling (:class:`UniformSampling`, :class:`Oversampling`, :class:`BalancedBatches`)
    orders them. Classes without training images are skipped (C counts the classes present). All
    randomness comes from ``generator``. Iterating the sampler yields one epoch, so it can also
    serve as a DataLoader ``sampler``.
    """

    def __init__(self, balancing: str, labels, generator) -> None:
        self.balancing = BALANCINGS[balancing]
        self.labels = np.asarray(labels, dtype=int)
        self.generator = generator
        self.sampling = self.balancing.sampling(self.labels)

    def __len__(self) -> int:
        """Number of positions per epoch."""
        return len(self.sampling)

    def __iter__(self):
        return iter(self.epoch_order().tolist())

    def state_dict(self) -> dict:
        """The sampler's position across epochs (its random draws come from the run's generator,
        whose state is saved separately), for resuming training."""
        return self.sampling.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Continue from a position returned by :meth:`state_dict`."""
        self.sampling.load_state_dict(state)

    def epoch_order(self):
        """Positions into the training list for the next epoch, a ``torch.LongTensor``."""
        return self.sampling.epoch_order(self.generator)


def make_loss(
    balancing: str,
    train_labels: np.ndarray,
    n_classes: int,
    k: float,
    device,
    train_dx_types=None,
    diagnosis_scope: str = "benign",
    classes: ClassSet | None = None,
) -> Callable:
    """Training criterion of a balancing scheme: ``loss(logits, target, positions=None) -> scalar``
    (:func:`plain_loss`, :func:`class_weighted_loss` or :func:`diagnosis_weighted_loss`).

    ``positions`` are the batch samples' positions in the training list (what
    :meth:`EpochSampler.epoch_order` yields); only diagnosis weighting uses them, to look up each
    example's diagnosis factor, and only it reads ``classes`` (the benign ones; HAM10000's when None).
    """
    if classes is not None and len(classes) != n_classes:
        raise PatchlesionError(f"{n_classes} model outputs but {len(classes)} classes ({', '.join(classes.names)}); they must match.")
    return BALANCINGS[balancing].loss(train_labels, n_classes, k, device, train_dx_types, diagnosis_scope, classes)
