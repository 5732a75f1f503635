"""The ``patchlesion`` command line: predict with only --model (run.json beside it), bad input as one
``error:`` line with exit status 2 and nothing written, --version, -q on either side of the command,
help text and defaults of every option (issue 12)."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
from importlib.metadata import version

import numpy as np
import pytest
import torch
from PIL import Image

from patchlesion.cli import build_parser, main
from patchlesion.method.classes import CLASSES
from patchlesion.method.model import build_model
from patchlesion.method.runs import RunSpec

RUN = "tiny-ordered-nc9-mean-loss_weighting-k1-att_end"
GEOMETRY = ["--image-size", "64", "48", "--crop-size", "24"]
TRAINING = ["--epochs", "1", "--batch-size", "8", "--validation-every", "1", "--lr-halving-epochs", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny attention run trained for one epoch at 64x48 px, crop 24 (its run.json beside model.pt)."""
    root = tmp_path_factory.mktemp("cli")
    assert main(["synthesize", "--out", str(root / "data"), "--n-images", "56", "--image-size", "64", "48", "--seed", "3"]) == 0
    assert main(["index", "--data-dir", str(root / "data"), "--out", str(root / "index.csv")]) == 0
    assert main(["split", "--index", str(root / "index.csv"), "--out", str(root / "split.csv")]) == 0
    fold = ["--index", str(root / "index.csv"), "--split", str(root / "split.csv"), "--fold", "1", "--run", RUN]
    assert main(["train", *fold, "--out-dir", str(root / "run"), *GEOMETRY, *TRAINING]) == 0
    images = sorted((root / "data" / "HAM10000_images").glob("*.jpg"))[:3]
    return root, root / "run" / "model.pt", [str(p) for p in images]


