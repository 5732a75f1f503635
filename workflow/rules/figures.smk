rule table_figures:
    input:
        table_inputs,
    output:
        confusion=report(
            "results/{dataset}/figures/table_{table}_confusion.png",
            caption="../report/confusion.rst",
            category="Figures",
            subcategory="Confusion matrices",
            labels={"table": "{table}"},
        ),
        confusion_pdf="results/{dataset}/figures/table_{table}_confusion.pdf",
        curves=report(
            "results/{dataset}/figures/table_{table}_curves.png",
            caption="../report/curves.rst",
            category="Figures",
            subcategory="Training curves",
            labels={"table": "{table}"},
        ),
        curves_pdf="results/{dataset}/figures/table_{table}_curves.pdf",
    params:
        options=table_figures_options,
    log:
        "results/{dataset}/logs/table_{table}_figures.log",
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion table-figures --table {wildcards.table} --metrics {input:q} {params.options} "
        "--confusion {output.confusion:q} --curves {output.curves:q} > {log:q} 2>&1"


rule figure4:
    input:
        index="results/{dataset}/index.csv",
        split="results/{dataset}/split.csv",
        model=figure4_model,
    output:
        png=report(
            "results/{dataset}/figures/figure4.png",
            caption="../report/figure4.rst",
            category="Figures",
            subcategory="Paper figures",
            labels={"figure": "4"},
        ),
        pdf="results/{dataset}/figures/figure4.pdf",
    params:
        options=figure4_options,
    log:
        "results/{dataset}/logs/figure4.log",
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion figure4 --index {input.index:q} --split {input.split:q} --model {input.model:q} "
        "{params.options} --out {output.png:q} > {log:q} 2>&1"


rule figure5:
    input:
        figure5_inputs,
    output:
        png=report(
            "results/{dataset}/figures/figure5.png",
            caption="../report/figure5.rst",
            category="Figures",
            subcategory="Paper figures",
            labels={"figure": "5"},
        ),
        pdf="results/{dataset}/figures/figure5.pdf",
        csv="results/{dataset}/figures/figure5.csv",
    log:
        "results/{dataset}/logs/figure5.log",
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion figure5 --metrics {input:q} --out {output.png:q} --csv {output.csv:q} > {log:q} 2>&1"


rule report_md:
    input:
        claims=expand("results/{dataset}/tables/claims.md", dataset=DATASET),
        tables=table_outputs(),
        figures=figure_outputs(),
    output:
        "results/REPORT.md",
    params:
        dataset=DATASET,
        preset=config["preset"],
        options=report_options(),
    log:
        "results/logs/report_md.log",
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion report --dataset {params.dataset:q} --preset {params.preset:q} --results results "
        "{params.options} --out {output:q} > {log:q} 2>&1"
