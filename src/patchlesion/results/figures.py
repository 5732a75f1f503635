"""The paper's figures (Fig. 4 attention weights, Fig. 5 patch dropout) and diagnostic plots.

Every ``figure*``-style function takes its data and an output ``out``: a path stem (``figs/fig5``
writes ``figs/fig5.png`` and ``figs/fig5.pdf``; a trailing ``.png``/``.pdf`` is dropped from the stem)
or explicit paths (a list of ``.png``/``.pdf`` files). It returns the paths written. The drawing
functions that work on a given Axes (:func:`attention_overlay`, :func:`plot_dropout_sensitivity`)
are public too, so they can be composed and inspected. matplotlib runs on the Agg backend: nothing
needs a display. :func:`write_table_figures` and :func:`write_figure5` draw from the runs' files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from patchlesion.method.classes import CLASSES  # noqa: E402
from patchlesion.results.tables import (  # noqa: E402
    best_run,
    dropout_points,
    mean_history,
    read_csv_beside,
    read_metrics,
    run_label,
)

__all__ = [
    "attention_overlay",
    "confusion_matrix_figure",
    "figure4",
    "figure5",
    "plot_dropout_sensitivity",
    "save_figure",
    "training_curves",
]

#: Colormap of attention weights (sigmoid outputs, so always mapped over [0, 1]).
ATTENTION_CMAP = "viridis"
FIGURE_FORMATS = (".png", ".pdf")
DPI = 150

OutPaths = str | Path | Sequence[str | Path]


def _out_paths(out: OutPaths) -> list[Path]:
    """Resolve ``out`` (a stem or explicit ``.png``/``.pdf`` paths) to the files to write."""
    if isinstance(out, (str, Path)):
        stem = Path(out)
        if stem.suffix.lower() in FIGURE_FORMATS:
            stem = stem.with_suffix("")
        return [stem.with_name(stem.name + suffix) for suffix in FIGURE_FORMATS]
    paths = [Path(p) for p in out]
    if not paths:
        raise ValueError("no output paths given for the figure.")
    for path in paths:
        if path.suffix.lower() not in FIGURE_FORMATS:
            raise ValueError(f"{path}: figures are written as {' or '.join(FIGURE_FORMATS)} files.")
    return paths


def save_figure(fig: plt.Figure, out: OutPaths) -> list[Path]:
    """Write ``fig`` to every path of ``out`` (see the module docstring), close it, return the paths."""
    paths = _out_paths(out)
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return paths


def attention_mappable(cmap: str = ATTENTION_CMAP) -> ScalarMappable:
    """The colour mapping of attention weights over [0, 1], for ``fig.colorbar``."""
    mappable = ScalarMappable(norm=Normalize(vmin=0.0, vmax=1.0), cmap=cmap)
    mappable.set_array([])
    return mappable


def attention_overlay(
    ax: plt.Axes,
    image: np.ndarray,
    positions: Sequence[tuple[int, int]],
    crop_size: int,
    weights: Sequence[float] | np.ndarray,
    cmap: str = ATTENTION_CMAP,
    linewidth: float = 2.0,
    annotate: bool = True,
) -> ScalarMappable:
    """Draw an image with each crop's border coloured by its attention weight (the paper's Fig. 4).

    ``image`` is ``(H, W, 3)`` uint8, ``positions`` the crops' top-left corners ``(row, col)`` (as
    :func:`patchlesion.method.crops.crop_grid`), ``weights`` ``(N,)`` the patch-attention weights a_j in
    (0, 1) of those crops. Borders are drawn in ``cmap`` over the fixed range [0, 1], each inset by
    half a line so borders on the image edge stay whole, highest weights on top; with ``annotate``
    each weight is written at its crop's centre on a label of its colour. Returns the mapping, for ``fig.colorbar(mappable, ax=ax)``.
    """
    weights = np.asarray(weights, dtype=float).reshape(-1)
    if len(weights) != len(positions):
        raise ValueError(f"{len(weights)} attention weights for {len(positions)} crops.")
    mappable = attention_mappable(cmap)
    ax.imshow(image, interpolation="nearest")
    height, width = image.shape[:2]
    inset = min(crop_size / 8.0, 0.004 * max(height, width) * linewidth)  # half a line, in pixels, roughly
    for j in np.argsort(weights, kind="stable"):  # lowest first, so the highest weights are drawn on top
        row, col = positions[j]
        colour = mappable.to_rgba(weights[j])
        ax.add_patch(
            Rectangle(
                (col - 0.5 + inset, row - 0.5 + inset), crop_size - 2 * inset, crop_size - 2 * inset,
                fill=False, edgecolor=colour, linewidth=linewidth, zorder=2 + weights[j],
            )
        )  # fmt: skip
        if annotate:  # the weight on a label of its colour, in black or white, whichever reads better
            luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
            ax.text(
                col + crop_size / 2.0 - 0.5, row + crop_size / 2.0 - 0.5, f"{weights[j]:.2f}",
                color="black" if luminance > 0.5 else "white", ha="center", va="center", fontsize=7, zorder=4,
                bbox={"boxstyle": "round,pad=0.2", "facecolor": colour, "edgecolor": "none", "alpha": 0.85},
            )  # fmt: skip
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    return mappable


def figure4(
    images: Sequence[np.ndarray] | np.ndarray,
    positions: Sequence[tuple[int, int]],
    crop_size: int,
    weights: Sequence[Sequence[float]] | np.ndarray,
    true_classes: Sequence[str],
    out_stem: OutPaths,
    title: str = "Patch attention weights",
    predicted_classes: Sequence[str] | None = None,
    class_order: Sequence[str] = CLASSES,
    max_per_class: int | None = None,
) -> list[Path]:
    """Fig. 4 of the paper: test images with their crops' attention weights, one row per class.

    ``images`` are ``K`` images ``(H, W, 3)`` uint8 of one size, cut at the same crop ``positions``;
    ``weights`` is ``(K, N)``; ``true_classes`` the K class names (rows follow ``class_order``,
    classes without images are left out). Pass in whichever subset to show; ``max_per_class``
    keeps the first images of each class. With ``predicted_classes`` each panel's title names both.
    """
    weights = np.asarray(weights, dtype=float)
    if not (len(images) == len(weights) == len(true_classes)):
        raise ValueError(f"{len(images)} images, {len(weights)} weight rows and {len(true_classes)} classes must match.")
    if len(images) == 0:
        raise ValueError("figure 4 needs at least one image.")
    unknown = sorted(set(true_classes) - set(class_order))
    if unknown:
        raise ValueError(f"classes {unknown} are not in the class order {list(class_order)}.")
    rows = [[i for i, c in enumerate(true_classes) if c == name] for name in class_order]
    labels = [name for name, members in zip(class_order, rows) if members]
    rows = [members[:max_per_class] if max_per_class else members for members in rows if members]
    n_rows, n_cols = len(rows), max(len(members) for members in rows)
    height, width = np.asarray(images[0]).shape[:2]
    panel = 2.2
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(panel * n_cols * width / height + 1.2, panel * n_rows + 0.6), squeeze=False
    )
    mappable = attention_mappable()
    for r, (label, members) in enumerate(zip(labels, rows)):
        for c in range(n_cols):
            ax = axes[r, c]
            if c >= len(members):
                ax.axis("off")
                continue
            i = members[c]
            attention_overlay(ax, np.asarray(images[i]), positions, crop_size, weights[i])
            if predicted_classes is not None:
                ax.set_title(f"predicted {predicted_classes[i]}", fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=10)
    fig.colorbar(mappable, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02, label="attention weight")
    fig.suptitle(title)
    return save_figure(fig, out_stem)


def plot_dropout_sensitivity(ax: plt.Axes, frame: pd.DataFrame, percent: bool | None = None) -> None:
    """Draw MC-sensitivity against patch dropout p_d, one error-bar line per number of crops NC.

    ``frame`` has columns ``p_d``, ``n_crops``, ``mean``, ``std`` (std over folds). Values are taken
    as percent; ``percent=False`` marks them as fractions (multiplied by 100); ``None`` decides by
    the values (all means <= 1 are fractions).
    """
    missing = {"p_d", "n_crops", "mean", "std"} - set(frame.columns)
    if missing:
        raise ValueError(f"figure 5 needs the columns p_d, n_crops, mean, std; missing {sorted(missing)}.")
    if percent is None:
        percent = not (frame["mean"].abs().max() <= 1.0)
    scale = 1.0 if percent else 100.0
    for n_crops, group in frame.sort_values(["n_crops", "p_d"]).groupby("n_crops", sort=True):
        ax.errorbar(
            group["p_d"], group["mean"] * scale, yerr=group["std"].fillna(0.0) * scale,
            marker="o", capsize=3, label=f"NC = {int(n_crops)}",
        )  # fmt: skip
    ax.set_xlabel("patch dropout probability $p_d$")
    ax.set_ylabel("MC-sensitivity (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(title="crops")


def figure5(frame: pd.DataFrame, out_stem: OutPaths, title: str = "Patch dropout", percent: bool | None = None) -> list[Path]:
    """Fig. 5 of the paper: MC-sensitivity (%) against patch dropout p_d, one line per NC,
    error bars = std over the cross-validation folds (see :func:`plot_dropout_sensitivity`)."""
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    plot_dropout_sensitivity(ax, frame, percent=percent)
    ax.set_title(title)
    return save_figure(fig, out_stem)


def confusion_matrix_figure(
    cm: np.ndarray, class_names: Sequence[str], out_stem: OutPaths, title: str = "Confusion matrix"
) -> list[Path]:
    """Confusion matrix (rows true, columns predicted): counts written in the cells, colours
    row-normalised (each true class's fraction, i.e. per-class sensitivity on the diagonal)."""
    cm = np.asarray(cm)
    n = len(class_names)
    if cm.shape != (n, n):
        raise ValueError(f"confusion matrix of shape {cm.shape} for {n} classes.")
    totals = cm.sum(axis=1, keepdims=True)
    fractions = np.divide(cm, totals, out=np.zeros(cm.shape, dtype=float), where=totals > 0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * n, 0.8 + 0.7 * n))
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(n):
        for j in range(n):
            value = cm[i, j]
            text = f"{int(value)}" if float(value).is_integer() else f"{value:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if fractions[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    return save_figure(fig, out_stem)


