"""Tests for patchlesion.results.tables and .bootstrap: fold summaries in the paper's layout, with the paper's numbers,
and paired-bootstrap intervals."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from patchlesion.errors import PatchlesionError
from patchlesion.method.classes import CLASSES
from patchlesion.results.bootstrap import (
    _design,
    _resample_weights,
    _weighted_mc_sensitivity,
    add_bootstrap_columns,
    paired_bootstrap_ci,
    reference_intervals,
)
from patchlesion.results.tables import (
    PAPER_BACKBONE_NAMES,
    best_run,
    load_paper_tables,
    render_latex,
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
    # Table IV has no std in the paper -> paper cell is the bare number; one fold model -> ours too.
    recs = [{"table": "IV", "backbone": "densenet121", "row": "Attention", "fold": 0,
             "mc_sensitivity": 0.678, "mc_specificity": 0.931, "f1": 0.752}]  # fmt: skip
    md = render_markdown(summarise_folds(recs), "Table IV")
    assert "| DenseNet121 | Attention | 67.8 | 67.8 | 0.0 | 93.1 | 93.1 | 0.0 |" in md
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

    assert not (tmp_path / "out" / "table2.tex").exists()


# --- LaTeX -------------------------------------------------------------------------------------


def test_render_latex(records: list[dict]) -> None:
    tex = render_latex(summarise_folds(records), "Table II: patch strategies")
    lines = tex.splitlines()
    assert "\\caption{Table II: patch strategies}" in lines
    assert "\\begin{tabular}{llrrrrrrrrr}" in lines
    assert "|" not in tex  # no vertical rules
    assert (
        " &  & \\multicolumn{3}{c}{MC-Sensitivity} & \\multicolumn{3}{c}{MC-Specificity} & \\multicolumn{3}{c}{F1} \\\\"
        in lines
    )
    assert "\\cmidrule(lr){3-5} \\cmidrule(lr){6-8} \\cmidrule(lr){9-11}" in lines
    assert "Backbone & Row" + " & ours & paper & $\\Delta$" * 3 + " \\\\" in lines
    start = lines.index("\\toprule")
    end = lines.index("\\bottomrule")
    body = lines[lines.index("\\midrule", start) + 1 : end]
    assert body == [
        "tiny & Multi-Crop & 60.0 $\\pm$ 8.2 & -- & -- & 90.0 $\\pm$ 0.0 & -- & -- & 50.0 $\\pm$ 8.2 & -- & -- \\\\",
        "\\midrule",
        "DenseNet121 & Multi-Crop & 72.0 $\\pm$ 1.6 & 71.1 $\\pm$ 1.1 & $+0.9$ & 96.0 $\\pm$ 0.8 & 96.1 $\\pm$ 0.1 "
        "& $-0.1$ & 82.0 $\\pm$ 2.2 & 82.1 $\\pm$ 0.3 & $-0.1$ \\\\",
        " & Downsampling & 62.0 $\\pm$ 2.8 & 66.6 $\\pm$ 0.7 & $-4.6$ & 95.0 $\\pm$ 0.0 & 95.3 $\\pm$ 0.0 "
        "& $-0.3$ & 79.0 $\\pm$ 0.8 & 81.2 $\\pm$ 0.2 & $-2.2$ \\\\",
    ]
    assert lines[-1] == "\\end{table}"
    assert tex.endswith("\\end{table}\n")
    assert "population standard deviation (ddof = 0) over the 3 folds" in tex
    assert "-- = no number" in tex


def test_render_latex_paper_without_std_and_escaping() -> None:
    recs = [
        {"table": "IV", "backbone": "densenet121", "row": "Attention", "fold": 0,
         "mc_sensitivity": 0.678, "mc_specificity": 0.931, "f1": 0.752},
        {"table": "IV", "backbone": "tiny", "row": "Crops & 50% of_x #1 {a}", "fold": 0,
         "mc_sensitivity": 0.5, "mc_specificity": 0.9, "f1": 0.4},
    ]  # fmt: skip
    tex = render_latex(summarise_folds(recs), "Table IV: 5% & $x_1$ ± Δ")
    assert "\\caption{Table IV: 5\\% \\& \\$x\\_1\\$ $\\pm$ $\\Delta$}" in tex
    assert "DenseNet121 & Attention & 67.8 & 67.8 & 0.0 & 93.1 & 93.1 & 0.0 &" in tex
    assert "tiny & Crops \\& 50\\% of\\_x \\#1 \\{a\\} & 50.0 & -- & -- &" in tex


def test_render_latex_multi_table_names_each_block_once() -> None:
    recs = [
        {"table": t, "backbone": "inception_v3", "row": r, "fold": 0,
         "mc_sensitivity": 0.7, "mc_specificity": 0.95, "f1": 0.8}
        for t, r in (("II", "Multi-Crop"), ("II", "GRU"), ("III", "Multi-Crop 16"))
    ]  # fmt: skip
    lines = render_latex(summarise_folds(recs), "Tables II and III").splitlines()
    body = lines[lines.index("\\midrule") + 1 : lines.index("\\bottomrule")]
    assert [line.split(" & ")[:3] for line in body] == [
        ["II", "InceptionV3", "Multi-Crop"],
        ["", "", "GRU"],
        ["\\midrule"],
        ["III", "InceptionV3", "Multi-Crop 16"],
    ]


def test_write_table_latex(tmp_path, records: list[dict]) -> None:  # type: ignore[no-untyped-def]
    df = summarise_folds(records)
    tex_path = tmp_path / "tex" / "table2.tex"
    write_table(df, tmp_path / "t.csv", tmp_path / "t.md", "Table II", tex_path=tex_path)
    assert tex_path.read_text(encoding="utf-8") == render_latex(df, "Table II")
    assert (tmp_path / "t.md").read_text(encoding="utf-8") == render_markdown(df, "Table II")


# --- paired bootstrap ----------------------------------------------------------------------------


def _frame(ids: list[str], truth: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
    """A predictions.csv-like frame (class names; probability columns one-hot of the prediction)."""
    frame = pd.DataFrame(
        {"image_id": ids, "true_class": [CLASSES[i] for i in truth], "predicted_class": [CLASSES[i] for i in pred]}
    )
    for c, name in enumerate(CLASSES):
        frame[name] = (pred == c).astype(float)
    return frame


def _balanced(per_class: int) -> tuple[list[str], np.ndarray]:
    """Image ids and true classes: ``per_class`` images of each of the seven classes."""
    truth = np.repeat(np.arange(len(CLASSES)), per_class)
    return [f"img{i:05d}" for i in range(truth.size)], truth


def _random_runs(n: int, n_folds: int, seed: int) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    """Two runs of ``n_folds`` random fold models (about 60 % and 70 % right) on one imbalanced test set."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(len(CLASSES), n, p=[0.11, 0.67, 0.05, 0.03, 0.11, 0.01, 0.02])
    ids = [f"ISIC_{i:07d}" for i in range(n)]

    def fold(accuracy: float) -> pd.DataFrame:
        pred = np.where(rng.random(n) < accuracy, truth, rng.integers(0, len(CLASSES), n))
        return _frame(ids, truth, pred)

    return [fold(0.6) for _ in range(n_folds)], [fold(0.7) for _ in range(n_folds)]


