"""The workflow on a real single-node SLURM cluster (conftest.py's `slurm_cluster`), through
profiles/slurm filled in as a user of a CPU-only cluster without accounting would: account and
partitions set, compute.gpu 0, `slurm-status-command: squeue`.

1. config/test.yaml end to end: every output, an idle rerun, and the resources SLURM gave each
   job (`scontrol show job`: partition, memory, time limit, CPUs) against the config's compute
   block.
2. Resume: the half-model training job is cancelled (scancel) after two epochs; the profile's
   retries resubmit it (with twice the memory and time), it resumes after the last finished
   epoch, completes, and its history.csv lists every epoch once.

Select with `pytest -m slurm`; a few minutes on 2 CPUs.
"""

from __future__ import annotations

import csv
import re
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]
TEST_CONFIG = ROOT / "config" / "test.yaml"

# rule -> (its block in compute.mem_mb / compute.runtime, its compute.threads key or a fixed
# thread count), as the rules in workflow/rules/ declare them
RULES = {
    "prepare_synthetic": ("prepare", "prepare"),
    "train_half": ("train", "train"),
    "train_full": ("train", "train"),
    "check_transfer": ("evaluate", "evaluate"),
    "evaluate_classification": ("evaluate", "evaluate"),
    "evaluate_localization": ("evaluate", "evaluate"),
    "render_cams": ("render", "render"),
    "train_variant": ("train", "train"),
    "evaluate_variant": ("evaluate", "evaluate"),
    "compare_variants": ("evaluate", "evaluate"),
}
# the light rules the Snakefile runs on the submitting machine (`localrules`)
LOCAL_RULES = {"all", "compare_classification", "aggregate_seeds", "figures", "readme_figures"}
# the line Keras prints after each epoch
EPOCH_DONE = re.compile(r"^\s*\d+/\d+ - .*\bloss: ", re.MULTILINE)
RESUMED = re.compile(r"resuming .* after epoch (\d+)")


def write_config(path: Path, **changes: dict) -> tuple[Path, dict]:
    """config/test.yaml on a CPU-only cluster (compute.gpu 0), with blocks updated."""
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["compute"]["gpu"] = 0
    for block, values in changes.items():
        for key, value in values.items():
            if isinstance(value, dict):
                config[block][key].update(value)
            else:
                config[block][key] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, config


def memory_mb(value: str) -> int:
    """scontrol's MinMemoryNode (2000M, 4G, ...) in MB."""
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", value).groups()
    scale = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 ** 2, "": 1}[unit]
    return round(float(number) * scale)


