"""results/REPORT.md: one page linking every table and figure the workflow produced, and saying
what was skipped and why."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

__all__ = ["SKIPPED", "write_report"]

#: Parts of the paper this workflow does not produce yet, with the reason and what to do.
SKIPPED: dict[str, str] = {
    "Table IV (derm7pt / SPC)": (
        "skipped: the derm7pt dataset is not provided. It needs a registration at "
        "https://derm.cs.sfu.ca and the conversion of METHOD §8 (dermoscopic images only, diagnosis "
        "mapped to the HAM10000 classes, resized to 600×450), which this workflow does not implement yet."
    ),
}

_TABLE_ORDER = ("II", "III", "IV", "V", "VI")


def write_report(results: str | Path, dataset: str, preset: str, out: str | Path) -> str:
    """Write ``out`` (Markdown) for the tables and figures found under ``results/<dataset>``."""
    results, out = Path(results), Path(out)
    base = results / dataset
    lines = [
        f"# Results: Gessert et al. 2019 reproduced on `{dataset}` (preset `{preset}`)",
        "",
        f"Written {_dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} by `patchlesion report`. Numbers are ours "
        "(mean ± population std over the fold models on the held-out test part) beside the paper's; "
        "F1 is the paper's prediction-weighted F1.",
        "",
        "## Tables",
        "",
    ]
    tables = sorted(base.glob("tables/table_*.md"), key=lambda p: _table_key(p.stem.removeprefix("table_")))
    for md in tables:
        name = md.stem.removeprefix("table_")
        links = " · ".join(f"[{ext}]({_rel(md.with_suffix('.' + ext), out)})" for ext in ("csv", "md", "tex") if md.with_suffix("." + ext).exists())
        lines += [md.read_text().strip().replace("## ", "### ", 1), "", f"Files: {links}", ""]
        for kind, text in (("confusion", "confusion matrix of the best run"), ("curves", "training curves")):
            png = base / "figures" / f"table_{name}_{kind}.png"
            if png.exists():
                lines += [f"![Table {name}: {text}]({_rel(png, out)})", ""]
    if not tables:
        lines += ["No table was produced.", ""]
    lines += ["## Figures", ""]
    for number, text in (("4", "attention weights of the End-Attention model"), ("5", "MC-sensitivity against patch dropout")):
        png = base / "figures" / f"figure{number}.png"
        if png.exists():
            pdf = png.with_suffix(".pdf")
            lines += [f"### Fig. {number}: {text}", "", f"![Fig. {number}]({_rel(png, out)})", "", f"PDF: [{pdf.name}]({_rel(pdf, out)})", ""]
    lines += ["## Skipped", ""]
    lines += [f"- **{what}**: {why}" for what, why in SKIPPED.items()]
    lines.append("")
    out.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines)
    out.write_text(text)
    return text


def _table_key(name: str) -> int:
    return _TABLE_ORDER.index(name) if name in _TABLE_ORDER else len(_TABLE_ORDER)


def _rel(path: Path, out: Path) -> str:
    return str(Path(path).resolve().relative_to(out.parent.resolve()))
