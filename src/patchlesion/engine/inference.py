"""Inference and model files: class probabilities of whole images from a run's evaluation crops,
and writing/reading model weights (plain state dicts, loadable with ``weights_only=True``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from patchlesion.engine.accel import Acceleration
from patchlesion.engine.settings import TrainSettings
from patchlesion.errors import PatchlesionError
from patchlesion.method.model import PatchLesionModel
from patchlesion.method.runs import RunSpec
from patchlesion.method.strategies import get_strategy

__all__ = ["EVAL_CROPS_PER_BATCH", "evaluation_batch_images", "load_state", "predict_probabilities", "save_state", "save_weights"]

#: Crops per evaluation forward pass (memory bound, not a method parameter).
EVAL_CROPS_PER_BATCH = 144


def evaluation_batch_images(n_crops: int) -> int:
    """Images per evaluation forward pass of a run with ``n_crops`` crops per image."""
    return max(1, EVAL_CROPS_PER_BATCH // n_crops)


@torch.no_grad()
def predict_probabilities(
    model: PatchLesionModel, images: torch.Tensor, spec: RunSpec, settings: TrainSettings, device: torch.device
) -> np.ndarray:
    """Class probabilities ``(N, C)`` of whole images from the strategy's evaluation crops."""
    strategy = get_strategy(spec.strategy)
    accel = Acceleration.from_settings(settings, device)
    model.eval()
    per_batch = evaluation_batch_images(spec.n_crops)
    out = []
    for start in range(0, len(images), per_batch):
        batch = images[start : start + per_batch].to(device)
        crops = accel.input(strategy.evaluation_input(batch, spec, settings.crop_size))  # (B, N, 3, s, s)
        with accel.autocast():
            probabilities = strategy.probabilities(model, crops)  # (B, C)
        out.append(probabilities.float().cpu())
    return torch.cat(out).numpy()


def save_state(model: torch.nn.Module, path: Path) -> None:
    """Write the model's weights (a plain state dict, loadable with ``weights_only=True``) atomically."""
    save_weights(model.state_dict(), path)


def load_state(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load weights written by :func:`save_state` (no unpickling of arbitrary objects)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as error:
        raise PatchlesionError(f"{path}: cannot load model weights ({error}).") from error
    model.load_state_dict(state)
    return model


def save_weights(state_dict: dict, path: Path) -> None:
    """Write a state dict to ``path`` atomically (a ``.partial`` file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state_dict, partial)
    partial.replace(path)
