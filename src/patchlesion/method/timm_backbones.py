"""Any model of timm (PyTorch Image Models) as a backbone, named ``timm:<model>`` (docs/architecture.md §5).

timm is the maintained home of ImageNet backbones. ``timm:convnext_tiny``, or with a pretrained tag
``timm:resnet50.a1_in1k``, is that timm model truncated to its pooled features, as the paper's
backbones are (docs/method.md §4.1): timm's ``reset_classifier(0)`` drops the classifier and keeps
the global average pooling and whatever timm's head puts before its classifier (ConvNeXt's
LayerNorm); the feature size is the one timm reports. The head's dropout belongs to the dropped
classifier, so it is off (``drop_rate=0``). Its ImageNet weights come from the local cache
(:func:`patchlesion.method.weights.load_pretrained_state`) and are loaded by timm itself, so timm's
checkpoint filter applies and a checkpoint that does not fit is an error, never a partial load.

A vision transformer is built for one input size (timm's ``fixed_input_size``). Where timm can
build the model with ``dynamic_img_size`` (ViT, DeiT, EVA, Swin: the position embedding resampled to
the grid of each input), it is built so, and it takes any crop whose side is a multiple of its patch
size (:func:`input_size_rule`); other fixed-size models (MLP-Mixer) take only their own size.

Run names and result folders spell the ``:`` as ``.`` (``timm.convnext_tiny-multi_crop-nc9-...``):
a colon is no file-name character on Windows, and ``scp``/``rsync`` read one as a host name.

timm is an optional extra (``pip install -e ".[timm]"``). This module imports it, and torch, only
when a timm backbone is checked or built, so names are handled (and runs planned) without either.
"""

from __future__ import annotations

import difflib
import functools
import os
import re

from patchlesion.errors import PatchlesionError
from patchlesion.method.registry import UnknownChoiceError

__all__ = [
    "FAMILY",
    "HF_ENDPOINT",
    "PAPER_EQUIVALENTS",
    "build",
    "check_backbone_name",
    "feature_size",
    "from_run_name",
    "import_timm",
    "input_size_rule",
    "is_timm",
    "pretrained_config",
    "timm_model",
    "to_run_name",
    "weight_sources",
]  # fmt: skip

#: The family prefix of timm backbones in configs and on the command line (``timm:<model>``).
FAMILY = "timm"
#: A timm model name, with an optional pretrained tag: lower-case words, digits, ``_``, one ``.``.
MODEL_NAME = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)?")
#: Where Hugging Face Hub files are fetched from; ``$HF_ENDPOINT`` (huggingface_hub's own setting)
#: points at a mirror.
HF_ENDPOINT = "https://huggingface.co"
#: timm models that are one of the paper's backbones: the same architecture, with the weights
#: ported from where the paper took them. Their learning rate is the paper backbone's, and the
#: tables show the paper's numbers beside them (config key ``se_resnext50_source``).
PAPER_EQUIVALENTS = {"timm:legacy_seresnext50_32x4d": "se_resnext50"}
#: Checkpoint formats the cache reads: safetensors (no code in the file) or a torch state dict.
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def is_timm(backbone: str) -> bool:
    """Whether ``backbone`` names a timm model (``timm:<model>``)."""
    return backbone.startswith(FAMILY + ":")


def timm_model(backbone: str) -> str:
    """The timm model name of ``timm:<model>``: ``resnet50.a1_in1k``."""
    return backbone.removeprefix(FAMILY + ":")


def check_backbone_name(backbone: str) -> None:
    """The spelling of a backbone name (its existence is checked by the registry): a registered name
    has no ``-``, ``:`` or ``.``; a timm backbone is ``timm:<model>`` with timm's lower-case name."""
    if is_timm(backbone):
        if not MODEL_NAME.fullmatch(timm_model(backbone)):
            raise PatchlesionError(
                f"backbone {backbone!r}: a timm model name has lower-case letters, digits, '_' and at most one '.' "
                "before a pretrained tag, e.g. timm:convnext_tiny or timm:resnet50.a1_in1k."
            )
        return
    if not backbone or any(c in backbone for c in "-:."):
        hint = f" (a timm model is written timm:{backbone.partition('.')[2] or backbone})" if backbone.startswith(FAMILY) else ""
        raise PatchlesionError(f"run backbone {backbone!r} must be a registered name without '-', ':' or '.'{hint}.")


def to_run_name(backbone: str) -> str:
    """How ``backbone`` is written in run names and result folders: ``timm:<model>`` as ``timm.<model>``."""
    return f"{FAMILY}.{timm_model(backbone)}" if is_timm(backbone) else backbone


def from_run_name(part: str) -> str:
    """The backbone of a run name's first part (inverse of :func:`to_run_name`)."""
    return f"{FAMILY}:{part.removeprefix(FAMILY + '.')}" if part.startswith(FAMILY + ".") else part


