"""The cost plan of an experiment grid (docs/performance.md §8): the device-hours of every training,
evaluation and official-test job, and the wall-clock hours on D devices with J jobs per device,
from step times measured on this machine (:mod:`patchlesion.engine.steptimes`); nothing is trained.

The workflow says which jobs the grid has (:class:`Grid`, built in ``workflow/rules/common.smk`` by
the functions that plan the jobs themselves); the fold sizes come from the split; this module
multiplies. One job's seconds (``t_*`` measured per model shape, counts from the split):

* train (run, fold) = start-up + t_load x n_train
  + epochs x (steps x t_step + t_checkpoint) + validations x batches(n_val) x t_eval
* evaluate (run, fold) = start-up + batches(n_test) x t_eval
* official test (run) = start-up + folds x batches(n_official) x t_eval

where steps = ceil(positions per epoch / images per batch), the positions per epoch being the
sampler's (oversampling: C x the largest class), batches(n) = ceil(n / images per evaluation batch)
and t_eval = t_forward + t_rest: the backbone's forward over the batch's crops, measured once per
backbone and crops per batch (:func:`forward_shape`), and the rest of the batch (input crops,
attention, head), measured per shape (:func:`evaluation_shape`). Device-hours are the jobs' seconds summed, each job alone on a device. With D devices and J
jobs per device, each job keeping the fraction E of its lone speed (E = 1/J unless measured: J jobs
on one device are then no faster together than one), the wall-clock hours are
max(device-hours / (D x J x E), longest job / E).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from patchlesion.data.splits import select
from patchlesion.engine.grid import Grid
from patchlesion.engine.inference import evaluation_batch_images
from patchlesion.engine.settings import TrainSettings
from patchlesion.errors import PatchlesionError
from patchlesion.method.balancing import EpochSampler
from patchlesion.method.runs import RunSpec
from patchlesion.method.strategies import get_strategy
from patchlesion.results.costs import KIND_NAMES, duration, hours, table_label

__all__ = [
    "CostModel",
    "FoldSizes",
    "Projection",
    "StepTimes",
    "budget_advice",
    "checkpoint_shape",
    "distinct_shapes",
    "evaluation_shape",
    "fold_sizes",
    "forward_shape",
    "grid_line",
    "longest_jobs",
    "longest_line",
    "summarise",
    "training_shape",
]

#: The columns of cost.csv: one row per job kind of one run.
JOB_COLUMNS = ["table", "run", "kind", "folds", "jobs", "train_steps", "eval_batches", "seconds", "longest_seconds"]


@dataclass(frozen=True)
class FoldSizes:
    """What a fold's jobs cost depends on: the labels of its training images (the sampler's
    positions per epoch depend on them), its validation and test images."""

    train_labels: np.ndarray
    validation: int
    test: int


def fold_sizes(index: pd.DataFrame, split: pd.DataFrame, fold: int) -> FoldSizes:
    """The sizes of one cross-validation fold, selected as the training job selects them."""
    labels = index.set_index("image_id")["label"]
    train = select(split, fold, "train")
    return FoldSizes(labels.loc[train].to_numpy(dtype=int), len(select(split, fold, "val")), len(select(split, fold, "test")))


def training_shape(spec: RunSpec, settings: TrainSettings) -> tuple:
    """What a training step's time depends on: backbone, input strategy, crops per training image
    (1 for the plain strategies, which train on one crop, docs/method.md §3), aggregation,
    attention, input normalisation and images per batch."""
    plain = get_strategy(spec.strategy).plain
    return (spec.backbone, spec.strategy, 1 if plain else spec.n_crops, spec.aggregation, spec.attention, spec.normalisation,
            settings.images_per_batch(plain))  # fmt: skip


def checkpoint_shape(spec: RunSpec) -> tuple:
    """What a checkpoint write's time depends on: the tensors written, the model's parameters and
    Adam's two moments of each, set by the backbone, the crops per training image (1 for the plain
    model, which has no layer per crop), the head and the attention blocks (N x N each); the
    strategy, batch size and normalisation (no parameters) do not change them."""
    return (spec.backbone, 1 if get_strategy(spec.strategy).plain else spec.n_crops, spec.aggregation, spec.attention)


def evaluation_shape(spec: RunSpec) -> tuple:
    """What an evaluation batch's time besides the backbone's forward depends on: the input crops
    (strategy, NC, Single-Crop's centre crop), normalisation, attention and head (backbone: its
    feature size)."""
    return (spec.backbone, spec.strategy, spec.n_crops, spec.aggregation, spec.attention, spec.normalisation, spec.centre_crop)


def forward_shape(spec: RunSpec) -> tuple[str, int]:
    """What the backbone's forward over an evaluation batch depends on: the backbone and the crops
    per batch (NC x images per batch), all of the plan's crop size and precision; shapes that agree
    in both run the same computation there, whatever their strategy, attention or head."""
    return (spec.backbone, spec.n_crops * evaluation_batch_images(spec.n_crops))


def distinct_shapes(specs: list[RunSpec]) -> dict[tuple, RunSpec]:
    """The first run of each evaluation shape (each training shape is one of them), in order."""
    shapes: dict[tuple, RunSpec] = {}
    for spec in specs:
        shapes.setdefault(evaluation_shape(spec), spec)
    return shapes


@dataclass
class StepTimes:
    """Seconds measured on one device (:func:`patchlesion.engine.steptimes.measure`), by shape."""

    train_step: dict[tuple, float]  # training_shape -> one optimizer step, input included
    checkpoint: dict[tuple, float]  # checkpoint_shape -> one write of the resume checkpoint
    eval_forward: dict[tuple, float]  # forward_shape -> the backbone's forward over one evaluation batch
    eval_rest: dict[tuple, float]  # evaluation_shape -> the rest of one evaluation batch: input crops, attention, head
    startup: dict[tuple[str, str], float]  # (backbone, "train" or "evaluate") -> process start to a built model
    load_per_image: float = 0.0  # holding one training image resident on the device
    steps: dict[tuple[str, tuple], int] = field(default_factory=dict)  # (part, shape) -> timed steps, batches or writes

    def eval_batch(self, spec: RunSpec) -> float:
        """Seconds of one evaluation batch of ``spec``: the backbone's forward plus the rest."""
        return self.eval_forward[forward_shape(spec)] + self.eval_rest[evaluation_shape(spec)]