def _call(args: list[str], capsys) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``patchlesion ARGS`` (argparse's errors exit by SystemExit)."""
    try:
        code = main(args)
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _error_line(args: list[str], capsys) -> str:
    """The one line a bad input gives: ``patchlesion <command>: error: ...``, exit status 2."""
    code, out, err = _call(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1, (code, out, err)
    assert lines[0].startswith(f"patchlesion {args[0]}: error: ") and "Traceback" not in err, lines[0]
    return lines[0]


def test_predict_needs_only_the_model(trained, capsys, caplog):
    """Acceptance: ``predict --model M IMAGE`` = the call with the training run, image size and crop size."""
    _, model, images = trained
    code, by_record, _ = _call(["predict", "--model", str(model), *images], capsys)
    assert code == 0 and not [r for r in caplog.records if r.levelno >= logging.WARNING]
    code, explicit, _ = _call(["predict", "--model", str(model), "--run", RUN, *GEOMETRY, *images], capsys)
    assert code == 0 and by_record == explicit
    assert by_record.splitlines()[0].startswith(f"image,predicted_class,{','.join(CLASSES)},attention_0")
    # the geometry matters: the paper's 600x450 / 224 (the old defaults) or another size predicts otherwise
    code, other, _ = _call(["predict", "--model", str(model), "--image-size", "96", "72", *images], capsys)
    assert code == 0 and other != by_record
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "image_size 96x72 differs from 64x48" in warnings[0] and "run.json" in warnings[0]


def test_predict_without_run_json_needs_the_training_values(trained, capsys, tmp_path):
    _, model, images = trained
    alone = tmp_path / "model.pt"
    shutil.copy(model, alone)
    line = _error_line(["predict", "--model", str(alone), *images], capsys)
    assert str(alone) in line and "run.json" in line and "--run, --image-size and --crop-size" in line
    line = _error_line(["predict", "--model", str(alone), "--run", RUN, *images], capsys)
    assert "pass --image-size and --crop-size" in line
    code, explicit, _ = _call(["predict", "--model", str(alone), "--run", RUN, *GEOMETRY, *images], capsys)
    code_beside, beside, _ = _call(["predict", "--model", str(model), *images], capsys)
    assert code == code_beside == 0 and explicit == beside


def test_predict_refuses_images_smaller_than_a_crop_and_warns_about_upscaling(trained, capsys, caplog, tmp_path):
    _, model, _ = trained
    tiny, small, output = tmp_path / "tiny.jpg", tmp_path / "small.jpg", tmp_path / "out" / "p.csv"
    Image.new("RGB", (10, 10), (150, 90, 70)).save(tiny)
    Image.new("RGB", (31, 30), (150, 90, 70)).save(small)  # crop 24 fits; 64/31 > 2: upscaled more than twofold
    line = _error_line(["predict", "--model", str(model), str(tiny), "--output", str(output)], capsys)
    assert f"{tiny}: 10x10 px is smaller than one 24x24 px crop" in line
    assert not output.parent.exists(), "nothing written on refusal"
    code, _, _ = _call(["predict", "--model", str(model), str(small)], capsys)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert code == 0 and len(warnings) == 1 and f"{small}: 31x30 px is upscaled 2.1-fold" in warnings[0]


def test_model_files_that_are_not_a_state_dict_of_the_run_are_named(trained, capsys, tmp_path):
    _, model, images = trained
    files = {
        "text.pt": "not a PyTorch model file", "numpy.pt": "not a PyTorch model file", "empty.pt": "empty, truncated or corrupted",
        "truncated.pt": "empty, truncated or corrupted", "pickled.pt": "holds pickled Python objects", "list.pt": "holds a list",
        "other_run.pt": "do not fit run " + RUN, "folder": "is a folder", "absent.pt": "model file not found",
    }  # fmt: skip
    (tmp_path / "text.pt").write_text("weights: none\n")
    np.save(tmp_path / "numpy.npy", np.zeros(3))  # torch.load's weights_only error tells to turn weights_only off
    (tmp_path / "numpy.npy").rename(tmp_path / "numpy.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "truncated.pt").write_bytes(model.read_bytes()[:2000])
    torch.save(torch.nn.Linear(2, 2), tmp_path / "pickled.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    torch.save(build_model(RunSpec.from_name("tiny-multi_crop-nc9-mean-loss_weighting-k1"), len(CLASSES)).state_dict(), tmp_path / "other_run.pt")
    (tmp_path / "folder").mkdir()
    for name, reason in files.items():
        line = _error_line(["predict", "--model", str(tmp_path / name), "--run", RUN, *GEOMETRY, images[0]], capsys)
        assert f"error: {tmp_path / name}: " in line and reason in line, line
        assert "weights_only" not in line
        if reason != files["other_run.pt"]:
            assert "--run" not in line and "run " + RUN not in line, f"{name}: the run is not at fault"


def test_fold_commands_name_the_file_or_value_at_fault(trained, capsys, tmp_path):
    root, model, _ = trained
    fold = ["--index", str(root / "index.csv"), "--split", str(root / "split.csv"), "--fold", "1"]
    text = tmp_path / "text.csv"
    text.write_text("hello\n")
    evaluate = ["evaluate", *fold, "--run", RUN, "--predictions", str(tmp_path / "e" / "p.csv"), "--metrics", str(tmp_path / "e" / "m.json")]
    cases = [
        (["train", *fold[:2], "--split", str(tmp_path / "none.csv"), "--fold", "1", "--run", RUN, "--out-dir", str(tmp_path / "t")],
         f"{tmp_path / 'none.csv'}: cannot read the split"),
        (["train", *fold[:2], "--split", str(text), "--fold", "1", "--run", RUN, "--out-dir", str(tmp_path / "t")],
         f"{text}: split lacks column(s) image_id, part"),
        (["train", *fold, "--run", RUN, "--out-dir", str(tmp_path / "t"), "--device", "gpu0"], "device 'gpu0' is not a device name"),
        (["train", *fold, "--run", RUN, "--out-dir", str(tmp_path / "t"), "--lr-halving-epochs", "-1"], "lr_halving_epochs must be epochs 1 or later"),
        (["train", *fold, "--run", RUN, "--out-dir", str(tmp_path / "t"), "--threads", "0"], "argument --threads: must be at least 1, got 0"),
        ([*evaluate, "--model", str(tmp_path / "absent.pt"), *GEOMETRY], f"{tmp_path / 'absent.pt'}: model file not found"),
        ([*evaluate, "--model", str(text), *GEOMETRY], f"{text}: not a PyTorch model file"),
        (["official-test", "--index", str(root / "index.csv"), "--run", RUN, "--folds", "4", "--models", str(model), "--out-dir", str(tmp_path / "o")],
         "argument --folds: invalid choice: 4"),
        (["figure4", *fold[:4], "--run", "tiny-multi_crop-nc9-mean-loss_weighting-k1", "--model", str(model), "--out", str(tmp_path / "f.png")],
         "has no patch attention"),
        (["table", "--metrics", str(root / "run" / "run.json"), "--csv", str(tmp_path / "t.csv"), "--markdown", str(tmp_path / "t.md")],
         f"{root / 'run' / 'run.json'}: has no mc_sensitivity"),
        (["report", "--results", str(tmp_path / "none"), "--dataset", "synthetic", "--out", str(tmp_path / "r.md")], "no results of dataset"),
        (["index", "--data-dir", str(root / "data"), "--out", str(text / "index.csv")], f"{text}: "),
        (["split", "--index", str(root / "index.csv"), "--seed", "-1", "--out", str(tmp_path / "s.csv")], "argument --seed: must be at least 0"),
    ]  # fmt: skip
    for args, expected in cases:
        assert expected in _error_line(args, capsys), args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.csv"], "nothing written by a refused command"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--n-images", "30"], "n_images 30 is too small: each of the 7 classes needs at least 8 images, so ask for at least 56 images"),
        (["--n-images", "-5"], "argument --n-images: must be at least 1, got -5"),
        (["--n-images", "many"], "argument --n-images: 'many' is not a whole number"),
        (["--n-images", "60", "--image-size", "0", "0"], "argument --image-size: must be at least 1, got 0"),
        (["--n-images", "60", "--image-size", "4", "6"], "image size 4x6 is too small: give at least 8x8 pixels"),
        (["--n-images", "60", "--seed", "-1"], "argument --seed: must be at least 0, got -1"),
    ],
)
def test_synthesize_bad_values_are_one_error_line(options, expected, capsys, tmp_path):
    line = _error_line(["synthesize", "--out", str(tmp_path / "out"), *options], capsys)
    assert expected in line
    assert not (tmp_path / "out").exists()


