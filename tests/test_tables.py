"""Tests for patchlesion.tables: fold summaries in the paper's layout, with the paper's numbers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from patchlesion.errors import PatchlesionError
from patchlesion.tables import (
    PAPER_BACKBONE_NAMES,
    load_paper_tables,
    render_markdown,
    summarise_folds,
    write_table,
)

# Per-fold values (fractions). Hand arithmetic, in percent, population std (ddof = 0):
#
# densenet121 / Multi-Crop (paper Table II: 71.1 ± 1.1, 96.1 ± 0.1, 82.1 ± 0.3)
#   sens 70, 72, 74 -> mean 72.0; deviations -2, 0, 2 -> var 8/3 -> std 1.633; delta 72.0 - 71.1 = +0.9
#   spec 95, 96, 97 -> mean 96.0; deviations -1, 0, 1 -> var 2/3 -> std 0.816; delta -0.1
#   f1   80, 81, 85 -> mean 82.0; deviations -2, -1, 3 -> var 14/3 -> std 2.160; delta -0.1
# densenet121 / Downsampling (paper Table II: 66.6 ± 0.7, 95.3 ± 0.0, 81.2 ± 0.2)
#   sens 60, 60, 66 -> mean 62.0; deviations -2, -2, 4 -> var 24/3 = 8 -> std 2.828; delta -4.6
#   spec 95, 95, 95 -> 95.0 ± 0.0; delta -0.3
#   f1   78, 79, 80 -> 79.0 ± 0.816; delta -2.2
# tiny / Multi-Crop (no paper numbers)
#   sens 50, 60, 70 -> 60.0; var 200/3 -> std 8.165
#   spec 90, 90, 90 -> 90.0 ± 0.0
#   f1   40, 50, 60 -> 50.0 ± 8.165
VALUES = {
    ("densenet121", "Multi-Crop"): ([0.70, 0.72, 0.74], [0.95, 0.96, 0.97], [0.80, 0.81, 0.85]),
    ("densenet121", "Downsampling"): ([0.60, 0.60, 0.66], [0.95, 0.95, 0.95], [0.78, 0.79, 0.80]),
    ("tiny", "Multi-Crop"): ([0.50, 0.60, 0.70], [0.90, 0.90, 0.90], [0.40, 0.50, 0.60]),
}


@pytest.fixture
def records() -> list[dict]:
    """Three folds; records interleaved by fold, with Multi-Crop seen before Downsampling."""
    out = []
    for fold in range(3):
        for (backbone, row), (sens, spec, f1) in VALUES.items():
            out.append(
                {
                    "table": "II",
                    "backbone": backbone,
                    "row": row,
                    "fold": fold,
                    "mc_sensitivity": sens[fold],
                    "mc_specificity": spec[fold],
                    "f1": f1[fold],
                    "macro_f1": 0.5,  # extra keys are ignored
                }
            )
    # put tiny's fold 0 first, so tiny is the first-seen backbone
    tiny0 = next(r for r in out if r["backbone"] == "tiny")
    out.remove(tiny0)
    return [tiny0, *out]


def test_load_paper_tables() -> None:
    paper = load_paper_tables()
    assert set(paper["table"]) == {"II", "III", "IV", "V", "VI"}
    assert set(paper["backbone"]) == set(PAPER_BACKBONE_NAMES.values())
    assert not paper.duplicated(["table", "backbone", "row"]).any()
    assert (paper["table"] == "II").sum() == 21
    row = paper[(paper["table"] == "II") & (paper["backbone"] == "DenseNet121") & (paper["row"] == "Multi-Crop")]
    assert row[["mc_sensitivity", "mc_sensitivity_std", "mc_specificity", "f1"]].iloc[0].tolist() == [
        71.1,
        1.1,
        96.1,
        82.1,
    ]
    # Table IV reports no standard deviations
    assert paper.loc[paper["table"] == "IV", "f1_std"].isna().all()
    # the paper's Table V unbalanced InceptionV3 has F1 84.7
    v = paper[(paper["table"] == "V") & (paper["backbone"] == "InceptionV3") & (paper["row"] == "No Balancing")]
    assert v["f1"].iloc[0] == 84.7


def test_summarise_folds_means_stds_and_deltas(records: list[dict]) -> None:
    df = summarise_folds(records)
    dn_mc = df[(df["backbone"] == "densenet121") & (df["row"] == "Multi-Crop")].iloc[0]
    assert dn_mc["table"] == "II"
    assert dn_mc["paper_backbone"] == "DenseNet121"
    assert dn_mc["n_folds"] == 3
    assert dn_mc["mc_sensitivity"] == pytest.approx(72.0)
    assert dn_mc["mc_sensitivity_std"] == pytest.approx(math.sqrt(8 / 3))  # 1.633 (ddof=1 would be 2.0)
    assert dn_mc["mc_sensitivity_std"] == pytest.approx(1.633, abs=1e-3)
    assert dn_mc["paper_mc_sensitivity"] == 71.1
    assert dn_mc["paper_mc_sensitivity_std"] == 1.1
    assert dn_mc["delta_mc_sensitivity"] == pytest.approx(0.9)
    assert dn_mc["mc_specificity"] == pytest.approx(96.0)
    assert dn_mc["mc_specificity_std"] == pytest.approx(math.sqrt(2 / 3))
    assert dn_mc["delta_mc_specificity"] == pytest.approx(-0.1)
    assert dn_mc["f1"] == pytest.approx(82.0)
    assert dn_mc["f1_std"] == pytest.approx(math.sqrt(14 / 3))
    assert dn_mc["paper_f1"] == 82.1
    assert dn_mc["delta_f1"] == pytest.approx(-0.1)

    dn_ds = df[(df["backbone"] == "densenet121") & (df["row"] == "Downsampling")].iloc[0]
    assert dn_ds["mc_sensitivity"] == pytest.approx(62.0)
    assert dn_ds["mc_sensitivity_std"] == pytest.approx(math.sqrt(8))
    assert dn_ds["delta_mc_sensitivity"] == pytest.approx(-4.6)
    assert dn_ds["mc_specificity_std"] == pytest.approx(0.0, abs=1e-9)
    assert dn_ds["delta_mc_specificity"] == pytest.approx(-0.3)
    assert dn_ds["f1"] == pytest.approx(79.0)
    assert dn_ds["delta_f1"] == pytest.approx(-2.2)


def test_summarise_folds_missing_paper_row_is_nan(records: list[dict]) -> None:
    df = summarise_folds(records)
    tiny = df[df["backbone"] == "tiny"].iloc[0]
    assert tiny["mc_sensitivity"] == pytest.approx(60.0)
    assert tiny["mc_sensitivity_std"] == pytest.approx(math.sqrt(200 / 3))
    assert pd.isna(tiny["paper_backbone"])
    for m in ("mc_sensitivity", "mc_specificity", "f1"):
        assert math.isnan(tiny[f"paper_{m}"])
        assert math.isnan(tiny[f"paper_{m}_std"])
        assert math.isnan(tiny[f"delta_{m}"])


def test_summarise_folds_keeps_first_seen_order(records: list[dict]) -> None:
    df = summarise_folds(records)
    # backbones in first-seen order (tiny first), rows in first-seen order (Multi-Crop before Downsampling)
    assert list(zip(df["backbone"], df["row"])) == [
        ("tiny", "Multi-Crop"),
        ("densenet121", "Multi-Crop"),
        ("densenet121", "Downsampling"),
    ]
    assert list(df.columns[:5]) == ["table", "backbone", "paper_backbone", "row", "n_folds"]


def test_summarise_folds_row_missing_for_that_table() -> None:
    # "Multi-Crop 16" exists in Table III but not in Table II -> no paper numbers for Table II.
    recs = [
        {"table": "II", "backbone": "inception_v3", "row": "Multi-Crop 16", "fold": 0,
         "mc_sensitivity": 0.7, "mc_specificity": 0.95, "f1": 0.8},
        {"table": "III", "backbone": "inception_v3", "row": "Multi-Crop 16", "fold": 0,
         "mc_sensitivity": 0.7, "mc_specificity": 0.95, "f1": 0.8},
    ]  # fmt: skip
    df = summarise_folds(recs)
    assert df["table"].tolist() == ["II", "III"]
    assert math.isnan(df.loc[0, "paper_mc_sensitivity"])
    assert df.loc[1, "paper_mc_sensitivity"] == 70.8
    assert df.loc[1, "delta_mc_sensitivity"] == pytest.approx(-0.8)


def test_summarise_folds_rejects_bad_records(records: list[dict]) -> None:
    with pytest.raises(PatchlesionError, match="fold 0 appears twice"):
        summarise_folds([*records, records[0]])
    bad = dict(records[0])
    del bad["f1"]
    with pytest.raises(PatchlesionError, match="lacks f1"):
        summarise_folds([bad])


def test_render_markdown(records: list[dict]) -> None:
    md = render_markdown(summarise_folds(records), "Table II: patch strategies")
    lines = md.splitlines()
    assert lines[0] == "## Table II: patch strategies"
    header = next(line for line in lines if line.startswith("| Backbone"))
    assert header == (
        "| Backbone | Row | MC-Sensitivity (ours) | MC-Sensitivity (paper) | Δ | "
        "MC-Specificity (ours) | MC-Specificity (paper) | Δ | F1 (ours) | F1 (paper) | Δ |"
    )
    body = [line for line in lines if line.startswith("| ") and line != header]
    assert body == [
        "| tiny | Multi-Crop | 60.0 ± 8.2 | — | — | 90.0 ± 0.0 | — | — | 50.0 ± 8.2 | — | — |",
        "| DenseNet121 | Multi-Crop | 72.0 ± 1.6 | 71.1 ± 1.1 | +0.9 | 96.0 ± 0.8 | 96.1 ± 0.1 | -0.1 "
        "| 82.0 ± 2.2 | 82.1 ± 0.3 | -0.1 |",
        "| DenseNet121 | Downsampling | 62.0 ± 2.8 | 66.6 ± 0.7 | -4.6 | 95.0 ± 0.0 | 95.3 ± 0.0 | -0.3 "
        "| 79.0 ± 0.8 | 81.2 ± 0.2 | -2.2 |",
    ]
    footnote = lines[-1] if lines[-1] else lines[-2]
    assert "population standard deviation" in footnote
    assert "over the 3 folds" in footnote
    assert "held-out test part" in footnote
    assert "prediction-weighted F1" in footnote


def test_render_markdown_paper_without_std() -> None:
    # Table IV has no std in the paper -> paper cell is the bare number.
    recs = [{"table": "IV", "backbone": "densenet121", "row": "Attention", "fold": 0,
             "mc_sensitivity": 0.678, "mc_specificity": 0.931, "f1": 0.752}]  # fmt: skip
    md = render_markdown(summarise_folds(recs), "Table IV")
    assert "| DenseNet121 | Attention | 67.8 ± 0.0 | 67.8 | 0.0 | 93.1 ± 0.0 | 93.1 | 0.0 |" in md
    assert "over the 1 fold," in md


def test_write_table(tmp_path, records: list[dict]) -> None:  # type: ignore[no-untyped-def]
    df = summarise_folds(records)
    csv_path = tmp_path / "out" / "table2.csv"
    md_path = tmp_path / "out" / "table2.md"
    write_table(df, csv_path, md_path, "Table II")
    assert md_path.read_text(encoding="utf-8") == render_markdown(df, "Table II")
    back = pd.read_csv(csv_path)
    assert list(back.columns) == list(df.columns)
    assert back["backbone"].tolist() == ["tiny", "densenet121", "densenet121"]
    assert back.loc[1, "mc_sensitivity_std"] == 1.63
    assert back.loc[1, "f1_std"] == 2.16
    assert back.loc[1, "delta_mc_sensitivity"] == 0.9
    assert back.loc[0, "mc_sensitivity_std"] == 8.16
    assert pd.isna(back.loc[0, "paper_f1"])
    assert back["n_folds"].tolist() == [3, 3, 3]
