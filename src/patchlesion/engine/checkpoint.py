"""Resumable training: a per-epoch checkpoint of everything the training loop's future depends on.

A training job on a cluster is pre-empted or hits its wall-time limit; its rerun should continue at
the last finished epoch and end with exactly the weights and metrics of an uninterrupted run. The
checkpoint therefore holds the model, optimizer and scheduler, every random number generator the loop
draws from (the run's generator, PyTorch's global CPU and CUDA generators, NumPy's and Python's), the
sampler's position, the epoch, the history so far and the best validation score with its weights.

It lives outside the job's declared outputs (Snakemake deletes those before a job runs), is written
atomically (a temporary file, then a rename), loaded with ``weights_only=True`` (tensors and plain
containers only, nothing unpickled), and tagged with a hash of the run's settings so that a
checkpoint left by a run with other settings is ignored. It is deleted once the outputs are complete.
A file at the checkpoint's path that is not a checkpoint (a model, any other file) is refused, never
overwritten (:func:`check_checkpoint_path`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from patchlesion.errors import PatchlesionError

__all__ = [
    "FORMAT",
    "check_checkpoint_path",
    "settings_hash",
    "capture_rng_states",
    "restore_rng_states",
    "save_checkpoint",
    "load_checkpoint",
    "remove_checkpoint",
]

log = logging.getLogger("patchlesion")

#: Version of the checkpoint layout; a checkpoint of another layout is ignored (and overwritten).
FORMAT = 1


def settings_hash(**fields: Any) -> str:
    """A short, stable hash of everything that decides a run's result (JSON of the sorted fields)."""
    text = json.dumps(fields, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def capture_rng_states(generator: torch.Generator) -> dict:
    """Every random number generator state the training loop draws from, as tensors and primitives."""
    mt_name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    python_version, python_state, gauss_next = random.getstate()
    return {
        "generator": generator.get_state(),  # CPU or CUDA generator alike: a ByteTensor
        "generator_device": str(generator.device),
        "torch": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {"name": mt_name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},  # fmt: skip
        "python": {"version": python_version, "state": list(python_state), "gauss_next": gauss_next},
    }


def restore_rng_states(states: dict, generator: torch.Generator) -> None:
    """Put back the states captured by :func:`capture_rng_states`."""
    generator.set_state(states["generator"])
    torch.set_rng_state(states["torch"])
    if states["torch_cuda"] and torch.cuda.is_available():
        for index, cuda_state in enumerate(states["torch_cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)
    numpy_state = states["numpy"]
    np.random.set_state(
        (numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
         numpy_state["has_gauss"], numpy_state["cached_gaussian"])
    )  # fmt: skip
    python_state = states["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss_next"]))


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` (plus the layout version) to ``path`` atomically: a killed write leaves the
    previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.partial.{os.getpid()}")
    torch.save({"format": FORMAT, **state}, partial)
    with open(partial, "rb") as handle:  # on disk before the rename makes it the checkpoint
        os.fsync(handle.fileno())
    partial.replace(path)


#: The first bytes of every file ``torch.save`` writes (a zip archive).
_TORCH_FILE = b"PK\x03\x04"
_CHECKPOINT_KEYS = ("format", "settings_hash")


def _foreign(path: Path, state: object = None) -> PatchlesionError:
    what = "a PyTorch file, but no training checkpoint (no 'format' and 'settings_hash')" if state is not None else "not a PyTorch file"
    return PatchlesionError(
        f"{path}: exists and is {what}, so it is not a training checkpoint; the checkpoint is overwritten "
        "every epoch and deleted at the end, so give it a path of its own (e.g. results/<dataset>/checkpoints/"
        "<run>/fold<k>/resume.pt) or move this file away."
    )


def check_checkpoint_path(path: str | Path) -> None:
    """Refuse a checkpoint path that holds a file other than a checkpoint (e.g. a model passed by
    mistake), before anything is trained or written: the loop would overwrite and then delete it.
    A damaged torch file (a write cut short) passes: :func:`load_checkpoint` ignores it."""
    path = Path(path)
    if path.is_file():
        with open(path, "rb") as handle:
            if handle.read(len(_TORCH_FILE)) != _TORCH_FILE:
                raise _foreign(path)


def load_checkpoint(path: str | Path, expected_hash: str) -> dict | None:
    """The checkpoint at ``path`` if it belongs to a run with the settings hash ``expected_hash``;
    ``None`` (with a warning naming the file) when it is missing, damaged, of another layout, or
    from other settings. A file that is no checkpoint at all raises :class:`PatchlesionError`."""
    path = Path(path)
    if not path.is_file():
        return None
    check_checkpoint_path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged checkpoint must not stop a rerun: start afresh
        log.warning("%s: cannot read the training checkpoint (%s); starting from epoch 1.", path, type(error).__name__)
        return None
    if not isinstance(state, dict) or not all(key in state for key in _CHECKPOINT_KEYS):
        raise _foreign(path, state)
    if state.get("format") != FORMAT:
        log.warning("%s: checkpoint layout %r is not %d; starting from epoch 1.", path, getattr(state, "get", dict)("format"), FORMAT)
        return None
    if state.get("settings_hash") != expected_hash:
        log.warning(
            "%s: checkpoint is from a run with other settings (hash %s, this run %s); ignoring it and "
            "starting from epoch 1.", path, state.get("settings_hash"), expected_hash,
        )  # fmt: skip
        return None
    return state


def remove_checkpoint(path: str | Path) -> None:
    """Delete a run's checkpoint (and stray partial writes of it) once its outputs are complete."""
    path = Path(path)
    path.unlink(missing_ok=True)
    for partial in path.parent.glob(f"{path.name}.partial.*"):
        partial.unlink(missing_ok=True)
    try:
        path.parent.rmdir()  # the run's checkpoint folder, when nothing else is in it
    except OSError:
        pass


def training_state(
    *, settings_hash: str, epoch: int, stateful: dict[str, Any], generator: torch.Generator, history: list[dict],
    best: float, best_model: dict | None,
) -> dict:
    """The checkpoint of a training loop after ``epoch`` finished epochs: the ``state_dict()`` of each
    of its ``stateful`` objects (model, optimizer, scheduler, sampler, ...), every random number
    generator, the history, and the best validation score with its weights."""
    return {
        "settings_hash": settings_hash,
        "epoch": epoch,
        "stateful": {name: item.state_dict() for name, item in stateful.items()},
        "rng": capture_rng_states(generator),
        # NumPy scalars would need unpickling: plain Python numbers only.
        "history": [{key: value.item() if hasattr(value, "item") else value for key, value in row.items()} for row in history],
        "best": float(best),
        "best_model": best_model,
    }


def restore_training_state(
    state: dict, *, stateful: dict[str, Any], generator: torch.Generator
) -> tuple[int, list[dict], float, dict | None]:
    """Load a checkpoint into the loop's objects; returns (finished epochs, history, best score,
    best weights)."""
    for name, item in stateful.items():
        item.load_state_dict(state["stateful"][name])
    restore_rng_states(state["rng"], generator)
    return int(state["epoch"]), list(state["history"]), float(state["best"]), state["best_model"]
