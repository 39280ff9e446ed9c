"""The Snakemake workflow: lint, dry runs (default, ImageNet, SLURM submission), config
validation errors, and a real end-to-end run of the tiny config (config/test.yaml) with its
report and a second run that has nothing to do.

Every run uses a temporary working directory (``--directory``), so nothing is written into the
repository. The end-to-end test needs the whole `hrcam` command line (a few minutes on 2 CPUs).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hrcam.data import animal_synsets

ROOT = Path(__file__).resolve().parents[2]
SNAKEFILE = ROOT / "Snakefile"
CONFIGS = ROOT / "config"
SLURM_PROFILE = ROOT / "profiles" / "slurm"
ANIMAL_CLASSES = 398


def _env(extra_path: Path | None = None) -> dict[str, str]:
    """Subprocess environment: this interpreter's bin first (so `hrcam` and `snakemake` are the
    ones under test even when the venv is not activated), CPU-only, quiet TensorFlow."""
    env = dict(os.environ)
    path = [str(Path(sys.executable).parent), env.get("PATH", "")]
    if extra_path is not None:
        path.insert(0, str(extra_path))
    env["PATH"] = os.pathsep.join(path)
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("MPLBACKEND", "Agg")
    return env


def snakemake(workdir: Path, *args: str, configfile: Path | None = None, timeout: int = 300,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run snakemake on the repository's Snakefile in `workdir`; output merged into .stdout."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE),
           "--directory", str(workdir)]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    cmd += list(args)
    return subprocess.run(cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout,
                          env=env or _env())


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    counts: dict[str, int] = {}
    match = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\n\s*total", output, re.S)
    assert match, output[-3000:]
    for line in match.group(1).splitlines():
        name, count = line.split()
        counts[name] = int(count)
    return counts


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def load_config(name: str) -> dict:
    return yaml.safe_load((CONFIGS / name).read_text())


def fake_imagenet(tmp_path: Path) -> dict:
    """The ImageNet config with its archive paths pointing at (empty) files in tmp_path: the
    workflow only checks at start that they exist; a dry run never opens them."""
    archives = tmp_path / "archives"
    archives.mkdir()
    config = load_config("imagenet_animals.yaml")
    names = {"train_tar": "ILSVRC2012_img_train.tar", "val_tar": "ILSVRC2012_img_val.tar",
             "val_solution_csv": "LOC_val_solution.csv",
             "class_names": "LOC_synset_mapping.txt"}
    for key, name in names.items():
        (archives / name).write_bytes(b"")
        config["data"]["imagenet"][key] = str(archives / name)
    return config


# ---------------------------------------------------------------------------------------------
# Static checks and dry runs
# ---------------------------------------------------------------------------------------------


def folder_config(tmp_path: Path, per_class: int = 4) -> dict:
    """A config for data.source 'folder' over a tiny class-folder tree of generated images."""
    from PIL import Image

    src = tmp_path / "my_images"
    for index, colour in enumerate(("red", "blue")):
        (src / f"class_{index}").mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (40 + i, 30), colour).save(src / f"class_{index}" / f"{i}.png")
    config = load_config("test.yaml")
    config["run"] = "folder"
    config["data"] = {"source": "folder",
                      "folder": {"src": str(src), "im_size": 32, "test_fraction": 0.5}}
    config["train"]["decoder"] = {"variants": []}  # variants need annotations to be compared
    return config


def test_lint_is_clean(tmp_path):
    """No lint findings; every rule is defined whatever the data source, so one run covers
    them all."""
    result = snakemake(tmp_path, "--lint", configfile=CONFIGS / "config.yaml")
    assert result.returncode == 0, result.stdout
    assert "Lints for" not in result.stdout, result.stdout
    assert "Congratulations" in result.stdout, result.stdout


def test_folder_source_prepares_data(tmp_path):
    """data.source 'folder': the preparation rule runs for real on a tiny tree."""
    config = folder_config(tmp_path)
    configfile = write_config(tmp_path / "folder.yaml", config)
    dry = snakemake(tmp_path, "-n", configfile=configfile)
    assert dry.returncode == 0, dry.stdout
    counts = job_counts(dry.stdout)
    assert counts["prepare_folder"] == 1
    assert "evaluate_localization" not in counts      # no annotations: localization is off
    result = snakemake(tmp_path, "--cores", "1", "resources/folder", configfile=configfile)
    assert result.returncode == 0, result.stdout
    assert (tmp_path / "resources" / "folder" / "classes.txt").read_text().split()[0] == "class_0"
    assert (tmp_path / "logs" / "folder" / "prepare_folder_folder.log").exists()


def annotated_folder(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A user's class-folder tree with a boxes CSV (inclusive source pixels) and a masks folder,
    made from a tiny generated dataset; one class folder name has a space."""
    import csv as csv_module
    import shutil

    from hrcam.data import generate_synthetic, load_annotations

    generated = tmp_path / "generated"
    generate_synthetic(generated, classes=3, per_class=8, im_size=32, seed=1)
    src, masks = tmp_path / "photos", tmp_path / "photo_masks"
    rows = []
    annotations = load_annotations(generated)
    for rel, ann in sorted(annotations.items()):
        split, cls, name = rel.split("/")
        folder = "big disk" if cls == "disk" else cls
        image = f"{folder}/{split}_{name}"
        (src / folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(generated / rel, src / image)
        (masks / folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ann["mask"], masks / folder / f"{split}_{Path(name).stem}.png")
        for x0, y0, x1, y1 in ann["boxes"]:
            rows.append([image, int(x0), int(y0), int(x1) - 1, int(y1) - 1])
    boxes = tmp_path / "boxes.csv"
    with boxes.open("w", newline="") as handle:
        writer = csv_module.writer(handle)
        writer.writerow(["image", "xmin", "ymin", "xmax", "ymax"])
        writer.writerows(rows + [["nowhere/x.png", 1, 1, 2, 2]])  # a bad row: recorded only
    return src, boxes, masks


def test_folder_with_boxes_and_masks_through_the_workflow(tmp_path):
    """A user's own annotated images: prepared with their boxes and masks, trained, and scored
    for localization like the generated set."""
    src, boxes, masks = annotated_folder(tmp_path)
    config = load_config("test.yaml")
    config["run"] = "mine"
    config["data"] = {"source": "folder", "folder": {
        "src": str(src), "boxes": str(boxes), "masks": str(masks), "im_size": 32,
        "test_fraction": 0.25}}
    config["train"]["decoder"] = {"variants": []}
    configfile = write_config(tmp_path / "mine.yaml", config)
    target = "results/mine/seed0/evaluation/localization/localization.csv"
    result = snakemake(tmp_path, "--cores", "2", target, configfile=configfile, timeout=900)
    assert result.returncode == 0, result.stdout[-8000:]
    data = tmp_path / "resources" / "mine"
    assert "big_disk big disk" in (data / "classes.txt").read_text()
    summary = json.loads((data / "summary.json").read_text())
    assert summary["annotations"]["bad_rows_by_reason"] == {"unknown image": 1}
    table = list(csv.DictReader((tmp_path / target).open()))
    assert {row["method"] for row in table} >= {"low_res", "refined", "layercam"}
    assert all(int(row["n_masks"]) > 0 and int(row["n_boxes"]) > 0 for row in table)
    assert all(0 <= float(row["PxAP"]) <= 1 for row in table)


def test_default_config_dry_run(tmp_path):
    result = snakemake(tmp_path, "-n", configfile=CONFIGS / "config.yaml")
    assert result.returncode == 0, result.stdout
    counts = job_counts(result.stdout)
    assert counts == {
        "prepare_synthetic": 1, "train_half": 1, "train_full": 1, "check_transfer": 1,
        "evaluate_classification": 2, "compare_classification": 1,
        "evaluate_localization": 1, "render_cams": 1, "aggregate_seeds": 1, "figures": 1,
        "all": 1,
    }
    # TensorFlow gets the job's threads, the workers too
    assert "--threads 2" in result.stdout and "--workers 2" in result.stdout
    # the default profile is found next to the Snakefile
    assert "profiles/default" in result.stdout


def test_imagenet_config_dry_run(tmp_path):
    config = write_config(tmp_path / "imagenet.yaml", fake_imagenet(tmp_path))
    result = snakemake(tmp_path, "-n", configfile=config)
    assert result.returncode == 0, result.stdout
    counts = job_counts(result.stdout)
    # one extraction job per animal class, then the merge, the validation set with boxes
    assert counts["prepare_imagenet_class"] == ANIMAL_CLASSES
    assert counts["prepare_imagenet_merge"] == 1
    assert counts["prepare_imagenet_val"] == 1
    assert counts["evaluate_localization"] == 1
    assert "--wnids n01440764" in result.stdout and "--wnids n02655020" in result.stdout
    assert "--arch paper" in result.stdout and "--optimizer adadelta" in result.stdout
    assert "--learning-rate 1.0" in result.stdout and "--batch-size 16" in result.stdout


def test_imagenet_missing_archive_names_the_key(tmp_path):
    # the shipped config has placeholder paths (/path/to/...): it must fail at start
    result = snakemake(tmp_path, "-n", configfile=CONFIGS / "imagenet_animals.yaml")
    assert result.returncode != 0
    assert "data.imagenet.train_tar" in result.stdout, result.stdout


@pytest.mark.parametrize(
    "change, key",
    [
        ({"train": {"epoch": 3}}, "epoch"),                      # unknown key (typo)
        ({"colour": "red"}, "colour"),                           # unknown top-level key
        ({"train": {"epochs": "many"}}, "epochs"),               # wrong type
        ({"data": {"synthetic": {"im_size": 30}}}, "im_size"),   # impossible value (not /16)
        ({"data": {"source": "cifar"}}, "source"),               # not an allowed value
        ({"pipeline": {"merge_alpha": 1.5}}, "merge_alpha"),     # out of range
    ],
)
def test_bad_config_fails_naming_the_key(tmp_path, change, key):
    config = load_config("test.yaml")
    for block, value in change.items():
        if isinstance(value, dict) and isinstance(config.get(block), dict):
            for sub, subvalue in value.items():
                if isinstance(subvalue, dict) and isinstance(config[block].get(sub), dict):
                    config[block][sub].update(subvalue)
                else:
                    config[block][sub] = subvalue
        else:
            config[block] = value
    path = write_config(tmp_path / "bad.yaml", config)
    result = snakemake(tmp_path, "-n", configfile=path)
    assert result.returncode != 0, result.stdout
    assert "Error validating config file" in result.stdout, result.stdout
    assert key in result.stdout, result.stdout


def test_folder_source_needs_an_existing_src(tmp_path):
    config = load_config("test.yaml")
    config["data"] = {"source": "folder", "folder": {"src": str(tmp_path / "nowhere")}}
    result = snakemake(tmp_path, "-n", configfile=write_config(tmp_path / "c.yaml", config))
    assert result.returncode != 0
    assert "data.folder.src" in result.stdout, result.stdout


FAKE_SLURM = {
    # records every submission (arguments, then the job script if given on stdin)
    "sbatch": '#!/bin/sh\n{ echo "ARGS: $*"; } >> "$FAKE_SLURM_LOG"\n'
              'case "$*" in *"/dev/stdin"*) cat >> "$FAKE_SLURM_LOG";; esac\necho 4242\n',
    "sacctmgr": "#!/bin/sh\necho your_account\n",
    "sacct": "#!/bin/sh\nexit 0\n",
    "squeue": "#!/bin/sh\nexit 0\n",
    "sinfo": "#!/bin/sh\nexit 0\n",
    "scancel": "#!/bin/sh\nexit 0\n",
}


def test_slurm_profile_submits_gpu_memory_and_runtime(tmp_path):
    """The ImageNet config through profiles/slurm against a fake `sbatch`: the training job is
    submitted to the GPU partition with --gpus (never --gres), its memory and its wall time."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in FAKE_SLURM.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    config = fake_imagenet(tmp_path)
    config["data"]["imagenet"]["val_tar"] = None
    config["data"]["imagenet"]["val_solution_csv"] = None
    config["evaluate"]["localization"] = False
    configfile = write_config(tmp_path / "imagenet.yaml", config)
    # a prepared dataset already in place (parts older than the merged files), so the first
    # job to submit is the half-model training
    data = work / "resources" / config["data"]["name"]
    (data / "parts").mkdir(parents=True)
    for wnid, _ in animal_synsets():
        (data / "parts" / f"{wnid}.csv").write_text("")
        (data / "train" / wnid).mkdir(parents=True)
        (data / "test" / wnid).mkdir(parents=True)
    time.sleep(1.1)
    for name in ("summary.json", "classes.txt", "manifest.csv"):
        (data / name).write_text("")
    log = tmp_path / "sbatch.log"
    env = _env(extra_path=bin_dir)
    env["FAKE_SLURM_LOG"] = str(log)
    target = "results/imagenet_animals/seed0/models/half/best.keras"
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE),
           "--directory", str(work), "--configfile", str(configfile),
           "--workflow-profile", str(SLURM_PROFILE), target]
    process = subprocess.Popen(cmd, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env,
                               start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None:
            if log.exists() and "rule_train_half" in log.read_text():
                break
            time.sleep(0.5)
    finally:
        if process.poll() is None:
            # Snakemake would wait for the (fake) job to finish: stop it and its children
            os.killpg(process.pid, signal.SIGKILL)
        output = process.communicate(timeout=60)[0]
    assert log.exists(), output
    submissions = [line for line in log.read_text().splitlines() if line.startswith("ARGS:")]
    train = [line for line in submissions if "rule_train_half" in line]
    assert len(train) == 1, (log.read_text(), output)
    call = train[0]
    assert "--gpus=1" in call, call
    assert "gres" not in call, call
    assert "--mem 32000" in call, call              # compute.mem_mb.train, first attempt
    assert "-t 2880" in call, call                  # compute.runtime.train (minutes)
    assert "-p YOUR_GPU_PARTITION" in call, call    # the profile's set-resources
    assert "-A your_account" in call or "-A YOUR_ACCOUNT" in call, call
    assert "8" in re.search(r"--cpus-per-(?:gpu|task)=(\d+)", call).group(1), call


# ---------------------------------------------------------------------------------------------
# Real end-to-end run of the tiny config
# ---------------------------------------------------------------------------------------------


def summary_outputs(workdir: Path, configfile: Path) -> list[dict[str, str]]:
    """`snakemake --summary`: one row per output file of the DAG, with its status."""
    result = snakemake(workdir, "--summary", configfile=configfile)
    assert result.returncode == 0, result.stdout
    lines = [line for line in result.stdout.splitlines() if "\t" in line]
    return list(csv.DictReader(io.StringIO("\n".join(lines)), delimiter="\t"))


@pytest.fixture(scope="module")
def e2e_run(tmp_path_factory):
    """One real run of config/test.yaml (a few 32 px images, tiny architecture, one epoch)."""
    workdir = tmp_path_factory.mktemp("workflow_e2e")
    configfile = CONFIGS / "test.yaml"
    started = time.time()
    result = snakemake(workdir, "--cores", "2", configfile=configfile, timeout=1500)
    return workdir, configfile, result, time.time() - started


def test_end_to_end_produces_every_output(e2e_run):
    workdir, configfile, result, seconds = e2e_run
    assert result.returncode == 0, result.stdout[-8000:]
    rows = summary_outputs(workdir, configfile)
    assert rows, "no outputs listed"
    missing = [row["output_file"] for row in rows
               if not (workdir / row["output_file"]).exists()]
    assert not missing, missing
    results = workdir / "results" / "test" / "seed0"
    for rel in ("models/half/best.keras", "models/full/best.keras", "models/transfer_check.json",
                "evaluation/classification/compare.json",
                "evaluation/localization/localization.csv",
                "evaluation/localization/localization_paired.csv", "cams/collage.png",
                "report/training_curves.png", "report/classification.csv",
                "report/transfer_check.csv", "../seeds/localization_seeds.csv",
                "../seeds/localization_seeds_paired.csv"):
        assert (results / rel).stat().st_size > 0, rel
    # every rule wrote its log
    logs = {p.relative_to(workdir / "logs" / "test").with_suffix("").as_posix()
            for p in (workdir / "logs" / "test").rglob("*.log")}
    assert logs >= {"prepare_synthetic_test", "seed0/train_half", "seed0/train_full",
                    "seed0/check_transfer", "seed0/evaluate_localization",
                    "seed0/render_cams", "figures", "aggregate_seeds"}, logs
    # the training state is gone once the outputs are written
    assert not list((results / "models").rglob(".training-state"))
    # half and full classify identically (the workflow's own check passed)
    table = list(csv.DictReader((results / "report" / "classification.csv").open()))
    assert table and all(row["identical"] == "True" for row in table), table


def test_end_to_end_second_run_has_nothing_to_do(e2e_run):
    workdir, configfile, result, _ = e2e_run
    assert result.returncode == 0, result.stdout[-8000:]
    again = snakemake(workdir, "--cores", "2", configfile=configfile)
    assert again.returncode == 0, again.stdout
    assert "Nothing to be done" in again.stdout, again.stdout


def test_end_to_end_report_only_options_do_not_retrain(e2e_run, tmp_path):
    workdir, configfile, result, _ = e2e_run
    assert result.returncode == 0, result.stdout[-8000:]
    config = load_config("test.yaml")
    config["render"]["limit"] = 3
    config["pipeline"] = {"merge_alpha": 0.3}
    changed = write_config(tmp_path / "changed.yaml", config)
    dry = snakemake(workdir, "-n", configfile=changed)
    assert dry.returncode == 0, dry.stdout
    counts = job_counts(dry.stdout)
    assert "train_half" not in counts and "train_full" not in counts, counts
    assert "prepare_synthetic" not in counts, counts
    assert counts.get("render_cams") == 1 and counts.get("evaluate_localization") == 1, counts


def test_end_to_end_report(e2e_run):
    workdir, configfile, result, _ = e2e_run
    assert result.returncode == 0, result.stdout[-8000:]
    report = workdir / "report.html"
    made = snakemake(workdir, "--report", str(report), configfile=configfile)
    assert made.returncode == 0, made.stdout
    html = report.read_text(errors="replace")
    assert len(html) > 10_000
    for name in ("training_curves.png", "classification.csv", "localization.csv",
                 "localization_paired.csv", "localization_seeds.csv", "collage.png",
                 "transfer_check.csv"):
        assert name in html, name


def test_figures_target_redraws_without_retraining(e2e_run):
    workdir, configfile, result, _ = e2e_run
    assert result.returncode == 0, result.stdout[-8000:]
    redraw = snakemake(workdir, "--cores", "1", "--force", "figures", configfile=configfile)
    assert redraw.returncode == 0, redraw.stdout
    counts = job_counts(redraw.stdout)
    assert counts == {"figures": 1}, counts


# ---------------------------------------------------------------------------------------------
# Config checks at start, canonical params, several seeds, defaults in one place
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("change, key", [
    ({"render": {"classes": ["nosuch"]}}, "render.classes"),
    ({"evaluate": {"split": "val"}}, "evaluate.split"),
    ({"render": {"split": "val"}}, "render.split"),
    ({"evaluate": {"localization": True}, "data": {"source": "folder"}}, "evaluate.localization"),
])
def test_config_checked_at_start_names_the_key(tmp_path, change, key):
    config = load_config("test.yaml")
    if change.get("data", {}).get("source") == "folder":
        config = folder_config(tmp_path)
        config["evaluate"] = {"localization": True}
    else:
        for block, values in change.items():
            config.setdefault(block, {}).update(values)
    result = snakemake(tmp_path, "-n", configfile=write_config(tmp_path / "c.yaml", config))
    assert result.returncode != 0, result.stdout
    assert f"Invalid config: {key}" in result.stdout, result.stdout[-3000:]
    assert not (tmp_path / "results").exists()


def test_duplicate_seeds_are_refused(tmp_path):
    config = load_config("test.yaml")
    config["seeds"] = [1, 1]
    result = snakemake(tmp_path, "-n", configfile=write_config(tmp_path / "c.yaml", config))
    assert result.returncode != 0 and "seeds" in result.stdout, result.stdout[-3000:]


def test_several_seeds_train_and_evaluate_once_each(tmp_path):
    config = load_config("config.yaml")
    config["seeds"] = [0, 1, 2]
    result = snakemake(tmp_path, "-n", configfile=write_config(tmp_path / "c.yaml", config))
    assert result.returncode == 0, result.stdout
    counts = job_counts(result.stdout)
    assert counts["prepare_synthetic"] == 1
    for rule in ("train_half", "train_full", "check_transfer", "evaluate_localization",
                 "render_cams", "compare_classification"):
        assert counts[rule] == 3, (rule, counts)
    assert counts["evaluate_classification"] == 6
    assert counts["aggregate_seeds"] == 1 and counts["figures"] == 1
    for seed in (0, 1, 2):
        assert f"results/default/seed{seed}/models/half" in result.stdout
        assert f"--seed {seed}" in result.stdout
    assert "0=results/default/seed0/evaluation/localization" in result.stdout


def test_schema_defaults_are_the_librarys():
    """One source of defaults: the workflow schema's defaults equal the library's."""
    from hrcam.data import synthetic
    from hrcam.evaluate.metrics import bootstrap
    from hrcam.evaluate.metrics.localization import DEFAULT_BOX_CONVENTION, \
        DEFAULT_CAM_CURVE_INTERVAL
    from hrcam.postprocessing import PIPELINE_DEFAULTS
    from hrcam.train import TrainConfig

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    props = schema["properties"]

    def defaults(block):
        return {k: v.get("default") for k, v in block["properties"].items()}

    train = defaults(props["train"])
    config = TrainConfig()
    for key in ("batch_size", "epochs", "optimizer", "learning_rate", "mixed_precision", "xla",
                "cache", "augment", "augment_probability", "balanced"):
        assert train[key] == getattr(config, key), key
    assert defaults(props["train"]["properties"]["arch"])["preset"] == config.arch
    reduce_lr = defaults(props["train"]["properties"]["reduce_lr"])
    for key in ("enabled", "patience", "factor", "min_lr"):
        assert reduce_lr[key] == getattr(config.reduce_lr, key), key
    assert defaults(props["pipeline"]) == PIPELINE_DEFAULTS
    evaluate = defaults(props["evaluate"])
    assert evaluate["cam_curve_interval"] == DEFAULT_CAM_CURVE_INTERVAL
    assert evaluate["box_convention"] == DEFAULT_BOX_CONVENTION
    assert evaluate["bootstrap_samples"] == bootstrap.DEFAULT_SAMPLES
    assert evaluate["bootstrap_seed"] == bootstrap.DEFAULT_SEED
    generated = defaults(props["data"]["properties"]["synthetic"])
    assert generated == {"classes": synthetic.DEFAULT_CLASSES,
                         "per_class": synthetic.DEFAULT_PER_CLASS,
                         "im_size": synthetic.DEFAULT_IM_SIZE,
                         "test_fraction": synthetic.DEFAULT_TEST_FRACTION,
                         "seed": synthetic.DEFAULT_SEED,
                         "size_range": list(synthetic.DEFAULT_SIZE_RANGE),
                         "distractors": synthetic.DEFAULT_DISTRACTORS}


def test_params_do_not_depend_on_key_order():
    from snakemake.utils import validate

    from hrcam import workflow as wf

    config = load_config("config.yaml")
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))  # + defaults
    shuffled = json_round_trip(config, reverse=True)
    assert list(shuffled["train"]) != list(config["train"])
    assert wf.train_flags(config, "half") == wf.train_flags(shuffled, "half")
    assert wf.flags(config["data"]["synthetic"]) == wf.flags(shuffled["data"]["synthetic"])
    assert wf.flags(config["pipeline"]) == wf.flags(shuffled["pipeline"])


def json_round_trip(value, reverse=False):
    """A deep copy of a config with every mapping's keys in reversed order."""
    if isinstance(value, dict):
        items = list(value.items())[::-1] if reverse else list(value.items())
        return {k: json_round_trip(v, reverse) for k, v in items}
    return value


def test_end_to_end_reordered_config_has_nothing_to_do(e2e_run, tmp_path):
    workdir, configfile, result, _ = e2e_run
    assert result.returncode == 0, result.stdout[-8000:]
    config = yaml.safe_load(configfile.read_text())
    reordered = write_config(tmp_path / "reordered.yaml", json_round_trip(config, reverse=True))
    dry = snakemake(workdir, "-n", configfile=reordered)
    assert dry.returncode == 0, dry.stdout
    assert "Nothing to be done" in dry.stdout, dry.stdout


# ---------------------------------------------------------------------------------------------
# A killed workflow resumes training
# ---------------------------------------------------------------------------------------------


def test_killed_workflow_resumes_training(tmp_path):
    """SIGKILL Snakemake and its children during train_half, `--unlock`, run the same command:
    the run completes without manual cleanup, the retried training says it resumed, and
    history.csv lists every epoch once."""
    config = load_config("test.yaml")
    config["data"]["synthetic"]["per_class"] = 24
    config["train"]["epochs"] = 30
    configfile = write_config(tmp_path / "long.yaml", config)
    work = tmp_path / "work"
    work.mkdir()
    log = work / "logs" / "test" / "seed0" / "train_half.log"
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory",
           str(work), "--configfile", str(configfile), "--cores", "2"]
    process = subprocess.Popen(cmd, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=_env(),
                               start_new_session=True)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and process.poll() is None:
            if log.exists() and "Epoch 4/30" in log.read_text(errors="replace"):
                break
            time.sleep(0.5)
        assert process.poll() is None, process.communicate()[0][-5000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=60)
    state = work / "results" / "test" / "seed0" / "models" / "half" / ".training-state"
    assert (state / "state.json").is_file()
    unlock = snakemake(work, "--unlock", configfile=configfile)
    assert unlock.returncode == 0, unlock.stdout
    rerun = snakemake(work, "--cores", "2", configfile=configfile, timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-8000:]
    text = log.read_text(errors="replace")
    match = re.search(r"resuming .* after epoch (\d+)", text)
    assert match and int(match.group(1)) >= 1, text[-3000:]
    history = work / "results" / "test" / "seed0" / "models" / "half" / "history.csv"
    epochs = [int(row["epoch"]) for row in csv.DictReader(history.open())]
    assert epochs == list(range(30))
    assert not state.exists()
