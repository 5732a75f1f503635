"""Decoded-image cache (``patchlesion prepare``) and training input read from it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from patchlesion.cli import main
from patchlesion.data.cache import IMAGES_FILE, MANIFEST_FILE, ImageCache, prepare_cache
from patchlesion.data.images import load_indexed
from patchlesion.engine.batches import TrainingInput, image_source
from patchlesion.errors import PatchlesionError
from patchlesion.method.runs import RunSpec
from patchlesion.method.strategies import get_strategy


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    assert main(["synthesize", "--out", str(root / "data"), "--n-images", "60", "--image-size", "64", "48", "--seed", "2"]) == 0
    assert main(["index", "--data-dir", str(root / "data"), "--out", str(root / "index.csv")]) == 0
    assert main(["split", "--index", str(root / "index.csv"), "--out", str(root / "split.csv")]) == 0
    return root


def _index(dataset):
    return pd.read_csv(dataset / "index.csv")


def test_prepare_writes_the_decoded_images_in_index_order(dataset, tmp_path):
    index = _index(dataset)
    assert main(["prepare", "--index", str(dataset / "index.csv"), "--image-size", "64", "48", "--out", str(tmp_path), "--threads", "2"]) == 0
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert manifest["shape"] == [60, 48, 64, 3] and manifest["image_size"] == [64, 48] and manifest["layout"] == "NHWC"
    assert manifest["image_ids"] == list(index["image_id"])
    assert (tmp_path / IMAGES_FILE).stat().st_size == 60 * 48 * 64 * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [IMAGES_FILE, MANIFEST_FILE]  # no partial files left
    ids = list(index["image_id"].sample(frac=1.0, random_state=0))  # any order
    cached = ImageCache(tmp_path).select(ids)
    torch.testing.assert_close(cached[:], load_indexed(index, ids, (64, 48)), rtol=0, atol=0)
    assert cached[[3, 0]].shape == (2, 3, 48, 64) and torch.equal(cached[[3, 0]][1], cached[0:1][0])


def test_prepare_resizes_like_decoding(dataset, tmp_path):
    index = _index(dataset).head(7)
    prepare_cache(index, (40, 30), tmp_path)
    ids = list(index["image_id"])
    torch.testing.assert_close(ImageCache(tmp_path).select(ids)[:], load_indexed(index, ids, (40, 30)), rtol=0, atol=0)


def test_source_digest_follows_the_image_bytes(dataset, tmp_path):
    index = _index(dataset).head(5).copy()
    first = prepare_cache(index, (64, 48), tmp_path / "a")
    assert prepare_cache(index, (64, 48), tmp_path / "b")["source_sha256"] == first["source_sha256"]
    changed = tmp_path / "changed.jpg"
    Image.open(index.loc[2, "path"]).convert("RGB").rotate(180).save(changed)
    index.loc[2, "path"] = str(changed)
    third = prepare_cache(index, (64, 48), tmp_path / "c")
    assert third["source_sha256"] != first["source_sha256"]
    assert [a == b for a, b in zip(first["file_sha256"], third["file_sha256"])] == [True, True, False, True, True]


def test_cache_errors_name_the_problem_and_the_fix(dataset, tmp_path):
    index = _index(dataset).head(4)
    prepare_cache(index, (64, 48), tmp_path)
    cache = ImageCache(tmp_path)
    with pytest.raises(PatchlesionError, match="64x48 images but the run uses 32x24"):
        cache.check((32, 24))
    with pytest.raises(PatchlesionError, match="ISIC_9999999.*patchlesion prepare"):
        cache.select(["ISIC_9999999"])
    with (tmp_path / IMAGES_FILE).open("r+b") as handle:
        handle.truncate(100)
    with pytest.raises(PatchlesionError, match="not 36864 bytes"):
        ImageCache(tmp_path)
    with pytest.raises(PatchlesionError, match="manifest.*patchlesion prepare"):
        ImageCache(tmp_path / "nowhere")
    bad = index.copy()
    bad.loc[1, "path"] = str(tmp_path / "missing.jpg")
    with pytest.raises(PatchlesionError, match="missing.jpg"):
        prepare_cache(bad, (64, 48), tmp_path / "bad")
    assert not (tmp_path / "bad" / MANIFEST_FILE).exists()


@pytest.mark.parametrize(("strategy", "fields"), [("ordered", {"patch_dropout": 0.3}), ("multi_crop", {}), ("single_crop", {"n_crops": 1})])
def test_training_input_from_the_cache_equals_the_strategy_on_decoded_images(dataset, tmp_path, strategy, fields):
    index = _index(dataset)
    prepare_cache(index, (64, 48), tmp_path)
    ids = list(index["image_id"][::2])
    spec = RunSpec(backbone="tiny", strategy=strategy, **fields)
    cached = TrainingInput(image_source(index, ids, (64, 48), tmp_path), get_strategy(strategy), spec, 24, torch.device("cpu"))
    decoded = load_indexed(index, ids, (64, 48))
    ours, reference = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    for positions in (torch.tensor([3, 1, 7, 0, 5]), torch.tensor([2, 9]), torch.tensor([11, 4, 6, 8, 10])):
        expected = get_strategy(strategy).training_input(decoded[positions], spec, 24, reference)
        torch.testing.assert_close(cached(positions, ours), expected, rtol=0, atol=0)


def test_training_input_in_sample_processes_equals_in_process(dataset, tmp_path):
    index = _index(dataset)
    prepare_cache(index, (64, 48), tmp_path)
    spec = RunSpec(backbone="tiny", strategy="ordered", patch_dropout=0.3)
    source = image_source(index, list(index["image_id"]), (64, 48), tmp_path)
    plain = TrainingInput(source, get_strategy("ordered"), spec, 24, torch.device("cpu"))
    forked = TrainingInput(source, get_strategy("ordered"), spec, 24, torch.device("cpu"), processes=2)
    try:
        a, b = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
        for positions in (torch.tensor([5, 9, 1]), torch.arange(10, 17), torch.tensor([0])):  # growing batch restarts them
            torch.testing.assert_close(forked(positions, b).clone(), plain(positions, a), rtol=0, atol=0)
    finally:
        forked.close()
    assert forked._processes is None


@pytest.mark.parametrize("processes", [0, 2, 3])
def test_iterate_prefetches_the_same_batches_and_draws(dataset, tmp_path, processes):
    # batches of 5 over 2 or 3 processes (not a multiple), the last batch smaller; the pipelined
    # iteration must give exactly the batches, and leave the generator exactly where, batch-by-batch
    # calls do; leaving the loop early must leave the processes usable
    index = _index(dataset)
    prepare_cache(index, (64, 48), tmp_path)
    spec = RunSpec(backbone="tiny", strategy="ordered", patch_dropout=0.3)
    source = image_source(index, list(index["image_id"]), (64, 48), tmp_path)
    plain = TrainingInput(source, get_strategy("ordered"), spec, 24, torch.device("cpu"))
    piped = TrainingInput(source, get_strategy("ordered"), spec, 24, torch.device("cpu"), processes=processes)
    try:
        order = torch.randperm(len(index), generator=torch.Generator().manual_seed(0))[:17]
        a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        seen = 0
        for positions, crops in piped.iterate(order, 5, b):
            assert torch.equal(positions, order[seen : seen + 5])
            torch.testing.assert_close(crops, plain(positions, a), rtol=0, atol=0)
            seen += len(positions)
        assert seen == 17 and torch.equal(a.get_state(), b.get_state())
        for positions, crops in piped.iterate(order, 5, b):
            break  # abandoned with the next batch in flight
        expected = plain(order[:5], a).clone()
        if processes > 1:
            plain(order[5:10], a)  # the batch in flight drew its random numbers too
        torch.testing.assert_close(crops, expected, rtol=0, atol=0)
        torch.testing.assert_close(piped(order[:3], b), plain(order[:3], a), rtol=0, atol=0)
    finally:
        piped.close()


def test_training_input_threads_and_channels_last_do_not_change_the_crops(dataset, tmp_path):
    index = _index(dataset)
    prepare_cache(index, (64, 48), tmp_path)
    ids = list(index["image_id"])
    spec = RunSpec(backbone="tiny", strategy="ordered", patch_dropout=0.2)
    source = image_source(index, ids, (64, 48), tmp_path)
    plain = TrainingInput(source, get_strategy("ordered"), spec, 24, torch.device("cpu"))
    threaded = TrainingInput(source, get_strategy("ordered"), spec, 24, torch.device("cpu"), channels_last=True, threads=3)
    a, b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for start in range(0, 60, 5):
        positions = torch.arange(start, start + 5)
        expected = plain(positions, a).clone()
        got = threaded(positions, b)
        assert got.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_training_from_the_cache_equals_training_from_decoded_images(dataset, tmp_path):
    cache = tmp_path / "cache"
    assert main(["prepare", "--index", str(dataset / "index.csv"), "--image-size", "64", "48", "--out", str(cache)]) == 0
    common = ["train", "--index", str(dataset / "index.csv"), "--split", str(dataset / "split.csv"), "--fold", "1",
              "--run", "tiny-ordered-nc4-mean-loss_weighting-k1-att_initial-pd0.2", "--epochs", "2", "--batch-size", "6",
              "--validation-every", "1", "--lr-halving-epochs", "2", "--image-size", "64", "48", "--crop-size", "24",
              "--learning-rate", "0.003", "--device", "cpu", "--threads", "1"]  # fmt: skip
    assert main(common + ["--out-dir", str(tmp_path / "decoded")]) == 0
    assert main(common + ["--out-dir", str(tmp_path / "cached"), "--cache", str(cache)]) == 0
    decoded, cached = (pd.read_csv(tmp_path / name / "history.csv").drop(columns="seconds") for name in ("decoded", "cached"))
    pd.testing.assert_frame_equal(decoded, cached)
    run = json.loads((tmp_path / "cached" / "run.json").read_text())
    assert run["acceleration"] == {"precision": "float32", "channels_last": False, "compile": False}
    metrics = tmp_path / "m.json"
    evaluate = ["evaluate", "--index", str(dataset / "index.csv"), "--split", str(dataset / "split.csv"), "--fold", "1",
                "--run", "tiny-ordered-nc4-mean-loss_weighting-k1-att_initial-pd0.2", "--model", str(tmp_path / "cached" / "model.pt"),
                "--predictions", str(tmp_path / "p.csv"), "--metrics", str(metrics), "--image-size", "64", "48",
                "--crop-size", "24", "--device", "cpu"]  # fmt: skip
    assert main(evaluate + ["--cache", str(cache)]) == 0
    from_cache = json.loads(metrics.read_text())
    assert main(evaluate) == 0
    assert json.loads(metrics.read_text())["mc_sensitivity"] == from_cache["mc_sensitivity"]


def test_training_with_a_cache_of_another_size_stops_with_a_clear_error(dataset, tmp_path, capsys):
    prepare_cache(_index(dataset), (40, 30), tmp_path)
    args = ["train", "--index", str(dataset / "index.csv"), "--split", str(dataset / "split.csv"), "--fold", "1",
            "--run", "tiny-multi_crop-nc9-mean-loss_weighting-k1", "--out-dir", str(tmp_path / "run"), "--image-size", "64", "48",
            "--crop-size", "24", "--epochs", "1", "--device", "cpu", "--cache", str(tmp_path)]  # fmt: skip
    assert main(args) == 2
    assert "40x30 images but the run uses 64x48" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("strategy", ["ordered", "multi_crop"])
def test_cuda_training_input_from_pinned_cache_equals_cpu(dataset, tmp_path, strategy):
    index = _index(dataset)
    prepare_cache(index, (64, 48), tmp_path)
    spec = RunSpec(backbone="tiny", strategy=strategy, patch_dropout=0.3 if strategy == "ordered" else 0.0)
    source = image_source(index, list(index["image_id"]), (64, 48), tmp_path)
    cpu = TrainingInput(source, get_strategy(strategy), spec, 24, torch.device("cpu"))
    gpu = TrainingInput(source, get_strategy(strategy), spec, 24, torch.device("cuda"), channels_last=True)
    a, b = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    for start in range(0, 60, 5):
        positions = torch.arange(start, start + 5)
        expected = cpu(positions, a).clone()
        got = gpu(positions, b)
        assert got.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), expected, rtol=0, atol=1e-5)
    assert np.isfinite(got.sum().item())
