"""Results tables in the paper's layout (Tables II-VI), with the paper's numbers beside ours.

Our per-fold metrics (fractions 0..1, from :func:`patchlesion.results.metrics.classification_metrics`) are
summarised as mean ± population standard deviation over the folds, in percent, and joined with the
numbers the paper reports (shipped in ``patchlesion/results/paper_tables.csv``), and written as CSV,
Markdown and booktabs LaTeX. Optionally each row also gets the MC-Sensitivity difference to a
reference row of the same backbone with a 95 % confidence interval from a paired bootstrap over the
test images (:func:`paired_bootstrap_ci`, :func:`add_bootstrap_columns`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
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
    "add_bootstrap_columns",
    "load_paper_tables",
    "paired_bootstrap_ci",
    "render_latex",
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

_PAPER_CSV = "results/paper_tables.csv"
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
    ``m, m_std`` (ours, percent; ``m_std`` NaN for a single fold), ``paper_m, paper_m_std`` (the paper's, NaN where the paper has
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
            # one model per row (Table IV, derm7pt) has no spread: shown as a single value, as in the paper
            out[f"{m}_std"] = float(np.std(arr, ddof=0)) if arr.size > 1 else math.nan
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


def _signed(value: Any) -> str:
    """``"+0.9"`` / ``"-1.2"`` with one decimal, ``"0.0"`` for values that round to zero."""
    text = f"{float(value):+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def _delta_cell(delta: Any) -> str:
    """``"+0.9"`` / ``"-1.2"`` with one decimal; ``"—"`` where there is no paper number."""
    if _is_missing(delta):
        return _MISSING
    return _signed(delta)


def _escape(text: Any) -> str:
    """A table cell's text with Markdown pipes escaped."""
    return str(text).replace("|", "\\|")


def _backbone_label(rec: Mapping[str, Any]) -> str:
    """The paper's backbone name where there is one (``DenseNet121``), else our registry name."""
    paper_name = rec.get("paper_backbone")
    return str(rec["backbone"] if _is_missing(paper_name) else paper_name)


# --- paired-bootstrap columns -------------------------------------------------------------------

#: Columns that make :func:`render_markdown` / :func:`render_latex` add the bootstrap column.
_CI_COLUMNS: tuple[str, ...] = ("ci_low", "ci_high", "ci_reference")

#: Stand-in for one CI cell: ``None`` (no interval), ``"ref"`` (the reference row) or (delta, low, high).
_CIEntry = Any


def _has_ci(table_df: pd.DataFrame) -> bool:
    """True when the frame carries paired-bootstrap columns (see :func:`add_bootstrap_columns`)."""
    return all(c in table_df.columns for c in _CI_COLUMNS)


def _ci_entries(table_df: pd.DataFrame) -> list[_CIEntry]:
    """Per row: ``None``, ``"ref"`` or ``(delta, low, high)`` for the bootstrap column.

    ``delta`` is ``ci_delta`` where present, else the row's MC-Sensitivity minus that of the
    reference row of the same table and backbone (the same number: a mean over folds of
    differences on one test set is the difference of the fold means).
    """
    recs = table_df.to_dict("records")
    means = {(rec.get("table"), rec["backbone"], str(rec["row"])): rec.get("mc_sensitivity") for rec in recs}
    out: list[_CIEntry] = []
    for rec in recs:
        reference = rec.get("ci_reference")
        if _is_missing(reference):
            out.append(None)
            continue
        if str(rec["row"]) == str(reference):
            out.append("ref")
            continue
        low, high, delta = rec.get("ci_low"), rec.get("ci_high"), rec.get("ci_delta")
        if _is_missing(low) and _is_missing(high) and _is_missing(delta):
            out.append(None)
            continue
        if _is_missing(delta):
            ref_mean = means.get((rec.get("table"), rec["backbone"], str(reference)))
            own = rec.get("mc_sensitivity")
            delta = None if _is_missing(ref_mean) or _is_missing(own) else float(own) - float(ref_mean)
        out.append((delta, low, high))
    return out


