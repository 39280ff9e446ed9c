# Training, once per seed: the half model (classifier + low-res CAM), then the full model (frozen
# half weights + trained decoder), then an explicit transfer check that fails the workflow if the
# two differ. The params hold training options only (in canonical order), so changing
# evaluation, rendering or report options never retrains. An interrupted training keeps its
# state in <out>/.training-state (not an output, so Snakemake never deletes it): a rerun or a
# SLURM retry resumes after the last finished epoch.


rule train_half:
    input:
        data=dataset_input,
    output:
        best=f"{SEED_DIR}/models/half/best.keras",
        last=f"{SEED_DIR}/models/half/last.keras",
        history=f"{SEED_DIR}/models/half/history.csv",
        classes=f"{SEED_DIR}/models/half/classes.json",
        config=f"{SEED_DIR}/models/half/train_config.json",
        tensorboard=directory(f"{SEED_DIR}/models/half/tensorboard"),
    params:
        data=DATA,
        out=lambda wildcards, output: os.path.dirname(output.best),
        options=wf.train_flags(config, "half"),
    log:
        f"{LOGS}/seed{{seed}}/train_half.log",
    benchmark:
        f"{BENCH}/seed{{seed}}/train_half.tsv"
    threads: threads_for("train")
    resources:
        mem_mb=scaled("train", "mem_mb"),
        runtime=scaled("train", "runtime"),
        gpu=GPU,
    conda:
        ACCEL_ENV
    shell:
        "hrcam train half --data {params.data} --out {params.out} --seed {wildcards.seed} "
        "{params.options} --threads {threads} > {log} 2>&1"


rule train_full:
    input:
        data=dataset_input,
        half=rules.train_half.output.best,
    output:
        best=f"{SEED_DIR}/models/full/best.keras",
        last=f"{SEED_DIR}/models/full/last.keras",
        history=f"{SEED_DIR}/models/full/history.csv",
        classes=f"{SEED_DIR}/models/full/classes.json",
        config=f"{SEED_DIR}/models/full/train_config.json",
        tensorboard=directory(f"{SEED_DIR}/models/full/tensorboard"),
        transfer_before=f"{SEED_DIR}/models/full/transfer_check_before.json",
        transfer=f"{SEED_DIR}/models/full/transfer_check.json",
    params:
        data=DATA,
        out=lambda wildcards, output: os.path.dirname(output.best),
        options=wf.train_flags(config, "full"),
    log:
        f"{LOGS}/seed{{seed}}/train_full.log",
    benchmark:
        f"{BENCH}/seed{{seed}}/train_full.tsv"
    threads: threads_for("train")
    resources:
        mem_mb=scaled("train", "mem_mb"),
        runtime=scaled("train", "runtime"),
        gpu=GPU,
    conda:
        ACCEL_ENV
    shell:
        "hrcam train full --half {input.half} --data {params.data} --out {params.out} "
        "--seed {wildcards.seed} {params.options} --threads {threads} > {log} 2>&1"


rule check_transfer:
    # the original project's section 3.3 check, as a workflow step: every shared layer
    # identical and identical predictions on a fixed sample; a non-zero exit stops the workflow
    input:
        data=dataset_input,
        half=rules.train_half.output.best,
        full=rules.train_full.output.best,
    output:
        f"{SEED_DIR}/models/transfer_check.json",
    params:
        data=DATA,
    log:
        f"{LOGS}/seed{{seed}}/check_transfer.log",
    benchmark:
        f"{BENCH}/seed{{seed}}/check_transfer.tsv"
    threads: threads_for("evaluate")
    resources:
        mem_mb=scaled("evaluate", "mem_mb"),
        runtime=scaled("evaluate", "runtime"),
        gpu=GPU,
    conda:
        ACCEL_ENV
    shell:
        "hrcam train check --half {input.half} --full {input.full} --data {params.data} "
        "--out {output} --threads {threads} > {log} 2>&1"


rule train_variant:
    # a decoder variant (train.decoder.variants) on the same half model
    input:
        data=dataset_input,
        half=rules.train_half.output.best,
    output:
        best=f"{SEED_DIR}/variants/{{variant}}/models/full/best.keras",
        last=f"{SEED_DIR}/variants/{{variant}}/models/full/last.keras",
        history=f"{SEED_DIR}/variants/{{variant}}/models/full/history.csv",
        classes=f"{SEED_DIR}/variants/{{variant}}/models/full/classes.json",
        config=f"{SEED_DIR}/variants/{{variant}}/models/full/train_config.json",
        tensorboard=directory(f"{SEED_DIR}/variants/{{variant}}/models/full/tensorboard"),
        transfer_before=f"{SEED_DIR}/variants/{{variant}}/models/full/transfer_check_before.json",
        transfer=f"{SEED_DIR}/variants/{{variant}}/models/full/transfer_check.json",
    params:
        data=DATA,
        out=lambda wildcards, output: os.path.dirname(output.best),
        options=lambda wildcards: wf.variant_flags(config, wildcards.variant),
    log:
        f"{LOGS}/seed{{seed}}/train_variant_{{variant}}.log",
    benchmark:
        f"{BENCH}/seed{{seed}}/train_variant_{{variant}}.tsv"
    threads: threads_for("train")
    resources:
        mem_mb=scaled("train", "mem_mb"),
        runtime=scaled("train", "runtime"),
        gpu=GPU,
    conda:
        ACCEL_ENV
    shell:
        "hrcam train full --half {input.half} --data {params.data} --out {params.out} "
        "--seed {wildcards.seed} {params.options} --threads {threads} > {log} 2>&1"
