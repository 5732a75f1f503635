"""Results tables in the paper's layout (Tables II-VI), with the paper's numbers beside ours.

Our per-fold metrics (fractions 0..1, from :func:`patchlesion.metrics.classification_metrics`) are
summarised as mean ± population standard deviation over the folds, in percent, and joined with the
numbers the paper reports (shipped in ``patchlesion/data/paper_tables.csv``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from patchlesion.errors import PatchlesionError

__all__ = [
    "METRICS",
    "METRIC_LABELS",
    "PAPER_BACKBONE_NAMES",
    "load_paper_tables",
    "render_markdown",
    "summarise_folds",
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

#: Our backbone registry names -> the names in the paper's tables. Other backbones (e.g. the demo
#: ``"tiny"``) have no paper numbers.
PAPER_BACKBONE_NAMES: dict[str, str] = {
    "inception_v3": "InceptionV3",
    "densenet121": "DenseNet121",
    "se_resnext50": "SE-ResNeXt50",
}

_PAPER_CSV = "data/paper_tables.csv"
_MISSING = "—"


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


def summarise_folds(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Mean ± population std (ddof=0) over folds, in percent, per (table, backbone, row), joined with the paper.

    Each record is ``{table, backbone (our registry name), row (the paper's row label), fold,
    mc_sensitivity, mc_specificity, f1}`` with metric values as fractions 0..1; extra keys are
    ignored. Rows are ordered by table, then backbone, then row, each in first-seen order.

    Output columns: ``table, backbone, paper_backbone, row, n_folds`` and, for each metric ``m``,
    ``m, m_std`` (ours, percent), ``paper_m, paper_m_std`` (the paper's, NaN where the paper has
    no such row for that table/backbone, or no std) and ``delta_m`` = ours − paper.
    """
    records = list(records)
    groups: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    folds_seen: dict[tuple[str, str, str], set[Any]] = {}
    table_order: dict[str, int] = {}
    backbone_order: dict[str, int] = {}
    row_order: dict[str, int] = {}
    for i, record in enumerate(records):
        missing = [k for k in _REQUIRED_KEYS if k not in record]
        if missing:
            raise PatchlesionError(f"result record {i} lacks {', '.join(missing)}: {dict(record)!r}")
        key = (str(record["table"]), str(record["backbone"]), str(record["row"]))
        table_order.setdefault(key[0], len(table_order))
        backbone_order.setdefault(key[1], len(backbone_order))
        row_order.setdefault(key[2], len(row_order))
        fold = record["fold"]
        seen = folds_seen.setdefault(key, set())
        if fold in seen:
            raise PatchlesionError(
                f"fold {fold!r} appears twice for table {key[0]}, backbone {key[1]!r}, row {key[2]!r}"
            )
        seen.add(fold)
        values = groups.setdefault(key, {m: [] for m in METRICS})
        for m in METRICS:
            values[m].append(_as_float(record[m]))

    ordered = sorted(groups, key=lambda k: (table_order[k[0]], backbone_order[k[1]], row_order[k[2]]))
    rows: list[dict[str, Any]] = []
    for table, backbone, row in ordered:
        out: dict[str, Any] = {
            "table": table,
            "backbone": backbone,
            "paper_backbone": PAPER_BACKBONE_NAMES.get(backbone),
            "row": row,
            "n_folds": len(folds_seen[(table, backbone, row)]),
        }
        for m in METRICS:
            arr = 100.0 * np.asarray(groups[(table, backbone, row)][m], dtype=float)
            out[m] = float(np.mean(arr))
            out[f"{m}_std"] = float(np.std(arr, ddof=0))
        rows.append(out)

    columns = ["table", "backbone", "paper_backbone", "row", "n_folds"]
    for m in METRICS:
        columns += [m, f"{m}_std"]
    ours = pd.DataFrame(rows, columns=columns)

    paper = load_paper_tables()
    paper = paper.rename(
        columns={"backbone": "paper_backbone", **{c: f"paper_{c}" for m in METRICS for c in (m, f"{m}_std")}}
    )
    merged = ours.merge(paper, how="left", on=["table", "paper_backbone", "row"], validate="many_to_one")
    for m in METRICS:
        merged[f"delta_{m}"] = merged[m] - merged[f"paper_{m}"]

    final = ["table", "backbone", "paper_backbone", "row", "n_folds"]
    for m in METRICS:
        final += [m, f"{m}_std", f"paper_{m}", f"paper_{m}_std", f"delta_{m}"]
    merged = merged[final]
    merged["n_folds"] = merged["n_folds"].astype(int)
    return merged.reset_index(drop=True)


