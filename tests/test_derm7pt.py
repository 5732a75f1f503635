"""derm7pt (SPC) conversion on a synthetic release_v0 tree: classes, split, file matching, resizing."""

from __future__ import annotations

import json
from importlib import resources

import pandas as pd
import pytest
from PIL import Image

from patchlesion.cli import main
from patchlesion.data.derm7pt import convert_release, diagnosis_class, read_release
from patchlesion.data.ham10000 import read_dataset
from patchlesion.data.splits import select
from patchlesion.errors import DatasetError

META_COLUMNS = [
    "case_num", "diagnosis", "seven_point_score", "pigment_network", "streaks", "pigmentation",
    "regression_structures", "dots_and_globules", "blue_whitish_veil", "vascular_structures",
    "level_of_diagnostic_difficulty", "elevation", "location", "sex", "management", "clinic", "derm",
    "case_id", "notes",
]  # fmt: skip
MANAGEMENT = ("excision", "clinical follow up", "no further examination")
#: The 24 cases whose diagnosis has no HAM10000 class, with their official parts (sizes 413/203/395 in all).
EXCLUDED = [("melanosis", "train")] * 10 + [("melanosis", "valid")] * 6 + [("miscellaneous", "test")] * 8


def _authors_table() -> pd.DataFrame:
    with resources.files("patchlesion").joinpath("data/authors_sp_split.csv").open() as handle:
        return pd.read_csv(handle)


def _write_jpeg(path, size=(12, 8), colour=(200, 120, 90)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="JPEG")


def make_release(root, cases=None, size=(12, 8)):
    """A release_v0 tree: meta.csv with derm7pt's 19 columns and diagnosis strings, the three index files,
    one clinical and one dermoscopic JPEG per case. ``cases``: (case_num, diagnosis, derm path as in
    meta.csv, file path on disk, official part); default: all 1011 cases of the real release."""
    if cases is None:
        known = _authors_table()
        cases = []
        for row in known.itertuples():
            derm = row.derm_path
            on_disk = derm
            if derm == "FCL/Fcl068.jpg":
                derm = "FCl/Fcl068.jpg"  # the real meta.csv's letter-case slip
            cases.append((row.case_num, row.diagnosis, derm, on_disk, row.official_part))
        missing = sorted(set(range(1, 1012)) - set(known["case_num"]))
        for case_num, (diagnosis, part) in zip(missing, EXCLUDED):
            cases.append((case_num, diagnosis, f"Zzl/Zzl{case_num}.JPG", f"Zzl/Zzl{case_num}.JPG", part))
        cases.sort()
    release = root / "release_v0"
    rows, parts = [], {"train": [], "valid": [], "test": []}
    for row, (case_num, diagnosis, derm, on_disk, part) in enumerate(cases):
        record = dict.fromkeys(META_COLUMNS, "absent")
        clinic = on_disk.rsplit("/", 1)[0] + f"/clinic{case_num}.jpg"
        record.update(case_num=case_num, diagnosis=diagnosis, seven_point_score=case_num % 5, location="back",
                      sex="female", management=MANAGEMENT[case_num % 3], clinic=clinic, derm=derm,
                      case_id=f"case{case_num}", notes="")  # fmt: skip
        rows.append(record)
        parts[part].append(row)
        _write_jpeg(release / "images" / on_disk, size)
        _write_jpeg(release / "images" / clinic, size, colour=(0, 255, 0))
    (release / "meta").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=META_COLUMNS).to_csv(release / "meta" / "meta.csv", index=False)
    for part, indexes in parts.items():
        pd.DataFrame({"indexes": indexes}).to_csv(release / "meta" / f"{part}_indexes.csv", index=False)
    return release


@pytest.fixture(scope="module")
def full_release(tmp_path_factory):
    return make_release(tmp_path_factory.mktemp("derm7pt"))


def test_diagnosis_strings_map_as_the_authors_and_table_one():
    assert diagnosis_class("basal cell carcinoma") == "BCC"
    assert diagnosis_class("reed or spitz nevus") == "NV" and diagnosis_class("clark nevus") == "NV"
    assert diagnosis_class("melanoma (less than 0.76 mm)") == "MEL" and diagnosis_class("melanoma metastasis") == "MEL"
    assert diagnosis_class("melanoma") == "MEL"
    assert diagnosis_class("lentigo") == "BKL" and diagnosis_class("seborrheic keratosis") == "BKL"
    assert diagnosis_class("dermatofibroma") == "DF" and diagnosis_class("vascular lesion") == "VASC"
    assert diagnosis_class("melanosis") is None and diagnosis_class("miscellaneous") is None


