"""Runs, registries, model shapes, class weights (Sec. II-C to II-F)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from patchlesion.data.splits import load_published_table, published_split, select
from patchlesion.engine.settings import TrainSettings
from patchlesion.errors import PatchlesionError
from patchlesion.method.aggregation import AGGREGATIONS
from patchlesion.method.backbones import BACKBONES, build_backbone
from patchlesion.method.balancing import BALANCINGS, class_weights
from patchlesion.method.classes import CLASSES
from patchlesion.method.model import PatchLesionModel
from patchlesion.method.runs import RunSpec
from patchlesion.method.strategies import STRATEGIES

ROOT = Path(__file__).resolve().parents[1]


def test_run_name_round_trip_and_readability():
    spec = RunSpec("densenet121", "multi_crop", 9, "mean", "loss_weighting", 0.75)
    assert spec.name == "densenet121-multi_crop-nc9-mean-loss_weighting-k0.75"
    assert RunSpec.from_name(spec.name) == spec
    unweighted = RunSpec("tiny", balancing="none")
    assert unweighted.name == "tiny-multi_crop-nc9-mean-none"
    assert RunSpec.from_name(unweighted.name) == unweighted


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"strategy": "ordered", "attention": "end", "patch_dropout": 0.1},
         "tiny-ordered-nc9-mean-loss_weighting-k1-att_end-pd0.1"),
        ({"strategy": "ordered", "n_crops": 5, "aggregation": "gru", "balancing": "none", "attention": "dual"},
         "tiny-ordered-nc5-gru-none-att_dual"),
        ({"strategy": "ordered", "attention": "initial", "normalisation": "imagenet"},
         "tiny-ordered-nc9-mean-loss_weighting-k1-att_initial-norm_imagenet"),
        ({"balancing": "diagnosis_weighting", "diagnosis_scope": "nevus"},
         "tiny-multi_crop-nc9-mean-diagnosis_weighting-k1-scope_nevus"),
        ({"balancing": "diagnosis_weighting", "k": 0.5, "diagnosis_scope": "all"},
         "tiny-multi_crop-nc9-mean-diagnosis_weighting-k0.5-scope_all"),
        ({"balancing": "diagnosis_weighting"}, "tiny-multi_crop-nc9-mean-diagnosis_weighting-k1-scope_benign"),
        ({"strategy": "single_crop", "n_crops": 1, "centre_crop": "paper"}, "tiny-single_crop-nc1-mean-loss_weighting-k1-cc_paper"),
    ],
)  # fmt: skip
def test_word_tags_are_joined_with_underscore_and_round_trip(fields, name):
    spec = RunSpec("tiny", **fields)
    assert spec.name == name
    assert RunSpec.from_name(name) == spec


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("tiny-ordered-nc9-mean-loss_weighting-k1-attend-pd0.1", "tiny-ordered-nc9-mean-loss_weighting-k1-att_end-pd0.1"),
        ("tiny-ordered-nc9-mean-loss_weighting-k1-attinitial", "tiny-ordered-nc9-mean-loss_weighting-k1-att_initial"),
        ("tiny-multi_crop-nc9-mean-diagnosis_weighting-k1-scopeall", "tiny-multi_crop-nc9-mean-diagnosis_weighting-k1-scope_all"),
        ("tiny-single_crop-nc1-mean-none-ccpaper-normimagenet", "tiny-single_crop-nc1-mean-none-cc_paper-norm_imagenet"),
    ],
)  # fmt: skip
def test_old_spelling_of_word_tags_is_rejected_with_the_new_one(old, new):
    with pytest.raises(PatchlesionError, match=f"write it as '{new}'"):
        RunSpec.from_name(old)


@pytest.mark.parametrize(
    "name",
    ["densenet121", "densenet121-multi_crop-9-mean-loss_weighting", "tiny-multi_crop-nc9-mean-bogus",
     "tiny-multi_crop-nc9-mean-loss_weighting-k1.0", "tiny-multi_crop-nc9-mean-loss_weighting-x1",
     "tiny-ordered-nc9-mean-loss_weighting-k1-att_middle", "tiny-ordered-nc9-mean-loss_weighting-k1-pd_0.1",
     "tiny-ordered-nc9-mean-loss_weighting-k1-pd0.1-att_end"],
)  # fmt: skip
def test_bad_run_names_are_rejected(name):
    with pytest.raises(PatchlesionError):
        RunSpec.from_name(name)


def test_unknown_backbone_is_caught_before_building():
    with pytest.raises(PatchlesionError, match="backbone 'resnet9000'"):
        RunSpec("resnet9000").check_registries()


def test_config_schema_choices_equal_the_registries():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    definitions = schema["definitions"]
    assert set(definitions["backbone"]["anyOf"][0]["enum"]) == set(BACKBONES)
    row = definitions["run"]["properties"]
    assert set(row["strategy"]["enum"]) == set(STRATEGIES)
    assert set(row["aggregation"]["enum"]) == set(AGGREGATIONS)
    assert set(row["balancing"]["enum"]) == set(BALANCINGS)


def test_validation_epochs_follow_the_authors_schedule():
    assert TrainSettings(epochs=50, validation_every=5).validation_epochs() == [1, *range(5, 51, 5)]
    assert TrainSettings(epochs=7, validation_every=3).validation_epochs() == [1, 3, 6, 7]


def test_learning_rate_halves_at_epochs_19_29_39_49():
    from patchlesion.engine.training import _lr_milestones

    settings = TrainSettings()
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=_lr_milestones(settings), gamma=0.5)
    used = []
    for _ in range(50):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [1.0] * 18 + [0.5] * 10 + [0.25] * 10 + [0.125] * 10 + [0.0625] * 2
    assert used == expected


def test_class_weights_on_published_fold_equal_the_method_reference():
    # docs/method.md §5.1: authors' fold 0 (our fold 1: trains on parts 2 and 3, N = 4993), order MEL..VASC
    table = load_published_table()
    split = published_split(table)
    train = set(select(split, 1, "train"))
    labels = table.loc[table["image_id"].isin(train), "dx"].map(lambda dx: CLASSES.index(dx.upper())).to_numpy()
    assert len(labels) == 4993
    np.testing.assert_allclose(class_weights(labels, 7, 1.0), [9.01, 1.49, 19.50, 31.01, 9.10, 90.78, 73.43], atol=0.006)  # BKL: 9.0947 printed as 9.10
    np.testing.assert_allclose(class_weights(labels, 7, 0.5), [3.00, 1.22, 4.42, 5.57, 3.02, 9.53, 8.57], atol=0.005)
    np.testing.assert_allclose(
        class_weights(labels, 7, 1.5), [27.1, 1.82, 86.1, 172.7, 27.4, 865, 629], rtol=0.002
    )


def test_class_without_training_images_has_weight_zero():
    # derm7pt has no AKIEC: its six classes are weighted (N/N_c)^k, AKIEC 0 (Table IV)
    np.testing.assert_allclose(class_weights(np.array([0, 1, 2, 4, 5, 6]), 7), [6, 6, 6, 0, 6, 6, 6])
    with pytest.raises(PatchlesionError, match="no training labels"):
        class_weights(np.array([], dtype=int), 7)


def test_loss_weighting_is_a_weighted_mean():
    from patchlesion.method.balancing import make_loss

    labels = np.array([0, 0, 0, 1])
    loss = make_loss("loss_weighting", labels, 2, 1.0, "cpu")
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([0, 1])
    per_example = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    weights = torch.tensor([4 / 3, 4.0])
    torch.testing.assert_close(loss(logits, target), (weights * per_example).sum() / weights.sum())


def test_mean_head_shapes_and_crop_logits():
    model = PatchLesionModel("tiny", 7, "mean", 9)
    crops = torch.rand(2, 9, 3, 32, 32)
    assert model(crops).shape == (2, 7)
    crop_logits = model.crop_logits(crops)
    assert crop_logits.shape == (2, 9, 7)
    torch.testing.assert_close(model.eval()(crops), model.crop_logits(crops).mean(1))


@pytest.mark.parametrize(("name", "features", "size"), [("tiny", 64, 32), ("densenet121", 1024, 64), ("inception_v3", 2048, 80), ("se_resnext50", 2048, 64)])
def test_backbones_build_forward_and_backward(name, features, size):
    torch.manual_seed(0)
    backbone, n_features = build_backbone(name)
    assert n_features == features == BACKBONES[name].n_features
    out = backbone(torch.rand(2, 3, size, size))
    assert out.shape == (2, features)
    out.sum().backward()
    assert all(p.grad is not None for p in backbone.parameters() if p.requires_grad)


def test_densenet_features_keep_norm5_without_final_relu():
    backbone, _ = build_backbone("densenet121")
    backbone.eval()
    out = backbone(torch.rand(1, 3, 64, 64))
    assert (out < 0).any(), "a ReLU after norm5 would make every pooled feature non-negative"


def _old_densenet_key(key: str) -> str:
    # the released torchvision checkpoint spells 'norm1' as 'norm.1' (see backbones._DENSENET_OLD_KEY)
    import re

    return re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key)


@pytest.mark.parametrize("name", ["densenet121", "inception_v3", "se_resnext50"])
def test_pretrained_backbones_load_the_cached_imagenet_file(name, tmp_path, monkeypatch):
    import hashlib

    import pretrainedmodels
    from torchvision.models import densenet121, inception_v3

    from patchlesion.method import weights

    torch.manual_seed(1)
    full = {
        "densenet121": lambda: densenet121(weights=None),
        "inception_v3": lambda: inception_v3(weights=None, aux_logits=True, init_weights=False),
        "se_resnext50": lambda: pretrainedmodels.__dict__["se_resnext50_32x4d"](num_classes=1000, pretrained=None),
    }[name]()
    state = full.state_dict()
    if name == "densenet121":  # the released file: old key names, no num_batches_tracked
        state = {_old_densenet_key(k): v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        assert any(".norm.1." in k for k in state)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(state, cache / "w.pth")
    digest = hashlib.sha256((cache / "w.pth").read_bytes()).hexdigest()
    monkeypatch.setitem(weights.PRETRAINED, name, weights.WeightFile(url="http://127.0.0.1:9/w.pth", file="w.pth", hash_prefix=digest[:8]))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    backbone, _ = build_backbone(name, pretrained=True)
    first_conv = next(m for m in backbone.modules() if isinstance(m, torch.nn.Conv2d))
    reference = next(m for m in full.modules() if isinstance(m, torch.nn.Conv2d))
    assert torch.equal(first_conv.weight, reference.weight)


def test_missing_weight_file_names_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(PatchlesionError, match="densenet121-a639ec97.pth"):
        build_backbone("densenet121", pretrained=True)
