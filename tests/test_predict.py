"""`patchlesion predict`: probabilities of new images, attention weights and overlays, errors that name the file."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from patchlesion.cli import main
from patchlesion.data.images import load_indexed
from patchlesion.engine.inference import predict_probabilities
from patchlesion.engine.predict import attention_columns, attention_weights, predict_images
from patchlesion.engine.settings import TrainSettings
from patchlesion.errors import PatchlesionError
from patchlesion.method.classes import CLASSES
from patchlesion.method.model import build_model
from patchlesion.method.runs import RunSpec
from patchlesion.method.strategies import get_strategy

ATTENTION = RunSpec("tiny", strategy="ordered", n_crops=9, aggregation="mean", attention="end")
MULTI_CROP = RunSpec("tiny", strategy="multi_crop", n_crops=9, aggregation="mean")
SIZE = ["--image-size", "96", "72", "--crop-size", "32", "--device", "cpu"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _save_model(spec, path, seed=0):
    torch.manual_seed(seed)
    model = build_model(spec, len(CLASSES))
    with torch.no_grad():  # a non-trivial attention layer, so the weights differ between crops
        for module in model.modules():
            if hasattr(module, "fc") and isinstance(module.fc, torch.nn.Linear):
                module.fc.weight.normal_(0, 3.0)
    torch.save(model.state_dict(), path)
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(0)
    images = []
    for name in ("lesion_a", "lesion_b"):
        pixels = rng.integers(0, 256, size=(72, 96, 3), dtype=np.uint8)
        pixels[20:50, 30:70] //= 3  # a dark "lesion"
        Image.fromarray(pixels).save(root / f"{name}.jpg", quality=90)
        images.append(root / f"{name}.jpg")
    _save_model(ATTENTION, root / "attention.pt")
    _save_model(MULTI_CROP, root / "multi_crop.pt")
    return root, images


def _probabilities(frame):
    return frame[list(CLASSES)].to_numpy(dtype=float)


def test_attention_model_csv_json_and_overlays(files):
    root, images = files
    args = ["predict", "--run", ATTENTION.name, "--model", str(root / "attention.pt"), *map(str, images), *SIZE]
    assert main([*args, "--output", str(root / "out" / "p.csv"), "--overlay-dir", str(root / "overlays")]) == 0
    frame = pd.read_csv(root / "out" / "p.csv")
    assert list(frame.columns[: 2 + len(CLASSES)]) == ["image", "predicted_class", *CLASSES]
    assert list(frame["image"]) == [str(p) for p in images]
    assert np.allclose(_probabilities(frame).sum(axis=1), 1.0, atol=1e-4)
    assert (frame["predicted_class"] == frame[list(CLASSES)].idxmax(axis=1)).all()
    weights = frame[attention_columns(frame)].to_numpy()
    assert weights.shape == (2, 9) and ((weights > 0) & (weights < 1)).all() and weights.std() > 0.01
    for image in images:
        overlay = root / "overlays" / f"{image.stem}_attention.png"
        assert overlay.read_bytes()[:8] == PNG_SIGNATURE and overlay.stat().st_size > 1024

    assert main([*args, "--output", str(root / "p.json")]) == 0
    records = json.loads((root / "p.json").read_text())
    assert [r["image"] for r in records] == [str(p) for p in images]
    for record, row in zip(records, frame.itertuples()):
        assert sum(record[c] for c in CLASSES) == pytest.approx(1.0, abs=1e-5)
        assert record["predicted_class"] == row.predicted_class
        assert [record[f"attention_{j}"] for j in range(9)] == pytest.approx(list(weights[row.Index]), abs=1e-5)


def test_predictions_match_evaluation_and_model_attention(files):
    """predict_images = predict_probabilities on the same resized images; weights = forward's end weights."""
    root, images = files
    frame = predict_images(ATTENTION.name, root / "attention.pt", images, (96, 72), 32)
    model = build_model(ATTENTION, len(CLASSES))
    model.load_state_dict(torch.load(root / "attention.pt", weights_only=True))
    index = pd.DataFrame({"image_id": ["a", "b"], "path": [str(p) for p in images]})
    batch = load_indexed(index, ["a", "b"], (96, 72))
    expected = predict_probabilities(model, batch, ATTENTION, TrainSettings(image_size=(96, 72), crop_size=32), torch.device("cpu"))
    assert np.allclose(_probabilities(frame), expected, atol=1e-6)
    crops = get_strategy("ordered").evaluation_input(batch, ATTENTION, 32)
    _, raw = model(crops, return_attention=True)
    assert torch.allclose(attention_weights(model, crops), raw["end"])
    assert np.allclose(frame[attention_columns(frame)].to_numpy(), raw["end"].detach().numpy(), atol=1e-6)
    assert len(frame.attrs["positions"]) == 9


def test_multi_crop_model_has_probabilities_but_no_overlays(files, capsys):
    root, images = files
    args = ["predict", "--run", MULTI_CROP.name, "--model", str(root / "multi_crop.pt"), *map(str, images), *SIZE]
    assert main([*args, "--overlay-dir", str(root / "no_overlays")]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))  # CSV on stdout by default
    assert list(frame.columns) == ["image", "predicted_class", *CLASSES]
    assert np.allclose(_probabilities(frame).sum(axis=1), 1.0, atol=1e-4)
    assert not list((root / "no_overlays").glob("*.png"))
    with pytest.raises(PatchlesionError, match="no patch attention"):
        model = build_model(MULTI_CROP, len(CLASSES))
        attention_weights(model, torch.zeros(1, 9, 3, 32, 32))


def test_missing_image_is_named(files, capsys):
    root, images = files
    missing = root / "nowhere" / "ISIC_missing.jpg"
    args = ["predict", "--run", ATTENTION.name, "--model", str(root / "attention.pt"), str(images[0]), str(missing), *SIZE]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "patchlesion predict: error:" in err and str(missing) in err


def test_unreadable_image_and_model_errors_are_named(files, capsys):
    root, images = files
    broken = root / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    base = ["predict", "--run", ATTENTION.name, *SIZE]
    assert main([*base, "--model", str(root / "attention.pt"), str(broken)]) == 2
    assert str(broken) in capsys.readouterr().err
    # weights of another run (no attention block): load_state_dict fails, the model file is named
    assert main([*base, "--model", str(root / "multi_crop.pt"), str(images[0])]) == 2
    err = capsys.readouterr().err
    assert str(root / "multi_crop.pt") in err and ATTENTION.name in err
    garbage = root / "garbage.pt"
    garbage.write_bytes(b"garbage")
    assert main([*base, "--model", str(garbage), str(images[0])]) == 2
    assert str(garbage) in capsys.readouterr().err
    assert main([*base, "--model", str(root / "absent.pt"), str(images[0])]) == 2
    assert str(root / "absent.pt") in capsys.readouterr().err
