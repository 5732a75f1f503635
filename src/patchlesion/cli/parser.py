"""The ``patchlesion`` argument parser: one small function per subcommand. The options of the
training settings are generated from :class:`patchlesion.engine.settings.TrainSettings`, so a new
setting needs no change here."""

from __future__ import annotations

import argparse

from patchlesion.cli import commands
from patchlesion.cli.options import (
    FROM_RUN_JSON,
    NON_NEGATIVE,
    POSITIVE,
    QUIET_HELP,
    HelpFormatter,
    Parser,
    VersionAction,
    add_job_options,
    add_settings,
    command_parser,
    positive_number,
)
from patchlesion.data import RESIZES

__all__ = ["build_parser"]

DESCRIPTION = """Command-line interface: every step of the workflow, usable without Snakemake.

    patchlesion synthesize --out resources/synthetic --n-images 800 --image-size 200 150
    patchlesion index --data-dir resources/synthetic --out results/synthetic/index.csv
    patchlesion prepare --index results/synthetic/index.csv --image-size 600 450 --out results/synthetic/cache/600x450
    patchlesion split --index results/synthetic/index.csv --method stratified --out results/synthetic/split.csv
    patchlesion train --index ... --split ... --fold 1 --run tiny-multi_crop-nc9-mean-loss_weighting-k1 --out-dir DIR
    patchlesion evaluate --index ... --split ... --fold 1 2 --run NAME --model D1/model.pt D2/model.pt --predictions P1 P2 --metrics M1 M2
    patchlesion table --table II --metrics results/*/runs/*/fold*/metrics.json --csv T.csv --markdown T.md
    patchlesion predict --model DIR/model.pt IMAGE.jpg [...] --output P.csv --overlay-dir DIR
    patchlesion download-ham10000 --out resources/ham10000 --downloads resources/downloads/ham10000
    patchlesion convert-derm7pt --release /data/derm7pt/release_v0 --out resources/derm7pt --split official

`patchlesion COMMAND --help` lists a command's options with their defaults.
"""

#: Example run name in the help texts.
RUN_EXAMPLE = "canonical run name, e.g. densenet121-multi_crop-nc9-mean-loss_weighting-k1"
PNG_HELP = "PNG path (a PDF is written beside it)"
INDEX_HELP = "index.csv written by `patchlesion index`"
SPLIT_HELP = "split.csv written by `patchlesion split`"
METRICS_HELP = "metrics.json of each run and fold (written by `patchlesion evaluate`)"
LABEL_HELP = "the paper's row label of a run (repeatable; default: the run name)"
IMAGE_SIZE_HELP = "images are resized to this size in pixels"


DATASET_HELP = "the dataset's classes and columns: ham10000, derm7pt, synthetic, or a description .json"


def _add_fold_inputs(parser: argparse.ArgumentParser, several: bool = False) -> None:
    parser.add_argument("--index", required=True, help=INDEX_HELP)
    parser.add_argument("--split", required=True, help=SPLIT_HELP)
    fold_help = "cross-validation fold k: validates on part k, trains on the others"
    if several:
        parser.add_argument("--fold", type=int, required=True, nargs="+", choices=[1, 2, 3], help=fold_help + "; several: one each, in order")
    else:
        parser.add_argument("--fold", type=int, required=True, choices=[1, 2, 3], help=fold_help)
    parser.add_argument("--run", required=True, help=RUN_EXAMPLE)


def _add_image_size(parser: argparse.ArgumentParser, help: str = IMAGE_SIZE_HELP) -> None:
    parser.add_argument("--image-size", type=POSITIVE, nargs=2, metavar=("WIDTH", "HEIGHT"), default=[600, 450], help=help)


def _add_synthesize(sub) -> None:
    p = command_parser(sub, "synthesize", "write a synthetic HAM10000-like dataset", commands.cmd_synthesize)
    p.add_argument("--out", required=True, help="folder to write HAM10000_metadata.csv and HAM10000_images/ into")
    p.add_argument("--n-images", type=POSITIVE, default=10015, help="number of images (class mix as in HAM10000; at least 8 per class)")
    _add_image_size(p, "width and height of the images in pixels")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0, help="random seed: the same seed writes the same files")


def _add_index(sub) -> None:
    p = command_parser(sub, "index", "validate a HAM10000-format directory and list its images", commands.cmd_index)
    p.add_argument("--data-dir", required=True, help="HAM10000-format folder: HAM10000_metadata.csv and the ISIC_*.jpg images")
    p.add_argument("--out", required=True, help="index.csv to write")


