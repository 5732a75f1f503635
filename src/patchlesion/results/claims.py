"""The paper's claims, checked: a verdict on each, per backbone, from a paired bootstrap over the test images.

The claims are data, not code: ``patchlesion/results/paper_claims.csv`` states each claim as the
paper does, with its source, the table it rests on (or ``Fig. 5``) and the rows it compares: row A
beats row B (``direction`` ``>``) in MC-Sensitivity. A claim may compare several pairs (lists joined
by ``;``, taken pair by pair, or one row against each of a list). :func:`check_claims` computes, for
every backbone that ran the claim's table, the difference A − B with its 95 % confidence interval by
the tables' own procedure (:func:`patchlesion.results.bootstrap.paired_bootstrap_ci`, same seed), and
the verdict of :func:`verdict`: the rule of docs/claims.md §2. :func:`write_claims` writes the
results as CSV and as the Markdown section that REPORT.md opens with.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import pandas as pd

from patchlesion.errors import PatchlesionError
from patchlesion.method.runs import RunSpec
from patchlesion.results.bootstrap import paired_bootstrap_ci
from patchlesion.results.render import MARKDOWN, Column, Interval, Signed, Table, Text, render
from patchlesion.results.tables import PAPER_BACKBONE_NAMES, load_paper_tables, read_csv_beside, read_metrics

__all__ = [
    "CONTRADICTED",
    "FIGURE5",
    "INCONCLUSIVE",
    "NOT_RUN",
    "REPRODUCED",
    "Claim",
    "check_claims",
    "claim_verdict",
    "claims_markdown",
    "collect_predictions",
    "figure5_row",
    "load_claims",
    "verdict",
    "write_claims",
]

_CLAIMS_CSV = "results/paper_claims.csv"
_COLUMNS: tuple[str, ...] = ("id", "table", "rows_a", "rows_b", "direction", "metric", "source", "statement", "note")

#: The "table" of the claims on Fig. 5 (its rows: :func:`figure5_row`).
FIGURE5 = "Fig. 5"
#: The claimed side of A − B: ``>`` A beats B, ``<`` A is below B.
DIRECTIONS: dict[str, float] = {">": 1.0, "<": -1.0}
#: Metrics a claim may name: the paired bootstrap is of MC-Sensitivity, the paper's headline metric.
CHECKED_METRICS: tuple[str, ...] = ("mc_sensitivity",)
#: Datasets whose claims section says that it says nothing about the paper.
SYNTHETIC_DATASETS = frozenset({"synthetic"})

REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_RUN = "reproduced", "contradicted", "inconclusive", "not run"


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: ``statement`` (its words, shortened), ``source`` (sections, table) and
    ``comparisons``, the (row A, row B) pairs of ``table`` whose difference A − B it says is on the
    ``direction`` side of 0 in ``metric``; ``note`` explains a reading of ours."""

    id: str
    table: str
    comparisons: tuple[tuple[str, str], ...]
    direction: str
    metric: str
    source: str
    statement: str
    note: str = ""


def _rows(cell: Any) -> list[str]:
    return [part.strip() for part in str(cell).split(";") if part.strip()]


def load_claims(path: str | Path | None = None) -> list[Claim]:
    """The claims of ``path`` (default: the paper's, shipped with the package), in file order.

    A file without one of the columns ``id, table, rows_a, rows_b, direction, metric, source,
    statement, note``, with a repeated id, an unknown direction or metric, or row lists of different
    lengths (neither of them a single row) raises :class:`PatchlesionError` naming the file and line.
    """
    where = str(path) if path else f"patchlesion/{_CLAIMS_CSV}"
    try:
        if path is None:
            with files("patchlesion").joinpath(_CLAIMS_CSV).open("r", encoding="utf-8") as handle:
                frame = pd.read_csv(handle, dtype=str, keep_default_na=False)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise PatchlesionError(f"{where}: cannot read the claims ({error}).") from error
    lacking = [c for c in _COLUMNS if c not in frame.columns]
    if lacking:
        raise PatchlesionError(f"{where}: the claims file lacks the column(s) {', '.join(lacking)}.")
    claims, seen = [], set()
    for line, rec in enumerate(frame.to_dict("records"), start=2):
        at = f"{where} line {line} (claim {rec['id']!r})"
        if not rec["id"] or rec["id"] in seen:
            raise PatchlesionError(f"{at}: every claim needs an id of its own.")
        seen.add(rec["id"])
        if rec["direction"] not in DIRECTIONS:
            raise PatchlesionError(f"{at}: direction {rec['direction']!r}; write one of {', '.join(DIRECTIONS)}.")
        if rec["metric"] not in CHECKED_METRICS:
            raise PatchlesionError(f"{at}: metric {rec['metric']!r}; the claims are checked on {', '.join(CHECKED_METRICS)}.")
        rows_a, rows_b = _rows(rec["rows_a"]), _rows(rec["rows_b"])
        if not rows_a or not rows_b or (len(rows_a) != len(rows_b) and 1 not in (len(rows_a), len(rows_b))):
            raise PatchlesionError(f"{at}: rows_a and rows_b must be lists (joined by ';') of one length, or one of them a single row.")
        n = max(len(rows_a), len(rows_b))
        pairs = tuple(zip(rows_a * n if len(rows_a) == 1 else rows_a, rows_b * n if len(rows_b) == 1 else rows_b))
        fields = {k: rec[k] for k in ("id", "table", "direction", "metric", "source", "statement", "note")}
        claims.append(Claim(comparisons=pairs, **fields))
    return claims


