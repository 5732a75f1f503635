"""The workflow's data rules: download planning, the ISIC 2018 test set through Snakemake against a
fake Dataverse on 127.0.0.1, training on a HAM10000-format folder whose images are 200x150, a failing
job's reason in the terminal, and the workflow run from folders whose names hold a space."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import zipfile

import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from httpfake import DOI, FakeDataverse, FakeServer
from patchlesion.data.synthetic import make_synthetic_ham10000
from patchlesion.method.classes import CLASSES, DX_TO_CLASS
from test_workflow import ROOT, _job_count, snakemake

RUN = "tiny-multi_crop-nc9-mean-loss_weighting-k1"


def test_configured_copy_is_not_downloaded(tmp_path):
    make_synthetic_ham10000(tmp_path / "ham", n_images=60, image_size=(20, 15), write_images=False)
    args = ["-n", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path)]
    result = snakemake(*args, "--config", "preset=demo", "dataset=ham10000", f"ham10000_dir={tmp_path / 'ham'}", "--", "results/ham10000/index.csv")
    assert result.returncode == 0, result.stderr
    assert _job_count(result.stdout, "download_ham10000") == 0 and _job_count(result.stdout, "index") == 1

    result = snakemake(*args, "results/isic2018_test/index.csv")
    assert result.returncode == 0, result.stderr
    assert _job_count(result.stdout, "download_isic2018_test") == 1 and _job_count(result.stdout, "index") == 1


@pytest.mark.parametrize(
    ("override", "named"),
    [("download={source: ftp}", "ftp"), ("download={dataverse: {server: dataverse.harvard.edu}}", "dataverse.harvard.edu"),
     ("download={isic2018: {md5: {a.zip: xyz}}}", "xyz"), ("download={mirror: 1}", "mirror"),
     ("download={max_file_gib: 0}", "max_file_gib")],
)  # fmt: skip
def test_bad_download_config_is_rejected(tmp_path, override, named):
    result = snakemake("-n", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path), "--config", override)
    assert result.returncode != 0
    assert named in result.stdout + result.stderr


def test_the_download_size_limit_reaches_the_download_command(tmp_path):
    args = ["-n", "-p", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path)]
    result = snakemake(*args, "--config", "download={max_file_gib: 3}", "--", "results/isic2018_test/index.csv")
    assert result.returncode == 0, result.stderr
    command = next(line for line in result.stdout.splitlines() if "patchlesion download-isic2018-test" in line)
    assert '"max_file_gib": 3' in command  # in --settings, which the command reads (tests/test_acquire.py)


def _zip(members) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.slow
def test_isic2018_test_set_is_downloaded_and_indexed_by_the_workflow(tmp_path):
    meta = make_synthetic_ham10000(tmp_path / "src", n_images=60, image_size=(40, 30), seed=2)
    lines = ["image," + ",".join(CLASSES)] + [
        image + "," + ",".join("1.0" if DX_TO_CLASS[dx] == c else "0.0" for c in CLASSES) for image, dx in zip(meta["image_id"], meta["dx"])
    ]
    server = FakeServer().start()
    try:
        record = FakeDataverse(server)
        record.add("ISIC2018_Task3_Test_Images.zip", _zip((p.name, p.read_bytes()) for p in (tmp_path / "src").rglob("ISIC_*.jpg")))
        record.add("ISIC2018_Task3_Test_GroundTruth.tab", ("\n".join(lines) + "\n").encode(), tabular_original="ISIC2018_Task3_Test_GroundTruth.csv")
        block = json.dumps({"retries": 1, "dataverse": {"server": server.base, "doi": DOI}})
        result = snakemake("--cores", "1", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path),
                           "--config", f"download={block}", "--", "results/isic2018_test/index.csv")  # fmt: skip
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    index = pd.read_csv(tmp_path / "results" / "isic2018_test" / "index.csv")
    assert len(index) == 60 and (index["dx_type"] == "unknown").all()
    assert sorted(p.name for p in (tmp_path / "resources" / "downloads" / "isic2018_test").iterdir()) == [
        "ISIC2018_Task3_Test_GroundTruth.csv", "ISIC2018_Task3_Test_Images.zip"]  # fmt: skip


@pytest.mark.slow
def test_offline_download_fails_with_the_manual_instructions(tmp_path):
    unreachable = FakeServer()
    base = unreachable.base
    unreachable.server_close()
    block = json.dumps({"retries": 0, "timeout": 2, "dataverse": {"server": base}})
    result = snakemake("--cores", "1", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path),
                       "--config", f"download={block}", "--", "results/ham10000/index.csv")  # fmt: skip
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "ham10000_dir" in output and "10.7910/DVN/DBW86T" in output
    assert not (tmp_path / "resources" / "ham10000").exists()


@pytest.mark.slow
def test_demo_trains_on_a_ham10000_folder_of_200x150_images(tmp_path):
    """The pipeline assumes nothing about 600x450 files: the demo's tiny model on 200x150 HAM-format data."""
    make_synthetic_ham10000(tmp_path / "ham200", n_images=120, image_size=(200, 150), seed=4)
    overrides = ["preset=demo", "dataset=ham10000", f"ham10000_dir={tmp_path / 'ham200'}", "epochs=2", "validation_every=1",
                 "lr_halving_epochs=[2]", "device=cpu"]  # fmt: skip
    target = f"results/ham10000/runs/{RUN}/fold1/metrics.json"
    result = snakemake("--cores", "2", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path), "--config", *overrides, "--", target)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    index = pd.read_csv(tmp_path / "results" / "ham10000" / "index.csv")
    assert len(index) == 120 and (index["width"] == 200).all() and (index["height"] == 150).all()
    metrics = json.loads((tmp_path / target).read_text())
    split = pd.read_csv(tmp_path / "results" / "ham10000" / "split.csv")
    assert metrics["n_images"] == (split["part"] == 0).sum() > 0
    predictions = pd.read_csv((tmp_path / target).with_name("predictions.csv"))
    assert len(predictions) == metrics["n_images"]
    # recomputed from the predictions with scikit-learn (mean per-class recall), not trusted
    assert metrics["mc_sensitivity"] == pytest.approx(balanced_accuracy_score(predictions["true_class"], predictions["predicted_class"]))
    assert not (tmp_path / "resources" / "ham10000").exists()  # nothing downloaded