def _ci_header(table_df: pd.DataFrame) -> str:
    """``"Δ MC-Sens. vs Multi-Crop [95 % CI]"`` (references joined with "/" if rows differ)."""
    references = list(dict.fromkeys(str(r) for r in table_df["ci_reference"] if not _is_missing(r)))
    levels = [float(v) for v in table_df.get("ci_level", pd.Series(dtype=float)) if not _is_missing(v)]
    level = levels[0] if levels else 0.95
    return f"Δ MC-Sens. vs {'/'.join(references) or 'reference'} [{100 * level:g} % CI]"


def _ci_note(table_df: pd.DataFrame) -> str:
    """The footnote sentence that explains the bootstrap column."""
    n_boot = sorted({int(v) for v in table_df.get("ci_n_boot", pd.Series(dtype=float)) if not _is_missing(v)})
    levels = [float(v) for v in table_df.get("ci_level", pd.Series(dtype=float)) if not _is_missing(v)]
    level = levels[0] if levels else 0.95
    reps = f"{'/'.join(str(n) for n in n_boot)} replicates, " if n_boot else ""
    return (
        "Δ MC-Sens. vs reference: the row's MC-Sensitivity minus that of the reference row of the "
        "same backbone, in percent points (mean over folds; every fold model is tested on the same "
        f"held-out images), with a {100 * level:g} % confidence interval from a paired bootstrap over "
        f"the test images ({reps}percentile method); ref. = the reference row."
    )


def _footnote(table_df: pd.DataFrame, missing: str) -> str:
    """The explanatory note under a table; ``missing`` is how a missing number is shown."""
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
        f"reported standard deviation); Δ = ours − paper; {missing} = no number. F1 is the paper's "
        "prediction-weighted F1 (scikit-learn's weighted F1 with the arguments swapped, as in the "
        "authors' code)."
    )


def render_markdown(table_df: pd.DataFrame, title: str) -> str:
    """A Markdown table in the paper's layout: ours, the paper's and Δ for each of the three metrics.

    ``table_df`` is the output of :func:`summarise_folds`. Cells read ``"68.4 ± 2.8"`` (mean ±
    population std, percent, one decimal) and ``"—"`` where a number is missing. A ``Table`` column
    is added only when ``table_df`` holds more than one of the paper's tables. If ``table_df`` has
    the columns ``ci_low``, ``ci_high`` and ``ci_reference`` (see :func:`add_bootstrap_columns`), a
    last column ``"Δ MC-Sens. vs <reference> [95 % CI]"`` reads ``"+1.2 [-0.4, +2.9]"``, ``"ref."``
    in the reference row.
    """
    multi_table = "table" in table_df.columns and table_df["table"].nunique() > 1
    with_ci = _has_ci(table_df)
    header = (["Table"] if multi_table else []) + ["Backbone", "Row"]
    for m in METRICS:
        label = METRIC_LABELS[m]
        header += [f"{label} (ours)", f"{label} (paper)", "Δ"]
    if with_ci:
        header.append(_escape(_ci_header(table_df)))
    ci_entries = _ci_entries(table_df) if with_ci else []

    lines = [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for i, rec in enumerate(table_df.to_dict("records")):
        cells = ([_escape(rec["table"])] if multi_table else []) + [_escape(_backbone_label(rec)), _escape(rec["row"])]
        for m in METRICS:
            cells += [
                _cell(rec.get(m), rec.get(f"{m}_std")),
                _cell(rec.get(f"paper_{m}"), rec.get(f"paper_{m}_std")),
                _delta_cell(rec.get(f"delta_{m}")),
            ]
        if with_ci:
            cells.append(_ci_cell_markdown(ci_entries[i]))
        lines.append("| " + " | ".join(cells) + " |")

    lines += ["", _footnote(table_df, _MISSING)]
    if with_ci:
        lines += ["", _ci_note(table_df)]
    lines.append("")
    return "\n".join(lines)


def _ci_cell_markdown(entry: _CIEntry) -> str:
    """``"+1.2 [-0.4, +2.9]"``, ``"ref."`` or ``"—"``."""
    if entry is None:
        return _MISSING
    if entry == "ref":
        return "ref."
    delta, low, high = entry
    text = _delta_cell(delta)
    if not (_is_missing(low) or _is_missing(high)):
        text += f" [{_signed(low)}, {_signed(high)}]"
    return text


# --- LaTeX ----------------------------------------------------------------------------------------

_LATEX_MISSING = "--"

_LATEX_SPECIAL: dict[str, str] = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "−": r"$-$",
    "—": "---",
    "–": "--",
}