def _wrong(truth: np.ndarray) -> np.ndarray:
    """A prediction that is wrong on every image."""
    return (truth + 1) % len(CLASSES)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_weighted_mc_sensitivity_matches_balanced_accuracy_on_resamples() -> None:
    rng = np.random.default_rng(3)
    n = 60
    truth = rng.integers(0, 4, n)
    preds = np.vstack([np.where(rng.random(n) < a, truth, rng.integers(0, 4, n)) for a in (0.3, 0.8)])
    onehot, hits = _design(truth, preds == truth)
    indices = rng.integers(0, n, size=(5, n))
    indices[0] = np.flatnonzero(truth != 2)[rng.integers(0, (truth != 2).sum(), n)]  # class 2 absent
    indices[1] = np.arange(n)  # the original sample
    got = _weighted_mc_sensitivity(_resample_weights(indices, n), onehot, hits)
    for r, idx in enumerate(indices):
        for m in range(2):
            assert got[r, m] == pytest.approx(balanced_accuracy_score(truth[idx], preds[m][idx]), abs=1e-12)


def test_bootstrap_delta_is_the_difference_of_fold_mean_mc_sensitivities() -> None:
    reference, other = _random_runs(400, 3, seed=5)
    result = paired_bootstrap_ci(reference, other, n_boot=200)
    expected = 100 * (
        np.mean([balanced_accuracy_score(f["true_class"], f["predicted_class"]) for f in other])
        - np.mean([balanced_accuracy_score(f["true_class"], f["predicted_class"]) for f in reference])
    )
    assert result["delta"] == pytest.approx(expected, abs=1e-9)
    assert result["low"] < result["delta"] < result["high"]
    assert result["n_boot"] == 200
    assert result["level"] == 0.95


