"""How a run uses its device: automatic mixed precision, channels-last memory format, torch.compile.

None of this changes the method; it changes the arithmetic's speed and, for mixed precision, its
rounding. ``auto`` turns mixed precision and channels-last on for CUDA and off for the CPU, so CPU
runs stay fp32 and bit-for-bit as before. Mixed precision uses bfloat16 where the device supports it
(no loss scaling needed) and float16 with a gradient scaler otherwise.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from patchlesion.engine.settings import SWITCHES, parse_switch
from patchlesion.errors import PatchlesionError

__all__ = ["SWITCHES", "Acceleration", "parse_switch", "resolve_device", "to_channels_last"]


def to_channels_last(crops: torch.Tensor) -> torch.Tensor:
    """Crops ``(B, N, 3, s, s)`` with each crop stored channels-last (what the model's convolutions
    see after it flattens the crops into the batch)."""
    batch, n_crops = crops.shape[:2]
    flat = crops.flatten(0, 1).contiguous(memory_format=torch.channels_last)  # (B*N, 3, s, s)
    return flat.unflatten(0, (batch, n_crops))


@dataclass(frozen=True)
class Acceleration:
    """The resolved device settings of one job."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def from_settings(cls, settings, device: torch.device) -> Acceleration:
        """Resolve ``settings.amp``, ``settings.channels_last`` (``auto`` = on for CUDA) and
        ``settings.compile`` for ``device``."""
        on_cuda = device.type == "cuda"
        amp = parse_switch("amp", settings.amp)
        amp_dtype = None
        if amp == "true" or (amp == "auto" and on_cuda):
            if on_cuda:
                amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            else:
                amp_dtype = torch.bfloat16  # CPU autocast supports bfloat16 only
        channels_last = parse_switch("channels_last", settings.channels_last)
        return cls(
            device=device,
            amp_dtype=amp_dtype,
            channels_last=channels_last == "true" or (channels_last == "auto" and on_cuda),
            compile=bool(settings.compile),
        )

    def describe(self) -> dict:
        """The resolved settings, for run.json and logs."""
        dtype = str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype is not None else "float32"
        return {"precision": dtype, "channels_last": self.channels_last, "compile": self.compile}

    def autocast(self):
        """Context of the forward pass and loss: mixed precision when enabled, else nothing."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def prepare(self, model: torch.nn.Module):
        """Put the model's weights in the chosen memory format; returns the callable to train with
        (the model, or its ``torch.compile`` wrapper; weights are saved from the model itself)."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.compile:
            return torch.compile(model)
        return model

    def input(self, crops: torch.Tensor) -> torch.Tensor:
        """Model input in the chosen memory format."""
        return to_channels_last(crops) if self.channels_last else crops

    def grad_scaler(self):
        """A gradient scaler for float16 autocast (bfloat16 and fp32 need none), else None."""
        if self.amp_dtype == torch.float16:
            return torch.amp.GradScaler(self.device.type)
        return None

    @staticmethod
    def backward_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler=None) -> None:
        """Backward pass and optimizer step, through the gradient scaler when there is one."""
        if scaler is None:
            loss.backward()
            optimizer.step()
            return
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


def resolve_device(device: str) -> torch.device:
    """``auto`` -> the first CUDA device when one is present, else the CPU; other values as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise PatchlesionError(f"device {device!r} is not a device name; use auto, cpu, cuda or cuda:N.") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise PatchlesionError(f"device {device!r} was asked for but CUDA is not available here; use `device: auto`.")
    return resolved
