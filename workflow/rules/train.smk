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


rule evaluate:
    input:
        index="results/{dataset}/index.csv",
        split="results/{dataset}/split.csv",
        cache=image_cache,
        model=test_model,
    output:
        predictions="results/{dataset}/runs/{run}/fold{fold}/predictions.csv",
        metrics="results/{dataset}/runs/{run}/fold{fold}/metrics.json",
    params:
        cache=subpath(input.cache, parent=True),
        settings=settings_options("evaluate"),
    log:
        "results/{dataset}/logs/evaluate/{run}/fold{fold}.log",
    benchmark:
        "results/{dataset}/benchmarks/evaluate/{run}/fold{fold}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion evaluate --index {input.index:q} --split {input.split:q} --fold {wildcards.fold} "
        "--run {wildcards.run} --model {input.model:q} --predictions {output.predictions:q} "
        "--metrics {output.metrics:q} --cache {params.cache:q} --threads {threads} {params.settings} > {log:q} 2>&1"
