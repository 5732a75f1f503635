"""The training settings are spelled once: each TrainSettings field generates its command-line option,
its config key's value and the workflow's argument string (patchlesion.engine.settings)."""

from __future__ import annotations

import argparse
import copy
import shlex
import subprocess
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config

from patchlesion.cli import build_parser
from patchlesion.engine.settings import TrainSettings, setting
from patchlesion.errors import PatchlesionError

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "config.yaml").read_text())
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
#: The arguments each command needs besides its settings.
REQUIRED = {
    "train": ["--index", "i.csv", "--split", "s.csv", "--fold", "1", "--run", "R", "--out-dir", "out"],
    "evaluate": ["--index", "i.csv", "--split", "s.csv", "--fold", "1", "--run", "R", "--model", "m.pt", "--predictions", "p.csv",
                 "--metrics", "m.json"],
    "official-test": ["--index", "i.csv", "--run", "R", "--folds", "1", "--models", "m.pt", "--out-dir", "out"],
    "figure4": ["--index", "i.csv", "--split", "s.csv", "--run", "R", "--model", "m.pt", "--out", "f.png"],
    "predict": ["--run", "R", "--model", "m.pt", "image.jpg"],
}  # fmt: skip


def _subparser(command: str) -> argparse.ArgumentParser:
    actions = build_parser()._subparsers._group_actions[0]  # the subcommands
    return actions.choices[command]


def _options(command: str) -> set[str]:
    return {flag for action in _subparser(command)._actions for flag in action.option_strings}


def _with_preset(name: str) -> dict:
    """The config with a preset applied as the workflow does (nested keys merged, snakemake.utils.update_config)."""
    config = copy.deepcopy(CONFIG)
    update_config(config, copy.deepcopy(CONFIG["presets"][name]))
    return config


@pytest.mark.parametrize("config", [CONFIG, _with_preset("demo")], ids=["paper", "demo"])
@pytest.mark.parametrize("backbone", ["tiny", "densenet121", "inception_v3"])
def test_workflow_options_parse_back_to_the_config_settings(config, backbone):
    settings = TrainSettings.from_config(config, backbone)
    assert settings.learning_rate == config["learning_rate"][backbone]
    assert settings.pretrained == (config["pretrained"] and backbone != "tiny")
    for command, required in REQUIRED.items():
        args = build_parser().parse_args([command, *required, *shlex.split(settings.command_line(command))])
        if command == "predict":  # left out at its default, resize comes from the model's run.json (None here)
            assert args.resize is None
            args.resize = "stretch"
        assert TrainSettings.from_args(args).to_dict(command) == settings.to_dict(command), command
    train = build_parser().parse_args(["train", *REQUIRED["train"], *shlex.split(settings.command_line("train"))])
    assert TrainSettings.from_args(train) == settings


def test_every_setting_has_its_three_spellings():
    """Field -> `patchlesion train` option, config.yaml key and schema entry, option in the workflow's string."""
    everything_on = TrainSettings(pretrained=True, compile=True, resize="crop")  # resize is left out at its default
    for f in fields(TrainSettings):
        flag = "--" + f.name.replace("_", "-")
        assert flag in _options("train"), f"{f.name}: no option {flag} of patchlesion train"
        assert f.name in CONFIG, f"{f.name}: no key in config.yaml"
        assert f.name in SCHEMA["properties"] and f.name in SCHEMA["definitions"]["settings"]["properties"], f"{f.name}: not in the schema"
        assert flag in shlex.split(everything_on.command_line("train")), f"{f.name}: not in the workflow's train options"


def test_evaluation_commands_take_the_geometry_and_device_only():
    every_setting = {"--" + f.name.replace("_", "-") for f in fields(TrainSettings)}
    for command in ("evaluate", "official-test"):
        assert _options(command) & every_setting == {"--image-size", "--resize", "--crop-size", "--device", "--amp", "--channels-last"}, command
    assert _options("figure4") & every_setting == _options("predict") & every_setting == {"--image-size", "--resize", "--crop-size", "--device"}
    assert every_setting <= _options("train")


def test_a_new_setting_is_one_field():
    @dataclass(frozen=True)
    class Extended(TrainSettings):
        warmup_epochs: int = setting(0, "epochs of linear learning-rate warm-up")

    parser = argparse.ArgumentParser()
    for flag, options in Extended.cli_options("train"):
        parser.add_argument(flag, **options)
    assert Extended.from_args(parser.parse_args(["--warmup-epochs", "3"])).warmup_epochs == 3
    assert "(default: %(default)s)" not in parser.format_help() and "warm-up" in parser.format_help()
    extended = Extended.from_config({**CONFIG, "warmup_epochs": 2}, "densenet121")
    assert "--warmup-epochs 2" in extended.command_line("train") and "--warmup" not in extended.command_line("evaluate")
    assert extended.to_dict()["warmup_epochs"] == 2
    with pytest.raises(PatchlesionError, match="config key 'warmup_epochs'"):
        Extended.from_config(CONFIG, "densenet121")


def test_a_field_without_its_spellings_is_refused():
    @dataclass(frozen=True)
    class Unspelled(TrainSettings):
        warmup_epochs: int = field(default=0)

    with pytest.raises(PatchlesionError, match="warmup_epochs: declare it with setting"):
        list(Unspelled.cli_options("train"))
    with pytest.raises(PatchlesionError, match="warmup_epochs"):
        Unspelled().command_line("train")


def test_plain_models_have_their_own_batch_size():
    settings = TrainSettings(batch_size=5, plain_batch_size=16)
    assert settings.images_per_batch(plain=True) == 16 and settings.images_per_batch(plain=False) == 5
    assert settings.to_dict()["plain_batch_size"] == 16  # run.json and the checkpoint's settings hash
    assert TrainSettings().images_per_batch(plain=True) == TrainSettings().images_per_batch(plain=False) == 5
    with pytest.raises(PatchlesionError, match="plain_batch_size"):
        TrainSettings(plain_batch_size=0)


def test_the_settings_do_not_import_torch():
    """The workflow imports them while it plans (workflow/rules/common.smk)."""
    code = "import sys; import patchlesion.engine.settings; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(ROOT / "src")})
