# Report figures and tables of every seed, from result files only (no training, no inference;
# `hrcam report figures`): `snakemake --cores 1 --force figures` redraws them alone. The HTML
# report itself: `snakemake --report report.html`.


rule figures:
    input:
        half_history=seeded(f"{SEED_DIR}/models/half/history.csv"),
        full_history=seeded(f"{SEED_DIR}/models/full/history.csv"),
        half_metrics=seeded(f"{SEED_DIR}/evaluation/classification/half/metrics.json"),
        full_metrics=seeded(f"{SEED_DIR}/evaluation/classification/full/metrics.json"),
        compare=seeded(f"{SEED_DIR}/evaluation/classification/compare.json"),
        transfer_train=seeded(f"{SEED_DIR}/models/full/transfer_check.json"),
        transfer_check=seeded(f"{SEED_DIR}/models/transfer_check.json"),
    output:
        training_curves=[
            report(path, caption="../report/training_curves.rst", category="1. Training",
                   labels={"figure": "training curves", "seed": str(seed)})
            for seed, path in zip(SEEDS, seeded(f"{SEED_DIR}/report/training_curves.png"))
        ],
        classification_csv=[
            report(path, caption="../report/classification_table.rst",
                   category="2. Classification",
                   labels={"figure": "half vs full (table)", "seed": str(seed)})
            for seed, path in zip(SEEDS, seeded(f"{SEED_DIR}/report/classification.csv"))
        ],
        classification_png=[
            report(path, caption="../report/classification_chart.rst",
                   category="2. Classification",
                   labels={"figure": "half vs full (chart)", "seed": str(seed)})
            for seed, path in zip(SEEDS, seeded(f"{SEED_DIR}/report/classification.png"))
        ],
        transfer_csv=[
            report(path, caption="../report/transfer_check.rst", category="1. Training",
                   labels={"figure": "weight transfer check", "seed": str(seed)})
            for seed, path in zip(SEEDS, seeded(f"{SEED_DIR}/report/transfer_check.csv"))
        ],
    params:
        # results/<run>/seed<k>/report/training_curves.png -> results/<run>
        run_dir=lambda wildcards, output: Path(output.training_curves[0]).parents[2],
        seeds=" ".join(map(str, SEEDS)),
    log:
        f"{LOGS}/figures.log",
    threads: 1
    resources:
        mem_mb=scaled("report", "mem_mb"),
        runtime=scaled("report", "runtime"),
    conda:
        CPU_ENV
    shell:
        "hrcam report figures --run-dir {params.run_dir} --seeds {params.seeds} > {log} 2>&1"


rule readme_figures:
    # Not part of the default target: copies a run's key figures (its first seed, and the seed
    # aggregate) to reports/figures/, where the README embeds them from
    # (`snakemake --cores 1 readme_figures`, then commit them).
    input:
        figures=rules.figures.output,
        cams=seeded(f"{SEED_DIR}/cams/figures"),
        localization=seeded(f"{SEED_DIR}/evaluation/localization/localization.png")
        if LOCALIZATION else [],
        seeds=f"{RESULTS}/seeds/localization_seeds.png" if LOCALIZATION else [],
        variants=seeded(f"{SEED_DIR}/variants/variants_cams.png") if VARIANTS else [],
    output:
        expand(f"reports/figures/{RUN}_{{name}}", name=readme_figure_names()),
    params:
        # results/<run>/seed<k>/cams/figures -> results/<run>
        run_dir=lambda wildcards, input: Path(input.cams[0]).parents[1],
        seed=SEEDS[0],
        out=lambda wildcards, output: os.path.dirname(output[0]),
        prefix=f"{RUN}_",
    log:
        f"{LOGS}/readme_figures.log",
    threads: 1
    resources:
        mem_mb=scaled("report", "mem_mb"),
        runtime=scaled("report", "runtime"),
    conda:
        CPU_ENV
    shell:
        "hrcam report readme --run-dir {params.run_dir} --seed {params.seed} --out {params.out} "
        "--prefix {params.prefix} > {log} 2>&1"