def figure5_row(n_crops: int, patch_dropout: float) -> str:
    """The row label of a point of Fig. 5: ``"NC = 9, p_d = 0.1"`` (``p_d = 0`` without patch dropout)."""
    return f"NC = {n_crops}, p_d = {patch_dropout:g}"


def verdict(low: float, high: float, direction: str = ">") -> str:
    """Reproduced when the CI [low, high] of A − B lies entirely on the claimed side of 0 (docs/claims.md §2),
    contradicted when entirely on the other side, inconclusive when it holds 0 (a CI that touches 0 holds it)."""
    sign = DIRECTIONS[direction]
    lowest, highest = sorted((sign * float(low), sign * float(high)))
    if lowest > 0:
        return REPRODUCED
    if highest < 0:
        return CONTRADICTED
    return INCONCLUSIVE


def claim_verdict(verdicts: Sequence[str]) -> str:
    """One backbone's verdict on a claim from its comparisons' (docs/claims.md §2): contradicted if one is,
    reproduced if all that ran are, not run if none ran, inconclusive otherwise."""
    ran = [v for v in verdicts if v != NOT_RUN]
    if not ran:
        return NOT_RUN
    if CONTRADICTED in ran:
        return CONTRADICTED
    return REPRODUCED if all(v == REPRODUCED for v in ran) else INCONCLUSIVE


# --- from the runs' files -------------------------------------------------------------------------


def collect_predictions(
    table_metrics: Mapping[str, Iterable[str | Path]],
    labels: Mapping[tuple[str, str], str] | None = None,
    figure5_metrics: Iterable[str | Path] = (),
) -> dict[tuple[str, str, str], list[pd.DataFrame]]:
    """Per-fold test predictions keyed by (table, backbone, row label), from the runs' metrics.json files.

    ``table_metrics`` maps a table to its runs' fold metrics.json files (predictions.csv beside each);
    ``labels`` maps (table, run name) to the paper's row label (default: the run name). Fig. 5's runs
    are keyed (:data:`FIGURE5`, backbone, :func:`figure5_row`).
    """
    labels = dict(labels or {})
    sources = [(table, paths) for table, paths in table_metrics.items()] + [(FIGURE5, figure5_metrics)]
    predictions: dict[tuple[str, str, str], list[pd.DataFrame]] = {}
    for table, paths in sources:
        for path, metrics in read_metrics(paths):
            spec = RunSpec.from_name(metrics["run"])
            if table == FIGURE5:
                row = figure5_row(spec.n_crops, spec.patch_dropout)
            else:
                row = labels.get((table, spec.name), spec.name)
            predictions.setdefault((table, spec.backbone, row), []).append(read_csv_beside(path, "predictions.csv", "test predictions"))
    return predictions


def _table_name(table: str) -> str:
    return table if table == FIGURE5 else f"Table {table}"


def _paper_delta(paper: pd.DataFrame, claim: Claim, backbone: str, row_a: str, row_b: str) -> float:
    """A − B in the paper's own numbers (percent points), NaN where the paper has no such rows."""
    name = PAPER_BACKBONE_NAMES.get(backbone)
    picked = paper[(paper["table"] == claim.table) & (paper["backbone"] == name)].set_index("row")[claim.metric]
    if row_a not in picked.index or row_b not in picked.index:
        return math.nan
    return float(picked[row_a] - picked[row_b])


