"""The one registry idiom of the method's axes, and new variants added by a registration alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from patchlesion.errors import PatchlesionError
from patchlesion.method.aggregation import AGGREGATIONS, ATTENTIONS
from patchlesion.method.backbones import BACKBONES, build_backbone
from patchlesion.method.balancing import BALANCINGS, EpochSampler, Oversampling, make_loss, plain_loss
from patchlesion.method.model import build_model
from patchlesion.method.registry import Registry, UnknownChoiceError
from patchlesion.method.runs import NORMALISATIONS, RunSpec
from patchlesion.method.strategies import STRATEGIES, PlainStrategy, get_strategy


def test_register_as_call_and_as_decorator_and_look_up():
    colours = Registry("colour", make=lambda name, obj, shade: (name, obj, shade))
    assert colours.register("red", "entry") == "entry"

    @colours.register("blue", shade="dark")
    def blue():
        return 1

    assert blue() == 1  # the decorated function is returned unchanged
    assert colours["blue"] == ("blue", blue, "dark") and colours["red"] == "entry"
    assert colours.names() == list(colours) == ["red", "blue"] and len(colours) == 2
    assert "red" in colours and "green" not in colours
    assert dict(colours.items()) == {"red": "entry", "blue": ("blue", blue, "dark")}


def test_unknown_names_list_the_choices_as_user_and_value_errors():
    with pytest.raises(UnknownChoiceError, match=r"^unknown backbone 'resnet9000'; choose one of tiny, densenet121, inception_v3, se_resnext50, timm:<model>\.$"):
        BACKBONES["resnet9000"]
    for registry in (BACKBONES, STRATEGIES, AGGREGATIONS, ATTENTIONS, BALANCINGS, NORMALISATIONS):
        with pytest.raises(PatchlesionError, match=f"unknown {registry.kind} 'nope'"):
            registry.check("nope")
        with pytest.raises(ValueError):
            registry["nope"]


def test_names_with_dashes_or_registered_twice_are_rejected():
    registry = Registry("thing")
    with pytest.raises(ValueError, match="'-'"):
        registry.register("two-words", 1)
    registry.register("one", 1)
    with pytest.raises(ValueError, match="already"):
        registry.register("one", 2)
    with pytest.raises(TypeError):
        registry.register("three", 3, detail=True)


@pytest.fixture
def scratch_registries(monkeypatch):
    """Registrations made by a test are undone after it."""
    for registry in (BACKBONES, STRATEGIES, BALANCINGS):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))


def test_a_new_backbone_strategy_and_balancing_need_only_their_registration(scratch_registries):
    @BACKBONES.register("flat", n_features=6, min_crop_size=4)
    def _flat(pretrained: bool) -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    @STRATEGIES.register("corner")
    class Corner(PlainStrategy):
        """The top-left crop of the image, in training and at evaluation."""

        single_input = True

        def training_input(self, images, spec, crop_size, generator, workspace=None):
            return self.evaluation_input(images, spec, crop_size)

        def evaluation_input(self, images, spec, crop_size):
            return images[:, None, :, :crop_size, :crop_size].float() / 255  # (B, 1, 3, s, s)

    BALANCINGS.register("first_class_oversampling", sampling=Oversampling)(plain_loss)

    spec = RunSpec("flat", "corner", 1, "mean", "first_class_oversampling")
    assert spec.name == "flat-corner-nc1-mean-first_class_oversampling"
    assert RunSpec.from_name(spec.name).check_registries() == spec
    model = build_model(spec, n_classes=3)
    assert build_backbone("flat")[1] == 6
    images = torch.randint(0, 256, (2, 3, 10, 12), dtype=torch.uint8)
    strategy = get_strategy("corner")
    crops = strategy.training_input(images, spec, 8, torch.Generator().manual_seed(0))
    loss = make_loss(spec.balancing, np.array([0, 1, 1]), 3, spec.k, "cpu")(model(crops), torch.tensor([0, 1]))
    loss.backward()
    probabilities = strategy.probabilities(model, strategy.evaluation_input(images, spec, 8))
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(2))
    assert len(EpochSampler(spec.balancing, np.array([0, 1, 1]), torch.Generator())) == 4
    with pytest.raises(PatchlesionError, match="n_crops"):
        RunSpec("flat", "corner", 4).check_registries()


def test_strategy_capabilities():
    assert {n: s.plain for n, s in STRATEGIES.items()} == {
        "multi_crop": True, "downsample": True, "single_crop": True, "ordered": False,
    }  # fmt: skip
    assert [n for n, s in STRATEGIES.items() if s.single_input] == ["downsample", "single_crop"]
    assert [n for n, s in STRATEGIES.items() if s.supports_patch_dropout] == ["ordered"]
    assert [n for n, s in STRATEGIES.items() if s.per_sample_draws] == ["ordered"]


class _Model(nn.Module):
    """Logits fixed per crop, so that the two ways of combining crops differ."""

    def crop_logits(self, crops):
        return crops.flatten(2)[..., :3] * 10  # (B, N, 3)

    def forward(self, crops):
        return self.crop_logits(crops).mean(dim=1)  # (B, 3)


def test_probabilities_plain_average_crop_softmax_others_softmax_the_model_output():
    crops = torch.rand(2, 4, 3, 2, 2)
    logits = crops.flatten(2)[..., :3] * 10
    plain = get_strategy("multi_crop").probabilities(_Model(), crops)
    torch.testing.assert_close(plain, logits.softmax(dim=-1).mean(dim=1), rtol=0, atol=0)
    ordered = get_strategy("ordered").probabilities(_Model(), crops)
    torch.testing.assert_close(ordered, logits.mean(dim=1).softmax(dim=-1), rtol=0, atol=0)
    assert not torch.allclose(plain, ordered)


def test_balancing_entries_carry_sampling_and_loss():
    assert {n: b.sampling.__name__ for n, b in BALANCINGS.items()} == {
        "none": "UniformSampling", "oversampling": "Oversampling", "balanced_batches": "BalancedBatches",
        "loss_weighting": "UniformSampling", "diagnosis_weighting": "UniformSampling",
    }  # fmt: skip
    assert {n: b.loss.__name__ for n, b in BALANCINGS.items()} == {
        "none": "plain_loss", "oversampling": "plain_loss", "balanced_batches": "plain_loss",
        "loss_weighting": "class_weighted_loss", "diagnosis_weighting": "diagnosis_weighted_loss",
    }  # fmt: skip
