# Evaluation, once per seed: classification for the half and the full model (their numbers must
# be identical: compare_classification fails the workflow otherwise), and localization of every
# CAM method on the annotated dataset (generated test split, the user's annotated folder, or the
# ImageNet validation set), with bootstrap confidence intervals; then the seeds aggregated.


rule evaluate_classification:
    input:
        data=dataset_input,
        model=f"{SEED_DIR}/models/{{model}}/best.keras",
    output:
        metrics=f"{SEED_DIR}/evaluation/classification/{{model}}/metrics.json",
        per_class=f"{SEED_DIR}/evaluation/classification/{{model}}/per_class.csv",
        predictions=f"{SEED_DIR}/evaluation/classification/{{model}}/predictions.csv",
        confusion=report(
            f"{SEED_DIR}/evaluation/classification/{{model}}/confusion.png",
            caption="../report/confusion.rst",
            category="2. Classification",
            subcategory="seed {seed}",
            labels={"figure": "confusion matrix ({model} model)", "seed": "{seed}"},
        ),
    params:
        data=DATA,
        out=lambda wildcards, output: os.path.dirname(output.metrics),
        options=wf.flags(config["evaluate"], only=("split", "limit", "batch_size")),
    log:
        f"{LOGS}/seed{{seed}}/evaluate_classification_{{model}}.log",
    benchmark:
        f"{BENCH}/seed{{seed}}/evaluate_classification_{{model}}.tsv"
    threads: threads_for("evaluate")
    resources:
        mem_mb=scaled("evaluate", "mem_mb"),
        runtime=scaled("evaluate", "runtime"),
        gpu=GPU,
    conda:
        ACCEL_ENV
    shell:
        "hrcam evaluate classification --model {input.model} --data {params.data} "
        "--out {params.out} {params.options} --threads {threads} --no-progress > {log} 2>&1"


rule compare_classification:
    input:
        half=f"{SEED_DIR}/evaluation/classification/half/metrics.json",
        full=f"{SEED_DIR}/evaluation/classification/full/metrics.json",
    output:
        f"{SEED_DIR}/evaluation/classification/compare.json",
    log:
        f"{LOGS}/seed{{seed}}/compare_classification.log",
    threads: 1
    resources:
        mem_mb=scaled("report", "mem_mb"),
        runtime=scaled("report", "runtime"),
    conda:
        CPU_ENV
    shell:
        "hrcam evaluate compare {input.half} {input.full} --out {output} > {log} 2>&1"


rule evaluate_localization:
    input:
        data=localization_input,
        model=rules.train_full.output.best,
    output:
        table=report(
            f"{SEED_DIR}/evaluation/localization/localization.csv",
            caption="../report/localization_table.rst",
            category="3. Localization",
            subcategory="seed {seed}",
            labels={"figure": "table", "seed": "{seed}"},
        ),
        paired=report(
            f"{SEED_DIR}/evaluation/localization/localization_paired.csv",
            caption="../report/localization_paired.rst",
            category="3. Localization",
            subcategory="seed {seed}",
            labels={"figure": "paired comparisons", "seed": "{seed}"},
        ),
        chart=report(
            f"{SEED_DIR}/evaluation/localization/localization.png",
            caption="../report/localization_chart.rst",
            category="3. Localization",
            subcategory="seed {seed}",
            labels={"figure": "bar chart", "seed": "{seed}"},
        ),
        curves=report(
            f"{SEED_DIR}/evaluation/localization/curves.png",
            caption="../report/localization_curves.rst",
            category="3. Localization",
            subcategory="seed {seed}",
            labels={"figure": "threshold curves", "seed": "{seed}"},
        ),
        json=f"{SEED_DIR}/evaluation/localization/localization.json",
        curves_csv=f"{SEED_DIR}/evaluation/localization/curves.csv",
        bootstrap=f"{SEED_DIR}/evaluation/localization/bootstrap.npz",
    params:
        data=localization_dir(),
        out=lambda wildcards, output: os.path.dirname(output.table),
        split=LOCALIZATION[1] if LOCALIZATION else "test",
        options=wf.flags(config["evaluate"], only=("batch_size", "box_convention",
                                                   "cam_curve_interval", "bootstrap_samples",
                                                   "bootstrap_seed")),
        limit=wf.flags({"limit": config["evaluate"]["localization_limit"]}),
        pipeline=wf.flags(config["pipeline"]),
    log:
        f"{LOGS}/seed{{seed}}/evaluate_localization.log",
    benchmark:
        f"{BENCH}/seed{{seed}}/evaluate_localization.tsv"
    threads: threads_for("evaluate")
    resources:
        mem_mb=scaled("evaluate", "mem_mb"),
        runtime=scaled("evaluate", "runtime"),
        gpu=GPU,
    conda:
        ACCEL_ENV
    shell:
        "hrcam evaluate localization --model {input.model} --data {params.data} "
        "--split {params.split} --out {params.out} {params.options} {params.limit} "
        "{params.pipeline} --workers {threads} --threads {threads} --no-progress > {log} 2>&1"


