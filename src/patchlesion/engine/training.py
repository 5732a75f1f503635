"""The training loop (Sec. II-G; docs/method.md §6): Adam, step-wise halved learning rate, validation at
epoch 1 and every few epochs, best model chosen by validation MC-sensitivity.

:func:`train_run` reads as its steps: set up the fold's data and model (:class:`_Fold`), resume from a
checkpoint, train one epoch at a time (:func:`_train_epoch`), validate and keep the best weights
(:func:`_validate`), and write the outputs (:func:`_write_outputs`)."""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from patchlesion.data.description import HAM10000, DatasetDescription
from patchlesion.data.splits import select
from patchlesion.engine.accel import Acceleration, resolve_device
from patchlesion.engine.batches import TrainingInput, image_source
from patchlesion.engine.checkpoint import (
    check_checkpoint_path,
    load_checkpoint,
    remove_checkpoint,
    restore_training_state,
    save_checkpoint,
    settings_hash,
    training_state,
)
from patchlesion.engine.inference import predict_probabilities, save_state, save_weights
from patchlesion.engine.optim import Adam
from patchlesion.engine.settings import TrainSettings, run_seed
from patchlesion.errors import PatchlesionError
from patchlesion.method.balancing import EpochSampler, make_loss
from patchlesion.method.model import build_model
from patchlesion.method.runs import RunSpec
from patchlesion.method.strategies import get_strategy
from patchlesion.provenance import provenance
from patchlesion.results.metrics import classification_metrics

__all__ = ["train_run", "train_step"]

log = logging.getLogger("patchlesion")

def _lr_milestones(settings: TrainSettings) -> list[int]:
    # The scheduler is stepped after every epoch, so halving *during* epoch e needs milestone e - 1.
    return [e - 1 for e in settings.lr_halving_epochs]


@dataclass
class _Fold:
    """Everything one fold's training works with, built once by :func:`_set_up`."""

    spec: RunSpec
    settings: TrainSettings
    dataset: DatasetDescription
    fold: int
    out_dir: Path
    device: torch.device
    seed: int
    generator: torch.Generator
    train_ids: list[str]
    val_labels: object  # numpy array of the validation labels
    train_labels: torch.Tensor
    val_images: object
    model: torch.nn.Module
    accel: Acceleration
    forward: object
    scaler: object
    batches: TrainingInput
    batch_images: int
    sampler: EpochSampler
    criterion: object
    optimizer: torch.optim.Optimizer
    scheduler: object
    stateful: dict
    run_hash: str
    started: float
    history: list = field(default_factory=list)
    best: float = -math.inf
    best_model: dict | None = None
    finished: int = 0


def train_run(
    spec: RunSpec,
    settings: TrainSettings,
    index: pd.DataFrame,
    split: pd.DataFrame,
    fold: int,
    out_dir: str | Path,
    checkpoint: str | Path | None = None,
    cache: str | Path | None = None,
    dataset: DatasetDescription = HAM10000,
) -> pd.DataFrame:
    """Train one run on one cross-validation fold; writes model.pt (best validation MC-sensitivity),
    model_last.pt, history.csv and run.json into ``out_dir`` and returns the history. Images come
    from the prepared ``cache`` directory when given (:mod:`patchlesion.data.cache`), else are decoded.
    ``dataset`` gives the classes (one model output each, in label order; run.json records them for
    evaluation and ``predict``) and the index columns of label and diagnosis type.

    With ``checkpoint``, the loop's whole state is saved there after every epoch, a rerun resumes
    from it (bit-identical to an uninterrupted run on the same device and thread count), and it is
    deleted once the outputs are written (see :mod:`patchlesion.engine.checkpoint`)."""
    if checkpoint is not None:
        check_checkpoint_path(checkpoint)  # before anything is written
    run = _set_up(spec, settings, index, split, fold, Path(out_dir), cache, dataset)
    if checkpoint is not None:
        _resume(run, checkpoint)
    validate_at = set(settings.validation_epochs())
    for epoch in range(run.finished + 1, settings.epochs + 1):
        epoch_start = time.perf_counter()
        row = _train_epoch(run, epoch)
        message = f"epoch {epoch}/{settings.epochs} lr {row['learning_rate']:.3g} loss {row['train_loss']:.4f}"
        if epoch in validate_at:
            message += _validate(run, row)
        row["seconds"] = time.perf_counter() - epoch_start
        run.history.append(row)
        log.info("%s %.1fs", message, row["seconds"])
        if checkpoint is not None:
            save_checkpoint(checkpoint, training_state(
                settings_hash=run.run_hash, epoch=epoch, stateful=run.stateful, generator=run.generator,
                history=run.history, best=run.best, best_model=run.best_model,
            ))  # fmt: skip
            log.info("checkpoint after epoch %d written to %s", epoch, checkpoint)
    history = _write_outputs(run)
    if checkpoint is not None:  # every output is written: the state is no longer needed
        remove_checkpoint(checkpoint)
    return history


