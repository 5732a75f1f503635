"""Paired-bootstrap statistics: how sure is a difference in MC-Sensitivity between two rows of a table?

Every fold model of every run is tested on the same held-out test images, so :func:`paired_bootstrap_ci`
resamples the test images once per replicate for both runs (docs/method.md §7).
:func:`reference_intervals` computes one interval per row against the reference row of the same
backbone, :func:`add_bootstrap_columns` merges them into a summarised table and
:func:`interval_column` describes the table column that shows them ("Δ MC-Sens. vs reference").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from patchlesion.errors import PatchlesionError
from patchlesion.results.render import MISSING, Cell, Column, Interval, is_missing

__all__ = [
    "BOOTSTRAP_COLUMNS",
    "add_bootstrap_columns",
    "has_bootstrap_columns",
    "interval_column",
    "paired_bootstrap_ci",
    "reference_intervals",
]

_PREDICTION_COLUMNS: tuple[str, ...] = ("image_id", "true_class", "predicted_class")

#: About this many image slots (replicates x images) are resampled at a time (bounds memory).
_CHUNK_SLOTS = 2_000_000


def _checked_ids(frame: pd.DataFrame, where: str) -> pd.Series:
    """The image ids (as str) of one fold's predictions, after checking columns, repeats and empty cells."""
    lacking = [c for c in _PREDICTION_COLUMNS if c not in frame.columns]
    if lacking:
        raise PatchlesionError(f"paired bootstrap: the predictions of {where} lack the column(s) {', '.join(lacking)}")
    frame_ids = frame["image_id"].astype(str)
    repeated = frame_ids[frame_ids.duplicated()]
    if len(repeated):
        raise PatchlesionError(f"paired bootstrap: image id {repeated.iloc[0]!r} appears twice in the predictions of {where}")
    if frame["true_class"].isna().any() or frame["predicted_class"].isna().any():
        raise PatchlesionError(f"paired bootstrap: the predictions of {where} have empty class cells")
    return frame_ids


def _aligned_correctness(
    runs: Sequence[tuple[str, Sequence[pd.DataFrame]]],
) -> tuple[np.ndarray, list[np.ndarray]]:
    """True class codes (n_images,) and, per run, a (n_folds, n_images) bool array "fold model right".

    Every frame is aligned by ``image_id`` (in sorted id order) to the first frame of the first run;
    a frame whose ids differ, repeat, or whose true classes disagree raises :class:`PatchlesionError`
    naming it.
    """
    ids: np.ndarray | None = None
    id_set: set[str] = set()
    origin = ""
    truth: np.ndarray | None = None
    correct: list[np.ndarray] = []
    for name, frames in runs:
        frames = list(frames)
        if not frames:
            raise PatchlesionError(f"paired bootstrap: run {name!r} has no fold predictions")
        rows: list[np.ndarray] = []
        for k, frame in enumerate(frames):
            where = f"run {name!r} fold {k}"
            frame_ids = _checked_ids(frame, where)
            if ids is None:
                if not len(frame_ids):
                    raise PatchlesionError(f"paired bootstrap: the predictions of {where} hold no test images")
                # sorted, so that neither row order nor argument order changes the resamples
                ids, id_set, origin = np.sort(frame_ids.to_numpy()), set(frame_ids), where
            elif set(frame_ids) != id_set:
                own = set(frame_ids)
                lost = [i for i in ids if i not in own]
                if lost:
                    raise PatchlesionError(
                        f"paired bootstrap: {where} lacks test image {lost[0]!r} that {origin} has "
                        f"({len(lost)} missing); every fold model of both runs must be tested on the same images"
                    )
                extra = [i for i in frame_ids if i not in id_set]
                raise PatchlesionError(
                    f"paired bootstrap: {where} has test image {extra[0]!r} that {origin} lacks "
                    f"({len(extra)} extra); every fold model of both runs must be tested on the same images"
                )
            aligned = frame.set_index(frame_ids).loc[ids]
            true_k = aligned["true_class"].astype(str).to_numpy()
            pred_k = aligned["predicted_class"].astype(str).to_numpy()
            if truth is None:
                truth = true_k
            elif not np.array_equal(true_k, truth):
                j = int(np.argmax(true_k != truth))
                raise PatchlesionError(
                    f"paired bootstrap: {where} gives test image {ids[j]!r} the true class {true_k[j]!r} but {origin} gives {truth[j]!r}"
                )
            rows.append(pred_k == truth)
        correct.append(np.vstack(rows))
    assert truth is not None
    _, codes = np.unique(truth, return_inverse=True)
    return codes.reshape(-1), correct


