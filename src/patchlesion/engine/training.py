"""Training and prediction (Sec. II-G; METHOD §6): Adam, step-wise halved learning rate, validation
at epoch 1 and every few epochs, best model chosen by validation MC-sensitivity."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import pandas as pd
import torch

from patchlesion.data.splits import select
from patchlesion.engine.accel import Acceleration, resolve_device
from patchlesion.engine.batches import TrainingInput, image_source
from patchlesion.engine.checkpoint import (
    load_checkpoint,
    remove_checkpoint,
    restore_training_state,
    save_checkpoint,
    settings_hash,
    training_state,
)
from patchlesion.engine.inference import predict_probabilities, save_state, save_weights
from patchlesion.engine.settings import TrainSettings, run_seed
from patchlesion.method.balancing import EpochSampler, make_loss
from patchlesion.method.classes import CLASSES
from patchlesion.method.model import build_model
from patchlesion.method.runs import RunSpec
from patchlesion.method.strategies import get_strategy
from patchlesion.provenance import provenance
from patchlesion.results.metrics import classification_metrics

__all__ = ["train_run"]

log = logging.getLogger("patchlesion")

def _lr_milestones(settings: TrainSettings) -> list[int]:
    # The scheduler is stepped after every epoch, so halving *during* epoch e needs milestone e - 1.
    return [e - 1 for e in settings.lr_halving_epochs]


def train_run(
    spec: RunSpec,
    settings: TrainSettings,
    index: pd.DataFrame,
    split: pd.DataFrame,
    fold: int,
    out_dir: str | Path,
    checkpoint: str | Path | None = None,
    cache: str | Path | None = None,
) -> pd.DataFrame:
    """Train one run on one cross-validation fold; writes model.pt (best validation MC-sensitivity),
    model_last.pt, history.csv and run.json into ``out_dir`` and returns the history. Images come
    from the prepared ``cache`` directory when given (:mod:`patchlesion.data.cache`), else are decoded.

    With ``checkpoint``, the loop's whole state is saved there after every epoch, a rerun resumes
    from it (bit-identical to an uninterrupted run on the same device and thread count), and it is
    deleted once the outputs are written (see :mod:`patchlesion.engine.checkpoint`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(settings.device)
    seed = run_seed(settings.seed, fold)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    strategy = get_strategy(spec.strategy)

    by_id = index.set_index("image_id")
    labels = by_id["label"]
    train_ids, val_ids = select(split, fold, "train"), select(split, fold, "val")
    log.info("run %s fold %d: %d training, %d validation images, device %s", spec.name, fold, len(train_ids), len(val_ids), device)
    started = time.perf_counter()
    train_images = image_source(index, train_ids, settings.image_size, cache)
    val_images = image_source(index, val_ids, settings.image_size, cache)
    train_labels = torch.tensor(labels.loc[train_ids].to_numpy(), dtype=torch.long)
    val_labels = labels.loc[val_ids].to_numpy()
    log.info("%s %d images in %.1f s", "mapped" if cache else "decoded", len(train_ids) + len(val_ids), time.perf_counter() - started)

    model = build_model(spec, len(CLASSES), pretrained=settings.pretrained).to(device)
    accel = Acceleration.from_settings(settings, device)
    forward, scaler = accel.prepare(model), accel.grad_scaler()
    batches = TrainingInput(train_images, strategy, spec, settings.crop_size, device, accel.channels_last)
    log.info("device settings: %s", accel.describe())
    sampler = EpochSampler(spec.balancing, train_labels.numpy(), generator)
    criterion = make_loss(
        spec.balancing, train_labels.numpy(), len(CLASSES), spec.k, device,
        train_dx_types=by_id.loc[train_ids, "dx_type"].to_numpy(), diagnosis_scope=spec.diagnosis_scope,
    )  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=_lr_milestones(settings), gamma=0.5)
    validate_at = set(settings.validation_epochs())

    history, best, best_model, finished = [], -math.inf, None, 0
    # Everything with a state_dict() whose state carries over between epochs (add e.g. a GradScaler here).
    stateful = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "sampler": sampler}
    if scaler is not None:  # fp16 loss scaling (CUDA without bf16): its scale carries over too
        stateful["scaler"] = scaler
    run_hash = settings_hash(
        run=spec.to_dict(), settings=settings.to_dict(), fold=fold, device=device.type, train_ids=train_ids,
        val_ids=val_ids, train_labels=train_labels.tolist(), stateful=sorted(stateful),
    )  # fmt: skip
    state = load_checkpoint(checkpoint, run_hash) if checkpoint is not None else None
    if state is not None:
        finished, history, best, best_model = restore_training_state(state, stateful=stateful, generator=generator)
        del state
        if best_model is not None:  # Snakemake removed the outputs of the interrupted attempt
            save_weights(best_model, out_dir / "model.pt")
        log.info("resuming from checkpoint %s: epochs 1-%d done, continuing at epoch %d", checkpoint, finished, finished + 1)
    for epoch in range(finished + 1, settings.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        learning_rate = optimizer.param_groups[0]["lr"]
        order = sampler.epoch_order()  # positions into the training list (Sec. II-F sampling)
        loss_sum, seen = 0.0, 0
        # drop_last=False, as the authors' loader; crops (B, N, 3, s, s) on the device
        for idx, crops in batches.iterate(order, settings.batch_size, generator):
            target = train_labels[idx].to(device, non_blocking=True)
            with accel.autocast():
                loss = criterion(forward(crops), target, idx.to(device))
            optimizer.zero_grad(set_to_none=True)
            accel.backward_step(loss, optimizer, scaler)
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
        scheduler.step()
        row = {"epoch": epoch, "learning_rate": learning_rate, "train_loss": loss_sum / seen}
        message = f"epoch {epoch}/{settings.epochs} lr {learning_rate:.3g} loss {row['train_loss']:.4f}"
        if epoch in validate_at:
            probabilities = predict_probabilities(model, val_images, spec, settings, device)
            scores = classification_metrics(val_labels, probabilities.argmax(1), probabilities)
            for key in ("mc_sensitivity", "mc_specificity", "f1", "accuracy"):
                row[f"val_{key}"] = scores[key]
            if scores["mc_sensitivity"] > best:  # first occurrence of the best value is kept
                best = scores["mc_sensitivity"]
                row["best"] = True
                best_model = {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}
                save_weights(best_model, out_dir / "model.pt")  # the copy the checkpoint keeps, too
            message += f" val mc_sensitivity {scores['mc_sensitivity']:.3f} (best {best:.3f})"
        row["seconds"] = time.perf_counter() - epoch_start
        history.append(row)
        log.info("%s %.1fs", message, row["seconds"])
        if checkpoint is not None:
            save_checkpoint(checkpoint, training_state(
                settings_hash=run_hash, epoch=epoch, stateful=stateful, generator=generator, history=history, best=best, best_model=best_model,
            ))  # fmt: skip
            log.info("checkpoint after epoch %d written to %s", epoch, checkpoint)
    save_state(model, out_dir / "model_last.pt")
    epoch_seconds = [row["seconds"] for row in history]
    history = pd.DataFrame(history)
    history["best"] = history.get("best", pd.Series(dtype=bool)).fillna(False).astype(bool)
    history.to_csv(out_dir / "history.csv", index=False)
    (out_dir / "run.json").write_text(
        json.dumps(
            {"run": spec.name, "fold": fold, "spec": spec.to_dict(), "settings": settings.to_dict(),
             "seed": seed, "settings_hash": run_hash, "device": str(device), "acceleration": accel.describe(),
             "torch": torch.__version__, "wall_seconds": time.perf_counter() - started, "epoch_seconds": epoch_seconds,
             "resumed_from_epoch": finished + 1 if finished else None, **provenance(device)},
            indent=2,
        )
        + "\n"
    )
    if checkpoint is not None:  # every output is written: the state is no longer needed
        remove_checkpoint(checkpoint)
    return history


