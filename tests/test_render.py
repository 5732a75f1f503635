"""Tests for patchlesion.results.render: each cell kind in both formats, and one small table written out by hand."""

from __future__ import annotations

import math

import pytest

from patchlesion.results.render import LATEX, MARKDOWN, MISSING, Column, Interval, MeanStd, Signed, Table, Text, render


@pytest.mark.parametrize(
    ("cell", "markdown", "latex"),
    [
        (Text("GRU | end & 50%_x"), "GRU \\| end & 50%_x", "GRU | end \\& 50\\%\\_x"),
        (MeanStd(68.44, 2.75), "68.4 ± 2.8", "68.4 $\\pm$ 2.8"),
        (MeanStd(67.8, math.nan), "67.8", "67.8"),
        (MeanStd(None, 1.0), "—", "--"),
        (MeanStd(math.nan, missing="—"), "—", "---"),
        (Signed(0.94), "+0.9", "$+0.9$"),
        (Signed(-1.25), "-1.2", "$-1.2$"),
        (Signed(-0.04), "0.0", "0.0"),
        (Signed(math.nan), "—", "--"),
        (Interval(1.2, -0.43, 2.91), "+1.2 [-0.4, +2.9]", "$+1.2$ [$-0.4$, $+2.9$]"),
        (Interval(1.2, math.nan, 2.91), "+1.2", "$+1.2$"),
        (Interval(reference=True), "ref.", "ref."),
        (MISSING, "—", "--"),
    ],
)
def test_each_cell_kind_in_both_formats(cell, markdown, latex) -> None:
    assert cell.write(MARKDOWN) == markdown
    assert cell.write(LATEX) == latex


def _table() -> Table:
    columns = [
        Column("Backbone", align="l"),
        Column("Row", align="l"),
        Column("ours", "F1", "F1 (ours)"),
        Column("Δ", "F1"),
        Column("folds", latex=False),
    ]
    rows = [
        [Text("A"), Text("x"), MeanStd(1.0, 0.5), Signed(0.1), Text(3)],
        [Text("A"), Text("y"), MeanStd(2.0), Signed(None), Text(3)],
        [Text("B"), Text("x"), MeanStd(None), Signed(-0.2), Text(1)],
    ]
    return Table("T & 1", columns, rows, notes=["{missing} = none.", "Second."], grouped=1, placement="[t]")


def test_markdown_table() -> None:
    expected = [
        "## T & 1",
        "",
        "| Backbone | Row | F1 (ours) | Δ | folds |",
        "|---|---|---|---|---|",
        "| A | x | 1.0 ± 0.5 | +0.1 | 3 |",
        "| A | y | 2.0 | — | 3 |",
        "| B | x | — | -0.2 | 1 |",
        "",
        "— = none.",
        "",
        "Second.",
        "",
    ]
    assert render(_table(), MARKDOWN) == "\n".join(expected)


def test_latex_table_groups_blocks_and_leaves_out_markdown_only_columns() -> None:
    expected = [
        "\\begin{table}[t]",
        "\\centering",
        "\\caption{T \\& 1}",
        "\\begin{tabular}{llrr}",
        "\\toprule",
        " &  & \\multicolumn{2}{c}{F1} \\\\",
        "\\cmidrule(lr){3-4}",
        "Backbone & Row & ours & $\\Delta$ \\\\",
        "\\midrule",
        "A & x & 1.0 $\\pm$ 0.5 & $+0.1$ \\\\",
        " & y & 2.0 & -- \\\\",
        "\\midrule",
        "B & x & -- & $-0.2$ \\\\",
        "\\bottomrule",
        "\\end{tabular}",
        "\\par\\smallskip",
        "{\\footnotesize -- = none. Second.\\par}",
        "\\end{table}",
        "",
    ]
    assert render(_table(), LATEX) == "\n".join(expected)
