"""Any timm model as a backbone (``timm:<model>``): names, the timm catalogue, training through every
kind of model, normalisation, learning rates, and SE-ResNeXt50 from pretrainedmodels or timm.

The training tests use timm's own tiny test configurations of three families (``test_resnet`` is a
timm ResNet, ``test_convnext`` a ConvNeXt, ``test_efficientnet`` an EfficientNet), so that one epoch
on a CPU takes seconds; the code path is the one of resnet18, convnext_tiny or efficientnet_b0.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from patchlesion.cli import main
from patchlesion.engine.settings import TrainSettings, per_backbone
from patchlesion.errors import PatchlesionError
from patchlesion.method.registry import UnknownChoiceError
from patchlesion.method.runs import RunSpec


@pytest.fixture(scope="module")
def timm():
    return pytest.importorskip("timm")


# --- names: torch- and timm-free -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("backbone", "folder"),
    [
        ("timm:efficientnet_b0", "timm.efficientnet_b0"),
        ("timm:resnet50.a1_in1k", "timm.resnet50.a1_in1k"),
        ("timm:convnext_tiny.fb_in22k_ft_in1k", "timm.convnext_tiny.fb_in22k_ft_in1k"),
    ],
)
def test_timm_run_names_are_file_names_and_parse_back(backbone, folder):
    spec = RunSpec(backbone, "ordered", 9, attention="end", patch_dropout=0.1, normalisation="model")
    assert spec.name == f"{folder}-ordered-nc9-mean-loss_weighting-k1-att_end-pd0.1-norm_model"
    assert ":" not in spec.name and RunSpec.from_name(spec.name) == spec


def test_other_spellings_of_a_timm_backbone_are_rejected_with_the_right_one():
    with pytest.raises(PatchlesionError, match=r"write it as 'timm\.resnet18-multi_crop-nc9-mean-none'"):
        RunSpec.from_name("timm:resnet18-multi_crop-nc9-mean-none")  # the config's spelling, not the folder's
    with pytest.raises(PatchlesionError, match=r"timm:resnet18"):
        RunSpec("timm.resnet18")  # the folder's spelling, not the config's
    for bad in ("timm:ResNet18", "timm:resnet.a.b", "timm:", "timm:res net"):
        with pytest.raises(PatchlesionError, match="lower-case"):
            RunSpec(bad)


def test_learning_rate_per_backbone_with_the_timm_default():
    rates = {"densenet121": 1.25e-5, "se_resnext50": 2e-5, "timm": 1e-4, "timm:convnext_tiny": 3e-4}
    assert per_backbone(rates, "densenet121") == 1.25e-5
    assert per_backbone(rates, "timm:convnext_tiny") == 3e-4  # its own entry first
    assert per_backbone(rates, "timm:resnet18") == 1e-4  # then the default of every timm model
    assert per_backbone(rates, "timm:legacy_seresnext50_32x4d") == 2e-5  # SE-ResNeXt50 from timm: the paper's rate
    with pytest.raises(PatchlesionError, match=r"'learning_rate'.*'timm:resnet18'.*a 'timm' entry"):
        per_backbone({"densenet121": 1.25e-5}, "timm:resnet18")
    with pytest.raises(PatchlesionError, match=r"no entry for backbone 'inception_v3'; add one\.$"):
        per_backbone(rates, "inception_v3")
    config = {**{f.name: f.default for f in TrainSettings.__dataclass_fields__.values()}, "learning_rate": rates, "pretrained": True}
    settings = TrainSettings.from_config(config, "timm:resnet18")
    assert settings.learning_rate == 1e-4 and settings.pretrained  # a timm model starts from its ImageNet weights


# --- the timm catalogue and the optional extra -----------------------------------------------------


def test_unknown_timm_models_and_tags_are_errors_that_suggest_names(timm):
    from patchlesion.method.backbones import BACKBONES

    with pytest.raises(UnknownChoiceError, match=r"unknown timm model 'resnet180'; did you mean resnet18"):
        RunSpec("timm:resnet180").check_registries()
    with pytest.raises(UnknownChoiceError, match=r"no pretrained tag 'bogus'; choose one of .*a1_in1k"):
        BACKBONES.check("timm:resnet18.bogus")
    assert "timm:resnet18" in BACKBONES and "timm:resnet180" not in BACKBONES and "tiny" in BACKBONES
    assert "timm:resnet18" not in BACKBONES.names()  # the catalogue is timm's; the registry lists its own


def test_a_timm_backbone_without_timm_installed_names_the_extra(monkeypatch, capsys, tmp_path):
    from patchlesion.method.backbones import BACKBONES

    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
    monkeypatch.setattr(BACKBONES, "_members", {})
    with pytest.raises(PatchlesionError, match=r'needs the timm package, an optional extra: pip install -e "\.\[timm\]"'):
        RunSpec("timm:resnet18").check_registries()
    args = ["train", "--index", "i.csv", "--split", "s.csv", "--fold", "1", "--run", "timm.resnet18-multi_crop-nc4-mean-none",
            "--out-dir", str(tmp_path / "out"), "--device", "cpu"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("patchlesion train: error: backbone 'timm:resnet18' needs the timm package")
    assert not (tmp_path / "out").exists()


def test_the_core_neither_needs_nor_imports_timm():
    code = (
        "import sys; import patchlesion.cli, patchlesion.engine.training, patchlesion.method.model as m, patchlesion.method.runs as r\n"
        "assert 'timm' not in sys.modules, 'timm imported by the core'\n"
        "sys.modules['timm'] = None\n"  # and works where timm cannot be imported
        "import torch; net = m.build_model(r.RunSpec('tiny', 'ordered', 4, attention='dual'), 7)\n"
        "print(tuple(net(torch.rand(2, 4, 3, 16, 16)).shape))"
    )
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(2, 7)"


# --- training through every kind of model -------------------------------------------------------------

FAMILIES = {"test_resnet": "ResNet", "test_convnext": "ConvNeXt", "test_efficientnet": "EfficientNet", "test_vit": "VisionTransformer"}
RUNS = {
    "initial attention": "ordered-nc4-mean-loss_weighting-k1-att_initial-pd0.25",
    "end attention": "ordered-nc4-mean-loss_weighting-k1-att_end",
    "multi-crop": "multi_crop-nc4-mean-loss_weighting-k1",
}
SETTINGS = ["--epochs", "1", "--batch-size", "8", "--plain-batch-size", "8", "--learning-rate", "0.001", "--lr-halving-epochs",
            "--validation-every", "1", "--image-size", "64", "48", "--crop-size", "32", "--device", "cpu", "--threads", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("timm")
    assert main(["synthesize", "--out", str(root / "data"), "--n-images", "70", "--image-size", "64", "48", "--seed", "3"]) == 0
    assert main(["index", "--data-dir", str(root / "data"), "--out", str(root / "index.csv")]) == 0
    assert main(["split", "--index", str(root / "index.csv"), "--out", str(root / "split.csv")]) == 0
    return root


@pytest.mark.parametrize("run", list(RUNS.values()), ids=list(RUNS))
@pytest.mark.parametrize("model", list(FAMILIES))
def test_a_timm_backbone_trains_an_epoch_with_the_feature_size_timm_reports(timm, data, model, run):
    from patchlesion.method.model import build_model

    name = f"timm.{model}-{run}"
    out = data / name
    args = ["train", "--index", str(data / "index.csv"), "--split", str(data / "split.csv"), "--fold", "2", "--run", name,
            "--out-dir", str(out)]  # fmt: skip
    assert main(args + SETTINGS) == 0
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [1] and history["val_mc_sensitivity"].notna().all()
    assert json.loads((out / "run.json").read_text())["run"] == name

    reported = timm.create_model(model, num_classes=0).num_features  # timm's word, not ours
    state = torch.load(out / "model.pt", weights_only=True)
    assert state["head.classifier.weight"].shape == (7, reported)
    spec = RunSpec.from_name(name)
    net = build_model(spec, 7).eval()
    assert type(net.backbone).__name__ == FAMILIES[model] and net.backbone.num_classes == 0  # the classifier is gone
    assert (net.initial_attention is not None, net.end_attention is not None) == (spec.attention == "initial", spec.attention == "end")
    net.load_state_dict(state)  # the checkpoint is a model of this run
    assert net.features(torch.rand(2, 4, 3, 32, 32)).shape == (2, 4, reported)


# --- normalisation: the backbone's own statistics -------------------------------------------------------


def test_model_normalisation_takes_the_statistics_of_the_backbones_weights(timm):
    from patchlesion.method.backbones import BACKBONES
    from patchlesion.method.model import PatchLesionModel

    for model in ("test_resnet", "test_efficientnet"):  # (0.5, 0.5, 0.5) and ImageNet's in timm's configuration
        config = timm.data.resolve_model_data_config(timm.create_model(model))
        net = PatchLesionModel(f"timm:{model}", 7, "mean", 4, normalisation="model")
        assert net.input_mean.flatten().tolist() == pytest.approx(config["mean"])
        assert net.input_std.flatten().tolist() == pytest.approx(config["std"])
    assert BACKBONES["inception_v3"].mean == BACKBONES["inception_v3"].std == (0.5, 0.5, 0.5)  # torchvision's port from TF
    assert BACKBONES["densenet121"].mean == (0.485, 0.456, 0.406) and BACKBONES["tiny"].mean is None

    torch.manual_seed(0)
    raw = PatchLesionModel("timm:test_resnet", 7, "mean", 4, attention="initial", normalisation="none").eval()
    torch.manual_seed(0)
    own = PatchLesionModel("timm:test_resnet", 7, "mean", 4, attention="initial", normalisation="model").eval()
    crops = torch.rand(2, 4, 3, 32, 32)
    assert not torch.allclose(own(crops), raw(crops))
    torch.testing.assert_close(own(crops), raw((crops - 0.5) / 0.5))
    assert PatchLesionModel("tiny", 7, "mean", 4, normalisation="model").input_mean is None  # tiny: raw [0, 1] input


# --- SE-ResNeXt50 from pretrainedmodels or from timm ----------------------------------------------------


def _randomised(net: torch.nn.Module, seed: int) -> dict:
    """Every parameter and buffer of ``net`` drawn at random (variances positive), as a state dict."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in net.state_dict().items():
        if value.is_floating_point():
            value = torch.rand(value.shape, generator=generator) + 0.5 if "running_var" in key else torch.randn(value.shape, generator=generator) * 0.1
        state[key] = value
    return state