rule aggregate_seeds:
    # mean +- sd over the seeds per method and metric, and every method against low_res and
    # refined pooled over the seeds (paired bootstrap over images)
    input:
        tables=seeded(f"{SEED_DIR}/evaluation/localization/localization.csv"),
        bootstrap=seeded(f"{SEED_DIR}/evaluation/localization/bootstrap.npz"),
    output:
        table=report(
            f"{RESULTS}/seeds/localization_seeds.csv",
            caption="../report/localization_seeds.rst",
            category="3. Localization",
            subcategory="all seeds",
            labels={"figure": "mean and sd over seeds"},
        ),
        paired=report(
            f"{RESULTS}/seeds/localization_seeds_paired.csv",
            caption="../report/localization_seeds_paired.rst",
            category="3. Localization",
            subcategory="all seeds",
            labels={"figure": "pooled paired comparisons"},
        ),
        chart=report(
            f"{RESULTS}/seeds/localization_seeds.png",
            caption="../report/localization_seeds.rst",
            category="3. Localization",
            subcategory="all seeds",
            labels={"figure": "bar chart over seeds"},
        ),
    params:
        runs=lambda wildcards, input: " ".join(
            f"{seed}={os.path.dirname(table)}" for seed, table in zip(SEEDS, input.tables)),
        out=lambda wildcards, output: os.path.dirname(output.table),
    log:
        f"{LOGS}/aggregate_seeds.log",
    threads: 1
    resources:
        mem_mb=scaled("report", "mem_mb"),
        runtime=scaled("report", "runtime"),
    conda:
        CPU_ENV
    shell:
        "hrcam evaluate aggregate {params.runs} --out {params.out} > {log} 2>&1"


