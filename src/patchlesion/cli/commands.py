"""Command handlers of ``patchlesion``: each reads its files, delegates to the package and logs what
it wrote; the science lives in :mod:`patchlesion.method`, :mod:`patchlesion.data`,
:mod:`patchlesion.engine` and :mod:`patchlesion.results`.

Each handler imports what it uses (pandas, torch, the package's modules) inside its body, so that
``patchlesion --help`` and a command import only their own dependencies (docs/performance.md §7)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import typing
from pathlib import Path

from patchlesion.engine.settings import TrainSettings
from patchlesion.errors import PatchlesionError, SplitError

if typing.TYPE_CHECKING:
    import pandas as pd

    from patchlesion.data.description import DatasetDescription

log = logging.getLogger("patchlesion")


def _read_csv(path: str, what: str) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_csv(path, dtype={"image_id": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise PatchlesionError(f"{path}: cannot read the {what} ({error}).") from error


def _read_fold_inputs(args: argparse.Namespace, dataset: DatasetDescription | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The image index and split of a fold's job; the split checked against the index (naming its
    file), reading the index's columns as ``dataset`` (default: the model's run.json, else HAM10000's)."""
    from patchlesion.data.splits import check_split

    if dataset is None and getattr(args, "model", None):
        from patchlesion.engine.inference import trained_dataset

        dataset = trained_dataset(args.model if isinstance(args.model, str) else args.model[0])
    index, split = _read_csv(args.index, "image index"), _read_csv(args.split, "split")
    try:
        check_split(index, split, once=False, description=dataset)  # derm7pt's test images are its validation part too
    except SplitError as error:
        raise SplitError(f"{args.split}: {error} (index {args.index}); make the split with `patchlesion split`.") from error
    return index, split


def lease_gpu(device: str | None) -> None:
    """A GPU per job: on a multi-GPU workstation, lease a free device (one of its J job slots)
    before CUDA starts (:mod:`patchlesion.engine.gpulease`); ``device`` ``auto`` or ``cuda`` asks for one."""
    if device in ("auto", "cuda"):
        from patchlesion.engine.gpulease import lease_device

        lease_device()


def use_weight_cache(torch_home: str | None) -> None:
    """Point ``TORCH_HOME`` at the ImageNet weight cache (default: $TORCH_HOME or resources/torch)."""
    if torch_home:
        import os

        os.environ["TORCH_HOME"] = torch_home