def minutes(value: str) -> float:
    """scontrol's TimeLimit ([days-]hours:minutes:seconds) in minutes."""
    days, _, clock = value.rpartition("-")
    parts = [int(part) for part in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, mins, secs = parts
    return int(days or 0) * 1440 + hours * 60 + mins + secs / 60


def expected_resources(config: dict, rule: str, attempt: int = 1) -> dict:
    """What the job of `rule` must get from SLURM: the config's compute block (memory and time
    scaled by the attempt, as the rules' resource functions do)."""
    group, threads = RULES[rule]
    compute = config["compute"]
    return {
        "mem_mb": compute["mem_mb"][group] * attempt,
        "minutes": compute["runtime"][group] * attempt,
        "cpus": compute["threads"][threads] if isinstance(threads, str) else threads,
    }


def given_resources(job: dict) -> dict:
    return {"mem_mb": memory_mb(job["MinMemoryNode"]), "minutes": minutes(job["TimeLimit"]),
            "cpus": int(job["CPUs/Task"])}


# ---------------------------------------------------------------------------------------------
# 1. config/test.yaml end to end
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm_run(make_slurm_workflow, tmp_path_factory):
    """One run of config/test.yaml on the cluster, after a dry run that lists its jobs; returns
    (workflow, configfile, config, planned jobs, returncode, output)."""
    folder = tmp_path_factory.mktemp("slurm_run")
    configfile, config = write_config(folder / "config.yaml")
    workflow = make_slurm_workflow(folder)
    planned = workflow.planned_jobs(configfile)
    started = time.time()
    returncode, output = workflow.run(configfile, "--verbose", timeout=900)
    print(f"workflow on SLURM: {time.time() - started:.0f} s")
    return workflow, configfile, config, planned, returncode, output


def test_slurm_run_makes_every_output(slurm_run):
    workflow, _, _, planned, returncode, output = slurm_run
    assert returncode == 0, output[-8000:]
    outputs = [path for job in planned for path in job["output"]]
    assert outputs
    missing = [path for path in outputs if not (workflow.workdir / path).exists()]
    assert not missing, missing


def test_slurm_jobs_get_the_configured_resources(slurm_run):
    """Every job but the light `localrules` ran as its own SLURM job in the profile's partition
    and account, with the config's memory, time limit and threads, and no GPU (compute.gpu 0);
    the light rules ran on the submitting machine."""
    workflow, _, config, planned, returncode, output = slurm_run
    assert returncode == 0, output[-8000:]
    jobs = workflow.jobs()        # from the kept logs of the successful jobs
    local = {job["rule"] for job in planned if job["rule"] in LOCAL_RULES}
    assert local == {"all", "compare_classification", "aggregate_seeds", "figures"}, local
    for rule in local:
        assert f"localrule {rule}:" in output, rule
    expected = Counter(job["rule"] for job in planned if job["rule"] not in LOCAL_RULES)
    assert {rule: len(ids) for rule, ids in jobs.items()} == expected, (jobs, expected)
    unknown = set(jobs) - set(RULES)
    assert not unknown, f"add the compute block of {unknown} to RULES"
    for rule, ids in jobs.items():
        for jobid in ids:
            assert f"SLURM jobid {jobid} " in output, (rule, jobid)
            job = workflow.cluster.scontrol_show_job(jobid)
            assert job["JobState"] == "COMPLETED", (rule, job)
            assert job["Comment"].startswith(f"rule_{rule}"), (rule, job)
            assert job["Partition"] == workflow.cluster.partition, (rule, job)
            assert job["Account"] == workflow.cluster.account, (rule, job)
            assert given_resources(job) == expected_resources(config, rule), (rule, job)
            assert "gpu" not in job["TRES"], (rule, job)


def test_slurm_rerun_has_nothing_to_do(slurm_run):
    workflow, configfile, _, _, returncode, output = slurm_run
    assert returncode == 0, output[-8000:]
    before = len(workflow.cluster.squeue())
    again_rc, again = workflow.run(configfile, timeout=300)
    assert again_rc == 0, again[-8000:]
    assert "Nothing to be done" in again, again[-8000:]
    assert len(workflow.cluster.squeue()) == before      # no job submitted


# ---------------------------------------------------------------------------------------------
# 2. A cancelled training job resumes on retry
# ---------------------------------------------------------------------------------------------


EPOCHS = 40


def test_slurm_cancelled_training_resumes_on_retry(make_slurm_workflow, tmp_path):
    cluster_workflow = make_slurm_workflow(tmp_path)
    cluster = cluster_workflow.cluster
    # ~1 s an epoch on 2 CPUs: long enough to cancel the job halfway
    configfile, config = write_config(tmp_path / "config.yaml", train={"epochs": EPOCHS},
                                      data={"synthetic": {"per_class": 24}})
    training = [job for job in cluster_workflow.planned_jobs(configfile)
                if job["rule"] == "train_half"]
    assert len(training) == 1, training
    log = cluster_workflow.workdir / training[0]["log"][0]
    history = next(cluster_workflow.workdir / path for path in training[0]["output"]
                   if path.endswith("history.csv"))
    started = time.time()
    # the half model's outputs as targets: the rest of the workflow is test 1's
    process = cluster_workflow.start(configfile, *training[0]["output"])
    try:
        # wait until the first train_half job has finished two epochs, then cancel it
        deadline = time.time() + 400
        ids: list[str] = []
        while True:
            if process.poll() is not None:
                pytest.fail("snakemake ended before training got to two epochs:\n"
                            + cluster_workflow.output(process)[-8000:])
            if time.time() > deadline:
                break
            ids = cluster_workflow.jobs().get("train_half", [])
            if ids and log.exists() and len(EPOCH_DONE.findall(log.read_text())) >= 2:
                break
            time.sleep(0.5)
        assert ids, "no train_half job started in time"
        cancelled = ids[0]
        done_before = len(EPOCH_DONE.findall(log.read_text()))
        assert 2 <= done_before < EPOCHS, log.read_text()
        assert cluster.scontrol_show_job(cancelled)["JobState"] == "RUNNING"
        cluster.scancel(cancelled)
        output = cluster_workflow.finish(process, timeout=900)
    finally:
        # Snakemake (if a check above failed) and what the cancelled job left behind
        cluster_workflow.stop(process)
    print(f"resume scenario on SLURM: {time.time() - started:.0f} s")

    # the cancelled job was retried (attempt 2: twice the memory and time) ...
    ids = cluster_workflow.jobs()["train_half"]
    assert ids[0] == cancelled and len(ids) >= 2, (ids, output[-8000:])
    first, retry = (cluster.scontrol_show_job(jobid) for jobid in ids[:2])
    assert first["JobState"] == "CANCELLED", first
    assert given_resources(retry) == expected_resources(config, "train_half", attempt=2), retry
    # ... once, and the training completed
    assert process.returncode == 0, output[-8000:]
    assert len(ids) == 2 and retry["JobState"] == "COMPLETED", (ids, retry)
    # the retry resumed after an epoch the cancelled job had finished ...
    text = log.read_text()
    resumed = RESUMED.search(text)
    assert resumed, text[-4000:]
    assert 1 <= int(resumed.group(1)) < EPOCHS, resumed.group(0)
    # ... and the history lists every epoch exactly once
    with history.open() as handle:
        epochs = [int(row["epoch"]) for row in csv.DictReader(handle)]
    assert epochs == list(range(EPOCHS)), epochs
