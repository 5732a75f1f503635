# derm7pt, the seven-point checklist dataset (SPC) of Table IV: converted from the registered
# release_v0 folder into a HAM10000-format folder with its split (docs/method.md §8).
if config["derm7pt_dir"]:

    rule convert_derm7pt:
        input:
            config["derm7pt_dir"],
        output:
            directory("resources/derm7pt"),
        params:
            split=config["derm7pt_split"],
        log:
            "results/derm7pt/logs/convert_derm7pt.log",
        benchmark:
            "results/derm7pt/benchmarks/convert_derm7pt.tsv"
        conda:
            "../../envs/patchlesion.yaml"
        shell:
            "patchlesion convert-derm7pt --release {input:q} --out {output:q} --split {params.split:q} > {log:q} 2>&1"

else:

    rule derm7pt_missing:
        output:
            directory("resources/derm7pt"),
        log:
            "results/derm7pt/logs/derm7pt_missing.log",
        localrule: True
        conda:
            "../../envs/patchlesion.yaml"
        shell:
            "(echo 'derm7pt is needed (Table IV) but derm7pt_dir is not set.'; "
            "echo 'Register at https://derm.cs.sfu.ca, download and unpack release_v0.zip, and run with'; "
            "echo '  --config derm7pt_dir=/path/to/release_v0') | tee {log:q} >&2; exit 1"


# The split comes with the conversion: fold 1 trains on derm7pt's training cases and is tested (and,
# as in the authors' code, validated) on its test cases.
rule derm7pt_split:
    input:
        data="resources/derm7pt",
    output:
        "results/derm7pt/split.csv",
    log:
        "results/derm7pt/logs/split.log",
    localrule: True
    conda:
        "../../envs/patchlesion.yaml"
    shell:
        "cp {input.data:q}/split.csv {output:q} > {log:q} 2>&1"


ruleorder: derm7pt_split > split