def limit_threads(threads: int | None) -> None:
    """CPU threads of PyTorch (the job's ``threads``); None: PyTorch's default."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def start_job(args: argparse.Namespace) -> None:
    """Before a command runs a model: keep freed memory for reuse (:mod:`patchlesion.engine.memory`),
    lease a GPU, point at the weight cache, limit the threads (each where the command has the option)."""
    from patchlesion.engine.memory import keep_freed_memory

    keep_freed_memory()
    lease_gpu(getattr(args, "device", None))
    use_weight_cache(getattr(args, "torch_home", None))
    limit_threads(getattr(args, "threads", None))


def cmd_synthesize(args: argparse.Namespace) -> None:
    from patchlesion.data.synthetic import make_synthetic_ham10000

    meta = make_synthetic_ham10000(args.out, n_images=args.n_images, image_size=tuple(args.image_size), seed=args.seed)
    log.info("wrote %d synthetic images of %d lesions to %s", len(meta), meta["lesion_id"].nunique(), args.out)
    log.info("images per class: %s", meta["dx"].value_counts().to_dict())


def cmd_index(args: argparse.Namespace) -> None:
    from patchlesion.data.ham10000 import read_dataset

    index = read_dataset(args.data_dir)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    index.to_csv(args.out, index=False)
    sizes = index.groupby(["width", "height"]).size().to_dict()
    log.info("indexed %d images of %d lesions from %s; sizes %s", len(index), index["lesion_id"].nunique(), args.data_dir, sizes)


def cmd_index_folder(args: argparse.Namespace) -> None:
    from patchlesion.data.folder import FolderDataset, index_folder
    from patchlesion.method.classes import ClassSet

    try:
        classes = ClassSet(tuple(args.classes), tuple(args.benign))
    except PatchlesionError as error:
        raise PatchlesionError(f"dataset {args.name} (--classes/--benign): {error}") from None
    dataset = FolderDataset(args.name, Path(args.dir), classes, Path(args.labels), args.image_column, args.label_column,
                            args.group_column, args.diagnosis_type_column)  # fmt: skip
    index = index_folder(dataset)  # every check before anything is written
    for path in (args.out, args.description):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    index.to_csv(f"{args.out}.partial", index=False)
    Path(f"{args.description}.partial").write_text(json.dumps(dataset.description().to_dict(), indent=2) + "\n")
    Path(f"{args.description}.partial").replace(args.description)
    Path(f"{args.out}.partial").replace(args.out)
    counts = ", ".join(f"{name} {n}" for name, n in index["class_name"].value_counts().reindex(classes.names).items())
    log.info("indexed %d images of dataset %s from %s: %s", len(index), args.name, args.dir, counts)


def cmd_prepare(args: argparse.Namespace) -> None:
    import math
    import time

    from patchlesion.data.cache import prepare_cache

    index = _read_csv(args.index, "image index")
    started = time.perf_counter()
    manifest = prepare_cache(index, tuple(args.image_size), args.out, threads=args.threads, resize=args.resize)
    size_gb = math.prod(manifest["shape"]) / 1e9
    log.info("decoded %d images into %s (%s, %.2f GB) in %.1f s; source sha256 %s", len(index), args.out,
             "x".join(map(str, manifest["shape"])), size_gb, time.perf_counter() - started, manifest["source_sha256"])  # fmt: skip


def cmd_split(args: argparse.Namespace) -> None:
    from patchlesion.data.description import load_description
    from patchlesion.data.splits import check_split, published_split, split_summary, stratified_split

    index = _read_csv(args.index, "image index")
    description = load_description(args.dataset) if args.dataset else None
    if args.method == "published":
        split = published_split(index)
    else:
        split = stratified_split(index, seed=args.seed, description=description)
    check_split(index, split, description=description)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    split.to_csv(args.out, index=False)
    summary = split_summary(index, split, description)
    log.info("%s split written to %s:\n%s", args.method, args.out, summary.to_string())
    for name in summary.columns[:-2]:  # the classes (then images, lesions)
        missing = [str(part) for part in summary.index[:-1] if summary.at[part, name] == 0]
        if missing and summary.at["total", name] > 0:
            log.warning("class %s has no images in part(s) %s: a test part without it leaves it out of MC-sensitivity, "
                        "a training part without it never shows it to the model; give it more images (docs/own-data.md §5)",
                        name, ", ".join(missing))  # fmt: skip


def cmd_train(args: argparse.Namespace) -> None:
    from patchlesion.data.description import load_description
    from patchlesion.engine.training import train_run
    from patchlesion.method.backbones import BACKBONES
    from patchlesion.method.runs import RunSpec

    spec = RunSpec.from_name(args.run).check_registries()
    dataset = load_description(args.dataset)
    dataset.check_balancing(spec.balancing)  # before a GPU is leased
    BACKBONES[spec.backbone].check_crop_size(args.crop_size)
    start_job(args)
    index, split = _read_fold_inputs(args, dataset)
    settings = TrainSettings.from_args(args)
    train_run(spec, settings, index, split, args.fold, args.out_dir, checkpoint=args.checkpoint, cache=args.cache, dataset=dataset)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from patchlesion.engine.evaluate import FoldOutputs, evaluate_folds
    from patchlesion.method.runs import RunSpec

    start_job(args)
    counts = {f"--{name}": len(getattr(args, name)) for name in ("fold", "model", "predictions", "metrics")}
    if len(set(counts.values())) > 1 or len(set(args.fold)) < len(args.fold):
        given = ", ".join(f"{option} {count}" for option, count in counts.items())
        raise PatchlesionError(f"evaluate takes one --model, --predictions and --metrics per --fold, each fold once; given {given} ({args.fold}).")
    spec = RunSpec.from_name(args.run).check_registries()
    index, split = _read_fold_inputs(args)
    settings = TrainSettings.from_args(args)  # the data geometry and device; training-only settings unused
    outputs = [FoldOutputs(*fold) for fold in zip(args.fold, args.model, args.predictions, args.metrics)]
    for metrics in evaluate_folds(spec, settings, index, split, outputs, cache=args.cache):
        log.info(
            "run %s fold %d on %d test images: MC-sensitivity %.3f, MC-specificity %.3f, F1 %.3f",
            spec.name, metrics["fold"], metrics["n_images"], metrics["mc_sensitivity"], metrics["mc_specificity"], metrics["f1"],
        )  # fmt: skip


def cmd_table(args: argparse.Namespace) -> None:
    from patchlesion.results.tables import summarise_runs, write_table

    table = summarise_runs(args.metrics, args.table, dict(args.label or []), reference=args.reference, seed=args.seed, paper=args.paper)
    write_table(table, args.csv, args.markdown, title=args.title or f"Table {args.table}", tex_path=args.latex)
    log.info("table %s with %d rows written to %s", args.table, len(table), ", ".join(p for p in (args.csv, args.markdown, args.latex) if p))


def cmd_claims(args: argparse.Namespace) -> None:
    from patchlesion.results.claims import SYNTHETIC_DATASETS, check_claims, collect_predictions, load_claims, write_claims

    claims = load_claims()
    labels = {(table, run): row for table, run, row in args.label or []}
    tables = {table: paths for table, *paths in args.table_metrics or []}
    left_out = {(table, row): why for table, row, why in args.left_out or []}
    results = check_claims(claims, collect_predictions(tables, labels, args.figure5_metrics or []), seed=args.seed, left_out=left_out)
    write_claims(results, claims, args.csv, args.markdown, synthetic=args.dataset in SYNTHETIC_DATASETS)
    log.info("verdicts on %d claims written to %s: %s", len(claims), args.markdown, results["verdict"].value_counts().to_dict())




def cmd_table_figures(args: argparse.Namespace) -> None:
    from patchlesion.results.figures import write_table_figures

    best = write_table_figures(args.metrics, args.table, dict(args.label or []), args.confusion, args.curves)
    log.info("table %s figures written: best run %s", args.table, best)


def cmd_figure4(args: argparse.Namespace) -> None:
    from patchlesion.engine.predict import write_figure4

    start_job(args)
    index, split = _read_fold_inputs(args)
    shown = write_figure4(index, split, args.fold, args.run, args.model, args.images_per_class, tuple(args.image_size), args.crop_size,
                          args.device, args.out, args.resize)  # fmt: skip
    log.info("figure 4 written to %s (%d test images)", args.out, shown)


def cmd_figure5(args: argparse.Namespace) -> None:
    from patchlesion.results.figures import write_figure5

    write_figure5(args.metrics, args.out, args.csv)
    log.info("figure 5 written to %s", args.out)


def cmd_report(args: argparse.Namespace) -> None:
    from patchlesion.results.report import write_report

    write_report(args.results, args.dataset, args.preset, args.out, dict(args.table_dataset or []), args.only, own_data=args.own_data)
    log.info("report written to %s", args.out)


def cmd_official_test(args: argparse.Namespace) -> None:
    from patchlesion.engine.official_test import evaluate_official_test
    from patchlesion.method.runs import RunSpec

    start_job(args)
    spec = RunSpec.from_name(args.run).check_registries()
    index = _read_csv(args.index, "image index of the official test set")
    settings = TrainSettings.from_args(args)  # the data geometry and device; training-only settings unused
    metrics = evaluate_official_test(spec, settings, index, args.folds, args.models, args.out_dir, cache=args.cache)
    folds = ", ".join(f"fold {f['fold']} {f['balanced_multiclass_accuracy']:.3f}" for f in metrics["folds"])
    log.info("run %s on %d official test images: balanced multiclass accuracy %s; ensemble %.3f",
             spec.name, metrics["n_images"], folds, metrics["ensemble"]["balanced_multiclass_accuracy"])  # fmt: skip


def cmd_official_table(args: argparse.Namespace) -> None:
    from patchlesion.results.leaderboard import summarise_official_runs, write_official_table

    table = summarise_official_runs(args.metrics, dict(args.label or []), args.heldout_metrics or [])
    write_official_table(table, args.csv, args.markdown, args.latex, args.title)
    log.info("official test set table with %d rows written to %s", len(table), args.markdown)


def cmd_convert_derm7pt(args: argparse.Namespace) -> None:
    import pandas as pd

    from patchlesion.data.derm7pt import convert_release

    meta = convert_release(args.release, args.out, split=args.split, image_size=tuple(args.image_size))
    split = pd.read_csv(Path(args.out) / "split.csv")
    log.info("converted %d derm7pt cases to %s: %s", len(meta), args.out, meta["dx"].value_counts().to_dict())
    log.info("%s split: %d test, %d training images", args.split, int((split["part"] == 0).sum()), int(split["part"].isin([2, 3]).sum()))


def cmd_fetch_weights(args: argparse.Namespace) -> None:
    from patchlesion.data.acquire.weights import fetch_weights

    for name in args.backbones:
        path = fetch_weights(name, home=args.torch_home)
        log.info("%s weights ready at %s", name, path)


def cmd_predict(args: argparse.Namespace) -> None:
    from patchlesion.engine.predict import predict_images, write_overlays

    start_job(args)
    frame = predict_images(args.run, args.model, args.images, args.image_size, args.crop_size, args.device, args.resize)
    if args.output is None:
        frame.to_csv(sys.stdout, index=False, float_format="%.6f")
    else:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        if output.suffix.lower() == ".json":
            output.write_text(frame.to_json(orient="records", indent=2) + "\n")
        else:
            frame.to_csv(output, index=False, float_format="%.6f")
        log.info("predictions of %d images written to %s", len(frame), output)
    if args.overlay_dir is not None:
        written = write_overlays(frame, args.overlay_dir)
        if written:
            log.info("%d attention overlays written to %s", len(written), args.overlay_dir)
        else:
            log.warning("run %s has no patch attention: no overlays written", frame.attrs["run"])


def _download_settings(args: argparse.Namespace):
    """The config's ``download`` block (``--settings``, JSON) with the options given on the command line on top."""
    import dataclasses

    from patchlesion.data.acquire.datasets import DownloadSettings

    try:
        block = json.loads(args.settings) if args.settings else {}
    except json.JSONDecodeError as error:
        raise PatchlesionError(f"--settings: not valid JSON ({error}).") from error
    settings = DownloadSettings.from_config(block)
    cap = "isic2019_max_file_gib" if args.command == "download-isic2019" else "max_file_gib"
    overrides = {
        "source": getattr(args, "source", None), "dataverse_server": getattr(args, "server", None), "dataverse_doi": getattr(args, "doi", None),
        "isic2018_url": getattr(args, "isic2018_url", None), "isic2019_url": getattr(args, "isic2019_url", None),
        "timeout": args.timeout, "retries": args.retries, cap: args.max_file_gib,
    }  # fmt: skip
    return dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def cmd_download_ham10000(args: argparse.Namespace) -> None:
    from patchlesion.data.acquire.datasets import download_ham10000

    download_ham10000(args.out, args.downloads, _download_settings(args))


