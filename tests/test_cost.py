"""The cost plan (docs/performance.md §8): its arithmetic against numbers worked by hand from injected
step times, the grid the workflow passes, the measurement on the CPU and the command."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from patchlesion.cli import main
from patchlesion.engine.cost import (
    CostModel,
    FoldSizes,
    Projection,
    StepTimes,
    budget_advice,
    fold_sizes,
    grid_line,
    longest_jobs,
    longest_line,
    summarise,
)  # fmt: skip
from patchlesion.engine.grid import Grid, GridTable, OfficialTest
from patchlesion.engine.settings import TrainSettings
from patchlesion.errors import PatchlesionError
from patchlesion.results.costs import duration

ROOT = Path(__file__).resolve().parents[1]
A = "tiny-multi_crop-nc9-mean-loss_weighting-k1"  # plain: trains on one crop, batch plain_batch_size = 5
B = "tiny-ordered-nc9-mean-loss_weighting-k1-att_initial-pd0.1"  # patch model: 9 crops, batch_size = 4
C = "tiny-multi_crop-nc9-mean-oversampling"  # same shapes as A, longer epochs
D = "tiny-ordered-nc9-mean-loss_weighting-k1-att_end-pd0.1"  # Fig. 4's own model: fold 1, not evaluated
GRID = Grid(
    (
        GridTable("II", "data", (1, 2), (A, B)),
        GridTable("V", "data", (1, 2), (A, C)),  # A is shared with Table II: priced there
        GridTable("fig4", "data", (1,), (D,), evaluate=False),
    ),
    OfficialTest("II", "test_set"),
)
SETTINGS = TrainSettings(epochs=2, batch_size=4, plain_batch_size=5, validation_every=2, image_size=(64, 48), crop_size=16)
PLAIN, PATCH, END = (("tiny", "multi_crop", 1, "mean", "none", "none", 5), ("tiny", "ordered", 9, "mean", "initial", "none", 4),
                     ("tiny", "ordered", 9, "mean", "end", "none", 4))  # fmt: skip
TIMES = StepTimes(
    train_step={PLAIN: 0.5, PATCH: 2.0, END: 3.0},
    checkpoint={("tiny", 1, "mean", "none"): 0.1, ("tiny", 9, "mean", "initial"): 0.2, ("tiny", 9, "mean", "end"): 0.3},
    # an evaluation batch: the backbone's forward over 144 crops, shared by A, B, C and D, plus each shape's rest (1.0, 4.0, 5.0 in all)
    eval_forward={("tiny", 144): 0.75},
    eval_rest={
        ("tiny", "multi_crop", 9, "mean", "none", "none", "code"): 0.25,
        ("tiny", "ordered", 9, "mean", "initial", "none", "code"): 3.25,
        ("tiny", "ordered", 9, "mean", "end", "none", "code"): 4.25,
    },
    startup={("tiny", "train"): 10.0, ("tiny", "evaluate"): 7.0},
    load_per_image=0.01,
)
# fold 1: 10 training images of 3 classes (6/2/2; oversampling: 3 x 6 = 18 positions), 4 validation, 5 test;
# fold 2: 4 training images (3/1; oversampling 2 x 3 = 6), 3 validation, 5 test. The official test set: 40 images.
FOLDS = {"data": {1: FoldSizes(np.array([0] * 6 + [1] * 2 + [2] * 2), 4, 5), 2: FoldSizes(np.array([0, 0, 0, 1]), 3, 5)}}
MODEL = CostModel(SETTINGS, TIMES, FOLDS, {"test_set": 40})

# Worked by hand: 2 epochs, validation after epochs 1 and 2, evaluation batches of 144 // 9 = 16 images.
# train = start-up 10 + 0.01 x training images + steps x t_step + 2 epochs x t_checkpoint + validation batches x t_eval
EXPECTED = {
    # A fold 1: 2 x ceil(10/5) = 4 steps, 2 x ceil(4/16) = 2 batches: 10 + 0.1 + 2 + 0.2 + 2 = 14.3
    # A fold 2: 2 x ceil(4/5) = 2 steps, 2 batches: 10 + 0.04 + 1 + 0.2 + 2 = 13.24
    ("II", A, "train"): (2, 6, 4, 27.54, 14.3),
    ("II", A, "evaluate"): (1, 0, 2, 9.0, 9.0),  # one job for both folds: 7 + 2 x ceil(5/16) x 1.0
    # B: 2 x ceil(10/4) = 6 and 2 x ceil(4/4) = 2 steps: 10 + 0.1 + 12 + 0.4 + 8 = 30.5; 10 + 0.04 + 4 + 0.4 + 8 = 22.44
    ("II", B, "train"): (2, 8, 4, 52.94, 30.5),
    ("II", B, "evaluate"): (1, 0, 2, 15.0, 15.0),  # 7 + 2 x 4.0
    # C, oversampling: 2 x ceil(18/5) = 8 and 2 x ceil(6/5) = 4 steps: 10 + 0.1 + 4 + 0.2 + 2 = 16.3; 10 + 0.04 + 2 + 0.2 + 2 = 14.24
    ("V", C, "train"): (2, 12, 4, 30.54, 16.3),
    ("V", C, "evaluate"): (1, 0, 2, 9.0, 9.0),
    # D, fold 1 only: 6 steps of 3 s: 10 + 0.1 + 18 + 0.6 + 10 = 38.7
    ("fig4", D, "train"): (1, 6, 2, 38.7, 38.7),
    # official test: one job per Table II run, 2 folds x ceil(40/16) = 6 batches: 7 + 6 x 1.0 and 7 + 6 x 4.0
    ("II", A, "official_test"): (1, 0, 6, 13.0, 13.0),
    ("II", B, "official_test"): (1, 0, 6, 31.0, 31.0),
}
TOTAL_SECONDS = sum(row[3] for row in EXPECTED.values())  # 226.72


def test_every_job_is_priced_as_worked_by_hand():
    jobs = MODEL.jobs(GRID)
    got = {(r.table, r.run, r.kind): (r.jobs, r.train_steps, r.eval_batches, r.seconds, r.longest_seconds) for r in jobs.itertuples()}
    assert set(got) == set(EXPECTED)  # A is priced once, under Table II; D is not evaluated
    for key, (n_jobs, steps, batches, seconds, longest) in EXPECTED.items():
        assert got[key][:3] == (n_jobs, steps, batches), key
        assert got[key][3:] == pytest.approx((seconds, longest)), key
    assert TOTAL_SECONDS == pytest.approx(226.72)


def test_summary_per_table_and_the_grid_line():
    projection = Projection(devices=2)
    summary = summarise(MODEL.jobs(GRID), projection).set_index("table")
    assert summary.loc["II", ["runs", "train_jobs", "evaluate_jobs", "official_test_jobs"]].tolist() == [2, 4, 2, 2]
    assert summary.loc["V", "device_hours"] == pytest.approx(39.54 / 3600)
    assert summary.loc["total", "train_jobs"] == 7 and summary.loc["total", "device_hours"] == pytest.approx(226.72 / 3600)
    # two devices: half the device-time, which is longer than the longest job (38.7 s)
    assert summary.loc["total", "wall_hours"] == pytest.approx(113.36 / 3600)
    line = grid_line(summary.reset_index(), projection)
    assert line == "grid: 7 training jobs, 0.063 device-hours, 0.0315 h wall on 2 device(s) x 1 job(s)"


@pytest.mark.parametrize(
    ("devices", "jobs_per_device", "efficiency", "wall_seconds"),
    [
        (1, 1, None, 226.72),
        (10, 1, None, 38.7),  # bounded by the longest job
        (2, 2, None, 113.36),  # not measured: two jobs per device no faster than one
        (1, 2, 0.8, 226.72 / 1.6),  # measured: 2 x 0.8 of one job's throughput
        (4, 2, 0.8, 38.7 / 0.8),  # the longest job runs at 0.8 of its lone speed
    ],
)
def test_wall_clock_on_d_devices_with_j_jobs_each(devices, jobs_per_device, efficiency, wall_seconds):
    projection = Projection(devices, jobs_per_device, efficiency)
    assert summarise(MODEL.jobs(GRID), projection).iloc[-1]["wall_hours"] == pytest.approx(wall_seconds / 3600)
    assert ("not measured" in projection.describe()) == (jobs_per_device > 1 and efficiency is None)


def test_budget_says_what_fits():
    assert budget_advice(MODEL, GRID, Projection(), 300 / 3600)[0].startswith("budget 0.0833 h: fits")
    lines = budget_advice(MODEL, GRID, Projection(), 100 / 3600)
    assert "does not fit" in lines[0]
    assert "fits on 3 device(s)" in lines[1]  # ceil(226.72 / 100)
    # without Table II, run A is priced under Table V: 39.54 + 36.54 + 38.7 = 114.78 s left (-111.94 s);
    # then dropping fig4 leaves 76.08 s, which fits (dropping Table V would leave less: 38.7 s)
    assert lines[2] == "  - or drop Table II (-0.0311 h), fig4 (-0.0107 h): 0.0211 h wall."  # 111.94 s, 38.7 s, 76.08 s
    assert "longest job alone" in budget_advice(MODEL, GRID, Projection(devices=50), 30 / 3600)[1]


def test_the_longest_job_of_each_kind_under_the_projection():
    # from EXPECTED: training D (fig4) 38.7 s, evaluation B 15.0 s, official test B 31.0 s; two jobs per
    # device at 0.9 of their lone speed: 43 s, 16.67 s and 34.44 s; D's 43 s over 2 epochs is 21.5 s each
    longest = longest_jobs(MODEL.jobs(GRID), Projection(jobs_per_device=2, efficiency=0.9), SETTINGS.epochs).set_index("kind")
    assert longest.loc["train", ["table", "run"]].tolist() == ["fig4", D]
    assert longest.loc["evaluate", ["table", "run"]].tolist() == ["II", B]
    assert longest.loc["official_test", ["table", "run"]].tolist() == ["II", B]
    assert longest["hours"].tolist() == pytest.approx([43 / 3600, 15 / 0.9 / 3600, 31 / 0.9 / 3600])
    assert longest.loc["train", "epoch_hours"] == pytest.approx(21.5 / 3600)
    assert longest_line(longest.reset_index()) == (
        f"longest jobs: training 43 s ({D}; 21.5 s per epoch), evaluation 16.7 s ({B}), official test 34.4 s ({B})"
    )
    # a grid without official-test jobs names only the kinds it has
    only_training = MODEL.jobs(Grid((GridTable("fig4", "data", (1,), (D,), evaluate=False),)))
    assert longest_line(longest_jobs(only_training, Projection(), SETTINGS.epochs)) == f"longest jobs: training 38.7 s ({D}; 19.4 s per epoch)"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(38.7, "38.7 s"), (59.99, "1 min"), (750, "12.5 min"), (3599.9, "1 h"), (9.123 * 3600, "9.12 h"), (1234.4 * 3600, "1234 h")],
)
def test_durations_are_shown_in_the_unit_that_reads_best(seconds, shown):
    assert duration(seconds / 3600) == shown


def test_fold_sizes_come_from_the_split_as_training_selects_them():
    index = pd.DataFrame({"image_id": [f"i{k}" for k in range(8)], "label": [0, 1, 2, 3, 4, 5, 6, 0]})
    split = pd.DataFrame({"image_id": index["image_id"], "part": [0, 0, 1, 1, 2, 3, 3, 3]})
    sizes = fold_sizes(index, split, 1)  # trains on parts 2 and 3, validates on part 1
    assert sizes.train_labels.tolist() == [4, 5, 6, 0] and sizes.validation == 2 and sizes.test == 2


def test_grid_reads_back_and_rejects_what_is_not_a_grid():
    assert Grid.from_json(GRID.to_json()) == GRID
    assert GRID.without("II").official_test is None and [t.name for t in GRID.without("II").tables] == ["V", "fig4"]
    with pytest.raises(PatchlesionError, match="--grid: not a grid"):
        Grid.from_json('{"tables": [{"name": "II"}]}')
    with pytest.raises(PatchlesionError, match="not of the form"):
        Grid.from_json('{"tables": [{"name": "II", "dataset": "d", "folds": [1], "runs": ["densenet"]}]}')


def test_the_workflow_passes_the_jobs_it_plans(tmp_path):
    """The grid of `snakemake cost` holds exactly the paper preset's 216 training jobs, 216 evaluated
    fold models (72 evaluation jobs) and 21 official-test jobs that `snakemake` plans (tests/test_workflow.py)."""
    command = [sys.executable, "-m", "snakemake", "cost", "--snakefile", str(ROOT / "Snakefile"), "-n", "-p",
               "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path)]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    grid = Grid.from_json(re.search(r"--grid '(\{.*?\})'", result.stdout + result.stderr).group(1))
    train = {(t.dataset, run, fold) for t in grid.tables for run in t.runs for fold in t.folds}
    evaluate = {(t.dataset, run, fold) for t in grid.tables if t.evaluate for run in t.runs for fold in t.folds}
    official = next(t for t in grid.tables if t.name == grid.official_test.table)
    assert (len(train), len(evaluate), len(official.runs)) == (216, 216, 21)
    assert grid.official_test == OfficialTest("II", "isic2018_test")


def test_an_evaluation_batch_is_the_shared_backbone_forward_plus_its_own_rest():
    """Priced by hand: the forward is looked up by backbone and crops per batch, the rest by shape."""
    e5 = "tiny-ordered-nc5-mean-loss_weighting-k1-att_initial-pd0.1"  # 144 // 5 = 28 images, 140 crops: a forward of its own
    times = StepTimes({**TIMES.train_step, ("tiny", "ordered", 5, "mean", "initial", "none", 4): 1.0},
                      {**TIMES.checkpoint, ("tiny", 5, "mean", "initial"): 0.1}, {("tiny", 144): 0.75, ("tiny", 140): 0.7},
                      {**TIMES.eval_rest, ("tiny", "ordered", 5, "mean", "initial", "none", "code"): 0.1}, TIMES.startup)  # fmt: skip
    model = CostModel(SETTINGS, times, FOLDS, {"test_set": 40})
    jobs = model.jobs(Grid((GridTable("III", "data", (1, 2), (A, B, e5)),))).set_index(["run", "kind"])["seconds"]
    # 7 s start-up + ceil(5 test images / 16) = 1 batch per fold: A 0.75 + 0.25, B 0.75 + 3.25, e5 (ceil(5/28) = 1) 0.7 + 0.1
    assert jobs[A, "evaluate"] == pytest.approx(7 + 2 * 1.0)  # one job per run: one start-up for both folds
    assert jobs[B, "evaluate"] == pytest.approx(7 + 2 * 4.0)
    assert jobs[e5, "evaluate"] == pytest.approx(7 + 2 * 0.8)


def test_each_computation_is_timed_once_under_its_first_shape():
    """Worked by hand: what is timed on each distinct shape's model (the plan's shapes table lists the same)."""
    from patchlesion.engine.steptimes import timing_tasks
    from patchlesion.method.runs import RunSpec

    names = [
        A,  # first of everything: plain training step (one crop), its checkpoint, the forward over 144 crops
        C,  # A's evaluation shape (balancing changes no shape): not a shape of its own
        "tiny-multi_crop-nc5-mean-loss_weighting-k1",  # A's training step and checkpoint; 140 crops: a forward of its own
        "tiny-multi_crop-nc16-mean-loss_weighting-k1",  # 9 x 16 = 144 crops: A's forward, only its rest
        "tiny-downsample-nc1-mean-loss_weighting-k1",  # another input strategy: its own step; the plain model's checkpoint, 144 crops
        B,  # 9 crops, initial attention: its own step and checkpoint (N x N layer); 16 x 9 = 144 crops
        D,  # B but end attention: its own step, checkpoint and rest
        "tiny-ordered-nc5-mean-loss_weighting-k1-att_initial-pd0.1",  # a 5 x 5 attention layer; 28 x 5 = 140 crops
        "tiny-ordered-nc9-gru-loss_weighting-k1-pd0.1",  # the GRU head: its own step and checkpoint
        "tiny-ordered-nc9-gru-loss_weighting-k1-pd0.1-norm_imagenet",  # normalised input: its own step and rest, the same tensors
        "densenet121-multi_crop-nc9-mean-loss_weighting-k1",  # another backbone: everything again
    ]
    tasks = timing_tasks([RunSpec.from_name(name) for name in names], SETTINGS)
    assert [(spec.name, parts) for spec, parts in tasks] == [
        (names[0], ("train", "checkpoint", "forward", "rest")),
        (names[2], ("forward", "rest")),
        (names[3], ("rest",)),
        (names[4], ("train", "rest")),
        (names[5], ("train", "checkpoint", "rest")),
        (names[6], ("train", "checkpoint", "rest")),
        (names[7], ("train", "checkpoint", "rest")),
        (names[8], ("train", "checkpoint", "rest")),
        (names[9], ("train", "rest")),
        (names[10], ("train", "checkpoint", "forward", "rest")),
    ]


def test_step_times_are_measured_through_the_jobs_code_on_the_cpu(monkeypatch):
    from patchlesion.engine import steptimes
    from patchlesion.method.runs import RunSpec

    monkeypatch.setattr(steptimes, "startup_seconds", lambda backbone, kind, device, threads=None: 1.5)
    settings = TrainSettings(batch_size=3, plain_batch_size=4, image_size=(40, 32), crop_size=16, device="cpu")
    a5 = "tiny-multi_crop-nc5-mean-loss_weighting-k1"
    # one thread per shape: on a machine with several cores, the shapes are timed side by side in other processes
    times = steptimes.measure([RunSpec.from_name(name) for name in (A, B, C, a5)], settings, steps=2, threads=1)
    # A, C and a5 share the plain training step and checkpoint; A, B and C the forward over 144 crops, a5 has 140
    assert set(times.train_step) == {("tiny", "multi_crop", 1, "mean", "none", "none", 4), ("tiny", "ordered", 9, "mean", "initial", "none", 3)}
    assert set(times.checkpoint) == {("tiny", 1, "mean", "none"), ("tiny", 9, "mean", "initial")}
    assert set(times.eval_forward) == {("tiny", 144), ("tiny", 140)} and len(times.eval_rest) == 3
    assert {count for (part, _), count in times.steps.items() if part != "checkpoint"} == {2}
    assert {count for (part, _), count in times.steps.items() if part == "checkpoint"} == {3}  # the median of three writes
    assert len(times.steps) == 2 + 2 + 2 + 3
    measured = [*times.train_step.values(), *times.checkpoint.values(), *times.eval_forward.values(), *times.eval_rest.values()]
    assert all(t > 0 for t in [*measured, times.load_per_image])
    assert times.eval_batch(RunSpec.from_name(a5)) == times.eval_forward["tiny", 140] + times.eval_rest[next(k for k in times.eval_rest if k[2] == 5)]
    assert times.startup == {("tiny", "train"): 1.5, ("tiny", "evaluate"): 1.5}


def test_shapes_are_timed_side_by_side_one_per_threads_cores_on_the_cpu_only():
    import os

    import torch

    from patchlesion.engine.steptimes import side_by_side

    cores = len(os.sched_getaffinity(0))
    assert side_by_side(torch.device("cpu"), 1) == cores
    assert side_by_side(torch.device("cpu"), 2) == max(1, cores // 2)
    assert side_by_side(torch.device("cpu"), None) == 1  # PyTorch's default: every core for one shape
    assert side_by_side(torch.device("cuda"), 1) == 1


def test_startup_probe_is_a_real_process():
    from patchlesion.engine.steptimes import startup_seconds

    assert 0 < startup_seconds("tiny", "train", "cpu", threads=1) < 300
    with pytest.raises(PatchlesionError, match="start-up probe of nonet"):
        startup_seconds("nonet", "train", "cpu")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from patchlesion.data.ham10000 import read_dataset
    from patchlesion.data.splits import stratified_split
    from patchlesion.data.synthetic import make_synthetic_ham10000

    root = tmp_path_factory.mktemp("cost")
    make_synthetic_ham10000(root / "data", n_images=70, image_size=(40, 32), seed=5)
    index = read_dataset(root / "data")
    index.to_csv(root / "index.csv", index=False)
    stratified_split(index, seed=0).to_csv(root / "split.csv", index=False)
    return root


def test_cost_command_writes_the_plan_and_ends_with_the_grid_line(tiny_data, capsys):
    grid = Grid((GridTable("II", "data", (1, 2), (A, B)),), OfficialTest("II", "held_out"))
    out = tiny_data / "plan"
    code = main(["cost", "--grid", grid.to_json(), "--index", "data", str(tiny_data / "index.csv"), "--split", "data", str(tiny_data / "split.csv"),
                 "--index", "held_out", str(tiny_data / "index.csv"), "--steps", "1", "--devices", "2", "--jobs-per-device", "2", "--budget", "100",
                 "--epochs", "3", "--image-size", "40", "32", "--crop-size", "16", "--device", "cpu", "--threads", "1",
                 "--csv", str(out / "cost.csv"), "--markdown", str(out / "cost.md")])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"grid: 4 training jobs, [0-9.]+ device-hours, [0-9.]+ h wall on 2 device\(s\) x 2 job\(s\)", printed[-1])
    assert printed[-2].startswith("budget 100 h: fits")
    time = r"[0-9.]+ (?:s|min|h)"
    assert re.fullmatch(rf"longest jobs: training {time} \(tiny-\S+; {time} per epoch\), evaluation {time} \(tiny-\S+\), "
                        rf"official test {time} \(tiny-\S+\)", printed[-3])  # fmt: skip
    jobs = pd.read_csv(out / "cost.csv")
    assert jobs.groupby("kind")["jobs"].sum().to_dict() == {"evaluate": 2, "official_test": 2, "train": 4}  # one evaluation job per run
    assert (jobs.loc[jobs["kind"] == "train", "train_steps"] % 3 == 0).all()  # 3 epochs of whole steps
    markdown = (out / "cost.md").read_text()
    assert "| total |" in markdown and "not measured" in markdown and markdown.rstrip().endswith(f"`{printed[-1]}`")
    assert "## Longest job of each kind" in markdown and "resumes from its last finished epoch" in markdown
    assert math.isclose(jobs["seconds"].sum() / 3600, float(printed[-1].split()[4]), rel_tol=0.01)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--grid": "{not json"}, "--grid: not a grid"),
        ({"--grid": "missing.json"}, "missing.json: cannot read the grid"),
        ({"--steps": "0"}, "--steps must be at least 1"),
        ({"--devices": "0"}, "devices and jobs per device must be at least 1"),
        ({"--split": None}, "Table II trains on 'data': give --index data PATH and --split data PATH"),
    ],
)
def test_cost_command_rejects_bad_input_in_one_line(tiny_data, capsys, monkeypatch, change, message):
    from patchlesion.engine import costplan

    monkeypatch.setattr(costplan, "_measure", lambda *args: pytest.fail("bad input must be rejected before anything is timed"))
    grid = Grid((GridTable("II", "data", (1,), (A,)),))
    options = {"--grid": grid.to_json(), "--index": ["data", str(tiny_data / "index.csv")], "--split": ["data", str(tiny_data / "split.csv")],
               "--steps": "1", "--devices": "1", "--device": "cpu"}  # fmt: skip
    options.update(change)
    argv = ["cost"]
    for flag, value in options.items():
        argv += [] if value is None else [flag, *([value] if isinstance(value, str) else value)]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("patchlesion cost: error:") and message in error


def test_the_cpu_warm_up_trains_a_plain_strategy_on_two_crops(monkeypatch):
    """DenseNet121's last feature map is 1 x 1 on 32-pixel crops, where batch norm cannot train on one
    crop (one value per channel); the plain strategies' warm-up step must not ask it to (two images)."""
    from patchlesion.engine import steptimes
    from patchlesion.method.runs import RunSpec

    monkeypatch.setattr(steptimes, "_TRAINED_HERE", False)
    monkeypatch.setattr(steptimes, "startup_seconds", lambda backbone, kind, device, threads=None: 1.0)
    settings = TrainSettings(batch_size=2, plain_batch_size=3, image_size=(40, 32), crop_size=32, device="cpu")
    times = steptimes.measure([RunSpec.from_name("densenet121-multi_crop-nc9-mean-loss_weighting-k1")], settings, steps=1, threads=1)
    assert list(times.train_step) == [("densenet121", "multi_crop", 1, "mean", "none", "none", 3)]
