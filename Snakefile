# hrcam: High Resolution Class Activation Mapping (ICIP 2019), end to end.
#
#   snakemake --cores all                      # embedded default (generated data, CPU)
#   snakemake --cores all --configfile config/imagenet_animals.yaml
#   snakemake --report report.html             # the HTML report of the last run
#   snakemake --cores 1 --force figures        # redraw the report figures only (no training)
#
# The rules call the `hrcam` command line; this file only wires them together. Every rule is
# defined whatever the config; the targets come from input functions (workflow/rules/common.smk).
# Options: config/README.md. Profiles: profiles/default (loaded automatically), profiles/slurm.

from snakemake.utils import min_version, validate

min_version("9.19")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/render.smk"
include: "workflow/rules/report.smk"


# light rules run on the submitting machine, never as cluster jobs
localrules:
    all,
    compare_classification,
    aggregate_seeds,
    figures,
    readme_figures,


rule all:
    default_target: True
    input:
        seed_outputs,