def _is_missing(value: Any) -> bool:
    """True for None and NaN."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _cell(mean: Any, std: Any) -> str:
    """``"68.4 ± 2.8"``; just the mean where there is no std; ``"—"`` where there is no mean."""
    if _is_missing(mean):
        return _MISSING
    if _is_missing(std):
        return f"{float(mean):.1f}"
    return f"{float(mean):.1f} ± {float(std):.1f}"


def _delta_cell(delta: Any) -> str:
    """``"+0.9"`` / ``"-1.2"`` with one decimal; ``"—"`` where there is no paper number."""
    if _is_missing(delta):
        return _MISSING
    text = f"{float(delta):+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def _escape(text: Any) -> str:
    """A table cell's text with Markdown pipes escaped."""
    return str(text).replace("|", "\\|")


def render_markdown(table_df: pd.DataFrame, title: str) -> str:
    """A Markdown table in the paper's layout: ours, the paper's and Δ for each of the three metrics.

    ``table_df`` is the output of :func:`summarise_folds`. Cells read ``"68.4 ± 2.8"`` (mean ±
    population std, percent, one decimal) and ``"—"`` where a number is missing. A ``Table`` column
    is added only when ``table_df`` holds more than one of the paper's tables.
    """
    multi_table = "table" in table_df.columns and table_df["table"].nunique() > 1
    header = (["Table"] if multi_table else []) + ["Backbone", "Row"]
    for m in METRICS:
        label = METRIC_LABELS[m]
        header += [f"{label} (ours)", f"{label} (paper)", "Δ"]

    lines = [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for rec in table_df.to_dict("records"):
        paper_name = rec.get("paper_backbone")
        backbone = rec["backbone"] if _is_missing(paper_name) else paper_name
        cells = ([_escape(rec["table"])] if multi_table else []) + [_escape(backbone), _escape(rec["row"])]
        for m in METRICS:
            cells += [
                _cell(rec.get(m), rec.get(f"{m}_std")),
                _cell(rec.get(f"paper_{m}"), rec.get(f"paper_{m}_std")),
                _delta_cell(rec.get(f"delta_{m}")),
            ]
        lines.append("| " + " | ".join(cells) + " |")

    n_folds = sorted({int(n) for n in table_df["n_folds"]}) if "n_folds" in table_df and len(table_df) else []
    if len(n_folds) == 1:
        folds_text = f"the {n_folds[0]} fold{'s' if n_folds[0] != 1 else ''}"
    elif n_folds:
        folds_text = f"the {n_folds[0]}–{n_folds[-1]} folds of each row"
    else:
        folds_text = "the folds"
    lines += [
        "",
        f"Ours: mean ± population standard deviation (ddof = 0) over {folds_text}, evaluated on the "
        "held-out test part, in percent. Paper: Gessert et al. 2019 (a paper value without ± has no "
        "reported standard deviation); Δ = ours − paper; — = no number. F1 is the paper's "
        "prediction-weighted F1 (scikit-learn's weighted F1 with the arguments swapped, as in the "
        "authors' code).",
        "",
    ]
    return "\n".join(lines)


def write_table(
    table_df: pd.DataFrame,
    csv_path: str | Path,
    md_path: str | Path,
    title: str,
) -> None:
    """Write a summarised results table as CSV (numbers rounded to 2 decimals) and as Markdown."""
    csv_path = Path(csv_path)
    md_path = Path(md_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    numeric = table_df.select_dtypes(include="number").columns
    rounded = table_df.copy()
    rounded[numeric] = rounded[numeric].round(2)
    rounded.to_csv(csv_path, index=False)
    md_path.write_text(render_markdown(table_df, title), encoding="utf-8")