def _add_index_folder(sub) -> None:
    text = "validate a labelled image folder (your own dataset, docs/own-data.md §1) and list its images"
    p = command_parser(sub, "index-folder", text, commands.cmd_index_folder)
    p.add_argument("--dir", required=True, help="folder of the JPEG or PNG images (flat or nested)")
    p.add_argument("--labels", default="labels.csv", help="CSV, one row per image; relative to --dir unless absolute (default: %(default)s)")
    p.add_argument("--name", required=True, help="the dataset's name")
    p.add_argument("--classes", nargs="+", required=True, help="the class names in label order (at least two)")
    p.add_argument("--benign", nargs="*", default=[], help="the benign classes (the scope of diagnosis-guided weighting)")
    for role, default, what in (("image", "image_id", "the image: its file name without extension, or its path relative to --dir"),
                                ("label", "label", "the class name"), ("group", None, "the lesion group (optional)"),
                                ("diagnosis-type", None, "the diagnosis type: histo, follow_up, consensus or confocal (optional)")):  # fmt: skip
        p.add_argument(f"--{role}-column", default=default, help=f"the CSV's column of {what}" + (" (default: %(default)s)" if default else ""))
    p.add_argument("--out", required=True, help="index.csv to write")
    p.add_argument("--description", required=True, help="dataset.json to write: the dataset's classes and columns, for split and train --dataset")


def _add_prepare(sub) -> None:
    text = "decode every image of an index once into a uint8 cache (images.u8 + manifest.json)"
    p = command_parser(sub, "prepare", text, commands.cmd_prepare)
    p.add_argument("--index", required=True, help=INDEX_HELP)
    _add_image_size(p, "images are resized to this size in pixels (the training size)")
    p.add_argument("--resize", choices=RESIZES, default="stretch",
                   help="images of another aspect ratio: stretch each side to the size (the paper), or crop to its aspect ratio first, centred")
    p.add_argument("--out", required=True, help="cache directory, e.g. results/ham10000/cache/600x450")
    p.add_argument("--threads", type=POSITIVE, default=1, help="decoding threads")


def _add_split(sub) -> None:
    p = command_parser(sub, "split", "4-way split: part 0 = test, parts 1-3 = cross-validation", commands.cmd_split)
    p.add_argument("--index", required=True, help=INDEX_HELP)
    p.add_argument("--method", choices=["stratified", "published"], default="stratified",
                   help="stratified: lesion-grouped, drawn anew with --seed; published: the authors' split (HAM10000 only)")  # fmt: skip
    p.add_argument("--seed", type=NON_NEGATIVE, default=0, help="seed of the stratified split")
    p.add_argument("--dataset", default=None, help=DATASET_HELP + " (default: HAM10000's dx and lesion_id columns)")
    p.add_argument("--out", required=True, help="split.csv to write (image_id, part)")


def _add_train(sub) -> None:
    p = command_parser(sub, "train", "train one run on one fold", commands.cmd_train)
    _add_fold_inputs(p)
    p.add_argument("--out-dir", required=True, help="folder for model.pt, model_last.pt, history.csv and run.json")
    p.add_argument("--checkpoint", default=None, help="resume state, saved every epoch, deleted at the end (resumable training)")
    p.add_argument("--dataset", default="ham10000", help=DATASET_HELP + "; run.json records it for evaluation and predict (default: %(default)s)")
    add_settings(p, "train", "training settings (Sec. II-G)")
    add_job_options(p, torch_home=True)


def _add_evaluate(sub) -> None:
    p = command_parser(sub, "evaluate", "evaluate the models of one or more folds of a run on the test part", commands.cmd_evaluate)
    _add_fold_inputs(p, several=True)
    p.add_argument("--model", required=True, nargs="+", help="model.pt written by `patchlesion train` for this run and fold (one per --fold)")
    p.add_argument("--predictions", required=True, nargs="+", help="predictions.csv to write (one probability per class and image; one per --fold)")
    p.add_argument("--metrics", required=True, nargs="+", help="metrics.json to write (one per --fold)")
    add_settings(p, "evaluate", "data geometry and device (the training values)")
    add_job_options(p)