def test_se_resnext50_from_pretrainedmodels_and_from_timm_is_one_network(timm):
    import pretrainedmodels

    from patchlesion.method.backbones import build_backbone

    # The whole networks: the same parameter names and shapes, so a state dict maps one to one.
    cadene = pretrainedmodels.__dict__["se_resnext50_32x4d"](num_classes=1000, pretrained=None).state_dict()
    ported = timm.create_model("legacy_seresnext50_32x4d").state_dict()
    assert list(cadene) == list(ported) and all(cadene[k].shape == ported[k].shape for k in cadene)

    # Our truncations: layer0..layer4 and average pooling (a Sequential, keys "0." .. "4.") and timm's
    # model without its classifier (keys "layer0." .. "layer4."), both 2048 features.
    paper, paper_features = build_backbone("se_resnext50")
    modern, modern_features = build_backbone("timm:legacy_seresnext50_32x4d")
    assert paper_features == modern_features == 2048
    to_timm = {key: f"layer{key.split('.', 1)[0]}.{key.split('.', 1)[1]}" for key in paper.state_dict()}
    assert sorted(to_timm.values()) == sorted(modern.state_dict())  # one to one: no key left over on either side
    state = _randomised(paper, seed=0)
    paper.load_state_dict(state)
    modern.load_state_dict({to_timm[key]: value for key, value in state.items()})

    crops = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(modern.eval()(crops), paper.eval()(crops), rtol=0, atol=1e-5)
        # training mode too: batch statistics, and no dropout in either
        torch.testing.assert_close(modern.train()(crops), paper.train()(crops), rtol=0, atol=1e-5)