def training_curves(histories: Mapping[str, pd.DataFrame], out_stem: OutPaths, title: str = "Training curves") -> list[Path]:
    """Small multiples, one panel per run (label -> history.csv frame): training loss (left axis)
    and validation MC-sensitivity (right axis, markers at the validated epochs; NaN elsewhere)."""
    if not histories:
        raise ValueError("training_curves needs at least one history.")
    n = len(histories)
    n_cols = min(3, n)
    n_rows = math.ceil(n / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.0 * n_cols, 2.8 * n_rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, (label, history) in zip(axes.ravel(), histories.items()):
        missing = {"epoch", "train_loss"} - set(history.columns)
        if missing:
            raise ValueError(f"history {label!r} lacks the columns {sorted(missing)}.")
        loss_line = ax.plot(history["epoch"], history["train_loss"], color="tab:blue", label="training loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss", color="tab:blue")
        ax.set_title(label, fontsize=9)
        ax.grid(True, alpha=0.3)
        lines = list(loss_line)
        if "val_mc_sensitivity" in history.columns:
            validated = history.dropna(subset=["val_mc_sensitivity"])
            twin = ax.twinx()
            lines += twin.plot(
                validated["epoch"], validated["val_mc_sensitivity"], color="tab:orange", marker="o", markersize=3,
                label="validation MC-sensitivity",
            )  # fmt: skip
            twin.set_ylim(0.0, 1.0)
            twin.set_ylabel("val. MC-sensitivity", color="tab:orange")
        ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out_stem)


