"""Device settings: mixed precision, channels-last, torch.compile (``amp``, ``channels_last``, ``compile``)."""

from __future__ import annotations

import json

import pytest
import torch

from patchlesion.cli import main
from patchlesion.engine.accel import Acceleration, parse_switch, to_channels_last
from patchlesion.engine.settings import TrainSettings
from patchlesion.errors import PatchlesionError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_is_fp32_and_contiguous_on_the_cpu_and_mixed_channels_last_on_cuda():
    cpu = Acceleration.from_settings(TrainSettings(), CPU)
    assert (cpu.amp_dtype, cpu.channels_last, cpu.compile) == (None, False, False)
    assert cpu.describe() == {"precision": "float32", "channels_last": False, "compile": False}
    assert cpu.grad_scaler() is None
    forced = Acceleration.from_settings(TrainSettings(amp="true", channels_last=True, compile=True), CPU)
    assert (forced.amp_dtype, forced.channels_last, forced.compile) == (torch.bfloat16, True, True)
    if torch.cuda.is_available():
        cuda = Acceleration.from_settings(TrainSettings(), CUDA)
        assert cuda.channels_last and cuda.amp_dtype in (torch.bfloat16, torch.float16)
        assert (cuda.grad_scaler() is not None) == (cuda.amp_dtype == torch.float16)


def test_switches_accept_yaml_booleans_and_reject_anything_else():
    assert [parse_switch("amp", v) for v in (True, False, "AUTO", "true")] == ["true", "false", "auto", "true"]
    with pytest.raises(PatchlesionError, match="amp must be one of auto, true, false"):
        TrainSettings(amp="fast")


def test_channels_last_crops_keep_their_values():
    crops = torch.rand(2, 3, 3, 8, 8)
    converted = to_channels_last(crops)
    assert converted.shape == crops.shape and torch.equal(converted, crops)
    assert converted.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)


def test_bf16_autocast_and_channels_last_train_on_the_cpu(tmp_path):
    root = tmp_path
    assert main(["synthesize", "--out", str(root / "data"), "--n-images", "60", "--image-size", "48", "40", "--seed", "1"]) == 0
    assert main(["index", "--data-dir", str(root / "data"), "--out", str(root / "index.csv")]) == 0
    assert main(["split", "--index", str(root / "index.csv"), "--out", str(root / "split.csv")]) == 0
    args = ["train", "--index", str(root / "index.csv"), "--split", str(root / "split.csv"), "--fold", "1",
            "--run", "tiny-ordered-nc4-mean-loss_weighting-k1-att_initial-pd0.1", "--out-dir", str(root / "run"),
            "--epochs", "1", "--batch-size", "8", "--image-size", "48", "40", "--crop-size", "24", "--device", "cpu",
            "--threads", "1", "--amp", "true", "--channels-last", "true"]  # fmt: skip
    assert main(args) == 0
    run = json.loads((root / "run" / "run.json").read_text())
    assert run["acceleration"] == {"precision": "bfloat16", "channels_last": True, "compile": False}
    assert run["settings"]["amp"] == "true" and run["settings"]["channels_last"] == "true"
    state = torch.load(root / "run" / "model.pt", weights_only=True)
    assert all(value.dtype == torch.float32 for value in state.values() if value.is_floating_point())  # weights stay fp32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_step_under_autocast_and_channels_last():
    from patchlesion.method.model import build_model
    from patchlesion.method.runs import RunSpec

    spec = RunSpec(backbone="tiny", strategy="ordered", n_crops=4, attention="dual")
    accel = Acceleration.from_settings(TrainSettings(), CUDA)
    model = build_model(spec, 7).to(CUDA)
    forward, scaler = accel.prepare(model), accel.grad_scaler()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    crops = accel.input(torch.rand(3, 4, 3, 32, 32, device=CUDA))
    with accel.autocast():
        loss = torch.nn.functional.cross_entropy(forward(crops), torch.tensor([0, 1, 2], device=CUDA))
    accel.backward_step(loss, optimizer, scaler)
    assert torch.isfinite(loss) and next(model.parameters()).dtype == torch.float32


@pytest.mark.slow
def test_compile_option_trains(tmp_path):
    """torch.compile needs a C++ compiler on the CPU and takes a minute; marked slow."""
    root = tmp_path
    assert main(["synthesize", "--out", str(root / "data"), "--n-images", "60", "--image-size", "48", "40", "--seed", "1"]) == 0
    assert main(["index", "--data-dir", str(root / "data"), "--out", str(root / "index.csv")]) == 0
    assert main(["split", "--index", str(root / "index.csv"), "--out", str(root / "split.csv")]) == 0
    args = ["train", "--index", str(root / "index.csv"), "--split", str(root / "split.csv"), "--fold", "1",
            "--run", "tiny-multi_crop-nc9-mean-loss_weighting-k1", "--out-dir", str(root / "run"), "--epochs", "1",
            "--batch-size", "8", "--image-size", "48", "40", "--crop-size", "24", "--device", "cpu", "--compile"]  # fmt: skip
    assert main(args) == 0
    state = torch.load(root / "run" / "model_last.pt", weights_only=True)
    assert not any(key.startswith("_orig_mod.") for key in state)  # saved from the model, not the compiled wrapper
