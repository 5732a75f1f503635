"""docs/library.md runs as written: its Python blocks, in order, in one namespace.

The page's `assert` lines compare the package with values worked out by hand in its text (class
weights, diagnosis factors, the diagnosis-weighted loss of all-zero logits, the crop grid, the
paper's F1), so a change of the method that the page does not follow fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "docs" / "library.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def python_blocks(text: str) -> list[str]:
    """The fenced ``python`` blocks of a Markdown text, in order."""
    return [match.group(1) for match in BLOCK.finditer(text)]


def test_the_block_reader_finds_fenced_python_only():
    text = "intro\n```python\na = 1\n```\n```bash\nls\n```\n```python\nb = a + 1\nc = 2\n```\n"
    assert python_blocks(text) == ["a = 1\n", "b = a + 1\nc = 2\n"]


def test_every_python_block_of_the_library_page_runs_and_its_checks_hold():
    blocks = python_blocks(PAGE.read_text(encoding="utf-8"))
    assert len(blocks) >= 10, f"{PAGE} should hold its ten or more Python examples; found {len(blocks)}"
    namespace: dict = {"__name__": "library_docs"}
    for number, block in enumerate(blocks, start=1):
        try:
            exec(compile(block, f"{PAGE.name}, block {number}", "exec"), namespace)
        except Exception as error:  # noqa: BLE001 - name the block that failed
            pytest.fail(f"{PAGE.name}, Python block {number} failed: {type(error).__name__}: {error}\n{block}")
    assert callable(namespace["classify"])  # the last block defines the helper it shows
