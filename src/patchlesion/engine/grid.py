"""The jobs of an experiment grid as the workflow plans them, for the cost plan
(:mod:`patchlesion.engine.cost`): its tables and figures with their runs and folds, and the
official-test jobs. ``workflow/rules/common.smk`` builds it with the functions that plan the jobs
themselves and passes it as JSON to ``patchlesion cost --grid``. Torch-free, so that the workflow
can import it cheaply.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from patchlesion.errors import PatchlesionError
from patchlesion.method.runs import RunSpec

__all__ = ["Grid", "GridTable", "OfficialTest"]


@dataclass(frozen=True)
class GridTable:
    """One table (or figure) of the grid: ``runs`` trained on the ``folds`` of ``dataset``, each fold
    model also evaluated on the test part unless ``evaluate`` is false (Fig. 4's own model)."""

    name: str
    dataset: str
    folds: tuple[int, ...]
    runs: tuple[str, ...]
    evaluate: bool = True


@dataclass(frozen=True)
class OfficialTest:
    """The official-test jobs: one per run of ``table``, its fold models predicting every image of ``test_set``."""

    table: str
    test_set: str


@dataclass(frozen=True)
class Grid:
    """The jobs of an experiment: its tables in order (a run needed by several is priced under the
    first) and the official-test jobs, if any."""

    tables: tuple[GridTable, ...]
    official_test: OfficialTest | None = None

    def to_json(self) -> str:
        """The grid as the JSON text ``patchlesion cost --grid`` reads."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Grid:
        """Read :meth:`to_json`'s text; a wrong grid names what is wrong."""
        try:
            data = json.loads(text)
            tables = tuple(
                GridTable(
                    str(t["name"]), str(t["dataset"]), tuple(int(f) for f in t["folds"]), tuple(str(r) for r in t["runs"]), bool(t.get("evaluate", True))
                )
                for t in data["tables"]
            )
            official = data.get("official_test")
            official = OfficialTest(str(official["table"]), str(official["test_set"])) if official else None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise PatchlesionError(
                f"--grid: not a grid of jobs ({type(error).__name__}: {error}); `snakemake cost` writes it, "
                'e.g. {"tables": [{"name": "II", "dataset": "ham10000", "folds": [1, 2, 3], "runs": ["..."]}]}.'
            ) from None
        if not tables:
            raise PatchlesionError("--grid: the grid has no tables, so there is nothing to plan.")
        for run in {run for table in tables for run in table.runs}:
            RunSpec.from_name(run)
        return cls(tables, official)

    def without(self, name: str) -> Grid:
        """The grid without one table (its official-test jobs go with it)."""
        official = None if self.official_test and self.official_test.table == name else self.official_test
        return Grid(tuple(t for t in self.tables if t.name != name), official)

    def runs(self) -> list[str]:
        """Every run of the grid, each once, in grid order."""
        return list(dict.fromkeys(run for table in self.tables for run in table.runs))