def test_bootstrap_identical_predictions_give_zero() -> None:
    reference, _ = _random_runs(300, 3, seed=1)
    copies = [f.copy() for f in reference]
    result = paired_bootstrap_ci(reference, copies, n_boot=300)
    assert result["delta"] == 0.0
    assert result["low"] == 0.0
    assert result["high"] == 0.0


def test_bootstrap_perfect_vs_half_right_is_exactly_fifty() -> None:
    # Reference: fold 0 is right on the first half of every class, fold 1 on the second half. In
    # ANY resample, class c's recalls are a/N and (N - a)/N, whose fold mean is exactly 1/2, so the
    # reference's statistic is 50 % on every replicate; the other run is perfect (100 %). Hence the
    # delta and both ends of the interval are +50.0 exactly -- the resampling is paired.
    ids, truth = _balanced(20)
    first_half = np.tile(np.arange(20) < 10, len(CLASSES))
    reference = [
        _frame(ids, truth, np.where(first_half, truth, _wrong(truth))),
        _frame(ids, truth, np.where(~first_half, truth, _wrong(truth))),
    ]
    other = [_frame(ids, truth, truth) for _ in range(3)]
    result = paired_bootstrap_ci(reference, other, n_boot=500, seed=7)
    assert result["delta"] == pytest.approx(50.0, abs=1e-9)
    assert result["low"] == pytest.approx(50.0, abs=1e-9)
    assert result["high"] == pytest.approx(50.0, abs=1e-9)


def test_bootstrap_single_half_right_fold_brackets_fifty_and_shrinks() -> None:
    # One reference fold right on exactly half of every (balanced) class: delta is exactly +50, and
    # the interval contains 50 and narrows about as 1/sqrt(n) with the number of test images.
    widths = []
    for per_class in (20, 320):
        ids, truth = _balanced(per_class)
        half = np.tile(np.arange(per_class) % 2 == 0, len(CLASSES))
        reference = [_frame(ids, truth, np.where(half, truth, _wrong(truth)))]
        other = [_frame(ids, truth, truth)]
        result = paired_bootstrap_ci(reference, other, n_boot=1000, seed=0)
        assert result["delta"] == pytest.approx(50.0, abs=1e-9)
        assert result["low"] < 50.0 < result["high"]
        widths.append(result["high"] - result["low"])
    assert widths[1] < 0.5 * widths[0]  # 16x the images: about a quarter of the width


def test_bootstrap_swapping_runs_negates_delta_and_mirrors_interval() -> None:
    reference, other = _random_runs(500, 3, seed=2)
    forward = paired_bootstrap_ci(reference, other, n_boot=400, seed=11)
    backward = paired_bootstrap_ci(other, reference, n_boot=400, seed=11)
    assert forward["delta"] > 0
    assert backward["delta"] == pytest.approx(-forward["delta"], abs=1e-9)
    assert backward["low"] == pytest.approx(-forward["high"], abs=1e-9)
    assert backward["high"] == pytest.approx(-forward["low"], abs=1e-9)


def test_bootstrap_aligns_by_image_id_and_is_deterministic() -> None:
    reference, other = _random_runs(300, 2, seed=4)
    base = paired_bootstrap_ci(reference, other, n_boot=300, seed=3)
    shuffled = [f.sample(frac=1.0, random_state=k).reset_index(drop=True) for k, f in enumerate(other)]
    assert paired_bootstrap_ci(reference, shuffled, n_boot=300, seed=3) == base
    assert paired_bootstrap_ci(reference, other, n_boot=300, seed=3) == base
    different = paired_bootstrap_ci(reference, other, n_boot=300, seed=4)
    assert different["delta"] == base["delta"]
    assert (different["low"], different["high"]) != (base["low"], base["high"])
    narrower = paired_bootstrap_ci(reference, other, n_boot=300, seed=3, level=0.5)
    assert base["low"] < narrower["low"] < narrower["high"] < base["high"]


