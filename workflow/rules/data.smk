rule synthesize:
    output:
        directory("resources/synthetic"),
    params:
        n_images=config["synthetic"]["n_images"],
        size=" ".join(str(v) for v in config["synthetic"]["image_size"]),
        seed=config["synthetic"]["seed"],
    log:
        "results/synthetic/logs/synthesize.log",
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion synthesize --out {output} --n-images {params.n_images} "
        "--image-size {params.size} --seed {params.seed} > {log} 2>&1"


rule ham10000_missing:
    output:
        directory("resources/ham10000"),
    log:
        "results/ham10000/logs/ham10000_missing.log",
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "(echo 'HAM10000 is not in resources/ham10000 and no ham10000_dir is configured.'; "
        "echo 'Download HAM10000_images_part_1.zip, HAM10000_images_part_2.zip and HAM10000_metadata"
        " from https://doi.org/10.7910/DVN/DBW86T, unpack them into one folder and run with'; "
        "echo '  --config ham10000_dir=/path/to/that/folder'; "
        "echo 'or run the demo on synthetic data: --config preset=demo') | tee {log} >&2; exit 1"


# A checkpoint: rule prepare lists the indexed images as its inputs.
checkpoint index:
    input:
        dataset_dir,
    output:
        "results/{dataset}/index.csv",
    log:
        "results/{dataset}/logs/index.log",
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion index --data-dir {input} --out {output} > {log} 2>&1"


# Every image decoded once at the configured size (the size is in the path, so a new size is a new
# cache); reruns when an image file changes.
rule prepare:
    input:
        unpack(prepare_inputs),
    output:
        images="results/{dataset}/cache/{width}x{height}/images.u8",
        manifest="results/{dataset}/cache/{width}x{height}/manifest.json",
    params:
        out_dir=subpath(output.manifest, parent=True),
    log:
        "results/{dataset}/logs/prepare_{width}x{height}.log",
    benchmark:
        "results/{dataset}/benchmarks/prepare_{width}x{height}.tsv"
    threads: 4
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion prepare --index {input.index} --image-size {wildcards.width} {wildcards.height} "
        "--out {params.out_dir} --threads {threads} > {log} 2>&1"


rule split:
    input:
        "results/{dataset}/index.csv",
    output:
        "results/{dataset}/split.csv",
    params:
        method=config["split"],
        seed=config["split_seed"],
    log:
        "results/{dataset}/logs/split.log",
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion split --index {input} --method {params.method} --seed {params.seed} "
        "--out {output} > {log} 2>&1"


rule fetch_weights:
    output:
        "resources/torch/hub/checkpoints/{weights_file}",
    params:
        backbone=weights_backbone,
    log:
        "results/logs/fetch_weights/{weights_file}.log",
    retries: 2
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion fetch-weights {params.backbone} --torch-home resources/torch > {log} 2>&1"
