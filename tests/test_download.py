"""Verified, resumable downloads (loopback server only)."""

from __future__ import annotations

import hashlib

import pytest

from httpfake import FakeServer, Route
from patchlesion.data.acquire import download as dl
from patchlesion.data.acquire.download import DownloadError, Expected, download, fetch_bytes

BODY = bytes(range(256)) * 400  # 102,400 bytes
MD5 = hashlib.md5(BODY).hexdigest()


def _files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_download_sends_user_agent_and_is_not_repeated(server, tmp_path):
    server.routes["/f.zip"] = Route(BODY)
    target = download(f"{server.base}/f.zip", tmp_path / "f.zip", Expected("md5", MD5, size=len(BODY)))
    assert target.read_bytes() == BODY and _files(tmp_path) == ["f.zip"]
    assert server.requests[0].headers["User-Agent"].startswith("patchlesion/")
    assert "Python-urllib" not in server.requests[0].headers["User-Agent"]
    download(f"{server.base}/f.zip", tmp_path / "f.zip", Expected("md5", MD5, size=len(BODY)))
    assert len(server.requests) == 1  # verified file on disk: no network


def test_md5_mismatch_is_refused_and_nothing_is_kept(server, tmp_path):
    server.routes["/f.zip"] = Route(BODY[:-1] + b"\x00")
    with pytest.raises(DownloadError) as info:
        download(f"{server.base}/f.zip", tmp_path / "f.zip", Expected("md5", MD5))
    assert "MD5 mismatch" in str(info.value) and MD5 in str(info.value) and "f.zip" in str(info.value)
    assert _files(tmp_path) == []
    assert len(server.requests) == 1