def test_version_and_quiet_on_either_side_of_the_command(capsys):
    code, out, _ = _call(["--version"], capsys)
    assert code == 0 and out == f"patchlesion {version('patchlesion')}\n"
    command = ["synthesize", "--out", "x"]
    assert build_parser().parse_args(["-q", *command]).quiet is True
    assert build_parser().parse_args([*command, "-q"]).quiet is True
    assert build_parser().parse_args([*command, "--quiet"]).quiet is True
    assert build_parser().parse_args(command).quiet is False


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    return build_parser()._subparsers._group_actions[0].choices


def test_every_option_has_help_and_shows_its_default():
    for name, parser in {"patchlesion": build_parser(), **_subparsers()}.items():
        for action in parser._actions:
            assert action.help, f"{name} {action.option_strings or action.dest}: no help text"
        text = parser.format_help()
        assert "None" not in text and "==SUPPRESS==" not in text, name
    predict, synthesize = (" ".join(_subparsers()[name].format_help().split()) for name in ("predict", "synthesize"))
    assert "--model MODEL [--run RUN]" in predict and "(the training size) (default: the value in the run.json beside --model)" in predict
    assert "(default: auto)" in predict and "(default: 600 450)" in synthesize and "same files (default: 0)" in synthesize


#: Libraries that ``patchlesion --help`` must not import (docs/performance.md §7).
HEAVY = ("torch", "pandas", "numpy", "sklearn", "scipy", "matplotlib", "PIL", "timm", "torchvision")


def _modules_after(calls: list[list[str]]) -> set[str]:
    """The :data:`HEAVY` libraries in ``sys.modules`` after ``patchlesion CALL`` for each call, in a fresh interpreter."""
    code = (
        "import sys\nfrom patchlesion.cli import main\n"
        f"for argv in {calls!r}:\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        f"print('LOADED', *sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.strip().splitlines()[-1].split()[1:])


def test_help_imports_no_heavy_library():
    """``patchlesion --help`` and every ``patchlesion COMMAND --help`` stay free of torch, pandas, numpy, matplotlib...:
    each command handler imports its modules inside its body."""
    commands = list(build_parser()._subparsers._group_actions[0].choices)
    assert _modules_after([["--help"], ["--version"], *([command, "--help"] for command in commands)]) == set()


def test_train_and_evaluate_do_not_import_matplotlib_or_scikit_learn(trained, tmp_path):
    """A training job and an evaluation job, run to the end, never load matplotlib (only figure commands
    plot) nor scikit-learn (the metrics are numpy; only `patchlesion split` needs it): each costs a job
    about a second of start-up (docs/performance.md §7)."""
    root, model, _ = trained
    fold = ["--index", str(root / "index.csv"), "--split", str(root / "split.csv"), "--fold", "1", "--run", RUN]
    train = ["-q", "train", *fold, "--out-dir", str(tmp_path / "run"), *GEOMETRY, *TRAINING]
    evaluate = ["-q", "evaluate", *fold, "--model", str(model), "--predictions", str(tmp_path / "p.csv"),
                "--metrics", str(tmp_path / "m.json"), *GEOMETRY, "--device", "cpu", "--threads", "1"]  # fmt: skip
    loaded = _modules_after([train, evaluate])
    assert (tmp_path / "run" / "model.pt").is_file() and (tmp_path / "m.json").is_file()
    assert "torch" in loaded and "matplotlib" not in loaded and "sklearn" not in loaded, loaded


def test_run_json_that_is_not_a_training_record_is_named(trained, capsys, tmp_path):
    _, model, images = trained
    shutil.copy(model, tmp_path / "model.pt")
    (tmp_path / "run.json").write_text(json.dumps({"run": RUN, "settings": {"image_size": [64, 48]}}))
    line = _error_line(["predict", "--model", str(tmp_path / "model.pt"), *images], capsys)
    assert f"{tmp_path / 'run.json'}: not a run.json of `patchlesion train`" in line and "crop_size" in line