def _latex_escape(text: Any) -> str:
    """Text with LaTeX's special characters escaped (``&`` -> ``\\&``, ``%`` -> ``\\%``, ...)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def _latex_cell(mean: Any, std: Any) -> str:
    """``"68.4 $\\pm$ 2.8"``; the bare mean without std; ``"--"`` without mean."""
    if _is_missing(mean):
        return _LATEX_MISSING
    if _is_missing(std):
        return f"{float(mean):.1f}"
    return f"{float(mean):.1f} $\\pm$ {float(std):.1f}"


def _latex_signed(value: Any) -> str:
    """``"$+0.9$"`` / ``"$-1.2$"`` (a real minus sign), ``"0.0"``, ``"--"`` when missing."""
    if _is_missing(value):
        return _LATEX_MISSING
    text = _signed(value)
    return text if text == "0.0" else f"${text}$"


def _ci_cell_latex(entry: _CIEntry) -> str:
    """``"$+1.2$ [$-0.4$, $+2.9$]"``, ``"ref."`` or ``"--"``."""
    if entry is None:
        return _LATEX_MISSING
    if entry == "ref":
        return "ref."
    delta, low, high = entry
    text = _latex_signed(delta)
    if not (_is_missing(low) or _is_missing(high)):
        text += f" [{_latex_signed(low)}, {_latex_signed(high)}]"
    return text


def render_latex(table_df: pd.DataFrame, title: str) -> str:
    """A booktabs LaTeX table in the paper's layout (ours, paper, Δ per metric; no vertical rules).

    ``table_df`` is the output of :func:`summarise_folds` (optionally with the bootstrap columns of
    :func:`add_bootstrap_columns`). Columns: Backbone | Row | for each metric ``ours``, ``paper``,
    ``$\\Delta$`` under a ``\\multicolumn`` metric heading (and a leading ``Table`` column when the frame
    holds more than one of the paper's tables). Cells read ``68.4 $\\pm$ 2.8``, a paper number
    without std is bare, a missing number is ``--``. Each backbone (the paper's name where known) is
    named once, on the first row of its block, and blocks are separated by ``\\midrule``. Labels and
    the caption (from ``title``) have LaTeX's special characters escaped. Needs ``\\usepackage{booktabs}``.
    """
    multi_table = "table" in table_df.columns and table_df["table"].nunique() > 1
    with_ci = _has_ci(table_df)
    ci_entries = _ci_entries(table_df) if with_ci else []
    n_lead = 3 if multi_table else 2
    n_cols = n_lead + 3 * len(METRICS) + (1 if with_ci else 0)
    spec = "l" * n_lead + "r" * (n_cols - n_lead)

    group_row = [""] * n_lead
    rules = []
    for j, m in enumerate(METRICS):
        group_row.append(f"\\multicolumn{{3}}{{c}}{{{_latex_escape(METRIC_LABELS[m])}}}")
        first = n_lead + 3 * j + 1
        rules.append(f"\\cmidrule(lr){{{first}-{first + 2}}}")
    head_row = (["Table"] if multi_table else []) + ["Backbone", "Row"]
    head_row += ["ours", "paper", "$\\Delta$"] * len(METRICS)
    if with_ci:
        group_row.append("")
        head_row.append(_latex_escape(_ci_header(table_df)))

    lines = [
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{_latex_escape(title)}}}",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(group_row) + " \\\\",
        " ".join(rules),
        " & ".join(head_row) + " \\\\",
        "\\midrule",
    ]
    previous: tuple[Any, Any] | None = None
    for i, rec in enumerate(table_df.to_dict("records")):
        table = rec.get("table") if multi_table else None
        backbone = _backbone_label(rec)
        block = (table, backbone)
        if previous is not None and block != previous:
            lines.append("\\midrule")
        new_table = previous is None or table != previous[0]
        cells = []
        if multi_table:
            cells.append(_latex_escape(table) if new_table else "")
        cells.append(_latex_escape(backbone) if block != previous else "")
        cells.append(_latex_escape(rec["row"]))
        for m in METRICS:
            cells += [
                _latex_cell(rec.get(m), rec.get(f"{m}_std")),
                _latex_cell(rec.get(f"paper_{m}"), rec.get(f"paper_{m}_std")),
                _latex_signed(rec.get(f"delta_{m}")),
            ]
        if with_ci:
            cells.append(_ci_cell_latex(ci_entries[i]))
        lines.append(" & ".join(cells) + " \\\\")
        previous = block

    note = _footnote(table_df, _LATEX_MISSING)
    if with_ci:
        note += " " + _ci_note(table_df)
    lines += [
        "\\bottomrule",
        "\\end{tabular}",
        "\\par\\smallskip",
        f"{{\\footnotesize {_latex_escape(note)}\\par}}",
        "\\end{table}",
        "",
    ]
    return "\n".join(lines)


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


# --- paired bootstrap -----------------------------------------------------------------------------

_PREDICTION_COLUMNS: tuple[str, ...] = ("image_id", "true_class", "predicted_class")

#: About this many image slots (replicates x images) are resampled at a time (bounds memory).
_CHUNK_SLOTS = 2_000_000


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
            lacking = [c for c in _PREDICTION_COLUMNS if c not in frame.columns]
            if lacking:
                raise PatchlesionError(
                    f"paired bootstrap: the predictions of {where} lack the column(s) {', '.join(lacking)}"
                )
            frame_ids = frame["image_id"].astype(str)
            repeated = frame_ids[frame_ids.duplicated()]
            if len(repeated):
                raise PatchlesionError(
                    f"paired bootstrap: image id {repeated.iloc[0]!r} appears twice in the predictions of {where}"
                )
            if frame["true_class"].isna().any() or frame["predicted_class"].isna().any():
                raise PatchlesionError(f"paired bootstrap: the predictions of {where} have empty class cells")
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
                    f"paired bootstrap: {where} gives test image {ids[j]!r} the true class {true_k[j]!r} "
                    f"but {origin} gives {truth[j]!r}"
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
        if len(key) == 3:
            table, backbone, row = key
        elif len(key) == 2:
            table, (backbone, row) = None, key
        else:
            raise PatchlesionError(f"bootstrap results: key {key!r} must be (backbone, row) or (table, backbone, row)")
        lacking = [k for k in ("delta", "low", "high") if k not in result]
        if lacking:
            raise PatchlesionError(f"bootstrap result for {key!r} lacks {', '.join(lacking)}")
        mask = (df["backbone"].astype(str) == str(backbone)) | (df["paper_backbone"].astype(str) == str(backbone))
        mask &= df["row"].astype(str) == str(row)
        if table is not None:
            if not has_table:
                raise PatchlesionError(
                    f"bootstrap results: key {key!r} names a table but the frame has no table column"
                )
            mask &= df["table"].astype(str) == str(table)
        if not mask.any():
            raise PatchlesionError(
                f"bootstrap result for {key!r}: the table has no row {row!r} for backbone {backbone!r}"
            )
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
                f"bootstrap results: backbone {backbone!r}{where} has intervals against {reference_row!r} "
                "but no row with that label"
            )
        df.loc[in_block, "ci_reference"] = str(reference_row)
    return df