def test_bootstrap_rejects_misaligned_predictions() -> None:
    reference, other = _random_runs(50, 2, seed=6)
    renamed = other[1].copy()
    renamed.loc[renamed["image_id"] == "ISIC_0000003", "image_id"] = "ISIC_9999999"
    with pytest.raises(PatchlesionError, match=r"run 'other' fold 1 lacks test image 'ISIC_0000003'"):
        paired_bootstrap_ci(reference, [other[0], renamed], n_boot=10)
    with pytest.raises(PatchlesionError, match=r"run 'Multi-Crop' fold 1 lacks test image 'ISIC_0000003'"):
        paired_bootstrap_ci([reference[0], renamed], other, n_boot=10, names=("Multi-Crop", "GRU"))
    extra = pd.concat([other[0], renamed.iloc[[3]]], ignore_index=True)
    with pytest.raises(PatchlesionError, match=r"run 'other' fold 0 has test image 'ISIC_9999999'"):
        paired_bootstrap_ci(reference, [extra, other[1]], n_boot=10)
    with pytest.raises(PatchlesionError, match=r"lacks test image 'ISIC_0000049'"):
        paired_bootstrap_ci(reference, [other[0].iloc[:-1], other[1]], n_boot=10)
    twice = pd.concat([other[0], other[0].iloc[[0]]], ignore_index=True)
    with pytest.raises(PatchlesionError, match=r"'ISIC_0000000' appears twice in the predictions of run 'other'"):
        paired_bootstrap_ci(reference, [twice], n_boot=10)
    relabelled = other[0].copy()
    relabelled.loc[5, "true_class"] = "DF" if relabelled.loc[5, "true_class"] != "DF" else "MEL"
    with pytest.raises(PatchlesionError, match=r"gives test image 'ISIC_0000005' the true class"):
        paired_bootstrap_ci(reference, [relabelled], n_boot=10)
    with pytest.raises(PatchlesionError, match="has no fold predictions"):
        paired_bootstrap_ci(reference, [], n_boot=10)
    with pytest.raises(PatchlesionError, match="lack the column"):
        paired_bootstrap_ci(reference, [other[0].drop(columns="predicted_class")], n_boot=10)


def test_bootstrap_is_fast_enough() -> None:
    reference, other = _random_runs(2500, 3, seed=8)
    start = time.perf_counter()
    paired_bootstrap_ci(reference, other, n_boot=2000)
    assert time.perf_counter() - start < 5.0


# --- bootstrap columns in the tables -------------------------------------------------------------


def _with_ci(records: list[dict]) -> pd.DataFrame:
    ci = {"delta": 1.2, "low": -0.43, "high": 2.91, "n_boot": 2000, "level": 0.95}
    return add_bootstrap_columns(summarise_folds(records), {("densenet121", "Downsampling"): ci}, "Multi-Crop")


def test_add_bootstrap_columns(records: list[dict]) -> None:
    df = _with_ci(records)
    assert list(df.columns[-6:]) == ["ci_delta", "ci_low", "ci_high", "ci_level", "ci_n_boot", "ci_reference"]
    ds = df[df["row"] == "Downsampling"].iloc[0]
    assert (ds["ci_delta"], ds["ci_low"], ds["ci_high"], ds["ci_n_boot"]) == (1.2, -0.43, 2.91, 2000)
    assert df["ci_reference"].tolist() == [None, "Multi-Crop", "Multi-Crop"]  # tiny has no interval
    assert df["ci_low"].isna().tolist() == [True, True, False]
    # the paper's backbone name is accepted too
    paper_key = {("DenseNet121", "Downsampling"): {"delta": 1.2, "low": -0.43, "high": 2.91}}
    again = add_bootstrap_columns(summarise_folds(records), paper_key, "Multi-Crop")
    assert again["ci_high"].tolist()[2] == 2.91
    zero = {"delta": 0.0, "low": 0.0, "high": 0.0}
    with pytest.raises(PatchlesionError, match="no row 'GRU' for backbone 'densenet121'"):
        add_bootstrap_columns(summarise_folds(records), {("densenet121", "GRU"): zero}, "Multi-Crop")
    with pytest.raises(PatchlesionError, match="no row with that label"):
        add_bootstrap_columns(summarise_folds(records), {("densenet121", "Downsampling"): zero}, "GRU")


