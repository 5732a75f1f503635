"""benchmarks/loader.py refuses settings it cannot run with one line naming the option, before it
writes or times anything (docs/performance.md §4)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("loader_benchmark", ROOT / "benchmarks" / "loader.py")
loader = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(loader)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # 7 classes x at least 8 images each = 56: 55 is one short
        (["--images", "55"], "--images 55: the synthetic set needs at least 56 images (8 of each class)"),
        (["--rounds", "0"], "--rounds 0: give 1 or more"),
        (["--train-steps", "-1"], "--train-steps -1: give 1 or more"),
    ],
)
def test_a_setting_it_cannot_run_stops_with_a_usage_error(argv, message, capsys, monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("the benchmark wrote data before checking its options")

    monkeypatch.setattr(loader, "make_synthetic_ham10000", no_data)
    with pytest.raises(SystemExit) as stopped:
        loader.main(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err
