"""The Snakemake workflow: lint, planning with the paper preset, config rejection, one real run."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def snakemake(*args: str, cwd: Path = ROOT, timeout: int = 2400) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_lint_is_clean():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_paper_preset_plans_three_folds_per_backbone(tmp_path):
    result = snakemake("-n", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path))
    assert result.returncode == 0, result.stderr
    stats = result.stdout + result.stderr
    # Tables II, III, V, VI: 19 distinct runs x 3 backbones x 3 folds = 171, plus Fig. 5's 15 further
    # DenseNet121 runs x 3 folds = 45; weights fetched once per backbone
    assert _job_count(stats, "train") == 216
    assert _job_count(stats, "evaluate") == 72  # one job per run evaluates its 3 fold models
    assert _job_count(stats, "table") == 4 and _job_count(stats, "table_figures") == 4
    assert _job_count(stats, "figure4") == _job_count(stats, "figure5") == _job_count(stats, "report_md") == 1
    assert _job_count(stats, "claims") == 1  # the verdicts on the paper's claims, from every table's and Fig. 5's runs
    assert _job_count(stats, "fetch_weights") == 3
    assert _job_count(stats, "download_ham10000") == 1
    # the official test set: Table II's 7 rows x 3 backbones, each job all folds and their ensemble;
    # the ISIC 2018 test images are downloaded into resources/isic2018_test
    assert _job_count(stats, "official_test") == 21 and _job_count(stats, "official_test_table") == 1
    assert _job_count(stats, "download_isic2018_test") == 1 and _job_count(stats, "index") == 2
    assert _job_count(stats, "prepare") == 2  # one decoded-image cache per dataset (HAM10000, ISIC 2018 test)
    # no derm7pt_dir: Table IV is skipped, nothing of derm7pt is planned
    assert _job_count(stats, "derm7pt_missing") == _job_count(stats, "convert_derm7pt") == 0


def test_derm7pt_dir_adds_table_iv_with_one_last_model_per_row(tmp_path):
    release = tmp_path / "release_v0"
    release.mkdir()
    result = snakemake("-n", "-p", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path),
                       "--config", f"derm7pt_dir={release}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    stats = result.stdout + result.stderr
    # Table IV: 3 rows x 3 backbones, fold 1 only, on derm7pt (not shared with the HAM10000 runs)
    assert _job_count(stats, "train") == 216 + 9 and _job_count(stats, "evaluate") == 72
    assert _job_count(stats, "evaluate_derm7pt") == 9  # derm7pt's one fold: evaluate's copy for that fold
    assert "patchlesion evaluate --index results/derm7pt/index.csv --split results/derm7pt/split.csv --fold 1 --run " in stats
    assert _job_count(stats, "convert_derm7pt") == _job_count(stats, "derm7pt_split") == 1
    assert _job_count(stats, "table") == 5 and _job_count(stats, "table_figures") == 5
    assert "results/derm7pt/runs/densenet121-ordered-nc9-mean-loss_weighting-k1-att_initial-pd0.2/fold1/model_last.pt" in stats
    assert "results/derm7pt/runs/densenet121-multi_crop-nc9-mean-loss_weighting-k1/fold2" not in stats
    assert "--model results/derm7pt/runs/densenet121-multi_crop-nc9-mean-loss_weighting-k1/fold1/model_last.pt" in stats
    assert "--table-dataset IV derm7pt" in stats
    # the claims compare Table IV's rows too, from the derm7pt runs
    assert "--table-metrics IV results/derm7pt/runs/inception_v3-multi_crop-nc9-mean-loss_weighting-k1/fold1/metrics.json" in stats
    # every training setting reaches `patchlesion train` (tests/test_settings.py), evaluate gets no training-only one
    assert "--plain-batch-size 5" in stats and "--model results/derm7pt/runs/densenet121-multi_crop-nc9-mean-loss_weighting-k1/fold1/model_last.pt --predictions" in stats
    assert not any("patchlesion evaluate" in line and "--epochs" in line for line in stats.splitlines())



def test_with_fold_1_only_one_evaluation_rule_serves_derm7pt_too(tmp_path):
    """folds=[1]: derm7pt's fold list is the configured one, so rule evaluate evaluates its runs as well."""
    release = tmp_path / "release_v0"
    release.mkdir()
    result = snakemake("-n", "-p", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path),
                       "--config", f"derm7pt_dir={release}", "folds=[1]")  # fmt: skip
    assert result.returncode == 0, result.stderr
    stats = result.stdout + result.stderr
    assert _job_count(stats, "train") == _job_count(stats, "evaluate") == 72 + 9 and _job_count(stats, "evaluate_derm7pt") == 0
    assert "--fold 1 --run inception_v3-multi_crop-nc9-mean-loss_weighting-k1 --model results/derm7pt/runs/" in stats

