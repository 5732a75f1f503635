"""``patchlesion cost``: measure a grid's model shapes on this device, price its jobs and write the
plan (docs/performance.md §8). The arithmetic is :mod:`.cost`, the measurement :mod:`.steptimes`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from patchlesion.engine.cost import (
    CostModel,
    Projection,
    StepTimes,
    budget_advice,
    checkpoint_shape,
    distinct_shapes,
    evaluation_shape,
    fold_sizes,
    forward_shape,
    grid_line,
    longest_jobs,
    longest_line,
    summarise,
    training_shape,
)  # fmt: skip
from patchlesion.engine.grid import Grid
from patchlesion.engine.inference import evaluation_batch_images
from patchlesion.engine.settings import TrainSettings
from patchlesion.errors import PatchlesionError
from patchlesion.method.runs import RunSpec
from patchlesion.results.costs import hours, table_label, write_cost_plan

__all__ = ["CostPlan", "plan_cost"]

#: What the plan leaves out, said in every plan.
NOT_COUNTED = (
    "Not counted: downloads, `prepare` (decoding), tables, figures and the report (minutes in all); Snakemake's own "
    "overhead per job; reading ImageNet weights; `compile: true`'s compilation; the page cache's first read of the images."
)


@dataclass(frozen=True)
class CostPlan:
    """A priced grid: the jobs (cost.csv), the summary per table, the measured shapes, the notes, the
    lines printed (the last one :func:`patchlesion.engine.cost.grid_line`), the projection and the
    longest job of each kind."""

    jobs: pd.DataFrame
    summary: pd.DataFrame
    shapes: pd.DataFrame
    notes: list[str]
    lines: list[str]
    projection: Projection
    longest: pd.DataFrame  # the longest job of each kind (:func:`patchlesion.engine.cost.longest_jobs`)

    def write(self, csv_path: str | Path | None, markdown_path: str | Path | None) -> None:
        """cost.csv and cost.md (either may be None)."""
        write_cost_plan(self.jobs, self.summary, self.shapes, f"{self.projection.devices} x {self.projection.jobs_per_device}",
                        self.notes, csv_path, markdown_path, self.lines[-1], self.longest)  # fmt: skip


def plan_cost(
    grid: Grid, indexes: dict[str, pd.DataFrame], splits: dict[str, pd.DataFrame], settings: TrainSettings, projection: Projection,
    steps: int | None = None, threads: int | None = None, budget: float | None = None, times: StepTimes | None = None,
) -> CostPlan:  # fmt: skip
    """Price every job of ``grid`` from the fold sizes of ``splits`` (with ``indexes``' labels) and the
    step times measured on ``settings.device`` (or the given ``times``); ``budget``: wall-clock hours
    the plan says whether the grid fits into."""
    load_before = os.getloadavg()[0]
    specs = [RunSpec.from_name(run) for run in grid.runs()]
    for spec in specs:
        spec.check_registries()
    folds, test_sets = _folds(grid, indexes, splits), _test_sets(grid, indexes)  # a missing file is said before minutes of timing
    model = CostModel(settings, times or _measure(specs, settings, steps, threads), folds, test_sets)
    jobs = model.jobs(grid)
    summary = summarise(jobs, projection)
    lines = [
        f"{table_label(r.table)}: {r.runs} runs; {r.train_jobs} training, {r.evaluate_jobs} evaluation, {r.official_test_jobs} "
        f"official-test jobs; {hours(r.device_hours)} device-hours, {hours(r.wall_hours)} h wall"
        for r in summary.itertuples()
    ]  # fmt: skip
    longest = longest_jobs(jobs, projection, settings.epochs)
    lines.append(longest_line(longest))
    if budget is not None:
        lines += budget_advice(model, grid, projection, budget)
    lines.append(grid_line(summary, projection))
    measured = (
        f"Measured on {_device_text(settings, threads)}; load average {load_before:.2f} before and {os.getloadavg()[0]:.2f} after the "
        "measurement (a busy machine inflates every time). Device-hours: each job alone on a device. Wall clock: "
        f"{projection.describe()}; a run needed by several tables is priced under the first."
    )
    notes = [measured, NOT_COUNTED]
    notes += [line.strip() for line in lines if line.strip().startswith(("budget", "-"))]
    return CostPlan(jobs, summary, _shapes(model.times, specs, settings), notes, lines, projection, longest)


def _measure(specs: list[RunSpec], settings: TrainSettings, steps: int | None, threads: int | None) -> StepTimes:
    from patchlesion.engine.steptimes import measure  # torch and the models: only when measuring

    return measure(specs, settings, steps=steps, threads=threads)


def _folds(grid: Grid, indexes: dict[str, pd.DataFrame], splits: dict[str, pd.DataFrame]) -> dict:
    """The sizes of every fold the grid trains, by dataset and fold."""
    folds: dict[str, dict] = {}
    for table in grid.tables:
        if table.dataset not in indexes or table.dataset not in splits:
            raise PatchlesionError(f"{table_label(table.name)} trains on {table.dataset!r}: give --index {table.dataset} PATH and "
                                   f"--split {table.dataset} PATH.")  # fmt: skip
        for fold in table.folds:
            if fold not in folds.setdefault(table.dataset, {}):
                folds[table.dataset][fold] = fold_sizes(indexes[table.dataset], splits[table.dataset], fold)
    return folds


def _test_sets(grid: Grid, indexes: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Images of the official test set (all of its index)."""
    if grid.official_test is None:
        return {}
    test_set = grid.official_test.test_set
    if test_set not in indexes:
        raise PatchlesionError(f"the grid has official-test jobs on {test_set!r}: give --index {test_set} PATH.")
    return {test_set: len(indexes[test_set])}


def _device_text(settings: TrainSettings, threads: int | None) -> str:
    import torch

    from patchlesion.engine.accel import Acceleration, resolve_device
    from patchlesion.provenance import device_info

    device = resolve_device(settings.device)
    precision = Acceleration.from_settings(settings, device).describe()["precision"]
    thread_text = f", {threads or torch.get_num_threads()} thread(s) per job" if device.type == "cpu" else ""
    return f"{device} ({device_info(device)['device_name']}){thread_text}, {precision}, torch {torch.__version__}"


def _shapes(times: StepTimes, specs: list[RunSpec], settings: TrainSettings) -> pd.DataFrame:
    """One row per measured time, under the first shape that has it: what was timed, images (or
    crops) per batch, seconds, timed steps; and each shape's evaluation batch, backbone plus rest."""
    rows, seen = [], set()

    def add(part: str, key: tuple, shape: str, what: str, images, seconds: dict) -> None:
        if (part, key) not in seen:
            seen.add((part, key))
            rows.append({"shape": shape, "what": what, "images": images, "seconds": seconds[key], "timed": times.steps.get((part, key), "")})

    for spec in distinct_shapes(specs).values():
        train, evaluate, forward = training_shape(spec, settings), evaluation_shape(spec), forward_shape(spec)
        name, images = "-".join(map(str, evaluate)), evaluation_batch_images(spec.n_crops)
        if train in times.train_step:
            add("train", train, name, "training step", train[-1], times.train_step)
            add("checkpoint", checkpoint_shape(spec), name, "checkpoint write", "", times.checkpoint)
        add("forward", forward, name, "backbone's forward, for every shape of this backbone and crops per batch", f"{forward[1]} crops", times.eval_forward)
        add("rest", evaluate, name, "evaluation batch without the backbone's forward", images, times.eval_rest)
        rows.append({"shape": name, "what": "evaluation batch (backbone + rest)", "images": images, "seconds": times.eval_batch(spec), "timed": ""})
    rows += [{"shape": k[0], "what": f"{k[1]} job start-up", "images": "", "seconds": s, "timed": 1} for k, s in times.startup.items()]
    rows.append({"shape": "any", "what": "loading, per training image", "images": 1, "seconds": times.load_per_image, "timed": 1})
    return pd.DataFrame(rows)
