# Batch CAM rendering with the full model: per-image arrays (low, high, refined CAM,
# prediction), one pipeline figure and one overlay per image, a collage of image / refined-CAM
# pairs and a table of the rendered images (cams.csv).


rule render_cams:
    input:
        data=dataset_marker(),
        model=rules.train_full.output.best,
    output:
        collage=report(
            f"{RESULTS}/cams/collage.png",
            caption="../report/collage.rst",
            category="4. CAMs",
            labels={"figure": "collage"},
        ),
        figures=report(
            directory(f"{RESULTS}/cams/figures"),
            patterns=["{label}/{name}.png"],
            caption="../report/pipeline_figure.rst",
            category="4. CAMs",
            subcategory="refined-CAM pipeline, per image",
            labels={"class": "{label}", "image": "{name}"},
        ),
        overlays=directory(f"{RESULTS}/cams/overlays"),
        arrays=directory(f"{RESULTS}/cams/arrays"),
        table=f"{RESULTS}/cams/cams.csv",
    params:
        data=lambda wildcards, input: os.path.dirname(input.data),
        out=lambda wildcards, output: os.path.dirname(output.collage),
        split=config["render"]["split"],
        options=flags(config["render"], only=("limit", "classes", "batch_size", "cam_class",
                                              "collage_per_class")),
        pipeline=flags(config["pipeline"]),
    log:
        f"{LOGS}/render_cams.log",
    benchmark:
        f"{BENCH}/render_cams.tsv"
    threads: threads_for("render")
    resources:
        mem_mb=scaled("render", "mem_mb"),
        runtime=scaled("render", "runtime"),
        gpu=GPU,
    conda:
        ACCEL_ENV
    shell:
        "hrcam cams --model {input.model} --data {params.data} --split {params.split} "
        "--out {params.out} {params.options} {params.pipeline} --workers {threads} "
        "--no-progress > {log} 2>&1"
