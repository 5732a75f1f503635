"""Results tables in the paper's layout (Tables II-VI), with the paper's numbers beside ours.

Our per-fold metrics (fractions 0..1, from :func:`patchlesion.results.metrics.classification_metrics`) are
summarised as mean ± population standard deviation over the folds, in percent (docs/method.md §7), and
joined with the numbers the paper reports (shipped in ``patchlesion/results/paper_tables.csv``)
(:func:`summarise_folds`, or :func:`summarise_runs` from the runs' metrics.json files). Optionally
each row also gets the MC-Sensitivity difference to a reference row of the same backbone with a 95 %
confidence interval from a paired bootstrap over the test images (:mod:`patchlesion.results.bootstrap`).
:func:`paper_table` lays a summary out as the paper does and :func:`write_table` writes it as CSV,
Markdown and booktabs LaTeX through :mod:`patchlesion.results.render`.

The choices the figures of a table need are made here too: which run is the best (:func:`best_run`),
a run's training history averaged over its folds (:func:`mean_history`) and Fig. 5's points, the
MC-Sensitivity of each patch dropout rate averaged over folds (:func:`dropout_points`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from patchlesion.errors import PatchlesionError
from patchlesion.method.timm_backbones import PAPER_EQUIVALENTS
from patchlesion.results.bootstrap import add_bootstrap_columns, has_bootstrap_columns, interval_column, reference_intervals
from patchlesion.results.render import LATEX, MARKDOWN, Column, MeanStd, Signed, Table, Text, is_missing, render

__all__ = [
    "METRICS",
    "METRIC_LABELS",
    "PAPER_BACKBONE_NAMES",
    "best_run",
    "dropout_points",
    "load_paper_tables",
    "mean_history",
    "paper_table",
    "read_csv_beside",
    "read_metrics",
    "render_latex",
    "render_markdown",
    "run_label",
    "summarise_folds",
    "summarise_runs",
    "write_table",
]

#: The paper's three metrics (Sec. II-B), in the column order of its tables.
METRICS: tuple[str, ...] = ("mc_sensitivity", "mc_specificity", "f1")

#: Column headings the paper uses for :data:`METRICS`.
METRIC_LABELS: dict[str, str] = {
    "mc_sensitivity": "MC-Sensitivity",
    "mc_specificity": "MC-Specificity",
    "f1": "F1",
}

#: Our backbone registry names -> the names in the paper's tables (SE-ResNeXt50 also from timm, the
#: same network). Other backbones (the demo's ``"tiny"``, a ``timm:<model>``) have no paper numbers
#: and are shown by their own name.
PAPER_BACKBONE_NAMES: dict[str, str] = {
    "inception_v3": "InceptionV3",
    "densenet121": "DenseNet121",
    "se_resnext50": "SE-ResNeXt50",
}
PAPER_BACKBONE_NAMES.update({timm: PAPER_BACKBONE_NAMES[paper] for timm, paper in PAPER_EQUIVALENTS.items()})

_PAPER_CSV = "results/paper_tables.csv"


def load_paper_tables() -> pd.DataFrame:
    """The paper's reported numbers (Tables II-VI) from the CSV shipped with the package.

    Columns: ``table`` (roman numeral, str), ``backbone`` (paper name), ``row`` (the paper's row
    label) and, in percent, ``mc_sensitivity``, ``mc_specificity``, ``f1`` and their ``*_std``
    (NaN where the paper gives no standard deviation, as in Table IV).
    """
    with files("patchlesion").joinpath(_PAPER_CSV).open("r", encoding="utf-8") as handle:
        df = pd.read_csv(handle, dtype={"table": str, "backbone": str, "row": str})
    value_columns = [c for m in METRICS for c in (m, f"{m}_std")]
    df[value_columns] = df[value_columns].astype(float)
    return df


_REQUIRED_KEYS: tuple[str, ...] = ("table", "backbone", "row", "fold", *METRICS)


def _as_float(value: Any) -> float:
    """A metric value as float; ``None`` (undefined metric) becomes NaN."""
    return math.nan if value is None else float(value)


def _group_records(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str], dict[str, list[float]]]:
    """Metric values per (table, backbone, row), ordered by table, then backbone, then row, each in first-seen order."""
    groups: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    folds_seen: dict[tuple[str, str, str], set[Any]] = {}
    orders: tuple[dict[str, int], ...] = ({}, {}, {})  # table, backbone, row
    for i, record in enumerate(records):
        missing = [k for k in _REQUIRED_KEYS if k not in record]
        if missing:
            raise PatchlesionError(f"result record {i} lacks {', '.join(missing)}: {dict(record)!r}")
        key = (str(record["table"]), str(record["backbone"]), str(record["row"]))
        for order, part in zip(orders, key):
            order.setdefault(part, len(order))
        fold = record["fold"]
        seen = folds_seen.setdefault(key, set())
        if fold in seen:
            raise PatchlesionError(f"fold {fold!r} appears twice for table {key[0]}, backbone {key[1]!r}, row {key[2]!r}")
        seen.add(fold)
        values = groups.setdefault(key, {m: [] for m in METRICS})
        for m in METRICS:
            values[m].append(_as_float(record[m]))
    ordered = sorted(groups, key=lambda k: tuple(order[part] for order, part in zip(orders, k)))
    return {key: groups[key] for key in ordered}


def summarise_folds(records: Iterable[Mapping[str, Any]], paper: bool = True) -> pd.DataFrame:
    """Mean ± population std (ddof=0) over folds, in percent, per (table, backbone, row), joined with the paper.

    Each record is ``{table, backbone (our registry name), row (the paper's row label), fold,
    mc_sensitivity, mc_specificity, f1}`` with metric values as fractions 0..1; extra keys are
    ignored. Rows are ordered by table, then backbone, then row, each in first-seen order.

    Output columns: ``table, backbone, paper_backbone, row, n_folds`` and, for each metric ``m``,
    ``m, m_std`` (ours, percent; ``m_std`` NaN for a single fold), ``paper_m, paper_m_std`` (the paper's, NaN where the paper has
    no such row for that table/backbone, or no std) and ``delta_m`` = ours − paper. With ``paper``
    false (a dataset other than the paper's) the paper's columns stay empty.
    """
    rows: list[dict[str, Any]] = []
    for (table, backbone, row), values in _group_records(records).items():
        out: dict[str, Any] = {
            "table": table,
            "backbone": backbone,
            "paper_backbone": PAPER_BACKBONE_NAMES.get(backbone),
            "row": row,
            "n_folds": len(values[METRICS[0]]),
        }
        for m in METRICS:
            arr = 100.0 * np.asarray(values[m], dtype=float)
            out[m] = float(np.mean(arr))
            # one model per row (Table IV, derm7pt) has no spread: shown as a single value, as in the paper
            out[f"{m}_std"] = float(np.std(arr, ddof=0)) if arr.size > 1 else math.nan
        rows.append(out)

    columns = ["table", "backbone", "paper_backbone", "row", "n_folds"]
    for m in METRICS:
        columns += [m, f"{m}_std"]
    ours = pd.DataFrame(rows, columns=columns)

    paper = load_paper_tables() if paper else load_paper_tables().iloc[:0]
    paper = paper.rename(columns={"backbone": "paper_backbone", **{c: f"paper_{c}" for m in METRICS for c in (m, f"{m}_std")}})
    merged = ours.merge(paper, how="left", on=["table", "paper_backbone", "row"], validate="many_to_one")
    for m in METRICS:
        merged[f"delta_{m}"] = merged[m] - merged[f"paper_{m}"]

    final = ["table", "backbone", "paper_backbone", "row", "n_folds"]
    for m in METRICS:
        final += [m, f"{m}_std", f"paper_{m}", f"paper_{m}_std", f"delta_{m}"]
    merged = merged[final]
    merged["n_folds"] = merged["n_folds"].astype(int)
    return merged.reset_index(drop=True)


# --- from the runs' files -------------------------------------------------------------------------


#: The keys of the metrics.json that each command writes (``patchlesion evaluate``, ``official-test``).
METRICS_KEYS: dict[str, tuple[str, ...]] = {"evaluate": ("run", "fold", "mc_sensitivity"), "official-test": ("run", "folds", "ensemble")}


def read_metrics(paths: Iterable[str | Path], written_by: str = "evaluate") -> list[tuple[Path, dict]]:
    """Each metrics.json with its path, in the given order; each must be one that ``patchlesion
    <written_by>`` wrote (:data:`METRICS_KEYS`)."""
    out = []
    for path in paths:
        try:
            metrics = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise PatchlesionError(f"{path}: cannot read test metrics ({error}).") from error
        missing = [key for key in METRICS_KEYS[written_by] if not isinstance(metrics, dict) or key not in metrics]
        if missing:
            raise PatchlesionError(f"{path}: has no {', '.join(missing)}; pass the metrics.json files that `patchlesion {written_by}` wrote.")
        out.append((Path(path), metrics))
    return out


def read_csv_beside(metrics_path: str | Path, name: str, what: str) -> pd.DataFrame:
    """The CSV file ``name`` (predictions.csv, history.csv) written beside a metrics.json; ``what`` names it in errors."""
    path = Path(metrics_path).with_name(name)
    try:
        return pd.read_csv(path, dtype={"image_id": str})
    except (OSError, pd.errors.ParserError) as error:
        raise PatchlesionError(f"{path}: cannot read the {what} ({error}).") from error


def summarise_runs(
    metrics_paths: Iterable[str | Path],
    table: str,
    labels: Mapping[str, str] | None = None,
    reference: str | None = None,
    seed: int = 0,
    paper: bool = True,
) -> pd.DataFrame:
    """Table ``table`` from the fold metrics.json files of its runs: :func:`summarise_folds` of their
    metrics (``paper``: with the paper's numbers beside them).

    ``labels`` maps a run's canonical name to the paper's row label (default: the run name); rows
    are grouped by backbone and label. With ``reference`` (a row label) every other row of a
    backbone gets the paired-bootstrap interval of its MC-Sensitivity difference to that row
    (:func:`patchlesion.results.bootstrap.reference_intervals` on the predictions.csv beside each
    metrics.json, bootstrap ``seed``).
    """
    from patchlesion.method.runs import RunSpec

    labels = dict(labels or {})
    records, predictions = [], {}
    for path, metrics in read_metrics(metrics_paths):
        spec = RunSpec.from_name(metrics["run"])
        row = labels.get(spec.name, spec.name)
        records.append({"table": table, "backbone": spec.backbone, "row": row, "fold": metrics["fold"], **{m: metrics[m] for m in METRICS}})
        if reference:
            predictions.setdefault((spec.backbone, row), []).append(read_csv_beside(path, "predictions.csv", "test predictions"))
    summary = summarise_folds(records, paper=paper)
    if reference:
        summary = add_bootstrap_columns(summary, reference_intervals(predictions, reference, seed=seed, table=table), reference)
    return summary


def run_label(run: str, labels: Mapping[str, str] | None = None) -> str:
    """``"densenet121 · Multi-Crop"``: a run's backbone and its row label (default: the run name)."""
    from patchlesion.method.runs import RunSpec

    return f"{RunSpec.from_name(run).backbone} · {(labels or {}).get(run, run)}"


def best_run(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """The run with the highest MC-Sensitivity averaged over its folds (the first such run on a tie).

    ``runs`` maps a run name to its folds' test metrics.
    """
    return max(runs, key=lambda run: np.mean([m["mc_sensitivity"] for m in runs[run]]))


def mean_history(histories: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One run's training history (history.csv of each fold) averaged over its folds, epoch by epoch."""
    return pd.concat(histories).groupby("epoch", as_index=False).mean(numeric_only=True)


def dropout_points(metrics: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Fig. 5's points: MC-Sensitivity (percent) per backbone, number of crops and patch dropout rate.

    Columns ``backbone, n_crops, p_d, mean, std`` (population std, ddof = 0, over folds) and ``n_folds``.
    """
    from patchlesion.method.runs import RunSpec

    rows = []
    for m in metrics:
        spec = RunSpec.from_name(m["run"])
        rows.append(
            {
                "backbone": spec.backbone,
                "n_crops": spec.n_crops,
                "p_d": spec.patch_dropout,
                "fold": m["fold"],
                "mc_sensitivity": 100 * m["mc_sensitivity"],
            }
        )
    points = pd.DataFrame(rows).groupby(["backbone", "n_crops", "p_d"], as_index=False)["mc_sensitivity"]
    return points.agg(mean="mean", std=lambda v: v.std(ddof=0), n_folds="count")


# --- the paper's layout ---------------------------------------------------------------------------


def _backbone_label(rec: Mapping[str, Any]) -> str:
    """The paper's backbone name where there is one (``DenseNet121``), else our registry name."""
    paper_name = rec.get("paper_backbone")
    return str(rec["backbone"] if is_missing(paper_name) else paper_name)


def _footnote(table_df: pd.DataFrame) -> str:
    """The explanatory note under a table (``{missing}``: the format's mark of a missing number)."""
    n_folds = sorted({int(n) for n in table_df["n_folds"]}) if "n_folds" in table_df and len(table_df) else []
    if len(n_folds) == 1:
        folds_text = f"the {n_folds[0]} fold{'s' if n_folds[0] != 1 else ''}"
    elif n_folds:
        folds_text = f"the {n_folds[0]}–{n_folds[-1]} folds of each row"
    else:
        folds_text = "the folds"
    return (
        f"Ours: mean ± population standard deviation (ddof = 0) over {folds_text}, evaluated on the "
        "held-out test part, in percent. Paper: Gessert et al. 2019 (a paper value without ± has no "
        "reported standard deviation); Δ = ours − paper; {missing} = no number. F1 is the paper's "
        "prediction-weighted F1 (scikit-learn's weighted F1 with the arguments swapped, as in the "
        "authors' code)."
    )


def paper_table(table_df: pd.DataFrame, title: str) -> Table:
    """A summary (:func:`summarise_folds`) in the paper's layout: ours, the paper's and Δ for each of the three metrics.

    Cells read ``68.4 ± 2.8`` (mean ± population std, percent, one decimal), a number without std
    is bare and a missing one is ``—`` (``--`` in LaTeX). Each backbone is named by the paper's name
    where there is one. A ``Table`` column is added only when ``table_df`` holds more than one of
    the paper's tables. With the columns of :func:`patchlesion.results.bootstrap.add_bootstrap_columns`,
    a last column ``Δ MC-Sens. vs <reference> [95 % CI]`` reads ``+1.2 [-0.4, +2.9]``, ``ref.`` in
    the reference row.
    """
    multi_table = "table" in table_df.columns and table_df["table"].nunique() > 1
    columns = [Column("Table", align="l")] if multi_table else []
    columns += [Column("Backbone", align="l"), Column("Row", align="l")]
    for m in METRICS:
        label = METRIC_LABELS[m]
        columns += [Column("ours", label, f"{label} (ours)"), Column("paper", label, f"{label} (paper)"), Column("Δ", label)]
    rows = []
    for rec in table_df.to_dict("records"):
        cells = ([Text(rec["table"])] if multi_table else []) + [Text(_backbone_label(rec)), Text(rec["row"])]
        for m in METRICS:
            cells += [
                MeanStd(rec.get(m), rec.get(f"{m}_std")),
                MeanStd(rec.get(f"paper_{m}"), rec.get(f"paper_{m}_std")),
                Signed(rec.get(f"delta_{m}")),
            ]
        rows.append(cells)
    notes = [_footnote(table_df)]
    if has_bootstrap_columns(table_df):
        column, cells, note = interval_column(table_df)
        columns.append(column)
        rows = [[*row, cell] for row, cell in zip(rows, cells)]
        notes.append(note)
    return Table(title, columns, rows, notes, grouped=2 if multi_table else 1, placement="[t]")


def render_markdown(table_df: pd.DataFrame, title: str) -> str:
    """:func:`paper_table` as a Markdown table."""
    return render(paper_table(table_df, title), MARKDOWN)


def render_latex(table_df: pd.DataFrame, title: str) -> str:
    """:func:`paper_table` as a booktabs LaTeX table (no vertical rules; each backbone named once per block)."""
    return render(paper_table(table_df, title), LATEX)


def write_table(
    table_df: pd.DataFrame,
    csv_path: str | Path,
    md_path: str | Path,
    title: str,
    tex_path: str | Path | None = None,
) -> None:
    """Write a summarised results table as CSV (rounded to 2 decimals), Markdown and, given ``tex_path``, LaTeX."""
    csv_path = Path(csv_path)
    md_path = Path(md_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    numeric = table_df.select_dtypes(include="number").columns
    rounded = table_df.copy()
    rounded[numeric] = rounded[numeric].round(2)
    rounded.to_csv(csv_path, index=False)
    md_path.write_text(render_markdown(table_df, title), encoding="utf-8")
    if tex_path is not None:
        tex_path = Path(tex_path)
        tex_path.parent.mkdir(parents=True, exist_ok=True)
        tex_path.write_text(render_latex(table_df, title), encoding="utf-8")