def _set_up(
    spec: RunSpec, settings: TrainSettings, index: pd.DataFrame, split: pd.DataFrame, fold: int, out_dir: Path,
    cache: str | Path | None, dataset: DatasetDescription,
) -> _Fold:  # fmt: skip
    """The fold's images and labels, a freshly seeded model, its optimizer, schedule, sampler and loss."""
    dataset.check_balancing(spec.balancing)  # before anything is written
    device = resolve_device(settings.device)  # a bad device name stops the job before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    seed = run_seed(settings.seed, fold)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    strategy = get_strategy(spec.strategy)

    by_id = index.set_index("image_id")
    labels = pd.Series(dataset.labels(index), index=by_id.index)
    train_ids, val_ids = select(split, fold, "train"), select(split, fold, "val")
    log.info("run %s fold %d: %d training, %d validation images, device %s", spec.name, fold, len(train_ids), len(val_ids), device)
    started = time.perf_counter()
    train_images = image_source(index, train_ids, settings.image_size, cache, settings.resize)
    val_images = image_source(index, val_ids, settings.image_size, cache, settings.resize)
    train_labels = torch.tensor(labels.loc[train_ids].to_numpy(), dtype=torch.long)
    log.info("%s %d images in %.1f s", "mapped" if cache else "decoded", len(train_ids) + len(val_ids), time.perf_counter() - started)

    n_classes = len(dataset.classes)
    model = build_model(spec, n_classes, pretrained=settings.pretrained).to(device)
    accel = Acceleration.from_settings(settings, device)
    forward, scaler = accel.prepare(model), accel.grad_scaler()
    batches = TrainingInput(train_images, strategy, spec, settings.crop_size, device, accel.channels_last)
    log.info("device settings: %s", accel.describe())
    sampler = EpochSampler(spec.balancing, train_labels.numpy(), generator)
    check_one_image_batch(spec, settings, model, len(sampler), fold)
    criterion = make_loss(
        spec.balancing, train_labels.numpy(), n_classes, spec.k, device, train_dx_types=_diagnosis_types(dataset, index, train_ids),
        diagnosis_scope=spec.diagnosis_scope, classes=dataset.classes,
    )  # fmt: skip
    optimizer = Adam(model.parameters(), lr=settings.learning_rate)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=_lr_milestones(settings), gamma=0.5)
    # Everything with a state_dict() whose state carries over between epochs (add e.g. a GradScaler here).
    stateful = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "sampler": sampler}
    if scaler is not None:  # fp16 loss scaling (CUDA without bf16): its scale carries over too
        stateful["scaler"] = scaler
    run_hash = settings_hash(
        run=spec.to_dict(), settings=settings.to_dict(), fold=fold, device=device.type, train_ids=train_ids,
        val_ids=val_ids, train_labels=train_labels.tolist(), stateful=sorted(stateful),
    )  # fmt: skip
    return _Fold(
        spec=spec, settings=settings, dataset=dataset, fold=fold, out_dir=out_dir, device=device, seed=seed, generator=generator,
        train_ids=train_ids, val_labels=labels.loc[val_ids].to_numpy(), train_labels=train_labels, val_images=val_images,
        model=model, accel=accel, forward=forward, scaler=scaler, batches=batches,
        batch_images=settings.images_per_batch(strategy.plain), sampler=sampler, criterion=criterion,
        optimizer=optimizer, scheduler=scheduler, stateful=stateful, run_hash=run_hash, started=started,
    )  # fmt: skip


def check_one_image_batch(spec: RunSpec, settings: TrainSettings, model: torch.nn.Module, n_positions: int, fold: int) -> None:
    """Refuse, before the first step, an epoch whose last batch would hold one crop that the backbone
    turns into a 1 x 1 feature map: batch norm cannot train on one value per channel, and PyTorch
    would fail only at that batch, an epoch into the run. Only the plain strategies (one crop per
    image) can get there, when ``n_positions`` (the sampler's epoch) leaves one image for the last
    batch (or every batch holds one). The check runs the backbone once on a copy, in training mode,
    with the random state kept, so the run itself is unchanged."""
    batch = settings.images_per_batch(plain=True)
    if not get_strategy(spec.strategy).plain or (n_positions % batch or batch) != 1:  # the last batch's images
        return
    with torch.random.fork_rng(devices=[]):
        probe = copy.deepcopy(model.backbone).to("cpu", torch.float32).train()
        try:
            with torch.no_grad():
                probe(torch.zeros(1, 3, settings.crop_size, settings.crop_size))
        except ValueError as error:
            if "more than 1 value per channel" not in str(error):
                raise
            other = next(size for size in range(batch + 1, n_positions + 2) if n_positions % size != 1)
            raise PatchlesionError(
                f"run {spec.name}, fold {fold}: an epoch trains on {n_positions} images in batches of {batch} (plain_batch_size), so its "
                f"last batch holds one image, and backbone {spec.backbone} turns one {settings.crop_size}-pixel crop into a 1 x 1 "
                f"feature map: batch normalisation cannot train on one value per channel. Set plain_batch_size so that the last batch "
                f"holds more than one image (e.g. {other}), or a larger crop_size."
            ) from None


