"""results/REPORT.md: one page that opens with the verdicts on the paper's claims
(:mod:`patchlesion.results.claims`), links every table and figure the workflow produced, and says
what was skipped and why."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from patchlesion.errors import PatchlesionError
from patchlesion.results.machines import machines_section

__all__ = ["SKIPPED", "write_report"]

#: Tables that are skipped when they were not produced, with the reason and what to do.
SKIPPED: dict[str, str] = {
    "IV": (
        "**Table IV (derm7pt / SPC)**: skipped: the derm7pt dataset is not provided (`derm7pt_dir` is not "
        "set). It needs a registration at https://derm.cs.sfu.ca; unpack release_v0.zip and run with "
        "`--config derm7pt_dir=/path/to/release_v0` (converted as docs/data.md §8.2 describes: dermoscopic images only, "
        "diagnoses mapped to the HAM10000 classes, resized to 600×450)."
    ),
    "official_test": (
        "**Official test set (ISIC 2018 Task 3)**: not scored (`official_test: false`, or no Table II). No table "
        "needs it; to add it later run again with `--config official_test=true`: the test set is downloaded once "
        "(or set `isic2018_test_dir`, docs/data.md §8.4) and only the official-test jobs run, on the trained models."
    ),
}

#: What the Skipped section says on a dataset of your own (docs/own-data.md §1) instead of :data:`SKIPPED`.
SKIPPED_OWN_DATA = (
    "**Table IV (derm7pt / SPC) and the official test set (ISIC 2018 Task 3)**: not run: they test the paper's "
    "HAM10000 models on other data of the same seven classes, so they belong to the paper's datasets only."
)

_TABLE_ORDER = ("II", "III", "IV", "V", "VI")


def write_report(
    results: str | Path, dataset: str, preset: str, out: str | Path, table_datasets: dict[str, str] | None = None,
    only: list[str] | None = None, own_data: bool = False,
) -> str:
    """Write ``out`` (Markdown) for the tables and figures found under ``results/<dataset>``.

    ``table_datasets`` names tables computed on another dataset (``{"IV": "derm7pt"}``): they are
    read from ``results/<that dataset>`` instead; a table of :data:`SKIPPED` that is found nowhere is
    listed as skipped with its reason. ``only`` (table names such as ``II``, and ``official_test``)
    limits the report to the tables of this run of the workflow, so that a table left from an earlier
    configuration (e.g. the official test set, now switched off) is not reported as if it were current.
    ``own_data``: ``dataset`` is a dataset of the user's own (docs/own-data.md §1): the paper's numbers
    are not beside ours, and Table IV and the official test set are not run.
    """
    results, out = Path(results), Path(out)
    base = results / dataset
    if not base.is_dir():
        raise PatchlesionError(f"{base}: no results of dataset {dataset!r} there; pass the --results folder and --dataset the workflow wrote.")
    table_datasets = dict(table_datasets or {})
    title = f"the grid of Gessert et al. 2019 on your dataset `{dataset}`" if own_data else f"Gessert et al. 2019 reproduced on `{dataset}`"
    beside = "; the paper's columns stay empty, its numbers are HAM10000's" if own_data else " beside the paper's"
    lines = [
        f"# Results: {title} (preset `{preset}`)",
        "",
        f"Written {_dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} by `patchlesion report`. Numbers are ours "
        f"(mean ± population std over the fold models on the held-out test part){beside}; "
        "F1 is the paper's prediction-weighted F1.",
        "",
    ]
    lines += _claims_section(base / "tables" / "claims.md", out)
    lines += ["## Tables", ""]
    tables = [p for p in base.glob("tables/table_*.md") if p.stem.removeprefix("table_") not in table_datasets]
    tables += [results / other / "tables" / f"table_{name}.md" for name, other in table_datasets.items()]
    wanted = (lambda name: True) if only is None else set(only).__contains__
    tables = sorted((p for p in tables if p.exists() and wanted(p.stem.removeprefix("table_"))), key=lambda p: _table_key(p.stem.removeprefix("table_")))
    for md in tables:
        name = md.stem.removeprefix("table_")
        lines += _table_section(md, out)
        for kind, text in (("confusion", "confusion matrix of the best run"), ("curves", "training curves")):
            png = md.parent.parent / "figures" / f"table_{name}_{kind}.png"
            if png.exists():
                lines += [f"![Table {name}: {text}]({_rel(png, out)})", ""]
    if not tables:
        lines += ["No table was produced.", ""]
    official = base / "tables" / "official_test.md"
    show_official = official.exists() and wanted("official_test")
    if show_official:
        lines += ["## Official test set (ISIC 2018 Task 3)", ""]
        lines += [
            "The runs of Table II scored on the challenge's own test set, as on its leaderboard; the ensemble's "
            f"submission files are `{dataset}/official_test/<run>/submission.csv`.",
            "",
        ]
        lines += _table_section(official, out)
    lines += ["## Figures", ""]
    for number, text in (("4", "attention weights of the End-Attention model"), ("5", "MC-sensitivity against patch dropout")):
        png = base / "figures" / f"figure{number}.png"
        if png.exists():
            pdf = png.with_suffix(".pdf")
            lines += [f"### Fig. {number}: {text}", "", f"![Fig. {number}]({_rel(png, out)})", "", f"PDF: [{pdf.name}]({_rel(pdf, out)})", ""]
    lines += machines_section([base, *(results / other for other in sorted(set(table_datasets.values())))])
    produced = {md.stem.removeprefix("table_") for md in tables} | ({"official_test"} if show_official else set())
    skipped = [SKIPPED_OWN_DATA] if own_data else [why for name, why in SKIPPED.items() if name not in produced]
    lines += ["## Skipped", ""]
    lines += [f"- {why}" for why in skipped] or ["Nothing."]
    lines.append("")
    out.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines)
    out.write_text(text)
    return text


def _claims_section(md: Path, out: Path) -> list[str]:
    """The verdicts on the paper's claims (``patchlesion claims``), which the report opens with, and a link to their CSV."""
    if not md.exists():
        return []
    csv = md.with_suffix(".csv")
    links = [f"Files: [csv]({_rel(csv, out)})", ""] if csv.exists() else []
    return [md.read_text().strip(), "", *links]


def _table_section(md: Path, out: Path) -> list[str]:
    """A table's Markdown (its heading one level down) and links to its CSV, Markdown and LaTeX files."""
    links = " · ".join(f"[{ext}]({_rel(md.with_suffix('.' + ext), out)})" for ext in ("csv", "md", "tex") if md.with_suffix("." + ext).exists())
    return [md.read_text().strip().replace("## ", "### ", 1), "", f"Files: {links}", ""]


def _table_key(name: str) -> int:
    return _TABLE_ORDER.index(name) if name in _TABLE_ORDER else len(_TABLE_ORDER)


def _rel(path: Path, out: Path) -> str:
    return str(Path(path).resolve().relative_to(out.parent.resolve()))
