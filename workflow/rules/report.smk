# Report figures and tables, from result files only (no training, no inference; `hrcam report`):
# `snakemake --cores 1 --force figures` redraws them alone. The HTML report itself:
# `snakemake --report report.html`.


rule figures:
    input:
        half_history=rules.train_half.output.history,
        full_history=rules.train_full.output.history,
        half_metrics=f"{RESULTS}/evaluation/classification/half/metrics.json",
        full_metrics=f"{RESULTS}/evaluation/classification/full/metrics.json",
        compare=rules.compare_classification.output[0],
        transfer_train=rules.train_full.output.transfer,
        transfer_check=rules.check_transfer.output[0],
    output:
        training_curves=report(
            f"{RESULTS}/report/training_curves.png",
            caption="../report/training_curves.rst",
            category="1. Training",
            labels={"figure": "training curves"},
        ),
        classification_csv=report(
            f"{RESULTS}/report/classification.csv",
            caption="../report/classification_table.rst",
            category="2. Classification",
            labels={"figure": "half vs full (table)"},
        ),
        classification_png=report(
            f"{RESULTS}/report/classification.png",
            caption="../report/classification_chart.rst",
            category="2. Classification",
            labels={"figure": "half vs full (chart)"},
        ),
        transfer_csv=report(
            f"{RESULTS}/report/transfer_check.csv",
            caption="../report/transfer_check.rst",
            category="1. Training",
            labels={"figure": "weight transfer check"},
        ),
    log:
        f"{LOGS}/figures.log",
    benchmark:
        f"{BENCH}/figures.tsv"
    threads: 1
    resources:
        mem_mb=scaled("report", "mem_mb"),
        runtime=scaled("report", "runtime"),
    params:
        out=lambda wildcards, output: os.path.dirname(output.training_curves),
    conda:
        CPU_ENV
    shell:
        "hrcam report --half-history {input.half_history} --full-history {input.full_history} "
        "--half-metrics {input.half_metrics} --full-metrics {input.full_metrics} "
        "--transfer train_full={input.transfer_train} "
        "--transfer check_transfer={input.transfer_check} --out {params.out} > {log} 2>&1"


rule readme_figures:
    # Not part of the default target: copies a run's key figures to reports/figures/, where the
    # README embeds them from (`snakemake --cores 1 readme_figures`, then commit them).
    input:
        collage=rules.render_cams.output.collage,
        figures=rules.render_cams.output.figures,
        training_curves=rules.figures.output.training_curves,
        classification=rules.figures.output.classification_png,
        localization=f"{RESULTS}/evaluation/localization/localization.png" if LOC_DATA else [],
    output:
        collage="reports/figures/collage.png",
        pipeline="reports/figures/pipeline.png",
        training_curves="reports/figures/training_curves.png",
        classification="reports/figures/classification.png",
        localization="reports/figures/localization.png" if LOC_DATA else [],
    log:
        f"{LOGS}/readme_figures.log",
    threads: 1
    resources:
        mem_mb=scaled("report", "mem_mb"),
        runtime=scaled("report", "runtime"),
    conda:
        CPU_ENV
    shell:
        "(cp {input.collage} {output.collage} && "
        "cp {input.training_curves} {output.training_curves} && "
        "cp {input.classification} {output.classification} && "
        "cp \"$(find {input.figures} -name '*.png' | sort | head -n 1)\" {output.pipeline} && "
        "if [ -n '{input.localization}' ]; then cp {input.localization} {output.localization}; fi"
        ") > {log} 2>&1"
