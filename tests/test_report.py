"""results/REPORT.md and the figure commands on fixture results."""

from __future__ import annotations

import json

import pandas as pd

from patchlesion.cli import main
from patchlesion.results.report import write_report


def test_report_links_tables_and_figures_and_names_what_was_skipped(tmp_path):
    base = tmp_path / "results" / "synthetic"
    (base / "tables").mkdir(parents=True)
    (base / "figures").mkdir()
    (base / "tables" / "table_V.md").write_text("## Table V (synthetic)\n\n| a |\n|---|\n| 1 |\n")
    (base / "tables" / "table_II.md").write_text("## Table II (synthetic)\n\n| a |\n|---|\n| 1 |\n")
    (base / "tables" / "table_II.csv").write_text("a\n1\n")
    (base / "figures" / "figure5.png").write_bytes(b"\x89PNG")
    (base / "figures" / "table_II_confusion.png").write_bytes(b"\x89PNG")
    text = write_report(tmp_path / "results", "synthetic", "demo", tmp_path / "results" / "REPORT.md")
    assert text.index("### Table II") < text.index("### Table V"), "tables in the paper's order"
    assert "[csv](synthetic/tables/table_II.csv)" in text
    assert "![Fig. 5](synthetic/figures/figure5.png)" in text
    assert "synthetic/figures/table_II_confusion.png" in text
    assert "Fig. 4" not in text, "a figure that was not produced is not linked"
    assert "Table IV (derm7pt / SPC)**: skipped" in text and "derm7pt_dir=" in text
    assert "## Official test set" not in text, "no official-test table was produced"
    # ... so the report says how to add it later
    assert "**Official test set (ISIC 2018 Task 3)**: not scored" in text and "--config official_test=true" in text


def test_report_takes_table_iv_from_derm7pt_and_adds_the_official_test_set(tmp_path):
    base, derm = tmp_path / "results" / "ham10000", tmp_path / "results" / "derm7pt"
    for folder in (base / "tables", derm / "tables", derm / "figures"):
        folder.mkdir(parents=True)
    (base / "tables" / "table_II.md").write_text("## Table II (ham10000)\n")
    (base / "tables" / "table_VI.md").write_text("## Table VI (ham10000)\n")
    (derm / "tables" / "table_IV.md").write_text("## Table IV (derm7pt): SPC\n")
    (derm / "figures" / "table_IV_confusion.png").write_bytes(b"\x89PNG")
    (base / "tables" / "official_test.md").write_text("## Official test set (ISIC 2018 Task 3)\n\n| a |\n")
    (base / "tables" / "official_test.csv").write_text("a\n")
    text = write_report(tmp_path / "results", "ham10000", "paper", tmp_path / "results" / "REPORT.md", {"IV": "derm7pt"})
    assert text.index("### Table II") < text.index("### Table IV (derm7pt)") < text.index("### Table VI")
    assert "derm7pt/figures/table_IV_confusion.png" in text
    assert "## Official test set (ISIC 2018 Task 3)" in text and "[csv](ham10000/tables/official_test.csv)" in text
    assert "skipped" not in text.split("## Skipped")[1]



def test_report_leaves_out_tables_of_an_earlier_configuration(tmp_path):
    """A rerun with official_test=false (or a table dropped from the config) reports only what this
    configuration builds, although the earlier run's tables are still on disk (the workflow passes --only)."""
    base = tmp_path / "results" / "ham10000"
    (base / "tables").mkdir(parents=True)
    for name in ("table_II", "table_III", "official_test"):
        (base / "tables" / f"{name}.md").write_text(f"## {name} (earlier run)\n")
    out = tmp_path / "results" / "REPORT.md"
    assert main(["report", "--results", str(tmp_path / "results"), "--dataset", "ham10000", "--only", "II", "--out", str(out)]) == 0
    text = out.read_text()
    assert "table_II (earlier run)" in text and "table_III" not in text
    assert "## Official test set" not in text and "**Official test set (ISIC 2018 Task 3)**: not scored" in text


def _metrics(path, run, fold, sensitivity):
    path.mkdir(parents=True, exist_ok=True)
    cm = [[1 if i == j else 0 for j in range(7)] for i in range(7)]
    (path / "metrics.json").write_text(json.dumps({"run": run, "fold": fold, "mc_sensitivity": sensitivity, "confusion_matrix": cm}))
    return path / "metrics.json"


def test_figure5_points_are_mean_and_population_std_over_folds(tmp_path):
    files = []
    for pd_value, values in (("0", (0.5, 0.6, 0.7)), ("0.3", (0.8, 0.8, 0.8))):
        run = "tiny-ordered-nc9-mean-loss_weighting-k1-att_initial" + ("" if pd_value == "0" else f"-pd{pd_value}")
        for fold, value in enumerate(values, start=1):
            files.append(str(_metrics(tmp_path / run / f"fold{fold}", run, fold, value)))
    out = tmp_path / "fig" / "figure5.png"
    out.parent.mkdir()
    assert main(["figure5", "--metrics", *files, "--out", str(out), "--csv", str(tmp_path / "f5.csv")]) == 0
    frame = pd.read_csv(tmp_path / "f5.csv")
    assert list(frame["p_d"]) == [0.0, 0.3] and list(frame["n_crops"]) == [9, 9]
    assert list(frame["mean"]) == [60.0, 80.0]
    assert abs(frame.loc[0, "std"] - 8.16) < 0.01 and frame.loc[1, "std"] == 0  # sqrt(200/3) = 8.165
    assert out.stat().st_size > 1000 and out.with_suffix(".pdf").exists()
