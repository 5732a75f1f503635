"""A run: one frozen choice per method axis plus a backbone (Sec. II-C to II-F).

Its canonical name is readable, derived from the fields, and parses back to the same run, so the
name is the results directory and the only thing a training job needs to be told:
``densenet121-multi_crop-nc9-mean-loss_weighting-k1``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from patchlesion.balancing import BALANCINGS
from patchlesion.errors import PatchlesionError

__all__ = ["RunSpec", "TrainSettings", "TABLE_II_ROWS", "paper_row"]


@dataclass(frozen=True)
class RunSpec:
    """What is trained: backbone, input strategy with its number of crops, aggregation, balancing."""

    backbone: str
    strategy: str = "multi_crop"
    n_crops: int = 9
    aggregation: str = "mean"
    balancing: str = "loss_weighting"
    k: float = 1.0

    def __post_init__(self) -> None:
        # Only the torch-free balancing registry is checked here, so that the workflow can plan runs
        # without importing torch; check_registries() checks the others before a model is built.
        _check_choice("balancing", self.balancing, BALANCINGS)
        for field in ("backbone", "strategy", "aggregation"):
            if not getattr(self, field) or "-" in getattr(self, field):
                raise PatchlesionError(f"run {field} {getattr(self, field)!r} must be a non-empty name without '-'.")
        if self.n_crops < 1:
            raise PatchlesionError(f"run n_crops must be positive, got {self.n_crops}.")
        if self.k <= 0:
            raise PatchlesionError(f"run k (loss-weighting exponent) must be positive, got {self.k}.")
        object.__setattr__(self, "k", float(self.k))

    @property
    def name(self) -> str:
        """Canonical name: ``<backbone>-<strategy>-nc<N>-<aggregation>-<balancing>[-k<k>]``."""
        parts = [self.backbone, self.strategy, f"nc{self.n_crops}", self.aggregation, self.balancing]
        if BALANCINGS[self.balancing].weighted_loss:
            parts.append(f"k{self.k:g}")
        return "-".join(parts)

    @classmethod
    def from_name(cls, name: str) -> RunSpec:
        """Parse a canonical run name back into its run."""
        parts = name.split("-")
        if len(parts) not in (5, 6) or not parts[2].startswith("nc") or not parts[2][2:].isdigit():
            raise PatchlesionError(
                f"run name {name!r} is not of the form <backbone>-<strategy>-nc<N>-<aggregation>-<balancing>[-k<k>], "
                "e.g. densenet121-multi_crop-nc9-mean-loss_weighting-k1."
            )
        k = 1.0
        if len(parts) == 6:
            if not parts[5].startswith("k"):
                raise PatchlesionError(f"run name {name!r}: the last part must be k<exponent>, e.g. k0.5.")
            try:
                k = float(parts[5][1:])
            except ValueError:
                raise PatchlesionError(f"run name {name!r}: {parts[5]!r} is not k<number>.") from None
        spec = cls(parts[0], parts[1], int(parts[2][2:]), parts[3], parts[4], k)
        if spec.name != name:
            raise PatchlesionError(f"run name {name!r} is not canonical; write it as {spec.name!r}.")
        return spec

    def to_dict(self) -> dict:
        """The run's fields as a plain dict (for run.json)."""
        return asdict(self)

    def check_registries(self) -> RunSpec:
        """Check backbone, input strategy and aggregation against their registries (imports torch)."""
        from patchlesion.aggregation import AGGREGATIONS
        from patchlesion.backbones import BACKBONES
        from patchlesion.strategies import STRATEGIES

        _check_choice("backbone", self.backbone, BACKBONES)
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("aggregation", self.aggregation, AGGREGATIONS)
        return self


def _check_choice(field: str, value: str, registry: dict) -> None:
    if value not in registry:
        raise PatchlesionError(f"run {field} {value!r} is unknown; choose one of {', '.join(registry)}.")


@dataclass(frozen=True)
class TrainSettings:
    """How a run is trained: schedule and data geometry (Sec. II-G; METHOD §6), shared by all runs
    of an experiment and taken from the workflow's config."""

    epochs: int = 50
    batch_size: int = 5
    learning_rate: float = 1.25e-5
    lr_halving_epochs: tuple[int, ...] = (19, 29, 39, 49)
    validation_every: int = 5
    image_size: tuple[int, int] = (600, 450)
    crop_size: int = 224
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr_halving_epochs", tuple(int(e) for e in self.lr_halving_epochs))
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        for field in ("epochs", "batch_size", "validation_every", "crop_size"):
            if getattr(self, field) < 1:
                raise PatchlesionError(f"{field} must be at least 1, got {getattr(self, field)}.")
        if self.learning_rate <= 0:
            raise PatchlesionError(f"learning_rate must be positive, got {self.learning_rate}.")
        if self.crop_size > min(self.image_size):
            raise PatchlesionError(f"crop_size {self.crop_size} is larger than the image size {self.image_size}.")

    def validation_epochs(self) -> list[int]:
        """Epochs after which the model is validated: epoch 1, every ``validation_every``-th, and the last."""
        epochs = {1, self.epochs} | set(range(self.validation_every, self.epochs + 1, self.validation_every))
        return sorted(epochs)

    def to_dict(self) -> dict:
        """The settings as a plain dict (for run.json)."""
        return asdict(self)


#: Row labels of the paper's Table II by (input strategy, aggregation).
TABLE_II_ROWS: dict[tuple[str, str], str] = {("multi_crop", "mean"): "Multi-Crop"}


def paper_row(table: str, spec: RunSpec) -> str:
    """The paper's row label of a run in ``table`` (its own name where the paper has no such row)."""
    if table == "II":
        return TABLE_II_ROWS.get((spec.strategy, spec.aggregation), spec.name)
    return spec.name
