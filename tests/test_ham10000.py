"""Tests of patchlesion.data.ham10000 (and `patchlesion index`) on tiny HAM10000-format directories."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from patchlesion.cli import main
from patchlesion.data.ham10000 import find_images, find_metadata, read_dataset, read_metadata
from patchlesion.data.images import load_image
from patchlesion.errors import DatasetError
from patchlesion.method.classes import CLASSES

HEADER = "lesion_id,image_id,dx,dx_type,age,sex,localization"
# One image per diagnosis, deliberately not in image_id order; HAM_0000002 has two images.
ROWS = [
    ("HAM_0000007", "ISIC_0024306", "vasc", "consensus", "45.0", "male", "trunk"),
    ("HAM_0000001", "ISIC_0024300", "mel", "histo", "80.0", "male", "scalp"),
    ("HAM_0000003", "ISIC_0024302", "bcc", "histo", "", "unknown", "back"),
    ("HAM_0000002", "ISIC_0024301", "nv", "follow_up", "50.0", "female", "ear"),
    ("HAM_0000005", "ISIC_0024304", "bkl", "consensus", "60.0", "female", "face"),
    ("HAM_0000004", "ISIC_0024303", "akiec", "histo", "70.0", "male", "hand"),
    ("HAM_0000006", "ISIC_0024305", "df", "confocal", "35.0", "female", "lower extremity"),
    ("HAM_0000002", "ISIC_0024307", "nv", "follow_up", "50.0", "female", "ear"),
]
IDS = sorted(r[1] for r in ROWS)
COLUMNS = ["image_id", "lesion_id", "dx", "dx_type", "class_name", "label", "path", "width", "height"]


# ---------------------------------------------------------------- helpers


def write_jpeg(path: Path, size: tuple[int, int] = (40, 30), seed: int = 0, fmt: str = "JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def jpeg_bytes(size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), 128, dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def metadata_text(rows=ROWS, header: str = HEADER, sep: str = ",", newline: str = "\n") -> str:
    lines = [header.replace(",", sep)] + [sep.join(r) for r in rows]
    return newline.join(lines) + newline


def write_metadata(root: Path, rows=ROWS, name: str = "HAM10000_metadata.csv", **kwargs) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(metadata_text(rows, **kwargs).encode())
    return path


def make_dataset(root: Path, rows=ROWS, folders=("images",), suffix: str = ".jpg", **kwargs) -> Path:
    """Metadata at ``root`` plus one JPEG per row, dealt round-robin over ``folders``."""
    write_metadata(root, rows, **kwargs)
    for i, row in enumerate(rows):
        write_jpeg(root / folders[i % len(folders)] / f"{row[1]}{suffix}", seed=i)
    return root


def raises(match_parts, func, *args, **kwargs) -> str:
    with pytest.raises(DatasetError) as info:
        func(*args, **kwargs)
    message = str(info.value)
    for part in match_parts:
        assert str(part) in message, f"{part!r} not in {message!r}"
    return message


def check_index(index: pd.DataFrame, root: Path) -> None:
    assert list(index.columns) == COLUMNS
    assert list(index["image_id"]) == IDS
    by_id = index.set_index("image_id")
    for lesion, image, dx, dx_type, *_ in ROWS:
        assert by_id.at[image, "lesion_id"] == lesion
        assert by_id.at[image, "dx"] == dx
        assert by_id.at[image, "dx_type"] == dx_type
        assert by_id.at[image, "class_name"] == dx.upper()
        assert by_id.at[image, "label"] == CLASSES.index(dx.upper())
        path = Path(by_id.at[image, "path"])
        assert path.is_file() and path.stem == image and root in path.parents
    assert (index["width"] == 40).all() and (index["height"] == 30).all()


# ---------------------------------------------------------------- good path


def test_labels_follow_classes_order(tmp_path):
    index = read_dataset(make_dataset(tmp_path))
    check_index(index, tmp_path)
    labels = dict(zip(index["class_name"], index["label"]))
    assert labels == {"MEL": 0, "NV": 1, "BCC": 2, "AKIEC": 3, "BKL": 4, "DF": 5, "VASC": 6}
    assert CLASSES == ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
    assert index["label"].dtype.kind == "i"
    assert list(index["label"]) == [0, 1, 2, 3, 4, 5, 6, 1]  # ISIC_0024300..07 sorted


def test_dataverse_two_part_folders(tmp_path):
    make_dataset(tmp_path, folders=("HAM10000_images_part_1", "HAM10000_images_part_2"))
    index = read_dataset(tmp_path)
    check_index(index, tmp_path)
    parents = {Path(p).parent.name for p in index["path"]}
    assert parents == {"HAM10000_images_part_1", "HAM10000_images_part_2"}


def test_isic2018_layout(tmp_path):
    make_dataset(tmp_path, folders=("ISIC2018_Task3_Training_Input",))
    (tmp_path / "ISIC2018_Task3_Training_Input" / "ATTRIBUTION.txt").write_text("CC BY-NC 4.0\n")
    (tmp_path / "ISIC2018_Task3_Training_Input" / "LICENSE.txt").write_text("license\n")
    check_index(read_dataset(tmp_path), tmp_path)


def test_all_in_one_folder_with_metadata(tmp_path):
    write_metadata(tmp_path)
    for i, row in enumerate(ROWS):
        write_jpeg(tmp_path / f"{row[1]}.jpg", seed=i)
    index = read_dataset(tmp_path)
    check_index(index, tmp_path)
    assert {Path(p).parent for p in index["path"]} == {tmp_path}


def test_metadata_in_subfolder(tmp_path):
    write_metadata(tmp_path / "meta" / "deeper")
    for i, row in enumerate(ROWS):
        write_jpeg(tmp_path / "images" / f"{row[1]}.jpg", seed=i)
    assert find_metadata(tmp_path) == tmp_path / "meta" / "deeper" / "HAM10000_metadata.csv"
    check_index(read_dataset(tmp_path), tmp_path)


def test_upper_case_extension(tmp_path):
    make_dataset(tmp_path, suffix=".JPG")
    index = read_dataset(tmp_path)
    check_index(index, tmp_path)
    assert all(p.endswith(".JPG") for p in index["path"])


def test_non_isic_files_ignored(tmp_path):
    make_dataset(tmp_path, folders=("HAM10000_images_part_1", "HAM10000_images_part_2"))
    (tmp_path / "ATTRIBUTION.txt").write_text("attribution\n")
    write_jpeg(tmp_path / "other.jpg")
    write_jpeg(tmp_path / "HAM10000_images_part_1" / "ISIC_0024300_segmentation.jpg")
    (tmp_path / "HAM10000_images_part_2" / "ISIC_0099999.png").write_bytes(b"not an image")
    (tmp_path / "ISIC_0099998.jpg").mkdir()  # a directory with an image-like name
    assert sorted(find_images(tmp_path)) == IDS
    check_index(read_dataset(tmp_path), tmp_path)


def test_images_not_in_metadata_are_not_indexed(tmp_path):
    make_dataset(tmp_path)
    write_jpeg(tmp_path / "images" / "ISIC_0099999.jpg")
    check_index(read_dataset(tmp_path), tmp_path)


def test_dataverse_eight_columns_crlf(tmp_path):
    header = "lesion_id,image_id,dx,dx_type,age,sex,localization,dataset"
    rows = [(*r, "vidir_modern") for r in ROWS]
    path = make_dataset(tmp_path, rows=rows, header=header, newline="\r\n") / "HAM10000_metadata.csv"
    assert b"\r\n" in path.read_bytes()
    table = read_metadata(path)
    assert list(table.columns) == header.split(",")
    assert (table["dataset"] == "vidir_modern").all()
    assert not any(v.endswith("\r") for col in table.columns for v in table[col])
    check_index(read_dataset(tmp_path), tmp_path)


def test_tab_separated_metadata(tmp_path):
    make_dataset(tmp_path, name="HAM10000_metadata.tab", sep="\t")
    assert find_metadata(tmp_path).name == "HAM10000_metadata.tab"
    check_index(read_dataset(tmp_path), tmp_path)


def test_quoted_tab_metadata_crlf(tmp_path):
    rows = [tuple(f'"{v}"' for v in r) for r in ROWS]
    header = "\t".join(f'"{c}"' for c in HEADER.split(","))
    write_metadata(tmp_path, rows, name="HAM10000_metadata.tab", header=header, sep="\t", newline="\r\n")
    for i, row in enumerate(ROWS):
        write_jpeg(tmp_path / "images" / f"{row[1]}.jpg", seed=i)
    check_index(read_dataset(tmp_path), tmp_path)


def test_metadata_values_stripped(tmp_path):
    rows = [(r[0], f" {r[1]} ", r[2], r[3], *r[4:]) for r in ROWS]
    make_dataset(tmp_path, rows=ROWS)
    write_metadata(tmp_path, rows)
    check_index(read_dataset(tmp_path), tmp_path)


def test_mixed_resolutions(tmp_path):
    write_metadata(tmp_path, ROWS[:2])
    write_jpeg(tmp_path / "a" / f"{ROWS[0][1]}.jpg", size=(200, 150))
    write_jpeg(tmp_path / "b" / f"{ROWS[1][1]}.jpg", size=(80, 60))
    index = read_dataset(tmp_path).set_index("image_id")
    assert (index.at[ROWS[0][1], "width"], index.at[ROWS[0][1], "height"]) == (200, 150)
    assert (index.at[ROWS[1][1], "width"], index.at[ROWS[1][1], "height"]) == (80, 60)
    assert read_dataset(tmp_path, verify_images=False)["width"].tolist() == [80, 200]


def test_load_image(tmp_path):
    path = write_jpeg(tmp_path / "ISIC_0000000.jpg", size=(200, 150))
    image = load_image(path)
    assert image.dtype == np.uint8 and image.shape == (150, 200, 3)
    resized = load_image(path, size=(40, 30))
    assert resized.dtype == np.uint8 and resized.shape == (30, 40, 3)
    assert load_image(str(path), size=[64, 48]).shape == (48, 64, 3)
    assert load_image(path, size=(200, 150)).shape == (150, 200, 3)


def test_load_image_grey_becomes_rgb(tmp_path):
    path = tmp_path / "ISIC_0000001.jpg"
    Image.fromarray(np.full((30, 40), 77, dtype=np.uint8), mode="L").save(path, format="JPEG")
    image = load_image(path, size=(20, 10))
    assert image.shape == (10, 20, 3) and image.dtype == np.uint8


def test_load_image_unreadable(tmp_path):
    path = tmp_path / "ISIC_0000002.jpg"
    path.write_bytes(b"garbage")
    raises([path, "unreadable"], load_image, path)
    raises([tmp_path / "nope.jpg"], load_image, tmp_path / "nope.jpg")


# ---------------------------------------------------------------- bad input


def test_missing_directory(tmp_path):
    missing = tmp_path / "no_such_dir"
    raises([missing, "not found"], read_dataset, missing)
    file = tmp_path / "a_file"
    file.write_text("x")
    raises([file, "not found"], read_dataset, file)


def test_no_metadata(tmp_path):
    write_jpeg(tmp_path / "images" / "ISIC_0024300.jpg")
    raises([tmp_path, "no metadata", "HAM10000_metadata.csv"], read_dataset, tmp_path)


def test_two_metadata_tables(tmp_path):
    make_dataset(tmp_path / "data")
    (tmp_path / "data" / "HAM10000_metadata.csv").rename(tmp_path / "data" / "images" / "HAM10000_metadata.csv")
    write_metadata(tmp_path / "data" / "copy", name="HAM10000_metadata.tab", sep="\t")
    raises(
        [tmp_path / "data" / "images" / "HAM10000_metadata.csv", tmp_path / "data" / "copy" / "HAM10000_metadata.tab", "several"],
        read_dataset,
        tmp_path / "data",
    )


@pytest.mark.parametrize("column", ["lesion_id", "image_id", "dx", "dx_type"])
def test_missing_column(tmp_path, column):
    names = HEADER.split(",")
    keep = [i for i, c in enumerate(names) if c != column]
    rows = [tuple(r[i] for i in keep) for r in ROWS]
    path = write_metadata(tmp_path, rows, header=",".join(names[i] for i in keep))
    message = raises([path, "missing column", column], read_metadata, path)
    assert f"missing column(s) {column};" in message
    raises([path, column], read_dataset, tmp_path)


def test_no_rows(tmp_path):
    path = write_metadata(tmp_path, [])
    raises([path, "no rows"], read_metadata, path)


@pytest.mark.parametrize("name", ["HAM10000_metadata.csv", "HAM10000_metadata.tab", "HAM10000_metadata"])
def test_empty_metadata_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    raises([path, "cannot read the metadata table"], read_metadata, path)


def test_metadata_not_utf8(tmp_path):
    path = tmp_path / "HAM10000_metadata.csv"
    path.write_bytes(metadata_text().replace("scalp", "sc\xe9lp").encode("latin-1"))
    raises([path, "cannot read the metadata table"], read_metadata, path)


def test_metadata_with_byte_order_mark(tmp_path):
    make_dataset(tmp_path)
    path = tmp_path / "HAM10000_metadata.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert list(read_metadata(path).columns) == HEADER.split(",")
    check_index(read_dataset(tmp_path), tmp_path)


def test_data_rows_with_unnamed_extra_field(tmp_path):
    """8 fields per row under a 7-column header: columns must not shift (first column must not become the index)."""
    path = write_metadata(tmp_path, [(*r, "vidir_modern") for r in ROWS])
    with pytest.warns(pd.errors.ParserWarning):
        table = read_metadata(path)
    assert list(table.columns) == HEADER.split(",")
    assert list(table["image_id"]) == [r[1] for r in ROWS]
    assert list(table["lesion_id"]) == [r[0] for r in ROWS]


def test_ragged_row(tmp_path):
    path = tmp_path / "HAM10000_metadata.csv"
    path.write_text(metadata_text() + "HAM_0000009,ISIC_0024309,nv,histo,1,male,back,extra,more\n")
    raises([path, "cannot read the metadata table"], read_metadata, path)


def test_unknown_dx(tmp_path):
    rows = list(ROWS)
    rows[3] = (rows[3][0], rows[3][1], "melanoma", *rows[3][3:])
    path = write_metadata(tmp_path, rows)
    raises([path, "line 5", "unknown dx", "'melanoma'", rows[3][1]], read_metadata, path)


def test_unknown_dx_type(tmp_path):
    rows = list(ROWS)
    rows[6] = (*rows[6][:3], "biopsy", *rows[6][4:])
    path = write_metadata(tmp_path, rows)
    raises([path, "line 8", "unknown dx_type", "'biopsy'", rows[6][1]], read_metadata, path)


@pytest.mark.parametrize("bad", ["ISIC_123", "ISIC_00243000", "isic_0024300", "ISIC-0024300", "0024300"])
def test_malformed_image_id(tmp_path, bad):
    rows = list(ROWS)
    rows[1] = (rows[1][0], bad, *rows[1][2:])
    path = write_metadata(tmp_path, rows)
    raises([path, "line 3", repr(bad), "ISIC_xxxxxxx"], read_metadata, path)


def test_duplicated_image_id(tmp_path):
    rows = [*ROWS, ("HAM_0000009", ROWS[2][1], "mel", "histo", "40.0", "male", "back")]
    path = write_metadata(tmp_path, rows)
    raises([path, ROWS[2][1], "more than once"], read_metadata, path)


def test_empty_lesion_id(tmp_path):
    rows = list(ROWS)
    rows[4] = ("", *rows[4][1:])
    path = write_metadata(tmp_path, rows)
    raises([path, "line 6", "empty lesion_id"], read_metadata, path)


def test_image_without_jpeg(tmp_path):
    make_dataset(tmp_path, folders=("HAM10000_images_part_1", "HAM10000_images_part_2"))
    (tmp_path / "HAM10000_images_part_2" / "ISIC_0024303.jpg").unlink()
    raises([tmp_path / "HAM10000_metadata.csv", "ISIC_0024303.jpg", "1 image(s)"], read_dataset, tmp_path)


def test_same_image_in_two_folders(tmp_path):
    make_dataset(tmp_path, folders=("HAM10000_images_part_1",))
    first = tmp_path / "HAM10000_images_part_1" / "ISIC_0024302.jpg"
    second = write_jpeg(tmp_path / "HAM10000_images_part_2" / "ISIC_0024302.jpg")
    raises(["ISIC_0024302", "twice", first, second], read_dataset, tmp_path)


def test_same_image_with_two_extensions(tmp_path):
    make_dataset(tmp_path)
    second = write_jpeg(tmp_path / "images" / "ISIC_0024302.jpeg")
    raises(["ISIC_0024302", "twice", tmp_path / "images" / "ISIC_0024302.jpg", second], read_dataset, tmp_path)


def test_truncated_jpeg(tmp_path):
    make_dataset(tmp_path)
    bad = tmp_path / "images" / "ISIC_0024304.jpg"
    bad.write_bytes(jpeg_bytes()[:100])
    raises([bad, "unreadable JPEG"], read_dataset, tmp_path)


def test_truncated_jpeg_tail(tmp_path):
    make_dataset(tmp_path)
    bad = tmp_path / "images" / "ISIC_0024305.jpg"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    raises([bad, "unreadable JPEG"], read_dataset, tmp_path)


def test_garbage_and_empty_jpeg(tmp_path):
    make_dataset(tmp_path)
    bad = tmp_path / "images" / "ISIC_0024301.jpg"
    bad.write_bytes(b"")
    raises([bad, "unreadable JPEG"], read_dataset, tmp_path)
    raises([bad, "unreadable JPEG"], read_dataset, tmp_path, verify_images=False)
    bad.write_bytes(b"this is not an image at all")
    raises([bad, "unreadable JPEG"], read_dataset, tmp_path)


def test_png_with_jpg_extension(tmp_path):
    make_dataset(tmp_path)
    bad = write_jpeg(tmp_path / "images" / "ISIC_0024306.jpg", fmt="PNG")
    raises([bad, "not a JPEG", "PNG"], read_dataset, tmp_path)
    raises([bad, "not a JPEG"], read_dataset, tmp_path, verify_images=False)


# ---------------------------------------------------------------- command line


def test_cli_index_bad_directory(tmp_path, capsys):
    make_dataset(tmp_path / "data")
    bad = tmp_path / "data" / "images" / "ISIC_0024304.jpg"
    bad.write_bytes(jpeg_bytes()[:100])
    out = tmp_path / "results" / "index.csv"
    assert main(["index", "--data-dir", str(tmp_path / "data"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "patchlesion index: error:" in err and str(bad) in err
    assert "Traceback" not in err
    assert not out.exists() and not out.parent.exists()


def test_cli_index_missing_directory(tmp_path, capsys):
    out = tmp_path / "index.csv"
    assert main(["index", "--data-dir", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "patchlesion index: error:" in err and str(tmp_path / "nowhere") in err
    assert not out.exists()


def test_cli_index_good_directory(tmp_path, capsys):
    make_dataset(tmp_path / "data", folders=("HAM10000_images_part_1", "HAM10000_images_part_2"))
    out = tmp_path / "results" / "index.csv"
    assert main(["-q", "index", "--data-dir", str(tmp_path / "data"), "--out", str(out)]) == 0
    assert "error" not in capsys.readouterr().err
    written = pd.read_csv(out, dtype={"image_id": str, "lesion_id": str})
    assert list(written.columns) == COLUMNS
    expected = read_dataset(tmp_path / "data")
    pd.testing.assert_frame_equal(written, expected, check_dtype=False)
