"""Aggregation axis (Sec. II-E): how the features of a sample's crops become one prediction.

Each entry builds a head mapping pooled crop features ``(B, N, F)`` to class logits; heads whose
``per_crop`` is True also expose one logit vector per crop, which Multi-Crop evaluation needs to
average softmax probabilities over crops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["AGGREGATIONS", "Aggregation", "MeanHead", "build_head"]


@dataclass(frozen=True)
class Aggregation:
    """A registry entry: head builder ``(n_features, n_classes, n_crops) -> nn.Module``."""

    name: str
    build: Callable[[int, int, int], nn.Module]
    per_crop: bool


AGGREGATIONS: dict[str, Aggregation] = {}


class MeanHead(nn.Module):
    """Shared linear classifier on every crop, logits averaged over crops (the paper's "average")."""

    def __init__(self, n_features: int, n_classes: int):
        super().__init__()
        self.classifier = nn.Linear(n_features, n_classes)

    def crop_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Per-crop logits: ``(B, N, F)`` -> ``(B, N, C)``."""
        return self.classifier(features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.crop_logits(features).mean(dim=1)  # (B, C)


AGGREGATIONS["mean"] = Aggregation("mean", lambda f, c, n: MeanHead(f, c), per_crop=True)


def build_head(name: str, n_features: int, n_classes: int, n_crops: int) -> nn.Module:
    """Build the aggregation head ``name`` for crops with ``n_features`` pooled features."""
    try:
        entry = AGGREGATIONS[name]
    except KeyError:
        raise ValueError(f"unknown aggregation {name!r}; choose one of {', '.join(AGGREGATIONS)}.") from None
    return entry.build(n_features, n_classes, n_crops)
