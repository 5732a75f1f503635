rule train:
    input:
        index="results/{dataset}/index.csv",
        split="results/{dataset}/split.csv",
        cache=image_cache,
        weights=weights_input,
        description=description_input,
    output:
        model="results/{dataset}/runs/{run}/fold{fold}/model.pt",
        last="results/{dataset}/runs/{run}/fold{fold}/model_last.pt",
        history="results/{dataset}/runs/{run}/fold{fold}/history.csv",
        info="results/{dataset}/runs/{run}/fold{fold}/run.json",
    params:
        out_dir=subpath(output.model, parent=True),
        cache=subpath(input.cache, parent=True),
        settings=settings_options("train"),
        # Resume state, saved every epoch; not an output, so Snakemake keeps it when a killed job reruns.
        checkpoint="results/{dataset}/checkpoints/{run}/fold{fold}/resume.pt",
        dataset=dataset_argument,
    log:
        "results/{dataset}/logs/train/{run}/fold{fold}.log",
    benchmark:
        "results/{dataset}/benchmarks/train/{run}/fold{fold}.tsv"
    priority: train_priority
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion train --dataset {params.dataset:q} --index {input.index:q} --split {input.split:q} --fold {wildcards.fold} "
        "--run {wildcards.run} --out-dir {params.out_dir:q} --checkpoint {params.checkpoint:q} --cache {params.cache:q} "
        "--threads {threads} {params.settings} > {log:q} 2>&1"


# Every fold of a run on the test part, in one job: the test images are read once and the process
# starts once (docs/performance.md §10). The configured folds here; derm7pt's one fold, when the
# configured folds are others, by rule evaluate_derm7pt below.
rule evaluate:
    input:
        index="results/{dataset}/index.csv",
        split="results/{dataset}/split.csv",
        cache=image_cache,
        models=test_models(config["folds"]),
    output:
        predictions=expand("results/{{dataset}}/runs/{{run}}/fold{fold}/predictions.csv", fold=config["folds"]),
        metrics=expand("results/{{dataset}}/runs/{{run}}/fold{fold}/metrics.json", fold=config["folds"]),
    wildcard_constraints:
        dataset=datasets_on_folds(config["folds"]),
    params:
        folds=" ".join(map(str, config["folds"])),
        cache=subpath(input.cache, parent=True),
        settings=settings_options("evaluate"),
    log:
        "results/{dataset}/logs/evaluate/{run}.log",
    benchmark:
        "results/{dataset}/benchmarks/evaluate/{run}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion evaluate --index {input.index:q} --split {input.split:q} --fold {params.folds} "
        "--run {wildcards.run} --model {input.models:q} --predictions {output.predictions:q} "
        "--metrics {output.metrics:q} --cache {params.cache:q} --threads {threads} {params.settings} > {log:q} 2>&1"


# derm7pt trains one fold: when the configured folds are others, its runs are evaluated by this copy
# of rule evaluate for that fold.
if DATASETS["derm7pt"]["folds"] != config["folds"]:

    use rule evaluate as evaluate_derm7pt with:
        input:
            index="results/{dataset}/index.csv",
            split="results/{dataset}/split.csv",
            cache=image_cache,
            models=test_models(DATASETS["derm7pt"]["folds"]),
        output:
            predictions=expand("results/{{dataset}}/runs/{{run}}/fold{fold}/predictions.csv", fold=DATASETS["derm7pt"]["folds"]),
            metrics=expand("results/{{dataset}}/runs/{{run}}/fold{fold}/metrics.json", fold=DATASETS["derm7pt"]["folds"]),
        wildcard_constraints:
            dataset="derm7pt",
        params:
            folds=" ".join(map(str, DATASETS["derm7pt"]["folds"])),
            cache=subpath(input.cache, parent=True),
            settings=settings_options("evaluate"),
