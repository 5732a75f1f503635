"""A run: one frozen choice per method axis plus a backbone (Sec. II-C to II-F).

Its canonical name is readable, derived from the fields, and parses back to the same run, so the
name is the results directory and the only thing a training job needs to be told:
``densenet121-multi_crop-nc9-mean-loss_weighting-k1``, or with attention at the model input and
patch dropout ``densenet121-ordered-nc9-mean-loss_weighting-k1-att_initial-pd0.1``. A timm backbone
``timm:convnext_tiny`` is written ``timm.convnext_tiny`` in the name (a colon is no safe file-name
character; :mod:`patchlesion.method.timm_backbones`).

Everything here is importable without torch, so that the workflow can plan runs cheaply.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from patchlesion.errors import PatchlesionError
from patchlesion.method.aggregation import AGGREGATIONS, ATTENTIONS
from patchlesion.method.balancing import BALANCINGS, DIAGNOSIS_SCOPE_CLASSES
from patchlesion.method.normalisation import NORMALISATIONS, Normalisation
from patchlesion.method.registry import unknown_choice
from patchlesion.method.timm_backbones import check_backbone_name, from_run_name, to_run_name

__all__ = ["CENTRE_CROPS", "NORMALISATIONS", "Normalisation", "RunSpec"]


#: Single-Crop's evaluation crop: ``code`` as the released code, ``paper`` as the paper's text.
CENTRE_CROPS = ("code", "paper")


@dataclass(frozen=True)
class RunSpec:
    """What is trained: one choice per method axis plus a backbone (Sec. II-C to II-F).

    ``attention`` places the patch-attention block (Sec. II-E) at the input crops (``initial``),
    on the pooled crop features (``end``) or both (``dual``); ``patch_dropout`` is p_d of Ordered-Crop
    training (Sec. II-D); ``diagnosis_scope`` says which classes diagnosis-guided weighting applies
    to; ``centre_crop`` picks Single-Crop's evaluation crop (``code``: 1.5 x crop size square, as
    the released code; ``paper``: 85 % of the image); ``normalisation`` is ``none`` (raw [0, 1], as
    the released code), ``imagenet`` or ``model`` (the backbone's own: timm's statistics of a timm model).
    ``backbone`` is a registered name or ``timm:<model>``.
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
        # Only torch-free registries are checked here, so that the workflow can plan runs without
        # importing torch; check_registries() checks the others before a model is built.
        AGGREGATIONS.check(self.aggregation)
        BALANCINGS.check(self.balancing)
        ATTENTIONS.check(self.attention)
        NORMALISATIONS.check(self.normalisation)
        if self.diagnosis_scope not in DIAGNOSIS_SCOPE_CLASSES:
            raise unknown_choice("diagnosis scope", self.diagnosis_scope, DIAGNOSIS_SCOPE_CLASSES)
        if self.centre_crop not in CENTRE_CROPS:
            raise unknown_choice("centre crop", self.centre_crop, CENTRE_CROPS)
        check_backbone_name(self.backbone)
        for field in ("strategy", "aggregation"):
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
        settings that differ from their defaults, numbers right after their tag, words after ``_``:
        ``k<k>`` (always, for class-weighted balancing), ``att_<attention>``, ``pd<p_d>``,
        ``scope_<scope>`` (always, for diagnosis weighting), ``cc_<centre crop>``,
        ``norm_<normalisation>``. The ``_`` keeps a word from reading as part of the tag
        (``att_end``, not ``attend``)."""
        parts = [to_run_name(self.backbone), self.strategy, f"nc{self.n_crops}", self.aggregation, self.balancing]
        for field, value in self._tagged_fields():
            tag = _TAGS[field]
            parts.append(f"{tag}{value:g}" if field in _NUMBER_FIELDS else f"{tag}_{value}")
        return "-".join(parts)

    def _tagged_fields(self) -> list[tuple[str, object]]:
        balancing = BALANCINGS[self.balancing]
        shown = {
            "k": balancing.weighted_loss,
            "attention": self.attention != "none",
            "patch_dropout": bool(self.patch_dropout),
            "diagnosis_scope": balancing.diagnosis_factors,
            "centre_crop": self.centre_crop != "code",
            "normalisation": self.normalisation != "none",
        }
        return [(field, getattr(self, field)) for field in _TAGS if shown[field]]

    @classmethod
    def from_name(cls, name: str) -> RunSpec:
        """Parse a canonical run name back into its run (old spellings such as ``attinitial`` are
        rejected with the new one)."""
        parts = name.split("-")
        example = "e.g. densenet121-multi_crop-nc9-mean-loss_weighting-k1"
        if len(parts) < 5 or not parts[2].startswith("nc") or not parts[2][2:].isdigit():
            raise PatchlesionError(
                f"run name {name!r} is not of the form <backbone>-<strategy>-nc<N>-<aggregation>-<balancing>[-<tag>...], {example}."
            )
        fields: dict = {}
        for part in parts[5:]:
            field, value = _parse_tag(name, part)
            fields[field] = value
        spec = cls(from_run_name(parts[0]), parts[1], int(parts[2][2:]), parts[3], parts[4], **fields)
        if spec.name != name:
            old = [p for p in parts[5:] if any(p.startswith(_TAGS[f]) and not p.startswith(_TAGS[f] + "_") for f in _WORD_FIELDS)]
            why = f"its word tags need '_' between tag and value ({', '.join(old)})" if old else "it is not canonical"
            raise PatchlesionError(f"run name {name!r}: {why}; write it as {spec.name!r}.")
        return spec

    def to_dict(self) -> dict:
        """The run's fields as a plain dict (for run.json)."""
        return asdict(self)

    def check_registries(self) -> RunSpec:
        """Check backbone and input strategy against their registries and the run's settings
        against the strategy's rules (imports torch)."""
        from patchlesion.method.backbones import BACKBONES
        from patchlesion.method.strategies import STRATEGIES

        BACKBONES.check(self.backbone)
        STRATEGIES[self.strategy].check(self)
        return self


#: RunSpec field -> its tag in a run name, in name order.
_TAGS: dict[str, str] = {
    "k": "k",
    "attention": "att",
    "patch_dropout": "pd",
    "diagnosis_scope": "scope",
    "centre_crop": "cc",
    "normalisation": "norm",
}
#: Fields whose value is a number, written right after the tag (``k1``, ``pd0.1``); the others are
#: words, written after ``_`` (``att_end``).
_NUMBER_FIELDS = ("k", "patch_dropout")
_WORD_FIELDS = tuple(field for field in _TAGS if field not in _NUMBER_FIELDS)


def _parse_tag(name: str, part: str) -> tuple[str, object]:
    """The field and value of one optional part of run name ``name``. A word tag without its ``_``
    (the old spelling, ``attend``) is read as well, so that the caller's canonical check answers
    with the new spelling."""
    for field, tag in _TAGS.items():
        if not part.startswith(tag) or len(part) == len(tag):
            continue
        value = part[len(tag) :]
        if field in _NUMBER_FIELDS:
            try:
                return field, float(value)
            except ValueError:
                raise PatchlesionError(f"run name {name!r}: {part!r} does not hold a valid {field}.") from None
        return field, value.removeprefix("_")
    tags = ", ".join(f"{tag}<number>" if field in _NUMBER_FIELDS else f"{tag}_<word>" for field, tag in _TAGS.items())
    raise PatchlesionError(f"run name {name!r}: {part!r} is not one of the tags {tags}.")
