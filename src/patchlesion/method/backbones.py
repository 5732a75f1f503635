"""Backbone registry (Sec. II-C): feature extractors shared by all crops, ending in global average pooling.

Each entry builds a module mapping ``(B, 3, s, s)`` crops to ``(B, F)`` pooled features and reports
F. The real backbones are truncated as in the authors' code (docs/method.md §4.1): InceptionV3 without
AuxLogits and fc (2048 features; its ``transform_input`` is bypassed), DenseNet121's ``features``
up to ``norm5`` *without* the final ReLU (1024), SE-ResNeXt50's layer0..layer4 (2048) with
adaptive instead of fixed 7x7 pooling, so any crop size works. ``tiny`` is a 4-layer CNN for the
demo and the tests. Beyond the paper, ``timm:<model>`` is any model of timm, truncated the same way
(:mod:`patchlesion.method.timm_backbones`; the registry's ``timm`` family).

With ``pretrained=True`` the real backbones start from their ImageNet weights, read from the local
cache (:mod:`patchlesion.method.weights`; never downloaded here, so training jobs need no network).
A new backbone is one builder function ``(pretrained) -> nn.Module`` under ``@BACKBONES.register``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from patchlesion.errors import PatchlesionError
from patchlesion.method import timm_backbones
from patchlesion.method.normalisation import IMAGENET
from patchlesion.method.registry import Registry

__all__ = ["BACKBONES", "Backbone", "build_backbone"]


@dataclass(frozen=True)
class Backbone:
    """A registry entry: how to build the feature extractor, its feature size (None: the size timm
    reports for the built model), its smallest crop, the per-channel ``mean`` and ``std`` of the
    input its ImageNet weights were trained on (``normalisation: model``; None: raw [0, 1] input),
    the one crop size it takes where its input size is fixed, else None, and the number the crop
    size must be a multiple of (a vision transformer's patch size), else None."""

    name: str
    build: Callable[[bool], nn.Module]
    n_features: int | None
    min_crop_size: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    fixed_crop_size: int | None = None
    crop_multiple: int | None = None

    def check_crop_size(self, crop_size: int) -> None:
        """Refuse a crop size the network cannot take, before anything is built or written."""
        if self.fixed_crop_size is not None and crop_size != self.fixed_crop_size:
            raise PatchlesionError(
                f"backbone {self.name} takes only {self.fixed_crop_size}-pixel crops (its input size is fixed), not crop_size "
                f"{crop_size}; set crop_size to {self.fixed_crop_size} or choose a backbone without a fixed input size."
            )
        if self.crop_multiple is not None and crop_size % self.crop_multiple:
            below = crop_size // self.crop_multiple * self.crop_multiple
            nearest = ", ".join(str(n) for n in (below, below + self.crop_multiple) if n >= max(self.min_crop_size, self.crop_multiple))
            raise PatchlesionError(
                f"backbone {self.name} takes crops whose side is a multiple of its patch size {self.crop_multiple}, not crop_size "
                f"{crop_size}; set crop_size to {nearest}."
            )
        if crop_size < self.min_crop_size:
            raise PatchlesionError(
                f"backbone {self.name} needs crops of at least {self.min_crop_size} pixels, not crop_size {crop_size}; "
                f"set crop_size to {self.min_crop_size} or more."
            )


#: Feature extractors by name; ``@BACKBONES.register(name, n_features=F, min_crop_size=s)`` above a
#: builder ``(pretrained) -> nn.Module`` adds one; ``timm:<model>`` is any model of timm.
BACKBONES: Registry[Backbone] = Registry("backbone", make=Backbone)


def build_backbone(name: str, pretrained: bool = False) -> tuple[nn.Module, int]:
    """Build backbone ``name`` (ImageNet weights from the local cache if ``pretrained`` and the
    backbone has any): returns the feature extractor and its pooled feature size."""
    entry = BACKBONES[name]
    module = entry.build(pretrained)
    return module, entry.n_features if entry.n_features is not None else timm_backbones.feature_size(module)


def _timm_backbone(name: str, model: str) -> Backbone:
    """The entry of ``timm:<model>``: checked against timm's catalogue, statistics from timm."""
    config = timm_backbones.pretrained_config(name)
    min_crop_size = config.min_input_size[-1] if config.min_input_size else 32
    rule = timm_backbones.input_size_rule(name)  # None, ("only", size) or ("multiple", patch size)
    fixed, multiple = (rule[1], None) if rule and rule[0] == "only" else (None, rule[1] if rule else None)
    return Backbone(name, partial(_build_timm, name), None, min_crop_size, tuple(config.mean), tuple(config.std), fixed, multiple)


def _build_timm(name: str, pretrained: bool) -> nn.Module:
    from patchlesion.method.weights import weights_path

    return timm_backbones.build(name, _imagenet_state(name) if pretrained else None, weights_path(name) if pretrained else None)


BACKBONES.register_family(timm_backbones.FAMILY, _timm_backbone, "timm:<model>")


def _imagenet_state(name: str) -> dict:
    from patchlesion.method.weights import load_pretrained_state

    return load_pretrained_state(name)


# torchvision's DenseNet checkpoints use the old key names 'norm.1', 'conv.2', ...; torchvision
# renames them in densenet._load_state_dict with this pattern before loading.
_DENSENET_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def _densenet_keys(state: dict) -> dict:
    renamed = {}
    for key, value in state.items():
        match = _DENSENET_OLD_KEY.match(key)
        renamed[match.group(1) + match.group(2) if match else key] = value
    return renamed


class GlobalAveragePool(nn.Module):
    """Spatial mean of a feature map: ``(B, F, h, w)`` -> ``(B, F)`` (GAP in the paper's Fig. 2)."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.mean(dim=(-2, -1))


@BACKBONES.register("tiny", n_features=64, min_crop_size=16)
def _tiny(pretrained: bool) -> nn.Module:  # no ImageNet weights: always random
    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    # The first layer's 3x3 kernels see every full-resolution pixel (the stride only thins its
    # outputs), so the fine texture that carries the class reaches it unblurred, at a quarter of the cost.
    return nn.Sequential(
        *block(3, 16, 2), *block(16, 32, 2), *block(32, 64, 2), *block(64, 64, 1), GlobalAveragePool()
    )


@BACKBONES.register("densenet121", n_features=1024, min_crop_size=32, mean=IMAGENET.mean, std=IMAGENET.std)
def _densenet121(pretrained: bool) -> nn.Module:
    from torchvision.models import densenet121

    net = densenet121(weights=None)
    if pretrained:
        net.load_state_dict(_densenet_keys(_imagenet_state("densenet121")))
    # features ends with norm5; torchvision applies a ReLU after it, the authors' code does not.
    return nn.Sequential(net.features, GlobalAveragePool())


# torchvision's InceptionV3 weights, ported from TensorFlow, expect input in [-1, 1] (its
# transform_input converts ImageNet-standardised input to that; timm's inception_v3.tv_in1k says the same).
@BACKBONES.register("inception_v3", n_features=2048, min_crop_size=75, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
def _inception_v3(pretrained: bool) -> nn.Module:
    from torchvision.models import inception_v3

    # The auxiliary head fails in training mode at 224 px inputs, so it is never part of the model;
    # it is built only to load the checkpoint, which contains it. transform_input stays off (the
    # authors call the submodules directly, bypassing it).
    net = inception_v3(weights=None, aux_logits=pretrained, init_weights=False, transform_input=False)
    if pretrained:
        net.load_state_dict(_imagenet_state("inception_v3"))
    layers = [
        "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
        "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
        "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
    ]  # fmt: skip
    return nn.Sequential(*(getattr(net, name) for name in layers), GlobalAveragePool())


@BACKBONES.register("se_resnext50", n_features=2048, min_crop_size=32, mean=IMAGENET.mean, std=IMAGENET.std)
def _se_resnext50(pretrained: bool) -> nn.Module:
    import pretrainedmodels

    net = pretrainedmodels.__dict__["se_resnext50_32x4d"](num_classes=1000, pretrained=None)
    if pretrained:
        net.load_state_dict(_imagenet_state("se_resnext50"))
    return nn.Sequential(net.layer0, net.layer1, net.layer2, net.layer3, net.layer4, GlobalAveragePool())