# --- from the runs' files -------------------------------------------------------------------------


def write_table_figures(
    metrics_paths: Sequence[str | Path], table: str, labels: Mapping[str, str] | None, confusion: str | Path, curves: str | Path
) -> str:
    """A table's diagnostic figures from its runs' fold metrics.json files; returns the best run.

    ``confusion``: the confusion matrix of the best run (:func:`patchlesion.results.tables.best_run`),
    its folds summed, labelled with the class names its metrics.json records; ``curves``: every run's training history (history.csv beside each metrics.json)
    averaged over its folds. Both are PNG paths; a PDF is written beside each.
    """
    runs: dict[str, list[tuple[Path, dict]]] = {}
    for path, metrics in read_metrics(metrics_paths):
        runs.setdefault(metrics["run"], []).append((path, metrics))
    best = best_run({run: [m for _, m in folds] for run, folds in runs.items()})
    matrix = np.sum([np.asarray(m["confusion_matrix"]) for _, m in runs[best]], axis=0)
    class_names = runs[best][0][1].get("class_names", CLASSES)  # metrics.json names its classes
    confusion_matrix_figure(matrix, class_names, [str(confusion), str(Path(confusion).with_suffix(".pdf"))], f"Table {table}, best run: {run_label(best, labels)} (folds summed)")
    histories = {
        run_label(run, labels): mean_history([read_csv_beside(path, "history.csv", "training history") for path, _ in folds])
        for run, folds in runs.items()
    }
    training_curves(histories, [str(curves), str(Path(curves).with_suffix(".pdf"))], f"Table {table}: training curves (mean over folds)")
    return best


def write_figure5(metrics_paths: Sequence[str | Path], out: str | Path, csv_path: str | Path) -> pd.DataFrame:
    """Fig. 5 from the patch dropout runs' fold metrics.json files: the plotted numbers
    (:func:`patchlesion.results.tables.dropout_points`, two decimals) to ``csv_path`` and the figure to ``out``
    (PNG; a PDF beside it). Returns the points."""
    frame = dropout_points(metrics for _, metrics in read_metrics(metrics_paths))
    frame.to_csv(csv_path, index=False, float_format="%.2f")
    figure5(frame, [str(out), str(Path(out).with_suffix(".pdf"))], title=f"Patch dropout ({', '.join(frame['backbone'].unique())}, initial attention)", percent=True)
    return frame
