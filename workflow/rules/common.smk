# All Python of the workflow: config validation, presets, wildcard constraints, input functions.
import copy
import os
import re
import shlex
import sys

from snakemake.utils import update_config, validate

from patchlesion.runs import RunSpec
from patchlesion.weights import PRETRAINED

SCHEMA = "../schemas/config.schema.yaml"


def typed(value):
    """Numbers inside list or dict values of --config: Snakemake reads those as strings."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    if isinstance(value, str):
        for parse in (int, float):
            try:
                return parse(value)
            except ValueError:
                pass
    return value


def apply_preset(config):
    """Apply the chosen preset on top of the config file(s), then the --config values on top of it."""
    overrides = typed(dict(workflow.config_settings.config))
    update_config(config, copy.deepcopy(overrides))
    validate(config, SCHEMA)
    preset = config["preset"]
    if preset == "paper":
        return
    if preset not in config.get("presets", {}):
        raise ValueError(
            f"config key 'preset': unknown preset {preset!r}; choose paper or one of "
            f"{', '.join(config.get('presets', {}))} (defined under 'presets' in config.yaml)."
        )
    update_config(config, copy.deepcopy(config["presets"][preset]))
    update_config(config, copy.deepcopy(overrides))
    validate(config, SCHEMA)


apply_preset(config)

for backbone in config["backbones"]:
    if backbone not in config["learning_rate"]:
        raise ValueError(f"config key 'learning_rate': no learning rate for backbone {backbone!r}.")
if config["crop_size"] > min(config["image_size"]):
    raise ValueError(
        f"config key 'crop_size': {config['crop_size']} is larger than image_size {config['image_size']}."
    )

DATASET = config["dataset"]
# Jobs call the `patchlesion` command of the Python environment that runs Snakemake, also when that
# environment is not activated (e.g. `.venv/bin/snakemake ...`).
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])


def table_rows(table):
    """(canonical run name, paper row label) of one table's rows for every configured backbone."""
    rows = []
    for backbone in config["backbones"]:
        for row in config[table]:
            fields = {key: value for key, value in row.items() if key != "row"}
            rows.append((RunSpec(backbone=backbone, **fields).name, row["row"]))
    return rows


def table_runs(table):
    """Canonical run names of one table, each once, in config order."""
    return list(dict.fromkeys(name for name, _ in table_rows(table)))


def table_labels(table):
    """Command-line options naming each run's row in the paper's table."""
    return " ".join(f"--label {name} {shlex.quote(label)}" for name, label in table_rows(table))


def all_runs():
    """Every run of every table, each once (a run needed by two tables is trained once)."""
    return list(dict.fromkeys(table_runs("table2")))


wildcard_constraints:
    dataset="ham10000|synthetic",
    run="|".join(all_runs()) or "no-runs",
    fold=r"\d+",
    weights_file="|".join(re.escape(entry.file) for entry in PRETRAINED.values()),


def dataset_dir(wildcards):
    """The HAM10000-format directory a dataset is read from."""
    if wildcards.dataset == "synthetic":
        return "resources/synthetic"
    return config["ham10000_dir"] or "resources/ham10000"


def run_metrics(table):
    """Test metrics of every fold of every run of a table."""
    return expand(
        "results/{dataset}/runs/{run}/fold{fold}/metrics.json",
        dataset=DATASET,
        run=table_runs(table),
        fold=config["folds"],
    )


def settings_args(wildcards):
    """Command-line options of the training settings of a run (Sec. II-G)."""
    backbone = RunSpec.from_name(wildcards.run).backbone
    width, height = config["image_size"]
    halving = " ".join(str(e) for e in config["lr_halving_epochs"])
    return (
        f"--epochs {config['epochs']} --batch-size {config['batch_size']} "
        f"--learning-rate {config['learning_rate'][backbone]} --lr-halving-epochs {halving} "
        f"--validation-every {config['validation_every']} --image-size {width} {height} "
        f"--crop-size {config['crop_size']} --seed {config['seed']} --device {config['device']}"
        + (" --pretrained --torch-home resources/torch" if uses_weights(backbone) else "")
    )


def uses_weights(backbone):
    """Whether runs of this backbone start from the cached ImageNet weights."""
    return config["pretrained"] and backbone in PRETRAINED


def weights_input(wildcards):
    """The cached ImageNet weights a training job needs (none for random initialisation)."""
    backbone = RunSpec.from_name(wildcards.run).backbone
    if not uses_weights(backbone):
        return []
    return [f"resources/torch/hub/checkpoints/{PRETRAINED[backbone].file}"]


def weights_backbone(wildcards):
    """The backbone whose ImageNet weights are stored in a cache file."""
    return next(name for name, entry in PRETRAINED.items() if entry.file == wildcards.weights_file)


def test_model(wildcards):
    """The model of a fold that is evaluated on the test part (config key test_checkpoint)."""
    name = "model.pt" if config["test_checkpoint"] == "best" else "model_last.pt"
    return f"results/{wildcards.dataset}/runs/{wildcards.run}/fold{wildcards.fold}/{name}"


def final_outputs():
    """Everything `snakemake` (rule all) produces for the configured dataset."""
    return expand("results/{dataset}/tables/table2.{ext}", dataset=DATASET, ext=["csv", "md"])