def import_timm(backbone: str):
    """The timm module, or an error saying how to install it (timm is an optional extra)."""
    try:
        import timm
    except ImportError:
        raise PatchlesionError(
            f"backbone {backbone!r} needs the timm package, an optional extra: pip install -e \".[timm]\" "
            "(or pip install \"timm>=1.0,<2\")."
        ) from None
    return timm


def pretrained_config(backbone: str):
    """timm's pretrained configuration of ``timm:<model>`` (input statistics, minimum input size,
    where its weights are published), or None for a model without weights. An unknown model or tag
    is an error that suggests close names."""
    timm = import_timm(backbone)
    model = timm_model(backbone)
    architecture, _, tag = model.partition(".")
    if not timm.is_model(architecture):
        close = difflib.get_close_matches(architecture, timm.list_models(), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownChoiceError(f"backbone {backbone!r}: unknown timm model {architecture!r}; {hint}timm.list_models() lists them all.")
    try:
        return timm.models.get_pretrained_cfg(model)
    except RuntimeError:  # an unknown pretrained tag
        tags = [name.partition(".")[2] for name in timm.list_pretrained(architecture + ".*")]
        raise UnknownChoiceError(
            f"backbone {backbone!r}: timm model {architecture} has no pretrained tag {tag!r}; "
            f"choose one of {', '.join(tags) or '(none: it has no weights)'}, or leave the tag out for timm's default."
        ) from None


@functools.cache
def input_size_rule(backbone: str) -> tuple[str, int] | None:
    """What input sizes ``timm:<model>`` takes: None for any (a convolutional network);
    ``("multiple", p)`` for a model built with ``dynamic_img_size``, whose crops' side must be a
    multiple of its patch size p; ``("only", s)`` for a model fixed to ``s`` pixels. Found by
    building the model on PyTorch's meta device (no memory, no weights; about 0.1 s)."""
    config = pretrained_config(backbone)
    if not getattr(config, "fixed_input_size", False):
        return None
    import torch

    timm = import_timm(backbone)
    try:
        with torch.device("meta"):
            net = timm.create_model(timm_model(backbone), pretrained=False, dynamic_img_size=True)
    except Exception:  # noqa: BLE001 - no dynamic_img_size (MLP-Mixer: a TypeError), or no meta build: the fixed size, as timm says
        return ("only", int(config.input_size[-1]))
    patch = getattr(getattr(net, "patch_embed", None), "patch_size", None)
    return ("multiple", int(patch[0] if isinstance(patch, (tuple, list)) else patch)) if patch else ("only", int(config.input_size[-1]))


def build(backbone: str, state: dict | None = None, source=None):
    """``timm:<model>`` truncated to its pooled features; with ``state``, its ImageNet weights as
    read from the cache file ``source``, loaded by timm (its checkpoint filter, a strict load).
    A fixed-size model that can be is built with ``dynamic_img_size`` (:func:`input_size_rule`)."""
    timm = import_timm(backbone)
    overlay = None if state is None else {"state_dict": state}
    dynamic = {"dynamic_img_size": True} if (input_size_rule(backbone) or ("",))[0] == "multiple" else {}
    try:
        net = timm.create_model(timm_model(backbone), pretrained=state is not None, pretrained_cfg_overlay=overlay, drop_rate=0.0, **dynamic)
    except RuntimeError as exc:
        if state is None:
            raise
        raise PatchlesionError(f"{source}: these weights do not fit timm's {timm_model(backbone)}: {exc}") from exc
    net.reset_classifier(0)  # (B, 3, s, s) -> (B, F): pooled (pre-logits) features
    return net


def feature_size(net) -> int:
    """The size of the pooled features a timm model truncated by :func:`build` returns."""
    return getattr(net, "head_hidden_size", None) or net.num_features


def weight_sources(backbone: str) -> list[str]:
    """The URLs to try for ``timm:<model>``'s weights, in order: the Hugging Face Hub repository's
    safetensors file (then its PyTorch file, as timm does) where timm names one, else timm's URL."""
    config = pretrained_config(backbone)
    if config is None or not (config.hf_hub_id or config.url):
        raise PatchlesionError(
            f"timm publishes no pretrained weights for {timm_model(backbone)}; train {backbone} from random "
            "initialisation (config key pretrained: false) or choose a model of timm.list_pretrained()."
        )
    if config.hf_hub_id:
        endpoint = os.environ.get("HF_ENDPOINT") or HF_ENDPOINT
        files = [config.hf_hub_filename] if config.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        return [f"{endpoint.rstrip('/')}/{config.hf_hub_id}/resolve/main/{name}" for name in files]
    return [str(config.url)]
