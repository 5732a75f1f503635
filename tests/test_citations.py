"""Every section citation in the repository can be followed by a reader of the repository.

A citation is a Markdown file of the repository and a section number, ``docs/method.md`` followed by
the section sign and ``5.2``; further numbers may follow it (``, 6`` or ``and 10`` after another
section sign) and cite the same file. Each must name a file that exists relative to the repository
root, with a Markdown heading whose text starts with the number (``## 5.2 Diagnosis-guided
weighting``). A section sign after anything else (the name of a document that is not in the
repository, such as the authors' notes the code was once written against) is an error: a reader
cannot follow it.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SECTION = "\u00a7"  # the section sign, spelled out so that this file cites nothing itself
NUMBER = r"\d+(?:\.\d+)*"

#: A document name (a path or a bare word) directly followed by a space and a section number.
CITATION = re.compile(rf"(?P<doc>[A-Za-z0-9_./-]*[A-Za-z0-9_])(?:\s+){SECTION}\s?(?P<number>{NUMBER})")
#: More numbers of the same document: a comma, semicolon, "and" or "or", then a section sign and a number.
CONTINUATION = re.compile(rf"\s*(?:,|;|and|or)\s*{SECTION}\s?(?P<number>{NUMBER})")
#: Any section sign followed by a number, to find those that follow no document name at all.
ANY_SECTION = re.compile(rf"{SECTION}\s?{NUMBER}")

#: Folders skipped wherever they are, and output folders skipped at the repository's top level only
#: (src/patchlesion/results/ is code).
SKIP_DIRS = {".git", ".venv", ".snakemake", "__pycache__", ".pytest_cache", ".hypothesis"}
OUTPUT_DIRS = {"results", "resources", "logs"}
SUFFIXES = {".py", ".smk", ".yaml", ".yml", ".md", ".toml", ".cfg", ".rst", ".txt"}
HEADING = re.compile(r"^#{1,6}\s+(?P<text>.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


def text_files(root: Path = ROOT) -> list[Path]:
    """The repository's text files that may carry citations, in a stable order."""
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in relative.parts[:-1]):
            continue
        if len(relative.parts) > 1 and relative.parts[0] in OUTPUT_DIRS:
            continue
        if not path.is_file():
            continue
        in_ci = relative.parts[0] == ".ci"
        if path.suffix in SUFFIXES or path.name == "Snakefile" or (in_ci and path.suffix == ""):
            found.append(path)
    return found


def citations(text: str) -> list[tuple[int, str, str, str]]:
    """``(line, document, number, cited text)`` of every section number in ``text``; ``document`` is
    the empty string for a section sign that follows no document name."""
    found = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        covered: set[int] = set()
        position = 0
        while match := CITATION.search(line, position):
            doc = match.group("doc")
            found.append((line_number, doc, match.group("number"), match.group(0).strip()))
            covered.add(match.start("number"))
            end = match.end()
            while continuation := CONTINUATION.match(line, end):
                found.append((line_number, doc, continuation.group("number"), f"{doc} {continuation.group(0).strip(' ,;')}"))
                covered.add(continuation.start("number"))
                end = continuation.end()
            position = end
        for match in ANY_SECTION.finditer(line):
            number_start = match.end() - len(re.search(NUMBER + "$", match.group(0)).group(0))
            if number_start not in covered:
                found.append((line_number, "", match.group(0).lstrip(SECTION).strip(), match.group(0)))
    return found


def heading_numbers(markdown: str) -> list[str]:
    """The text of every Markdown heading outside fenced code blocks."""
    headings, fenced = [], False
    for line in markdown.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced and (match := HEADING.match(line)):
            headings.append(match.group("text"))
    return headings


def has_section(headings: list[str], number: str) -> bool:
    """Whether a heading starts with ``number`` followed by a space, or by a dot and a space
    (``5.2 Title``, ``5.2. Title``; ``5.2`` does not match ``5.21 …`` nor ``5`` match ``5.2 …``)."""
    pattern = re.compile(rf"^{re.escape(number)}\.?(\s|$)")
    return any(pattern.match(text) for text in headings)


def is_repository_document(doc: str) -> bool:
    return doc.endswith(".md") and not doc.startswith(("/", "..")) and (ROOT / doc).is_file()


def _all_citations() -> list[tuple[str, int, str, str, str]]:
    rows = []
    for path in text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if SECTION not in text:
            continue
        relative = path.relative_to(ROOT).as_posix()
        for line, doc, number, cited in citations(text):
            rows.append((relative, line, doc, number, cited))
    return rows


def test_citations_name_a_section_that_exists():
    """``<file>.md §N``: the file is in the repository and has a heading numbered N."""
    headings: dict[str, list[str]] = {}
    bad = []
    for where, line, doc, number, cited in _all_citations():
        if not doc.endswith(".md"):
            continue  # not a Markdown document: reported by the next test
        if not is_repository_document(doc):
            bad.append(f"{where}:{line}: {cited!r}: {doc} is not a file of the repository")
            continue
        if doc not in headings:
            headings[doc] = heading_numbers((ROOT / doc).read_text(encoding="utf-8"))
        if not has_section(headings[doc], number):
            bad.append(f"{where}:{line}: {cited!r}: {doc} has no heading that starts with {number}")
    assert not bad, "citations that lead nowhere:\n" + "\n".join(bad)


def test_no_citations_of_documents_outside_the_repository():
    """A section sign may only follow a Markdown file of the repository (``docs/method.md``), not the
    bare name of a document a reader does not have (``METHOD``, ``DATA_SOURCES``, ``METHOD.md``)."""
    bad = []
    for where, line, doc, number, cited in _all_citations():
        if doc == "":
            bad.append(f"{where}:{line}: {cited!r}: a section number without a document; write e.g. docs/method.md {SECTION}{number}")
        elif not doc.endswith(".md"):
            bad.append(f"{where}:{line}: {cited!r}: {doc!r} is not a document of the repository; cite docs/<page>.md {SECTION}<number>")
        elif not is_repository_document(doc):
            bad.append(f"{where}:{line}: {cited!r}: {doc} is not in the repository")
    assert not bad, "citations of documents a reader cannot open:\n" + "\n".join(bad)


def test_the_citation_finder_on_known_text():
    """The finder itself, on hand-written lines."""
    s = SECTION
    text = f"see docs/method.md {s}5.2, {s}10 and {s}3.1\nMETHOD {s}8 here\nalone {s}4 | x ({s}6)\n"
    found = [(line, doc, number) for line, doc, number, _ in citations(text)]
    assert found == [
        (1, "docs/method.md", "5.2"), (1, "docs/method.md", "10"), (1, "docs/method.md", "3.1"),
        (2, "METHOD", "8"),
        (3, "alone", "4"), (3, "", "6"),
    ]
    headings = heading_numbers("# Title\n## 5 Class balancing\n```\n## 7 not a heading\n```\n### 5.2. Diagnosis\n")
    assert has_section(headings, "5") and has_section(headings, "5.2")
    assert not has_section(headings, "7") and not has_section(headings, "2") and not has_section(headings, "5.21")


def test_every_source_file_is_read():
    """The walk reads every module of the package (a skipped folder name must not hide code, as
    ``results`` once hid src/patchlesion/results/), the tests, the workflow and the docs."""
    read = set(text_files())
    for pattern in ("src/**/*.py", "tests/*.py", "workflow/rules/*.smk", "docs/*.md"):
        expected = set(ROOT.glob(pattern))
        assert expected and expected <= read, sorted(str(p.relative_to(ROOT)) for p in expected - read)