rule evaluate_variant:
    # the methods that depend on the decoder (high_res, refined) of a decoder variant, on the
    # same images with the same bootstrap seed as the main evaluation (paired comparisons)
    input:
        data=localization_input,
        model=rules.train_variant.output.best,
    output:
        table=f"{SEED_DIR}/variants/{{variant}}/evaluation/localization/localization.csv",
        bootstrap=f"{SEED_DIR}/variants/{{variant}}/evaluation/localization/bootstrap.npz",
        paired=f"{SEED_DIR}/variants/{{variant}}/evaluation/localization/localization_paired.csv",
        json=f"{SEED_DIR}/variants/{{variant}}/evaluation/localization/localization.json",
        curves_csv=f"{SEED_DIR}/variants/{{variant}}/evaluation/localization/curves.csv",
        chart=f"{SEED_DIR}/variants/{{variant}}/evaluation/localization/localization.png",
        curves=f"{SEED_DIR}/variants/{{variant}}/evaluation/localization/curves.png",
    params:
        data=localization_dir(),
        out=lambda wildcards, output: os.path.dirname(output.table),
        split=LOCALIZATION[1] if LOCALIZATION else "test",
        options=rules.evaluate_localization.params.options,
        limit=rules.evaluate_localization.params.limit,
        pipeline=rules.evaluate_localization.params.pipeline,
    log:
        f"{LOGS}/seed{{seed}}/evaluate_variant_{{variant}}.log",
    benchmark:
        f"{BENCH}/seed{{seed}}/evaluate_variant_{{variant}}.tsv"
    threads: threads_for("evaluate")
    resources:
        mem_mb=scaled("evaluate", "mem_mb"),
        runtime=scaled("evaluate", "runtime"),
        gpu=GPU,
    conda:
        ACCEL_ENV
    shell:
        "hrcam evaluate localization --model {input.model} --data {params.data} "
        "--split {params.split} --out {params.out} --methods high_res refined {params.options} "
        "{params.limit} {params.pipeline} --workers {threads} --threads {threads} "
        "--no-progress > {log} 2>&1"


rule compare_variants:
    # one table over the decoders of a seed, paired comparisons, and their high-res CAMs side
    # by side on the same images
    input:
        main=rules.evaluate_localization.output.table,
        main_bootstrap=rules.evaluate_localization.output.bootstrap,
        main_model=rules.train_full.output.best,
        tables=lambda wildcards: expand(rules.evaluate_variant.output.table, seed=wildcards.seed,
                                        variant=VARIANTS),
        models=lambda wildcards: expand(rules.train_variant.output.best, seed=wildcards.seed,
                                        variant=VARIANTS),
        data=localization_input,
    output:
        table=report(
            f"{SEED_DIR}/variants/variants.csv",
            caption="../report/variants_table.rst",
            category="5. Decoder variants",
            subcategory="seed {seed}",
            labels={"figure": "table", "seed": "{seed}"},
        ),
        paired=report(
            f"{SEED_DIR}/variants/variants_paired.csv",
            caption="../report/variants_paired.rst",
            category="5. Decoder variants",
            subcategory="seed {seed}",
            labels={"figure": "paired comparisons", "seed": "{seed}"},
        ),
        chart=report(
            f"{SEED_DIR}/variants/variants.png",
            caption="../report/variants_table.rst",
            category="5. Decoder variants",
            subcategory="seed {seed}",
            labels={"figure": "bar chart", "seed": "{seed}"},
        ),
        cams=report(
            f"{SEED_DIR}/variants/variants_cams.png",
            caption="../report/variants_cams.rst",
            category="5. Decoder variants",
            subcategory="seed {seed}",
            labels={"figure": "high-res CAMs side by side", "seed": "{seed}"},
        ),
    params:
        main=lambda wildcards, input: os.path.dirname(input.main),
        main_name=config["train"]["decoder"]["name"],
        variants=lambda wildcards, input: " ".join(
            f"{name}={os.path.dirname(table)}" for name, table in zip(VARIANTS, input.tables)),
        models=lambda wildcards, input: " ".join(
            f"{name}={model}" for name, model in zip(
                [config["train"]["decoder"]["name"], *VARIANTS],
                [input.main_model, *input.models])),
        data=localization_dir(),
        split=LOCALIZATION[1] if LOCALIZATION else "test",
        out=lambda wildcards, output: os.path.dirname(output.table),
    log:
        f"{LOGS}/seed{{seed}}/compare_variants.log",
    threads: threads_for("evaluate")
    resources:
        mem_mb=scaled("evaluate", "mem_mb"),
        runtime=scaled("evaluate", "runtime"),
    conda:
        ACCEL_ENV
    shell:
        "hrcam evaluate variants --main {params.main} --main-name {params.main_name} "
        "{params.variants} --models {params.models} --data {params.data} "
        "--split {params.split} --out {params.out} --threads {threads} > {log} 2>&1"
