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
        "patchlesion synthesize --out {output:q} --n-images {params.n_images:q} "
        "--image-size {params.size} --seed {params.seed:q} > {log:q} 2>&1"


# HAM10000 from Harvard Dataverse (or the ISIC 2018 challenge files), MD5-verified, safely unpacked.
# Not run when ham10000_dir points at an existing copy. A local rule (workflow/Snakefile): it needs
# the network, which a cluster's login node has and its compute nodes may not. On failure (e.g.
# offline) the log, with the manual download instructions, is shown (profiles/default).
rule download_ham10000:
    output:
        directory("resources/ham10000"),
    params:
        settings=download_settings,
    log:
        "results/ham10000/logs/download_ham10000.log",
    retries: 1
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion download-ham10000 --out {output:q} --downloads resources/downloads/ham10000 "
        "--settings {params.settings} > {log:q} 2>&1"


# The ISIC 2018 Task 3 official test set (1,511 images), converted to HAM10000 format; only with
# official_test: true (the default) and no isic2018_test_dir.
rule download_isic2018_test:
    output:
        directory("resources/isic2018_test"),
    params:
        settings=download_settings,
    log:
        "results/isic2018_test/logs/download_isic2018_test.log",
    retries: 1
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion download-isic2018-test --out {output:q} --downloads resources/downloads/isic2018_test "
        "--settings {params.settings} > {log:q} 2>&1"


# The ISIC 2019 training set (25,331 images, 8 classes) as a folder dataset: its images and
# labels.csv (image_id,label,lesion_id), checked and converted (docs/data.md §11). A local rule, as
# download_ham10000; the image zip is about 9.1 GB (config download: isic2019: max_file_gib).
rule download_isic2019:
    output:
        directory("resources/isic2019"),
    params:
        settings=download_settings,
    log:
        "results/isic2019/logs/download_isic2019.log",
    retries: 1
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion download-isic2019 --out {output:q} --downloads resources/downloads/isic2019 "
        "--settings {params.settings} > {log:q} 2>&1"


# A checkpoint: rule prepare lists the indexed images as its inputs.
checkpoint index:
    input:
        dataset_dir,
    output:
        "results/{dataset}/index.csv",
    wildcard_constraints:
        dataset="|".join(d for d in DATASETS if not folder_dataset(d)) or "no-dataset",
    log:
        "results/{dataset}/logs/index.log",
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion index --data-dir {input:q} --out {output:q} > {log:q} 2>&1"


# A folder dataset (config key `datasets`, docs/own-data.md §1): its labels CSV checked against its
# images, and its description (classes, benign ones, which columns exist) for split and train.
checkpoint index_folder:
    input:
        unpack(folder_inputs),
    output:
        index="results/{dataset}/index.csv",
        description="results/{dataset}/dataset.json",
    wildcard_constraints:
        dataset="|".join(FOLDER_DATASETS) or "no-dataset",
    params:
        options=index_folder_options,
    log:
        "results/{dataset}/logs/index.log",
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion index-folder --dir {input.dir:q} {params.options} --out {output.index:q} "
        "--description {output.description:q} > {log:q} 2>&1"


# Every image decoded once at the configured size (the size is in the path, so a new size is a new
# cache); reruns when an image file changes.
rule prepare:
    input:
        index="results/{dataset}/index.csv",
        images=indexed_images,
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
        "patchlesion prepare --index {input.index:q} --image-size {wildcards.width} {wildcards.height} "
        "--out {params.out_dir:q} --threads {threads} > {log:q} 2>&1"


# The same with each image cropped to the size's aspect ratio first (config resize: crop). A rule of
# its own, not `use rule prepare` with a parameter: Snakemake reruns a job whose command or parameters
# changed, so rule prepare's stay as they were, and so do the stretched caches and every job
# trained from them.
rule prepare_crop:
    input:
        index="results/{dataset}/index.csv",
        images=indexed_images,
    output:
        images="results/{dataset}/cache/{width}x{height}-crop/images.u8",
        manifest="results/{dataset}/cache/{width}x{height}-crop/manifest.json",
    params:
        out_dir=subpath(output.manifest, parent=True),
    log:
        "results/{dataset}/logs/prepare_{width}x{height}-crop.log",
    benchmark:
        "results/{dataset}/benchmarks/prepare_{width}x{height}-crop.tsv"
    threads: 4
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion prepare --index {input.index:q} --image-size {wildcards.width} {wildcards.height} --resize crop "
        "--out {params.out_dir:q} --threads {threads} > {log:q} 2>&1"


rule split:
    input:
        index="results/{dataset}/index.csv",
        description=description_input,
    output:
        "results/{dataset}/split.csv",
    params:
        method=config["split"],
        seed=config["split_seed"],
        dataset=dataset_argument,
    log:
        "results/{dataset}/logs/split.log",
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion split --index {input.index:q} --dataset {params.dataset:q} --method {params.method:q} "
        "--seed {params.seed:q} --out {output:q} > {log:q} 2>&1"


rule fetch_weights:
    output:
        "resources/torch/{weights_file}",
    params:
        backbone=weights_backbone,
    log:
        "results/logs/fetch_weights/{weights_file}.log",
    retries: 2
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion fetch-weights {params.backbone:q} --torch-home resources/torch > {log:q} 2>&1"