def _add_table(sub) -> None:
    p = command_parser(sub, "table", "paper-style table (mean ± std over folds) with the paper's numbers", commands.cmd_table)
    p.add_argument("--table", default="II", help="the paper's table (II, III, IV, V, VI) whose numbers are shown beside ours")
    p.add_argument("--metrics", nargs="+", required=True, help=METRICS_HELP)
    p.add_argument("--csv", required=True, help="CSV file to write")
    p.add_argument("--markdown", required=True, help="Markdown file to write")
    p.add_argument("--title", default=None, help="title (default: Table TABLE)")
    p.add_argument("--label", nargs=2, action="append", metavar=("RUN", "ROW"), help=LABEL_HELP)
    p.add_argument("--latex", default=None, help="also write a booktabs LaTeX table")
    p.add_argument("--reference", default=None, help="row label the paired bootstrap intervals compare with")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0, help="bootstrap seed")
    p.add_argument("--no-paper", dest="paper", action="store_false", help="leave the paper's columns empty (a dataset other than the paper's)")


def _add_claims(sub) -> None:
    text = "a verdict on each of the paper's claims, per backbone, from paired bootstrap intervals (docs/claims.md)"
    p = command_parser(sub, "claims", text, commands.cmd_claims)
    p.add_argument("--table-metrics", nargs="+", action="append", metavar=("TABLE", "METRICS"),
                   help="a table (II) and its runs' fold metrics.json files (predictions.csv beside each); once per table")  # fmt: skip
    p.add_argument("--label", nargs=3, action="append", metavar=("TABLE", "RUN", "ROW"), help="the paper's row label of a run in a table")
    p.add_argument("--figure5-metrics", nargs="+", default=None, metavar="METRICS", help="the fold metrics.json files of Fig. 5's runs")
    p.add_argument("--left-out", nargs=3, action="append", metavar=("TABLE", "ROW", "WHY"), help="a row left out on purpose, and why")
    p.add_argument("--dataset", required=True, help="the dataset the runs trained on (synthetic: the section says so first)")
    p.add_argument("--csv", required=True, help="CSV file to write: one row per comparison")
    p.add_argument("--markdown", required=True, help="the section REPORT.md opens with")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0, help="bootstrap seed (the tables' default, so their intervals agree)")


def _add_table_figures(sub) -> None:
    text = "confusion matrix of a table's best run and training curves of its runs"
    p = command_parser(sub, "table-figures", text, commands.cmd_table_figures)
    p.add_argument("--table", required=True, help="the table's name in the figures' titles (II, III, ...)")
    p.add_argument("--metrics", nargs="+", required=True, help=METRICS_HELP)
    p.add_argument("--label", nargs=2, action="append", metavar=("RUN", "ROW"), help=LABEL_HELP)
    p.add_argument("--title", default=None, help="title (default: Table TABLE)")
    p.add_argument("--confusion", required=True, help=PNG_HELP)
    p.add_argument("--curves", required=True, help=PNG_HELP)


def _add_figure4(sub) -> None:
    p = command_parser(sub, "figure4", "Fig. 4: attention weights of a model on test images", commands.cmd_figure4)
    p.add_argument("--index", required=True, help=INDEX_HELP)
    p.add_argument("--split", required=True, help=SPLIT_HELP)
    p.add_argument("--run", required=True, help="run with patch attention (att_initial, att_end or att_dual)")
    p.add_argument("--model", required=True, help="model.pt of that run")
    p.add_argument("--fold", type=int, default=1, choices=[1, 2, 3], help="the fold the model was trained on (its test part is shown)")
    p.add_argument("--images-per-class", type=POSITIVE, default=3, help="test images shown per class")
    p.add_argument("--out", required=True, help=PNG_HELP)
    add_settings(p, "figure4", "data geometry and device (the training values)")
    add_job_options(p, cache=False)


def _add_figure5(sub) -> None:
    p = command_parser(sub, "figure5", "Fig. 5: MC-sensitivity against patch dropout, one line per NC", commands.cmd_figure5)
    p.add_argument("--metrics", nargs="+", required=True, help=METRICS_HELP)
    p.add_argument("--out", required=True, help=PNG_HELP)
    p.add_argument("--csv", required=True, help="the plotted numbers")


def _add_report(sub) -> None:
    p = command_parser(sub, "report", "results/REPORT.md linking every table and figure", commands.cmd_report)
    p.add_argument("--results", default="results", help="the results folder")
    p.add_argument("--dataset", required=True, help="the dataset whose tables and figures are linked (results/DATASET)")
    p.add_argument("--preset", default="paper", help="the config preset the results were made with (named in the report)")
    p.add_argument("--table-dataset", nargs=2, action="append", metavar=("TABLE", "DATASET"),
                   help="a table computed on another dataset, e.g. IV derm7pt")  # fmt: skip
    p.add_argument("--only", nargs="+", metavar="TABLE",
                   help="report only these tables, e.g. II III official_test (default: every table found)")  # fmt: skip
    p.add_argument("--own-data", action="store_true", help="DATASET is your own (no paper numbers, no Table IV or official test set)")
    p.add_argument("--out", required=True, help="Markdown file to write")