def cmd_download_isic2018_test(args: argparse.Namespace) -> None:
    from patchlesion.data.acquire.datasets import download_isic2018_test, isic2018_test_from_files

    if args.from_files:
        isic2018_test_from_files(*args.from_files, args.out, scratch=args.downloads)
    else:
        download_isic2018_test(args.out, args.downloads, _download_settings(args))


def cmd_download_isic2019(args: argparse.Namespace) -> None:
    from patchlesion.data.acquire.datasets import download_isic2019

    download_isic2019(args.out, args.downloads, _download_settings(args))


def cmd_convert_isic2019(args: argparse.Namespace) -> None:
    from patchlesion.data.acquire.isic2019 import convert_isic2019

    convert_isic2019(args.images, args.ground_truth, args.metadata, args.out)


def cmd_cost(args: argparse.Namespace) -> None:
    from patchlesion.engine.cost import Projection
    from patchlesion.engine.costplan import plan_cost
    from patchlesion.engine.grid import Grid

    text = args.grid if args.grid.lstrip().startswith("{") else _read_text(args.grid, "grid")
    grid, projection = Grid.from_json(text), Projection(args.devices, args.jobs_per_device, args.efficiency)
    if args.steps is not None and args.steps < 1:
        raise PatchlesionError(f"--steps must be at least 1, got {args.steps}.")
    indexes = {dataset: _read_csv(path, f"image index of {dataset}") for dataset, path in args.index}
    splits = {dataset: _read_csv(path, f"split of {dataset}") for dataset, path in args.split or []}
    start_job(args)
    plan = plan_cost(grid, indexes, splits, TrainSettings.from_args(args), projection, steps=args.steps, threads=args.threads, budget=args.budget)
    plan.write(args.csv, args.markdown)
    print("\n".join(plan.lines), flush=True)


def _read_text(path: str, what: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as error:
        raise PatchlesionError(f"{path}: cannot read the {what} ({error}).") from error
