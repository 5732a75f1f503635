"""The torch modules of the aggregation axis (Sec. II-E): heads that turn crop features into class
logits, and the patch-attention block that reweights crops (Fig. 3).

They are registered, with the attention places, in :mod:`patchlesion.method.aggregation`, which
stays importable without torch.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GRUHead", "MeanHead", "PatchAttention"]


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


class GRUHead(nn.Module):
    """GRU over the crop sequence, its last output classified (the paper's recurrent patch combination, Sec. II-E).

    One unidirectional layer with ``hidden`` units (the paper's cross-validated choice: 1024), fed
    the crops' pooled features in crop order; only the output at the last time step reaches the
    linear classifier, nothing is averaged (docs/method.md §4.3).
    """

    def __init__(self, n_features: int, n_classes: int, hidden: int = 1024):
        super().__init__()
        self.gru = nn.GRU(n_features, hidden, num_layers=1, batch_first=True, bidirectional=False)
        self.classifier = nn.Linear(hidden, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.gru(features)  # (B, N, F) -> (B, N, hidden)
        return self.classifier(outputs[:, -1])  # last step (B, hidden) -> (B, C)


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
