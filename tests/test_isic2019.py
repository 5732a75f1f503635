"""ISIC 2019 as a folder dataset (docs/data.md §11): the conversion, its checks, and the download
against a fake ISIC server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from httpfake import Route
from patchlesion.cli import main
from patchlesion.data.acquire.datasets import DownloadSettings, download_isic2019
from patchlesion.data.acquire.isic2019 import convert_isic2019
from patchlesion.data.isic2019 import BENIGN_CLASSES, CLASS_SET, CLASSES, read_labels
from patchlesion.errors import DatasetError, PatchlesionError

ROOT = Path(__file__).resolve().parents[1]
FOLDER = "ISIC_2019_Training_Input"
#: (image, class, lesion id) in the order of the ground-truth file (not sorted, to see the sorting).
IMAGES = [
    ("ISIC_0000001", "NV", "HAM_0000118"),
    ("ISIC_0000000", "NV", "HAM_0000118"),
    ("ISIC_0000002_downsampled", "MEL", ""),  # an MSK image: no lesion id
    ("ISIC_0000003", "BCC", "BCN_0000003"),
    ("ISIC_0000004", "AK", "BCN_0000004"),
    ("ISIC_0000005", "BKL", "HAM_0000005"),
    ("ISIC_0000006", "DF", "HAM_0000006"),
    ("ISIC_0000007", "VASC", "HAM_0000007"),
    ("ISIC_0000008", "SCC", "BCN_0000008"),
]
#: What the conversion must write, by hand.
LABELS_CSV = """image_id,label,lesion_id
ISIC_0000000,NV,HAM_0000118
ISIC_0000001,NV,HAM_0000118
ISIC_0000002_downsampled,MEL,
ISIC_0000003,BCC,BCN_0000003
ISIC_0000004,AK,BCN_0000004
ISIC_0000005,BKL,HAM_0000005
ISIC_0000006,DF,HAM_0000006
ISIC_0000007,VASC,HAM_0000007
ISIC_0000008,SCC,BCN_0000008
"""


def _jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


JPEGS = {image: _jpeg(i) for i, (image, _, _) in enumerate(IMAGES + [("ISIC_0009999", "", "")])}


def ground_truth() -> str:
    rows = ["image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK"]
    rows += [image + "," + ",".join("1.0" if c == label else "0.0" for c in CLASSES) + ",0.0" for image, label, _ in IMAGES]
    return "\n".join(rows) + "\n"


def metadata() -> str:
    rows = ["image,age_approx,anatom_site_general,lesion_id,sex"]
    rows += [f"{image},55.0,anterior torso,{lesion},female" for image, _, lesion in sorted(IMAGES)]
    return "\n".join(rows) + "\n"


def archive(members: dict[str, bytes] | None = None, prefix: str = "") -> bytes:
    """The image zip: every image (and one more, not in the ground truth) below its folder, and a LICENSE."""
    if members is None:
        members = {f"{prefix}{FOLDER}/{image}.jpg": data for image, data in JPEGS.items()}
        members[f"{prefix}{FOLDER}/LICENSE.txt"] = b"CC-BY-NC"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def write_files(folder: Path, gt: str | bytes | None = None, meta: str | bytes | None = None, zip_bytes: bytes | None = None):
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "ISIC_2019_Training_GroundTruth.csv", folder / "ISIC_2019_Training_Metadata.csv", folder / f"{FOLDER}.zip"
    for path, content in zip(paths, (gt or ground_truth(), meta or metadata(), zip_bytes or archive())):
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return paths


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_classes_and_benign_ones():
    assert CLASSES == ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
    assert BENIGN_CLASSES == ("NV", "BKL", "DF", "VASC") and CLASS_SET.index("SCC") == 7


@pytest.mark.parametrize("prefix", ["", "./"], ids=["plain", "dot_slash"])  # ./ is dropped when unpacked
def test_conversion_of_the_archive(tmp_path, caplog, prefix):
    gt, meta, images = write_files(tmp_path / "in", zip_bytes=archive(prefix=prefix))
    with caplog.at_level(logging.INFO):
        labels = convert_isic2019(images, gt, meta, tmp_path / "out")
    out = tmp_path / "out"
    assert (out / "labels.csv").read_bytes().decode("utf-8") == LABELS_CSV
    assert labels.to_csv(index=False, lineterminator="\n") == LABELS_CSV
    expected = sorted(f"{FOLDER}/{image}.jpg" for image, _, _ in IMAGES) + [f"{FOLDER}/LICENSE.txt", "labels.csv"]
    assert _tree(out) == sorted(expected)  # ISIC_0009999, not in the ground truth, left out
    for image, _, _ in IMAGES:
        assert (out / FOLDER / f"{image}.jpg").read_bytes() == JPEGS[image]
    assert not (tmp_path / "out.staging").exists()
    assert "1 image(s) in ISIC_2019_Training_Input.zip are not in the ground truth and were left out, e.g. ISIC_0009999" in caplog.text
    assert "9 images, {'MEL': 1, 'NV': 2, 'BCC': 1, 'AK': 1, 'BKL': 1, 'DF': 1, 'VASC': 1, 'SCC': 1}; 7 lesions, 1 images without" in caplog.text


def test_conversion_of_a_folder_by_the_command_line(tmp_path):
    gt, meta, images = write_files(tmp_path / "in")
    with zipfile.ZipFile(images) as zf:
        zf.extractall(tmp_path / "unpacked")
    args = ["convert-isic2019", "--images", str(tmp_path / "unpacked"), "--ground-truth", str(gt), "--metadata", str(meta)]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    assert (out / "labels.csv").read_text() == LABELS_CSV
    assert _tree(out) == sorted([f"{FOLDER}/{image}.jpg" for image, _, _ in IMAGES] + ["labels.csv"])
    assert all((out / FOLDER / f"{image}.jpg").read_bytes() == JPEGS[image] for image, _, _ in IMAGES)
    assert main([*args, "--out", str(out)]) == 2  # it exists now: refused, not overwritten


def _row(image: str) -> str:
    return next(line for line in ground_truth().splitlines() if line.startswith(image + ","))


def _gt_with(image: str, row: str) -> str:
    return ground_truth().replace(_row(image), row)


NV_ROW = _row("ISIC_0000000")  # line 3
BAD_INPUTS = {
    "gt_missing_column": (
        dict(gt=ground_truth().replace(",SCC,UNK", ",UNK", 1)),
        "ISIC_2019_Training_GroundTruth.csv, line 1: missing column(s) SCC; the ISIC 2019 ground truth needs image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC.",
    ),
    "meta_missing_column": (
        dict(meta=metadata().replace("lesion_id", "lesion", 1)),
        "ISIC_2019_Training_Metadata.csv, line 1: missing column(s) lesion_id;",
    ),
    "two_classes": (
        dict(gt=_gt_with("ISIC_0000000", NV_ROW.replace("ISIC_0000000,0.0", "ISIC_0000000,1.0"))),
        "ISIC_2019_Training_GroundTruth.csv, line 3: image ISIC_0000000 must have exactly one of MEL,NV,BCC,AK,BKL,DF,VASC,SCC "
        "set to 1 and the others 0 (got MEL=1.0, NV=1.0, BCC=0.0",
    ),
    "no_class": (dict(gt=_gt_with("ISIC_0000000", NV_ROW.replace("1.0", "0.0"))), "line 3: image ISIC_0000000 must have exactly one of"),
    "not_zero_or_one": (
        dict(gt=_gt_with("ISIC_0000000", NV_ROW.replace("ISIC_0000000,0.0", "ISIC_0000000,0.5"))),
        "line 3: image ISIC_0000000 must have exactly one of MEL,NV,BCC,AK,BKL,DF,VASC,SCC set to 1 and the others 0 (got MEL=0.5,",
    ),
    "unknown_class": (
        dict(gt=_gt_with("ISIC_0000000", NV_ROW[: -len("0.0")] + "1.0")),
        "line 3: image ISIC_0000000 is labelled UNK, which no training image is; is this the training ground truth?",
    ),
    "not_a_number": (
        dict(gt=_gt_with("ISIC_0000000", NV_ROW.replace("ISIC_0000000,0.0", "ISIC_0000000,yes"))),
        "line 3: image ISIC_0000000: MEL is 'yes', not 0 or 1.",
    ),
    "gt_duplicate": (dict(gt=ground_truth() + NV_ROW + "\n"), "line 11: image ISIC_0000000 is listed twice (also on line 3)."),
    "meta_duplicate": (
        dict(meta=metadata() + "ISIC_0000005,40.0,head/neck,HAM_0000005,male\n"),
        "ISIC_2019_Training_Metadata.csv, line 11: image ISIC_0000005 is listed twice (also on line 7).",
    ),
    "meta_image_not_in_gt": (
        dict(meta=metadata() + "ISIC_0000099,40.0,head/neck,,male\n"),
        "ISIC_2019_Training_Metadata.csv, line 11: image ISIC_0000099 is not in ",
    ),
    "gt_image_without_meta": (
        dict(meta=metadata().replace("ISIC_0000005,55.0,anterior torso,HAM_0000005,female\n", "")),
        "ISIC_2019_Training_Metadata.csv: 1 image(s) of ",
    ),
    "not_utf8": (
        dict(meta=metadata().replace("ISIC_0000004,55.0,anterior torso", "ISIC_0000004,55.0,t\xeate").encode("latin-1")),
        "ISIC_2019_Training_Metadata.csv, line 6: not UTF-8 text (byte 0xea); download the ISIC 2019 metadata again, or save it as UTF-8.",
    ),
    "bad_image_id": (
        dict(gt=ground_truth().replace("ISIC_0000004,", "ISIC_000004,")),
        "ISIC_2019_Training_GroundTruth.csv, line 6: image 'ISIC_000004' is not of the form ISIC_xxxxxxx or ISIC_xxxxxxx_downsampled.",
    ),
    "field_count": (dict(gt=_gt_with("ISIC_0000000", NV_ROW[: -len(",0.0")])), "line 3: 9 fields where the header has 10."),
    "empty_table": (dict(gt="image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\n"), "ISIC_2019_Training_GroundTruth.csv: the ISIC 2019 ground truth has no rows."),
    "image_missing": (
        dict(zip_bytes=archive({f"{FOLDER}/{i}.jpg": d for i, d in JPEGS.items() if i != "ISIC_0000003"})),
        "ISIC_2019_Training_Input.zip: 1 image(s) of the ground truth are not in it, e.g. ISIC_0000003;",
    ),
    "image_twice": (
        dict(zip_bytes=archive({**{f"{FOLDER}/{i}.jpg": d for i, d in JPEGS.items()}, "extra/ISIC_0000003.JPG": JPEGS["ISIC_0000003"]})),
        "ISIC_2019_Training_Input.zip: image ISIC_0000003 is there twice, as ISIC_2019_Training_Input/ISIC_0000003.jpg and extra/ISIC_0000003.JPG;",
    ),
    "not_a_jpeg": (
        dict(zip_bytes=archive({**{f"{FOLDER}/{i}.jpg": d for i, d in JPEGS.items()}, f"{FOLDER}/ISIC_0000003.jpg": b"\x89PNG\r\n"})),
        "ISIC_2019_Training_Input.zip: ISIC_0000003.jpg is not a JPEG file; download the archive again.",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_error_naming_the_file_and_line_and_leaves_nothing(tmp_path, case):
    changes, message = BAD_INPUTS[case]
    gt, meta, images = write_files(tmp_path / "in", **changes)
    with pytest.raises(DatasetError) as info:
        convert_isic2019(images, gt, meta, tmp_path / "out")
    assert message in str(info.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.staging").exists()


def test_a_bad_input_through_the_command_line_is_one_error_line(tmp_path, capsys):
    gt, meta, images = write_files(tmp_path / "in", gt=ground_truth() + NV_ROW + "\n")
    args = ["convert-isic2019", "--images", str(images), "--ground-truth", str(gt), "--metadata", str(meta), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1] == f"patchlesion convert-isic2019: error: {gt}, line 11: image ISIC_0000000 is listed twice (also on line 3)."
    assert not (tmp_path / "o").exists()


def test_the_tables_alone_give_the_labels(tmp_path):
    gt, meta, _ = write_files(tmp_path)
    assert read_labels(gt, meta).to_csv(index=False, lineterminator="\n") == LABELS_CSV


# --------------------------------------------------------------------------------------------------
# The download (fake ISIC server)
# --------------------------------------------------------------------------------------------------


def publish(server, **routes) -> bytes:
    """The three ISIC 2019 training files on the fake server under /isic2019/; returns the image zip."""
    images = archive()
    server.routes["/isic2019/ISIC_2019_Training_Input.zip"] = Route(images, **routes)
    server.routes["/isic2019/ISIC_2019_Training_GroundTruth.csv"] = Route(ground_truth().encode())
    server.routes["/isic2019/ISIC_2019_Training_Metadata.csv"] = Route(metadata().encode())
    return images


def _download(server, tmp_path, block=None, *extra) -> int:
    block = {"retries": 0, "timeout": 5, **(block or {})}
    block["isic2019"] = {"url": f"{server.base}/isic2019/", **block.get("isic2019", {})}
    args = ["download-isic2019", "--out", str(tmp_path / "out"), "--downloads", str(tmp_path / "d"), "--settings", json.dumps(block)]
    return main([*args, *extra])


def test_download_resumes_an_interrupted_run_and_converts(server, tmp_path, capsys):
    images = publish(server, cut_after=len(archive()) // 2)
    assert _download(server, tmp_path) == 2  # the connection is cut half-way; no retries
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("patchlesion download-isic2019: error: downloading the ISIC_2019_Training_Input.zip from ")
    assert "ISIC_2019_Training_Input.zip.partial is kept and will be resumed by the next run" in error and "convert-isic2019" in error
    assert not (tmp_path / "out").exists()
    assert _download(server, tmp_path) == 0
    first, second = server.requests_for("/isic2019/ISIC_2019_Training_Input.zip")
    assert "Range" not in first.headers and second.headers["Range"] == f"bytes={len(images) // 2}-"
    assert (tmp_path / "out" / "labels.csv").read_text() == LABELS_CSV
    assert (tmp_path / "d" / "ISIC_2019_Training_Input.zip").read_bytes() == images
    assert _download(server, tmp_path) == 2  # the folder exists: refused, not overwritten
    assert "out already exists and is not empty; delete it first" in capsys.readouterr().err
    (tmp_path / "fresh" / "out").mkdir(parents=True)
    (tmp_path / "fresh" / "out" / "mine.txt").write_text("")
    requests = len(server.requests)
    assert _download(server, tmp_path / "fresh") == 2  # refused before anything is fetched
    assert len(server.requests) == requests and not (tmp_path / "fresh" / "d").exists()


def test_bad_tables_stop_the_download_before_the_images(server, tmp_path, capsys):
    publish(server)
    server.routes["/isic2019/ISIC_2019_Training_GroundTruth.csv"] = Route((ground_truth() + NV_ROW + "\n").encode())
    assert _download(server, tmp_path) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error: the downloaded ISIC 2019 files do not form a complete dataset: " in error
    assert "line 11: image ISIC_0000000 is listed twice" in error and "https://challenge.isic-archive.com/data/#2019" in error
    assert server.requests_for("/isic2019/ISIC_2019_Training_Input.zip") == []


def test_pinned_md5s_are_checked(server, tmp_path):
    images = publish(server)
    good = {"ISIC_2019_Training_Input.zip": hashlib.md5(images).hexdigest()}
    settings = DownloadSettings(isic2019_url=f"{server.base}/isic2019/", retries=0, timeout=5)
    wrong = DownloadSettings.from_config({"isic2019": {"url": f"{server.base}/isic2019/", "md5": {"ISIC_2019_Training_Input.zip": "0" * 32}}})
    with pytest.raises(PatchlesionError, match="MD5 mismatch for the ISIC_2019_Training_Input.zip"):
        download_isic2019(tmp_path / "bad", tmp_path / "d1", wrong)
    assert not (tmp_path / "bad").exists()
    out = download_isic2019(tmp_path / "out", tmp_path / "d2", dataclasses.replace(settings, isic2019_md5=good))
    assert (out / "labels.csv").read_text() == LABELS_CSV


@pytest.mark.parametrize("via", ["config", "option"])
def test_isic2019_has_its_own_size_cap(server, tmp_path, capsys, via):
    images = publish(server)
    limit = 1e-5  # GiB: 10,737 bytes, above the tables, below the image zip
    assert len(images) > limit * 2**30 > max(len(ground_truth()), len(metadata()))
    assert _download(server, tmp_path / "global", {"max_file_gib": limit}) == 0  # the general cap does not apply
    capped = ({"isic2019": {"max_file_gib": limit}},) if via == "config" else ({}, "--max-file-gib", str(limit))
    assert _download(server, tmp_path, *capped) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"the server announces {len(images)} bytes, more than the limit of 10737 bytes for one file" in error
    assert "raise config key download: isic2019: max_file_gib (now 1e-05; --max-file-gib on the command line)" in error


def test_settings_of_the_config_file_are_the_defaults():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    settings = DownloadSettings.from_config(config["download"])
    assert settings == DownloadSettings()
    assert settings.isic2019_url == "https://isic-challenge-data.s3.amazonaws.com/2019/" and settings.isic2019_max_file_gib == 12
    with pytest.raises(PatchlesionError, match="config key 'download/isic2019/max_file_gib' \\(--max-file-gib\\): 0;"):
        DownloadSettings.from_config({"isic2019": {"max_file_gib": 0}})


def test_the_workflow_downloads_converts_and_indexes_isic2019_then_plans_table_ii(server, tmp_path):
    """Rule download_isic2019 (settings from the config's download block) and rule index_folder on its
    folder, through snakemake against the fake server; then the isic2019 preset plans Table II on it."""
    from test_workflow import _job_count, snakemake

    publish(server)
    args = ["--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path), "--config", "preset=isic2019",
            f"download={{retries: 0, timeout: 5, isic2019: {{url: '{server.base}/isic2019/'}}}}"]  # fmt: skip
    result = snakemake("--cores", "1", *args, "--", "results/isic2019/index.csv")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (tmp_path / "resources" / "isic2019" / "labels.csv").read_text() == LABELS_CSV
    index = (tmp_path / "results" / "isic2019" / "index.csv").read_text().splitlines()
    assert index[0] == "image_id,lesion_id,class_name,label,path,width,height" and len(index) == 1 + len(IMAGES)
    assert "ISIC_0000002_downsampled,ISIC_0000002_downsampled,MEL,0," in index[3]  # no lesion id: its own group
    description = json.loads((tmp_path / "results" / "isic2019" / "dataset.json").read_text())
    assert (description["classes"], description["benign"], description["group_column"]) == (list(CLASSES), list(BENIGN_CLASSES), "lesion_id")
    plan = snakemake("-n", *args)
    assert plan.returncode == 0, plan.stderr[-2000:]
    text = plan.stdout + plan.stderr
    assert _job_count(text, "download_isic2019") == 0 and _job_count(text, "train") == 63