def _diagnosis_types(dataset: DatasetDescription, index: pd.DataFrame, image_ids: list[str]):
    """The diagnosis types of ``image_ids`` in that order, or None when the dataset has none."""
    types = dataset.diagnosis_types(index)
    return None if types is None else pd.Series(types, index=index["image_id"]).loc[image_ids].to_numpy()


def _resume(run: _Fold, checkpoint: str | Path) -> None:
    """Continue from the checkpoint of an interrupted attempt with the same settings, if there is one."""
    state = load_checkpoint(checkpoint, run.run_hash)
    if state is None:
        return
    run.finished, run.history, run.best, run.best_model = restore_training_state(state, stateful=run.stateful, generator=run.generator)
    del state
    if run.best_model is not None:  # Snakemake removed the outputs of the interrupted attempt
        save_weights(run.best_model, run.out_dir / "model.pt")
    log.info("resuming from checkpoint %s: epochs 1-%d done, continuing at epoch %d", checkpoint, run.finished, run.finished + 1)


def _train_epoch(run: _Fold, epoch: int) -> dict:
    """One pass over the training list in the sampler's order; the history row of the epoch."""
    run.model.train()
    learning_rate = run.optimizer.param_groups[0]["lr"]
    order = run.sampler.epoch_order()  # positions into the training list (Sec. II-F sampling)
    loss_sum, seen = 0.0, 0
    # drop_last=False, as the authors' loader; crops (B, N, 3, s, s) on the device
    for idx, crops in run.batches.iterate(order, run.batch_images, run.generator):
        loss = train_step(run, idx, crops)
        loss_sum += loss.item() * len(idx)
        seen += len(idx)
    run.scheduler.step()
    return {"epoch": epoch, "learning_rate": learning_rate, "train_loss": loss_sum / seen}


def train_step(run, idx: torch.Tensor, crops: torch.Tensor) -> torch.Tensor:
    """One optimizer step on one batch (Sec. II-G): forward pass and loss under the run's autocast,
    backward pass, Adam step; returns the loss (on the device, not synchronised). ``run`` is a
    :class:`_Fold` or anything with its ``train_labels``, ``device``, ``accel``, ``forward``,
    ``criterion``, ``optimizer`` and ``scaler`` (the cost plan times steps through it,
    :mod:`patchlesion.engine.steptimes`)."""
    target = run.train_labels[idx].to(run.device, non_blocking=True)
    with run.accel.autocast():
        loss = run.criterion(run.forward(crops), target, idx.to(run.device))
    run.optimizer.zero_grad(set_to_none=True)
    run.accel.backward_step(loss, run.optimizer, run.scaler)
    return loss


def _validate(run: _Fold, row: dict) -> str:
    """Validation scores into ``row``; a new best score (its first occurrence) keeps the weights as
    model.pt. Returns the log message's validation part."""
    probabilities = predict_probabilities(run.model, run.val_images, run.spec, run.settings, run.device)
    scores = classification_metrics(run.val_labels, probabilities.argmax(1), probabilities, class_names=run.dataset.classes.names)
    for key in ("mc_sensitivity", "mc_specificity", "f1", "accuracy"):
        row[f"val_{key}"] = scores[key]
    if scores["mc_sensitivity"] > run.best:  # first occurrence of the best value is kept
        run.best = scores["mc_sensitivity"]
        row["best"] = True
        run.best_model = {key: value.detach().to("cpu", copy=True) for key, value in run.model.state_dict().items()}
        save_weights(run.best_model, run.out_dir / "model.pt")  # the copy the checkpoint keeps, too
    return f" val mc_sensitivity {scores['mc_sensitivity']:.3f} (best {run.best:.3f})"


def _write_outputs(run: _Fold) -> pd.DataFrame:
    """model_last.pt, history.csv and run.json (settings, seed, device, timings, provenance)."""
    save_state(run.model, run.out_dir / "model_last.pt")
    epoch_seconds = [row["seconds"] for row in run.history]
    history = pd.DataFrame(run.history)
    history["best"] = history.get("best", pd.Series(dtype=bool)).fillna(False).astype(bool)
    history.to_csv(run.out_dir / "history.csv", index=False)
    record = {
        "run": run.spec.name, "fold": run.fold, "spec": run.spec.to_dict(), "settings": run.settings.to_dict(), "dataset": run.dataset.to_dict(),
        "seed": run.seed, "settings_hash": run.run_hash, "device": str(run.device), "acceleration": run.accel.describe(),
        "torch": torch.__version__, "wall_seconds": time.perf_counter() - run.started, "epoch_seconds": epoch_seconds,
        "resumed_from_epoch": run.finished + 1 if run.finished else None, **provenance(run.device),
    }  # fmt: skip
    (run.out_dir / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    return history
