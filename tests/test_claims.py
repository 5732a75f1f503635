"""The verdicts on the paper's claims (patchlesion.results.claims): the rule on predictions whose answer is
known by hand, the claims file against the tables' definitions, "not run", the CLI and the report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from patchlesion.cli import main
from patchlesion.errors import PatchlesionError
from patchlesion.method.classes import CLASSES
from patchlesion.results.claims import (
    CONTRADICTED,
    FIGURE5,
    INCONCLUSIVE,
    NOT_RUN,
    REPRODUCED,
    Claim,
    check_claims,
    claim_verdict,
    claims_markdown,
    figure5_row,
    load_claims,
    verdict,
)
from patchlesion.results.report import write_report
from patchlesion.results.tables import load_paper_tables

ROOT = Path(__file__).resolve().parents[1]


def _frame(truth: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
    """A predictions.csv: image id, true and predicted class (no probabilities: the bootstrap ignores them)."""
    ids = [f"ISIC_{i:07d}" for i in range(truth.size)]
    return pd.DataFrame({"image_id": ids, "true_class": [CLASSES[i] for i in truth], "predicted_class": [CLASSES[i] for i in pred]})


# 20 images of each of the seven classes. "perfect" is right on all of them; "half" (two folds) is
# right on the first half of every class in one fold and on the second half in the other, so in ANY
# resample the two folds' recalls of a class are a/N and (N - a)/N: its MC-sensitivity is 50 % on
# every replicate and perfect − half is exactly +50 with the interval [+50, +50].
TRUTH = np.repeat(np.arange(len(CLASSES)), 20)
FIRST_HALF = np.tile(np.arange(20) < 10, len(CLASSES))
WRONG = (TRUTH + 1) % len(CLASSES)
PERFECT = [_frame(TRUTH, TRUTH), _frame(TRUTH, TRUTH)]
HALF = [_frame(TRUTH, np.where(FIRST_HALF, TRUTH, WRONG)), _frame(TRUTH, np.where(~FIRST_HALF, TRUTH, WRONG))]

CLAIM = Claim(id="a_beats_b", table="II", comparisons=(("A", "B"),), direction=">", metric="mc_sensitivity",
              source="paper §III; Table II", statement="A beats B.")  # fmt: skip


def _check(a, b, claim=CLAIM, backbone="tiny"):
    return check_claims([claim], {("II", backbone, "A"): a, ("II", backbone, "B"): b}, n_boot=300).iloc[0]


def test_a_clearly_better_is_reproduced_worse_contradicted_identical_inconclusive():
    better = _check(PERFECT, HALF)
    assert (better["delta"], better["low"], better["high"]) == pytest.approx((50.0, 50.0, 50.0), abs=1e-9)
    assert better["verdict"] == REPRODUCED
    worse = _check(HALF, PERFECT)
    assert (worse["delta"], worse["low"], worse["high"]) == pytest.approx((-50.0, -50.0, -50.0), abs=1e-9)
    assert worse["verdict"] == CONTRADICTED
    same = _check(HALF, [f.copy() for f in HALF])
    assert (same["delta"], same["low"], same["high"]) == (0.0, 0.0, 0.0)
    assert same["verdict"] == INCONCLUSIVE
    # the claimed side turns with the direction: "A is below B" of a perfect A is contradicted
    below = _check(PERFECT, HALF, claim=Claim(**{**CLAIM.__dict__, "direction": "<"}))
    assert below["verdict"] == CONTRADICTED


def test_a_noisy_difference_is_inconclusive():
    # A right on 12 of every 20 images of a class, B on 10 (one fold each): +10 points, but the
    # interval over 140 images is wide enough to hold 0
    a = [_frame(TRUTH, np.where(np.tile(np.arange(20) < 12, 7), TRUTH, WRONG))]
    b = [_frame(TRUTH, np.where(np.tile(np.arange(20) >= 10, 7), TRUTH, WRONG))]
    row = _check(a, b)
    assert row["delta"] == pytest.approx(10.0, abs=1e-9)
    assert row["low"] < 0 < row["high"] and row["verdict"] == INCONCLUSIVE


@pytest.mark.parametrize(
    ("low", "high", "direction", "expected"),
    [
        (0.1, 2.0, ">", REPRODUCED),
        (-2.0, -0.1, ">", CONTRADICTED),
        (-1.0, 1.0, ">", INCONCLUSIVE),
        (0.0, 2.0, ">", INCONCLUSIVE),  # an end at exactly 0 holds 0
        (-2.0, 0.0, ">", INCONCLUSIVE),
        (-2.0, -0.1, "<", REPRODUCED),
        (0.1, 2.0, "<", CONTRADICTED),
    ],
)
def test_verdict_rule(low, high, direction, expected):
    assert verdict(low, high, direction) == expected


def test_a_claim_of_several_comparisons():
    assert claim_verdict([REPRODUCED, REPRODUCED]) == REPRODUCED
    assert claim_verdict([REPRODUCED, INCONCLUSIVE]) == INCONCLUSIVE
    assert claim_verdict([REPRODUCED, CONTRADICTED, INCONCLUSIVE]) == CONTRADICTED
    assert claim_verdict([REPRODUCED, NOT_RUN]) == REPRODUCED
    assert claim_verdict([NOT_RUN, NOT_RUN]) == NOT_RUN


# --- the claims file --------------------------------------------------------------------------------


def test_every_claim_names_rows_of_the_tables_definitions_and_of_the_papers_tables():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    defined = {table: {row["row"] for row in spec["rows"]} for table, spec in config["tables"].items()}
    fig5 = config["figures"]["fig5"]
    defined[FIGURE5] = {figure5_row(n, p) for n in fig5["n_crops"] for p in fig5["patch_dropout"]}
    paper = load_paper_tables()
    claims = load_claims()
    assert len(claims) >= 13 and len({c.id for c in claims}) == len(claims)
    bad = []
    for claim in claims:
        for row in {r for pair in claim.comparisons for r in pair}:
            if row not in defined.get(claim.table, set()):
                bad.append(f"{claim.id}: {row!r} is not a row of {claim.table} in config.yaml")
            if claim.table != FIGURE5 and not ((paper["table"] == claim.table) & (paper["row"] == row)).any():
                bad.append(f"{claim.id}: {row!r} is not a row of the paper's Table {claim.table}")
    assert not bad, "\n".join(bad)
    # the claims the issue asks for are there, each naming its rows
    pairs = {(c.table, a, b) for c in claims for a, b in c.comparisons}
    for wanted in [("II", "Multi-Crop", "Downsampling"), ("II", "Multi-Crop", "Single-Crop"), ("II", "Initial Attention", "Multi-Crop"),
                   ("III", "Attention 9", "Multi-Crop 9"), ("III", "Multi-Crop 16", "Multi-Crop 9"), ("IV", "Attention", "Multi-Crop"),
                   ("V", "Loss Weighting", "No Balancing"), ("V", "Loss Weighting", "Oversampling"),
                   ("V", "Loss Weighting", "Balanced Batches"), ("V", "Diag. Weighting", "Loss Weighting"),
                   ("VI", "k = 1.00", "k = 0.50"), ("VI", "k = 1.00", "k = 1.50"),
                   (FIGURE5, "NC = 9, p_d = 0.1", "NC = 9, p_d = 0")]:  # fmt: skip
        assert wanted in pairs, wanted


def test_figure5_row_labels():
    assert figure5_row(9, 0.1) == "NC = 9, p_d = 0.1" and figure5_row(16, 0.0) == "NC = 16, p_d = 0"


def test_claims_file_pairs_lists_and_broadcasts_a_single_row():
    claims = {c.id: c for c in load_claims()}
    assert claims["more_crops_help_multi_crop"].comparisons == (("Multi-Crop 9", "Multi-Crop 5"), ("Multi-Crop 16", "Multi-Crop 9"))
    assert claims["k1_is_best"].comparisons == (("k = 1.00", "k = 1.25"), ("k = 1.00", "k = 1.50"))
    assert claims["attention_beats_gru"].comparisons == (("Initial Attention", "GRU"), ("End Attention", "GRU"), ("Dual Attention", "GRU"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.assign(direction="!="), "direction '!='"),
        (lambda df: df.assign(metric="f1"), "metric 'f1'"),
        (lambda df: df.assign(rows_b="X;Y;Z"), "rows_a and rows_b"),
        (lambda df: df.assign(id="same"), "an id of its own"),
        (lambda df: df.drop(columns="note"), "lacks the column(s) note"),
    ],
)
def test_a_bad_claims_file_is_rejected_naming_file_and_line(tmp_path, change, message):
    frame = pd.DataFrame([{"id": "one", "table": "II", "rows_a": "A;B", "rows_b": "C;D", "direction": ">", "metric": "mc_sensitivity",
                           "source": "s", "statement": "t", "note": ""}, {"id": "two", "table": "II", "rows_a": "A;B", "rows_b": "C;D",
                           "direction": ">", "metric": "mc_sensitivity", "source": "s", "statement": "t", "note": ""}])  # fmt: skip
    path = tmp_path / "claims.csv"
    change(frame).to_csv(path, index=False)
    with pytest.raises(PatchlesionError, match=re.escape(message)) as error:
        load_claims(path)
    assert str(path) in str(error.value) and (" line " in str(error.value) or "lacks" in str(error.value))


# --- not run; the section ---------------------------------------------------------------------------


def test_claims_without_results_are_not_run_with_the_reason_and_backbones_are_opaque():
    claims = [
        CLAIM,
        Claim(id="on_spc", table="IV", comparisons=(("A", "B"),), direction=">", metric="mc_sensitivity", source="s", statement="On SPC."),
        Claim(id="two_pairs", table="II", comparisons=(("A", "B"), ("A", "C")), direction=">", metric="mc_sensitivity", source="s",
              statement="A beats B and C."),
    ]  # fmt: skip
    predictions = {("II", "timm:convnext_tiny", "A"): PERFECT, ("II", "timm:convnext_tiny", "B"): HALF,
                   ("II", "densenet121", "A"): HALF, ("II", "densenet121", "B"): PERFECT}  # fmt: skip
    results = check_claims(claims, predictions, n_boot=200)
    spc = results[results["id"] == "on_spc"]
    assert list(spc["verdict"]) == [NOT_RUN] and list(spc["reason"]) == ["this run has no results of Table IV"]
    missing_c = results[(results["id"] == "two_pairs") & (results["row_b"] == "C")]
    assert list(missing_c["verdict"]) == [NOT_RUN, NOT_RUN]
    assert missing_c["reason"].iloc[0] == "Table II has no row 'C' for timm:convnext_tiny in this run"
    assert list(results.loc[results["id"] == "a_beats_b", "backbone"]) == ["timm:convnext_tiny", "densenet121"]
    assert list(results.loc[results["id"] == "a_beats_b", "verdict"]) == [REPRODUCED, CONTRADICTED]
    # the paper's own A − B where it has that backbone and those rows (it has no rows "A", "B")
    assert results["paper_delta"].isna().all()

    text = claims_markdown(results, claims, synthetic=True)
    assert text.startswith("## The paper's claims, checked") and "says nothing about the paper" in text
    assert "| # | claim (the paper) | source | timm:convnext_tiny | densenet121 |" in text
    assert "| 1 | A beats B. | paper §III; Table II | reproduced | contradicted |" in text
    assert "| 2 | On SPC. | s | not run | not run |" in text
    assert "| 3 | A beats B and C. | s | reproduced (1 of 2 comparisons ran) | contradicted (1 of 2 comparisons ran) |" in text
    assert "| 1 | A − B | timm:convnext_tiny | +50.0 [+50.0, +50.0] | — | reproduced |" in text
    assert "| 2 | Table IV | — | — | — | not run: this run has no results of Table IV |" in text
    assert "says nothing about the paper" not in claims_markdown(results, claims, synthetic=False)
    # the demo's tiny CNN on real data (the smoke run on a HAM10000 copy) is labelled as well
    tiny = results.assign(backbone=results["backbone"].replace("densenet121", "tiny"))
    assert "The demo's tiny CNN: this section says nothing about the paper" in claims_markdown(tiny, claims, synthetic=False)


def test_paper_delta_is_the_papers_own_difference():
    claim = next(c for c in load_claims() if c.id == "multi_crop_beats_downsampling")
    results = check_claims([claim], {("II", "densenet121", "Multi-Crop"): PERFECT, ("II", "densenet121", "Downsampling"): HALF}, n_boot=50)
    assert results["paper_delta"].iloc[0] == pytest.approx(71.1 - 66.6)  # paper Table II, DenseNet121


# --- the command and the report -----------------------------------------------------------------------

RUNS = {  # Table II rows of the tiny backbone
    "Multi-Crop": "tiny-multi_crop-nc9-mean-loss_weighting-k1",
    "Downsampling": "tiny-downsample-nc1-mean-loss_weighting-k1",
    "Single-Crop": "tiny-single_crop-nc1-mean-loss_weighting-k1",
}


def _write_run(results: Path, run: str, folds: list[pd.DataFrame]) -> list[str]:
    paths = []
    for fold, frame in enumerate(folds, start=1):
        folder = results / "synthetic" / "runs" / run / f"fold{fold}"
        folder.mkdir(parents=True)
        frame.to_csv(folder / "predictions.csv", index=False)
        metrics = {"run": run, "fold": fold, "mc_sensitivity": 0.5, "mc_specificity": 0.9, "f1": 0.5}
        (folder / "metrics.json").write_text(json.dumps(metrics))
        paths.append(str(folder / "metrics.json"))
    return paths


def _noisy(seed: int, accuracy: float) -> list[pd.DataFrame]:
    rng = np.random.default_rng(seed)
    return [_frame(TRUTH, np.where(rng.random(TRUTH.size) < accuracy, TRUTH, WRONG)) for _ in range(2)]


def test_command_agrees_with_the_tables_interval_and_the_report_opens_with_it(tmp_path):
    results = tmp_path / "results"
    folds = {"Multi-Crop": _noisy(1, 0.8), "Downsampling": _noisy(2, 0.3), "Single-Crop": _noisy(3, 0.75)}
    metrics = [p for row, run in RUNS.items() for p in _write_run(results, run, folds[row])]
    labels = [arg for row, run in RUNS.items() for arg in ("--label", "II", run, row)]
    tables = results / "synthetic" / "tables"
    assert main(["claims", "--dataset", "synthetic", "--table-metrics", "II", *metrics, *labels,
                 "--csv", str(tables / "claims.csv"), "--markdown", str(tables / "claims.md")]) == 0  # fmt: skip
    claims = pd.read_csv(tables / "claims.csv")
    ds = claims[(claims["row_a"] == "Multi-Crop") & (claims["row_b"] == "Downsampling")].iloc[0]
    assert ds["verdict"] == REPRODUCED and ds["statement"].startswith("High-resolution information helps")
    assert set(claims.loc[claims["table"] == "V", "verdict"]) == {NOT_RUN}

    # the table's interval of Downsampling − Multi-Crop (its reference row) is the claim's, mirrored
    table_labels = [arg for row, run in RUNS.items() for arg in ("--label", run, row)]
    assert main(["table", "--table", "II", "--metrics", *metrics, *table_labels, "--reference", "Multi-Crop",
                 "--csv", str(tables / "table_II.csv"), "--markdown", str(tables / "table_II.md")]) == 0  # fmt: skip
    table = pd.read_csv(tables / "table_II.csv").set_index("row")
    assert (ds["delta"], ds["low"], ds["high"]) == pytest.approx(
        (-table.loc["Downsampling", "ci_delta"], -table.loc["Downsampling", "ci_high"], -table.loc["Downsampling", "ci_low"]), abs=0.011
    )

    text = write_report(results, "synthetic", "demo", results / "REPORT.md")
    assert text.index("## The paper's claims, checked") < text.index("## Tables") < text.index("### Table II")
    assert "Synthetic data: this section says nothing about the paper" in text
    assert "[csv](synthetic/tables/claims.csv)" in text


def test_command_with_missing_predictions_is_one_error_line_and_writes_nothing(tmp_path, capsys):
    results = tmp_path / "results"
    metrics = _write_run(results, RUNS["Multi-Crop"], _noisy(1, 0.8))
    Path(metrics[0]).with_name("predictions.csv").unlink()
    out = tmp_path / "claims.csv"
    args = ["--table-metrics", "II", *metrics, "--csv", str(out), "--markdown", str(tmp_path / "c.md")]
    assert main(["claims", "--dataset", "ham10000", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("patchlesion claims: error: ") and "predictions.csv" in err[-1]
    assert not out.exists() and not (tmp_path / "c.md").exists()
