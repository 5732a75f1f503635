"""Classify new images with a trained run's model (``patchlesion predict``).

The images are resized to the training image size and cut into the run's evaluation crops; the
class probabilities come from :func:`patchlesion.engine.training.predict_probabilities`, so they equal
those of ``patchlesion evaluate`` (Multi-Crop: softmax averaged over crops; Ordered-Crop: the
model's own aggregation). Models with patch attention also report each crop's attention weight
(the end block's if present, else the initial block's) and can draw them over the image (Fig. 4).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from patchlesion.data.images import load_image, load_images
from patchlesion.engine.accel import resolve_device
from patchlesion.engine.inference import EVAL_CROPS_PER_BATCH, load_state, predict_probabilities
from patchlesion.engine.settings import TrainSettings
from patchlesion.errors import PatchlesionError
from patchlesion.method.classes import CLASSES
from patchlesion.method.crops import crop_grid
from patchlesion.method.model import PatchLesionModel, build_model
from patchlesion.method.runs import RunSpec
from patchlesion.method.strategies import get_strategy

__all__ = ["ATTENTION_PREFIX", "attention_columns", "attention_weights", "load_model", "predict_images", "write_overlays"]

#: Prefix of the per-crop attention-weight columns (``attention_0`` ... ``attention_<N-1>``, crop order
#: of :func:`patchlesion.method.crops.crop_grid`).
ATTENTION_PREFIX = "attention_"


def attention_columns(frame: pd.DataFrame) -> list[str]:
    """The attention-weight columns of a :func:`predict_images` frame, in crop order (empty without attention)."""
    columns = [c for c in frame.columns if c.startswith(ATTENTION_PREFIX) and c[len(ATTENTION_PREFIX) :].isdigit()]
    return sorted(columns, key=lambda c: int(c[len(ATTENTION_PREFIX) :]))


@torch.no_grad()
def attention_weights(model: PatchLesionModel, crops: torch.Tensor) -> torch.Tensor:
    """Patch-attention weights ``(B, N)`` of crops ``(B, N, 3, s, s)``: the end block's if the model
    has one, else the initial block's (Sec. II-E, Fig. 3)."""
    model.eval()
    _, weights = model(crops, return_attention=True)
    if "end" in weights:
        return weights["end"]
    if "initial" in weights:
        return weights["initial"]
    raise PatchlesionError(f"the model has no patch attention (attention {model.attention!r}), so it has no attention weights.")


