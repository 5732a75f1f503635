"""Command-line interface: every step of the workflow, usable without Snakemake.

    patchlesion synthesize --out resources/synthetic --n-images 800 --image-size 200 150
    patchlesion index --data-dir resources/synthetic --out results/synthetic/index.csv
    patchlesion prepare --index results/synthetic/index.csv --image-size 600 450 --out results/synthetic/cache/600x450
    patchlesion split --index results/synthetic/index.csv --method stratified --out results/synthetic/split.csv
    patchlesion train --index ... --split ... --fold 1 --run tiny-multi_crop-nc9-mean-loss_weighting-k1 --out-dir DIR
    patchlesion evaluate --index ... --split ... --fold 1 --run NAME --model DIR/model.pt --predictions P --metrics M
    patchlesion table --table II --metrics results/*/runs/*/fold*/metrics.json --csv T.csv --markdown T.md
    patchlesion predict --run NAME --model DIR/model.pt IMAGE.jpg [...] --output P.csv --overlay-dir DIR
    patchlesion download-ham10000 --out resources/ham10000 --downloads resources/downloads/ham10000
    patchlesion convert-derm7pt --release /data/derm7pt/release_v0 --out resources/derm7pt --split official
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from patchlesion.errors import PatchlesionError

log = logging.getLogger("patchlesion")


def _add_settings(parser: argparse.ArgumentParser) -> None:
    from patchlesion.engine.settings import TrainSettings

    d = TrainSettings()
    group = parser.add_argument_group("training settings (Sec. II-G)")
    group.add_argument("--epochs", type=int, default=d.epochs)
    group.add_argument("--batch-size", type=int, default=d.batch_size, help="images per batch")
    group.add_argument("--learning-rate", type=float, default=d.learning_rate)
    group.add_argument("--lr-halving-epochs", type=int, nargs="*", default=list(d.lr_halving_epochs))
    group.add_argument("--validation-every", type=int, default=d.validation_every)
    group.add_argument("--image-size", type=int, nargs=2, metavar=("WIDTH", "HEIGHT"), default=list(d.image_size))
    group.add_argument("--crop-size", type=int, default=d.crop_size)
    group.add_argument("--seed", type=int, default=d.seed)
    group.add_argument("--device", default=d.device, help="auto (CUDA if present), cpu, cuda, cuda:1 ...")
    group.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch")
    group.add_argument("--pretrained", action="store_true", help="start from the cached ImageNet weights")
    group.add_argument("--torch-home", default=None, help="weight cache folder (default: $TORCH_HOME or resources/torch)")
    group.add_argument("--amp", default=d.amp, choices=["auto", "true", "false"], help="mixed precision (auto: on for CUDA; bfloat16 where supported)")
    group.add_argument("--channels-last", default=d.channels_last, choices=["auto", "true", "false"], help="channels-last memory format (auto: on for CUDA)")
    group.add_argument("--compile", action="store_true", help="train through torch.compile")
    group.add_argument("--cache", default=None, help="prepared image cache directory (patchlesion prepare); default: decode the images")


def _settings(args: argparse.Namespace):
    from patchlesion.engine.settings import TrainSettings

    return TrainSettings(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        lr_halving_epochs=tuple(args.lr_halving_epochs), validation_every=args.validation_every,
        image_size=tuple(args.image_size), crop_size=args.crop_size, seed=args.seed, device=args.device,
        pretrained=args.pretrained, amp=args.amp, channels_last=args.channels_last, compile=args.compile,
    )  # fmt: skip


def _read_csv(path: str, what: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype={"image_id": str})
    except (OSError, pd.errors.ParserError) as error:
        raise PatchlesionError(f"{path}: cannot read the {what} ({error}).") from error


def _set_threads(args: argparse.Namespace) -> None:
    if getattr(args, "device", None) in ("auto", "cuda"):  # before CUDA starts: one GPU per job
        from patchlesion.engine.gpulease import lease_device

        lease_device()
    if getattr(args, "torch_home", None):
        import os

        os.environ["TORCH_HOME"] = args.torch_home
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


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


def cmd_prepare(args: argparse.Namespace) -> None:
    import time

    from patchlesion.data.cache import prepare_cache

    index = _read_csv(args.index, "image index")
    started = time.perf_counter()
    manifest = prepare_cache(index, tuple(args.image_size), args.out, threads=args.threads)
    size_gb = np.prod(manifest["shape"]) / 1e9
    log.info("decoded %d images into %s (%s, %.2f GB) in %.1f s; source sha256 %s", len(index), args.out,
             "x".join(map(str, manifest["shape"])), size_gb, time.perf_counter() - started, manifest["source_sha256"])  # fmt: skip


def cmd_split(args: argparse.Namespace) -> None:
    from patchlesion.data.splits import check_split, published_split, split_summary, stratified_split

    index = _read_csv(args.index, "image index")
    if args.method == "published":
        split = published_split(index)
    else:
        split = stratified_split(index, seed=args.seed)
    check_split(index, split)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    split.to_csv(args.out, index=False)
    log.info("%s split written to %s:\n%s", args.method, args.out, split_summary(index, split).to_string())


def cmd_train(args: argparse.Namespace) -> None:
    from patchlesion.engine.training import train_run
    from patchlesion.method.runs import RunSpec

    _set_threads(args)
    spec = RunSpec.from_name(args.run).check_registries()
    index, split = _read_csv(args.index, "image index"), _read_csv(args.split, "split")
    train_run(spec, _settings(args), index, split, args.fold, args.out_dir, checkpoint=args.checkpoint, cache=args.cache)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from patchlesion.engine.evaluate import evaluate_run
    from patchlesion.method.runs import RunSpec

    _set_threads(args)
    spec = RunSpec.from_name(args.run).check_registries()
    index, split = _read_csv(args.index, "image index"), _read_csv(args.split, "split")
    metrics = evaluate_run(spec, _settings(args), index, split, args.fold, args.model, args.predictions, args.metrics, cache=args.cache)
    log.info(
        "run %s fold %d on %d test images: MC-sensitivity %.3f, MC-specificity %.3f, F1 %.3f",
        spec.name, args.fold, metrics["n_images"], metrics["mc_sensitivity"], metrics["mc_specificity"], metrics["f1"],
    )  # fmt: skip


def cmd_table(args: argparse.Namespace) -> None:
    from patchlesion.results.tables import summarise_runs, write_table

    table = summarise_runs(args.metrics, args.table, dict(args.label or []), reference=args.reference, seed=args.seed)
    write_table(table, args.csv, args.markdown, title=args.title or f"Table {args.table}", tex_path=args.latex)
    log.info("table %s with %d rows written to %s", args.table, len(table), ", ".join(p for p in (args.csv, args.markdown, args.latex) if p))


def cmd_table_figures(args: argparse.Namespace) -> None:
    from patchlesion.results.figures import write_table_figures

    best = write_table_figures(args.metrics, args.table, dict(args.label or []), args.confusion, args.curves)
    log.info("table %s figures written: best run %s", args.table, best)


def cmd_figure4(args: argparse.Namespace) -> None:
    from patchlesion.data.images import load_image
    from patchlesion.data.splits import select
    from patchlesion.engine.predict import attention_columns, predict_images
    from patchlesion.method.classes import CLASSES
    from patchlesion.method.crops import crop_grid
    from patchlesion.results.figures import figure4

    _set_threads(args)
    index, split = _read_csv(args.index, "image index"), _read_csv(args.split, "split")
    test = index.set_index("image_id").loc[select(split, args.fold, "test")].reset_index()
    chosen = test.sort_values("image_id").groupby("class_name", sort=False).head(args.images_per_class)
    chosen = chosen.sort_values(["label", "image_id"])
    frame = predict_images(args.run, args.model, list(chosen["path"]), tuple(args.image_size), args.crop_size, args.device)
    weights = frame[attention_columns(frame)].to_numpy()
    images = [load_image(path, tuple(args.image_size)) for path in chosen["path"]]
    positions = crop_grid(weights.shape[1], tuple(args.image_size), args.crop_size)
    figure4(images, positions, args.crop_size, weights, list(chosen["class_name"]), [args.out, str(Path(args.out).with_suffix(".pdf"))],
            title=f"Attention weights, {args.run}, fold {args.fold}", predicted_classes=list(frame["predicted_class"]), class_order=CLASSES)  # fmt: skip
    log.info("figure 4 written to %s (%d test images)", args.out, len(chosen))


def cmd_figure5(args: argparse.Namespace) -> None:
    from patchlesion.results.figures import write_figure5

    write_figure5(args.metrics, args.out, args.csv)
    log.info("figure 5 written to %s", args.out)


def cmd_report(args: argparse.Namespace) -> None:
    from patchlesion.results.report import write_report

    write_report(args.results, args.dataset, args.preset, args.out, dict(args.table_dataset or []))
    log.info("report written to %s", args.out)


def cmd_official_test(args: argparse.Namespace) -> None:
    from patchlesion.engine.official_test import evaluate_official_test
    from patchlesion.method.runs import RunSpec

    _set_threads(args)
    spec = RunSpec.from_name(args.run).check_registries()
    index = _read_csv(args.index, "image index of the official test set")
    metrics = evaluate_official_test(spec, _settings(args), index, args.folds, args.models, args.out_dir, cache=args.cache)
    folds = ", ".join(f"fold {f['fold']} {f['balanced_multiclass_accuracy']:.3f}" for f in metrics["folds"])
    log.info("run %s on %d official test images: balanced multiclass accuracy %s; ensemble %.3f",
             spec.name, metrics["n_images"], folds, metrics["ensemble"]["balanced_multiclass_accuracy"])  # fmt: skip


def cmd_official_table(args: argparse.Namespace) -> None:
    from patchlesion.results.leaderboard import summarise_official_runs, write_official_table

    table = summarise_official_runs(args.metrics, dict(args.label or []), args.heldout_metrics or [])
    write_official_table(table, args.csv, args.markdown, args.latex, args.title)
    log.info("official test set table with %d rows written to %s", len(table), args.markdown)


def cmd_convert_derm7pt(args: argparse.Namespace) -> None:
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

    _set_threads(args)
    frame = predict_images(args.run, args.model, args.images, tuple(args.image_size), args.crop_size, args.device)
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
            log.warning("run %s has no patch attention: no overlays written", args.run)


def build_parser() -> argparse.ArgumentParser:
    """The ``patchlesion`` argument parser."""
    parser = argparse.ArgumentParser(prog="patchlesion", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synthesize", help="write a synthetic HAM10000-like dataset")
    p.add_argument("--out", required=True)
    p.add_argument("--n-images", type=int, default=10015)
    p.add_argument("--image-size", type=int, nargs=2, metavar=("WIDTH", "HEIGHT"), default=[600, 450])
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_synthesize)

    p = sub.add_parser("index", help="validate a HAM10000-format directory and list its images")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("prepare", help="decode every image of an index once into a uint8 cache (images.u8 + manifest.json)")
    p.add_argument("--index", required=True)
    p.add_argument("--image-size", type=int, nargs=2, metavar=("WIDTH", "HEIGHT"), default=[600, 450])
    p.add_argument("--out", required=True, help="cache directory, e.g. results/ham10000/cache/600x450")
    p.add_argument("--threads", type=int, default=1, help="decoding threads")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("split", help="4-way split: part 0 = test, parts 1-3 = cross-validation")
    p.add_argument("--index", required=True)
    p.add_argument("--method", choices=["stratified", "published"], default="stratified")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_split)

    for name, func, text in (("train", cmd_train, "train one run on one fold"), ("evaluate", cmd_evaluate, "evaluate a fold's model on the test part")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--index", required=True)
        p.add_argument("--split", required=True)
        p.add_argument("--fold", type=int, required=True, choices=[1, 2, 3])
        p.add_argument("--run", required=True, help="canonical run name, e.g. densenet121-multi_crop-nc9-mean-loss_weighting-k1")
        if name == "train":
            p.add_argument("--out-dir", required=True)
            p.add_argument("--checkpoint", default=None, help="resume state, saved every epoch, deleted at the end (resumable training)")
        else:
            p.add_argument("--model", required=True)
            p.add_argument("--predictions", required=True)
            p.add_argument("--metrics", required=True)
        _add_settings(p)
        p.set_defaults(func=func)

    p = sub.add_parser("table", help="paper-style table (mean ± std over folds) with the paper's numbers")
    p.add_argument("--table", default="II")
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--csv", required=True)
    p.add_argument("--markdown", required=True)
    p.add_argument("--title", default=None)
    p.add_argument("--label", nargs=2, action="append", metavar=("RUN", "ROW"), help="the paper's row label of a run")
    p.add_argument("--latex", default=None, help="also write a booktabs LaTeX table")
    p.add_argument("--reference", default=None, help="row label the paired bootstrap intervals compare with")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("table-figures", help="confusion matrix of a table's best run and training curves of its runs")
    p.add_argument("--table", required=True)
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--label", nargs=2, action="append", metavar=("RUN", "ROW"))
    p.add_argument("--title", default=None)
    p.add_argument("--confusion", required=True, help="PNG path (a PDF is written beside it)")
    p.add_argument("--curves", required=True, help="PNG path (a PDF is written beside it)")
    p.set_defaults(func=cmd_table_figures)

    p = sub.add_parser("figure4", help="Fig. 4: attention weights of a model on test images")
    p.add_argument("--index", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--fold", type=int, default=1)
    p.add_argument("--images-per-class", type=int, default=3)
    p.add_argument("--image-size", type=int, nargs=2, metavar=("WIDTH", "HEIGHT"), default=[600, 450])
    p.add_argument("--crop-size", type=int, default=224)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", required=True, help="PNG path (a PDF is written beside it)")
    p.set_defaults(func=cmd_figure4)

    p = sub.add_parser("figure5", help="Fig. 5: MC-sensitivity against patch dropout, one line per NC")
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--out", required=True, help="PNG path (a PDF is written beside it)")
    p.add_argument("--csv", required=True, help="the plotted numbers")
    p.set_defaults(func=cmd_figure5)

    p = sub.add_parser("report", help="results/REPORT.md linking every table and figure")
    p.add_argument("--results", default="results")
    p.add_argument("--dataset", required=True)
    p.add_argument("--preset", default="paper")
    p.add_argument("--table-dataset", nargs=2, action="append", metavar=("TABLE", "DATASET"),
                   help="a table computed on another dataset, e.g. IV derm7pt")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("official-test", help="predict an official test set (all images) with each fold model and their ensemble; leaderboard score")
    p.add_argument("--index", required=True, help="index.csv of the official test set")
    p.add_argument("--run", required=True)
    p.add_argument("--folds", type=int, nargs="+", required=True)
    p.add_argument("--models", nargs="+", required=True, help="one model file per fold, in the order of --folds")
    p.add_argument("--out-dir", required=True)
    _add_settings(p)
    p.set_defaults(func=cmd_official_test)

    p = sub.add_parser("official-table", help="table of the official test set: fold-model and ensemble balanced multiclass accuracy")
    p.add_argument("--metrics", nargs="+", required=True, help="metrics.json files written by official-test")
    p.add_argument("--heldout-metrics", nargs="+", default=None, help="the runs' test-part metrics.json (evaluate), for comparison")
    p.add_argument("--label", nargs=2, action="append", metavar=("RUN", "ROW"))
    p.add_argument("--title", default="Official test set (ISIC 2018 Task 3)")
    p.add_argument("--csv", required=True)
    p.add_argument("--markdown", required=True)
    p.add_argument("--latex", required=True)
    p.set_defaults(func=cmd_official_table)

    p = sub.add_parser("convert-derm7pt", help="derm7pt (SPC) release_v0 -> a HAM10000-format folder with split.csv (Table IV)")
    p.add_argument("--release", required=True, help="the unpacked derm7pt release_v0 folder (meta/, images/)")
    p.add_argument("--out", required=True)
    p.add_argument("--split", choices=["official", "authors"], default="official",
                   help="test set: the official one (train + valid vs test) or the authors' (their indices_sp.pkl)")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("WIDTH", "HEIGHT"), default=[600, 450])
    p.set_defaults(func=cmd_convert_derm7pt)

    p = sub.add_parser("fetch-weights", help="download ImageNet weights into the local cache (checksum verified)")
    p.add_argument("backbones", nargs="+")
    p.add_argument("--torch-home", default=None, help="cache folder (default: $TORCH_HOME or resources/torch)")
    p.set_defaults(func=cmd_fetch_weights)

    from patchlesion.data.acquire.datasets import add_commands as add_download_commands

    add_download_commands(sub)  # download-ham10000, download-isic2018-test

    p = sub.add_parser("predict", help="classify images with a trained model (CSV to stdout, or --output .csv/.json)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--run", required=True, help="canonical run name the model was trained as")
    p.add_argument("--model", required=True, help="model.pt of a training run (weights only)")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("WIDTH", "HEIGHT"), default=[600, 450], help="training image size")
    p.add_argument("--crop-size", type=int, default=224, help="training crop size")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1 ...")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch")
    p.add_argument("--output", default=None, help="FILE.csv or FILE.json (default: CSV to stdout)")
    p.add_argument("--overlay-dir", default=None, help="attention models: write <image stem>_attention.png here")
    p.set_defaults(func=cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``patchlesion`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    try:
        args.func(args)
    except PatchlesionError as error:
        print(f"patchlesion {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
