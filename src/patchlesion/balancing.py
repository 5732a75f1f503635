"""Class-balancing axis (Sec. II-F): per-class loss weights and the training loss.

Pure functions for the weights; :func:`make_loss` returns the criterion of a balancing scheme.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from patchlesion.classes import CLASSES
from patchlesion.errors import PatchlesionError

__all__ = ["BALANCINGS", "Balancing", "class_weights", "make_loss"]


def class_weights(labels: np.ndarray, n_classes: int, k: float = 1.0) -> np.ndarray:
    """Loss weighting (Sec. II-F): n_i = (N / N_i)^k from the training labels of one fold."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_classes).astype(float)
    if (counts == 0).any():
        absent = [CLASSES[i] if n_classes == len(CLASSES) else str(i) for i in np.flatnonzero(counts == 0)]
        raise PatchlesionError(
            f"class(es) {', '.join(absent)} have no training images in this fold, so loss weights "
            "(N/N_c)^k are undefined; use a larger dataset or `balancing: none`."
        )
    return (counts.sum() / counts) ** k


@dataclass(frozen=True)
class Balancing:
    """A registry entry: whether the scheme weights the loss by class (then ``k`` matters) and by
    each image's diagnosis type (then the diagnosis scope matters)."""

    name: str
    weighted_loss: bool
    diagnosis_factors: bool = False


BALANCINGS: dict[str, Balancing] = {
    b.name: b for b in (Balancing("none", weighted_loss=False), Balancing("loss_weighting", weighted_loss=True))
}


def make_loss(balancing: str, train_labels: np.ndarray, n_classes: int, k: float, device) -> Callable:
    """Cross-entropy criterion of a balancing scheme; class weights enter as PyTorch's weighted mean
    ``sum_i w_{y_i} l_i / sum_i w_{y_i}`` (so a global scale of the weights is irrelevant)."""
    import torch  # imported here so that the registry itself stays importable without torch
    from torch import nn

    if balancing not in BALANCINGS:
        raise ValueError(f"unknown balancing {balancing!r}; choose one of {', '.join(BALANCINGS)}.")
    if not BALANCINGS[balancing].weighted_loss:
        return nn.CrossEntropyLoss()
    weights = torch.tensor(class_weights(train_labels, n_classes, k), dtype=torch.float32, device=device)
    return nn.CrossEntropyLoss(weight=weights)
