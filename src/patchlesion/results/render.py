"""One renderer for every results table, in Markdown and in booktabs LaTeX.

A table is described once, independently of the output format (:class:`Table`: title, columns,
rows of typed cells, notes), and :func:`render` writes it in a :class:`Format`. A format is a table
of rules -- how text is escaped, how a missing number, the ± between mean and standard deviation
and a signed difference are written -- so each kind of cell is written by one function for both
formats (Markdown / LaTeX):

* :class:`Text` (a label): ``GRU \\| end`` / ``GRU | end \\& 50\\%``;
* :class:`MeanStd`: ``68.4 ± 2.8``, ``—`` / ``68.4 $\\pm$ 2.8``, ``--``;
* :class:`Signed`: ``+0.9``, ``-1.2``, ``0.0`` / ``$+0.9$``, ``$-1.2$``, ``0.0``;
* :class:`Interval`: ``+1.2 [-0.4, +2.9]``, ``ref.`` / ``$+1.2$ [$-0.4$, $+2.9$]``, ``ref.``.

Markdown writes one header row (a column's group folded into its heading) and every value of every
row; LaTeX writes a ``\\multicolumn`` group row with ``\\cmidrule`` s, names the leading grouped
columns (e.g. Table, Backbone) once per block of rows and separates blocks by ``\\midrule``. Needs
``\\usepackage{booktabs}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = [
    "LATEX",
    "MARKDOWN",
    "MISSING",
    "Cell",
    "Column",
    "Format",
    "Interval",
    "MeanStd",
    "Signed",
    "Table",
    "Text",
    "is_missing",
    "render",
]


def is_missing(value: Any) -> bool:
    """True for None and NaN."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _signed_text(value: Any) -> str:
    """``"+0.9"`` / ``"-1.2"`` with one decimal, ``"0.0"`` for values that round to zero."""
    text = f"{float(value):+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


@dataclass(frozen=True)
class Format:
    """The rules of one output format; every cell kind is written from these rules alone.

    ``escapes`` maps each special character to its replacement; ``missing`` stands for a missing
    number; ``plus_minus`` separates mean and standard deviation; ``math`` wraps a signed number
    (``"{}"`` or ``"${}$"``, so that LaTeX sets a real minus sign; ``0.0`` is never wrapped).
    """

    name: str
    escapes: Mapping[str, str]
    missing: str
    plus_minus: str
    math: str

    def escape(self, text: Any) -> str:
        """``text`` with this format's special characters escaped."""
        return "".join(self.escapes.get(ch, ch) for ch in str(text))

    def mean_std(self, mean: Any, std: Any = None, missing: str | None = None) -> str:
        """``"68.4 ± 2.8"``; the bare mean without std; ``missing`` (default :attr:`missing`) without mean."""
        if is_missing(mean):
            return self.missing if missing is None else missing
        if is_missing(std):
            return f"{float(mean):.1f}"
        return f"{float(mean):.1f} {self.plus_minus} {float(std):.1f}"

    def signed(self, value: Any) -> str:
        """A signed difference with one decimal (``+0.9``, ``-1.2``, ``0.0``); :attr:`missing` when missing."""
        if is_missing(value):
            return self.missing
        text = _signed_text(value)
        return text if text == "0.0" else self.math.format(text)

    def interval(self, delta: Any, low: Any, high: Any) -> str:
        """``"+1.2 [-0.4, +2.9]"``: a signed difference and its confidence interval (the difference alone without one)."""
        text = self.signed(delta)
        if not (is_missing(low) or is_missing(high)):
            text += f" [{self.signed(low)}, {self.signed(high)}]"
        return text


#: Markdown: pipes escaped, ``—`` for a missing number.
MARKDOWN = Format(name="markdown", escapes={"|": "\\|"}, missing="—", plus_minus="±", math="{}")

#: LaTeX: special characters escaped, ``--`` for a missing number, signed numbers in math mode.
LATEX = Format(
    name="latex",
    escapes={
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
    },
    missing="--",
    plus_minus=r"$\pm$",
    math="${}$",
)


# --- cells --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """A label (backbone, row, count), escaped."""

    text: Any

    def write(self, fmt: Format) -> str:
        """The cell as ``fmt`` writes it (the same method on every cell kind)."""
        return fmt.escape(self.text)


@dataclass(frozen=True)
class MeanStd:
    """A number with its standard deviation (``68.4 ± 2.8``); ``missing`` overrides the format's mark."""

    mean: Any
    std: Any = None
    missing: str | None = None

    def write(self, fmt: Format) -> str:
        missing = None if self.missing is None else fmt.escape(self.missing)
        return fmt.mean_std(self.mean, self.std, missing)


@dataclass(frozen=True)
class Signed:
    """A signed difference (``+0.9``)."""

    value: Any

    def write(self, fmt: Format) -> str:
        return fmt.signed(self.value)


