# All Python of the workflow, in six sections: configuration and validation; datasets; runs, tables
# and figures; the official test set; the cost plan; the final outputs (and the wildcard constraints).
import copy
import csv
import difflib
import json
import os
import re
import shlex
import sys

from jsonschema import ValidationError
from jsonschema.exceptions import best_match
from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config, validate

from patchlesion.engine.grid import Grid, GridTable, OfficialTest
from patchlesion.engine.settings import TrainSettings, per_backbone
from patchlesion.errors import PatchlesionError
from patchlesion.method.balancing import BALANCINGS
from patchlesion.method.classes import ClassSet
from patchlesion.method.runs import RunSpec
from patchlesion.method.timm_backbones import PAPER_EQUIVALENTS, is_timm
from patchlesion.method.weights import PRETRAINED, backbone_of_target, weights_target

SCHEMA = "../schemas/config.schema.yaml"
#: The ImageNet weight cache (torch.hub's layout under TORCH_HOME), filled by rule fetch_weights.
TORCH_HOME = "resources/torch"
#: The table whose runs are also scored on the official test set (ISIC 2018 Task 3 for HAM10000).
OFFICIAL_TEST_TABLE = "II"
#: The site placeholders of profiles/slurm/config.yaml, replaced by the user before the first cluster run.
SLURM_PLACEHOLDERS = ("PATCHLESION_ACCOUNT", "PATCHLESION_PARTITION", "PATCHLESION_GPU_PARTITION")


# ==================================================================================================
# Configuration and validation
# ==================================================================================================


