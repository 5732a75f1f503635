# The cost plan (docs/performance.md §8): every training, evaluation and official-test job of the
# grid, priced from step times measured on this machine's device; nothing is trained. It needs the
# splits (their fold sizes), so the data is fetched and indexed first. `snakemake cost` runs it.


rule cost_plan:
    input:
        unpack(cost_inputs),
    output:
        csv="results/{dataset}/cost.csv",
        markdown="results/{dataset}/cost.md",
    params:
        options=cost_options,
    log:
        "results/{dataset}/logs/cost.log",
    # one thread and one GPU, as a training job: the steps are timed as the jobs will run them
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion cost {params.options} --threads {threads} --csv {output.csv:q} --markdown {output.markdown:q} 2> {log:q}"

