"""Property tests of the metadata readers (HAM10000's table, derm7pt's meta.csv): whatever bytes a
user's file holds, the reader returns a table that satisfies its invariants or raises the project's
DatasetError naming the file; never another exception. A well-formed table in any of the accepted
spellings (column order, extra columns, byte-order mark, CRLF, blank lines, quoting, tab-separated)
is read back value for value."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from patchlesion.data.derm7pt import MANAGEMENT_TO_DX_TYPE, read_release
from patchlesion.data.ham10000 import REQUIRED_COLUMNS, read_metadata
from patchlesion.errors import DatasetError
from patchlesion.method.classes import CLASSES, DX_TO_CLASS, DX_TYPE_UNKNOWN, DX_TYPES

OPTIONAL_COLUMNS = ("age", "sex", "localization", "dataset")
#: Values outside ASCII, so encodings matter: a latin-1 file of them is not UTF-8.
OPTIONAL_VALUES = ("", "45.0", "male", "female", "lower extremity", "région dorsale", "Größe")
#: A cell's text that is none of the allowed values and stays one cell (no separator, quote or line break).
WORDS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters=',\t\r\n"'), max_size=12)


@st.composite
def ham_rows(draw) -> list[dict[str, str]]:
    """1-6 well-formed rows: unique image ids, lesions shared by some images."""
    numbers = draw(st.lists(st.integers(0, 9_999_999), min_size=1, max_size=6, unique=True))
    return [
        {
            "lesion_id": f"HAM_{draw(st.integers(0, 3)):07d}",
            "image_id": f"ISIC_{number:07d}",
            "dx": draw(st.sampled_from(tuple(DX_TO_CLASS))),
            "dx_type": draw(st.sampled_from((*DX_TYPES, DX_TYPE_UNKNOWN))),
            **{column: draw(st.sampled_from(OPTIONAL_VALUES)) for column in OPTIONAL_COLUMNS},
        }
        for number in numbers
    ]


@st.composite
def spellings(draw) -> dict:
    """How a well-formed table may be written: all of these must be read back."""
    return {
        "columns": draw(st.permutations((*REQUIRED_COLUMNS, *draw(st.lists(st.sampled_from(OPTIONAL_COLUMNS), unique=True))))),
        "name": draw(st.sampled_from(("HAM10000_metadata.csv", "HAM10000_metadata.tab", "HAM10000_metadata"))),
        "encoding": draw(st.sampled_from(("utf-8", "utf-8-sig"))),
        "newline": draw(st.sampled_from(("\n", "\r\n"))),
        "blank_lines": draw(st.lists(st.integers(1, 7), max_size=2)),
        "quote": draw(st.booleans()),
        "padding": draw(st.sampled_from(("", " "))),
    }


#: The plainest spelling, for explicit examples.
WELL_FORMED = {"columns": REQUIRED_COLUMNS, "name": "HAM10000_metadata.csv", "encoding": "utf-8", "newline": "\n", "blank_lines": [],
               "quote": False, "padding": ""}  # fmt: skip


def _render(header: list[str], rows: list[list[str]], spelling: dict) -> bytes:
    sep = "\t" if spelling["name"].endswith(".tab") else ","
    quote = (lambda value: f'"{value}"') if spelling["quote"] else (lambda value: value)
    lines = [sep.join(quote(f"{spelling['padding']}{value}") for value in row) for row in [header, *rows]]
    for position in sorted(spelling["blank_lines"], reverse=True):
        lines.insert(min(position, len(lines)), "")
    return (spelling["newline"].join(lines) + spelling["newline"]).encode(spelling["encoding"])


#: Ways of spoiling a well-formed file, each something users' files have had.
CORRUPTIONS = (
    "drop_required", "duplicate_column", "unknown_dx", "unknown_dx_type", "duplicate_id", "bad_id", "empty_lesion",
    "short_row", "long_row", "latin1", "whitespace_line", "header_only", "empty", "random_bytes",
)  # fmt: skip


def _corrupt(kind: str, header: list[str], rows: list[list[str]], spelling: dict, draw) -> bytes:
    if kind == "random_bytes":
        return draw(st.binary(max_size=200))
    if kind == "empty":
        return b""
    if kind == "latin1":
        return _render(header, rows, spelling).decode(spelling["encoding"]).encode("latin-1", errors="replace")
    header, rows = list(header), [list(row) for row in rows]
    row = draw(st.integers(0, len(rows) - 1))
    if kind == "drop_required":
        position = header.index(draw(st.sampled_from(REQUIRED_COLUMNS)))
        header.pop(position)
        rows = [r[:position] + r[position + 1 :] for r in rows]
    elif kind == "duplicate_column":  # a required column twice, possibly spelled with a space
        position = header.index(draw(st.sampled_from(REQUIRED_COLUMNS)))
        header.append(draw(st.sampled_from(("", " "))) + header[position])
        rows = [[*r, r[position]] for r in rows]
    elif kind in ("unknown_dx", "unknown_dx_type", "bad_id", "empty_lesion"):
        column = {"unknown_dx": "dx", "unknown_dx_type": "dx_type", "bad_id": "image_id", "empty_lesion": "lesion_id"}[kind]
        allowed = {"dx": tuple(DX_TO_CLASS), "dx_type": (*DX_TYPES, DX_TYPE_UNKNOWN)}.get(column, ())
        valid = (lambda w: w.strip() in allowed) if allowed else (lambda w: re.fullmatch(r"\s*(ISIC_\d{7}|SPC_\d{4})\s*", w))
        rows[row][header.index(column)] = "" if kind == "empty_lesion" else draw(WORDS.filter(lambda w: not valid(w)))
    elif kind == "duplicate_id":
        rows.append(list(rows[row]))
    elif kind == "short_row":  # ends before a required column (a row without its optional values is fine)
        rows[row] = rows[row][: draw(st.integers(1, max(header.index(c) for c in REQUIRED_COLUMNS)))]
    elif kind == "long_row":
        rows[row] = [*rows[row], "extra"]
    elif kind == "whitespace_line":
        rows.insert(row, [" \t "])
    elif kind == "header_only":
        rows = []
    return _render(header, rows, spelling)


def _check_table(table: pd.DataFrame) -> None:
    """The invariants of a table read_metadata returns."""
    assert len(table) > 0
    for column in REQUIRED_COLUMNS:
        assert list(table.columns).count(column) == 1, column
        assert table[column].map(lambda value: isinstance(value, str)).all(), f"{column} holds non-strings"
    assert table["dx"].isin(tuple(DX_TO_CLASS)).all()
    assert table["dx_type"].isin((*DX_TYPES, DX_TYPE_UNKNOWN)).all()
    assert table["image_id"].str.fullmatch(r"ISIC_\d{7}|SPC_\d{4}").all()
    assert table["image_id"].is_unique
    assert (table["lesion_id"].str.len() > 0).all()


def _read(path: Path, content: bytes) -> pd.DataFrame | None:
    """read_metadata of ``content``; None where it raised DatasetError naming the file."""
    path.write_bytes(content)
    try:
        return read_metadata(path)
    except DatasetError as error:
        assert str(path) in str(error), f"the message does not name the file: {error}"
        return None


@settings(max_examples=80)
@given(rows=ham_rows(), spelling=spellings())
def test_a_well_formed_table_in_any_accepted_spelling_is_read_back(rows, spelling):
    header = list(spelling["columns"])
    with tempfile.TemporaryDirectory() as folder:
        table = _read(Path(folder) / spelling["name"], _render(header, [[row[c] for c in header] for row in rows], spelling))
    assert table is not None, "a well-formed table was rejected"
    _check_table(table)
    assert table[list(header)].map(str.strip).to_dict("records") == [{c: row[c] for c in header} for row in rows]


#: Spoilt tables that must be rejected; the others may also be read (e.g. latin-1 bytes that are ASCII).
MUST_REJECT = ("drop_required", "duplicate_column", "unknown_dx", "unknown_dx_type", "duplicate_id", "bad_id", "empty_lesion",
               "short_row", "header_only", "empty")  # fmt: skip


@pytest.mark.parametrize("kind", CORRUPTIONS)
@settings(max_examples=12)
@given(rows=ham_rows(), spelling=spellings(), data=st.data())
def test_a_spoilt_table_is_read_validly_or_rejected_with_a_dataset_error(kind, rows, spelling, data):
    header = list(spelling["columns"])
    content = _corrupt(kind, header, [[row[c] for c in header] for row in rows], spelling, data.draw)
    with tempfile.TemporaryDirectory() as folder:
        table = _read(Path(folder) / spelling["name"], content)
    if table is not None:
        _check_table(table)
    assert table is None or kind not in MUST_REJECT, f"{kind}: accepted"


@settings(max_examples=30)
@given(column=st.sampled_from(REQUIRED_COLUMNS), spelling=spellings(), space=st.sampled_from(("", " ", "  ")))
@example(column="dx", spelling=WELL_FORMED, space=" ")  # found by hypothesis: AttributeError ("dx" and " dx" after stripping)
@example(column="dx", spelling=WELL_FORMED, space="")  # found by hypothesis: accepted (pandas read the second as "dx.1")
def test_a_required_column_given_twice_is_rejected(column, spelling, space):
    header = [*spelling["columns"], space + column]
    row = {"lesion_id": "HAM_0000001", "image_id": "ISIC_0000001", "dx": "nv", "dx_type": "histo", **dict.fromkeys(OPTIONAL_COLUMNS, "x")}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / spelling["name"]
        path.write_bytes(_render(header, [[row[c.strip()] for c in header]], spelling))
        with pytest.raises(DatasetError, match=f"column\\(s\\) {column} appear more than once"):
            read_metadata(path)


@settings(max_examples=40)
@given(
    short_field=st.sampled_from(REQUIRED_COLUMNS),
    others=st.permutations(REQUIRED_COLUMNS),
)
@example(short_field="lesion_id", others=("dx", "dx_type", "image_id", "lesion_id"))  # found: NaN lesion_id accepted
def test_a_row_without_a_required_value_is_rejected_with_its_line(short_field, others):
    """A row that stops before a required column: the message names the line and the column."""
    header = list(others)
    assume(header.index(short_field) > 0)  # a row of no fields at all is a blank line, which is skipped
    rows = [["HAM_0000001", "ISIC_0000001", "nv", "histo"], ["HAM_0000002", "ISIC_0000002", "bkl", "consensus"]]
    by_name = [dict(zip(REQUIRED_COLUMNS, row)) for row in rows]
    lines = [",".join(header), ",".join(by_name[0][c] for c in header), ",".join(by_name[1][c] for c in header[: header.index(short_field)])]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "HAM10000_metadata.csv"
        path.write_text("\n".join(lines) + "\n")
        try:
            read_metadata(path)
        except DatasetError as error:
            message = str(error)
        else:
            raise AssertionError("a row without a required value was accepted")
    assert f"{path}, line 3: the row has fewer fields than the header" in message
    assert short_field in message.split("(no ")[1] and "nan" not in message.split("(no ")[1]  # (the temporary folder's name may hold "nan")


@settings(max_examples=40)
@given(rows=ham_rows(), spelling=spellings(), which=st.integers(0, 5))
@example(  # found by hypothesis: blank lines were skipped before the line was counted ("line 2" for line 3)
    rows=[{"lesion_id": "HAM_0000000", "image_id": "ISIC_0000000", "dx": "nv", "dx_type": "histo", **dict.fromkeys(OPTIONAL_COLUMNS, "")}],
    spelling={**WELL_FORMED, "blank_lines": [1]},
    which=0,
)  # fmt: skip
def test_an_error_names_the_line_of_the_file_also_after_blank_lines(rows, spelling, which):
    header = list(spelling["columns"])
    bad = which % len(rows)
    values = [[("no_such_dx" if i == bad and c == "dx" else row[c]) for c in header] for i, row in enumerate(rows)]
    content = _render(header, values, spelling)
    line = next(n for n, text in enumerate(content.decode(spelling["encoding"]).splitlines(), start=1) if "no_such_dx" in text)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / spelling["name"]
        path.write_bytes(content)
        try:
            read_metadata(path)
        except DatasetError as error:
            assert str(error).startswith(f"{path}, line {line}: unknown dx 'no_such_dx'"), str(error)
        else:
            raise AssertionError("an unknown dx was accepted")


# --- derm7pt: release_v0/meta/meta.csv ---

DIAGNOSES = ("clark nevus", "melanoma (in situ)", "basal cell carcinoma", "seborrheic keratosis", "dermatofibroma",
             "vascular lesion", "lentigo", "melanosis", "miscellaneous", "blue nevus")  # fmt: skip


DERM7PT_CORRUPTIONS = ("none", "drop_column", "duplicate_case", "bad_case", "bad_management", "empty_derm", "missing_image",
                       "short_row", "reorder", "random_bytes")  # fmt: skip


@st.composite
def derm7pt_release(draw, kind: str) -> tuple[bytes, list[str]]:
    """meta.csv bytes (well-formed, or spoilt as ``kind`` says) and the image paths to create below images/."""
    n = draw(st.integers(1, 5))
    cases = draw(st.lists(st.integers(1, 1100), min_size=n, max_size=n, unique=True))
    header = ["case_num", "diagnosis", "management", "derm", "clinic", "sex"]
    rows = [
        [str(case), draw(st.sampled_from(DIAGNOSES)), draw(st.sampled_from((*MANAGEMENT_TO_DX_TYPE, "Excision "))),
         f"Fal/Fal{case:03d}.jpg", f"Fal/Fcl{case:03d}.jpg", draw(st.sampled_from(("male", "female", "")))]
        for case in cases
    ]  # fmt: skip
    images = [row[3] for row in rows]
    row = draw(st.integers(0, n - 1))
    if kind == "drop_column":
        position = draw(st.integers(0, 3))
        header.pop(position)
        rows = [r[:position] + r[position + 1 :] for r in rows]
    elif kind == "duplicate_case":
        rows.append(list(rows[row]))
    elif kind == "bad_case":
        rows[row][0] = draw(st.sampled_from(("", "12a", "1.5", "x")))
    elif kind == "bad_management":
        rows[row][2] = draw(WORDS.filter(lambda w: w.strip().lower() not in MANAGEMENT_TO_DX_TYPE))
    elif kind == "empty_derm":
        rows[row][3] = ""
    elif kind == "missing_image":
        images.pop(row)
    elif kind == "short_row":
        rows[row] = rows[row][:3]
    elif kind == "reorder":
        order = draw(st.permutations(range(len(header))))
        header, rows = [header[i] for i in order], [[r[i] for i in order] for r in rows]
    if kind == "random_bytes":
        return draw(st.binary(max_size=150)), images
    lines = [",".join(header), *(",".join(r) for r in rows)]
    newline = draw(st.sampled_from(("\n", "\r\n")))
    encoding = draw(st.sampled_from(("utf-8", "utf-8-sig")))
    return (newline.join(lines) + newline).encode(encoding), images


@pytest.mark.parametrize("kind", DERM7PT_CORRUPTIONS)
@settings(max_examples=8)
@given(data=st.data())
def test_derm7pt_meta_is_read_validly_or_rejected_with_a_dataset_error(kind, data):
    content, images = data.draw(derm7pt_release(kind))
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "release_v0"
        (root / "meta").mkdir(parents=True)
        (root / "meta" / "meta.csv").write_bytes(content)
        n_rows = max(len([line for line in content.splitlines()[1:] if line.strip()]), 1)
        rows = list(range(n_rows))
        for part, chosen in (("train", rows[::3]), ("valid", rows[1::3]), ("test", rows[2::3])):
            (root / "meta" / f"{part}_indexes.csv").write_text("indexes\n" + "".join(f"{r}\n" for r in chosen))
        for image in images:
            (root / "images" / image).parent.mkdir(parents=True, exist_ok=True)
            (root / "images" / image).write_bytes(b"")
        try:
            cases = read_release(root)
        except DatasetError as error:
            assert str(root) in str(error), f"the message does not name the file: {error}"
            assert "nan" not in str(error).replace(str(root), ""), f"a missing value shown as nan: {error}"
            assert kind not in ("none", "reorder") or "no case has a diagnosis" in str(error), f"{kind}: rejected: {error}"
            return
        assert kind not in ("drop_column", "duplicate_case", "bad_case"), f"{kind}: accepted"
        assert len(cases) > 0 and cases["image_id"].is_unique
        assert cases["image_id"].map(lambda i: re.fullmatch(r"SPC_\d{4}", i) is not None).all()
        assert cases["class_name"].isin(CLASSES).all() and cases["dx"].map(DX_TO_CLASS).eq(cases["class_name"]).all()
        assert cases["dx_type"].isin(tuple(MANAGEMENT_TO_DX_TYPE.values())).all()
        assert cases["official_part"].isin(("train", "valid", "test")).all()
        assert all(Path(p).is_file() for p in cases["path"])
