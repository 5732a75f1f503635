"""How a run is trained: the schedule and data geometry shared by all runs of an experiment
(Sec. II-G), and the device settings; taken from the workflow's config."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from patchlesion.engine.accel import parse_switch
from patchlesion.errors import PatchlesionError

__all__ = ["TrainSettings", "run_seed"]


def run_seed(seed: int, fold: int) -> int:
    """Seed of one fold's training: every fold starts from its own fresh initialisation."""
    return seed * 1000 + fold


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
    #: ImageNet initialisation of the real backbones (the paper's setting); ``tiny`` has no weights.
    pretrained: bool = False
    #: Mixed precision and channels-last memory format: ``auto`` (on for CUDA), ``true``, ``false``
    #: (:mod:`patchlesion.engine.accel`); ``compile`` wraps the model in ``torch.compile`` for training.
    amp: str = "auto"
    channels_last: str = "auto"
    compile: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr_halving_epochs", tuple(int(e) for e in self.lr_halving_epochs))
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "amp", parse_switch("amp", self.amp))
        object.__setattr__(self, "channels_last", parse_switch("channels_last", self.channels_last))
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

