"""Folder datasets (docs/own-data.md): the index of a labelled image folder, worked out by hand from
the files the test writes, and every bad folder refused with one error line naming the row or class."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from folderdata import NINE, THREE, write_folder_dataset
from patchlesion.cli import main
from patchlesion.data.folder import FolderDataset, index_folder
from patchlesion.errors import DatasetError
from patchlesion.method.classes import ClassSet


def _dataset(root: Path, classes=THREE, **columns) -> FolderDataset:
    return FolderDataset("mine", root, ClassSet(classes, classes[1:2]), image_column="file", label_column="diagnosis", **columns)


def test_index_finds_each_image_by_id_or_relative_path_png_and_jpeg_nested(tmp_path):
    write_folder_dataset(tmp_path, THREE, per_class=4)
    index = index_folder(_dataset(tmp_path))
    # 12 images: i even -> images/imgNNN.jpg, i odd -> images/<class>/deeper/imgNNN.png; every third row
    # (i % 3 == 1) names its file by relative path, which is then its id (without the extension)
    expected_ids = sorted(f"images/{THREE[i % 3]}/deeper/img{i:03d}" if i % 3 == 1 and i % 2 else
                          f"images/img{i:03d}" if i % 3 == 1 else f"img{i:03d}" for i in range(12))  # fmt: skip
    assert list(index["image_id"]) == expected_ids
    assert list(index.columns) == ["image_id", "class_name", "label", "path", "width", "height"]
    row = index.set_index("image_id").loc["img005"]  # i = 5: odd, PNG below its class, class 5 % 3 = 2
    assert (row["class_name"], row["label"]) == ("eel", 2)
    assert Path(row["path"]) == tmp_path / "images" / "eel" / "deeper" / "img005.png"
    assert (row["width"], row["height"]) == (64, 64)  # sizes cycle 80x60, 100x75, 64x64: i = 5 -> 64x64
    assert index["class_name"].value_counts().to_dict() == {"cat": 4, "dog": 4, "eel": 4}
    assert {Path(p).suffix for p in index["path"]} == {".jpg", ".png"}


def test_group_and_diagnosis_type_columns_become_lesion_id_and_dx_type(tmp_path):
    write_folder_dataset(tmp_path, THREE, per_class=2, header="file,diagnosis")
    labels = pd.read_csv(tmp_path / "labels.csv")
    labels["patient"] = ["p1", "p1", "", "p2", "", "p2"]
    labels["how"] = ["histo", "follow_up", "consensus", "confocal", "histo", "histo"]
    labels.to_csv(tmp_path / "labels.csv", index=False)
    dataset = _dataset(tmp_path, group_column="patient", diagnosis_type_column="how")
    index = index_folder(dataset).set_index("image_id")
    assert index.loc["img000", "lesion_id"] == "p1" and index.loc["img003", "lesion_id"] == "p2"
    assert index.loc["img002", "lesion_id"] == "img002"  # an empty group: the image is its own group
    assert index.loc["img001" if "img001" in index.index else "images/dog/deeper/img001", "dx_type"] == "follow_up"
    assert dataset.description().group_column == "lesion_id" and dataset.description().diagnosis_type_column == "dx_type"
    assert _dataset(tmp_path).description().group_column is None and _dataset(tmp_path).description().diagnosis_type_column is None


def _run_index(root: Path, out: Path, classes=THREE, extra=()) -> int:
    return main(["index-folder", "--dir", str(root), "--name", "mine", "--classes", *classes, "--image-column", "file",
                 "--label-column", "diagnosis", "--out", str(out / "index.csv"), "--description", str(out / "dataset.json"), *extra])  # fmt: skip


def test_cli_writes_the_index_and_a_description_that_split_and_train_read(tmp_path):
    write_folder_dataset(tmp_path / "data", NINE, per_class=4)
    assert _run_index(tmp_path / "data", tmp_path / "out", NINE, ["--benign", "type2", "type5"]) == 0
    record = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert record == {"name": "mine", "classes": list(NINE), "benign": ["type2", "type5"], "label_column": "class_name",
                      "group_column": None, "diagnosis_type_column": None}  # fmt: skip
    index = pd.read_csv(tmp_path / "out" / "index.csv")
    assert len(index) == 36 and sorted(index["label"].unique()) == list(range(9))
    assert main(["split", "--index", str(tmp_path / "out" / "index.csv"), "--dataset", str(tmp_path / "out" / "dataset.json"),
                 "--method", "stratified", "--out", str(tmp_path / "out" / "split.csv")]) == 0  # fmt: skip
    split = pd.read_csv(tmp_path / "out" / "split.csv")
    assert sorted(split["part"].unique()) == [0, 1, 2, 3] and len(split) == 36


def _corrupt(root: Path) -> str:
    (root / "images" / "img000.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return "img000.jpg is not a readable image"


def _rewrite(root: Path, change) -> None:
    path = root / "labels.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(change(lines)) + "\n")


BAD = {
    # what is wrong: (change to the folder, words the one error line must hold)
    "unknown label": (lambda r: _rewrite(r, lambda ls: [*ls[:3], ls[3].replace("eel", "emu"), *ls[4:]]),
                      ["labels.csv, line 4", "'img002'", "'emu'", "not one of dataset mine's classes (cat, dog, eel)"]),
    "missing image": (lambda r: (r / "images" / "img002.jpg").unlink(), ["labels.csv, line 4", "image 'img002' not found"]),
    "missing path": (lambda r: (r / "images" / "dog" / "deeper" / "img001.png").unlink(), ["labels.csv, line 3", "'images/dog/deeper/img001.png' not found"]),
    "duplicate id": (lambda r: _rewrite(r, lambda ls: [*ls, ls[3]]), ["lines 4, 14", "image 'img002' is listed twice"]),
    "same file twice": (lambda r: _rewrite(r, lambda ls: [*ls, "images/img002.jpg,eel"]), ["file", "is listed twice"]),
    "class without images": (lambda r: _rewrite(r, lambda ls: [ln for ln in ls if not ln.endswith(",eel")]), ["class eel of dataset mine has no images"]),
    "unreadable image": (_corrupt, ["labels.csv, line 2", "img000.jpg is not a readable image"]),
    "ambiguous id": (lambda r: Image.new("RGB", (8, 8)).save(r / "images" / "cat" / "img000.png"), ["labels.csv, line 2", "'img000' is ambiguous"]),
    "path outside the folder": (lambda r: _rewrite(r, lambda ls: [*ls[:2], "../elsewhere/x.png,dog", *ls[3:]]), ["line 3", "must be relative", "stay inside it"]),
    "missing column": (lambda r: _rewrite(r, lambda ls: ["file,diag", *ls[1:]]), ["no column(s) 'diagnosis'", "'file', 'diag'"]),
    "short row": (lambda r: _rewrite(r, lambda ls: [*ls[:5], "img004", *ls[6:]]), ["line 6", "fewer fields than the header"]),
    "empty label": (lambda r: _rewrite(r, lambda ls: [*ls[:5], "img004,", *ls[6:]]), ["line 6", "empty diagnosis"]),
}  # fmt: skip


@pytest.mark.parametrize("problem", list(BAD))
def test_a_bad_folder_is_one_error_line_naming_the_row_exit_2_nothing_written(tmp_path, capsys, problem):
    write_folder_dataset(tmp_path / "data", THREE, per_class=4)
    change, words = BAD[problem]
    change(tmp_path / "data")
    assert _run_index(tmp_path / "data", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("patchlesion index-folder: error: "), err
    for word in words:
        assert word in err, (word, err)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(("classes", "benign", "words"), [
    (["cat"], [], "at least two classes, got ['cat']"),
    (["cat", "dog", "cat"], [], "must be unique"),
    (["cat", "dog"], ["emu"], "benign class(es) emu are not among the classes cat, dog"),
])  # fmt: skip
def test_a_bad_class_list_is_one_error_line(tmp_path, capsys, classes, benign, words):
    write_folder_dataset(tmp_path / "data", THREE, per_class=2)
    assert _run_index(tmp_path / "data", tmp_path / "out", classes, ["--benign", *benign] if benign else []) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "dataset mine (--classes/--benign)" in err and words in err, err
    assert not (tmp_path / "out").exists()


def test_an_unknown_diagnosis_type_names_the_row(tmp_path):
    write_folder_dataset(tmp_path, THREE, per_class=2)
    labels = pd.read_csv(tmp_path / "labels.csv").assign(how=["histo", "histo", "biopsy", "histo", "histo", "histo"])
    labels.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(DatasetError, match=r"line 4: diagnosis type 'biopsy' of image 'img002' is not one of consensus, follow_up, confocal, histo"):
        index_folder(_dataset(tmp_path, diagnosis_type_column="how"))


def test_a_table_without_the_paper_leaves_its_columns_empty():
    from patchlesion.results.tables import summarise_folds

    records = [{"table": "II", "backbone": "densenet121", "row": "Multi-Crop", "fold": f, "mc_sensitivity": 0.5, "mc_specificity": 0.9,
                "f1": 0.8} for f in (1, 2)]  # fmt: skip
    assert summarise_folds(records)["paper_mc_sensitivity"].notna().all()  # the paper has this row
    assert summarise_folds(records, paper=False).filter(like="paper_").drop(columns="paper_backbone").isna().all().all()


def test_the_split_warns_of_a_class_missing_from_a_part(tmp_path, caplog):
    labels = write_folder_dataset(tmp_path / "data", THREE, per_class=8)
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join([line for line in lines if not line.endswith(",eel")] + [line for line in lines if line.endswith(",eel")][:2]) + "\n")
    assert _run_index(tmp_path / "data", tmp_path / "out") == 0
    out = tmp_path / "out"
    assert main(["split", "--index", str(out / "index.csv"), "--dataset", str(out / "dataset.json"), "--method", "stratified",
                 "--out", str(out / "split.csv")]) == 0  # fmt: skip
    split = pd.read_csv(out / "split.csv").merge(pd.read_csv(out / "index.csv"), on="image_id")
    without = sorted(set(range(4)) - set(split.loc[split["class_name"] == "eel", "part"]))  # two eel images: two parts lack it
    assert len(without) == 2
    err = caplog.text
    assert f"class eel has no images in part(s) {', '.join(map(str, without))}: a test part without it" in err
    assert "class cat has no images" not in err and "class dog has no images" not in err
