# Shared wiring: paths, config checks that JSON Schema cannot express, option -> flag helpers,
# input functions and resource helpers. No computation happens here.

import os
import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError


RUN = config["run"]
RESULTS = str(Path(config["paths"]["results"], RUN))
LOGS = str(Path(config["paths"]["logs"], RUN))
BENCH = str(Path(config["paths"]["results"], RUN, "benchmarks"))
DATA_NAME = config["data"]["name"] or RUN
DATA = str(Path(config["paths"]["resources"], DATA_NAME))
VAL_DATA = str(Path(config["paths"]["resources"], f"{DATA_NAME}-val"))
SOURCE = config["data"]["source"]
MODELS = ("half", "full")

wildcard_constraints:
    model="half|full",
    wnid="n[0-9]{8}",


# ---------------------------------------------------------------------------------------------
# Config checks beyond the schema (each names the offending key)
# ---------------------------------------------------------------------------------------------


def config_error(key, message):
    raise WorkflowError(f"Invalid config: {key}: {message}")


def check_path(key, value, kind="any"):
    """A configured input path must exist (file or folder as stated)."""
    path = Path(value)
    if not path.exists():
        config_error(key, f"{value!r} does not exist")
    if kind == "file" and not path.is_file():
        config_error(key, f"{value!r} is not a file")
    if kind == "dir" and not path.is_dir():
        config_error(key, f"{value!r} is not a folder")


def one_of(block, prefix, keys, required=True):
    """Exactly one of the keys (e.g. train_tar / train_dir) is set; returns its name or None."""
    given = [key for key in keys if block.get(key)]
    names = " or ".join(f"{prefix}.{key}" for key in keys)
    if len(given) > 1:
        config_error(names, "set only one of them")
    if required and not given:
        config_error(names, f"one of them is required when data.source is {SOURCE!r}")
    return given[0] if given else None


IMAGENET = config["data"]["imagenet"]
IMAGENET_VAL = False
if SOURCE == "imagenet":
    train_key = one_of(IMAGENET, "data.imagenet", ("train_tar", "train_dir"))
    check_path(f"data.imagenet.{train_key}", IMAGENET[train_key],
               "file" if train_key == "train_tar" else "dir")
    val_key = one_of(IMAGENET, "data.imagenet", ("val_tar", "val_dir"), required=False)
    if val_key:
        check_path(f"data.imagenet.{val_key}", IMAGENET[val_key],
                   "file" if val_key == "val_tar" else "dir")
        ann_key = one_of(IMAGENET, "data.imagenet", ("val_solution_csv", "val_bbox_xml"))
        check_path(f"data.imagenet.{ann_key}", IMAGENET[ann_key],
                   "file" if ann_key == "val_solution_csv" else "any")
        IMAGENET_VAL = True
    for key in ("class_names", "synsets"):
        if IMAGENET[key]:
            check_path(f"data.imagenet.{key}", IMAGENET[key], "file")
if SOURCE == "folder":
    if not config["data"]["folder"]["src"]:
        config_error("data.folder.src", "required when data.source is 'folder'")
    check_path("data.folder.src", config["data"]["folder"]["src"], "dir")


def localization_dataset():
    """The prepared dataset localization is evaluated on, or None when localization is off.

    evaluate.localization: null = wherever annotations exist (the generated set's test split,
    the ImageNet validation set when configured), true = required, false = off.
    """
    wanted = config["evaluate"]["localization"]
    if wanted is False:
        return None
    if SOURCE == "synthetic":
        return DATA
    if SOURCE == "imagenet" and IMAGENET_VAL:
        return VAL_DATA
    if wanted:
        if SOURCE == "imagenet":
            config_error("evaluate.localization",
                         "true needs ImageNet validation boxes: set data.imagenet.val_tar (or "
                         "val_dir) and data.imagenet.val_solution_csv (or val_bbox_xml)")
        config_error("evaluate.localization",
                     "true needs annotations; data.source 'folder' has none")
    return None


LOC_DATA = localization_dataset()


# ---------------------------------------------------------------------------------------------
# Option helpers
# ---------------------------------------------------------------------------------------------


def flags(options, only=None, switches=()):
    """Command-line flags for a dict of options: `--key value` for every value that is not
    None (underscores become dashes), `--key`/`--no-key` for booleans (`--key` or nothing for
    the keys in `switches`), `--key a b` for lists."""
    parts = []
    for key, value in options.items():
        if only is not None and key not in only:
            continue
        if value is None or (isinstance(value, (list, tuple)) and not value):
            continue
        name = key.replace("_", "-")
        if isinstance(value, bool):
            if value or key not in switches:
                parts.append(f"--{name}" if value else f"--no-{name}")
        elif isinstance(value, (list, tuple)):
            items = " ".join(shlex.quote(str(item)) for item in value)
            parts.append(f"--{name} {items}")
        else:
            parts.append(f"--{name} {shlex.quote(str(value))}")
    return " ".join(parts)