def test_demo_preset_plans_tiny_backbone(tmp_path):
    result = snakemake("-n", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path), "--config", "preset=demo")
    assert result.returncode == 0, result.stderr
    assert _job_count(result.stdout + result.stderr, "train") == 42  # (19 table runs + 2 Fig. 5 runs) x 2 folds
    assert _job_count(result.stdout + result.stderr, "fetch_weights") == 0  # tiny: no ImageNet weights
    # the official-test protocol on a held-out synthetic set: 7 Table II runs + its synthesis, index, table
    assert _job_count(result.stdout + result.stderr, "official_test") == 7
    assert _job_count(result.stdout + result.stderr, "synthesize_test") == 1
    assert _job_count(result.stdout + result.stderr, "prepare") == 2  # the training set and the official test set
    assert "tiny-multi_crop-nc9-mean-loss_weighting-k1" in result.stdout + result.stderr


def _label_counts(text: str, table: str) -> dict[str, int]:
    """How many rows of one table's `patchlesion table` command each backbone (the run name's first part) has."""
    command = next(line for line in text.splitlines() if line.startswith("Shell command: patchlesion table ") and f"Table {table} " in line)
    backbones = [word.split("-", 1)[0] for previous, word in zip(command.split(), command.split()[1:]) if previous == "--label"]
    return {backbone: backbones.count(backbone) for backbone in backbones}


@pytest.mark.slow  # imports timm to check the model exists: about 30 s on two cores
def test_demo_plans_every_table_for_a_timm_backbone_beside_tiny(tmp_path):
    pytest.importorskip("timm")
    result = snakemake("-n", "-p", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path),
                       "--config", "preset=demo", "backbones=[tiny, timm:resnet18]")  # fmt: skip
    assert result.returncode == 0, result.stderr
    stats = result.stdout + result.stderr
    assert _job_count(stats, "train") == 42 + 38  # tiny's as in the demo, and the 19 table runs x 2 folds of timm:resnet18
    assert _job_count(stats, "official_test") == 14 and _job_count(stats, "fetch_weights") == 0  # pretrained: false
    rows = {table: len(spec["rows"]) for table, spec in yaml.safe_load((ROOT / "config.yaml").read_text())["tables"].items()}
    for table in ("II", "III", "V", "VI"):
        assert _label_counts(stats, table) == {"tiny": rows[table], "timm.resnet18": rows[table]}, table
    train = [line for line in stats.splitlines() if "patchlesion train" in line and "--run timm.resnet18-multi_crop-nc9-mean-loss_weighting-k1 " in line]
    assert len(train) == 2 and all("--learning-rate 0.001 " in line for line in train)  # the demo's rate of timm models


@pytest.mark.slow  # imports timm: about 30 s on two cores
def test_se_resnext50_from_timm_and_a_timm_backbone_fetch_their_weights(tmp_path):
    pytest.importorskip("timm")
    result = snakemake("-n", "-p", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path), "--config",
                       "backbones=[densenet121, se_resnext50, timm:convnext_tiny]", "se_resnext50_source=timm",
                       "learning_rate={se_resnext50: 2.0e-5, timm: 1.0e-4}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    stats = result.stdout + result.stderr
    assert _job_count(stats, "train") == 216 and "runs/se_resnext50-" not in stats
    assert _job_count(stats, "fetch_weights") == 3
    for backbone, record in (("timm:legacy_seresnext50_32x4d", "legacy_seresnext50_32x4d"), ("timm:convnext_tiny", "convnext_tiny")):
        assert f"patchlesion fetch-weights {backbone} --torch-home resources/torch > results/logs/fetch_weights/timm/{record}.sha256.log" in stats
    for run, rate in (("timm.legacy_seresnext50_32x4d", "2e-05"), ("timm.convnext_tiny", "0.0001"), ("densenet121", "1.25e-05")):
        train = [line for line in stats.splitlines() if f"--run {run}-multi_crop-nc9-mean-loss_weighting-k1 " in line and "patchlesion train" in line]
        assert len(train) == 3 and all(f"--learning-rate {rate} " in line and "--pretrained" in line for line in train), run