def test_full_release_converts_to_table_one_counts_and_the_official_split(full_release, tmp_path):
    out = tmp_path / "derm7pt"
    meta = convert_release(full_release, out, image_size=(30, 20))
    assert len(meta) == 987, "1011 cases minus 16 melanosis and 8 miscellaneous"
    assert meta["dx"].value_counts().to_dict() == {"nv": 575, "mel": 252, "bkl": 69, "bcc": 42, "vasc": 29, "df": 20}
    assert set(meta["diagnosis"]).isdisjoint({"melanosis", "miscellaneous"})
    assert meta.loc[meta["image_id"] == "SPC_0001", "dx"].item() == "bcc"
    assert meta["dx_type"].value_counts().sum() == 987 and set(meta["dx_type"]) == {"histo", "follow_up", "consensus"}

    # the reader of the pipeline takes the folder as it is
    index = read_dataset(out)
    assert len(index) == 987 and set(index["width"]) == {30} and set(index["height"]) == {20}
    assert "AKIEC" not in set(index["class_name"])

    split = pd.read_csv(out / "split.csv")
    test, val, train = select(split, 1, "test"), select(split, 1, "val"), select(split, 1, "train")
    assert len(test) == 387 and len(train) == 600, "official test 395 and train + valid 616, minus the 24 dropped"
    assert test == val, "derm7pt has no validation set: fold 1 validates on the test images (authors' code)"
    assert set(test).isdisjoint(train) and len(set(test) | set(train)) == 987
    by_id = index.set_index("image_id")["class_name"]
    assert by_id.loc[test].value_counts().to_dict() == {"NV": 219, "MEL": 101, "BKL": 31, "BCC": 16, "VASC": 13, "DF": 7}
    assert (split["part"] == 2).sum() == 403 and (split["part"] == 3).sum() == 197, "official train / valid"


def test_authors_split_reproduces_their_pickle_sizes(full_release, tmp_path):
    out = tmp_path / "derm7pt"
    assert main(["convert-derm7pt", "--release", str(full_release), "--out", str(out), "--split", "authors", "--image-size", "30", "20"]) == 0
    split = pd.read_csv(out / "split.csv")
    index = read_dataset(out, verify_images=False).set_index("image_id")["class_name"]
    test, train = select(split, 1, "test"), select(split, 1, "train")
    assert len(test) == 387 and len(train) == 599, "case 1011 is in neither of the authors' lists"
    assert "SPC_1011" not in set(split["image_id"])
    assert index.loc[train].value_counts().to_dict() == {"NV": 355, "MEL": 152, "BKL": 39, "BCC": 25, "VASC": 15, "DF": 13}
    assert index.loc[test].value_counts().to_dict() == {"NV": 220, "MEL": 99, "BKL": 30, "BCC": 17, "VASC": 14, "DF": 7}


def _small_cases():
    return [
        (1, "basal cell carcinoma", "NEL/Nel026.jpg", "NEL/Nel026.jpg", "train"),
        (2, "clark nevus", "NEL/NEL027.JPG", "NEL/NEL027.JPG", "valid"),
        (3, "melanoma (in situ)", "FCl/Fcl068.jpg", "FCL/Fcl068.jpg", "test"),  # folder case differs
        (4, "melanosis", "NEL/Nel030.jpg", "NEL/Nel030.jpg", "test"),
        (5, "seborrheic keratosis", "Fgl/Fgl001.jpg", "Fgl/Fgl001.JPG", "train"),  # extension case differs
    ]


def test_images_are_matched_case_insensitively_and_resized_to_600_by_450(tmp_path):
    release = make_release(tmp_path, _small_cases(), size=(768, 512))
    cases = read_release(release)
    assert list(cases["image_id"]) == ["SPC_0001", "SPC_0002", "SPC_0003", "SPC_0005"]
    assert cases.set_index("case_num").loc[3, "path"].as_posix().endswith("images/FCL/Fcl068.jpg")
    assert cases.set_index("case_num").loc[5, "path"].name == "Fgl001.JPG"
    out = tmp_path / "out"
    convert_release(release, out)
    for image_id in cases["image_id"]:
        with Image.open(out / "images" / f"{image_id}.jpg") as image:
            assert image.size == (600, 450) and image.format == "JPEG"
            assert image.getpixel((300, 225))[1] < 200, "the dermoscopic image, not the (green) clinical one"
    split = pd.read_csv(out / "split.csv")
    assert sorted(split.itertuples(index=False, name=None)) == [
        ("SPC_0001", 2), ("SPC_0002", 3), ("SPC_0003", 0), ("SPC_0003", 1), ("SPC_0005", 2)
    ]  # fmt: skip


