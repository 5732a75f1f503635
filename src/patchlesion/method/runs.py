"""A run: one frozen choice per method axis plus a backbone (Sec. II-C to II-F).

Its canonical name is readable, derived from the fields, and parses back to the same run, so the
name is the results directory and the only thing a training job needs to be told:
``densenet121-multi_crop-nc9-mean-loss_weighting-k1``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from patchlesion.errors import PatchlesionError
from patchlesion.method.balancing import BALANCINGS

__all__ = ["RunSpec"]


@dataclass(frozen=True)
class RunSpec:
    """What is trained: one choice per method axis plus a backbone (Sec. II-C to II-F).

    ``attention`` places the patch-attention block (Sec. II-E) at the input crops (``initial``),
    on the pooled crop features (``end``) or both (``dual``); ``patch_dropout`` is p_d of Ordered-Crop
    training (Sec. II-D); ``diagnosis_scope`` says which classes diagnosis-guided weighting applies
    to; ``centre_crop`` picks Single-Crop's evaluation crop (``code``: 1.5 x crop size square, as
    the released code; ``paper``: 85 % of the image); ``normalisation`` is ``none`` (raw [0, 1], as
    the released code) or ``imagenet``.
    """

    backbone: str
    strategy: str = "multi_crop"
    n_crops: int = 9
    aggregation: str = "mean"
    balancing: str = "loss_weighting"
    k: float = 1.0
    attention: str = "none"
    patch_dropout: float = 0.0
    diagnosis_scope: str = "benign"
    centre_crop: str = "code"
    normalisation: str = "none"

    def __post_init__(self) -> None:
        # Only the torch-free balancing registry is checked here, so that the workflow can plan runs
        # without importing torch; check_registries() checks the others before a model is built.
        _check_choice("balancing", self.balancing, BALANCINGS)
        _check_choice("attention", self.attention, dict.fromkeys(ATTENTIONS))
        _check_choice("diagnosis_scope", self.diagnosis_scope, dict.fromkeys(DIAGNOSIS_SCOPES))
        _check_choice("centre_crop", self.centre_crop, dict.fromkeys(CENTRE_CROPS))
        _check_choice("normalisation", self.normalisation, dict.fromkeys(NORMALISATIONS))
        for field in ("backbone", "strategy", "aggregation"):
            if not getattr(self, field) or "-" in getattr(self, field):
                raise PatchlesionError(f"run {field} {getattr(self, field)!r} must be a non-empty name without '-'.")
        if self.n_crops < 1:
            raise PatchlesionError(f"run n_crops must be positive, got {self.n_crops}.")
        if self.k <= 0:
            raise PatchlesionError(f"run k (loss-weighting exponent) must be positive, got {self.k}.")
        if not 0.0 <= self.patch_dropout < 1.0:
            raise PatchlesionError(f"run patch_dropout must be in [0, 1), got {self.patch_dropout}.")
        object.__setattr__(self, "k", float(self.k))
        object.__setattr__(self, "patch_dropout", float(self.patch_dropout))

    @property
    def name(self) -> str:
        """Canonical name: ``<backbone>-<strategy>-nc<N>-<aggregation>-<balancing>`` followed by the
        settings that differ from their defaults: ``k<k>`` (always, for class-weighted balancing),
        ``att<attention>``, ``pd<p_d>``, ``scope<scope>`` (always, for diagnosis weighting),
        ``cc<centre crop>``, ``norm<normalisation>``."""
        parts = [self.backbone, self.strategy, f"nc{self.n_crops}", self.aggregation, self.balancing]
        for tag, value in self._tags():
            parts.append(f"{tag}{value}")
        return "-".join(parts)

    def _tags(self) -> list[tuple[str, str]]:
        balancing = BALANCINGS[self.balancing]
        tags = []
        if balancing.weighted_loss:
            tags.append(("k", f"{self.k:g}"))
        if self.attention != "none":
            tags.append(("att", self.attention))
        if self.patch_dropout:
            tags.append(("pd", f"{self.patch_dropout:g}"))
        if balancing.diagnosis_factors:
            tags.append(("scope", self.diagnosis_scope))
        if self.centre_crop != "code":
            tags.append(("cc", self.centre_crop))
        if self.normalisation != "none":
            tags.append(("norm", self.normalisation))
        return tags

    @classmethod
    def from_name(cls, name: str) -> RunSpec:
        """Parse a canonical run name back into its run."""
        parts = name.split("-")
        example = "e.g. densenet121-multi_crop-nc9-mean-loss_weighting-k1"
        if len(parts) < 5 or not parts[2].startswith("nc") or not parts[2][2:].isdigit():
            raise PatchlesionError(
                f"run name {name!r} is not of the form <backbone>-<strategy>-nc<N>-<aggregation>-<balancing>[-<tag><value>...], {example}."
            )
        fields: dict = {}
        for part in parts[5:]:
            tag = next((t for t in _TAG_FIELDS if part.startswith(t) and len(part) > len(t)), None)
            if tag is None:
                raise PatchlesionError(f"run name {name!r}: {part!r} is not one of the tags {', '.join(_TAG_FIELDS)} followed by a value.")
            field, convert = _TAG_FIELDS[tag]
            try:
                fields[field] = convert(part[len(tag) :])
            except ValueError:
                raise PatchlesionError(f"run name {name!r}: {part!r} does not hold a valid {field}.") from None
        spec = cls(parts[0], parts[1], int(parts[2][2:]), parts[3], parts[4], **fields)
        if spec.name != name:
            raise PatchlesionError(f"run name {name!r} is not canonical; write it as {spec.name!r}.")
        return spec

    def to_dict(self) -> dict:
        """The run's fields as a plain dict (for run.json)."""
        return asdict(self)

    def check_registries(self) -> RunSpec:
        """Check backbone, input strategy and aggregation against their registries and their
        combination against the strategy's rules (imports torch)."""
        from patchlesion.method.aggregation import AGGREGATIONS
        from patchlesion.method.backbones import BACKBONES
        from patchlesion.method.strategies import STRATEGIES

        _check_choice("backbone", self.backbone, BACKBONES)
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("aggregation", self.aggregation, AGGREGATIONS)
        STRATEGIES[self.strategy].check(self)
        return self


#: Tag -> (RunSpec field, parser) of the optional parts of a run name, in name order.
_TAG_FIELDS: dict[str, tuple[str, type]] = {
    "k": ("k", float),
    "att": ("attention", str),
    "pd": ("patch_dropout", float),
    "scope": ("diagnosis_scope", str),
    "cc": ("centre_crop", str),
    "norm": ("normalisation", str),
}
ATTENTIONS = ("none", "initial", "end", "dual")
DIAGNOSIS_SCOPES = ("benign", "nevus", "all")
CENTRE_CROPS = ("code", "paper")
NORMALISATIONS = ("none", "imagenet")


def _check_choice(field: str, value: str, registry: dict) -> None:
    if value not in registry:
        raise PatchlesionError(f"run {field} {value!r} is unknown; choose one of {', '.join(registry)}.")