def typed(value):
    """Numbers inside list or dict values of --config, and YAML's true, false and null anywhere
    (config.yaml's spelling; Snakemake reads only True, False and None as such): Snakemake reads
    those as strings."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    if value in ("true", "false"):
        return value == "true"
    if value in ("null", "~"):
        return None
    if isinstance(value, str):
        for parse in (int, float):
            try:
                return parse(value)
            except ValueError:
                pass
    return value


def config_error(message):
    """Stop before any job is planned with one `error:` line and exit status 2, as `patchlesion` does
    for bad input (Snakemake's own report of a failed validation prints the whole config and schema)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def schema_problem(error, config):
    """One line for a schema violation: the key (and table row), the bad value, and what is allowed."""
    path = "/".join(str(part) for part in error.absolute_path)
    rows = [node for node in _nodes(config, error.absolute_path) if isinstance(node, dict) and "row" in node]
    row = f" (row {rows[-1]['row']!r})" if rows else ""
    where = f"config key '{path}'{row}"
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        allowed += [pattern.strip("^$()").replace("|", ", ") for pattern in error.schema.get("patternProperties", {})]
        unknown = [key for key in error.instance if key not in error.schema.get("properties", {})
                   and not any(re.search(pattern, key) for pattern in error.schema.get("patternProperties", {}))]
        under = f" under '{path}'{row}" if path else ""
        guess = difflib.get_close_matches(unknown[0], allowed, n=1)
        meant = f" (did you mean {guess[0]!r}?)" if guess else ""
        return f"config key {unknown[0]!r}{under} is not a setting{meant}; the settings{under} are: {', '.join(allowed)}."
    if error.validator == "enum":
        values = ", ".join(json.dumps(value) if isinstance(value, bool) else str(value) for value in error.validator_value)
        return f"{where}: {error.instance!r} is not allowed; allowed values: {values}."
    return f"{where}: {error.message}."


def _nodes(config, path):
    """The values along a key path of the config (the config itself first)."""
    nodes = [config]
    for part in path:
        try:
            nodes.append(nodes[-1][part])
        except (KeyError, IndexError, TypeError):
            break
    return nodes


def validated(config):
    """Snakemake's validate (which also fills in the schema defaults), its error as one line."""
    try:
        validate(config, SCHEMA)
    except WorkflowError as failure:
        error = failure.__context__  # the jsonschema error, raised inside Snakemake's `except`
        if not isinstance(error, ValidationError):
            raise
        config_error(schema_problem(best_match([error]), config) + " The keys are described in config.yaml and docs/running.md §6.")


def apply_preset(config):
    """Apply the chosen preset on top of the config file(s), then the --config values on top of it."""
    overrides = typed(dict(workflow.config_settings.config))
    update_config(config, copy.deepcopy(overrides))
    validated(config)
    preset = config["preset"]
    if preset == "paper":
        return
    if preset not in config.get("presets", {}):
        config_error(
            f"config key 'preset': unknown preset {preset!r}; choose paper or one of "
            f"{', '.join(config.get('presets', {}))} (defined under 'presets' in config.yaml)."
        )
    update_config(config, copy.deepcopy(config["presets"][preset]))
    update_config(config, copy.deepcopy(overrides))
    validated(config)


def run_backbone(backbone):
    """The backbone a configured one is trained as: se_resnext50 from timm (legacy_seresnext50_32x4d,
    the same network) when se_resnext50_source is timm; every other backbone as it is."""
    if config["se_resnext50_source"] == "timm":
        return {paper: model for model, paper in PAPER_EQUIVALENTS.items()}.get(backbone, backbone)
    return backbone


def check_backbone(backbone):
    """A backbone has a learning rate, and a timm model exists in timm's catalogue and takes the
    configured crops (this imports timm and torch, only when a timm backbone is configured)."""
    try:
        per_backbone(config["learning_rate"], backbone)
        if is_timm(backbone):
            from patchlesion.method.backbones import BACKBONES

            BACKBONES.check(backbone)
            try:
                BACKBONES[backbone].check_crop_size(config["crop_size"])
            except PatchlesionError as error:
                config_error(f"config key 'crop_size': {error}")
    except PatchlesionError as error:
        config_error(f"config key 'backbones': {error}")


def check_config(config):
    """What the schema cannot say: a learning rate per backbone, timm models that exist, crops that
    fit, table references that name a row."""
    figures = [figure for figure in config.get("figures", {}).values() if figure]
    for backbone in dict.fromkeys([*config["backbones"], *(figure["backbone"] for figure in figures if "backbone" in figure)]):
        check_backbone(run_backbone(backbone))
    if config["crop_size"] > min(config["image_size"]):
        config_error(f"config key 'crop_size': {config['crop_size']} is larger than image_size {config['image_size']}.")
    for table, spec in config["tables"].items():
        if spec is None:
            continue
        labels = [row["row"] for row in spec["rows"]]
        if spec.get("reference") and spec["reference"] not in labels:
            config_error(
                f"config key 'tables/{table}/reference': {spec['reference']!r} is not one of the table's rows "
                f"({', '.join(labels)})."
            )


def check_profile():
    """Stop at planning when a profile still holds a SLURM placeholder: jobs would be submitted with it
    (sbatch fails per job, or runs under a partition of that name). Read from the resources Snakemake
    resolved (the profile's default-resources and set-resources, or the same options on the command line)."""
    settings = workflow.resource_settings
    where = {}  # (placeholder, resource) -> default-resources or the rules whose set-resources hold it
    resources = [("default-resources", settings.default_resources or {})] + list(settings.overwrite_resources.items())
    for rule, values in resources:
        for name, value in values.items():
            raw = str(getattr(value, "raw", value))
            if raw in SLURM_PLACEHOLDERS:
                where.setdefault((raw, name), []).append(rule)
    if where:
        found = "; ".join(f"{placeholder} ({name} of {', '.join(rules)})" for (placeholder, name), rules in where.items())
        config_error(
            f"the SLURM profile's placeholders are not filled in: {found}. Replace them in profiles/slurm/config.yaml "
            "(or your copy) with your SLURM account, a CPU partition and a GPU partition; the file says how to find them "
            "(docs/running.md §3)."
        )


apply_preset(config)
check_config(config)
check_profile()

DATASET = config["dataset"]
#: The tables and figures that are built: a table or figure set to null in the config is left out.
TABLES = [table for table, spec in config["tables"].items() if spec is not None]
FIGURES = {name: spec for name, spec in (config.get("figures") or {}).items() if spec is not None}
# Jobs call the `patchlesion` command of the Python environment that runs Snakemake, also when that
# environment is not activated (e.g. `.venv/bin/snakemake ...`).
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
# How many GPU jobs share one device: read by each job's GPU lease (patchlesion.engine.gpulease), so
# that no device holds more; passed to the jobs' environment, not their command lines, because it
# changes where a job runs, not what it computes (a changed value reruns nothing). Set, not read, so
# not an `envvars:` requirement.
os.environ.update(PATCHLESION_GPU_JOBS_PER_DEVICE=str(config["gpu_jobs_per_device"]))


# ==================================================================================================
# Datasets
# ==================================================================================================

#: Every dataset the workflow reads, and what sets it apart:
#:   folds          the folds trained on it (derm7pt: one model per run, no cross-validation);
#:   dir            a configured HAM10000-format copy, or None: resources/<dataset>, which a rule makes
#:                  (download, synthesize, or derm7pt's conversion from derm7pt_dir);
#:   official_test  the dataset scored as its "official test set" (ISIC 2018 Task 3 for HAM10000, a
#:                  held-out synthetic set for the demo), or None;
#:   available      whether tables on it are built (derm7pt needs derm7pt_dir; the others are fetched).
DATASETS = {
    "ham10000": {"folds": config["folds"], "dir": config["ham10000_dir"], "official_test": "isic2018_test", "available": True},
    "synthetic": {"folds": config["folds"], "dir": None, "official_test": "synthetic_test", "available": True},
    "synthetic_test": {"folds": [], "dir": None, "official_test": None, "available": True},
    "isic2018_test": {"folds": [], "dir": config["isic2018_test_dir"], "official_test": None, "available": True},
    "derm7pt": {"folds": [1], "dir": None, "official_test": None, "available": bool(config["derm7pt_dir"])},
}


#: Folder datasets (config key `datasets`, docs/own-data.md §1): any labelled image folder; each NAME
#: gets results/NAME/ like the datasets above. Their index rule (index_folder) also writes the
#: dataset's description (results/NAME/dataset.json: classes, benign ones, which columns exist), which
#: split and train read. Without `dir`, resources/NAME/ is made by a rule (download_isic2019).
FOLDER_DATASETS = config.get("datasets") or {}
#: Folder datasets the workflow can make under resources/ when their `dir` is null.
FETCHED_FOLDER_DATASETS = ("isic2019",)


def check_datasets():
    """Folder datasets: names that are not taken, class lists that make a class set, a folder for the
    one in use; `dataset` names a known dataset; the authors' split only on HAM10000."""
    for name, spec in FOLDER_DATASETS.items():
        if name in DATASETS:
            config_error(f"config key 'datasets/{name}': {name} is a built-in dataset; give your dataset another name.")
        try:
            ClassSet(tuple(spec["classes"]), tuple(spec.get("benign", ())))
        except PatchlesionError as error:
            config_error(f"config key 'datasets/{name}/classes': {error}")
    if DATASET not in ("ham10000", "synthetic", *FOLDER_DATASETS):
        defined = f"; datasets defined under 'datasets': {', '.join(FOLDER_DATASETS)}" if FOLDER_DATASETS else ""
        config_error(f"config key 'dataset': unknown dataset {DATASET!r}; choose ham10000, synthetic or a dataset under 'datasets'{defined} (docs/own-data.md §1).")
    if DATASET in FOLDER_DATASETS:
        if not FOLDER_DATASETS[DATASET].get("dir") and DATASET not in FETCHED_FOLDER_DATASETS:
            config_error(f"config key 'datasets/{DATASET}/dir': give the folder that holds the images of dataset {DATASET}.")
        if config["split"] == "published":
            config_error(f"config key 'split': published is the authors' split of HAM10000; dataset {DATASET} needs split: stratified.")


check_datasets()
for _name, _spec in FOLDER_DATASETS.items():
    DATASETS[_name] = {"folds": config["folds"], "dir": _spec.get("dir"), "official_test": None, "available": True}


def folder_dataset(dataset):
    """The config entry of a folder dataset, or None for a built-in dataset."""
    return FOLDER_DATASETS.get(dataset)


def has_diagnosis_types(dataset):
    """Whether a dataset's images carry a diagnosis type (diagnosis-guided weighting needs one)."""
    spec = folder_dataset(dataset)
    return spec is None or bool(spec.get("diagnosis_type_column"))


def index_checkpoint(dataset):
    """The checkpoint that indexes a dataset: index (HAM10000 format) or index_folder."""
    return checkpoints.index_folder if folder_dataset(dataset) else checkpoints.index


def folder_inputs(wildcards):
    """The image folder of a folder dataset and, for a folder of your own, its labels CSV (a changed
    CSV reindexes; a folder that a rule makes under resources/ holds its CSV)."""
    spec, folder = folder_dataset(wildcards.dataset), dataset_dir(wildcards)
    if not spec.get("dir"):
        return {"dir": folder}
    return {"dir": folder, "labels": os.path.join(folder, spec.get("labels", "labels.csv"))}


def index_folder_options(wildcards):
    """The options of `patchlesion index-folder` from a folder dataset's config entry."""
    spec = folder_dataset(wildcards.dataset)
    options = [f"--name {wildcards.dataset}", "--classes " + " ".join(map(shlex.quote, spec["classes"]))]
    options += ["--benign " + " ".join(map(shlex.quote, spec["benign"]))] if spec.get("benign") else []
    options += [f"--labels {shlex.quote(spec.get('labels', 'labels.csv'))}"]
    for role in ("image", "label", "group", "diagnosis_type"):
        if spec.get(f"{role}_column"):
            options.append(f"--{role.replace('_', '-')}-column {shlex.quote(spec[f'{role}_column'])}")
    return " ".join(options)


def description_input(wildcards):
    """The description file split and train read for a folder dataset (none for a built-in one)."""
    return [f"results/{wildcards.dataset}/dataset.json"] if folder_dataset(wildcards.dataset) else []


def dataset_argument(wildcards):
    """The --dataset of split and train: a built-in dataset's name, a folder dataset's description."""
    return description_input(wildcards)[0] if folder_dataset(wildcards.dataset) else wildcards.dataset


def dataset_folds(dataset):
    """The folds trained on a dataset."""
    return DATASETS[dataset]["folds"]


def dataset_dir(wildcards):
    """The HAM10000-format directory a dataset is read from (a configured copy, or one the workflow
    makes under resources/)."""
    return DATASETS[wildcards.dataset]["dir"] or f"resources/{wildcards.dataset}"


def download_settings(wildcards):
    """The config's download block as one shell-quoted JSON argument of the download rules."""
    return shlex.quote(json.dumps(config.get("download", {})))


def cache_manifest(dataset):
    """The manifest of a dataset's decoded-image cache at the configured image size (rule prepare;
    images cropped to its aspect ratio first: rule prepare_crop, a folder of its own)."""
    width, height = config["image_size"]
    fit = "" if config["resize"] == "stretch" else f"-{config['resize']}"
    return f"results/{dataset}/cache/{width}x{height}{fit}/manifest.json"


def image_cache(wildcards):
    """The decoded-image cache of the dataset a job trains or evaluates on."""
    return cache_manifest(wildcards.dataset)


def indexed_images(wildcards):
    """Every image the index lists: a changed image (newer file) reruns the cache.

    The index is a checkpoint, so the image list is read once the index exists and is the same in
    every later invocation (a list that grew after the first run would itself trigger a rerun). The
    index itself is a plain input of rule prepare, so that a dry run prints its path."""
    index = index_checkpoint(wildcards.dataset).get(dataset=wildcards.dataset).output[0]
    with open(index, newline="") as handle:
        return [row["path"] for row in csv.DictReader(handle)]


# ==================================================================================================
# Runs, tables and figures
# ==================================================================================================


def refused_rows(table):
    """The row labels of a table that its dataset cannot train: diagnosis-guided weighting without diagnosis types."""
    if has_diagnosis_types(table_dataset(table)):
        return []
    return [row["row"] for row in config["tables"][table]["rows"] if BALANCINGS[row["balancing"]].diagnosis_factors]


def table_rows(table):
    """(canonical run name, paper row label) of one table's rows for every configured backbone (rows
    its dataset cannot train left out: refused_rows)."""
    rows, refused = [], refused_rows(table)
    for backbone in config["backbones"]:
        for row in config["tables"][table]["rows"]:
            if row["row"] in refused:
                continue
            fields = {key: value for key, value in row.items() if key != "row"}
            rows.append((RunSpec(backbone=run_backbone(backbone), **fields).name, row["row"]))
    return rows


def table_runs(table):
    """Canonical run names of one table, each once, in config order."""
    return list(dict.fromkeys(name for name, _ in table_rows(table)))


def table_dataset(table):
    """The dataset a table is computed on: its `dataset` key (Table IV: derm7pt), else `dataset`."""
    return config["tables"][table].get("dataset", DATASET)


def built_tables():
    """(dataset, table) of every table the workflow builds: those on an available dataset."""
    return [(table_dataset(t), t) for t in TABLES if DATASETS[table_dataset(t)]["available"]]


def figure4_run():
    """The run whose attention weights Fig. 4 shows."""
    fig4 = FIGURES["fig4"]
    return RunSpec(**{k: v for k, v in fig4["run"].items() if k != "row"}, backbone=run_backbone(fig4["backbone"])).name


def figure5_runs():
    """(run name, NC, p_d) of every point of Fig. 5."""
    fig5 = FIGURES["fig5"]
    return [
        (RunSpec(**{**{k: v for k, v in fig5["run"].items() if k != "row"}, "backbone": run_backbone(fig5["backbone"]), "n_crops": n, "patch_dropout": p}).name, n, p)
        for n in fig5["n_crops"]
        for p in fig5["patch_dropout"]
    ]


def all_runs():
    """Every run of every table and figure, each once (a run needed twice is trained once)."""
    names = [name for table in TABLES for name in table_runs(table)]
    if "fig4" in FIGURES:
        names.append(figure4_run())
    names += [name for name, _, _ in figure5_runs()] if "fig5" in FIGURES else []
    return list(dict.fromkeys(names))


def check_diagnosis_types():
    """Diagnosis-guided weighting needs diagnosis types (Sec. II-F): on a dataset without them a
    table's rows with it are left out, with one note each time the workflow is planned; a figure
    built on such runs is an error."""
    for table in TABLES:
        dataset = table_dataset(table)
        if DATASETS[dataset]["available"] and refused_rows(table):
            rows = ", ".join(map(repr, refused_rows(table)))
            print(f"note: Table {table} on {dataset}: row(s) {rows} left out: diagnosis-guided weighting needs each image's diagnosis "
                  f"type, and dataset {dataset} has none (set datasets/{dataset}/diagnosis_type_column; docs/own-data.md §6).", file=sys.stderr)  # fmt: skip
    if has_diagnosis_types(DATASET):
        return
    for name, figure in FIGURES.items():
        if BALANCINGS[figure["run"].get("balancing", "none")].diagnosis_factors:
            config_error(
                f"config key 'figures/{name}/run/balancing': diagnosis_weighting needs each image's diagnosis type, and dataset "
                f"{DATASET} has none; choose another balancing or set datasets/{DATASET}/diagnosis_type_column."
            )


check_diagnosis_types()


def run_settings(run):
    """The training settings of a run (Sec. II-G): the config's, with its backbone's learning rate and
    ImageNet initialisation (patchlesion.engine.settings spells every setting once)."""
    return TrainSettings.from_config(config, RunSpec.from_name(run).backbone)


def train_priority(wildcards):
    """Priority of a training job: the longest first, so that no long job starts last and runs alone
    while the other cores idle. A rough measure of a job's work, not a cost plan: crops per training
    image (Ordered-Crop trains on all NC, the plain strategies on one), twice that for a GRU, five times
    for oversampling's longer epochs (7 classes x the largest class's share of about 2/3)."""
    spec = RunSpec.from_name(wildcards.run)
    work = spec.n_crops if spec.strategy == "ordered" else 1
    return work * (2 if spec.aggregation == "gru" else 1) * (5 if spec.balancing == "oversampling" else 1)


def settings_options(command):
    """Params function of a rule: the options of `patchlesion <command>` that give the job's run its
    settings; training from ImageNet weights also names their cache."""

    def options(wildcards):
        settings = run_settings(wildcards.run)
        weights = f" --torch-home {TORCH_HOME}" if command == "train" and settings.pretrained else ""
        return settings.command_line(command) + weights

    return options


def weights_input(wildcards):
    """The cached ImageNet weights a training job needs (none for random initialisation): the
    checkpoint, or a timm backbone's SHA-256 record that names its checkpoint."""
    if not run_settings(wildcards.run).pretrained:
        return []
    return [str(weights_target(RunSpec.from_name(wildcards.run).backbone, TORCH_HOME))]


def weights_backbone(wildcards):
    """The backbone whose ImageNet weights a cache file holds or records."""
    return backbone_of_target(wildcards.weights_file)


def weights_targets():
    """Every cache file that fetch_weights can make (relative to TORCH_HOME): the paper backbones'
    checkpoints and the records of the timm backbones of the configured runs."""
    backbones = [*PRETRAINED, *(RunSpec.from_name(run).backbone for run in all_runs())]
    return {weights_target(b, TORCH_HOME).relative_to(TORCH_HOME) for b in backbones if b in PRETRAINED or is_timm(b)}


def test_checkpoint(dataset):
    """best or last: config key test_checkpoint, one value for all datasets or one per dataset."""
    setting = config["test_checkpoint"]
    return setting if isinstance(setting, str) else setting.get(dataset, "best")


def test_model_path(dataset, run, fold):
    """The model of a fold that is evaluated on the test part (config key test_checkpoint)."""
    name = "model.pt" if test_checkpoint(dataset) == "best" else "model_last.pt"
    return f"results/{dataset}/runs/{run}/fold{fold}/{name}"


def datasets_on_folds(folds):
    """Wildcard constraint of an evaluation rule: the datasets whose runs are trained on ``folds``."""
    return "|".join(re.escape(name) for name, spec in DATASETS.items() if list(spec["folds"]) == list(folds))


def test_models(folds):
    """Input function of an evaluation rule: test_model_path of its dataset and run, one per fold."""

    def models(wildcards):
        return [test_model_path(wildcards.dataset, wildcards.run, fold) for fold in folds]

    return models


def table_metrics(dataset, table):
    """Test metrics of every fold of every run of a table (predictions.csv lies beside each)."""
    return expand("results/{dataset}/runs/{run}/fold{fold}/metrics.json", dataset=dataset, run=table_runs(table), fold=dataset_folds(dataset))


def table_inputs(wildcards):
    """table_metrics of a job's dataset and table."""
    return table_metrics(wildcards.dataset, wildcards.table)


def table_options(wildcards):
    """Command-line options of the table rule: title, each run's paper row label, the reference row."""
    spec = config["tables"][wildcards.table]
    title = f"Table {wildcards.table} ({wildcards.dataset}): {spec.get('title', '')}".rstrip(": ")
    options = [f"--title {shlex.quote(title)}"]
    options += [f"--label {name} {shlex.quote(label)}" for name, label in table_rows(wildcards.table)]
    if folder_dataset(wildcards.dataset):
        options.append("--no-paper")  # the paper's numbers are HAM10000's
    if spec.get("reference") and spec["reference"] not in refused_rows(wildcards.table):
        options.append(f"--reference {shlex.quote(spec['reference'])}")
    return " ".join(options)


def table_figures_options(wildcards):
    """Command-line options of the table_figures rule: each run's paper row label (its figures have no reference row)."""
    return " ".join(f"--label {name} {shlex.quote(label)}" for name, label in table_rows(wildcards.table))


def claims_inputs(wildcards):
    """Test metrics of every run the paper's claims compare: every built table's and Fig. 5's (predictions.csv beside each)."""
    paths = [path for dataset, table in built_tables() for path in table_metrics(dataset, table)]
    return paths + (figure5_inputs(wildcards) if "fig5" in FIGURES else [])


def claims_options(wildcards):
    """Command-line options of the claims rule: each built table's metrics and row labels, Fig. 5's metrics."""
    options = []
    for dataset, table in built_tables():
        options.append(f"--table-metrics {table} " + " ".join(map(shlex.quote, table_metrics(dataset, table))))
        options += [f"--label {table} {name} {shlex.quote(label)}" for name, label in table_rows(table)]
        why = f"dataset {dataset} has no diagnosis types"
        options += [f"--left-out {table} {shlex.quote(row)} {shlex.quote(why)}" for row in refused_rows(table)]
    if "fig5" in FIGURES:
        options.append("--figure5-metrics " + " ".join(map(shlex.quote, figure5_inputs(wildcards))))
    return " ".join(options)


def figure4_model(wildcards):
    """The fold model of Fig. 4's run that is evaluated on the test part."""
    return test_model_path(wildcards.dataset, figure4_run(), FIGURES["fig4"].get("fold", 1))


def figure4_options(wildcards):
    """Command-line options of Fig. 4: its run, images per class and the data geometry."""
    fig4 = FIGURES["fig4"]
    return (
        f"--run {figure4_run()} --fold {fig4.get('fold', 1)} --images-per-class {fig4.get('images_per_class', 3)} "
        + run_settings(figure4_run()).command_line("figure4")
    )


def figure5_inputs(wildcards):
    """Test metrics of every fold of every run of Fig. 5."""
    return expand(
        "results/{dataset}/runs/{run}/fold{fold}/metrics.json",
        dataset=wildcards.dataset,
        run=[name for name, _, _ in figure5_runs()],
        fold=dataset_folds(wildcards.dataset),
    )


# ==================================================================================================
# The official test set: every fold model of every Table II run and their ensemble
# ==================================================================================================


def official_test_set(dataset):
    """The dataset scored as the official test set of a training dataset."""
    if not DATASETS[dataset]["official_test"]:
        with_one = [name for name, entry in DATASETS.items() if entry["official_test"]]
        raise ValueError(f"dataset {dataset!r} has no official test set (only {', '.join(with_one)}).")
    return DATASETS[dataset]["official_test"]


def official_test_index(wildcards):
    """index.csv of the official test set of a training dataset."""
    return f"results/{official_test_set(wildcards.dataset)}/index.csv"


def official_test_cache(wildcards):
    """The decoded-image cache of the official test set of a training dataset."""
    return cache_manifest(official_test_set(wildcards.dataset))


def official_test_models(wildcards):
    """The fold models of a run that predict the official test set (the test_checkpoint models)."""
    return [test_model_path(wildcards.dataset, wildcards.run, fold) for fold in dataset_folds(wildcards.dataset)]


def official_test_folds(wildcards):
    """The folds of official_test_models, in the same order."""
    return " ".join(str(fold) for fold in dataset_folds(wildcards.dataset))


def official_test_inputs(wildcards):
    """Leaderboard scores (metrics.json) of every run of the official-test table."""
    return expand(
        "results/{dataset}/official_test/{run}/metrics.json", dataset=wildcards.dataset, run=table_runs(OFFICIAL_TEST_TABLE)
    )


def official_test_heldout_inputs(wildcards):
    """Test-part metrics of the same runs' fold models (Table II's protocol), shown beside the official scores."""
    return table_metrics(wildcards.dataset, OFFICIAL_TEST_TABLE)


def official_test_options(wildcards):
    """Title and each run's row label of the official-test table."""
    title = f"Official test set (ISIC 2018 Task 3), Table {OFFICIAL_TEST_TABLE} runs trained on {wildcards.dataset}"
    if wildcards.dataset != "ham10000":
        title += f" (test set: {official_test_set(wildcards.dataset)})"
    return " ".join(
        [f"--title {shlex.quote(title)}"] + [f"--label {name} {shlex.quote(label)}" for name, label in table_rows(OFFICIAL_TEST_TABLE)]
    )


# ==================================================================================================
# The cost plan: the jobs planned above, priced on this machine (docs/performance.md §8)
# ==================================================================================================


def cost_grid():
    """The jobs of the tables and figures that `snakemake` builds, as patchlesion.engine.grid.Grid:
    each table's runs and folds, Fig. 4's model, Fig. 5's runs and the official-test jobs."""
    tables = [GridTable(t, d, tuple(dataset_folds(d)), tuple(table_runs(t))) for d, t in built_tables()]
    if "fig4" in FIGURES:
        tables.append(GridTable("fig4", DATASET, (FIGURES["fig4"].get("fold", 1),), (figure4_run(),), evaluate=False))
    if "fig5" in FIGURES:
        tables.append(GridTable("fig5", DATASET, tuple(dataset_folds(DATASET)), tuple(name for name, _, _ in figure5_runs())))
    official = OfficialTest(OFFICIAL_TEST_TABLE, official_test_set(DATASET)) if official_test_outputs() else None
    return Grid(tuple(tables), official)


def cost_inputs(wildcards):
    """index.csv and split.csv of every dataset the grid trains on, index.csv of its official test set."""
    grid = cost_grid()
    trained = dict.fromkeys(table.dataset for table in grid.tables)
    inputs = {f"index_{d}": f"results/{d}/index.csv" for d in trained} | {f"split_{d}": f"results/{d}/split.csv" for d in trained}
    if grid.official_test:
        inputs[f"index_{grid.official_test.test_set}"] = f"results/{grid.official_test.test_set}/index.csv"
    return inputs


def cost_options(wildcards, input):
    """The options of `patchlesion cost`: the grid, each dataset's files, the job settings and the config's cost block."""
    files = " ".join(f"--{key.split('_', 1)[0]} {key.split('_', 1)[1]} {path}" for key, path in input.items())
    cost = config["cost"]
    options = [f"--grid {shlex.quote(cost_grid().to_json())}", files, run_settings(all_runs()[0]).command_line("train")]
    options += [f"--devices {cost['devices']}", f"--jobs-per-device {cost['jobs_per_device']}"]
    options += [f"--{key.replace('_', '-')} {cost[key]}" for key in ("steps", "efficiency") if cost.get(key) is not None]
    options += [f"--budget {cost['budget_hours']}"] if cost.get("budget_hours") is not None else []
    return " ".join(options)


# ==================================================================================================
# Final outputs
# ==================================================================================================


def official_test_outputs():
    """The official-test table of the configured dataset, if the config asks for it (official_test), the
    dataset has an official test set and Table II is configured."""
    if not config["official_test"] or not DATASETS[DATASET]["official_test"] or OFFICIAL_TEST_TABLE not in TABLES:
        return []
    return expand("results/{dataset}/tables/official_test.{ext}", dataset=DATASET, ext=["csv", "md", "tex"])


def table_outputs():
    """Every table and its figures (Table IV on derm7pt when derm7pt_dir is set), and the official-test table."""
    outputs = []
    for dataset, table in built_tables():
        outputs += expand("results/{dataset}/tables/table_{table}.{ext}", dataset=dataset, table=table, ext=["csv", "md", "tex"])
        outputs += expand("results/{dataset}/figures/table_{table}_{kind}.png", dataset=dataset, table=table, kind=["confusion", "curves"])
    return outputs + official_test_outputs()


def figure_outputs():
    """The paper's figures for the configured dataset."""
    return [f"results/{DATASET}/figures/{name}.png" for name in ("figure4", "figure5") if name.replace("figure", "fig") in FIGURES]


def report_options():
    """The tables of the report (only those this configuration builds: no table left from an earlier one)
    and those that lie under another dataset than `dataset` (Table IV: derm7pt)."""
    tables = [table for _, table in built_tables()] + (["official_test"] if official_test_outputs() else [])
    options = [f"--table-dataset {table} {dataset}" for dataset, table in built_tables() if dataset != DATASET]
    options += ["--own-data"] if folder_dataset(DATASET) else []
    return " ".join(options + ["--only " + " ".join(tables)] if tables else options)


def final_outputs():
    """Everything `snakemake` produces by default (the input of the all rule): tables, figures, REPORT.md."""
    return table_outputs() + figure_outputs() + ["results/REPORT.md"]


wildcard_constraints:
    dataset="|".join(DATASETS),
    run="|".join(re.escape(name) for name in all_runs()) or "no-runs",
    table="|".join(TABLES),
    fold=r"\d+",
    width=r"\d+",
    height=r"\d+",
    weights_file="|".join(sorted(re.escape(str(path)) for path in weights_targets())),
