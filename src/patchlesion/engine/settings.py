"""How a run is trained: the schedule and data geometry shared by all runs of an experiment
(Sec. II-G; docs/method.md §6), and the device settings; taken from the workflow's config.

Each setting is spelled once, as a field of :class:`TrainSettings` made by :func:`setting`: its
metadata (help text, config key, which ``patchlesion`` commands take it) generates the command-line
options (:meth:`TrainSettings.cli_options`), the workflow's argument strings
(:meth:`TrainSettings.command_line`) and the settings of one backbone's runs from the config
(:meth:`TrainSettings.from_config`). A new setting is one :func:`setting` field, one config.yaml key
and its schema entry. Torch-free, so that the workflow can plan with it.
"""

from __future__ import annotations

import shlex
import typing
from collections.abc import Iterator, Mapping
from dataclasses import Field, asdict, dataclass, field, fields

from patchlesion.data import RESIZES
from patchlesion.errors import PatchlesionError
from patchlesion.method.timm_backbones import FAMILY, PAPER_EQUIVALENTS, is_timm
from patchlesion.method.weights import has_weights

__all__ = ["SWITCHES", "TrainSettings", "parse_switch", "per_backbone", "run_seed", "setting"]

#: Values of the ``amp`` and ``channels_last`` settings.
SWITCHES = ("auto", "true", "false")

#: The ``patchlesion`` commands that take a setting: training only; every command that runs a model
#: on a device with mixed precision; every command that crops images for a model.
TRAINING = ("train",)
EVALUATION = ("train", "evaluate", "official-test")
PREDICTION = (*EVALUATION, "figure4", "predict")


def parse_switch(name: str, value) -> str:
    """Normalise an ``auto``/``true``/``false`` setting (YAML booleans accepted)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    if text not in SWITCHES:
        raise PatchlesionError(f"{name} must be one of {', '.join(SWITCHES)}, got {value!r}.")
    return text


def run_seed(seed: int, fold: int) -> int:
    """Seed of one fold's training: every fold starts from its own fresh initialisation."""
    return seed * 1000 + fold


def per_backbone(value: Mapping, backbone: str, key: str = "learning_rate"):
    """A config value given per backbone (``learning_rate: {densenet121: ...}``). A timm backbone
    without an entry of its own takes its paper backbone's (SE-ResNeXt50 from timm:
    ``se_resnext50``'s), else the ``timm`` entry, the default of every timm model."""
    fallbacks = [PAPER_EQUIVALENTS.get(backbone), FAMILY if is_timm(backbone) else None]
    for name in (backbone, *fallbacks):
        if name in value:
            return value[name]
    also = f" (or a '{FAMILY}' entry for every timm model)" if is_timm(backbone) else ""
    raise PatchlesionError(f"config key {key!r}: no entry for backbone {backbone!r}; add one{also}.")


def _where_weights_exist(value, backbone: str) -> bool:
    """``pretrained: true`` applies to the backbones that have ImageNet weights (``tiny`` has none)."""
    return bool(value) and has_weights(backbone)


def setting(
    default, help: str, *, commands: tuple[str, ...] = TRAINING, nargs=None, metavar=None, choices=None, config=None, from_config=None,
    quiet_default: bool = False,
) -> Field:  # fmt: skip
    """A field of :class:`TrainSettings` with what its other spellings need: ``help`` (shown by
    ``patchlesion <command> --help``), the ``commands`` that take it, argparse's ``nargs``,
    ``metavar`` and ``choices``, the ``config`` key (default: the field's name) and
    ``from_config(value, backbone)`` for a config value that depends on the backbone.
    ``quiet_default``: the workflow's command lines leave the option out at its default, so that a
    setting added later does not change, and rerun, the jobs of a workflow that does not use it."""
    metadata = {"help": help, "commands": commands, "nargs": nargs, "metavar": metavar, "choices": choices, "quiet_default": quiet_default}
    return field(default=default, metadata={**metadata, "config": config, "from_config": from_config})