def _add_official_test(sub) -> None:
    text = "predict an official test set (all images) with each fold model and their ensemble; leaderboard score"
    p = command_parser(sub, "official-test", text, commands.cmd_official_test)
    p.add_argument("--index", required=True, help="index.csv of the official test set")
    p.add_argument("--run", required=True, help=RUN_EXAMPLE)
    p.add_argument("--folds", type=int, nargs="+", required=True, choices=[1, 2, 3], help="the folds whose models are given")
    p.add_argument("--models", nargs="+", required=True, help="one model file per fold, in the order of --folds")
    p.add_argument("--out-dir", required=True, help="folder for the predictions, submission.csv and metrics.json")
    add_settings(p, "official-test", "data geometry and device (the training values)")
    add_job_options(p)


def _add_official_table(sub) -> None:
    text = "table of the official test set: fold-model and ensemble balanced multiclass accuracy"
    p = command_parser(sub, "official-table", text, commands.cmd_official_table)
    p.add_argument("--metrics", nargs="+", required=True, help="metrics.json files written by official-test")
    p.add_argument("--heldout-metrics", nargs="+", default=None, help="the runs' test-part metrics.json (evaluate), for comparison")
    p.add_argument("--label", nargs=2, action="append", metavar=("RUN", "ROW"), help=LABEL_HELP)
    p.add_argument("--title", default="Official test set (ISIC 2018 Task 3)", help="title of the table")
    p.add_argument("--csv", required=True, help="CSV file to write")
    p.add_argument("--markdown", required=True, help="Markdown file to write")
    p.add_argument("--latex", required=True, help="LaTeX file to write")


def _add_convert_derm7pt(sub) -> None:
    text = "derm7pt (SPC) release_v0 -> a HAM10000-format folder with split.csv (Table IV)"
    p = command_parser(sub, "convert-derm7pt", text, commands.cmd_convert_derm7pt)
    p.add_argument("--release", required=True, help="the unpacked derm7pt release_v0 folder (meta/, images/)")
    p.add_argument("--out", required=True, help="HAM10000-format folder to write")
    p.add_argument("--split", choices=["official", "authors"], default="official",
                   help="test set: the official one (train + valid vs test) or the authors' (their indices_sp.pkl)")  # fmt: skip
    _add_image_size(p, "the converted images' size in pixels")


def _add_fetch_weights(sub) -> None:
    text = "download ImageNet weights into the local cache (checksum verified)"
    p = command_parser(sub, "fetch-weights", text, commands.cmd_fetch_weights)
    p.add_argument("backbones", nargs="+", metavar="BACKBONE", help="densenet121, inception_v3, se_resnext50 or timm:<model>")
    p.add_argument("--torch-home", default=None, help="cache folder (default: $TORCH_HOME or resources/torch)")


def _add_predict(sub) -> None:
    text = "classify images with a trained model (CSV to stdout, or --output .csv/.json)"
    p = command_parser(sub, "predict", text, commands.cmd_predict)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG ...)")
    p.add_argument("--model", required=True, help="model.pt of a training run (weights only)")
    p.add_argument("--run", default=None, help=f"canonical run name the model was trained as ({FROM_RUN_JSON})")
    p.add_argument("--output", default=None, help="FILE.csv or FILE.json (default: CSV to stdout)")
    p.add_argument("--overlay-dir", default=None, help="attention models: write <image stem>_attention.png here")
    add_settings(p, "predict", "data geometry and device (the training values)", from_run_json=("--image-size", "--crop-size", "--resize"))
    add_job_options(p, cache=False)