@dataclass(frozen=True)
class Projection:
    """How the device-hours become wall-clock hours: D devices, J jobs per device, each keeping the
    fraction ``efficiency`` of its lone speed (None: not measured, 1/J)."""

    devices: int = 1
    jobs_per_device: int = 1
    efficiency: float | None = None

    def __post_init__(self) -> None:
        if self.devices < 1 or self.jobs_per_device < 1:
            raise PatchlesionError(f"devices and jobs per device must be at least 1, got {self.devices} and {self.jobs_per_device}.")
        if self.efficiency is not None and not 0 < self.efficiency <= 1:
            raise PatchlesionError(f"efficiency must be in (0, 1], got {self.efficiency}.")

    @property
    def speed(self) -> float:
        """E: each job's fraction of its lone speed."""
        return self.efficiency if self.efficiency is not None else 1 / self.jobs_per_device

    def wall_hours(self, seconds: float, longest: float) -> float:
        """Wall-clock hours of jobs taking ``seconds`` in all (the longest ``longest``) alone on a device."""
        return max(seconds / (self.devices * self.jobs_per_device * self.speed), longest / self.speed) / 3600

    def describe(self) -> str:
        """What the projection assumes, for the plan's notes."""
        text = f"{self.devices} device(s) x {self.jobs_per_device} job(s) per device"
        if self.jobs_per_device == 1:
            return text
        if self.efficiency is None:
            return text + " (not measured: assumed the throughput of one job per device, efficiency 1/J; give the measured one)"
        return text + f" (each job at {self.efficiency:.2f} of its lone speed, as given)"


