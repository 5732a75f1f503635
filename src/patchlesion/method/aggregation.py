"""Aggregation axis (Sec. II-E): how the features of a sample's crops become one prediction.

Each entry builds a head mapping pooled crop features ``(B, N, F)`` to class logits; heads whose
``per_crop`` is True also expose one logit vector per crop, which Multi-Crop evaluation needs to
average softmax probabilities over crops. The patch-attention block that reweights crops inside the
model (Sec. II-E, Fig. 3) lives here too; the model places it (``PatchLesionModel``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["AGGREGATIONS", "Aggregation", "GRUHead", "MeanHead", "PatchAttention", "build_head"]


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


class GRUHead(nn.Module):
    """GRU over the crop sequence, its last output classified (the paper's recurrent patch combination, Sec. II-E).

    One unidirectional layer with ``hidden`` units (the paper's cross-validated choice: 1024), fed
    the crops' pooled features in crop order; only the output at the last time step reaches the
    linear classifier, nothing is averaged (METHOD §4.3).
    """

    def __init__(self, n_features: int, n_classes: int, hidden: int = 1024):
        super().__init__()
        self.gru = nn.GRU(n_features, hidden, num_layers=1, batch_first=True, bidirectional=False)
        self.classifier = nn.Linear(hidden, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.gru(features)  # (B, N, F) -> (B, N, hidden)
        return self.classifier(outputs[:, -1])  # last step (B, hidden) -> (B, C)


AGGREGATIONS["gru"] = Aggregation("gru", lambda f, c, n: GRUHead(f, c), per_crop=False)


class PatchAttention(nn.Module):
    """Patch-based attention block (Sec. II-E, Fig. 3): crops reweighted by sigmoid(W m + b) of their means.

    For a tensor ``(B, N, ...)`` each crop's mean over all its remaining dimensions gives
    ``m`` of shape ``(B, N)`` (zeroed crops give m_j = 0); a fully-connected ``N x N`` layer with bias
    (PyTorch default init) and a sigmoid turn it into weights ``a`` in (0, 1), and crop j is
    multiplied by a_j. Used on the input crops ``(B, N, 3, H, W)`` ("initial attention") and on the
    pooled features ``(B, N, F)`` ("end attention"); adds N^2 + N parameters.
    """

    def __init__(self, n_crops: int):
        super().__init__()
        self.n_crops = n_crops
        self.fc = nn.Linear(n_crops, n_crops)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the reweighted tensor (same shape as ``x``) and the weights ``a`` ``(B, N)``."""
        if x.dim() < 3 or x.shape[1] != self.n_crops:
            raise ValueError(
                f"patch attention was built for {self.n_crops} crops and needs a (B, {self.n_crops}, ...) "
                f"tensor, got shape {tuple(x.shape)}."
            )
        means = x.flatten(2).mean(dim=-1)  # (B, N, ...) -> (B, N)
        weights = torch.sigmoid(self.fc(means))  # (B, N)
        scale = weights.view(*weights.shape, *([1] * (x.dim() - 2)))  # (B, N, 1, ...)
        return x * scale, weights


def build_head(name: str, n_features: int, n_classes: int, n_crops: int) -> nn.Module:
    """Build the aggregation head ``name`` for crops with ``n_features`` pooled features."""
    try:
        entry = AGGREGATIONS[name]
    except KeyError:
        raise ValueError(f"unknown aggregation {name!r}; choose one of {', '.join(AGGREGATIONS)}.") from None
    return entry.build(n_features, n_classes, n_crops)
