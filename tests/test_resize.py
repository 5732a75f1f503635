"""Images of another aspect ratio than the image size (config ``resize``, docs/own-data.md §3):
``stretch`` scales each side, ``crop`` cuts the largest centred box of the size's aspect ratio
first. Decoding, the decoded cache, training, prediction and the workflow's plan follow the one choice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from patchlesion.cli import main
from patchlesion.data.cache import MANIFEST_FILE, ImageCache, prepare_cache
from patchlesion.data.images import decode_file, load_images
from patchlesion.engine.settings import TrainSettings
from patchlesion.errors import PatchlesionError

ROOT = Path(__file__).resolve().parents[1]
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _bands(path: Path, size: tuple[int, int], first: int, last: int, along: str) -> Path:
    """An RGB image of ``size = (W, H)``: red up to ``first``, green up to ``last``, blue after it,
    in columns (``along="x"``) or rows (``"y"``)."""
    width, height = size
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    bands = [(slice(0, first), RED), (slice(first, last), GREEN), (slice(last, None), BLUE)]
    for where, colour in bands:
        if along == "x":
            pixels[:, where] = colour
        else:
            pixels[where] = colour
    Image.fromarray(pixels).save(path)  # PNG: lossless
    return path


@pytest.mark.parametrize(
    ("size", "first", "last", "along"),
    [
        # 300 x 100 to 4:3: the centred box is 133.3 x 100, columns 83.3-216.7; bicubic's support at a
        # 3.3x reduction reaches 6.7 px beyond it (76.6-223.4), inside the green band 60-240
        ((300, 100), 60, 240, "x"),
        # 100 x 300 to 4:3: the box is 100 x 75, rows 112.5-187.5, with support 107.5-192.5, inside 90-210
        ((100, 300), 90, 210, "y"),
    ],
)
def test_crop_keeps_the_centre_box_of_the_target_aspect_and_stretch_keeps_everything(tmp_path, size, first, last, along):
    path = _bands(tmp_path / "bands.png", size, first, last, along)
    cropped, _ = decode_file(path, (40, 30), "crop")
    assert cropped.shape == (30, 40, 3) and (cropped == GREEN).all()  # the red and blue ends are cut off
    stretched, _ = decode_file(path, (40, 30), "stretch")
    edges = (stretched[:, 0], stretched[:, -1]) if along == "x" else (stretched[0], stretched[-1])
    assert (edges[0] == RED).all() and (edges[1] == BLUE).all()  # both ends are kept, squeezed


def test_an_image_of_the_target_aspect_is_resized_alike_either_way(tmp_path):
    path = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(path)
    np.testing.assert_array_equal(decode_file(path, (40, 30), "crop")[0], decode_file(path, (40, 30), "stretch")[0])
    with pytest.raises(ValueError, match="resize must be one of stretch, crop"):
        decode_file(path, (40, 30), "pad")


def test_the_cache_records_the_resize_and_a_run_of_the_other_is_refused(tmp_path):
    path = _bands(tmp_path / "bands.png", (300, 100), 60, 240, "x")
    index = pd.DataFrame({"image_id": ["ISIC_0000001"], "path": [str(path)]})
    manifest = prepare_cache(index, (40, 30), tmp_path / "crop", resize="crop")
    assert manifest["fit"] == "crop"
    cache = ImageCache(tmp_path / "crop")
    assert cache.resize == "crop"
    cache.check((40, 30), "crop")
    assert (cache.select(["ISIC_0000001"])[:][0].permute(1, 2, 0).numpy() == GREEN).all()
    with pytest.raises(PatchlesionError, match="resized with resize 'crop' but the run uses resize 'stretch'.*--resize stretch"):
        cache.check((40, 30), "stretch")
    # a cache made before the choice existed holds stretched images
    prepare_cache(index, (40, 30), tmp_path / "old")
    record = json.loads((tmp_path / "old" / MANIFEST_FILE).read_text())
    del record["fit"]
    (tmp_path / "old" / MANIFEST_FILE).write_text(json.dumps(record))
    assert ImageCache(tmp_path / "old").resize == "stretch"
    with pytest.raises(PatchlesionError, match="resize 'bad' is unknown"):
        prepare_cache(index, (40, 30), tmp_path / "bad", resize="bad")


def test_the_setting_is_checked_and_left_out_of_the_workflows_commands_at_its_default():
    assert "--resize" not in TrainSettings().command_line("train")  # a workflow that does not use it keeps its commands
    assert "--resize crop" in TrainSettings(resize="crop").command_line("evaluate")
    assert "--resize crop" in TrainSettings(resize="crop").command_line("predict")
    with pytest.raises(PatchlesionError, match="resize must be one of stretch, crop, got 'pad'"):
        TrainSettings(resize="pad")


@pytest.fixture(scope="module")
def wide_dataset(tmp_path_factory):
    """The synthetic set at 64 x 48, padded left and right with 32 px of black to 128 x 48 (8:3)."""
    root = tmp_path_factory.mktemp("wide")
    assert main(["synthesize", "--out", str(root / "data"), "--n-images", "60", "--image-size", "64", "48", "--seed", "3"]) == 0
    for path in (root / "data").rglob("*.jpg"):
        image = Image.open(path).convert("RGB")
        wide = Image.new("RGB", (128, 48))
        wide.paste(image, (32, 0))
        wide.save(path, quality=95)
    assert main(["index", "--data-dir", str(root / "data"), "--out", str(root / "index.csv")]) == 0
    assert main(["split", "--index", str(root / "index.csv"), "--out", str(root / "split.csv")]) == 0
    return root


def test_a_model_trained_on_cropped_images_predicts_on_cropped_images(wide_dataset, tmp_path):
    run = "tiny-multi_crop-nc9-mean-loss_weighting-k1"
    train = ["train", "--index", str(wide_dataset / "index.csv"), "--split", str(wide_dataset / "split.csv"), "--fold", "1", "--run", run,
             "--out-dir", str(tmp_path / "run"), "--image-size", "64", "48", "--crop-size", "24", "--epochs", "1", "--device", "cpu",
             "--resize", "crop"]  # fmt: skip
    assert main(train) == 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["settings"]["resize"] == "crop"
    image = str(pd.read_csv(wide_dataset / "index.csv")["path"].iloc[0])
    from patchlesion.engine.predict import predict_images

    recorded = predict_images(None, tmp_path / "run" / "model.pt", [image])  # resize from run.json
    assert recorded.attrs["resize"] == "crop"
    as_trained = predict_images(None, tmp_path / "run" / "model.pt", [image], resize="crop")
    stretched = predict_images(None, tmp_path / "run" / "model.pt", [image], resize="stretch")
    classes = [c for c in recorded.columns if c not in ("image", "predicted_class")]
    np.testing.assert_array_equal(recorded[classes].to_numpy(), as_trained[classes].to_numpy())
    assert not np.array_equal(recorded[classes].to_numpy(), stretched[classes].to_numpy())
    # what the model saw: the centre 64 x 48 of the 128 x 48 image, i.e. the synthetic image without its black bands
    seen = load_images([image], (64, 48), "crop")[0]
    assert seen.float().mean() > load_images([image], (64, 48), "stretch")[0].float().mean() * 1.5
    assert torch.equal(seen, load_images([image], (64, 48), recorded.attrs["resize"])[0])


def _plan(tmp_path: Path, *config: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--snakefile", str(ROOT / "Snakefile"), "--configfile", str(ROOT / "config.yaml"),
         "--directory", str(tmp_path), "--cores", "1", "--config", "preset=demo", *config],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_workflow_plans_a_cropped_cache_of_its_own_and_passes_the_choice_to_every_model_job(tmp_path):
    default = _plan(tmp_path / "default")
    assert "--resize" not in default and "cache/160x120/manifest.json" in default and "rule prepare_crop" not in default
    cropped = _plan(tmp_path / "crop", "resize=crop")
    assert "rule prepare_crop" in cropped and "--resize crop --out results/synthetic/cache/160x120-crop" in cropped
    commands = [line.split("Shell command: ", 1)[-1] for line in cropped.splitlines() if "patchlesion " in line]
    model_jobs = [c for c in commands if c.split()[1] in ("train", "evaluate", "official-test", "figure4")]
    assert model_jobs and all("--resize crop" in c for c in model_jobs)
    assert all("cache/160x120-crop" in c for c in model_jobs if "--cache" in c)


def test_training_and_evaluation_see_the_same_cropped_pixels_from_the_cache_and_decoded(wide_dataset, tmp_path):
    cache = tmp_path / "cache"
    assert main(["prepare", "--index", str(wide_dataset / "index.csv"), "--image-size", "64", "48", "--resize", "crop", "--out", str(cache)]) == 0
    common = ["train", "--index", str(wide_dataset / "index.csv"), "--split", str(wide_dataset / "split.csv"), "--fold", "1",
              "--run", "tiny-ordered-nc4-mean-loss_weighting-k1-att_initial", "--epochs", "1", "--batch-size", "6", "--image-size", "64", "48",
              "--crop-size", "24", "--learning-rate", "0.003", "--device", "cpu", "--threads", "1"]  # fmt: skip
    assert main(common + ["--resize", "crop", "--out-dir", str(tmp_path / "decoded")]) == 0
    assert main(common + ["--resize", "crop", "--out-dir", str(tmp_path / "cached"), "--cache", str(cache)]) == 0
    assert main(common + ["--out-dir", str(tmp_path / "stretched")]) == 0
    decoded, cached, stretched = (pd.read_csv(tmp_path / name / "history.csv").drop(columns="seconds") for name in ("decoded", "cached", "stretched"))
    pd.testing.assert_frame_equal(decoded, cached)  # the same crops, so the same losses
    assert not decoded["train_loss"].equals(stretched["train_loss"])
    evaluate = ["evaluate", "--index", str(wide_dataset / "index.csv"), "--split", str(wide_dataset / "split.csv"), "--fold", "1",
                "--run", "tiny-ordered-nc4-mean-loss_weighting-k1-att_initial", "--model", str(tmp_path / "cached" / "model.pt"),
                "--image-size", "64", "48", "--crop-size", "24", "--device", "cpu", "--resize", "crop"]  # fmt: skip
    outputs = {}
    for name, extra in (("cache", ["--cache", str(cache)]), ("decoded", [])):
        out = ["--predictions", str(tmp_path / f"{name}.csv"), "--metrics", str(tmp_path / f"{name}.json")]
        assert main(evaluate + out + extra) == 0
        outputs[name] = pd.read_csv(tmp_path / f"{name}.csv")
    pd.testing.assert_frame_equal(outputs["cache"], outputs["decoded"])