def check_claims(
    claims: Sequence[Claim],
    predictions: Mapping[tuple[str, str, str], Sequence[pd.DataFrame]],
    seed: int = 0,
    n_boot: int = 2000,
    left_out: Mapping[tuple[str, str], str] | None = None,
) -> pd.DataFrame:
    """Every comparison of every claim, per backbone that ran the claim's table: A − B [CI] and its verdict.

    ``predictions`` as :func:`collect_predictions` returns. One row per (claim, backbone, comparison)
    with the columns ``id, table, backbone, row_a, row_b, direction, metric, delta, low, high, level,
    n_boot, paper_delta, verdict, reason``; ``delta``, ``low``, ``high`` and ``paper_delta`` (the
    paper's own A − B) in percent points. A claim whose table has no results gets one row with
    backbone ``""`` and verdict ``not run``; a comparison whose row is missing is ``not run`` too, and
    ``reason`` says why: ``left_out`` maps (table, row label) of a row the workflow left out on purpose
    to why (e.g. no diagnosis types). Backbones are opaque names, in the order they first appear in ``predictions``.
    """
    left_out = dict(left_out or {})
    paper = load_paper_tables()
    backbones = list(dict.fromkeys(backbone for _, backbone, _ in predictions))
    records = []
    for claim in claims:
        base = {"id": claim.id, "table": claim.table, "direction": claim.direction, "metric": claim.metric}
        ran = [b for b in backbones if any(t == claim.table and bb == b for t, bb, _ in predictions)]
        if not ran:
            records.append({**base, "backbone": "", "row_a": "", "row_b": "", "verdict": NOT_RUN,
                            "reason": f"this run has no results of {_table_name(claim.table)}"})  # fmt: skip
        for backbone in ran:
            for row_a, row_b in claim.comparisons:
                record = {**base, "backbone": backbone, "row_a": row_a, "row_b": row_b,
                          "paper_delta": _paper_delta(paper, claim, backbone, row_a, row_b)}  # fmt: skip
                missing = [r for r in (row_a, row_b) if (claim.table, backbone, r) not in predictions]
                if missing:
                    reason = f"{_table_name(claim.table)} has no row {missing[0]!r} for {backbone} in this run"
                    if (claim.table, missing[0]) in left_out:
                        reason = f"{_table_name(claim.table)}'s row {missing[0]!r} was left out: {left_out[(claim.table, missing[0])]}"
                    record.update(verdict=NOT_RUN, reason=reason)
                else:
                    ci = paired_bootstrap_ci(predictions[(claim.table, backbone, row_b)], predictions[(claim.table, backbone, row_a)],
                                             n_boot=n_boot, seed=seed, names=(row_b, row_a))  # fmt: skip
                    record.update({k: ci[k] for k in ("delta", "low", "high", "level", "n_boot")})
                    record.update(verdict=verdict(ci["low"], ci["high"], claim.direction), reason="")
                records.append(record)
    columns = ["id", "table", "backbone", "row_a", "row_b", "direction", "metric", "delta", "low", "high", "level", "n_boot",
               "paper_delta", "verdict", "reason"]  # fmt: skip
    frame = pd.DataFrame(records, columns=columns)
    frame["n_boot"] = frame["n_boot"].astype("Int64")
    return frame


# --- the report section ---------------------------------------------------------------------------

_SYNTHETIC_NOTE = (
    "**Synthetic data: this section says nothing about the paper.** These runs are the demo's "
    "miniature experiment (a tiny CNN on generated images); the verdicts show what the synthetic "
    "data says and that the check works, not whether the paper's claims hold."
)

_MINIATURE_NOTE = (
    "**The demo's tiny CNN: this section says nothing about the paper.** These runs train the demo "
    "preset's 4-layer CNN on small images (e.g. the smoke run on a HAM10000 copy, docs/running.md §11); the "
    "verdicts show that the pipeline runs on these data, not whether the paper's claims hold for its networks."
)


