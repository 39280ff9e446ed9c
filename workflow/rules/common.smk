# Shared wiring: paths, the config checks and command-line flags (computed by hrcam.workflow),
# wildcard constraints, input functions and resource helpers. No computation happens here.

import os
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError

from hrcam import workflow as wf


try:
    wf.check_config(config)
    LOCALIZATION = wf.localization_data(config)
except wf.ConfigError as error:
    raise WorkflowError(str(error)) from None


RUN = config["run"]
SOURCE = config["data"]["source"]
RESOURCES = config["paths"]["resources"]
RESULTS = str(Path(config["paths"]["results"], RUN))
LOGS = str(Path(config["paths"]["logs"], RUN))
BENCH = str(Path(RESULTS, "benchmarks"))
DATA_NAME = wf.dataset_name(config)
DATA = str(Path(RESOURCES, DATA_NAME))
VAL_DATA = f"{DATA}-val"
SEEDS = wf.seeds(config)
VARIANTS = wf.variant_names(config)
SEED_DIR = f"{RESULTS}/seed{{seed}}"
GPU = config["compute"]["gpu"]
CPU_ENV = "../../envs/hrcam.yaml"
ACCEL_ENV = "../../envs/hrcam-gpu.yaml" if GPU > 0 else CPU_ENV


def dataset_pattern(*sources, val=False):
    """Wildcard constraint of a preparation rule's dataset: the configured dataset's name when
    the configured source is one of ``sources`` (and, for ``val``, a validation set is
    configured), else a pattern that matches nothing: every rule exists, only one can run."""
    chosen = SOURCE in sources and (not val or LOCALIZATION == ("val", "val"))
    return re.escape(DATA_NAME) if chosen else "(?!)"


wildcard_constraints:
    model="half|full",
    seed=r"\d+",
    wnid="n[0-9]{8}",
    variant="|".join(map(re.escape, VARIANTS)) or "(?!)",


# ---------------------------------------------------------------------------------------------
# Input functions
# ---------------------------------------------------------------------------------------------


def dataset_input(wildcards=None):
    """What marks the training dataset as ready: the dataset folder (published whole by
    `hrcam prepare synthetic|folder`) or, for ImageNet, the merge's summary."""
    return f"{DATA}/summary.json" if SOURCE == "imagenet" else DATA


def localization_input(wildcards=None):
    """The dataset localization is evaluated on (its ready marker)."""
    if LOCALIZATION == ("val", "val"):
        return VAL_DATA
    return dataset_input()


def localization_dir():
    return VAL_DATA if LOCALIZATION == ("val", "val") else DATA


def external(keys, block):
    """The configured external files and folders of a data source, as declared inputs."""

    def inputs(wildcards):
        return {key: config["data"][block][key] for key in keys if config["data"][block][key]}

    return inputs


def seeded(path):
    """A per-seed path for every seed of the run."""
    return expand(path, seed=SEEDS)


def seed_outputs(wildcards=None):
    """Everything the report shows for every seed, plus the seed aggregate."""
    outputs = seeded(f"{SEED_DIR}/models/transfer_check.json")
    outputs += seeded(f"{SEED_DIR}/evaluation/classification/compare.json")
    outputs += figure_outputs()
    if LOCALIZATION:
        outputs += [f"{RESULTS}/seeds/localization_seeds.csv",
                    f"{RESULTS}/seeds/localization_seeds_paired.csv"]
    if VARIANTS:
        outputs += seeded(f"{SEED_DIR}/variants/variants.csv")
        outputs += seeded(f"{SEED_DIR}/variants/variants_cams.png")
    return outputs


def figure_outputs():
    """The `figures` target: the report figures and tables of every seed."""
    outputs = []
    for name in ("training_curves.png", "classification.png", "classification.csv",
                 "transfer_check.csv"):
        outputs += seeded(f"{SEED_DIR}/report/{name}")
    outputs += seeded(f"{SEED_DIR}/cams/collage.png")
    if LOCALIZATION:
        outputs += seeded(f"{SEED_DIR}/evaluation/localization/localization.csv")
        outputs += seeded(f"{SEED_DIR}/evaluation/localization/localization.png")
    return outputs


def readme_figure_names():
    """The figures the README embeds (reports/figures/), as `hrcam report readme` writes them."""
    from hrcam.report import readme_figure_names as names

    return names(localization=bool(LOCALIZATION), variants=bool(VARIANTS))


# ---------------------------------------------------------------------------------------------
# Resources
# ---------------------------------------------------------------------------------------------


def scaled(group, kind):
    """A resource callable: the configured value for a rule group, times the attempt number
    (so a job that ran out of memory or time gets more on retry)."""
    base = config["compute"][kind][group]

    def resource(wildcards, attempt):
        return base * attempt

    return resource


def threads_for(group):
    return config["compute"]["threads"][group]
