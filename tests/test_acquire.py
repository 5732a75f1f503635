"""HAM10000 and ISIC 2018 test-set downloads against a fake Dataverse / ISIC server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import stat
import zipfile

import pandas as pd
import pytest

from httpfake import DOI, FakeDataverse, FakeServer, Route
from patchlesion.cli import main
from patchlesion.data.acquire.datasets import DownloadSettings, download_ham10000, download_isic2018_test, isic2018_test_from_files
from patchlesion.data.acquire.download import DownloadError
from patchlesion.data.ham10000 import read_dataset
from patchlesion.data.isic2018 import CONFIRM_TYPE_TO_DX_TYPE
from patchlesion.data.synthetic import make_synthetic_ham10000
from patchlesion.errors import DatasetError, PatchlesionError
from patchlesion.method.classes import CLASSES, DX_TO_CLASS

RUN = "tiny-multi_crop-nc9-mean-loss_weighting-k1"


def zip_bytes(members) -> bytes:
    """A zip archive in memory; members are (name, bytes) or (name, bytes, unix mode)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, *mode in members:
            info = zipfile.ZipInfo(name)
            if mode:
                info.external_attr = mode[0] << 16
            zf.writestr(info, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def ham(tmp_path_factory):
    """A small synthetic HAM10000 (70 images, 64x48) cut into the published files."""
    root = tmp_path_factory.mktemp("ham")
    meta = make_synthetic_ham10000(root / "src", n_images=70, image_size=(64, 48), seed=5)
    images = sorted((root / "src").rglob("ISIC_*.jpg"))
    half = len(images) // 2
    part_1 = zip_bytes([(p.name, p.read_bytes()) for p in images[:half]])
    part_2 = zip_bytes([(p.name, p.read_bytes()) for p in images[half:]])
    metadata = (root / "src" / "HAM10000_metadata.csv").read_bytes().replace(b"\n", b"\r\n")  # Dataverse's CRLF
    meta = meta.sort_values("image_id").reset_index(drop=True)  # the order of ``images``
    return {"meta": meta, "part_1": part_1, "part_2": part_2, "metadata": metadata, "images": images}


def settings(server, **changes) -> DownloadSettings:
    base = DownloadSettings(dataverse_server=server.base, dataverse_doi=DOI, isic2018_url=f"{server.base}/isic/", retries=2, timeout=5)
    return dataclasses.replace(base, **changes)


def publish_ham(server, ham, **part_2_options) -> FakeDataverse:
    record = FakeDataverse(server)
    record.add("HAM10000_images_part_1.zip", ham["part_1"])
    record.add("HAM10000_images_part_2.zip", ham["part_2"], **part_2_options)
    record.add("HAM10000_metadata.tab", ham["metadata"], tabular_original="HAM10000_metadata.csv", checksum_style="checksum")
    record.add("HAM10000_segmentations_lesion_tschandl.zip", zip_bytes([("mask.png", b"png")]))
    return record


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_good_path_gives_a_dataset_the_pipeline_trains_on(server, ham, tmp_path):
    publish_ham(server, ham, cut_after=len(ham["part_2"]) // 2)  # part 2's first transfer is cut halfway
    out = download_ham10000(tmp_path / "ham10000", tmp_path / "downloads", settings(server))

    index = read_dataset(out)
    assert len(index) == 70 and set(index["image_id"]) == set(ham["meta"]["image_id"])
    assert (index["width"] == 64).all() and (index["height"] == 48).all()
    assert (out / "HAM10000_metadata.csv").read_bytes() == ham["metadata"]
    assert not (tmp_path / "ham10000.staging").exists()
    # raw downloads kept for reruns; the segmentation masks are not fetched
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == [
        "HAM10000_images_part_1.zip", "HAM10000_images_part_2.zip", "HAM10000_metadata.csv"]  # fmt: skip
    # the cut transfer was resumed, the table fetched as uploaded, every request with our User-Agent
    part_2 = [r for r in server.requests if r.path == "/api/access/datafile/1001"]
    assert len(part_2) == 2 and part_2[1].headers["Range"] == f"bytes={len(ham['part_2']) // 2}-"
    assert [r.query for r in server.requests if r.path == "/api/access/datafile/1002"] == [{"format": "original"}]
    assert not any(r.path == "/api/access/datafile/1003" for r in server.requests)
    assert all(r.headers["User-Agent"].startswith("patchlesion/") for r in server.requests)

    # ... and the pipeline indexes, splits and trains on it
    assert main(["index", "--data-dir", str(out), "--out", str(tmp_path / "index.csv")]) == 0
    assert main(["split", "--index", str(tmp_path / "index.csv"), "--out", str(tmp_path / "split.csv")]) == 0
    train = ["train", "--index", str(tmp_path / "index.csv"), "--split", str(tmp_path / "split.csv"), "--fold", "1",
             "--run", RUN, "--out-dir", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "8",
             "--image-size", "64", "48", "--crop-size", "24", "--device", "cpu", "--threads", "1"]  # fmt: skip
    assert main(train) == 0
    assert (tmp_path / "run" / "model.pt").is_file()

    # a rerun downloads nothing: every file is verified on disk (only the record is read again)
    server.requests.clear()
    download_ham10000(tmp_path / "again", tmp_path / "downloads", settings(server))
    assert [r.path for r in server.requests] == ["/api/datasets/:persistentId/"]


def test_md5_mismatch_is_refused_and_nothing_is_extracted(server, ham, tmp_path):
    publish_ham(server, ham, md5=hashlib.md5(b"something else").hexdigest())
    with pytest.raises(DownloadError, match="MD5 mismatch") as info:
        download_ham10000(tmp_path / "ham10000", tmp_path / "downloads", settings(server))
    assert "HAM10000_images_part_2.zip" in str(info.value)
    assert not (tmp_path / "ham10000").exists() and not (tmp_path / "ham10000.staging").exists()
    assert "HAM10000_images_part_2.zip" not in _tree(tmp_path / "downloads")


@pytest.mark.parametrize(
    "hostile",
    [[("ISIC_0000001.jpg", b"x"), ("../escaped.jpg", b"x")], [("ISIC_0000001.jpg", b"x"), ("evil", b"../../escaped", stat.S_IFLNK | 0o777)]],
    ids=["dotdot", "symlink"],
)
def test_hostile_archive_with_good_checksum_is_refused(server, ham, tmp_path, hostile):
    record = FakeDataverse(server)
    record.add("HAM10000_images_part_1.zip", ham["part_1"])
    record.add("HAM10000_images_part_2.zip", zip_bytes(hostile))
    record.add("HAM10000_metadata.tab", ham["metadata"], tabular_original="HAM10000_metadata.csv")
    work = tmp_path / "work"
    with pytest.raises(PatchlesionError, match="refused"):
        download_ham10000(work / "data" / "ham10000", work / "downloads", settings(server))
    assert not (work / "data" / "ham10000").exists()
    assert _tree(work / "data") == []  # the staging folder with part 1's images is gone too
    assert not list(tmp_path.rglob("escaped*"))


@pytest.mark.parametrize("status", [403, 404])
def test_http_errors_give_a_clear_message(server, ham, tmp_path, status):
    record = publish_ham(server, ham)
    server.routes["/api/access/datafile/1000"] = Route(status=status)
    with pytest.raises(DownloadError) as info:
        download_ham10000(tmp_path / "ham10000", tmp_path / "downloads", settings(server))
    message = str(info.value)
    assert f"HTTP {status}" in message and "/api/access/datafile/1000" in message and "HAM10000_images_part_1.zip" in message
    assert "ham10000_dir" in message  # the manual route is in the message
    assert not (tmp_path / "ham10000").exists()
    assert record.files  # (the record itself was readable)


def test_record_not_found_and_offline(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download_ham10000(tmp_path / "h", tmp_path / "d", settings(server))
    assert "10.7910/DVN/DBW86T" in str(info.value)  # manual instructions with the real record
    unreachable = FakeServer()
    base = unreachable.base
    unreachable.server_close()
    with pytest.raises(DownloadError, match="failed after 2 attempts") as info:
        download_ham10000(tmp_path / "h", tmp_path / "d", dataclasses.replace(settings(server), dataverse_server=base, retries=1))
    assert "ham10000_dir" in str(info.value)


def test_missing_file_lists_the_record(server, ham, tmp_path):
    record = FakeDataverse(server)
    record.add("HAM10000_images_part_1.zip", ham["part_1"])
    record.add("HAM10000_metadata.tab", ham["metadata"], tabular_original="HAM10000_metadata.csv")
    with pytest.raises(DownloadError) as info:
        download_ham10000(tmp_path / "h", tmp_path / "d", settings(server))
    message = str(info.value)
    assert "'HAM10000_images_part_2.zip'" in message and "HAM10000_images_part_1.zip, HAM10000_metadata.tab" in message


def test_cli_download_with_settings_json(server, ham, tmp_path):
    publish_ham(server, ham)
    block = {"source": "dataverse", "retries": 1, "dataverse": {"server": server.base, "doi": DOI}}
    args = ["download-ham10000", "--out", str(tmp_path / "h"), "--downloads", str(tmp_path / "d"), "--settings", json.dumps(block)]
    assert main(args) == 0
    assert len(read_dataset(tmp_path / "h")) == 70
    assert main(args) == 2  # the folder exists now: refused, not overwritten


# --------------------------------------------------------------------------------------------------
# ISIC 2018 challenge files as the source of HAM10000
# --------------------------------------------------------------------------------------------------


def _onehot(meta, floats=True) -> bytes:
    one, zero = ("1.0", "0.0") if floats else ("1", "0")
    lines = ["image," + ",".join(CLASSES)]
    for image, dx in zip(meta["image_id"], meta["dx"]):
        lines.append(image + "," + ",".join(one if DX_TO_CLASS[dx] == c else zero for c in CLASSES))
    return ("\n".join(lines) + "\n").encode()


def publish_isic(server, ham) -> bytes:
    """The three ISIC 2018 training files on the fake server under /isic/; returns the image zip."""
    meta = ham["meta"]
    back = {v: k for k, v in CONFIRM_TYPE_TO_DX_TYPE.items()}
    groupings = "image,lesion_id,diagnosis_confirm_type\n" + "".join(
        f"{i},{lesion},{back[t]}\n" for i, lesion, t in zip(meta["image_id"], meta["lesion_id"], meta["dx_type"])
    )
    images = zip_bytes([(f"ISIC2018_Task3_Training_Input/{p.name}", p.read_bytes()) for p in ham["images"]] + [("ISIC2018_Task3_Training_Input/LICENSE.txt", b"CC")])
    gt = zip_bytes([("ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv", _onehot(meta))])
    server.routes["/isic/ISIC2018_Task3_Training_Input.zip"] = Route(images)
    server.routes["/isic/ISIC2018_Task3_Training_GroundTruth.zip"] = Route(gt)
    server.routes["/isic/ISIC2018_Task3_Training_LesionGroupings.csv"] = Route(groupings.encode())
    return images


def test_isic2018_source(server, ham, tmp_path):
    meta = ham["meta"]
    images = publish_isic(server, ham)
    pinned = {"ISIC2018_Task3_Training_Input.zip": hashlib.md5(images).hexdigest()}
    out = download_ham10000(tmp_path / "h", tmp_path / "d", settings(server, source="isic2018", isic2018_md5=pinned))
    index = read_dataset(out).set_index("image_id")
    expected = meta.set_index("image_id")
    for column in ("lesion_id", "dx", "dx_type"):
        assert index[column].sort_index().tolist() == expected[column].sort_index().tolist()

    wrong = {"ISIC2018_Task3_Training_Input.zip": "0" * 32}
    with pytest.raises(DownloadError, match="MD5 mismatch"):
        download_ham10000(tmp_path / "h2", tmp_path / "d2", settings(server, source="isic2018", isic2018_md5=wrong))
    assert not (tmp_path / "h2").exists()


@pytest.mark.parametrize("via", ["config", "option"])
def test_unpinned_isic_download_stops_at_the_size_limit(server, ham, tmp_path, capsys, via):
    # Issue 12's probe: the ISIC source without pinned MD5s had no size limit.
    images = publish_isic(server, ham)
    block = {"source": "isic2018", "retries": 0, "isic2018": {"url": f"{server.base}/isic/"}}
    limit = 1e-5  # GiB: 10,737 bytes, above the ground truth and the groupings, below the image zip
    assert len(images) > limit * 2**30
    if via == "config":
        block["max_file_gib"] = limit
    extra = ["--max-file-gib", str(limit)] if via == "option" else []
    args = ["download-ham10000", "--out", str(tmp_path / "h"), "--downloads", str(tmp_path / "d"), "--settings", json.dumps(block), *extra]
    assert main(args) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("patchlesion download-ham10000: error: downloading the ISIC2018_Task3_Training_Input.zip from ")
    assert f"announces {len(images)} bytes, more than the limit of 10737 bytes for one file" in error
    assert "ISIC2018_Task3_Training_Input.zip.partial removed" in error and "raise config key download: max_file_gib (now 1e-05" in error
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["ISIC2018_Task3_Training_GroundTruth.zip", "ISIC2018_Task3_Training_LesionGroupings.csv"]
    assert not (tmp_path / "h").exists()
    if via == "option":  # the command line's own check: one argparse error line, exit status 2
        with pytest.raises(SystemExit) as stop:
            main([*args, "--max-file-gib", "0"])
        assert stop.value.code == 2 and "argument --max-file-gib: must be above 0, got 0" in capsys.readouterr().err
    else:
        assert main([*args, "--settings", json.dumps({**block, "max_file_gib": 0})]) == 2
        assert "error: config key 'download/max_file_gib' (--max-file-gib): 0" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# Dataverse file names: the configured ones are used, the server's never as paths (docs/data.md §8.5)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "original"),
    [("HAM10000_metadata.tab", "../../escaped/HAM10000_metadata.csv"), ("HAM10000_metadata.tab", "/ESCAPED/escaped/HAM10000_metadata.csv"),
     ("HAM10000_metadata.tab", "..\\..\\escaped\\HAM10000_metadata.csv"), ("HAM10000_metadata.tab", "HAM10000_metadata\x00.csv"),
     ("../../escaped/HAM10000_metadata.csv", None)],
    ids=["dotdot", "absolute", "backslashes", "nul", "stored_name"],
)  # fmt: skip
def test_hostile_server_file_names_are_refused(server, ham, tmp_path, stored, original):
    # Issue 12's probe: originalFileName ../../escaped/HAM10000_metadata.csv was written outside the downloads folder.
    original = original.replace("/ESCAPED", str(tmp_path)) if original else None
    record = FakeDataverse(server)
    record.add("HAM10000_images_part_1.zip", ham["part_1"])
    record.add("HAM10000_images_part_2.zip", ham["part_2"])
    record.add(stored, ham["metadata"], tabular_original=original)  # its MD5, from the same server, matches
    work = tmp_path / "work" / "deep"
    with pytest.raises(DownloadError) as info:
        download_ham10000(work / "ham10000", work / "downloads", settings(server))
    assert "HAM10000 metadata (file id 1002) under the name" in str(info.value) and "not a plain file name" in str(info.value)
    assert not list(tmp_path.rglob("escaped*")) and _tree(work) == []  # nothing fetched at all
    assert [r.path for r in server.requests] == ["/api/datasets/:persistentId/"]


def test_record_entries_that_match_no_configured_name_are_ignored(server, ham, tmp_path):
    record = publish_ham(server, ham)
    hostile = record.add("../../escaped/README.txt", b"hello")
    download_ham10000(tmp_path / "w" / "ham10000", tmp_path / "w" / "downloads", settings(server, dataverse_metadata=("ham10000_METADATA",)))
    assert not any(r.path == f"/api/access/datafile/{hostile}" for r in server.requests) and not list(tmp_path.rglob("escaped*"))
    # saved under the configured name (the extension is that of what the server sends: the uploaded CSV)
    assert sorted(p.name for p in (tmp_path / "w" / "downloads").iterdir()) == [
        "HAM10000_images_part_1.zip", "HAM10000_images_part_2.zip", "ham10000_METADATA.csv"]  # fmt: skip


@pytest.mark.parametrize("name", ["..", "files/", "a\x00b"])
def test_a_configured_name_that_is_no_file_name_is_a_config_error(server, ham, tmp_path, name):
    publish_ham(server, ham)
    with pytest.raises(PatchlesionError, match=r"config key 'download: dataverse: metadata': .* does not end in a file name"):
        download_ham10000(tmp_path / "h", tmp_path / "d", settings(server, dataverse_metadata=(name,)))
    assert not (tmp_path / "d").exists()


# --------------------------------------------------------------------------------------------------
# ISIC 2018 Task 3 official test set
# --------------------------------------------------------------------------------------------------


def test_isic2018_test_set_from_dataverse(server, ham, tmp_path):
    meta = ham["meta"]
    gt = _onehot(meta.iloc[:60])[:-1] + b"\nISIC_0099999," + b",".join([b"0.0"] * 6 + [b"1.0"]) + b"\n"  # 1 row without image
    images = zip_bytes([(f"ISIC2018_Task3_Test_Images/{p.name}", p.read_bytes()) for p in ham["images"][:60]])
    record = FakeDataverse(server)
    record.add("ISIC2018_Task3_Test_Images.zip", images)
    record.add("ISIC2018_Task3_Test_GroundTruth.tab", gt, tabular_original="ISIC2018_Task3_Test_GroundTruth.csv")
    with pytest.raises(DatasetError, match="1 of the 61 images"):  # 1/61 is above the 1% allowance
        download_isic2018_test(tmp_path / "t0", tmp_path / "d", settings(server))
    assert not (tmp_path / "t0").exists()

    gt_ok = _onehot(meta.iloc[:60], floats=False)
    record = FakeDataverse(server)
    record.add("ISIC2018_Task3_Test_Images.zip", images)
    record.add("ISIC2018_Task3_Test_GroundTruth.tab", gt_ok, tabular_original="ISIC2018_Task3_Test_GroundTruth.csv")
    out = download_isic2018_test(tmp_path / "t", tmp_path / "d2", settings(server))
    index = read_dataset(out)
    assert len(index) == 60
    assert (index["dx_type"] == "unknown").all() and (index["lesion_id"] == index["image_id"]).all()
    assert index.set_index("image_id")["dx"].sort_index().tolist() == meta.iloc[:60].set_index("image_id")["dx"].sort_index().tolist()


def test_offline_isic2018_test_download_names_the_switch_that_leaves_it_out(server, tmp_path):
    unreachable = FakeServer()
    base = unreachable.base
    unreachable.server_close()
    with pytest.raises(DownloadError, match="failed after 1 attempt") as info:
        download_isic2018_test(tmp_path / "t", tmp_path / "d", settings(server, dataverse_server=base, retries=0))
    assert "isic2018_test_dir=DIR" in str(info.value) and "--config official_test=false leaves it out" in str(info.value)
    assert not (tmp_path / "t").exists()


def test_isic2018_test_ground_truth_name_not_found_lists_the_record(server, ham, tmp_path):
    record = FakeDataverse(server)
    record.add("ISIC2018_Task3_Test_Images.zip", zip_bytes([("ISIC_0000001.jpg", b"x")]))
    record.add("ISIC2018_Task3_Test_Labels.csv", b"image,MEL\n")
    with pytest.raises(DownloadError) as info:
        download_isic2018_test(tmp_path / "t", tmp_path / "d", settings(server))
    message = str(info.value)
    assert "'ISIC2018_Task3_Test_GroundTruth'" in message and "ISIC2018_Task3_Test_Labels.csv" in message
    assert "test_ground_truth" in message or "download: dataverse" in message
    # a config override of the name finds it
    changed = settings(server, dataverse_test_ground_truth=("nope", "ISIC2018_Task3_Test_Labels"))
    with pytest.raises(DatasetError, match="missing column"):  # found and fetched; the table itself is bad
        download_isic2018_test(tmp_path / "t", tmp_path / "d", changed)


def test_isic2018_test_from_local_files_and_bad_one_hot(tmp_path, ham):
    meta = ham["meta"].iloc[:10]
    images = tmp_path / "test.zip"
    images.write_bytes(zip_bytes([(p.name, p.read_bytes()) for p in ham["images"][:10]]))
    gt = tmp_path / "gt.csv"
    gt.write_bytes(_onehot(meta))
    assert main(["download-isic2018-test", "--from-files", str(images), str(gt), "--out", str(tmp_path / "t"), "--downloads", str(tmp_path / "d")]) == 0
    assert len(read_dataset(tmp_path / "t")) == 10

    bad = _onehot(meta).decode().splitlines()
    bad[3] = bad[3].replace("0.0", "1.0", 1) if "1.0" not in bad[3].split(",")[1] else bad[3].replace("1.0", "0.0")
    gt.write_text("\n".join(bad) + "\n")
    with pytest.raises(DatasetError, match="line 4"):
        isic2018_test_from_files(images, gt, tmp_path / "t2")
    assert not (tmp_path / "t2").exists()


def test_settings_from_config_block():
    s = DownloadSettings.from_config(
        {"source": "isic2018", "dataverse": {"test_ground_truth": "X.csv", "images": ["a.zip"]}, "isic2018": {"md5": {"a": "b"}}}
    )
    assert s.source == "isic2018" and s.dataverse_test_ground_truth == ("X.csv",) and s.dataverse_images == ("a.zip",)
    assert s.isic2018_md5 == {"a": "b"}
    with pytest.raises(PatchlesionError, match="bogus"):
        DownloadSettings.from_config({"dataverse": {"bogus": 1}})
    with pytest.raises(PatchlesionError, match="ftp"):
        DownloadSettings.from_config({"source": "ftp"})


def test_metadata_reader_accepts_unknown_dx_type_for_test_sets(tmp_path):
    path = tmp_path / "HAM10000_metadata.csv"
    path.write_text("lesion_id,image_id,dx,dx_type\nISIC_0000001,ISIC_0000001,mel,unknown\n")
    from patchlesion.data.ham10000 import read_metadata

    assert read_metadata(path)["dx_type"].tolist() == ["unknown"]
    assert pd.Series(["unknown"]).isin(["unknown"]).all()


def test_isic2018_test_set_from_the_isic_source(server, ham, tmp_path):
    meta = ham["meta"].iloc[:20]
    server.routes["/isic/ISIC2018_Task3_Test_Input.zip"] = Route(zip_bytes([(f"ISIC2018_Task3_Test_Input/{p.name}", p.read_bytes()) for p in ham["images"][:20]]))
    server.routes["/isic/ISIC2018_Task3_Test_GroundTruth.zip"] = Route(zip_bytes([("ISIC2018_Task3_Test_GroundTruth.csv", _onehot(meta)), ("LICENSE.txt", b"CC")]))
    out = download_isic2018_test(tmp_path / "t", tmp_path / "d", settings(server, source="isic2018"))
    index = read_dataset(out)
    assert len(index) == 20 and (index["dx_type"] == "unknown").all()
    assert not any(p.name.startswith("tmp") for p in (tmp_path / "d").iterdir())  # scratch space cleaned up
