"""cost.csv and cost.md of a cost plan (docs/performance.md §8): the jobs of every run, the hours per
table and in total, and the measured time of every model shape, rendered by :mod:`.render`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from patchlesion.results.render import MARKDOWN, Column, Table, Text, render

__all__ = ["KIND_NAMES", "TIME_LIMIT_NOTE", "duration", "hours", "longest_table", "table_label", "write_cost_plan"]


def hours(value: float) -> str:
    """Hours with three significant figures at least: 0.0123, 1.23, 12.3, 1234."""
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def duration(hours_: float) -> str:
    """A time span for people, three significant figures: ``38.7 s``, ``12.5 min``, ``9.12 h``, ``1234 h``."""
    seconds = hours_ * 3600
    if float(f"{seconds:.3g}") < 60:  # compared as shown: 59.99 s is "1 min", not "60 s"
        return f"{seconds:.3g} s"
    if float(f"{seconds / 60:.3g}") < 60:
        return f"{seconds / 60:.3g} min"
    return f"{hours(hours_)} h"


def table_label(name: str) -> str:
    """``Table II`` for a table of the grid, a figure's or the total's name as it is."""
    return name if name.startswith("fig") or name == "total" else f"Table {name}"


def summary_table(summary: pd.DataFrame, projection: str, notes: Sequence[str] = ()) -> Table:
    """Per table and in total: runs, jobs by kind, device-hours and wall-clock hours."""
    columns = [Column("Table", align="l"), Column("Runs"), Column("Training jobs"), Column("Evaluation jobs"),
               Column("Official-test jobs"), Column("Device-hours"), Column(f"Wall-clock h ({projection})")]  # fmt: skip
    counts = ("runs", "train_jobs", "evaluate_jobs", "official_test_jobs")
    rows = [
        [Text(table_label(r.table)), *(Text(getattr(r, c)) for c in counts), Text(hours(r.device_hours)), Text(hours(r.wall_hours))]
        for r in summary.itertuples()
    ]
    return Table("Cost plan per table", columns, rows, notes=list(notes))


def shapes_table(shapes: pd.DataFrame) -> Table:
    """The measured time of every model shape: training step, checkpoint, evaluation batch."""
    columns = [Column("Shape", align="l"), Column("Job kind", align="l"), Column("Images per batch"), Column("Seconds"), Column("Timed")]
    rows = [[Text(r.shape), Text(r.what), Text(r.images), Text(f"{r.seconds:.4g}"), Text(r.timed)] for r in shapes.itertuples()]
    return Table("Measured times per model shape", columns, rows)


#: What a cluster's time limit must hold, said under the longest jobs (docs/running.md §3).
TIME_LIMIT_NOTE = (
    "A time limit (SLURM's `runtime` in profiles/slurm/config.yaml, minutes) must hold a whole evaluation or official-test job, "
    "which starts over when it is cut off; a training job resumes from its last finished epoch on the next attempt, so its limit "
    "must hold at least one epoch and the start-up, and the attempts together (`retries` + 1) the whole job."
)

#: Job kinds in the order plans name them, with the words they are named by.
KIND_NAMES = {"train": "training", "evaluate": "evaluation", "official_test": "official test"}


def longest_table(longest: pd.DataFrame, projection: str) -> Table:
    """The longest single job of each kind, in wall-clock hours under the projection."""
    columns = [Column("Job kind", align="l"), Column("Table", align="l"), Column("Run", align="l"),
               Column(f"Wall clock ({projection})"), Column("Per epoch")]  # fmt: skip
    rows = [
        [Text(KIND_NAMES[r.kind].capitalize()), Text(table_label(r.table)), Text(r.run), Text(duration(r.hours)),
         Text(duration(r.epoch_hours) if r.kind == "train" else "")]  # fmt: skip
        for r in longest.itertuples()
    ]
    return Table("Longest job of each kind", columns, rows, notes=[TIME_LIMIT_NOTE])


def write_cost_plan(
    jobs: pd.DataFrame, summary: pd.DataFrame, shapes: pd.DataFrame, projection: str, notes: Sequence[str],
    csv_path: str | Path | None, markdown_path: str | Path | None, last_line: str, longest: pd.DataFrame | None = None,
) -> None:  # fmt: skip
    """cost.csv (one row per job kind of each run) and cost.md (per table, the longest jobs, per shape,
    the notes and the grid line)."""
    if csv_path is not None:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        jobs.to_csv(csv_path, index=False, float_format="%.3f")
    if markdown_path is not None:
        text = "# Cost plan\n\n" + render(summary_table(summary, projection, notes), MARKDOWN) + "\n"
        if longest is not None and len(longest):
            text += render(longest_table(longest, projection), MARKDOWN) + "\n"
        text += render(shapes_table(shapes), MARKDOWN) + f"\n`{last_line}`\n"
        Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown_path).write_text(text)
