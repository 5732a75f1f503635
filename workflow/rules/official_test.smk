# The official test set as a second evaluation protocol: every fold model of every Table II run and
# their ensemble predict all its images, scored as on the ISIC 2018 Task 3 leaderboard.


rule synthesize_test:
    output:
        directory("resources/synthetic_test"),
    params:
        n_images=config["synthetic"]["test"]["n_images"],
        size=" ".join(str(v) for v in config["synthetic"]["image_size"]),
        seed=config["synthetic"]["test"]["seed"],
    log:
        "results/synthetic_test/logs/synthesize.log",
    localrule: True
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion synthesize --out {output:q} --n-images {params.n_images:q} "
        "--image-size {params.size} --seed {params.seed:q} > {log:q} 2>&1"


rule official_test:
    input:
        index=official_test_index,
        cache=official_test_cache,
        models=official_test_models,
    output:
        metrics="results/{dataset}/official_test/{run}/metrics.json",
        ensemble="results/{dataset}/official_test/{run}/ensemble_predictions.csv",
        submission="results/{dataset}/official_test/{run}/submission.csv",
    params:
        out_dir=subpath(output.metrics, parent=True),
        cache=subpath(input.cache, parent=True),
        folds=official_test_folds,
        settings=settings_options("official-test"),
    log:
        "results/{dataset}/logs/official_test/{run}.log",
    benchmark:
        "results/{dataset}/benchmarks/official_test/{run}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion official-test --index {input.index:q} --run {wildcards.run} --folds {params.folds} "
        "--models {input.models:q} --out-dir {params.out_dir:q} --cache {params.cache:q} --threads {threads} "
        "{params.settings} > {log:q} 2>&1"


rule official_test_table:
    input:
        official=official_test_inputs,
        heldout=official_test_heldout_inputs,
    output:
        csv=report(
            "results/{dataset}/tables/official_test.csv",
            caption="../report/official_test.rst",
            category="Tables",
            labels={"table": "official test set", "format": "CSV"},
        ),
        markdown=report(
            "results/{dataset}/tables/official_test.md",
            caption="../report/official_test.rst",
            category="Tables",
            labels={"table": "official test set", "format": "Markdown"},
        ),
        latex="results/{dataset}/tables/official_test.tex",
    params:
        options=official_test_options,
    log:
        "results/{dataset}/logs/official_test_table.log",
    localrule: True
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion official-table --metrics {input.official:q} --heldout-metrics {input.heldout:q} {params.options} "
        "--csv {output.csv:q} --markdown {output.markdown:q} --latex {output.latex:q} > {log:q} 2>&1"