def _add_cost(sub) -> None:
    text = "cost plan of a grid: time each model shape on this device, price every job, project device- and wall-clock hours"
    p = command_parser(sub, "cost", text, commands.cmd_cost)
    p.add_argument("--grid", required=True, help="the jobs as JSON, or a file holding it (`snakemake cost` passes the configured grid)")
    p.add_argument("--index", nargs=2, action="append", required=True, metavar=("DATASET", "INDEX"),
                   help="index.csv of a dataset of the grid (training datasets and the official test set)")  # fmt: skip
    p.add_argument("--split", nargs=2, action="append", default=None, metavar=("DATASET", "SPLIT"), help="split.csv of a training dataset")
    p.add_argument("--steps", type=int, default=None, help="timed steps and evaluation batches per shape (default: as many as fit in about 2 s, 1 to 30)")
    p.add_argument("--devices", type=int, default=1, help="devices D the wall-clock projection runs on")
    p.add_argument("--jobs-per-device", type=int, default=1, help="jobs J at once on each device")
    p.add_argument("--efficiency", type=float, default=None,
                   help="measured fraction of its lone speed each of J jobs on one device keeps (default 1/J: no gain from sharing)")  # fmt: skip
    p.add_argument("--budget", type=float, default=None, metavar="HOURS", help="wall-clock hours available: say whether the grid fits, else what to cut")
    p.add_argument("--csv", default=None, help="write cost.csv: one row per job kind of each run")
    p.add_argument("--markdown", default=None, help="write cost.md: hours per table and in total, measured times per shape")
    add_settings(p, "train", "training settings of the jobs (Sec. II-G; learning rate and weights do not change the time)")
    add_job_options(p, cache=False)


def _add_downloads(sub) -> None:
    """Register the download subcommands on the ``patchlesion`` argument parser's subparsers."""
    for name, text, func in (
        ("download-ham10000", "download HAM10000 (checksums verified) into a HAM10000-format folder", commands.cmd_download_ham10000),
        ("download-isic2018-test", "download the ISIC 2018 Task 3 test set into a HAM10000-format folder", commands.cmd_download_isic2018_test),
        ("download-isic2019", "download the ISIC 2019 training set into a folder dataset (images + labels.csv)", commands.cmd_download_isic2019),
    ):
        p = command_parser(sub, name, text, func)
        p.add_argument("--out", required=True, help="the dataset folder to create (must not exist or be empty)")
        p.add_argument("--downloads", default="resources/downloads", help="where raw downloads are kept and resumed")
        p.add_argument("--settings", default=None, help="the config's `download` block as JSON (the workflow passes it)")
        if name == "download-isic2019":
            p.add_argument("--isic2019-url", default=None, help="base URL of the ISIC 2019 challenge files")
        else:
            p.add_argument("--source", choices=["dataverse", "isic2018"], default=None, help="where to download from (default: dataverse)")
            p.add_argument("--server", default=None, help="Dataverse server URL (default https://dataverse.harvard.edu)")
            p.add_argument("--doi", default=None, help="Dataverse dataset DOI (default doi:10.7910/DVN/DBW86T)")
            p.add_argument("--isic2018-url", default=None, help="base URL of the ISIC 2018 challenge files")
        p.add_argument("--timeout", type=positive_number, default=None, help="seconds without data before an attempt fails (default: 60)")
        p.add_argument("--retries", type=NON_NEGATIVE, default=None, help="attempts after the first failed one (default: 3)")
        cap = "12; config download: isic2019: max_file_gib" if name == "download-isic2019" else "8; config download: max_file_gib"
        p.add_argument("--max-file-gib", type=positive_number, default=None, help=f"no downloaded file may be larger (default {cap})")
        if name == "download-isic2018-test":
            p.add_argument("--from-files", nargs=2, metavar=("IMAGES_ZIP", "GROUND_TRUTH"), default=None,
                           help="no download: convert these local files")  # fmt: skip
    p = command_parser(sub, "convert-isic2019", "ISIC 2019 training files you have -> a folder dataset (images + labels.csv)", commands.cmd_convert_isic2019)
    p.add_argument("--images", required=True, help="ISIC_2019_Training_Input.zip, or the folder it unpacks to")
    p.add_argument("--ground-truth", required=True, help="ISIC_2019_Training_GroundTruth.csv")
    p.add_argument("--metadata", required=True, help="ISIC_2019_Training_Metadata.csv (its lesion_id column)")
    p.add_argument("--out", required=True, help="the dataset folder to create (must not exist or be empty)")


def build_parser() -> argparse.ArgumentParser:
    """The ``patchlesion`` argument parser."""
    parser = Parser(prog="patchlesion", description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="`patchlesion COMMAND --help` lists its options")
    for add in (_add_synthesize, _add_index, _add_index_folder, _add_prepare, _add_split, _add_train, _add_evaluate, _add_table, _add_claims,
                _add_table_figures, _add_figure4, _add_figure5, _add_report, _add_official_test, _add_official_table, _add_convert_derm7pt,
                _add_fetch_weights):  # fmt: skip
        add(sub)
    _add_downloads(sub)  # download-ham10000, download-isic2018-test, download-isic2019, convert-isic2019
    _add_predict(sub)
    _add_cost(sub)
    return parser