@dataclass(frozen=True)
class CostModel:
    """Prices a grid's jobs: the settings, the measured times, the folds of each training dataset
    and the number of images of each official test set."""

    settings: TrainSettings
    times: StepTimes
    folds: dict[str, dict[int, FoldSizes]]
    test_sets: dict[str, int]

    def jobs(self, grid: Grid) -> pd.DataFrame:
        """One row per job kind of each run (:data:`JOB_COLUMNS`); a job needed twice is priced once,
        under the first table that needs it."""
        rows, planned = [], set()
        for table in grid.tables:
            for run in table.runs:
                for kind in ("train", "evaluate") if table.evaluate else ("train",):
                    folds = [f for f in table.folds if (table.dataset, run, f, kind) not in planned]
                    planned.update((table.dataset, run, f, kind) for f in folds)
                    if folds:
                        rows.append(self._row(table.name, table.dataset, run, kind, folds))
        if grid.official_test and any(t.name == grid.official_test.table for t in grid.tables):
            table = next(t for t in grid.tables if t.name == grid.official_test.table)
            for run in table.runs:
                rows.append(self._row(table.name, grid.official_test.test_set, run, "official_test", list(table.folds)))
        return pd.DataFrame(rows, columns=JOB_COLUMNS)

    def _row(self, table: str, dataset: str, run: str, kind: str, folds: list[int]) -> dict:
        spec = RunSpec.from_name(run)
        if kind == "train":
            priced = [self._training(spec, dataset, fold) for fold in folds]
        else:  # one job evaluates every fold model of the run
            priced = [self._evaluation(spec, dataset, folds) if kind == "evaluate" else self._official(spec, dataset, folds)]
        return {
            "table": table, "run": run, "kind": kind, "folds": " ".join(map(str, folds)), "jobs": len(priced),
            "train_steps": sum(p[0] for p in priced), "eval_batches": sum(p[1] for p in priced),
            "seconds": sum(p[2] for p in priced), "longest_seconds": max(p[2] for p in priced),
        }  # fmt: skip

    def _sizes(self, dataset: str, fold: int) -> FoldSizes:
        try:
            return self.folds[dataset][fold]
        except KeyError:
            raise PatchlesionError(f"fold {fold} of dataset {dataset!r} is planned but no --index/--split of it was given.") from None

    def _evaluation(self, spec: RunSpec, dataset: str, folds: list[int]) -> tuple[int, int, float]:
        """(0, evaluation batches, seconds) of one evaluation job: every fold model of the run on its test part."""
        per_batch = evaluation_batch_images(spec.n_crops)
        batches = sum(math.ceil(self._sizes(dataset, fold).test / per_batch) for fold in folds)
        return 0, batches, self.times.startup[spec.backbone, "evaluate"] + batches * self.times.eval_batch(spec)

    def _training(self, spec: RunSpec, dataset: str, fold: int) -> tuple[int, int, float]:
        """(optimizer steps, evaluation batches, seconds) of one training job."""
        sizes, settings, times = self._sizes(dataset, fold), self.settings, self.times
        per_batch = evaluation_batch_images(spec.n_crops)
        shape = training_shape(spec, settings)
        positions = len(EpochSampler(spec.balancing, sizes.train_labels, generator=None))
        steps = settings.epochs * math.ceil(positions / shape[-1])
        batches = len(settings.validation_epochs()) * math.ceil(sizes.validation / per_batch)
        seconds = (
            times.startup[spec.backbone, "train"] + times.load_per_image * len(sizes.train_labels)
            + steps * times.train_step[shape] + settings.epochs * times.checkpoint[checkpoint_shape(spec)] + batches * times.eval_batch(spec)
        )  # fmt: skip
        return steps, batches, seconds

    def _official(self, spec: RunSpec, test_set: str, folds: list[int]) -> tuple[int, int, float]:
        """(0, evaluation batches, seconds) of one official-test job: every fold model on every image of ``test_set``."""
        if test_set not in self.test_sets:
            raise PatchlesionError(f"the grid has official-test jobs on {test_set!r} but no --index of it was given.")
        batches = len(folds) * math.ceil(self.test_sets[test_set] / evaluation_batch_images(spec.n_crops))
        return 0, batches, self.times.startup[spec.backbone, "evaluate"] + batches * self.times.eval_batch(spec)


def summarise(jobs: pd.DataFrame, projection: Projection) -> pd.DataFrame:
    """Per table and in total: runs, training, evaluation and official-test jobs, device-hours and
    wall-clock hours (each table's alone, under ``projection``)."""
    rows = []
    for table, part in [*jobs.groupby("table", sort=False), ("total", jobs)]:
        count = part.groupby("kind")["jobs"].sum()
        seconds, longest = float(part["seconds"].sum()), float(part["longest_seconds"].max()) if len(part) else 0.0
        rows.append({
            "table": table, "runs": part.loc[part["kind"] == "train", "run"].nunique(),
            "train_jobs": int(count.get("train", 0)), "evaluate_jobs": int(count.get("evaluate", 0)),
            "official_test_jobs": int(count.get("official_test", 0)), "device_hours": seconds / 3600,
            "wall_hours": projection.wall_hours(seconds, longest),
        })  # fmt: skip
    return pd.DataFrame(rows)