def _job_count(text: str, rule: str) -> int:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == rule and parts[1].isdigit():
            return int(parts[1])
    return 0


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("bogus_key=1", "bogus_key"),
        ("epochs=0", "epochs"),
        ("split=random", "random"),
        ("backbones=[resnet9000]", "resnet9000"),
        ("preset=nonexistent", "preset"),
        ("device=gpu7", "gpu7"),
        ("crop_size=500", "crop_size"),
        ("derm7pt_split=random7", "random7"),
        ("test_checkpoint={derm7pt: worst}", "worst"),
        ("gpu_jobs_per_device=0", "gpu_jobs_per_device"),
    ],
)
def test_bad_config_is_rejected_naming_the_key(tmp_path, override, named):
    result = snakemake("-n", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path), "--config", override)
    assert result.returncode == 2
    assert named in _config_error(result)
    assert not any(tmp_path.glob("results/*")), "nothing may be produced before validation passes"


def _config_error(result: subprocess.CompletedProcess) -> str:
    """The one `error:` line of a rejected config, checked to come without the schema or the config
    (Snakemake's own report of a failed validation prints both: 631 lines for an unknown key)."""
    output = (result.stdout + result.stderr).splitlines()
    errors = [line for line in output if line.startswith("error: ")]
    assert len(errors) == 1 and len(output) <= 10, "\n".join(output[:40])
    return errors[0]


def test_config_errors_name_the_key_the_value_and_what_is_allowed(tmp_path):
    args = ["-n", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path), "--config"]
    error = _config_error(snakemake(*args, "unknown_key=1"))
    assert "'unknown_key' is not a setting" in error and "epochs, batch_size" in error
    assert "(did you mean 'epochs'?)" in _config_error(snakemake(*args, "epoch=3"))
    assert "'split': 'random' is not allowed; allowed values: published, stratified." in _config_error(snakemake(*args, "split=random"))
    assert "allowed values: auto, true, false" in _config_error(snakemake(*args, "amp=yes"))
    # a typo in a table row of config.yaml: the row, the value and the allowed ones
    text = (ROOT / "config.yaml").read_text()
    row = "{row: Multi-Crop, strategy: multi_crop, n_crops: 9,"
    assert text.count(row) == 2  # Tables II and IV
    (tmp_path / "typo.yaml").write_text(text.replace(row, row.replace("multi_crop", "multicrop"), 1))
    error = _config_error(snakemake("-n", "--configfile", str(tmp_path / "typo.yaml"), "--directory", str(tmp_path)))
    assert "config key 'tables/II/rows/2/strategy' (row 'Multi-Crop'): 'multicrop' is not allowed" in error
    assert "allowed values: downsample, single_crop, multi_crop, ordered" in error
    (tmp_path / "typo.yaml").write_text(text.replace(row, row.replace("n_crops", "n_crop"), 1))
    error = _config_error(snakemake("-n", "--configfile", str(tmp_path / "typo.yaml"), "--directory", str(tmp_path)))
    assert "'n_crop' under 'tables/II/rows/2' (row 'Multi-Crop') is not a setting (did you mean 'n_crops'?)" in error


def test_every_user_path_is_shell_quoted():
    """Every input, output, log and params value in a rule's shell command is quoted ({input:q}), so that
    a path with a space (ham10000_dir="/data/my ham") stays one argument. The params that hold several
    command-line words (options, settings) are built from quoted parts in common.smk."""
    several_words = {"params.settings", "params.options", "params.size", "params.folds"}
    for path in (ROOT / "workflow" / "rules").glob("*.smk"):
        for shell in re.findall(r"shell:\n((?:\s+\"[^\n]*\n)+)", path.read_text()):
            for field in re.findall(r"(?<!\{)\{([^{}]+)\}(?!\})", shell):
                name, _, spec = field.partition(":")
                if name.startswith(("input", "output", "log", "params")) and name not in several_words:
                    assert spec == "q", f"{path.name}: {{{field}}} in {shell.strip()}"


def test_a_data_folder_with_a_space_stays_one_argument(tmp_path):
    folder = tmp_path / "my ham"
    folder.mkdir()
    result = snakemake("-n", "-p", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path),
                       "--config", f"ham10000_dir={folder}", "--", "results/ham10000/index.csv")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"patchlesion index --data-dir {shlex.quote(str(folder))} --out" in result.stdout


