"""Nothing in the package unpickles untrusted data: every torch.load is weights_only, no pickle loads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from patchlesion.data.acquire.dataverse import DataverseFile, parse_files, resolve
from patchlesion.data.acquire.download import DownloadError

SOURCES = sorted((Path(__file__).resolve().parents[1] / "src" / "patchlesion").rglob("*.py"))


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_unpickling(path):
    for call, name in _calls(ast.parse(path.read_text())):
        where = f"{path.name}:{call.lineno}"
        if name == "torch.load":
            flags = {k.arg: k.value for k in call.keywords}
            assert "weights_only" in flags and ast.literal_eval(flags["weights_only"]) is True, where
        assert name not in ("pickle.load", "pickle.loads", "pd.read_pickle", "pandas.read_pickle", "joblib.load", "dill.load"), where
        if name in ("np.load", "numpy.load"):
            flags = {k.arg: k.value for k in call.keywords}
            assert "allow_pickle" not in flags or ast.literal_eval(flags["allow_pickle"]) is False, where


def test_dataverse_record_parsing_and_name_resolution():
    document = {"data": {"latestVersion": {"files": [
        {"label": "a.zip", "dataFile": {"id": 1, "filename": "a.zip", "filesize": 10, "md5": "AB"}},
        {"label": "m.tab", "dataFile": {"id": 2, "filename": "m.tab", "filesize": 7, "checksum": {"type": "MD5", "value": "cd"},
                                        "originalFileName": "m.csv", "originalFileSize": 9}},
        {"label": "s.zip", "dataFile": {"id": 3, "filename": "s.zip", "checksum": {"type": "SHA-1", "value": "ef"}}},
        {"label": "a.csv", "dataFile": {"id": 4, "filename": "a.csv", "md5": "01"}},
    ]}}}  # fmt: skip
    files = parse_files(document, "test")
    assert files[0] == DataverseFile(1, "a.zip", 10, "ab")
    assert files[1].md5 == "cd" and files[1].tabular and files[1].content_suffix() == ".csv"
    assert files[2].md5 is None  # a SHA-1 is not taken for an MD5
    # the local name is the configured one, with the extension of what the server sends (the uploaded CSV for a table)
    assert resolve(files, "M", doi="d", what="x").local_name == "M.csv"  # by stem, any case
    assert resolve(files, ["nope", "m.csv"], doi="d", what="x").id == 2  # by the uploaded name, first match
    assert resolve(files, "m.tab", doi="d", what="x").local_name == "m.csv"
    assert (resolve(files, "a.csv", doi="d", what="x").id, resolve(files, "A.ZIP", doi="d", what="x").local_name) == (4, "A.zip")
    with pytest.raises(DownloadError, match="several files"):
        resolve(files, "a", doi="d", what="x")  # a.zip and a.csv
    with pytest.raises(DownloadError, match="Its files are: a.csv, a.zip, m.tab, s.zip"):
        resolve(files, "b", doi="d", what="x")
    with pytest.raises(DownloadError, match="not a Dataverse dataset record"):
        parse_files({"status": "ERROR"}, "test")


def test_dataverse_file_without_md5_is_not_downloaded(tmp_path):
    from patchlesion.data.acquire.dataverse import fetch_file

    with pytest.raises(DownloadError, match="no MD5"):
        fetch_file("http://127.0.0.1:9", DataverseFile(7, "x.zip", 10, None), tmp_path)
    assert list(tmp_path.iterdir()) == []