@dataclass(frozen=True)
class Interval:
    """A difference with its confidence interval (``+1.2 [-0.4, +2.9]``), or ``reference`` for the reference row."""

    delta: Any = None
    low: Any = None
    high: Any = None
    reference: bool = False

    def write(self, fmt: Format) -> str:
        return "ref." if self.reference else fmt.interval(self.delta, self.low, self.high)


class _Missing:
    """An empty cell: the format's missing mark."""

    def write(self, fmt: Format) -> str:
        return fmt.missing


#: A cell without a value (``—`` / ``--``).
MISSING = _Missing()

#: Any kind of cell.
Cell = Text | MeanStd | Signed | Interval | _Missing


@dataclass(frozen=True)
class Column:
    """A column: its heading, the group heading above it (LaTeX) and its alignment.

    ``flat_heading`` is the heading where there is one header row (Markdown), default ``heading``;
    ``latex=False`` leaves the column out of the LaTeX table (counts that do not fit on a page).
    """

    heading: str
    group: str | None = None
    flat_heading: str | None = None
    align: str = "r"
    latex: bool = True


@dataclass(frozen=True)
class Table:
    """A table independent of its output format.

    ``rows`` hold one cell per column; the first ``grouped`` columns (e.g. Table, Backbone) are
    named once per block of equal values in LaTeX. ``notes`` are paragraphs under the table, in
    which ``{missing}`` stands for the format's mark of a missing number; ``placement`` is LaTeX's
    float placement (``"[t]"``, or ``""`` for none).
    """

    title: str
    columns: Sequence[Column]
    rows: Sequence[Sequence[Cell]]
    notes: Sequence[str] = ()
    grouped: int = 0
    placement: str = ""

    def block_key(self, i: int) -> tuple[Any, ...]:
        """The values of row ``i``'s grouped cells, which define its LaTeX block."""
        return tuple(cell.text if isinstance(cell, Text) else cell for cell in self.rows[i][: self.grouped])


def render(table: Table, fmt: Format) -> str:
    """``table`` as Markdown (:data:`MARKDOWN`) or booktabs LaTeX (:data:`LATEX`)."""
    return _latex(table, fmt) if fmt.name == "latex" else _markdown(table, fmt)


def _notes(table: Table, fmt: Format) -> list[str]:
    """The table's notes with ``{missing}`` replaced by the format's mark of a missing number."""
    return [note.replace("{missing}", fmt.missing) for note in table.notes]


def _markdown(table: Table, fmt: Format) -> str:
    """A ``##`` heading, one header row, one line per row and the notes as paragraphs."""
    header = [fmt.escape(c.flat_heading or c.heading) for c in table.columns]
    lines = [f"## {table.title}", "", "| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(cell.write(fmt) for cell in row) + " |" for row in table.rows]
    for note in _notes(table, fmt):
        lines += ["", note]
    lines.append("")
    return "\n".join(lines)


def _latex(table: Table, fmt: Format) -> str:
    """A booktabs table (group row with ``\\cmidrule`` s, blocks, escaped caption and footnote)."""
    shown = [j for j, c in enumerate(table.columns) if c.latex]
    columns = [table.columns[j] for j in shown]
    lines = [
        f"\\begin{{table}}{table.placement}",
        "\\centering",
        f"\\caption{{{fmt.escape(table.title)}}}",
        f"\\begin{{tabular}}{{{''.join(c.align for c in columns)}}}",
        "\\toprule",
    ]
    if any(c.group for c in columns):
        group_row, rules, j = [], [], 0
        while j < len(columns):
            group = columns[j].group
            span = 1
            while group and j + span < len(columns) and columns[j + span].group == group:
                span += 1
            if group:
                group_row.append(f"\\multicolumn{{{span}}}{{c}}{{{fmt.escape(group)}}}")
                rules.append(f"\\cmidrule(lr){{{j + 1}-{j + span}}}")
            else:
                group_row.append("")
            j += span
        lines += [" & ".join(group_row) + " \\\\", " ".join(rules)]
    lines += [" & ".join(fmt.escape(c.heading) for c in columns) + " \\\\", "\\midrule"]

    previous: tuple[Any, ...] | None = None
    for i, row in enumerate(table.rows):
        key = table.block_key(i)
        if previous is not None and key != previous:
            lines.append("\\midrule")
        cells = []
        for j in shown:
            # a grouped column is named on the first row of its block only
            repeated = j < table.grouped and previous is not None and key[: j + 1] == previous[: j + 1]
            cells.append("" if repeated else row[j].write(fmt))
        lines.append(" & ".join(cells) + " \\\\")
        previous = key
    lines += [
        "\\bottomrule",
        "\\end{tabular}",
        "\\par\\smallskip",
        f"{{\\footnotesize {fmt.escape(' '.join(_notes(table, fmt)))}\\par}}",
        "\\end{table}",
        "",
    ]
    return "\n".join(lines)