def test_a_crop_size_the_backbone_cannot_take_is_refused_at_planning_and_by_train(timm, tmp_path, capsys):
    from patchlesion.method.backbones import BACKBONES

    mixer = BACKBONES["timm:mixer_b16_224"]  # timm: fixed_input_size, and its class has no dynamic_img_size
    assert mixer.fixed_crop_size == 224 and BACKBONES["timm:resnet18"].fixed_crop_size is None
    mixer.check_crop_size(224)
    with pytest.raises(PatchlesionError, match=r"takes only 224-pixel crops \(its input size is fixed\), not crop_size 48; set crop_size to 224"):
        mixer.check_crop_size(48)
    vit = BACKBONES["timm:vit_tiny_patch16_224"]  # fixed in timm's configuration, built with dynamic_img_size: multiples of 16
    assert (vit.fixed_crop_size, vit.crop_multiple) == (None, 16)
    vit.check_crop_size(48)
    with pytest.raises(PatchlesionError, match=r"multiple of its patch size 16, not crop_size 50; set crop_size to 48, 64\."):
        vit.check_crop_size(50)
    with pytest.raises(PatchlesionError, match=r"backbone inception_v3 needs crops of at least 75 pixels, not crop_size 48"):
        BACKBONES["inception_v3"].check_crop_size(48)
    BACKBONES["inception_v3"].check_crop_size(75)
    # a training job refuses it before it reads or writes anything
    code = main(["train", "--index", "none.csv", "--split", "none.csv", "--fold", "1", "--run", "inception_v3-multi_crop-nc9-mean-loss_weighting-k1",
                 "--out-dir", str(tmp_path / "run"), "--crop-size", "48", "--image-size", "160", "120"])  # fmt: skip
    assert code == 2 and "needs crops of at least 75 pixels" in capsys.readouterr().err and not (tmp_path / "run").exists()
    # and the workflow at planning, naming the key
    from test_workflow import ROOT, snakemake

    result = snakemake("-n", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path), "--config", "preset=demo",
                       "backbones=[timm:mixer_b16_224]")  # fmt: skip
    assert result.returncode == 2 and "error: config key 'crop_size': backbone timm:mixer_b16_224 takes only 224-pixel crops" in result.stderr
    result = snakemake("-n", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path), "--config", "preset=demo",
                       "backbones=[timm:vit_tiny_patch16_224]")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]  # the demo's 48 px crops are 3 x 3 patches