def scaled(group, kind):
    """A resource callable: the configured value for a rule group, times the attempt number
    (so a job that ran out of memory or time gets more on retry)."""
    base = config["compute"][kind][group]

    def resource(wildcards, attempt):
        return base * attempt

    return resource


def threads_for(group):
    return config["compute"]["threads"][group]


GPU = config["compute"]["gpu"]
CPU_ENV = "../../envs/hrcam.yaml"
ACCEL_ENV = "../../envs/hrcam-gpu.yaml" if GPU > 0 else CPU_ENV


# ---------------------------------------------------------------------------------------------
# Data: which dataset marker the training rules wait for
# ---------------------------------------------------------------------------------------------


def imagenet_wnids():
    """The ImageNet classes to extract, one job each: the synsets file's first column, else the
    first data.imagenet.num_classes of the package's 398 animal synsets (sorted WordNet ids)."""
    if IMAGENET["synsets"]:
        lines = Path(IMAGENET["synsets"]).read_text().splitlines()
        wnids = [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]
        if not wnids:
            config_error("data.imagenet.synsets", f"{IMAGENET['synsets']!r} lists no synsets")
        return sorted(wnids)
    from hrcam.data import animal_synsets

    wnids = sorted(wnid for wnid, _ in animal_synsets())
    if IMAGENET["num_classes"] > len(wnids):
        config_error("data.imagenet.num_classes",
                     f"{IMAGENET['num_classes']} > {len(wnids)} (the animal subset); list the "
                     "classes in data.imagenet.synsets instead")
    return wnids[: IMAGENET["num_classes"]]


def dataset_marker():
    """The file that marks the training dataset as complete."""
    return f"{DATA}/summary.json"


def loc_marker():
    return f"{LOC_DATA}/summary.json"


# ---------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------


def figure_outputs():
    """Everything the report shows (the `figures` target)."""
    outputs = [
        f"{RESULTS}/report/training_curves.png",
        f"{RESULTS}/report/classification.png",
        f"{RESULTS}/report/classification.csv",
        f"{RESULTS}/report/transfer_check.csv",
        f"{RESULTS}/cams/collage.png",
    ]
    if LOC_DATA:
        outputs += [
            f"{RESULTS}/evaluation/localization/localization.csv",
            f"{RESULTS}/evaluation/localization/localization.png",
        ]
    return outputs


def all_outputs():
    return [
        f"{RESULTS}/models/transfer_check.json",
        f"{RESULTS}/evaluation/classification/compare.json",
        *figure_outputs(),
    ]


# ---------------------------------------------------------------------------------------------
# Training options (the only options the training rules' params see)
# ---------------------------------------------------------------------------------------------


def image_size():
    """Side of the prepared images, which the models are built for."""
    if SOURCE == "synthetic":
        return config["data"]["synthetic"]["im_size"]
    return config["data"][SOURCE]["im_size"]


def train_flags(stage):
    """Flags of `hrcam train half` / `hrcam train full` from the `train` block (and the image
    size of the prepared data)."""
    train = config["train"]
    options = {
        "im_size": image_size(),
        "batch_size": train["batch_size"],
        "epochs": train["epochs"] if stage == "half" else (train["full_epochs"] or train["epochs"]),
        "seed": train["seed"],
        "mixed_precision": train["mixed_precision"],
        "xla": train["xla"],
        "cache": train["cache"],
        "augment": train["augment"],
        "augment_probability": train["augment_probability"] if train["augment"] else None,
        "progress": "epoch",
    }
    if stage == "half":
        arch = dict(train["arch"])
        options.update(
            arch=arch.pop("preset"),
            optimizer=train["optimizer"],
            learning_rate=train["learning_rate"],
            balanced=train["balanced"],
        )
        reduce_lr = train["reduce_lr"]
        if reduce_lr["enabled"]:
            options.update(
                reduce_lr_patience=reduce_lr["patience"],
                reduce_lr_factor=reduce_lr["factor"],
                min_lr=reduce_lr["min_lr"],
            )
        else:
            options["reduce_lr"] = False
        overrides = [f"--arch-set {key}={value}" for key, value in arch.items()
                     if value is not None]
        return " ".join([flags(options, switches=("cache",)), *overrides])
    return flags(options, switches=("cache",))
