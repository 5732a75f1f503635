"""The architecture is checked, not hoped for: the import-linter contracts of pyproject.toml
(layers cli > engine > results > data > method, the method free of the other layers, no import
cycles) hold, and no module grows past the size a reader can take in at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "patchlesion"
#: Longest module, in lines; split a module that needs more by its jobs.
MAX_MODULE_LINES = 400
LAYERS = ("method", "data", "engine", "results", "cli")


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    script = "import sys; from importlinter.cli import lint_imports_command; sys.argv = [\"lint-imports\", \"--no-cache\"]; lint_imports_command()"
    return subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True,
                          env={"PYTHONPATH": str(root / "src"), "PATH": ""})  # fmt: skip


def test_import_contracts_hold():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("method/crops.py", "from patchlesion.data import images  # noqa: F401\n"),  # method imports data
        ("data/splits.py", "from patchlesion.engine import settings  # noqa: F401\n"),  # a layer imports one above
        ("engine/accel.py", "from patchlesion.engine import batches  # noqa: F401\n"),  # a cycle: batches imports accel
    ],
)
def test_import_contracts_catch_a_violation(tmp_path, module, line):
    """The contracts fail on a copy of the package with one forbidden import added."""
    copy = tmp_path / "repo"
    (copy / "src").mkdir(parents=True)
    subprocess.run(["cp", "-r", str(PACKAGE), str(copy / "src")], check=True)
    (copy / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    target = copy / "src" / "patchlesion" / module
    target.write_text(line + target.read_text())
    result = _lint_imports(copy)
    assert result.returncode != 0, result.stdout[-2000:]
    assert "BROKEN" in result.stdout


def test_every_layer_is_a_documented_package():
    for layer in LAYERS:
        init = PACKAGE / layer / "__init__.py"
        assert init.is_file(), f"{layer}/ has no __init__.py"
        text = init.read_text()
        assert text.lstrip().startswith('"""'), f"{init}: say in a docstring what the subpackage is for"
    for layer in ("method", "data", "engine", "results"):
        assert "May import" in (PACKAGE / layer / "__init__.py").read_text(), f"{layer}/__init__.py: say what it may import"


def test_no_module_is_too_long():
    long = {str(path.relative_to(PACKAGE)): n for path in PACKAGE.rglob("*.py") if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by their jobs): {long}"