def test_official_test_switch_leaves_out_only_the_official_test_set(tmp_path):
    """official_test=false with a local HAM10000 copy: every paper table, nothing that needs the network
    but the ImageNet weights (which docs/running.md §5 fills by hand offline)."""
    folder = tmp_path / "ham"
    folder.mkdir()
    result = snakemake("-n", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path),
                       "--config", f"ham10000_dir={folder}", "official_test=false")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    stats = result.stdout + result.stderr
    assert _job_count(stats, "train") == 3 * _job_count(stats, "evaluate") == 216
    assert _job_count(stats, "table") == _job_count(stats, "table_figures") == 4
    assert _job_count(stats, "figure4") == _job_count(stats, "figure5") == _job_count(stats, "report_md") == 1
    assert _job_count(stats, "download_ham10000") == _job_count(stats, "download_isic2018_test") == 0
    assert _job_count(stats, "official_test") == _job_count(stats, "official_test_table") == 0
    assert _job_count(stats, "index") == _job_count(stats, "prepare") == 1


def test_bad_value_inside_a_preset_is_rejected(tmp_path):
    config = (ROOT / "config.yaml").read_text().replace("crop_size: 48", "crop_size: -3")
    (tmp_path / "config.yaml").write_text(config)
    result = snakemake("-n", "--configfile", str(tmp_path / "config.yaml"), "--directory", str(tmp_path), "--config", "preset=demo")
    assert result.returncode != 0
    assert "-3" in result.stdout + result.stderr


#: Tables III, V and VI of the end-to-end test cut to two rows each (a reference and one more), so that
#: it trains 11 runs instead of the demo's 21; the full tables are planned by the tests above.
TWO_ROW_TABLES = """
tables:
  III:
    reference: Multi-Crop 9
    rows:
      - {row: Multi-Crop 5, strategy: multi_crop, n_crops: 5, aggregation: mean, balancing: loss_weighting}
      - {row: Multi-Crop 9, strategy: multi_crop, n_crops: 9, aggregation: mean, balancing: loss_weighting}
  V:
    reference: Loss Weighting
    rows:
      - {row: No Balancing, strategy: multi_crop, n_crops: 9, aggregation: mean, balancing: none}
      - {row: Loss Weighting, strategy: multi_crop, n_crops: 9, aggregation: mean, balancing: loss_weighting}
  VI:
    reference: k = 1.00
    rows:
      - {row: k = 0.50, strategy: multi_crop, n_crops: 9, aggregation: mean, balancing: loss_weighting, k: 0.5}
      - {row: k = 1.00, strategy: multi_crop, n_crops: 9, aggregation: mean, balancing: loss_weighting, k: 1.0}
"""


