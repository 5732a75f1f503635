# Entry point for `snakemake` run from the repository root; the workflow itself lives in
# workflow/Snakefile (the Snakemake catalog layout), which this file includes.
include: "workflow/Snakefile"


# An include keeps the including file's default target, so name it here as well.
workflow.default_target = "all"
