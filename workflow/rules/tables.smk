rule table:
    input:
        table_inputs,
    output:
        csv=report(
            "results/{dataset}/tables/table_{table}.csv",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}", "format": "CSV"},
        ),
        markdown=report(
            "results/{dataset}/tables/table_{table}.md",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}", "format": "Markdown"},
        ),
        latex="results/{dataset}/tables/table_{table}.tex",
    params:
        options=table_options,
    log:
        "results/{dataset}/logs/table_{table}.log",
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion table --table {wildcards.table} --metrics {input:q} {params.options} "
        "--csv {output.csv:q} --markdown {output.markdown:q} --latex {output.latex:q} > {log:q} 2>&1"


rule claims:
    input:
        claims_inputs,
    output:
        csv="results/{dataset}/tables/claims.csv",
        markdown=report(
            "results/{dataset}/tables/claims.md",
            caption="../report/claims.rst",
            category="Tables",
            labels={"table": "claims", "format": "Markdown"},
        ),
    params:
        options=claims_options,
    log:
        "results/{dataset}/logs/claims.log",
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "patchlesion claims --dataset {wildcards.dataset} {params.options} "
        "--csv {output.csv:q} --markdown {output.markdown:q} > {log:q} 2>&1"
