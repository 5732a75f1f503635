"""Safe zip extraction: hostile members are refused before anything is written."""

from __future__ import annotations

import random
import stat
import struct
import zipfile

import pytest

from patchlesion.data.acquire.archives import ArchiveError, Limits, check_zip, extract_zip, staging_directory
from patchlesion.errors import PatchlesionError


def make_zip(path, members):
    """``members``: (name, bytes) or (name, bytes, unix mode) tuples."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, *mode in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode:
                info.external_attr = mode[0] << 16
            zf.writestr(info, data)
    return path


def _all_files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_good_archive_is_extracted(tmp_path):
    archive = make_zip(tmp_path / "a.zip", [("imgs/ISIC_0000001.jpg", b"1" * 100), ("imgs/", b""), ("README.txt", b"hi", 0o100644)])
    written = extract_zip(archive, tmp_path / "out")
    assert sorted(p.name for p in written) == ["ISIC_0000001.jpg", "README.txt"]
    assert (tmp_path / "out" / "imgs" / "ISIC_0000001.jpg").read_bytes() == b"1" * 100


@pytest.mark.parametrize(
    ("members", "words"),
    [
        ([("ok.txt", b"x"), ("../evil.txt", b"x")], "parent-directory"),
        ([("ok.txt", b"x"), ("imgs/../../evil.txt", b"x")], "parent-directory"),
        ([("/tmp/evil.txt", b"x")], "absolute"),
        ([("C:/evil.txt", b"x")], "absolute"),
        ([("..\\evil.txt", b"x")], "parent-directory"),
        ([("ok.txt", b"x"), ("link", b"/etc/passwd", stat.S_IFLNK | 0o777)], "symbolic link"),
        ([("dev", b"", stat.S_IFCHR | 0o600)], "device file"),
        ([("fifo", b"", stat.S_IFIFO | 0o600)], "FIFO"),
        ([("a.txt", b"x"), ("A.TXT", b"y")], "twice"),
    ],
)
def test_hostile_members_are_refused_and_nothing_is_written(tmp_path, members, words):
    archive = make_zip(tmp_path / "bad.zip", members)
    target = tmp_path / "target" / "inner"
    with pytest.raises(ArchiveError) as info:
        extract_zip(archive, target)
    assert words in str(info.value) and "bad.zip" in str(info.value)
    assert not (tmp_path / "target").exists()
    assert _all_files(tmp_path) == ["bad.zip"]


def test_size_limits(tmp_path):
    archive = make_zip(tmp_path / "big.zip", [("a.bin", b"\0" * 5000), ("b.bin", b"\0" * 5000)])
    with pytest.raises(ArchiveError, match="unpacks to 5000 bytes"):
        check_zip(archive, Limits(max_member_bytes=4000))
    with pytest.raises(ArchiveError, match="more than the allowed 8000 bytes"):
        check_zip(archive, Limits(max_total_bytes=8000))
    with pytest.raises(ArchiveError, match="2 members"):
        check_zip(archive, Limits(max_members=1))
    assert len(check_zip(archive)) == 2


def test_zip_bomb_ratio_is_refused(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", [("zeros.bin", b"\0" * (16 << 20))])
    with pytest.raises(ArchiveError, match="compression ratio"):
        extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# The compression-ratio rule (docs/data.md §8.5): every member's bytes beyond 200:1 use up one 8 MiB
# budget; the archive as a whole unpacks to at most 20 times its size plus that budget.


def test_many_small_bombs_are_refused(tmp_path):
    # Issue 12's probe: 30 members of 900 KiB of zeros (each below the old 1 MiB threshold) were extracted.
    archive = make_zip(tmp_path / "bombs.zip", [(f"zeros{i:02d}.bin", b"\0" * (900 << 10)) for i in range(30)])
    with pytest.raises(ArchiveError, match=r"bombs.zip: member 'zeros\d\d.bin': .*compression ratio of 200") as info:
        extract_zip(archive, tmp_path / "out")
    assert "zeros00.bin" not in str(info.value)  # the budget runs out part-way, not at the first member
    assert not (tmp_path / "out").exists()


def test_incompressible_padding_does_not_buy_room_for_bombs(tmp_path):
    # 2 MB of random bytes keep the whole archive's ratio near 2, but the zeros' excess is counted per member.
    padding = random.Random(0).randbytes(2 << 20)
    archive = make_zip(tmp_path / "padded.zip", [("noise.bin", padding)] + [(f"z{i}.bin", b"\0" * (900 << 10)) for i in range(3)])
    limits = Limits(ratio_slack_bytes=1 << 20)
    with pytest.raises(ArchiveError, match="member 'z1.bin'.*compression ratio of 200"):
        check_zip(archive, limits)
    assert len(check_zip(archive, Limits(ratio_slack_bytes=4 << 20))) == 4  # 3 x ~0.72 MiB beyond 200:1 fit into 4 MiB


def test_whole_archive_ratio_is_bounded(tmp_path):
    text = b"".join(b"ISIC_%07d" % i + b",0.0" * 27 + b"\n" for i in range(20000))  # about 40:1 with deflate
    archive = make_zip(tmp_path / "table.zip", [("table.csv", text)])
    ratio = len(text) / archive.stat().st_size
    assert 20 < ratio < 200
    with pytest.raises(ArchiveError, match=rf"table.zip: unpacks to {len(text)} bytes from a \d+-byte archive, more than 20 times"):
        check_zip(archive, Limits(ratio_slack_bytes=0))
    assert len(check_zip(archive)) == 1  # 2.4 MB: within the 8 MiB budget of the default limits


def test_members_claiming_overlapping_data_are_refused(tmp_path):
    archive = make_zip(tmp_path / "overlap.zip", [("a.bin", b"x" * 100)])
    raw = bytearray(archive.read_bytes())
    central = raw.index(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 20, 10**6)  # the central directory's compressed size of a.bin
    archive.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="overlapping members"):
        check_zip(archive)


def test_archives_like_the_real_ones_pass_the_default_limits(tmp_path):
    # JPEGs (ratio about 1), a ground-truth CSV of 10,015 rows, a LICENSE, an empty file, a tiny
    # file of one repeated byte and folders: no false alarm.
    rng = random.Random(1)
    jpegs = [(f"ISIC2018_Task3_Training_Input/ISIC_{i:07d}.jpg", b"\xff\xd8" + rng.randbytes(rng.randint(5000, 40000))) for i in range(200)]
    csv = b"image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\n" + b"".join(b"ISIC_%07d,0.0,1.0,0.0,0.0,0.0,0.0,0.0\n" % i for i in range(10015))
    small = [("ISIC2018_Task3_Training_Input/", b""), ("ISIC2018_Task3_Training_Input/LICENSE.txt", b"CC BY-NC 4.0\n" * 40),
             ("ISIC2018_Task3_Training_Input/ATTRIBUTION.txt", b""), ("x/blank.txt", b" " * 50_000), ("GroundTruth.csv", csv)]  # fmt: skip
    archive = make_zip(tmp_path / "real_like.zip", jpegs + small)
    assert len(check_zip(archive)) == 204


def test_not_a_zip_and_damaged_member(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"<html>403 Forbidden</html>")
    with pytest.raises(ArchiveError, match="not a readable zip"):
        extract_zip(tmp_path / "x.zip", tmp_path / "out")
    archive = make_zip(tmp_path / "d.zip", [("a.txt", b"hello world " * 100)])
    raw = bytearray(archive.read_bytes())
    start = raw.index(b"a.txt") + len(b"a.txt")  # first byte of the compressed data of the only member
    raw[start + 5] ^= 0xFF
    archive.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="damaged"):
        extract_zip(archive, tmp_path / "out2")


def test_existing_files_are_not_overwritten(tmp_path):
    archive = make_zip(tmp_path / "a.zip", [("a.txt", b"new")])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.txt").write_bytes(b"old")
    with pytest.raises(ArchiveError, match="overwrite"):
        extract_zip(archive, tmp_path / "out")
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"old"


def test_symlinked_folder_inside_the_destination_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "imgs").symlink_to(outside)
    archive = make_zip(tmp_path / "a.zip", [("imgs/a.txt", b"x")])
    with pytest.raises(ArchiveError):
        extract_zip(archive, tmp_path / "out")
    assert list(outside.iterdir()) == []


def test_staging_directory_publishes_only_on_success(tmp_path):
    out = tmp_path / "data"
    with pytest.raises(RuntimeError):
        with staging_directory(out) as stage:
            (stage / "half.txt").write_text("x")
            raise RuntimeError("boom")
    assert _all_files(tmp_path) == []
    with staging_directory(out) as stage:
        (stage / "full.txt").write_text("x")
    assert _all_files(tmp_path) == ["data", "data/full.txt"]
    with pytest.raises(PatchlesionError, match="already exists"):
        with staging_directory(out):
            pass