@pytest.mark.slow(minutes=6)  # the longest test: started first (tests/conftest.py)
def test_workflow_end_to_end_on_tiny_synthetic_data(tmp_path):
    (tmp_path / "tables.yaml").write_text(TWO_ROW_TABLES)
    overrides = [
        "preset=demo",
        "synthetic={n_images: 120, image_size: [96, 72], seed: 1, test: {n_images: 60, seed: 2}}",
        "image_size=[96, 72]",
        "crop_size=32",
        "epochs=2",
        "validation_every=1",
        "lr_halving_epochs=[2]",
        "device=cpu",
        "folds=[1, 2]",  # two folds keep the run short and still give a standard deviation
        "figures={fig5: {n_crops: [9], patch_dropout: [0.0, 0.1]}}",  # Fig. 5 with one line
    ]
    args = ["--cores", "2", "--configfile", str(ROOT / "config.yaml"), str(tmp_path / "tables.yaml"), "--directory", str(tmp_path),
            "--config", *overrides]  # fmt: skip
    result = snakemake(*args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    results = tmp_path / "results" / "synthetic"
    meta = pd.read_csv(tmp_path / "resources" / "synthetic" / "HAM10000_metadata.csv")
    assert len(meta) == 120
    split = pd.read_csv(results / "split.csv")
    assert sorted(split["part"].unique()) == [0, 1, 2, 3]
    runs = sorted(p.name for p in (results / "runs").iterdir())
    assert len(runs) == 11  # Table II's 7 rows, one more of Tables III, V and VI each, Fig. 5's p_d = 0 at NC = 9
    run = results / "runs" / "tiny-ordered-nc9-mean-loss_weighting-k1-att_initial-pd0.1"
    for fold in (1, 2):
        metrics = json.loads((run / f"fold{fold}" / "metrics.json").read_text())
        assert metrics["n_images"] == (split["part"] == 0).sum()
        predictions = pd.read_csv(run / f"fold{fold}" / "predictions.csv")
        assert predictions[["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]].sum(axis=1).round(4).eq(1).all()
        history = pd.read_csv(run / f"fold{fold}" / "history.csv")
        assert list(history["epoch"]) == [1, 2]
        log = (results / "logs" / "train" / run.name / f"fold{fold}.log").read_text()
        assert "epoch 1/2" in log and "epoch 2/2" in log
    table = pd.read_csv(results / "tables" / "table_II.csv")
    assert list(table["row"]) == ["Downsampling", "Single-Crop", "Multi-Crop", "GRU", "Initial Attention", "End Attention", "Dual Attention"]
    assert (table["n_folds"] == 2).all()
    assert "Initial Attention" in (results / "tables" / "table_II.md").read_text()
    assert "\\toprule" in (results / "tables" / "table_II.tex").read_text()
    for name in ("III", "V", "VI"):
        assert len(pd.read_csv(results / "tables" / f"table_{name}.csv")) == 2
    figures = results / "figures"
    for name in ("figure4", "figure5", "table_II_confusion", "table_V_curves"):
        assert (figures / f"{name}.png").stat().st_size > 1000 and (figures / f"{name}.pdf").exists()
    report = (tmp_path / "results" / "REPORT.md").read_text()
    assert "Table IV" in report and "synthetic/figures/figure4.png" in report
    # the report opens with the verdicts on the paper's claims, labelled as synthetic; Table IV's are not run
    assert report.index("## The paper's claims, checked") < report.index("## Tables")
    assert "Synthetic data: this section says nothing about the paper" in report
    claims = pd.read_csv(results / "tables" / "claims.csv")
    assert set(claims["backbone"].dropna()) == {"tiny"} and set(claims.loc[claims["table"] == "IV", "verdict"]) == {"not run"}
    assert claims.loc[claims["table"] == "II", "verdict"].isin(["reproduced", "contradicted", "inconclusive"]).all()

    # the official-test protocol on the held-out synthetic set: fold models and their ensemble
    official = pd.read_csv(results / "tables" / "official_test.csv")
    assert len(official) == 7 and (official["n_folds"] == 2).all() and (official["n_scored"] == 60).all()
    assert official["bma_ensemble"].between(0, 100).all()
    submission = pd.read_csv(results / "official_test" / "tiny-multi_crop-nc9-mean-loss_weighting-k1" / "submission.csv")
    assert list(submission.columns) == ["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"] and len(submission) == 60
    assert "## Official test set (ISIC 2018 Task 3)" in report

    again = snakemake("-n", *args)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_image_cache_reruns_when_an_image_or_the_image_size_changes_and_only_then(tmp_path):
    from PIL import Image

    def plan(size=(96, 72), *extra):
        overrides = ["preset=demo", "synthetic={n_images: 60, image_size: [96, 72], seed: 1}",
                     f"image_size=[{size[0]}, {size[1]}]", "crop_size=32"]  # fmt: skip
        target = f"results/synthetic/cache/{size[0]}x{size[1]}/manifest.json"
        args = ["--cores", "2", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path), *extra, target, "--config", *overrides]
        result = snakemake(*args)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return result.stdout + result.stderr

    plan()  # synthesize, index, prepare
    manifest = json.loads((tmp_path / "results/synthetic/cache/96x72/manifest.json").read_text())
    assert manifest["shape"] == [60, 72, 96, 3]
    assert "Nothing to be done" in plan((96, 72), "-n")
    image = sorted((tmp_path / "resources/synthetic/HAM10000_images").glob("*.jpg"))[0]
    image.touch()  # a newer file with the same bytes is not a change (Snakemake compares checksums)
    assert "Nothing to be done" in plan((96, 72), "-n")
    Image.open(image).convert("RGB").rotate(180).save(image)
    assert _job_count(plan((96, 72), "-n"), "prepare") == 1
    assert _job_count(plan((80, 60), "-n"), "prepare") == 1  # another image size: another cache
    plan()
    rebuilt = json.loads((tmp_path / "results/synthetic/cache/96x72/manifest.json").read_text())
    assert rebuilt["source_sha256"] != manifest["source_sha256"]
    assert "Nothing to be done" in plan((96, 72), "-n")


def test_a_table_or_figure_set_to_null_on_the_command_line_is_left_out(tmp_path):
    result = snakemake("-n", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path), "--config", "preset=demo",
                       "tables={III: null, VI: null}", "figures={fig4: null, fig5: null}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]  # the demo preset's fig4 is merged onto a null without error
    text = result.stdout + result.stderr
    # the demo's Table II (7 rows) and V (5 rows, Multi-Crop shared with II: 4 more), two folds
    assert (_job_count(text, "table"), _job_count(text, "train"), _job_count(text, "figure4"), _job_count(text, "figure5")) == (2, 22, 0, 0)