@dataclass(frozen=True)
class TrainSettings:
    """How a run is trained: schedule and data geometry (Sec. II-G; docs/method.md §6), shared by all
    runs of an experiment and taken from the workflow's config."""

    epochs: int = setting(50, "training epochs (passes over the training folds)")
    batch_size: int = setting(5, "images per batch of the patch models (GRU, attention)")
    #: The paper gives the batch size of its patch models only (docs/method.md §6).
    plain_batch_size: int = setting(5, "images per batch of the plain Downsampling, Single-Crop and Multi-Crop models")
    learning_rate: float = setting(1.25e-5, "Adam learning rate (config: one per backbone)", from_config=per_backbone)
    lr_halving_epochs: tuple[int, ...] = setting((19, 29, 39, 49), "epochs at which the learning rate is halved", nargs="*", metavar="EPOCH")
    validation_every: int = setting(5, "validate at epoch 1, every this many epochs and the last")
    image_size: tuple[int, int] = setting(
        (600, 450), "images are resized to this size (the training size)", commands=PREDICTION, nargs=2, metavar=("WIDTH", "HEIGHT")
    )
    #: How images of another aspect ratio reach ``image_size`` (:data:`patchlesion.data.RESIZES`).
    resize: str = setting(
        "stretch", "stretch: scale each side to the image size (the paper); crop: to its aspect ratio first, centred (the training value)",
        commands=PREDICTION, choices=RESIZES, quiet_default=True,
    )  # fmt: skip
    crop_size: int = setting(224, "side of the square crops (the training size)", commands=PREDICTION)
    seed: int = setting(0, "seed of the initialisation and the sampling (one per fold derived from it)")
    device: str = setting("auto", "auto (CUDA if present), cpu, cuda, cuda:1 ...", commands=PREDICTION)
    #: ImageNet initialisation of the real backbones (the paper's setting); ``tiny`` has no weights.
    pretrained: bool = setting(False, "start from the cached ImageNet weights", from_config=_where_weights_exist)
    #: Mixed precision and channels-last memory format: ``auto`` (on for CUDA), ``true``, ``false``
    #: (:mod:`patchlesion.engine.accel`); ``compile`` wraps the model in ``torch.compile`` for training.
    amp: str = setting("auto", "mixed precision (auto: on for CUDA; bfloat16 where supported)", commands=EVALUATION, choices=SWITCHES)
    channels_last: str = setting("auto", "channels-last memory format (auto: on for CUDA)", commands=EVALUATION, choices=SWITCHES)
    compile: bool = setting(False, "train through torch.compile")

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr_halving_epochs", tuple(int(e) for e in self.lr_halving_epochs))
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "amp", parse_switch("amp", self.amp))
        object.__setattr__(self, "channels_last", parse_switch("channels_last", self.channels_last))
        for name in ("epochs", "batch_size", "plain_batch_size", "validation_every", "crop_size"):
            if getattr(self, name) < 1:
                raise PatchlesionError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if any(epoch < 1 for epoch in self.lr_halving_epochs):
            raise PatchlesionError(f"lr_halving_epochs must be epochs 1 or later, got {list(self.lr_halving_epochs)}.")
        if self.learning_rate <= 0:
            raise PatchlesionError(f"learning_rate must be positive, got {self.learning_rate}.")
        if self.resize not in RESIZES:
            raise PatchlesionError(f"resize must be one of {', '.join(RESIZES)}, got {self.resize!r}.")
        if self.crop_size > min(self.image_size):
            raise PatchlesionError(f"crop_size {self.crop_size} is larger than the image size {self.image_size}.")

    def validation_epochs(self) -> list[int]:
        """Epochs after which the model is validated: epoch 1, every ``validation_every``-th, and the last."""
        epochs = {1, self.epochs} | set(range(self.validation_every, self.epochs + 1, self.validation_every))
        return sorted(epochs)

    def images_per_batch(self, plain: bool) -> int:
        """Images per training batch: ``batch_size`` for the patch models, ``plain_batch_size`` for the
        plain models, whose batch size the paper does not give (docs/method.md §6)."""
        return self.plain_batch_size if plain else self.batch_size

    def to_dict(self, command: str | None = None) -> dict:
        """The settings as a plain dict (for run.json); with ``command``, only those it takes."""
        values = asdict(self)
        return values if command is None else {f.name: values[f.name] for f in self.settings_of(command)}

    @classmethod
    def settings_of(cls, command: str) -> list[Field]:
        """The fields that ``patchlesion <command>`` takes as options, in declaration order."""
        return [f for f in fields(cls) if command in _metadata(f)["commands"]]

    @classmethod
    def cli_options(cls, command: str) -> Iterator[tuple[str, dict]]:
        """(flag, argparse keyword arguments) of each setting that ``patchlesion <command>`` takes,
        with the field's default (see :func:`setting`)."""
        types = typing.get_type_hints(cls)
        for f in cls.settings_of(command):
            meta, kind = _metadata(f), types[f.name]
            if kind is bool:
                yield _flag(f), {"action": "store_true", "help": meta["help"]}
                continue
            element = typing.get_args(kind)[0] if typing.get_origin(kind) is tuple else kind
            default = list(f.default) if isinstance(f.default, tuple) else f.default
            options = {"type": element, "default": default, "help": meta["help"]}
            options.update({key: meta[key] for key in ("nargs", "metavar", "choices") if meta[key] is not None})
            yield _flag(f), options

    @classmethod
    def from_args(cls, args) -> TrainSettings:
        """The settings of a parsed ``patchlesion`` command line; settings it does not take keep their defaults."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})

    @classmethod
    def from_config(cls, config: Mapping, backbone: str) -> TrainSettings:
        """The settings of one backbone's runs from the workflow's config (validated by its schema)."""
        values = {}
        for f in fields(cls):
            meta, key = _metadata(f), _metadata(f)["config"] or f.name
            if key not in config:
                raise PatchlesionError(
                    f"config key {key!r} (TrainSettings.{f.name}) is missing: add it to config.yaml and workflow/schemas/config.schema.yaml."
                )
            value = config[key]
            values[f.name] = meta["from_config"](value, backbone) if meta["from_config"] else value
        return cls(**values)

    def command_line(self, command: str) -> str:
        """The options of ``patchlesion <command>`` that give these settings (the workflow's jobs)."""
        words = []
        for f in self.settings_of(command):
            value = getattr(self, f.name)
            if _metadata(f)["quiet_default"] and value == f.default:
                continue
            if isinstance(value, bool):
                words += [_flag(f)] if value else []
            elif isinstance(value, tuple):
                words += [_flag(f), *(str(v) for v in value)]
            else:
                words += [_flag(f), shlex.quote(str(value))]
        return " ".join(words)


def _metadata(f: Field) -> Mapping:
    if "help" not in f.metadata:
        raise PatchlesionError(f"TrainSettings.{f.name}: declare it with setting(...) so that the CLI and the workflow know it.")
    return f.metadata


def _flag(f: Field) -> str:
    return "--" + f.name.replace("_", "-")