def load_model(run_name: str, model_path: str | Path, device: torch.device | str = "cpu") -> tuple[RunSpec, PatchLesionModel]:
    """The run's model with the weights of ``model_path`` (a state dict; loaded with ``weights_only``)."""
    spec = RunSpec.from_name(run_name).check_registries()
    model = build_model(spec, len(CLASSES))
    if not Path(model_path).is_file():
        raise PatchlesionError(f"{model_path}: model file not found.")
    try:
        load_state(model, model_path)
    except PatchlesionError:
        raise
    except (RuntimeError, pickle.UnpicklingError, EOFError, TypeError, ValueError, KeyError, AttributeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PatchlesionError(
            f"{model_path}: these weights do not fit run {spec.name} ({first_line}). "
            "Pass the --run the model was trained with."
        ) from error
    return spec, model.to(device if isinstance(device, torch.device) else resolve_device(device))


@torch.no_grad()
def _attention(model: PatchLesionModel, images: torch.Tensor, spec: RunSpec, crop_size: int, device: torch.device) -> np.ndarray:
    """Attention weights ``(K, N)`` of whole images from the strategy's evaluation crops."""
    strategy = get_strategy(spec.strategy)
    per_batch = max(1, EVAL_CROPS_PER_BATCH // spec.n_crops)
    out = []
    for start in range(0, len(images), per_batch):
        crops = strategy.evaluation_input(images[start : start + per_batch].to(device), spec, crop_size)
        out.append(attention_weights(model, crops).float().cpu())
    return torch.cat(out).numpy()


def predict_images(
    run_name: str,
    model_path: str | Path,
    image_paths: Sequence[str | Path],
    image_size: tuple[int, int] = (600, 450),
    crop_size: int = 224,
    device: str = "cpu",
) -> pd.DataFrame:
    """Class probabilities of images under a trained run's model.

    Returns one row per image: ``image`` (the path as given), ``predicted_class``, one probability
    column per class (:data:`patchlesion.method.classes.CLASSES`, summing to 1) and, for models with
    patch attention, ``attention_0`` ... ``attention_<N-1>``: each evaluation crop's attention
    weight in crop-grid order (``frame.attrs`` holds ``run``, ``image_size``, ``crop_size`` and the
    crops' top-left ``positions``). ``image_size = (W, H)`` and ``crop_size`` must be the training
    values; ``device`` ``auto`` picks CUDA when present.
    """
    if not image_paths:
        raise PatchlesionError("no images to classify.")
    settings = TrainSettings(image_size=tuple(image_size), crop_size=crop_size, device=device)
    torch_device = resolve_device(device)
    spec, model = load_model(run_name, model_path, torch_device)
    images = load_images(image_paths, settings.image_size)
    probabilities = predict_probabilities(model, images, spec, settings, torch_device)  # (K, C)
    frame = pd.DataFrame({"image": [str(p) for p in image_paths]})
    frame["predicted_class"] = [CLASSES[i] for i in probabilities.argmax(axis=1)]
    for i, name in enumerate(CLASSES):
        frame[name] = probabilities[:, i].astype(float)
    frame.attrs.update(run=spec.name, image_size=tuple(settings.image_size), crop_size=crop_size)
    if spec.attention != "none":
        weights = _attention(model, images, spec, crop_size, torch_device)  # (K, N)
        for j in range(weights.shape[1]):
            frame[f"{ATTENTION_PREFIX}{j}"] = weights[:, j].astype(float)
        frame.attrs["positions"] = crop_grid(spec.n_crops, tuple(settings.image_size), crop_size)
    return frame


def _overlay_names(image_paths: Sequence[str]) -> list[str]:
    """``<stem>_attention.png`` per image; repeated stems get ``_2``, ``_3``, ... before the suffix."""
    names, seen = [], {}
    for path in image_paths:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}_attention.png" if seen[stem] == 1 else f"{stem}_{seen[stem]}_attention.png")
    return names


def write_overlays(
    frame: pd.DataFrame, out_dir: str | Path, image_size: tuple[int, int] | None = None, crop_size: int | None = None
) -> list[Path]:
    """One PNG per image, ``<out_dir>/<image stem>_attention.png``: the resized image with each
    crop's border coloured by its attention weight (:func:`patchlesion.results.figures.attention_overlay`).

    ``frame`` is a :func:`predict_images` result; ``image_size`` and ``crop_size`` default to those
    in its ``attrs``. Without attention columns (models without patch attention) nothing is written
    and the list is empty.
    """
    columns = attention_columns(frame)
    if not columns:
        return []
    import matplotlib.pyplot as plt

    from patchlesion.results.figures import attention_overlay, save_figure

    image_size = tuple(image_size or frame.attrs["image_size"])
    crop_size = int(crop_size or frame.attrs["crop_size"])
    positions = crop_grid(len(columns), image_size, crop_size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (_, row) in zip(_overlay_names(list(frame["image"])), frame.iterrows()):
        image = load_image(row["image"], image_size)
        fig, ax = plt.subplots(figsize=(5.0, 5.0 * image_size[1] / image_size[0] + 0.5))
        mappable = attention_overlay(ax, image, positions, crop_size, row[columns].to_numpy(dtype=float))
        fig.colorbar(mappable, ax=ax, fraction=0.035, pad=0.02, label="attention weight")
        predicted = row["predicted_class"]
        ax.set_title(f"{Path(row['image']).name}: {predicted} ({row[predicted]:.2f})", fontsize=9)
        written += save_figure(fig, [out_dir / name])
    return written


def write_figure4(
    index: pd.DataFrame, split: pd.DataFrame, fold: int, run_name: str, model_path: str | Path, images_per_class: int,
    image_size: tuple[int, int], crop_size: int, device: str, out: str | Path,
) -> int:  # fmt: skip
    """Fig. 4: the attention weights of a fold model on the first ``images_per_class`` test images of
    each class (by image id, classes in label order), as PNG ``out`` and a PDF beside it. Returns the
    number of images shown."""
    from patchlesion.data.splits import select
    from patchlesion.results.figures import figure4

    test = index.set_index("image_id").loc[select(split, fold, "test")].reset_index()
    chosen = test.sort_values("image_id").groupby("class_name", sort=False).head(images_per_class)
    chosen = chosen.sort_values(["label", "image_id"])
    frame = predict_images(run_name, model_path, list(chosen["path"]), image_size, crop_size, device)
    weights = frame[attention_columns(frame)].to_numpy()
    images = [load_image(path, image_size) for path in chosen["path"]]
    positions = crop_grid(weights.shape[1], image_size, crop_size)
    figure4(images, positions, crop_size, weights, list(chosen["class_name"]), [str(out), str(Path(out).with_suffix(".pdf"))],
            title=f"Attention weights, {run_name}, fold {fold}", predicted_classes=list(frame["predicted_class"]), class_order=CLASSES)  # fmt: skip
    return len(chosen)
