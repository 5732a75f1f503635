"""Input normalisations (docs/method.md §1.3): what the [0, 1] crops are standardised with before the
model sees them. Torch-free, so that run names are checked without torch; the backbones' own
statistics (``model``) are attributes of their registry entries (:mod:`patchlesion.method.backbones`)."""

from __future__ import annotations

from dataclasses import dataclass

from patchlesion.method.registry import Registry

__all__ = ["IMAGENET", "NORMALISATIONS", "Normalisation"]


@dataclass(frozen=True)
class Normalisation:
    """A registry entry: per-channel ``mean`` and ``std`` the [0, 1] input is standardised with, or
    None for raw [0, 1] input, as the authors' code (docs/method.md §1.3); ``from_backbone``: the
    statistics the backbone's ImageNet weights were trained with (``model``)."""

    name: str
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    from_backbone: bool = False

    def statistics(self, backbone) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
        """``(mean, std)`` for a model with ``backbone`` (its registry entry); ``(None, None)``: raw input."""
        return (backbone.mean, backbone.std) if self.from_backbone else (self.mean, self.std)


#: Input normalisations by name, as a run's ``normalisation`` names them.
NORMALISATIONS: Registry[Normalisation] = Registry("normalisation")
NORMALISATIONS.register("none", Normalisation("none"))
#: The ImageNet mean and std (torchvision's and timm's ``IMAGENET_DEFAULT``).
IMAGENET = Normalisation("imagenet", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
NORMALISATIONS.register("imagenet", IMAGENET)
NORMALISATIONS.register("model", Normalisation("model", from_backbone=True))
