"""Folder datasets through `snakemake` (docs/own-data.md): a 3- and a 9-class folder of PNG and JPEG
images in nested folders, without groups or diagnosis types, run Table II, Table V (its diagnosis
weighting row left out with a note) and Fig. 5 end to end; bad configurations stop at planning."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from folderdata import NINE, THREE, write_folder_dataset
from test_workflow import ROOT, snakemake

#: Table II cut to its reference and one attention row, Table V to three rows (one of them refused
#: without diagnosis types), Tables III and VI left out: the smallest grid that still has every kind of output.
TABLES = {
    "II": {"reference": "Multi-Crop", "rows": [
        {"row": "Multi-Crop", "strategy": "multi_crop", "n_crops": 9, "aggregation": "mean", "balancing": "loss_weighting"},
        {"row": "Initial Attention", "strategy": "ordered", "n_crops": 9, "aggregation": "mean", "attention": "initial",
         "patch_dropout": 0.1, "balancing": "loss_weighting"},
    ]},
    "III": None,
    "V": {"reference": "Loss Weighting", "rows": [
        {"row": "No Balancing", "strategy": "multi_crop", "n_crops": 9, "aggregation": "mean", "balancing": "none"},
        {"row": "Loss Weighting", "strategy": "multi_crop", "n_crops": 9, "aggregation": "mean", "balancing": "loss_weighting"},
        {"row": "Diag. Weighting", "strategy": "multi_crop", "n_crops": 9, "aggregation": "mean", "balancing": "diagnosis_weighting"},
    ]},
    "VI": None,
}  # fmt: skip
OVERRIDES = ["preset=demo", "image_size=[96, 72]", "crop_size=32", "epochs=2", "validation_every=1", "lr_halving_epochs=[2]", "device=cpu",
             "figures={fig5: {n_crops: [9], patch_dropout: [0.0, 0.1]}}"]  # fmt: skip


def _config(tmp_path: Path, name: str, class_names, **entry) -> Path:
    spec = {"dir": str(tmp_path / "data"), "classes": list(class_names), "benign": list(class_names[:1]), "image_column": "file",
            "label_column": "diagnosis", **entry}  # fmt: skip
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"datasets": {name: spec}, "tables": TABLES}))
    return path


def _args(tmp_path: Path, config: Path, *overrides: str) -> list[str]:
    return ["--configfile", str(ROOT / "config.yaml"), str(config), "--directory", str(tmp_path), "--config", *OVERRIDES, *overrides]


#: One fold each, to keep CI short (two folds and their standard deviation: the synthetic end-to-end
#: test of tests/test_workflow.py); Fig. 4 in the 3-class run only.
THREE_RUN = ["folds=[1]"]
NINE_RUN = ["folds=[1]", "figures={fig4: null, fig5: {n_crops: [9], patch_dropout: [0.0, 0.1]}}"]


@pytest.mark.slow(minutes=2)
@pytest.mark.parametrize(("name", "classes", "per_class", "overrides"), [("three", THREE, 16, THREE_RUN), ("nine", NINE, 8, NINE_RUN)])
def test_a_folder_dataset_runs_table_ii_table_v_and_figure_5(tmp_path, name, classes, per_class, overrides):
    write_folder_dataset(tmp_path / "data", classes, per_class)
    args = _args(tmp_path, _config(tmp_path, name, classes), f"dataset={name}", *overrides)
    result = snakemake("--cores", "2", *args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    note = f"note: Table V on {name}: row(s) 'Diag. Weighting' left out: diagnosis-guided weighting needs each image's diagnosis type"
    assert note in result.stderr

    results = tmp_path / "results" / name
    assert json.loads((results / "dataset.json").read_text())["classes"] == list(classes)
    index, split = pd.read_csv(results / "index.csv"), pd.read_csv(results / "split.csv")
    assert len(index) == per_class * len(classes) and sorted(split["part"].unique()) == [0, 1, 2, 3]
    for table, rows in (("II", ["Multi-Crop", "Initial Attention"]), ("V", ["No Balancing", "Loss Weighting"])):
        summary = pd.read_csv(results / "tables" / f"table_{table}.csv")
        assert list(summary["row"]) == rows and (summary["n_folds"] == 1).all()
        assert summary.filter(like="paper_").isna().all().all()  # no paper numbers beside a dataset of your own
    assert not (results / "tables" / "table_III.csv").exists() and not (results / "tables" / "table_VI.csv").exists()
    run = results / "runs" / "tiny-ordered-nc9-mean-loss_weighting-k1-att_initial-pd0.1" / "fold1"
    predictions = pd.read_csv(run / "predictions.csv")
    assert list(predictions.columns) == ["image_id", "true_class", "predicted_class", *classes]
    assert len(predictions) == (split["part"] == 0).sum() and predictions[list(classes)].sum(axis=1).round(4).eq(1).all()
    assert json.loads((run / "run.json").read_text())["dataset"]["classes"] == list(classes)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["class_names"] == list(classes) and len(metrics["confusion_matrix"]) == len(classes)
    for figure in ("figure5", "table_II_confusion", "table_V_curves", *(["figure4"] if name == "three" else [])):
        assert (results / "figures" / f"{figure}.png").stat().st_size > 1000
    report = (tmp_path / "results" / "REPORT.md").read_text()
    assert f"on your dataset `{name}`" in report and "the paper's columns stay empty" in report
    assert "## Official test set" not in report and "belong to the paper's datasets only" in report
    claims = pd.read_csv(results / "tables" / "claims.csv").set_index("row_a")
    assert claims.at["Diag. Weighting", "reason"] == f"Table V's row 'Diag. Weighting' was left out: dataset {name} has no diagnosis types"
    assert "Nothing to be done" in (again := snakemake("-n", *args)).stdout + again.stderr


def _planning_error(tmp_path: Path, config: Path, *overrides: str) -> str:
    result = snakemake("-n", *_args(tmp_path, config, *overrides))
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-2000:]
    return errors[0]


@pytest.mark.parametrize(("entry", "overrides", "words"), [
    ({}, ["dataset=mystery"], "config key 'dataset': unknown dataset 'mystery'; choose ham10000, synthetic or a dataset under 'datasets'; "
                              "datasets defined under 'datasets': isic2019, mine"),
    ({"classes": ["cat"], "benign": []}, ["dataset=mine"], "config key 'datasets/mine/classes': a class set needs at least two classes, got ['cat']"),
    ({"benign": ["emu"]}, ["dataset=mine"], "config key 'datasets/mine/classes': benign class(es) emu are not among the classes"),
    ({"dir": None}, ["dataset=mine"], "config key 'datasets/mine/dir': give the folder that holds the images of dataset mine"),
    ({}, ["dataset=mine", "split=published"], "config key 'split': published is the authors' split of HAM10000; dataset mine needs split: stratified"),
    ({}, ["dataset=mine", "figures={fig5: {run: {balancing: diagnosis_weighting}}}"],
     "config key 'figures/fig5/run/balancing': diagnosis_weighting needs each image's diagnosis type, and dataset mine has none"),
])  # fmt: skip
def test_a_bad_folder_dataset_config_stops_at_planning_naming_the_key(tmp_path, entry, overrides, words):
    assert words in _planning_error(tmp_path, _config(tmp_path, "mine", THREE, **entry), *overrides)


def test_a_folder_dataset_may_not_take_a_built_in_name(tmp_path):
    assert "config key 'datasets/ham10000': ham10000 is a built-in dataset" in _planning_error(tmp_path, _config(tmp_path, "ham10000", THREE))


def test_tables_and_report_of_a_folder_dataset_leave_the_paper_out(tmp_path):
    write_folder_dataset(tmp_path / "data", THREE, 4)
    result = snakemake("-n", "-p", *_args(tmp_path, _config(tmp_path, "mine", THREE), "dataset=mine", "backbones=[densenet121]"))
    assert result.returncode == 0, result.stderr[-2000:]
    commands = [line.removeprefix("Shell command: ") for line in result.stdout.splitlines()]
    tables = [line for line in commands if line.startswith("patchlesion table ")]
    assert len(tables) == 2 and all("--no-paper" in line for line in tables)
    assert "--own-data" in next(line for line in commands if line.startswith("patchlesion report "))


def test_the_isic2019_preset_plans_table_ii_on_the_downloaded_folder(tmp_path):
    from test_workflow import _job_count

    result = snakemake("-n", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path), "--config", "preset=isic2019")
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout + result.stderr
    # Table II's 7 rows x the paper's 3 backbones x 3 folds; Fig. 4 draws on End Attention's fold-1 model
    assert (_job_count(text, "download_isic2019"), _job_count(text, "index_folder")) == (1, 1)
    assert (_job_count(text, "train"), _job_count(text, "evaluate"), _job_count(text, "table"), _job_count(text, "figure4")) == (63, 21, 1, 1)
    assert _job_count(text, "official_test") == 0 and _job_count(text, "figure5") == 0
