# Data preparation: every source ends in the same layout under resources/<name> (train/ and test/
# class folders, classes.txt, manifest.csv, summary.json; boxes.csv and masks/ where annotations
# exist). Every rule is defined; the configured source chooses which one can run (the dataset
# wildcard's constraint), and the external archives and folders are declared inputs.


rule prepare_synthetic:
    # the embedded default: generated shapes with masks and boxes, published whole
    output:
        directory(f"{RESOURCES}/{{dataset}}"),
    wildcard_constraints:
        dataset=dataset_pattern("synthetic"),
    params:
        options=wf.synthetic_flags(config),
    log:
        f"{LOGS}/prepare_synthetic_{{dataset}}.log",
    threads: threads_for("prepare")
    resources:
        mem_mb=scaled("prepare", "mem_mb"),
        runtime=scaled("prepare", "runtime"),
    conda:
        CPU_ENV
    shell:
        "hrcam prepare synthetic --out {output} {params.options} --workers {threads} "
        "> {log} 2>&1"


rule prepare_folder:
    # the user's own class folders (and optional boxes / masks), published whole
    input:
        unpack(external(("src", "boxes", "masks", "class_names"), "folder")),
    output:
        directory(f"{RESOURCES}/{{dataset}}"),
    wildcard_constraints:
        dataset=dataset_pattern("folder"),
    params:
        options=wf.flags(config["data"]["folder"], only=("im_size", "resize", "test_fraction",
                                                         "seed", "format", "quality")),
        annotations=lambda wildcards, input: wf.flags(
            {"boxes": input.get("boxes"), "masks": input.get("masks"),
             "class_names": input.get("class_names")}),
    log:
        f"{LOGS}/prepare_folder_{{dataset}}.log",
    threads: threads_for("prepare")
    resources:
        mem_mb=scaled("prepare", "mem_mb"),
        runtime=scaled("prepare", "runtime"),
    conda:
        CPU_ENV
    shell:
        "hrcam prepare folder --src {input.src} --out {output} {params.annotations} "
        "{params.options} --workers {threads} > {log} 2>&1"


IMAGENET_CLASSES = wf.flags(config["data"]["imagenet"], only=("synsets", "class_names")) + (
    "" if config["data"]["imagenet"]["synsets"]
    else f" --num-classes {config['data']['imagenet']['num_classes']}"
)


rule prepare_imagenet_class:
    # one job per class: parallel on a cluster, resumable (a finished class is not redone)
    input:
        unpack(external(("train_tar", "train_dir", "synsets", "class_names"), "imagenet")),
    output:
        part=f"{RESOURCES}/{{dataset}}/parts/{{wnid}}.csv",
        train=directory(f"{RESOURCES}/{{dataset}}/train/{{wnid}}"),
        test=directory(f"{RESOURCES}/{{dataset}}/test/{{wnid}}"),
    wildcard_constraints:
        dataset=dataset_pattern("imagenet"),
    params:
        out=lambda wildcards: f"{RESOURCES}/{wildcards.dataset}",
        source=lambda wildcards, input: wf.flags(
            {"train_tar": input.get("train_tar"), "train_dir": input.get("train_dir")}),
        classes=IMAGENET_CLASSES,
        options=wf.flags(config["data"]["imagenet"], only=("im_size", "resize", "test_fraction",
                                                           "seed", "format", "quality")),
    log:
        f"{LOGS}/prepare_imagenet/{{dataset}}/{{wnid}}.log",
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
        unpack(external(("synsets", "class_names"), "imagenet")),
        parts=lambda wildcards: expand(f"{RESOURCES}/{wildcards.dataset}/parts/{{wnid}}.csv",
                                       wnid=wf.imagenet_wnids(config)),
    output:
        summary=f"{RESOURCES}/{{dataset}}/summary.json",
        classes=f"{RESOURCES}/{{dataset}}/classes.txt",
        manifest=f"{RESOURCES}/{{dataset}}/manifest.csv",
    wildcard_constraints:
        dataset=dataset_pattern("imagenet"),
    params:
        out=lambda wildcards, output: os.path.dirname(output.summary),
        classes=IMAGENET_CLASSES,
    log:
        f"{LOGS}/prepare_imagenet_merge_{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=scaled("prepare", "mem_mb"),
        runtime=scaled("prepare", "runtime"),
    conda:
        CPU_ENV
    shell:
        "hrcam prepare imagenet-merge --out {params.out} {params.classes} > {log} 2>&1"


rule prepare_imagenet_val:
    # the held-out localization benchmark: validation images of the same classes, with their
    # boxes rescaled to the resized images, published whole
    input:
        unpack(external(("val_tar", "val_dir", "val_solution_csv", "val_bbox_xml",
                         "class_names"), "imagenet")),
        classes=f"{RESOURCES}/{{dataset}}/classes.txt",
    output:
        directory(f"{RESOURCES}/{{dataset}}-val"),
    wildcard_constraints:
        dataset=dataset_pattern("imagenet", val=True),
    params:
        sources=lambda wildcards, input: wf.flags(
            {key: input.get(key) for key in ("val_tar", "val_dir", "class_names")}),
        labels=lambda wildcards, input: wf.flags(
            {"solution_csv": input.get("val_solution_csv"),
             "bbox_xml": input.get("val_bbox_xml")}),
        options=wf.flags(config["data"]["imagenet"], only=("im_size", "resize", "format",
                                                           "quality")),
    log:
        f"{LOGS}/prepare_imagenet_val_{{dataset}}.log",
    threads: threads_for("prepare")
    resources:
        mem_mb=scaled("prepare", "mem_mb"),
        runtime=scaled("prepare", "runtime"),
    conda:
        CPU_ENV
    shell:
        "hrcam prepare imagenet-val {params.sources} {params.labels} --synsets {input.classes} "
        "--out {output} {params.options} --workers {threads} > {log} 2>&1"
