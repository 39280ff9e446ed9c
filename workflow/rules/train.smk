# Training: half model (classifier + low-res CAM), then the full model (frozen half weights +
# trained decoder), then an explicit transfer check that fails the workflow if the two differ.
# The params of these rules hold training options only, so changing evaluation, rendering or
# report options never retrains (see the rerun-triggers in profiles/default/config.yaml).


rule train_half:
    input:
        data=dataset_marker(),
    output:
        best=f"{RESULTS}/models/half/best.keras",
        last=f"{RESULTS}/models/half/last.keras",
        history=f"{RESULTS}/models/half/history.csv",
        classes=f"{RESULTS}/models/half/classes.json",
    params:
        data=lambda wildcards, input: os.path.dirname(input.data),
        out=lambda wildcards, output: os.path.dirname(output.best),
        options=train_flags("half"),
    log:
        f"{LOGS}/train_half.log",
    benchmark:
        f"{BENCH}/train_half.tsv"
    threads: threads_for("train")
    resources:
        mem_mb=scaled("train", "mem_mb"),
        runtime=scaled("train", "runtime"),
        gpu=GPU,
    conda:
        ACCEL_ENV
    shell:
        "hrcam train half --data {params.data} --out {params.out} {params.options} "
        "> {log} 2>&1"


rule train_full:
    input:
        data=dataset_marker(),
        half=rules.train_half.output.best,
    output:
        best=f"{RESULTS}/models/full/best.keras",
        last=f"{RESULTS}/models/full/last.keras",
        history=f"{RESULTS}/models/full/history.csv",
        transfer=f"{RESULTS}/models/full/transfer_check.json",
    params:
        data=lambda wildcards, input: os.path.dirname(input.data),
        out=lambda wildcards, output: os.path.dirname(output.best),
        options=train_flags("full"),
    log:
        f"{LOGS}/train_full.log",
    benchmark:
        f"{BENCH}/train_full.tsv"
    threads: threads_for("train")
    resources:
        mem_mb=scaled("train", "mem_mb"),
        runtime=scaled("train", "runtime"),
        gpu=GPU,
    conda:
        ACCEL_ENV
    shell:
        "hrcam train full --half {input.half} --data {params.data} --out {params.out} "
        "{params.options} > {log} 2>&1"


rule check_transfer:
    # The seed README's section 3.3 check, as a workflow step: every shared layer identical and
    # identical predictions on a fixed sample; a non-zero exit stops the workflow.
    input:
        data=dataset_marker(),
        half=rules.train_half.output.best,
        full=rules.train_full.output.best,
    output:
        f"{RESULTS}/models/transfer_check.json",
    params:
        data=lambda wildcards, input: os.path.dirname(input.data),
    log:
        f"{LOGS}/check_transfer.log",
    benchmark:
        f"{BENCH}/check_transfer.tsv"
    threads: threads_for("evaluate")
    resources:
        mem_mb=scaled("evaluate", "mem_mb"),
        runtime=scaled("evaluate", "runtime"),
        gpu=GPU,
    conda:
        ACCEL_ENV
    shell:
        "hrcam train check --half {input.half} --full {input.full} --data {params.data} "
        "--out {output} > {log} 2>&1"
