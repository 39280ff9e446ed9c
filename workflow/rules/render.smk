# Batch CAM rendering with the full model of every seed: per-image arrays (low, high, refined
# CAM, prediction), one pipeline figure and one overlay per image, a collage of image /
# refined-CAM pairs and a table of the rendered images (cams.csv).


rule render_cams:
    input:
        data=dataset_input,
        model=rules.train_full.output.best,
    output:
        collage=report(
            f"{SEED_DIR}/cams/collage.png",
            caption="../report/collage.rst",
            category="4. CAMs",
            subcategory="seed {seed}",
            labels={"figure": "collage", "seed": "{seed}"},
        ),
        figures=report(
            directory(f"{SEED_DIR}/cams/figures"),
            patterns=["{label}/{name}.png"],
            caption="../report/pipeline_figure.rst",
            category="4. CAMs",
            subcategory="refined-CAM pipeline, per image (seed {seed})",
            labels={"class": "{label}", "image": "{name}"},
        ),
        overlays=directory(f"{SEED_DIR}/cams/overlays"),
        arrays=directory(f"{SEED_DIR}/cams/arrays"),
        table=f"{SEED_DIR}/cams/cams.csv",
    params:
        data=DATA,
        out=lambda wildcards, output: os.path.dirname(output.collage),
        options=wf.flags(config["render"], only=("split", "limit", "classes", "batch_size",
                                                 "cam_class", "collage_per_class")),
        pipeline=wf.flags(config["pipeline"]),
    log:
        f"{LOGS}/seed{{seed}}/render_cams.log",
    benchmark:
        f"{BENCH}/seed{{seed}}/render_cams.tsv"
    threads: threads_for("render")
    resources:
        mem_mb=scaled("render", "mem_mb"),
        runtime=scaled("render", "runtime"),
        gpu=GPU,
    conda:
        ACCEL_ENV
    shell:
        "hrcam cams --model {input.model} --data {params.data} --out {params.out} "
        "{params.options} {params.pipeline} --workers {threads} --threads {threads} "
        "--no-progress > {log} 2>&1"