@pytest.mark.parametrize(
    ("model", "patch", "features"),
    [("vit_tiny_patch16_224", 16, 192), ("deit_tiny_patch16_224", 16, 192), ("swin_tiny_patch4_window7_224", 4, 768)],
)
def test_a_vision_transformer_takes_crops_of_any_multiple_of_its_patch_size(timm, model, patch, features):
    from patchlesion.method import timm_backbones
    from patchlesion.method.backbones import BACKBONES, build_backbone

    assert timm_backbones.input_size_rule(f"timm:{model}") == ("multiple", patch)
    assert BACKBONES[f"timm:{model}"].crop_multiple == patch
    net, size = build_backbone(f"timm:{model}")
    assert size == features
    for side in (48, 64, 224):  # the demo's crops, another size, the pretraining size
        assert net(torch.rand(2, 3, side, side)).shape == (2, features)
    # ImageNet weights (here: another random model's, through the cache's loading path) load strictly
    # and keep the 224 px position embedding, which the forward resamples to each crop's grid
    donor = timm.create_model(model)  # with its ImageNet classifier, as a checkpoint is
    loaded = timm_backbones.build(f"timm:{model}", donor.state_dict(), "donor.pth")
    donor.reset_classifier(0)
    assert loaded.state_dict().keys() == donor.state_dict().keys()
    for name, value in donor.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, rtol=0, atol=0, msg=name)
    donor.eval(), loaded.eval()
    with torch.no_grad():  # at the pretraining size the dynamic model is the fixed one
        crops = torch.rand(1, 3, 224, 224)
        torch.testing.assert_close(loaded(crops), donor(crops), rtol=0, atol=1e-5)
        assert loaded(torch.rand(1, 3, 48, 48)).shape == (1, features)