def _design(codes: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-hot true classes (n_images, K) and per-model hits (n_images, n_models * K), float64."""
    n_classes = int(codes.max()) + 1
    onehot = np.zeros((codes.size, n_classes), dtype=np.float64)
    onehot[np.arange(codes.size), codes] = 1.0
    hits = correct.T[:, :, None].astype(np.float64) * onehot[:, None, :]  # (n_images, n_models, K)
    return onehot, hits.reshape(codes.size, -1)


def _weighted_mc_sensitivity(weights: np.ndarray, onehot: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """MC-Sensitivity (0..1) of every model under every image weighting, shape (n_rep, n_models).

    ``weights[r, i]`` is how often test image i is in resample r. Per class c the recall is
    (weighted hits of class c) / (weighted images of class c); classes with no image in a resample
    are left out of the mean over classes, as ``balanced_accuracy_score`` does. All sums are of
    small integers, so they are exact in float64.
    """
    n_classes = onehot.shape[1]
    counts = weights @ onehot  # (R, K)
    correct = (weights @ hits).reshape(weights.shape[0], -1, n_classes)  # (R, M, K)
    present = counts > 0
    where = np.broadcast_to(present[:, None, :], correct.shape)
    recall = np.divide(correct, counts[:, None, :], out=np.zeros_like(correct), where=where)
    return recall.sum(axis=2) / present.sum(axis=1)[:, None]


def _resample_weights(indices: np.ndarray, n_images: int) -> np.ndarray:
    """Counts (R, n_images) of each image in each row of resample ``indices`` (R, n_images)."""
    n_rep = indices.shape[0]
    flat = (indices + n_images * np.arange(n_rep)[:, None]).ravel()
    return np.bincount(flat, minlength=n_rep * n_images).reshape(n_rep, n_images).astype(np.float64)


def paired_bootstrap_ci(
    reference: Sequence[pd.DataFrame],
    other: Sequence[pd.DataFrame],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    *,
    names: tuple[str, str] = ("reference", "other"),
) -> dict[str, Any]:
    """Confidence interval of the MC-Sensitivity difference other − reference, by a paired bootstrap over test images.

    ``reference`` and ``other`` are the per-fold test prediction frames of two runs (columns
    ``image_id``, ``true_class``, ``predicted_class``; probability columns are ignored). Every fold
    model of every run is evaluated on the same held-out test images, so the two runs' errors are
    correlated through which images are hard: the bootstrap is *paired* -- each replicate draws one
    resample of test images (with replacement) and applies it to both runs and all their folds.
    This removes the shared test-set noise from the difference and gives a much narrower, correct
    interval than resampling each run on its own. The fold-to-fold training variation enters
    through the fold models themselves (the statistic averages them), not through the resampling.

    Statistic: mean over folds of each fold model's MC-Sensitivity (mean per-class recall, classes
    absent from a resample left out as ``balanced_accuracy_score`` does), other minus reference, in
    percent points. ``delta`` is the statistic on the original test set; ``low`` and ``high`` are
    the ``(1 − level) / 2`` and ``(1 + level) / 2`` percentiles of its ``n_boot`` replicates
    (percentile method, numpy's linear interpolation). Deterministic for a given ``seed``.

    Frames are aligned by ``image_id`` (sorted, so row order does not matter and swapping the runs
    negates ``delta`` and mirrors the interval exactly); differing id sets, repeated ids or disagreeing true classes
    raise :class:`PatchlesionError` naming the run (``names``), the fold and the first offending id.

    Returns ``{"delta", "low", "high", "n_boot", "level"}``.
    """
    n_boot = int(n_boot)
    if n_boot < 1:
        raise PatchlesionError(f"paired bootstrap: n_boot must be at least 1, got {n_boot}")
    if not 0.0 < float(level) < 1.0:
        raise PatchlesionError(f"paired bootstrap: level must lie strictly between 0 and 1, got {level}")
    reference, other = list(reference), list(other)
    codes, (correct_ref, correct_other) = _aligned_correctness([(names[0], reference), (names[1], other)])
    n_ref = correct_ref.shape[0]
    onehot, hits = _design(codes, np.vstack([correct_ref, correct_other]))
    n_images = codes.size

    def statistic(weights: np.ndarray) -> np.ndarray:
        mcs = _weighted_mc_sensitivity(weights, onehot, hits)
        return 100.0 * (mcs[:, n_ref:].mean(axis=1) - mcs[:, :n_ref].mean(axis=1))

    delta = float(statistic(np.ones((1, n_images)))[0])
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_SLOTS // n_images)
    replicates = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        indices = rng.integers(0, n_images, size=(size, n_images))
        replicates[start : start + size] = statistic(_resample_weights(indices, n_images))
    low, high = np.percentile(replicates, [50.0 * (1.0 - level), 50.0 * (1.0 + level)])
    return {"delta": delta, "low": float(low), "high": float(high), "n_boot": n_boot, "level": float(level)}


def _rows_of(df: pd.DataFrame, key: tuple[Any, ...]) -> pd.Series:
    """The rows a bootstrap key ``(backbone, row)`` or ``(table, backbone, row)`` names (backbone: ours or the paper's name)."""
    table, backbone, row = key if len(key) == 3 else (None, *key)
    mask = (df["backbone"].astype(str) == str(backbone)) | (df["paper_backbone"].astype(str) == str(backbone))
    mask &= df["row"].astype(str) == str(row)
    if table is not None:
        if "table" not in df.columns:
            raise PatchlesionError(f"bootstrap results: key {key!r} names a table but the frame has no table column")
        mask &= df["table"].astype(str) == str(table)
    if not mask.any():
        raise PatchlesionError(f"bootstrap result for {key!r}: the table has no row {row!r} for backbone {backbone!r}")
    return mask


def add_bootstrap_columns(
    table_df: pd.DataFrame,
    cis: Mapping[tuple[str, ...], Mapping[str, Any]],
    reference_row: str,
) -> pd.DataFrame:
    """A copy of a summarised table with paired-bootstrap columns merged in, for the "Δ MC-Sens. vs reference" column.

    ``cis`` maps ``(backbone, row)`` -- our registry name (or the paper's name) and the row label;
    ``(table, backbone, row)`` to pick one of several tables -- to a :func:`paired_bootstrap_ci`
    result of that row against ``reference_row`` of the same backbone. Added columns: ``ci_delta``,
    ``ci_low``, ``ci_high`` (percent points), ``ci_level``, ``ci_n_boot`` and ``ci_reference``
    (``reference_row`` on every row of a backbone that has an interval, which must then also have
    the reference row; missing elsewhere). Rows without an interval keep NaN.
    """
    df = table_df.copy().reset_index(drop=True)
    for column in ("ci_delta", "ci_low", "ci_high", "ci_level"):
        df[column] = np.nan
    df["ci_n_boot"] = pd.array([pd.NA] * len(df), dtype="Int64")
    df["ci_reference"] = pd.Series([None] * len(df), dtype=object)
    has_table = "table" in df.columns
    blocks: set[tuple[Any, str]] = set()
    for key, result in cis.items():
        key = tuple(key)
        if len(key) not in (2, 3):
            raise PatchlesionError(f"bootstrap results: key {key!r} must be (backbone, row) or (table, backbone, row)")
        lacking = [k for k in ("delta", "low", "high") if k not in result]
        if lacking:
            raise PatchlesionError(f"bootstrap result for {key!r} lacks {', '.join(lacking)}")
        mask = _rows_of(df, key)
        df.loc[mask, "ci_delta"] = float(result["delta"])
        df.loc[mask, "ci_low"] = float(result["low"])
        df.loc[mask, "ci_high"] = float(result["high"])
        df.loc[mask, "ci_level"] = float(result.get("level", 0.95))
        if "n_boot" in result:
            df.loc[mask, "ci_n_boot"] = int(result["n_boot"])
        for i in np.flatnonzero(mask.to_numpy()):
            blocks.add((df.at[i, "table"] if has_table else None, str(df.at[i, "backbone"])))
    for table, backbone in blocks:
        in_block = df["backbone"].astype(str) == backbone
        if has_table:
            in_block &= df["table"] == table
        if not (in_block & (df["row"].astype(str) == str(reference_row))).any():
            where = f" in table {table}" if has_table else ""
            raise PatchlesionError(
                f"bootstrap results: backbone {backbone!r}{where} has intervals against {reference_row!r} but no row with that label"
            )
        df.loc[in_block, "ci_reference"] = str(reference_row)
    return df


def reference_intervals(
    predictions: Mapping[tuple[str, str], Sequence[pd.DataFrame]],
    reference_row: str,
    seed: int = 0,
    table: str = "",
) -> dict[tuple[str, str], dict[str, Any]]:
    """One :func:`paired_bootstrap_ci` per row against the row ``reference_row`` of the same backbone.

    ``predictions`` maps ``(backbone, row label)`` to the row's per-fold test predictions. Returns
    the intervals keyed like ``predictions`` (the reference rows themselves left out), ready for
    :func:`add_bootstrap_columns`. A backbone without a ``reference_row`` raises
    :class:`PatchlesionError` naming ``table``.
    """
    cis = {}
    for (backbone, row), folds in predictions.items():
        reference = predictions.get((backbone, reference_row))
        if reference is None:
            raise PatchlesionError(f"table {table}: no run labelled {reference_row!r} for backbone {backbone}; it is the reference row.")
        if row != reference_row:
            cis[(backbone, row)] = paired_bootstrap_ci(reference, folds, seed=seed)
    return cis


# --- the table column of the intervals ------------------------------------------------------------

#: Columns that give a summarised table its "Δ MC-Sens. vs reference" column.
BOOTSTRAP_COLUMNS: tuple[str, ...] = ("ci_low", "ci_high", "ci_reference")


def has_bootstrap_columns(table_df: pd.DataFrame) -> bool:
    """True when the frame carries paired-bootstrap columns (see :func:`add_bootstrap_columns`)."""
    return all(c in table_df.columns for c in BOOTSTRAP_COLUMNS)


def _interval_cells(table_df: pd.DataFrame) -> list[Cell]:
    """Per row: the interval, ``ref.`` in the reference row, or a missing cell.

    The difference is ``ci_delta`` where present, else the row's MC-Sensitivity minus that of the
    reference row of the same table and backbone (the same number: a mean over folds of
    differences on one test set is the difference of the fold means).
    """
    recs = table_df.to_dict("records")
    means = {(rec.get("table"), rec["backbone"], str(rec["row"])): rec.get("mc_sensitivity") for rec in recs}
    out: list[Cell] = []
    for rec in recs:
        reference = rec.get("ci_reference")
        if is_missing(reference):
            out.append(MISSING)
            continue
        if str(rec["row"]) == str(reference):
            out.append(Interval(reference=True))
            continue
        low, high, delta = rec.get("ci_low"), rec.get("ci_high"), rec.get("ci_delta")
        if is_missing(low) and is_missing(high) and is_missing(delta):
            out.append(MISSING)
            continue
        if is_missing(delta):
            ref_mean = means.get((rec.get("table"), rec["backbone"], str(reference)))
            own = rec.get("mc_sensitivity")
            delta = None if is_missing(ref_mean) or is_missing(own) else float(own) - float(ref_mean)
        out.append(Interval(delta, low, high))
    return out


def _level(table_df: pd.DataFrame) -> float:
    """The confidence level of the intervals (the first row's; 0.95 without one)."""
    levels = [float(v) for v in table_df.get("ci_level", pd.Series(dtype=float)) if not is_missing(v)]
    return levels[0] if levels else 0.95


def interval_column(table_df: pd.DataFrame) -> tuple[Column, list[Cell], str]:
    """The "Δ MC-Sens. vs <reference> [95 % CI]" column of a table with bootstrap columns: heading, cells, note.

    Cells read ``+1.2 [-0.4, +2.9]`` (percent points), ``ref.`` in the reference row; the note is
    the footnote sentence that explains the column (replicates, percentile method).
    """
    references = list(dict.fromkeys(str(r) for r in table_df["ci_reference"] if not is_missing(r)))
    level = _level(table_df)
    heading = f"Δ MC-Sens. vs {'/'.join(references) or 'reference'} [{100 * level:g} % CI]"
    n_boot = sorted({int(v) for v in table_df.get("ci_n_boot", pd.Series(dtype=float)) if not is_missing(v)})
    reps = f"{'/'.join(str(n) for n in n_boot)} replicates, " if n_boot else ""
    note = (
        "Δ MC-Sens. vs reference: the row's MC-Sensitivity minus that of the reference row of the "
        "same backbone, in percent points (mean over folds; every fold model is tested on the same "
        f"held-out images), with a {100 * level:g} % confidence interval from a paired bootstrap over "
        f"the test images ({reps}percentile method); ref. = the reference row."
    )
    return Column(heading), _interval_cells(table_df), note
