"""Input-strategy axis (Sec. II-D): how crops are cut from an image in training and at evaluation.

Every strategy turns a batch of whole images ``(B, 3, H, W)`` (uint8) into model input
``(B, N, 3, s, s)`` (float in [0, 1]) and says, through its attributes and methods, what it
allows and how evaluation combines the crops: ``plain`` strategies (Multi-Crop, Downsampling,
Single-Crop) train the plain model, which classifies every crop on its own, and average the
per-crop softmax probabilities at evaluation; the others (Ordered-Crop) leave the crops to the
model's aggregation. A new strategy is one class under ``@STRATEGIES.register(name)``.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from patchlesion.errors import PatchlesionError
from patchlesion.method.aggregation import AGGREGATIONS, ATTENTIONS
from patchlesion.method.augment import augment, augment_into, flip_draws, jitter_factors
from patchlesion.method.crops import centre_box, crop_grid, random_crop_positions, random_resized_boxes, resize_boxes
from patchlesion.method.registry import Registry

__all__ = [
    "STRATEGIES",
    "Downsample",
    "InputStrategy",
    "MultiCrop",
    "OrderedCrop",
    "PlainStrategy",
    "SingleCrop",
    "Workspace",
    "get_strategy",
]

#: Side of Single-Crop's evaluation centre crop relative to the crop size in the authors' code (336 px for 224).
CODE_CENTRE_FACTOR = 1.5
#: Fraction of the image's height and width covered by Single-Crop's evaluation centre crop in the paper.
PAPER_CENTRE_FRACTION = 0.85


def _to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255.0)


class Workspace:
    """Reusable buffers, and optionally worker threads, for making input batch after batch.

    A fresh multi-megabyte CPU tensor costs page faults on every batch; a reused one does not.
    ``get`` returns a buffer of at least the asked batch size, sliced to it, valid until the next
    call with that name from the same thread. With ``threads > 1`` the samples of a batch are
    augmented by that many threads at once (PyTorch's kernels release the GIL); use it with
    ``torch.set_num_threads(1)`` so the threads do not also split every operation.
    """

    def __init__(self, threads: int = 1) -> None:
        self.threads = max(1, int(threads))
        self._buffers: dict[tuple[str, int], torch.Tensor] = {}
        self._pool = None

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (name, threading.get_ident())
        buffer = self._buffers.get(key)
        if buffer is None or buffer.shape[1:] != shape[1:] or buffer.shape[0] < shape[0] or buffer.dtype != dtype or buffer.device != device:
            buffer = self._buffers[key] = torch.empty(shape, dtype=dtype, device=device)
        return buffer[: shape[0]]

    def map(self, function, items) -> None:
        """``function(item)`` for every item, on the workspace's threads."""
        if self.threads == 1:
            for item in items:
                function(item)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="patchlesion-input")
        for _ in self._pool.map(function, items):
            pass


def _buffer(workspace: Workspace | None, name: str, shape, dtype, device) -> torch.Tensor:
    if workspace is None:
        return torch.empty(shape, dtype=dtype, device=device)
    return workspace.get(name, tuple(shape), dtype, device)


def _map(workspace: Workspace | None, function, items) -> None:
    if workspace is None:
        for item in items:
            function(item)
    else:
        workspace.map(function, items)


