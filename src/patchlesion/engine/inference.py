"""Inference and model files: class probabilities of whole images from a run's evaluation crops,
and writing/reading model weights (plain state dicts, loadable with ``weights_only=True``)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import torch

from patchlesion.data.description import HAM10000, DatasetDescription
from patchlesion.engine.accel import Acceleration
from patchlesion.engine.settings import TrainSettings
from patchlesion.errors import PatchlesionError
from patchlesion.method.model import PatchLesionModel
from patchlesion.method.runs import RunSpec
from patchlesion.method.strategies import get_strategy

__all__ = [
    "EVAL_CROPS_PER_BATCH", "evaluation_batch_images", "fit_state", "load_state", "model_file", "predict_probabilities",
    "read_state_dict", "save_state", "save_weights", "trained_dataset",
]

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


def load_state(model: torch.nn.Module, path: str | Path, run: str | None = None) -> torch.nn.Module:
    """Load weights written by :func:`save_state` (no unpickling of arbitrary objects). A file that is
    not such a state dict, or one of another run's model (``run`` names the expected run in the
    message), is a :class:`PatchlesionError` that names the file."""
    return fit_state(model, read_state_dict(path), path, run)


def fit_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path, run: str | None = None) -> torch.nn.Module:
    """Load the state dict read from ``path`` into ``model``; weights of another model are a
    :class:`PatchlesionError` that names the file and what does not fit."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    reshaped = [key for key in expected if key in state and state[key].shape != expected[key].shape]
    if missing or unexpected or reshaped:
        problems = [f"{len(keys)} {what} tensor(s), e.g. {keys[0]}" for keys, what in
                    ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "wrongly shaped")) if keys]  # fmt: skip
        raise PatchlesionError(
            f"{path}: these weights do not fit {f'run {run}' if run else 'the model'} ({'; '.join(problems)}). "
            "Pass a model file and the run it was trained as (the run.json that `patchlesion train` writes beside model.pt names it)."
        )
    model.load_state_dict(state)
    return model


def model_file(path: str | Path) -> Path:
    """``path``, if it is a file; else a :class:`PatchlesionError` saying what to pass."""
    path = Path(path)
    if path.is_dir():
        raise PatchlesionError(f"{path}: is a folder; pass the model file in it (e.g. {path / 'model.pt'}).")
    if not path.is_file():
        raise PatchlesionError(f"{path}: model file not found.")
    return path


def trained_dataset(model_path: str | Path) -> DatasetDescription:
    """The dataset a model was trained on, as the run.json beside it records it; HAM10000 for a
    model without run.json or from before run.json recorded it."""
    record_path = Path(model_path).with_name("run.json")
    if not record_path.is_file():
        return HAM10000
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError) as error:
        raise PatchlesionError(f"{record_path}: cannot read the training record ({error}); copy it again from the training folder.") from error
    return DatasetDescription.from_dict(record["dataset"]) if isinstance(record, dict) and "dataset" in record else HAM10000


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in a model file, loaded with ``weights_only``; any other file is a
    :class:`PatchlesionError` that names it (never torch's advice to turn ``weights_only`` off)."""
    path = model_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as error:
        raise PatchlesionError(f"{path}: cannot read the model file ({error.strerror or error}).") from error
    except pickle.UnpicklingError as error:
        if "Unsupported global" in str(error):  # a pickled object (e.g. a whole model), not only tensors
            raise PatchlesionError(
                f"{path}: holds pickled Python objects, not only weights; patchlesion reads only state dicts "
                "(torch.save(model.state_dict(), path)), as `patchlesion train` writes them."
            ) from None
        raise PatchlesionError(f"{path}: not a PyTorch model file; pass the model.pt that `patchlesion train` wrote.") from None
    except Exception as error:  # noqa: BLE001 -- torch.load of arbitrary bytes raises many kinds (EOFError, KeyError, RuntimeError ...)
        if path.stat().st_size == 0 or "zip archive" in str(error):
            raise PatchlesionError(f"{path}: empty, truncated or corrupted model file; copy it again from its training folder.") from None
        raise PatchlesionError(f"{path}: not a PyTorch model file; pass the model.pt that `patchlesion train` wrote.") from None
    if not isinstance(state, dict) or not all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()):
        raise PatchlesionError(f"{path}: holds a {type(state).__name__}, not a model's weights (a state dict of tensors); "
                               "pass the model.pt that `patchlesion train` wrote.")  # fmt: skip
    return state


def save_weights(state_dict: dict, path: Path) -> None:
    """Write a state dict to ``path`` atomically (a ``.partial`` file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state_dict, partial)
    partial.replace(path)
