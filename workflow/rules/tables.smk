rule table2:
    input:
        run_metrics("table2"),
    output:
        csv=report(
            "results/{dataset}/tables/table2.csv",
            caption="../report/table2.rst",
            category="Tables",
            labels={"table": "II", "format": "CSV"},
        ),
        markdown=report(
            "results/{dataset}/tables/table2.md",
            caption="../report/table2.rst",
            category="Tables",
            labels={"table": "II", "format": "Markdown"},
        ),
    params:
        labels=table_labels("table2"),
    log:
        "results/{dataset}/logs/table2.log",
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion table --table II --title 'Table II ({wildcards.dataset})' --metrics {input} {params.labels} "
        "--csv {output.csv} --markdown {output.markdown} > {log} 2>&1"
