"""The patch model (Fig. 2): crops stacked into the batch, a shared backbone, an aggregation head."""

from __future__ import annotations

import torch
from torch import nn

from patchlesion.aggregation import build_head
from patchlesion.backbones import build_backbone
from patchlesion.runs import RunSpec

__all__ = ["PatchLesionModel", "build_model", "resolve_device"]


class PatchLesionModel(nn.Module):
    """Backbone applied to every crop with shared weights, then an aggregation head (Sec. II-E)."""

    def __init__(self, backbone: str, n_classes: int, aggregation: str, n_crops: int):
        super().__init__()
        self.backbone, n_features = build_backbone(backbone)
        self.head = build_head(aggregation, n_features, n_classes, n_crops)

    def features(self, crops: torch.Tensor) -> torch.Tensor:
        """Pooled features of every crop: ``(B, N, 3, s, s)`` -> ``(B, N, F)``."""
        batch, n_crops = crops.shape[:2]
        features = self.backbone(crops.flatten(0, 1))  # (B*N, F)
        return features.view(batch, n_crops, -1)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """Class logits of each sample: ``(B, N, 3, s, s)`` -> ``(B, C)``."""
        return self.head(self.features(crops))

    def crop_logits(self, crops: torch.Tensor) -> torch.Tensor:
        """Logits of every crop on its own: ``(B, N, 3, s, s)`` -> ``(B, N, C)`` (Multi-Crop)."""
        return self.head.crop_logits(self.features(crops))


def build_model(spec: RunSpec, n_classes: int) -> PatchLesionModel:
    """The model of a run."""
    spec.check_registries()
    return PatchLesionModel(spec.backbone, n_classes, spec.aggregation, spec.n_crops)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> the first CUDA device when one is present, else the CPU; other values as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        from patchlesion.errors import PatchlesionError

        raise PatchlesionError(f"device {device!r} was asked for but CUDA is not available here; use `device: auto`.")
    return resolved
