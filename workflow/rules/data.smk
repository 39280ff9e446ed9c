# Data preparation: every source ends in the same layout under DATA (train/ and test/ class
# folders, classes.txt, manifest.csv, summary.json; boxes.csv and masks/ where annotations exist).
# summary.json is written last and marks the dataset as complete.


if SOURCE == "synthetic":

    rule prepare_synthetic:
        output:
            summary=f"{DATA}/summary.json",
            classes=f"{DATA}/classes.txt",
            manifest=f"{DATA}/manifest.csv",
            boxes=f"{DATA}/boxes.csv",
        params:
            out=lambda wildcards, output: os.path.dirname(output.summary),
            options=flags(config["data"]["synthetic"]),
        log:
            f"{LOGS}/prepare_synthetic.log",
        threads: threads_for("prepare")
        resources:
            mem_mb=scaled("prepare", "mem_mb"),
            runtime=scaled("prepare", "runtime"),
        conda:
            CPU_ENV
        shell:
            "hrcam prepare synthetic --out {params.out} {params.options} > {log} 2>&1"


if SOURCE == "imagenet":
    IMAGENET_SOURCE = (
        f"--train-tar {shlex.quote(IMAGENET['train_tar'])}"
        if IMAGENET["train_tar"]
        else f"--train-dir {shlex.quote(IMAGENET['train_dir'] or '')}"
    )
    IMAGENET_CLASSES = flags(IMAGENET, only=("synsets", "class_names")) + (
        "" if IMAGENET["synsets"] else f" --num-classes {IMAGENET['num_classes']}"
    )
    IMAGENET_OPTIONS = flags(IMAGENET, only=("im_size", "resize", "test_fraction", "seed",
                                             "format", "quality"))

    rule prepare_imagenet_class:
        # One job per class: parallel on a cluster, resumable (a finished class is not redone).
        output:
            f"{DATA}/parts/{{wnid}}.csv",
        params:
            out=lambda wildcards, output: os.path.dirname(os.path.dirname(output[0])),
            source=IMAGENET_SOURCE,
            classes=IMAGENET_CLASSES,
            options=IMAGENET_OPTIONS,
        log:
            f"{LOGS}/prepare_imagenet/{{wnid}}.log",
        threads: threads_for("prepare")
        resources:
            mem_mb=scaled("prepare", "mem_mb"),
            runtime=scaled("prepare", "runtime"),
        conda:
            CPU_ENV
        shell:
            "hrcam prepare imagenet {params.source} --wnids {wildcards.wnid} --out {params.out} "
            "{params.classes} {params.options} --workers {threads} > {log} 2>&1"

    rule prepare_imagenet_merge:
        input:
            expand(f"{DATA}/parts/{{wnid}}.csv", wnid=imagenet_wnids()),
        output:
            summary=f"{DATA}/summary.json",
            classes=f"{DATA}/classes.txt",
            manifest=f"{DATA}/manifest.csv",
        params:
            out=lambda wildcards, output: os.path.dirname(output.summary),
            classes=IMAGENET_CLASSES,
        log:
            f"{LOGS}/prepare_imagenet_merge.log",
        threads: 1
        resources:
            mem_mb=scaled("prepare", "mem_mb"),
            runtime=scaled("prepare", "runtime"),
        conda:
            CPU_ENV
        shell:
            "hrcam prepare imagenet-merge --out {params.out} {params.classes} > {log} 2>&1"

    if IMAGENET_VAL:

        rule prepare_imagenet_val:
            # The held-out localization benchmark: validation images of the same classes, with
            # their boxes rescaled to the resized images.
            input:
                train=f"{DATA}/classes.txt",
            output:
                summary=f"{VAL_DATA}/summary.json",
                boxes=f"{VAL_DATA}/boxes.csv",
            params:
                out=lambda wildcards, output: os.path.dirname(output.summary),
                source=flags(IMAGENET, only=("val_tar", "val_dir")),
                labels=(
                    f"--solution-csv {shlex.quote(IMAGENET['val_solution_csv'])}"
                    if IMAGENET["val_solution_csv"]
                    else f"--bbox-xml {shlex.quote(IMAGENET['val_bbox_xml'] or '')}"
                ),
                options=flags(IMAGENET, only=("class_names", "im_size", "resize", "format",
                                              "quality")),
            log:
                f"{LOGS}/prepare_imagenet_val.log",
            threads: threads_for("prepare")
            resources:
                mem_mb=scaled("prepare", "mem_mb"),
                runtime=scaled("prepare", "runtime"),
            conda:
                CPU_ENV
            shell:
                "hrcam prepare imagenet-val {params.source} {params.labels} --synsets {input.train} "
                "--out {params.out} {params.options} --workers {threads} > {log} 2>&1"


if SOURCE == "folder":

    rule prepare_folder:
        output:
            summary=f"{DATA}/summary.json",
            classes=f"{DATA}/classes.txt",
            manifest=f"{DATA}/manifest.csv",
        params:
            out=lambda wildcards, output: os.path.dirname(output.summary),
            options=flags(config["data"]["folder"]),
        log:
            f"{LOGS}/prepare_folder.log",
        threads: threads_for("prepare")
        resources:
            mem_mb=scaled("prepare", "mem_mb"),
            runtime=scaled("prepare", "runtime"),
        conda:
            CPU_ENV
        shell:
            "hrcam prepare folder --out {params.out} {params.options} "
            "--workers {threads} > {log} 2>&1"
