"""Aggregation axis (Sec. II-E): how the features of a sample's crops become one prediction, and
where patch attention reweights the crops.

Two registries, importable without torch (the workflow plans runs from them; the modules
themselves live in :mod:`patchlesion.method.heads`):

* :data:`AGGREGATIONS`: heads mapping pooled crop features ``(B, N, F)`` to class logits. Heads whose
  ``per_crop`` is True also expose one logit vector per crop, which the plain strategies' evaluation
  needs to average softmax probabilities over crops.
* :data:`ATTENTIONS`: the places of the patch-attention block (Fig. 3): ``none``, ``initial`` (on
  the input crops), ``end`` (on the pooled crop features) or ``dual`` (both, one block each).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from patchlesion.method.registry import Registry

__all__ = ["AGGREGATIONS", "ATTENTIONS", "Aggregation", "AttentionPlace", "build_head"]


@dataclass(frozen=True)
class Aggregation:
    """A registry entry: head builder ``(n_features, n_classes, n_crops) -> nn.Module``; ``per_crop``:
    the head classifies every crop on its own (it has ``crop_logits``); ``min_crops``: the fewest
    crops it makes sense for."""

    name: str
    build: Callable
    per_crop: bool
    min_crops: int = 1


#: Aggregation heads by name; ``@AGGREGATIONS.register(name, per_crop=..., min_crops=...)`` above a builder
#: ``(n_features, n_classes, n_crops) -> nn.Module`` adds one.
AGGREGATIONS: Registry[Aggregation] = Registry("aggregation", make=Aggregation)


@AGGREGATIONS.register("mean", per_crop=True)
def _mean(n_features: int, n_classes: int, n_crops: int):
    """Shared linear classifier on every crop, logits averaged (the paper's "average")."""
    from patchlesion.method.heads import MeanHead

    return MeanHead(n_features, n_classes)


@AGGREGATIONS.register("gru", per_crop=False, min_crops=2)
def _gru(n_features: int, n_classes: int, n_crops: int):
    """GRU over the crop sequence, its last output classified (docs/method.md §4.3); over one crop
    it would not be a sequence model."""
    from patchlesion.method.heads import GRUHead

    return GRUHead(n_features, n_classes)


def build_head(name: str, n_features: int, n_classes: int, n_crops: int):
    """Build the aggregation head ``name`` for crops with ``n_features`` pooled features."""
    return AGGREGATIONS[name].build(n_features, n_classes, n_crops)


@dataclass(frozen=True)
class AttentionPlace:
    """A registry entry: whether a patch-attention block reweights the input crops (``initial``)
    and whether one reweights the pooled crop features (``end``) (Sec. II-E, docs/method.md §4.2)."""

    name: str
    initial: bool = False
    end: bool = False

    @property
    def blocks(self) -> tuple[str, ...]:
        """The places with a block, in model order (``()`` without attention)."""
        return tuple(place for place, present in (("initial", self.initial), ("end", self.end)) if present)


#: Places of the patch-attention block by name, as a run's ``attention`` names them.
ATTENTIONS: Registry[AttentionPlace] = Registry("attention")
ATTENTIONS.register("none", AttentionPlace("none"))
ATTENTIONS.register("initial", AttentionPlace("initial", initial=True))
ATTENTIONS.register("end", AttentionPlace("end", end=True))
ATTENTIONS.register("dual", AttentionPlace("dual", initial=True, end=True))
