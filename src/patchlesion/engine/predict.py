"""Classify new images with a trained run's model (``patchlesion predict``).

The run, the training image size and the crop size are read from the run.json that ``patchlesion
train`` wrote beside the model file (or given). The images are resized to the training image size
and cut into the run's evaluation crops; the class probabilities come from
:func:`patchlesion.engine.training.predict_probabilities`, so they equal those of ``patchlesion
evaluate`` (Multi-Crop: softmax averaged over crops; Ordered-Crop: the model's own aggregation).
Models with patch attention also report each crop's attention weight (the end block's if present,
else the initial block's) and can draw them over the image (Fig. 4).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from patchlesion.data.images import load_image, load_images
from patchlesion.engine.accel import resolve_device
from patchlesion.engine.inference import (
    EVAL_CROPS_PER_BATCH,
    fit_state,
    model_file,
    predict_probabilities,
    read_state_dict,
    trained_dataset,
)
from patchlesion.engine.settings import TrainSettings
from patchlesion.errors import PatchlesionError
from patchlesion.method.crops import crop_grid
from patchlesion.method.model import PatchLesionModel, build_model
from patchlesion.method.runs import RunSpec
from patchlesion.method.strategies import get_strategy

__all__ = [
    "ATTENTION_PREFIX", "RUN_RECORD", "UPSCALE_WARNING", "TrainingGeometry", "attention_columns", "attention_weights", "check_image_sizes",
    "predict_images", "training_geometry", "write_overlays",
]  # fmt: skip

log = logging.getLogger("patchlesion")

#: Prefix of the per-crop attention-weight columns (``attention_0`` ... ``attention_<N-1>``, crop order
#: of :func:`patchlesion.method.crops.crop_grid`).
ATTENTION_PREFIX = "attention_"
#: The training job's record beside its model files (:func:`patchlesion.engine.training.train_run`).
RUN_RECORD = "run.json"
#: An image smaller than the training image size by more than this factor in width or height is
#: upscaled that much before the model sees it: :func:`check_image_sizes` warns (docs/running.md §7).
UPSCALE_WARNING = 2.0


@dataclass(frozen=True)
class TrainingGeometry:
    """What a model needs to be used as it was trained: its run, the training image and crop size,
    and how images were brought to that size (``resize``, :data:`patchlesion.data.RESIZES`)."""

    run: str
    image_size: tuple[int, int]
    crop_size: int
    resize: str = "stretch"


_REPAIR = "copy it again from the training folder, or remove it and pass --run, --image-size and --crop-size."


def _read_run_record(path: Path) -> TrainingGeometry:
    try:
        record = json.loads(path.read_text())
        settings = record["settings"]
        size = (int(settings["image_size"][0]), int(settings["image_size"][1]))
        # a run.json written before the choice existed: stretched, as every run then
        return TrainingGeometry(str(record["run"]), size, int(settings["crop_size"]), str(settings.get("resize", "stretch")))
    except (OSError, json.JSONDecodeError) as error:
        raise PatchlesionError(f"{path}: cannot read the training record ({error}); {_REPAIR}") from error
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise PatchlesionError(
            f"{path}: not a run.json of `patchlesion train` (it needs run, settings.image_size and settings.crop_size; "
            f"{type(error).__name__}: {error}); {_REPAIR}"
        ) from error


def training_geometry(
    model_path: str | Path, run: str | None = None, image_size: tuple[int, int] | None = None, crop_size: int | None = None,
    resize: str | None = None,
) -> TrainingGeometry:  # fmt: skip
    """The run, image size, crop size and resize a model was trained with: those in the run.json
    beside ``model_path`` (written by ``patchlesion train``), each overridden by a value given here
    (with a warning where it disagrees). Without run.json the first three must be given (resize is
    then ``stretch`` unless given)."""
    given = {"run": run, "image_size": tuple(image_size) if image_size is not None else None, "crop_size": crop_size, "resize": resize}
    record_path = model_file(model_path).with_name(RUN_RECORD)
    if not record_path.is_file():
        missing = ["--" + name.replace("_", "-") for name, value in given.items() if value is None and name != "resize"]
        if missing:
            options = ", ".join(missing[:-1]) + (" and " if len(missing) > 1 else "") + missing[-1]
            raise PatchlesionError(
                f"{model_path}: no {RUN_RECORD} beside it tells how the model was trained; pass {options} (the training values), "
                f"or keep the model in its training folder with its {RUN_RECORD}."
            )
        return TrainingGeometry(**{name: value for name, value in given.items() if value is not None})
    recorded = _read_run_record(record_path)
    for name, value in given.items():
        if value is not None and value != getattr(recorded, name):
            log.warning("%s %s differs from %s in %s (the training value): using %s as asked; the predictions may be wrong",
                        name, _shown(value), _shown(getattr(recorded, name)), record_path, _shown(value))  # fmt: skip
    return TrainingGeometry(**{name: getattr(recorded, name) if value is None else value for name, value in given.items()})


def _shown(value) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def check_image_sizes(image_paths: Sequence[str | Path], geometry: TrainingGeometry) -> None:
    """Refuse an image smaller than one crop in width or height (the model would see only upscaled
    blur); warn about one smaller than the training image size by more than :data:`UPSCALE_WARNING`
    in width or height. Unreadable files are left to the decoder, which names them."""
    width, height = geometry.image_size
    for path in image_paths:
        try:
            with Image.open(path) as image:
                w, h = image.size
        except FileNotFoundError:
            raise PatchlesionError(f"{path}: image not found.") from None
        except (OSError, ValueError):  # unreadable: the decoder names the file and the fault
            continue
        if min(w, h) < geometry.crop_size:
            raise PatchlesionError(
                f"{path}: {w}x{h} px is smaller than one {geometry.crop_size}x{geometry.crop_size} px crop of run {geometry.run} "
                f"(images resized to {width}x{height} px); pass the full-resolution image."
            )
        if w * UPSCALE_WARNING < width or h * UPSCALE_WARNING < height:
            log.warning("%s: %dx%d px is upscaled %.1f-fold to the training size %dx%d px; the prediction may be unreliable",
                        path, w, h, max(width / w, height / h), width, height)  # fmt: skip


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
    run_name: str | None,
    model_path: str | Path,
    image_paths: Sequence[str | Path],
    image_size: tuple[int, int] | None = None,
    crop_size: int | None = None,
    device: str = "cpu",
    resize: str | None = None,
) -> pd.DataFrame:
    """Class probabilities of images under a trained run's model.

    Returns one row per image: ``image`` (the path as given), ``predicted_class``, one probability
    column per class (the classes of the model's training, from its run.json, HAM10000's without one;
    summing to 1) and, for models with
    patch attention, ``attention_0`` ... ``attention_<N-1>``: each evaluation crop's attention
    weight in crop-grid order (``frame.attrs`` holds ``run``, ``image_size``, ``crop_size`` and the
    crops' top-left ``positions``, and ``resize``). The run name, ``image_size = (W, H)``, ``crop_size``
    and ``resize`` are the training values, by default those in the run.json beside the model
    (:func:`training_geometry`);
    images far smaller than the training size are refused or warned about (:func:`check_image_sizes`).
    ``device`` ``auto`` picks CUDA when present.
    """
    if not image_paths:
        raise PatchlesionError("no images to classify.")
    state = read_state_dict(model_path)  # a file that is no model is named before anything else
    geometry = training_geometry(model_path, run_name, image_size, crop_size, resize)
    settings = TrainSettings(image_size=geometry.image_size, crop_size=geometry.crop_size, device=device, resize=geometry.resize)
    torch_device = resolve_device(device)
    spec = RunSpec.from_name(geometry.run).check_registries()
    classes = trained_dataset(model_file(model_path)).classes.names
    model = fit_state(build_model(spec, len(classes)), state, model_path, spec.name).to(torch_device)
    check_image_sizes(image_paths, geometry)
    images = load_images(image_paths, settings.image_size, settings.resize)
    probabilities = predict_probabilities(model, images, spec, settings, torch_device)  # (K, C)
    frame = pd.DataFrame({"image": [str(p) for p in image_paths]})
    frame["predicted_class"] = [classes[i] for i in probabilities.argmax(axis=1)]
    for i, name in enumerate(classes):
        frame[name] = probabilities[:, i].astype(float)
    frame.attrs.update(run=spec.name, image_size=tuple(settings.image_size), crop_size=settings.crop_size, resize=settings.resize)
    if spec.attention != "none":
        weights = _attention(model, images, spec, settings.crop_size, torch_device)  # (K, N)
        for j in range(weights.shape[1]):
            frame[f"{ATTENTION_PREFIX}{j}"] = weights[:, j].astype(float)
        frame.attrs["positions"] = crop_grid(spec.n_crops, tuple(settings.image_size), settings.crop_size)
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
    resize = frame.attrs.get("resize", "stretch")  # the image as the model saw it
    positions = crop_grid(len(columns), image_size, crop_size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (_, row) in zip(_overlay_names(list(frame["image"])), frame.iterrows()):
        image = load_image(row["image"], image_size, resize)
        fig, ax = plt.subplots(figsize=(5.0, 5.0 * image_size[1] / image_size[0] + 0.5))
        mappable = attention_overlay(ax, image, positions, crop_size, row[columns].to_numpy(dtype=float))
        fig.colorbar(mappable, ax=ax, fraction=0.035, pad=0.02, label="attention weight")
        predicted = row["predicted_class"]
        ax.set_title(f"{Path(row['image']).name}: {predicted} ({row[predicted]:.2f})", fontsize=9)
        written += save_figure(fig, [out_dir / name])
    return written


def write_figure4(
    index: pd.DataFrame, split: pd.DataFrame, fold: int, run_name: str, model_path: str | Path, images_per_class: int,
    image_size: tuple[int, int], crop_size: int, device: str, out: str | Path, resize: str = "stretch",
) -> int:  # fmt: skip
    """Fig. 4: the attention weights of a fold model on the first ``images_per_class`` test images of
    each class (by image id, classes in label order), as PNG ``out`` and a PDF beside it. Returns the
    number of images shown."""
    from patchlesion.data.splits import select
    from patchlesion.results.figures import figure4

    if RunSpec.from_name(run_name).attention == "none":
        raise PatchlesionError(f"run {run_name} has no patch attention, so Fig. 4 has nothing to show; pass a run with att_initial, att_end or att_dual.")
    dataset = trained_dataset(model_file(model_path))  # its classes and label column
    test = index.set_index("image_id").loc[select(split, fold, "test")].reset_index()
    test = test.assign(_label=dataset.labels(test), _class=test[dataset.label_column].astype(str))
    chosen = test.sort_values("image_id").groupby("_class", sort=False).head(images_per_class)
    chosen = chosen.sort_values(["_label", "image_id"])
    frame = predict_images(run_name, model_path, list(chosen["path"]), image_size, crop_size, device, resize)
    weights = frame[attention_columns(frame)].to_numpy()
    images = [load_image(path, image_size, resize) for path in chosen["path"]]
    positions = crop_grid(weights.shape[1], image_size, crop_size)
    figure4(images, positions, crop_size, weights, list(chosen["_class"]), [str(out), str(Path(out).with_suffix(".pdf"))],
            title=f"Attention weights, {run_name}, fold {fold}", predicted_classes=list(frame["predicted_class"]),
            class_order=dataset.classes.names)  # fmt: skip
    return len(chosen)