def _rule_note(level: float, n_boot: Sequence[int]) -> str:
    reps = f"{'/'.join(str(n) for n in n_boot)} replicates, " if n_boot else ""
    return (
        "Each claim is stated as the paper states it. Δ = MC-Sensitivity of row A minus row B, in percent "
        "points (mean over the fold models, all tested on the same held-out images), with its "
        f"{100 * level:g} % confidence interval from a paired bootstrap over the test images ({reps}percentile "
        "method, the tables' procedure); paper Δ = the same difference in the paper's table. Verdict "
        "(docs/claims.md §2): **reproduced** when the interval lies entirely on the claimed side of 0, "
        "**contradicted** when entirely on the other side, **inconclusive** when it holds 0; a claim of several "
        "comparisons is contradicted if one is, reproduced if all are. The intervals are not corrected for "
        "multiple comparisons."
    )


def claims_markdown(results: pd.DataFrame, claims: Sequence[Claim], synthetic: bool = False) -> str:
    """The claims section of REPORT.md: a verdict per claim and backbone, then every comparison.

    ``results`` as :func:`check_claims` returns for ``claims``; ``synthetic`` puts the note first
    that the data is synthetic and says nothing about the paper; on real data, runs of the demo's
    ``tiny`` backbone get the like note.
    """
    backbones = [b for b in dict.fromkeys(results["backbone"]) if b]
    number = {claim.id: i for i, claim in enumerate(claims, start=1)}
    summary_rows = []
    for claim in claims:
        own = results[results["id"] == claim.id]
        cells = [Text(number[claim.id]), Text(claim.statement), Text(claim.source)]
        for backbone in backbones:
            verdicts = list(own.loc[own["backbone"] == backbone, "verdict"])
            ran = sum(v != NOT_RUN for v in verdicts)
            text = claim_verdict(verdicts) if verdicts else (NOT_RUN if (own["backbone"] == "").any() else "—")
            if verdicts and 0 < ran < len(verdicts):
                text += f" ({ran} of {len(verdicts)} comparisons ran)"
            cells.append(Text(text))
        summary_rows.append(cells)
    summary = Table("Verdicts", [Column("#"), Column("claim (the paper)", align="l"), Column("source", align="l")]
                    + [Column(b, align="l") for b in backbones], summary_rows)  # fmt: skip

    detail_rows = []
    for rec in results.to_dict("records"):
        comparison = f"{rec['row_a']} − {rec['row_b']}" if rec["row_a"] else _table_name(rec["table"])
        outcome = rec["verdict"] if rec["verdict"] != NOT_RUN else f"not run: {rec['reason']}"
        interval, paper = Interval(rec.get("delta"), rec.get("low"), rec.get("high")), Signed(rec.get("paper_delta"))
        detail_rows.append([Text(number[rec["id"]]), Text(comparison), Text(rec["backbone"] or "—"), interval, paper, Text(outcome)])
    levels = [float(v) for v in results["level"].dropna()]
    n_boot = sorted({int(v) for v in results["n_boot"].dropna()})
    notes = [f"Note {number[c.id]}: {c.note}" for c in claims if c.note]
    detail = Table("Comparisons (A − B)", [Column("#"), Column("A − B", align="l"), Column("backbone", align="l"),
                   Column(f"Δ MC-Sens. [{100 * (levels[0] if levels else 0.95):g} % CI]"), Column("paper Δ"),
                   Column("verdict", align="l")], detail_rows, notes)  # fmt: skip
    lines = ["## The paper's claims, checked", ""]
    if synthetic:
        lines += [f"> {_SYNTHETIC_NOTE}", ""]
    elif "tiny" in backbones:
        lines += [f"> {_MINIATURE_NOTE}", ""]
    lines += [_rule_note(levels[0] if levels else 0.95, n_boot), ""]
    for table in (summary, detail):
        lines += [render(table, MARKDOWN).replace("## ", "### ", 1).strip(), ""]
    return "\n".join(lines)


def write_claims(
    results: pd.DataFrame, claims: Sequence[Claim], csv_path: str | Path, md_path: str | Path, synthetic: bool = False
) -> None:
    """:func:`check_claims`'s results as CSV (numbers rounded to 2 decimals, each claim's statement and
    source beside it) and as the Markdown section of :func:`claims_markdown`."""
    by_id = {c.id: c for c in claims}
    frame = results.copy()
    frame.insert(1, "statement", [by_id[i].statement for i in frame["id"]])
    frame.insert(2, "source", [by_id[i].source for i in frame["id"]])
    numeric = ["delta", "low", "high", "paper_delta"]
    frame[numeric] = frame[numeric].astype(float).round(2)
    for path in (Path(csv_path), Path(md_path)):
        path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv_path, index=False)
    Path(md_path).write_text(claims_markdown(results, claims, synthetic), encoding="utf-8")
