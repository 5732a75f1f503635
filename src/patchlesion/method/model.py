"""The patch model (Fig. 2): crops stacked into the batch, a shared backbone, patch attention, an aggregation head."""

from __future__ import annotations

import torch
from torch import nn

from patchlesion.errors import PatchlesionError
from patchlesion.method.aggregation import AGGREGATIONS, ATTENTIONS, build_head
from patchlesion.method.backbones import BACKBONES, build_backbone
from patchlesion.method.heads import PatchAttention
from patchlesion.method.runs import NORMALISATIONS, RunSpec

__all__ = ["PatchLesionModel", "build_model"]


class PatchLesionModel(nn.Module):
    """Patch model (Sec. II-E, Fig. 2): shared backbone on every crop, optional patch attention, aggregation head.

    ``attention`` (:data:`~patchlesion.method.aggregation.ATTENTIONS`) places the patch-attention
    block (Fig. 3) on the input crops (``initial``), on the pooled crop features (``end``), on both
    (``dual``) or nowhere (``none``); each place has its own block. ``normalisation``
    (:data:`~patchlesion.method.runs.NORMALISATIONS`) ``imagenet`` standardises the [0, 1] input per
    channel with the ImageNet mean and std before anything else, ``model`` with the statistics of the
    backbone's own ImageNet weights (timm's for a timm model); ``none`` keeps raw [0, 1] input, as
    the authors' code (docs/method.md §1.3). ``pretrained`` loads the backbone's cached ImageNet weights.
    """

    def __init__(
        self,
        backbone: str,
        n_classes: int,
        aggregation: str,
        n_crops: int,
        attention: str = "none",
        normalisation: str = "none",
        pretrained: bool = False,
    ):
        super().__init__()
        place = ATTENTIONS[attention]
        statistics = NORMALISATIONS[normalisation].statistics(BACKBONES[backbone])
        self.aggregation = aggregation
        self.attention = attention
        self.normalisation = normalisation
        self.n_crops = n_crops
        self.initial_attention = PatchAttention(n_crops) if place.initial else None
        self.backbone, n_features = build_backbone(backbone, pretrained=pretrained)
        self.end_attention = PatchAttention(n_crops) if place.end else None
        self.head = build_head(aggregation, n_features, n_classes, n_crops)
        # Not persistent: constants, so checkpoints do not depend on the normalisation choice (None,
        # no buffer, for raw input).
        for buffer, values in zip(("input_mean", "input_std"), statistics, strict=True):
            self.register_buffer(buffer, None if values is None else torch.tensor(values).view(3, 1, 1), persistent=False)

    def _encode(self, crops: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Normalisation, initial attention, backbone, end attention: ``(B, N, 3, s, s)`` -> ``(B, N, F)``."""
        weights: dict[str, torch.Tensor] = {}
        if self.input_mean is not None:
            crops = (crops - self.input_mean) / self.input_std  # (B, N, 3, s, s), per channel
        if self.initial_attention is not None:
            crops, weights["initial"] = self.initial_attention(crops)  # weights (B, N)
        batch, n_crops = crops.shape[:2]
        features = self.backbone(crops.flatten(0, 1))  # (B*N, 3, s, s) -> (B*N, F)
        features = features.view(batch, n_crops, -1)  # (B, N, F)
        if self.end_attention is not None:
            features, weights["end"] = self.end_attention(features)  # weights (B, N)
        return features, weights

    def features(self, crops: torch.Tensor) -> torch.Tensor:
        """Pooled crop features as the head sees them (after any attention): ``(B, N, 3, s, s)`` -> ``(B, N, F)``."""
        return self._encode(crops)[0]

    def forward(
        self, crops: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Class logits of each sample: ``(B, N, 3, s, s)`` -> ``(B, C)``.

        With ``return_attention`` also the attention weights ``{"initial": (B, N), "end": (B, N)}``
        of the blocks present (an empty dict without attention).
        """
        features, weights = self._encode(crops)
        logits = self.head(features)  # (B, N, F) -> (B, C)
        return (logits, weights) if return_attention else logits

    def crop_logits(self, crops: torch.Tensor) -> torch.Tensor:
        """Logits of every crop on its own: ``(B, N, 3, s, s)`` -> ``(B, N, C)`` (Multi-Crop).

        Only for the mean head without attention: attention couples the crops, and the GRU head has
        no per-crop output.
        """
        if not AGGREGATIONS[self.aggregation].per_crop or ATTENTIONS[self.attention].blocks:
            raise PatchlesionError(
                f"per-crop logits (Multi-Crop softmax averaging) need a per-crop aggregation without patch "
                f"attention; this model has aggregation {self.aggregation!r} and attention {self.attention!r}. "
                "Use the model's forward (logits averaged inside the model) instead."
            )
        return self.head.crop_logits(self.features(crops))


def build_model(spec: RunSpec, n_classes: int, pretrained: bool = False) -> PatchLesionModel:
    """The model of a run (backbone from the cached ImageNet weights if ``pretrained``)."""
    spec.check_registries()
    return PatchLesionModel(
        spec.backbone,
        n_classes,
        spec.aggregation,
        spec.n_crops,
        attention=spec.attention,
        normalisation=spec.normalisation,
        pretrained=pretrained,
    )