def test_cut_connection_is_resumed_with_a_range_request(server, tmp_path):
    server.routes["/f.zip"] = Route(BODY, cut_after=len(BODY) // 2)
    target = download(f"{server.base}/f.zip", tmp_path / "f.zip", Expected("md5", MD5, size=len(BODY)))
    assert target.read_bytes() == BODY
    first, second = server.requests_for("/f.zip")
    assert "Range" not in first.headers
    assert second.headers["Range"] == f"bytes={len(BODY) // 2}-"
    assert _files(tmp_path) == ["f.zip"]


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.routes["/f.zip"] = Route(BODY, cut_after=1000, honour_range=False)
    target = download(f"{server.base}/f.zip", tmp_path / "f.zip", Expected("md5", MD5, size=len(BODY)))
    assert target.read_bytes() == BODY  # not the first 1000 bytes twice


def test_partial_from_an_earlier_run_is_resumed(server, tmp_path):
    (tmp_path / "f.zip.partial").write_bytes(BODY[:40000])
    server.routes["/f.zip"] = Route(BODY)
    download(f"{server.base}/f.zip", tmp_path / "f.zip", Expected("md5", MD5, size=len(BODY)))
    assert (tmp_path / "f.zip").read_bytes() == BODY
    assert server.requests[0].headers["Range"] == "bytes=40000-"


def test_corrupt_partial_is_discarded_and_fetched_again(server, tmp_path):
    (tmp_path / "f.zip.partial").write_bytes(b"\xff" * 40000)  # not a prefix of the file
    server.routes["/f.zip"] = Route(BODY)
    download(f"{server.base}/f.zip", tmp_path / "f.zip", Expected("md5", MD5, size=len(BODY)))
    assert (tmp_path / "f.zip").read_bytes() == BODY
    assert [r.headers.get("Range") for r in server.requests] == ["bytes=40000-", None]


def test_exhausted_retries_keep_the_partial_for_the_next_run(server, tmp_path):
    server.routes["/f.zip"] = Route(BODY, cut_after=30000, cut_times=10, honour_range=False)
    with pytest.raises(DownloadError, match="after 2 attempts") as info:
        download(f"{server.base}/f.zip", tmp_path / "f.zip", Expected("md5", MD5), retries=1, manual="Do X by hand.")
    assert "resumed by the next run" in str(info.value) and "Do X by hand." in str(info.value)
    assert _files(tmp_path) == ["f.zip.partial"]
    server.routes["/f.zip"] = Route(BODY)
    download(f"{server.base}/f.zip", tmp_path / "f.zip", Expected("md5", MD5))
    assert server.requests[-1].headers["Range"] == "bytes=30000-"
    assert _files(tmp_path) == ["f.zip"]


@pytest.mark.parametrize(("status", "words"), [(403, "access refused"), (404, "no such file")])
def test_client_errors_are_clear_and_not_retried(server, tmp_path, status, words):
    server.routes["/f.zip"] = Route(status=status)
    with pytest.raises(DownloadError) as info:
        download(f"{server.base}/f.zip", tmp_path / "f.zip", Expected("md5", MD5), what="HAM10000 part 1", manual="Manual: copy it.")
    message = str(info.value)
    assert f"HTTP {status}" in message and words in message and f"{server.base}/f.zip" in message
    assert "HAM10000 part 1" in message and "Manual: copy it." in message
    assert info.value.status == status
    assert len(server.requests) == 1 and _files(tmp_path) == []


def test_server_errors_are_retried(server, tmp_path):
    server.routes["/f.zip"] = Route(status=503)
    with pytest.raises(DownloadError, match="after 3 attempts"):
        download(f"{server.base}/f.zip", tmp_path / "f.zip", Expected("md5", MD5), retries=2)
    assert len(server.requests) == 3


def test_more_bytes_than_expected_are_cut_off(server, tmp_path):
    server.routes["/f.zip"] = Route(BODY)
    with pytest.raises(DownloadError, match="more than the expected 1000 bytes"):
        download(f"{server.base}/f.zip", tmp_path / "f.zip", Expected("md5", MD5, size=1000))
    assert _files(tmp_path) == []


@pytest.mark.parametrize("announced", [None, True], ids=["no_content_length", "content_length"])
@pytest.mark.parametrize("checksum", [None, Expected("md5", MD5)], ids=["no_checksum", "md5_without_size"])
def test_a_download_without_a_known_size_stops_at_the_limit(server, tmp_path, announced, checksum):
    # Issue 12's probe: without a pinned MD5 (the ISIC source) nothing bounded a download.
    server.routes["/f.zip"] = Route(BODY * 10, content_length=announced)  # 1 MB sent
    with pytest.raises(DownloadError) as info:
        download(f"{server.base}/f.zip", tmp_path / "f.zip", checksum, what="f.zip", max_bytes=300_000, limit_key="download: max_file_gib")
    message = str(info.value)
    assert "f.zip" in message and "more than the limit of 300000 bytes" in message and "raise download: max_file_gib" in message
    assert _files(tmp_path) == [] and len(server.requests) == 1  # stopped, the partial removed, not retried


def test_an_announced_length_above_the_limit_is_refused_before_the_body(server, tmp_path):
    server.routes["/f.zip"] = Route(BODY)
    with pytest.raises(DownloadError, match="announces 102400 bytes, more than the limit of 100000 bytes"):
        download(f"{server.base}/f.zip", tmp_path / "f.zip", None, max_bytes=100_000)
    assert _files(tmp_path) == []
    assert download(f"{server.base}/f.zip", tmp_path / "f.zip", None, max_bytes=len(BODY)).read_bytes() == BODY  # at the limit: fine


def test_a_listed_size_above_the_limit_is_not_fetched(server, tmp_path):
    server.routes["/f.zip"] = Route(BODY)
    with pytest.raises(DownloadError, match="listed as 102400 bytes, more than the limit of 100000 bytes for one file; nothing was downloaded"):
        download(f"{server.base}/f.zip", tmp_path / "f.zip", Expected("md5", MD5, size=len(BODY)), max_bytes=100_000)
    assert server.requests == [] and _files(tmp_path) == []


def test_unreachable_server_fails_after_retries(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "BACKOFF_BASE", 0.01)
    srv = FakeServer()  # bound, never started: connections are refused or time out
    url = f"{srv.base}/f.zip"
    srv.server_close()
    with pytest.raises(DownloadError, match="after 2 attempts"):
        download(url, tmp_path / "f.zip", None, retries=1, timeout=2)


def test_no_checksum_logs_md5(server, tmp_path, caplog):
    server.routes["/f.zip"] = Route(BODY)
    with caplog.at_level("INFO"):
        download(f"{server.base}/f.zip", tmp_path / "f.zip", None)
    assert MD5 in caplog.text


def test_fetch_bytes_bounds_and_errors(server):
    server.routes["/api"] = Route(b'{"a": 1}')
    assert fetch_bytes(f"{server.base}/api", what="record") == b'{"a": 1}'
    with pytest.raises(DownloadError, match="larger than 4 bytes"):
        fetch_bytes(f"{server.base}/api", what="record", max_bytes=4)
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch_bytes(f"{server.base}/missing", what="record")


def test_expected_checks_its_arguments():
    with pytest.raises(ValueError):
        Expected("crc32", "abcd")
    with pytest.raises(ValueError):
        Expected("md5", "not-hex")
    assert Expected("sha256", "ABCD", prefix=True).matches("abcdef")
    assert not Expected("md5", "abcd").matches("abcdef")
