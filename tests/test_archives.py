"""Safe zip extraction: hostile members are refused before anything is written."""

from __future__ import annotations

import stat
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
    archive = make_zip(tmp_path / "bomb.zip", [("zeros.bin", b"\0" * (4 << 20))])
    with pytest.raises(ArchiveError, match="compression ratio"):
        extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


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