def grid_line(summary: pd.DataFrame, projection: Projection) -> str:
    """The plan's last line: ``grid: <N> training jobs, <H> device-hours, <W> h wall on <D> device(s) x <J> job(s)``."""
    total = summary.iloc[-1]
    return (
        f"grid: {int(total['train_jobs'])} training jobs, {hours(total['device_hours'])} device-hours, "
        f"{hours(total['wall_hours'])} h wall on {projection.devices} device(s) x {projection.jobs_per_device} job(s)"
    )


def longest_jobs(jobs: pd.DataFrame, projection: Projection, epochs: int) -> pd.DataFrame:
    """Per job kind, the longest single job: its table and run, and its wall-clock hours under
    ``projection`` (a job sharing its device runs at the projection's speed). What a cluster's time
    limit must allow: an evaluation or official-test job starts over when it is cut off, a training
    job resumes from its last finished epoch, so its limit needs to hold one epoch (``epoch_hours``,
    the job's hours over ``epochs``; the start-up makes the first a little longer)."""
    rows = []
    for kind in KIND_NAMES:
        part = jobs[jobs["kind"] == kind]
        if part.empty:
            continue
        row = part.loc[part["longest_seconds"].idxmax()]
        job_hours = float(row["longest_seconds"]) / projection.speed / 3600
        rows.append({"kind": kind, "table": row["table"], "run": row["run"], "hours": job_hours,
                     "epoch_hours": job_hours / epochs if kind == "train" else None})  # fmt: skip
    return pd.DataFrame(rows, columns=["kind", "table", "run", "hours", "epoch_hours"])


def longest_line(longest: pd.DataFrame) -> str:
    """``longest jobs: training <time> (<run>; <time> per epoch), evaluation <time> (<run>), ...``, each
    time in seconds, minutes or hours (:func:`patchlesion.results.costs.duration`)."""
    parts = []
    for r in longest.itertuples():
        per_epoch = f"; {duration(r.epoch_hours)} per epoch" if r.kind == "train" else ""
        parts.append(f"{KIND_NAMES[r.kind]} {duration(r.hours)} ({r.run}{per_epoch})")
    return "longest jobs: " + ", ".join(parts)


def budget_advice(model: CostModel, grid: Grid, projection: Projection, budget: float) -> list[str]:
    """Whether the grid fits ``budget`` wall-clock hours under ``projection`` and, if not, what
    would: the devices it needs, or the tables to drop (greedily: the one saving most, and last the
    one that makes it fit and keeps most)."""
    wall = _wall(model, grid, projection)
    if wall <= budget:
        return [f"budget {hours(budget)} h: fits ({hours(wall)} h wall on {projection.describe()})."]
    lines = [f"budget {hours(budget)} h: does not fit ({hours(wall)} h wall on {projection.describe()})."]
    jobs = model.jobs(grid)
    seconds, longest = float(jobs["seconds"].sum()), float(jobs["longest_seconds"].max())
    if longest / projection.speed / 3600 <= budget:
        needed = math.ceil(seconds / (budget * 3600 * projection.jobs_per_device * projection.speed))
        lines.append(f"  - it fits on {needed} device(s) x {projection.jobs_per_device} job(s);")
    else:
        lines.append(f"  - no number of devices makes it fit: its longest job alone takes {hours(longest / projection.speed / 3600)} h;")
    dropped = []
    while wall > budget and len(grid.tables) > 1:
        options = {table.name: _wall(model, grid.without(table.name), projection) for table in grid.tables}
        fitting = {name: left for name, left in options.items() if left <= budget}
        # the drop that saves most, until one drop is enough: then the one that keeps most
        name = max(fitting, key=fitting.get) if fitting else min(options, key=options.get)
        grid, saved, wall = grid.without(name), wall - options[name], options[name]
        dropped.append(f"{table_label(name)} (-{hours(saved)} h)")
    if wall <= budget:
        lines.append(f"  - or drop {', '.join(dropped)}: {hours(wall)} h wall.")
    else:
        lines.append(f"  - no subset of tables fits on {projection.devices} device(s): {table_label(grid.tables[0].name)} alone takes {hours(wall)} h;"
                     " fewer epochs or backbones would (training time is proportional to both).")  # fmt: skip
    return lines


def _wall(model: CostModel, grid: Grid, projection: Projection) -> float:
    jobs = model.jobs(grid)
    return projection.wall_hours(float(jobs["seconds"].sum()), float(jobs["longest_seconds"].max())) if len(jobs) else 0.0

