"""Command-line interface: every step of the workflow, usable without Snakemake.

    patchlesion synthesize --out resources/synthetic --n-images 800 --image-size 200 150
    patchlesion index --data-dir resources/synthetic --out results/synthetic/index.csv
    patchlesion split --index results/synthetic/index.csv --method stratified --out results/synthetic/split.csv
    patchlesion train --index ... --split ... --fold 1 --run tiny-multi_crop-nc9-mean-loss_weighting-k1 --out-dir DIR
    patchlesion evaluate --index ... --split ... --fold 1 --run NAME --model DIR/model.pt --predictions P --metrics M
    patchlesion table --table II --metrics results/*/runs/*/fold*/metrics.json --csv T.csv --markdown T.md
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pandas as pd

from patchlesion.errors import PatchlesionError

log = logging.getLogger("patchlesion")


def _add_settings(parser: argparse.ArgumentParser) -> None:
    from patchlesion.runs import TrainSettings

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


def _settings(args: argparse.Namespace):
    from patchlesion.runs import TrainSettings

    return TrainSettings(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        lr_halving_epochs=tuple(args.lr_halving_epochs), validation_every=args.validation_every,
        image_size=tuple(args.image_size), crop_size=args.crop_size, seed=args.seed, device=args.device,
        pretrained=args.pretrained,
    )  # fmt: skip


def _read_csv(path: str, what: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype={"image_id": str})
    except (OSError, pd.errors.ParserError) as error:
        raise PatchlesionError(f"{path}: cannot read the {what} ({error}).") from error


def _set_threads(args: argparse.Namespace) -> None:
    if getattr(args, "torch_home", None):
        import os

        os.environ["TORCH_HOME"] = args.torch_home
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def cmd_synthesize(args: argparse.Namespace) -> None:
    from patchlesion.synthetic import make_synthetic_ham10000

    meta = make_synthetic_ham10000(args.out, n_images=args.n_images, image_size=tuple(args.image_size), seed=args.seed)
    log.info("wrote %d synthetic images of %d lesions to %s", len(meta), meta["lesion_id"].nunique(), args.out)
    log.info("images per class: %s", meta["dx"].value_counts().to_dict())


def cmd_index(args: argparse.Namespace) -> None:
    from patchlesion.ham10000 import read_dataset

    index = read_dataset(args.data_dir)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    index.to_csv(args.out, index=False)
    sizes = index.groupby(["width", "height"]).size().to_dict()
    log.info("indexed %d images of %d lesions from %s; sizes %s", len(index), index["lesion_id"].nunique(), args.data_dir, sizes)


def cmd_split(args: argparse.Namespace) -> None:
    from patchlesion.splits import check_split, published_split, split_summary, stratified_split

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
    from patchlesion.runs import RunSpec
    from patchlesion.training import train_run

    _set_threads(args)
    spec = RunSpec.from_name(args.run).check_registries()
    index, split = _read_csv(args.index, "image index"), _read_csv(args.split, "split")
    train_run(spec, _settings(args), index, split, args.fold, args.out_dir)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from patchlesion.evaluation import evaluate_run
    from patchlesion.runs import RunSpec

    _set_threads(args)
    spec = RunSpec.from_name(args.run).check_registries()
    index, split = _read_csv(args.index, "image index"), _read_csv(args.split, "split")
    metrics = evaluate_run(spec, _settings(args), index, split, args.fold, args.model, args.predictions, args.metrics)
    log.info(
        "run %s fold %d on %d test images: MC-sensitivity %.3f, MC-specificity %.3f, F1 %.3f",
        spec.name, args.fold, metrics["n_images"], metrics["mc_sensitivity"], metrics["mc_specificity"], metrics["f1"],
    )  # fmt: skip


def cmd_table(args: argparse.Namespace) -> None:
    from patchlesion.runs import RunSpec
    from patchlesion.tables import summarise_folds, write_table

    labels = dict(args.label or [])
    records = []
    for path in args.metrics:
        try:
            metrics = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise PatchlesionError(f"{path}: cannot read test metrics ({error}).") from error
        spec = RunSpec.from_name(metrics["run"])
        records.append(
            {"table": args.table, "backbone": spec.backbone, "row": labels.get(spec.name, spec.name), "fold": metrics["fold"],
             **{k: metrics[k] for k in ("mc_sensitivity", "mc_specificity", "f1")}}
        )  # fmt: skip
    table = summarise_folds(records)
    write_table(table, args.csv, args.markdown, title=args.title or f"Table {args.table}")
    log.info("table %s with %d rows written to %s and %s", args.table, len(table), args.csv, args.markdown)


def cmd_fetch_weights(args: argparse.Namespace) -> None:
    from patchlesion.weights import fetch_weights

    for name in args.backbones:
        path = fetch_weights(name, home=args.torch_home)
        log.info("%s weights ready at %s", name, path)


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
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("fetch-weights", help="download ImageNet weights into the local cache (checksum verified)")
    p.add_argument("backbones", nargs="+")
    p.add_argument("--torch-home", default=None, help="cache folder (default: $TORCH_HOME or resources/torch)")
    p.set_defaults(func=cmd_fetch_weights)
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