def _grid_crops(images: torch.Tensor, n_crops: int, crop_size: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """The ``n_crops`` ordered crops of every image: ``(B, 3, H, W)`` -> ``(B, N, 3, s, s)``, one
    batched slice copy per crop position (into ``out`` when given)."""
    batch, channels, height, width = images.shape
    grid = crop_grid(n_crops, (width, height), crop_size)
    if out is None:
        out = torch.empty((batch, n_crops, channels, crop_size, crop_size), dtype=images.dtype, device=images.device)
    for k, (row, col) in enumerate(grid):
        out[:, k].copy_(images[:, :, row : row + crop_size, col : col + crop_size])
    return out


def _resize(images: torch.Tensor, crop_size: int) -> torch.Tensor:
    """Float ``(B, C, h, w)`` -> ``(B, C, s, s)``, bilinear with antialiasing (aspect not kept)."""
    resized = F.interpolate(images, size=(crop_size, crop_size), mode="bilinear", align_corners=False, antialias=True)
    return resized.clamp_(0.0, 1.0)


@dataclass(frozen=True)
class InputStrategy:
    """Base class: subclasses implement ``training_input`` and ``evaluation_input``, and say what
    they allow through the class attributes below (checked by :meth:`check`)."""

    name: str = ""

    #: The plain model: every crop classified on its own, evaluation averages per-crop softmax.
    plain: ClassVar[bool] = False
    #: One input per image (n_crops must be 1).
    single_input: ClassVar[bool] = False
    #: Patch dropout (Sec. II-D) applies to its training crops.
    supports_patch_dropout: ClassVar[bool] = False
    #: Training input is ``sample_into`` applied per sample under ``draws`` (all random numbers drawn
    #: first, in one process), so the samples of a batch can be made by other processes.
    per_sample_draws: ClassVar[bool] = False

    @property
    def combine(self) -> str:
        """How evaluation combines the crops: ``"softmax_mean"`` (plain) or ``"model"``."""
        return "softmax_mean" if self.plain else "model"

    def training_input(
        self, images: torch.Tensor, spec, crop_size: int, generator: torch.Generator, workspace: Workspace | None = None
    ) -> torch.Tensor:
        """Augmented training crops ``(B, N, 3, s, s)`` of uint8 images ``(B, 3, H, W)`` (any memory
        layout, on the device the crops are made on); ``spec`` is the run
        (:class:`patchlesion.method.runs.RunSpec`: n_crops, patch_dropout, centre_crop). Random numbers
        come only from ``generator``, a CPU generator also for CUDA images. With a ``workspace``
        the crops live in its buffers, valid until the next call."""
        raise NotImplementedError

    def evaluation_input(self, images: torch.Tensor, spec, crop_size: int) -> torch.Tensor:
        """Evaluation crops ``(B, N, 3, s, s)`` of uint8 images ``(B, 3, H, W)`` (no randomness)."""
        raise NotImplementedError

    def probabilities(self, model, crops: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, C)`` of evaluation crops ``(B, N, 3, s, s)``: the softmax of the
        model's output (the model aggregates the crops)."""
        return model(crops).float().softmax(dim=-1)

    def check(self, spec) -> None:
        """Raise PatchlesionError if ``spec`` combines this strategy with settings it cannot use."""
        if spec.patch_dropout and not self.supports_patch_dropout:
            allowed = ", ".join(repr(n) for n, s in STRATEGIES.items() if s.supports_patch_dropout)
            raise PatchlesionError(f"run {spec.name}: patch dropout does not apply to {self.name}; use strategy {allowed}.")
        if self.single_input and spec.n_crops != 1:
            raise PatchlesionError(f"run {spec.name}: {self.name} feeds one input per image; set n_crops to 1.")
        aggregation = AGGREGATIONS[spec.aggregation]
        if spec.n_crops < aggregation.min_crops:
            raise PatchlesionError(
                f"run {spec.name}: aggregation {aggregation.name!r} needs a sequence of at least "
                f"{aggregation.min_crops} crops; set n_crops to {aggregation.min_crops} or more."
            )


@dataclass(frozen=True)
class PlainStrategy(InputStrategy):
    """Base class of the plain strategies (docs/method.md §4.4): the plain model classifies every crop
    on its own, so no aggregation across crops and no attention; evaluation averages the per-crop
    softmax probabilities."""

    plain: ClassVar[bool] = True

    def probabilities(self, model, crops: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, C)``: per-crop softmax ``(B, N, C)`` averaged over the crops."""
        return model.crop_logits(crops).float().softmax(dim=-1).mean(dim=1)

    def check(self, spec) -> None:
        if not AGGREGATIONS[spec.aggregation].per_crop or ATTENTIONS[spec.attention].blocks:
            per_crop = ", ".join(repr(n) for n, a in AGGREGATIONS.items() if a.per_crop)
            model_strategies = ", ".join(repr(n) for n, s in STRATEGIES.items() if not s.plain)
            raise PatchlesionError(
                f"run {spec.name}: {self.name} classifies every crop on its own (the plain model), so it needs "
                f"aggregation {per_crop} and attention 'none'; use strategy {model_strategies} for GRU or attention models."
            )
        super().check(spec)


#: Input strategies by name; ``@STRATEGIES.register(name)`` above an :class:`InputStrategy` subclass
#: adds one (the registry holds its instance).
STRATEGIES: Registry[InputStrategy] = Registry("input strategy", make=lambda name, cls: cls(name))


@STRATEGIES.register("multi_crop")
@dataclass(frozen=True)
class MultiCrop(PlainStrategy):
    """Multi-Crop (Sec. II-D): one random crop per image in training, then flips and colour jitter;
    ``n_crops`` ordered crops at evaluation, softmax probabilities averaged over crops."""

    def training_input(self, images, spec, crop_size, generator, workspace: Workspace | None = None):
        batch, channels, height, width = images.shape
        positions = random_crop_positions(batch, 1, (width, height), crop_size, generator)[:, 0].tolist()
        horizontal, vertical = flip_draws(batch, generator)
        jitter = jitter_factors(batch, generator)
        out = _buffer(workspace, "crops", (batch, 1, channels, crop_size, crop_size), torch.float32, images.device)
        b, s, first = (t.tolist() for t in jitter)

        def one_sample(i: int) -> None:  # crop first: the float work is on the crop only
            row, col = positions[i]
            crop = images[i, :, row : row + crop_size, col : col + crop_size]
            grey = _buffer(workspace, "grey", (1, crop_size, crop_size), torch.float32, images.device)[0]
            augment_into(out[i, 0], crop, bool(horizontal[i]), bool(vertical[i]), b[i], s[i], first[i], grey_out=grey)

        _map(workspace, one_sample, range(batch))
        return out  # (B, 1, 3, s, s)

    def evaluation_input(self, images, spec, crop_size):
        return _to_float(_grid_crops(images, spec.n_crops, crop_size))  # (B, N, 3, s, s)


@STRATEGIES.register("downsample")
@dataclass(frozen=True)
class Downsample(PlainStrategy):
    """Downsampling (Sec. II-D): the whole image resized to ``s x s`` (aspect not kept, bilinear,
    antialiased), then flips and colour jitter in training; the same resize alone at evaluation."""

    single_input: ClassVar[bool] = True

    def training_input(self, images, spec, crop_size, generator, workspace=None):
        resized = _resize(_to_float(images), crop_size)  # (B, 3, s, s)
        return augment(resized, generator).unsqueeze(1)  # (B, 1, 3, s, s)

    def evaluation_input(self, images, spec, crop_size):
        return _resize(_to_float(images), crop_size).unsqueeze(1)  # (B, 1, 3, s, s)


@STRATEGIES.register("single_crop")
@dataclass(frozen=True)
class SingleCrop(PlainStrategy):
    """Single-Crop (Sec. II-D): torchvision's ``RandomResizedCrop(s)`` (scale 0.08-1, ratio 3/4-4/3),
    then flips and colour jitter in training; a resized centre crop at evaluation: a square of
    1.5 x s px (``centre_crop="code"``, the released code) or 85 % of the image's height and width
    (``"paper"``)."""

    single_input: ClassVar[bool] = True

    def training_input(self, images, spec, crop_size, generator, workspace=None):
        batch, _, height, width = images.shape
        boxes = random_resized_boxes(batch, (width, height), generator)  # (B, 4): top, left, h, w
        crops = resize_boxes(_to_float(images), boxes, crop_size).clamp_(0.0, 1.0)  # (B, 3, s, s)
        return augment(crops, generator).unsqueeze(1)  # (B, 1, 3, s, s)

    def evaluation_input(self, images, spec, crop_size):
        top, left, h, w = self.centre_box(images.shape, spec, crop_size)
        crops = _to_float(images[:, :, top : top + h, left : left + w])  # (B, 3, h, w)
        return _resize(crops, crop_size).unsqueeze(1)  # (B, 1, 3, s, s)

    @staticmethod
    def centre_box(shape, spec, crop_size: int) -> tuple[int, int, int, int]:
        """Evaluation box ``(top, left, h, w)`` of images of ``shape`` ``(B, 3, H, W)``."""
        height, width = shape[-2:]
        if spec.centre_crop == "paper":
            size = (round(PAPER_CENTRE_FRACTION * height), round(PAPER_CENTRE_FRACTION * width))
        else:
            side = round(CODE_CENTRE_FACTOR * crop_size)
            size = (side, side)
        return centre_box((width, height), size)


@STRATEGIES.register("ordered")
@dataclass(frozen=True)
class OrderedCrop(InputStrategy):
    """Ordered-Crop (Sec. II-D): flips and colour jitter on the whole image, then the ``n_crops``
    fixed grid crops of evaluation, each zeroed with probability ``patch_dropout`` per sample
    (patch dropout, training only); the grid crops alone at evaluation; the model aggregates them."""

    supports_patch_dropout: ClassVar[bool] = True
    per_sample_draws: ClassVar[bool] = True

    def training_input(self, images, spec, crop_size, generator, workspace: Workspace | None = None):
        batch, channels, height, width = images.shape
        draws = self.draws(batch, spec, generator)
        crops = _buffer(workspace, "crops", (batch, spec.n_crops, channels, crop_size, crop_size), torch.float32, images.device)
        _map(workspace, lambda i: self.sample_into(crops[i], images[i], spec.n_crops, crop_size, draws[i], workspace), range(batch))
        return crops  # (B, N, 3, s, s)

    @staticmethod
    def draws(batch: int, spec, generator: torch.Generator) -> list[tuple]:
        """Each sample's random draws ``(horizontal, vertical, b, s, brightness_first, keep)``, in the
        order of :func:`patchlesion.method.augment.augment` followed by patch dropout's ``keep`` per crop."""
        horizontal, vertical = flip_draws(batch, generator)
        b, s, first = jitter_factors(batch, generator)
        if spec.patch_dropout > 0:
            # independent per sample and crop; no rescaling, no guarantee that a crop survives (docs/method.md §3.2)
            keep = (torch.rand(batch, spec.n_crops, generator=generator) >= spec.patch_dropout).tolist()  # (B, N)
        else:
            keep = [[True] * spec.n_crops] * batch
        return list(zip(horizontal.tolist(), vertical.tolist(), b.tolist(), s.tolist(), first.tolist(), keep))

    @staticmethod
    def sample_into(out: torch.Tensor, image: torch.Tensor, n_crops: int, crop_size: int, draw: tuple, workspace: Workspace | None = None) -> None:
        """One sample: uint8 ``image`` ``(3, H, W)`` -> its crops ``out`` ``(N, 3, s, s)`` under ``draw``.

        Flips and colour jitter on the whole image before cropping (docs/method.md §6), one image at a time
        so that its float copy stays in the CPU cache; dropped crops are zero-filled, not cut."""
        horizontal, vertical, b, s, first, keep = draw
        if not any(keep):
            out.zero_()
            return
        channels, height, width = image.shape
        augmented = _buffer(workspace, "image", (1, channels, height, width), torch.float32, image.device)[0]
        grey = _buffer(workspace, "grey", (1, height, width), torch.float32, image.device)[0]
        augment_into(augmented, image, horizontal, vertical, b, s, first, grey_out=grey)
        for k, (row, col) in enumerate(crop_grid(n_crops, (width, height), crop_size)):
            if keep[k]:
                out[k].copy_(augmented[:, row : row + crop_size, col : col + crop_size])
            else:
                out[k].zero_()

    def evaluation_input(self, images, spec, crop_size):
        return _to_float(_grid_crops(images, spec.n_crops, crop_size))


def get_strategy(name: str) -> InputStrategy:
    """Look up an input strategy by name."""
    return STRATEGIES[name]