#: The demo's jobs on a HAM10000 copy (docs/running.md §11): the demo's grid, with the copy indexed
#: instead of synthesized and the ISIC 2018 test set downloaded instead of synthesized.
SMOKE_JOBS = {"index": 2, "split": 1, "prepare": 2, "train": 42, "evaluate": 21, "download_isic2018_test": 1, "official_test": 7,
              "official_test_table": 1, "table": 4, "table_figures": 4, "figure4": 1, "figure5": 1, "claims": 1, "report_md": 1, "all": 1}  # fmt: skip


def test_smoke_run_plans_the_demo_grid_on_a_ham10000_copy(tmp_path):
    """The smoke run's one command as docs/running.md §11 gives it, planned: the miniature grid on the copy at 160x120."""
    ham = tmp_path / "ham"
    make_synthetic_ham10000(ham, n_images=60, image_size=(600, 450), seed=5)
    result = snakemake("-n", "-p", "--cores", "all", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path),
                       "--config", "preset=demo", "dataset=ham10000", f"ham10000_dir={ham}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    stats = result.stdout + result.stderr
    assert {rule: _job_count(stats, rule) for rule in SMOKE_JOBS} == SMOKE_JOBS
    assert _job_count(stats, "total") == sum(SMOKE_JOBS.values()) == 90  # and no other rule (no synthesize, no download_ham10000)
    assert f"patchlesion index --data-dir {ham} --out results/ham10000/index.csv " in stats
    assert "patchlesion split --index results/ham10000/index.csv --dataset ham10000 --method stratified " in stats
    train = [line for line in stats.splitlines() if line.startswith("Shell command: patchlesion train ")]
    assert len(train) == 42
    for line in train:
        assert "--index results/ham10000/index.csv " in line and "--cache results/ham10000/cache/160x120 " in line, line
        assert " --run tiny-" in line and "--image-size 160 120 --crop-size 48 " in line and "--epochs 10 " in line, line
    assert sorted(line.split("--fold ")[1].split()[0] for line in train) == ["1"] * 21 + ["2"] * 21


@pytest.mark.slow
def test_a_failing_job_shows_its_reason_in_the_terminal(tmp_path):
    """The reason is in the job's log; profiles/default (show-failed-logs) prints it, so a newcomer does
    not have to find results/<dataset>/logs/index.log."""
    make_synthetic_ham10000(tmp_path / "ham", n_images=60, image_size=(40, 30), seed=2)
    missing = min((tmp_path / "ham").rglob("ISIC_*.jpg"))
    missing.unlink()
    result = snakemake("--cores", "1", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path),
                       "--config", "preset=demo", "dataset=ham10000", f"ham10000_dir={tmp_path / 'ham'}", "--", "results/ham10000/index.csv")  # fmt: skip
    assert result.returncode != 0
    reason = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("patchlesion index: error:")]
    assert len(reason) == 1 and missing.name in reason[0], result.stderr[-3000:]


@pytest.mark.slow
def test_workflow_runs_from_folders_with_a_space_in_their_names(tmp_path):
    """Acceptance test of issue 12: the repository and ham10000_dir both in folders whose names hold a space,
    the repository's own folder the working directory. One run on one fold through index, split, prepare,
    train, evaluate and a table (Table VI cut to its reference row, whose label also holds spaces)."""
    repo, ham = tmp_path / "my repo", tmp_path / "my ham"
    repo.mkdir()
    for part in ("Snakefile", "config.yaml", "workflow", "profiles", "envs"):
        copy = shutil.copytree if (ROOT / part).is_dir() else shutil.copy
        copy(ROOT / part, repo / part)
    make_synthetic_ham10000(ham, n_images=120, image_size=(160, 120), seed=4)
    table = "{VI: {reference: k = 1.00, rows: [{row: k = 1.00, strategy: multi_crop, n_crops: 9, aggregation: mean, balancing: loss_weighting}]}}"
    overrides = ["preset=demo", "dataset=ham10000", f"ham10000_dir={ham}", "official_test=false", f"tables={table}", "folds=[1]",
                 "epochs=2", "validation_every=1", "lr_halving_epochs=[2]", "device=cpu"]  # fmt: skip
    target = "results/ham10000/tables/table_VI.csv"
    command = [sys.executable, "-m", "snakemake", "--cores", "2", "--config", *overrides, "--", target]
    result = subprocess.run(command, check=False, cwd=repo, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    index = pd.read_csv(repo / "results" / "ham10000" / "index.csv")
    assert len(index) == 120 and index["path"].str.startswith(str(ham) + "/").all()
    assert list(pd.read_csv(repo / target)["row"]) == ["k = 1.00"]
    metrics = json.loads((repo / "results" / "ham10000" / "runs" / RUN / "fold1" / "metrics.json").read_text())
    split = pd.read_csv(repo / "results" / "ham10000" / "split.csv")
    assert metrics["n_images"] == (split["part"] == 0).sum() > 0
    assert not (repo / "resources").exists()  # nothing downloaded