def test_missing_image_and_bad_management_are_named(tmp_path):
    release = make_release(tmp_path, _small_cases())
    (release / "images" / "NEL" / "NEL027.JPG").unlink()
    with pytest.raises(DatasetError, match=r"line 3: image NEL/NEL027.JPG not found"):
        read_release(release)
    _write_jpeg(release / "images" / "NEL" / "NEL027.JPG")
    meta = pd.read_csv(release / "meta" / "meta.csv")
    meta.loc[0, "management"] = "biopsy"
    meta.to_csv(release / "meta" / "meta.csv", index=False)
    with pytest.raises(DatasetError, match=r"line 2: unknown management 'biopsy'"):
        read_release(release)
    with pytest.raises(DatasetError, match="release folder not found"):
        read_release(tmp_path / "nowhere")


def test_cli_reports_a_missing_index_file(tmp_path, capsys):
    release = make_release(tmp_path, _small_cases())
    (release / "meta" / "valid_indexes.csv").unlink()
    assert main(["convert-derm7pt", "--release", str(release), "--out", str(tmp_path / "out")]) == 2
    assert "valid_indexes.csv: official valid index file not found" in capsys.readouterr().err


@pytest.mark.slow
def test_workflow_builds_table_iv_from_a_release_folder(tmp_path):
    from test_workflow import ROOT, snakemake

    classes = ["basal cell carcinoma", "clark nevus", "dermatofibroma", "lentigo", "melanoma (in situ)", "vascular lesion"]
    cases = []
    for case_num in range(1, 61):
        part = ("train", "valid", "test")[case_num % 3]
        name = f"NEL/Nel{case_num:03d}." + ("JPG" if case_num % 7 == 0 else "jpg")
        cases.append((case_num, classes[case_num % len(classes)], name, name, part))
    cases.append((61, "melanosis", "NEL/Nel061.jpg", "NEL/Nel061.jpg", "test"))
    release = make_release(tmp_path / "data", cases, size=(96, 64))
    overrides = ["preset=demo", f"derm7pt_dir={release}", "image_size=[96, 72]", "crop_size=32", "epochs=2",
                 "validation_every=1", "lr_halving_epochs=[2]", "device=cpu"]  # fmt: skip
    args = ["--cores", "2", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path), "--config", *overrides]
    result = snakemake("results/derm7pt/tables/table_IV.md", *args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = tmp_path / "results" / "derm7pt"
    table = pd.read_csv(results / "tables" / "table_IV.csv")
    assert list(table["row"]) == ["Multi-Crop", "GRU", "Attention"] and (table["n_folds"] == 1).all()
    assert table["paper_mc_sensitivity"].isna().all(), "the demo's tiny backbone has no paper numbers"
    metrics = json.loads((results / "runs" / "tiny-multi_crop-nc9-mean-loss_weighting-k1" / "fold1" / "metrics.json").read_text())
    assert metrics["model"].endswith("fold1/model_last.pt") and metrics["n_images"] == 20
    assert metrics["per_class_recall"]["AKIEC"] is None, "derm7pt has no AKIEC"


def test_line_numbers_count_blank_lines(tmp_path):
    """pandas skips blank lines, so a row's line in the file is not its row number + 2."""
    release = make_release(tmp_path, _small_cases())
    meta_path = release / "meta" / "meta.csv"
    lines = meta_path.read_text().splitlines()
    lines[2] = lines[2].replace("NEL/NEL027.JPG", "NEL/missing.JPG")  # case 2, on line 3
    meta_path.write_text("\n".join([lines[0], "", lines[1], "", lines[2], *lines[3:]]) + "\n")  # now on line 5
    with pytest.raises(DatasetError, match=r"meta\.csv, line 5: image NEL/missing\.JPG not found"):
        read_release(release)
    index = release / "meta" / "train_indexes.csv"
    index.write_text("indexes\n\n0\n\nseven\n")  # the bad value is on line 5
    with pytest.raises(DatasetError, match=r"train_indexes\.csv, line 5: 'seven' is not a row number"):
        read_release(release)
