# Evaluation: classification for the half and the full model (their numbers must be identical:
# compare_classification fails the workflow otherwise), and localization of every CAM method on
# the annotated dataset (generated test split, or the ImageNet validation set).


rule evaluate_classification:
    input:
        data=dataset_marker(),
        model=f"{RESULTS}/models/{{model}}/best.keras",
    output:
        metrics=f"{RESULTS}/evaluation/classification/{{model}}/metrics.json",
        per_class=f"{RESULTS}/evaluation/classification/{{model}}/per_class.csv",
        predictions=f"{RESULTS}/evaluation/classification/{{model}}/predictions.csv",
        confusion=report(
            f"{RESULTS}/evaluation/classification/{{model}}/confusion.png",
            caption="../report/confusion.rst",
            category="2. Classification",
            labels={"figure": "confusion matrix ({model} model)"},
        ),
    params:
        data=lambda wildcards, input: os.path.dirname(input.data),
        out=lambda wildcards, output: os.path.dirname(output.metrics),
        options=flags(config["evaluate"], only=("split", "limit", "batch_size")),
    log:
        f"{LOGS}/evaluate_classification_{{model}}.log",
    benchmark:
        f"{BENCH}/evaluate_classification_{{model}}.tsv"
    threads: threads_for("evaluate")
    resources:
        mem_mb=scaled("evaluate", "mem_mb"),
        runtime=scaled("evaluate", "runtime"),
        gpu=GPU,
    conda:
        ACCEL_ENV
    shell:
        "hrcam evaluate classification --model {input.model} --data {params.data} "
        "--out {params.out} {params.options} --no-progress > {log} 2>&1"


rule compare_classification:
    input:
        half=f"{RESULTS}/evaluation/classification/half/metrics.json",
        full=f"{RESULTS}/evaluation/classification/full/metrics.json",
    output:
        f"{RESULTS}/evaluation/classification/compare.json",
    log:
        f"{LOGS}/compare_classification.log",
    threads: 1
    resources:
        mem_mb=scaled("report", "mem_mb"),
        runtime=scaled("report", "runtime"),
    conda:
        CPU_ENV
    shell:
        "hrcam evaluate compare {input.half} {input.full} --out {output} > {log} 2>&1"


if LOC_DATA:

    rule evaluate_localization:
        input:
            data=loc_marker(),
            model=rules.train_full.output.best,
        output:
            table=report(
                f"{RESULTS}/evaluation/localization/localization.csv",
                caption="../report/localization_table.rst",
                category="3. Localization",
                labels={"figure": "table"},
            ),
            chart=report(
                f"{RESULTS}/evaluation/localization/localization.png",
                caption="../report/localization_chart.rst",
                category="3. Localization",
                labels={"figure": "bar chart"},
            ),
            curves=report(
                f"{RESULTS}/evaluation/localization/curves.png",
                caption="../report/localization_curves.rst",
                category="3. Localization",
                labels={"figure": "threshold curves"},
            ),
            json=f"{RESULTS}/evaluation/localization/localization.json",
            curves_csv=f"{RESULTS}/evaluation/localization/curves.csv",
        params:
            data=lambda wildcards, input: os.path.dirname(input.data),
            out=lambda wildcards, output: os.path.dirname(output.table),
            split="val" if LOC_DATA == VAL_DATA else "test",
            limit=flags({"limit": config["evaluate"]["localization_limit"]}),
            batch_size=config["evaluate"]["batch_size"],
            pipeline=flags(config["pipeline"]),
        log:
            f"{LOGS}/evaluate_localization.log",
        benchmark:
            f"{BENCH}/evaluate_localization.tsv"
        threads: threads_for("evaluate")
        resources:
            mem_mb=scaled("evaluate", "mem_mb"),
            runtime=scaled("evaluate", "runtime"),
            gpu=GPU,
        conda:
            ACCEL_ENV
        shell:
            "hrcam evaluate localization --model {input.model} --data {params.data} "
            "--split {params.split} --out {params.out} --batch-size {params.batch_size} "
            "{params.limit} {params.pipeline} --workers {threads} --no-progress > {log} 2>&1"