def test_render_markdown_with_ci_column(records: list[dict]) -> None:
    md = render_markdown(_with_ci(records), "Table II")
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| Backbone"))
    assert header.endswith("| F1 (ours) | F1 (paper) | Δ | Δ MC-Sens. vs Multi-Crop [95 % CI] |")
    body = [line for line in lines if line.startswith("| ") and line != header]
    assert body[0].startswith("| tiny |") and body[0].endswith("| — | — |")
    assert body[1].startswith("| DenseNet121 | Multi-Crop |") and body[1].endswith("| -0.1 | ref. |")
    assert body[2].startswith("| DenseNet121 | Downsampling |") and body[2].endswith("| -2.2 | +1.2 [-0.4, +2.9] |")
    assert "paired bootstrap over the test images (2000 replicates, percentile method)" in md
    # without ci_delta the delta is the difference of the rows' MC-Sensitivity: 62.0 - 72.0
    md_fallback = render_markdown(_with_ci(records).drop(columns="ci_delta"), "Table II")
    assert "| -2.2 | -10.0 [-0.4, +2.9] |" in md_fallback


def test_render_latex_with_ci_column(records: list[dict]) -> None:
    tex = render_latex(_with_ci(records), "Table II")
    assert "\\begin{tabular}{llrrrrrrrrrr}" in tex
    assert "& ours & paper & $\\Delta$ & $\\Delta$ MC-Sens. vs Multi-Crop [95 \\% CI] \\\\" in tex
    assert "\\cmidrule(lr){9-11}" in tex
    assert "& 50.0 $\\pm$ 8.2 & -- & -- & -- \\\\" in tex
    assert "& 82.1 $\\pm$ 0.3 & $-0.1$ & ref. \\\\" in tex
    assert "& 81.2 $\\pm$ 0.2 & $-2.2$ & $+1.2$ [$-0.4$, $+2.9$] \\\\" in tex


def test_bootstrap_end_to_end_into_table(tmp_path) -> None:  # type: ignore[no-untyped-def]
    reference, other = _random_runs(300, 3, seed=9)
    records = []
    for row, folds in (("Multi-Crop", reference), ("GRU", other)):
        for fold, frame in enumerate(folds):
            sens = balanced_accuracy_score(frame["true_class"], frame["predicted_class"])
            records.append({"table": "II", "backbone": "densenet121", "row": row, "fold": fold,
                            "mc_sensitivity": sens, "mc_specificity": 0.9, "f1": 0.8})  # fmt: skip
    ci = paired_bootstrap_ci(reference, other, n_boot=200)
    table = add_bootstrap_columns(summarise_folds(records), {("densenet121", "GRU"): ci}, "Multi-Crop")
    gru = table[table["row"] == "GRU"].iloc[0]
    ref = table[table["row"] == "Multi-Crop"].iloc[0]
    assert gru["ci_delta"] == pytest.approx(gru["mc_sensitivity"] - ref["mc_sensitivity"], abs=1e-9)
    write_table(table, tmp_path / "t.csv", tmp_path / "t.md", "Table II", tex_path=tmp_path / "t.tex")
    back = pd.read_csv(tmp_path / "t.csv")
    assert back["ci_reference"].tolist() == ["Multi-Crop", "Multi-Crop"]
    assert back.loc[1, "ci_low"] == round(ci["low"], 2)
    assert back["ci_n_boot"].tolist()[1] == 200
    assert f"{gru['ci_delta']:+.1f} [{ci['low']:+.1f}, {ci['high']:+.1f}]" in (tmp_path / "t.md").read_text()
    assert "ref." in (tmp_path / "t.tex").read_text()



def test_reference_intervals_compare_each_row_with_its_backbones_reference() -> None:
    reference, other = _random_runs(200, 2, seed=12)
    predictions = {("densenet121", "Multi-Crop"): reference, ("densenet121", "GRU"): other}
    cis = reference_intervals(predictions, "Multi-Crop", seed=3)
    assert list(cis) == [("densenet121", "GRU")]
    assert cis[("densenet121", "GRU")] == paired_bootstrap_ci(reference, other, seed=3)
    with pytest.raises(PatchlesionError, match="table II: no run labelled 'Multi-Crop' for backbone tiny"):
        reference_intervals({**predictions, ("tiny", "GRU"): other}, "Multi-Crop", table="II")


def test_best_run_is_the_highest_fold_mean_mc_sensitivity_first_on_a_tie() -> None:
    runs = {
        "a": [{"mc_sensitivity": 0.5}, {"mc_sensitivity": 0.9}],  # mean 0.7
        "b": [{"mc_sensitivity": 0.8}],  # 0.8
        "c": [{"mc_sensitivity": 0.7}, {"mc_sensitivity": 0.9}],  # 0.8, seen after b
    }
    assert best_run(runs) == "b"
