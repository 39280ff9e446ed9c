"""Tests of hrcam.report and `hrcam report`: report tables and figures from result files."""

import json

import pandas as pd
import pytest

from hrcam import report
from hrcam.cli import main

HALF = {"top1_accuracy": 0.9, "top5_accuracy": 1.0, "macro_f1": 0.88, "micro_f1": 0.9,
        "num_images": 30, "num_classes": 3}


@pytest.fixture()
def results(tmp_path):
    pd.DataFrame({"epoch": [0, 1, 2], "loss": [1.2, 0.8, 0.5], "accuracy": [0.4, 0.6, 0.9],
                  "val_loss": [1.3, 0.9, 0.6], "val_accuracy": [0.3, 0.6, 0.85],
                  "learning_rate": [1.0, 1.0, 0.3]}).to_csv(tmp_path / "half.csv", index=False)
    pd.DataFrame({"epoch": [0, 1], "loss": [0.2, 0.1], "predictions_accuracy": [0.9, 0.9],
                  "val_loss": [0.25, 0.12]}).to_csv(tmp_path / "full.csv", index=False)
    (tmp_path / "half.json").write_text(json.dumps(HALF))
    (tmp_path / "full.json").write_text(json.dumps({**HALF, "macro_f1": 0.87}))
    (tmp_path / "check.json").write_text(json.dumps(
        {"ok": True, "weights": {"identical": True, "max_abs_diff": 0.0}, "different_layers": []}))
    return tmp_path


def test_classification_table_flags_only_differing_metrics():
    table = report.classification_table(HALF, {**HALF, "macro_f1": 0.87})
    flags = dict(zip(table["metric"], table["identical"]))
    assert not flags["macro_f1"]
    assert all(flags[m] for m in flags if m != "macro_f1")
    assert list(table.columns) == ["metric", "half", "full", "identical"]


def test_combined_history_aligns_decoder_loss_by_epoch(results):
    history = report.combined_history(results / "half.csv", results / "full.csv")
    assert list(history["epoch"]) == [0, 1, 2]
    assert history["reconstruction_loss"].tolist()[:2] == [0.2, 0.1]
    assert pd.isna(history["reconstruction_loss"].iloc[2])
    assert history["val_accuracy"].tolist() == [0.3, 0.6, 0.85]


def test_transfer_table_flattens_nested_reports():
    table = report.transfer_table({"after": {"ok": True, "weights": {"max_abs_diff": 0.0},
                                             "different_layers": ["conv_aux"]}})
    values = dict(zip(table["check"], table["value"]))
    assert values == {"after.ok": True, "after.weights.max_abs_diff": 0.0,
                      "after.different_layers": '["conv_aux"]'}


def _run_dir(results, seeds=(0, 1)):
    """A workflow run folder with the report's inputs for every seed."""
    import shutil

    run = results / "run"
    for seed in seeds:
        folder = report.seed_folder(run, seed)
        sources = {"half_history": "half.csv", "full_history": "full.csv",
                   "half_metrics": "half.json", "full_metrics": "full.json",
                   "transfer_train": "check.json", "transfer_check": "check.json"}
        for key, name in sources.items():
            target = folder / report.SEED_LAYOUT[key]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(results / name, target)
    return run


def test_cli_writes_every_report_file_of_every_seed(results):
    run = _run_dir(results)
    assert main(["report", "figures", "--run-dir", str(run), "--seeds", "0", "1"]) == 0
    for seed in (0, 1):
        out = report.seed_folder(run, seed) / "report"
        assert sorted(p.name for p in out.iterdir()) == sorted(report.REPORT_FILES.values())
        table = pd.read_csv(out / "classification.csv")
        assert table.loc[table["metric"] == "macro_f1", "identical"].item() == False  # noqa
        checks = set(pd.read_csv(out / "transfer_check.csv")["check"])
        assert {"train_full.weights.identical", "check_transfer.ok"} <= checks


def test_missing_result_file_is_a_clear_error(results, capsys):
    run = _run_dir(results, seeds=(0,))
    (report.seed_folder(run, 0) / report.SEED_LAYOUT["half_metrics"]).unlink()
    assert main(["report", "figures", "--run-dir", str(run), "--seeds", "0"]) == 2
    assert "metrics.json does not exist" in capsys.readouterr().err
    assert main(["report", "figures", "--run-dir", str(run), "--seeds", "7"]) == 2


def test_readme_figures_are_copied_under_fixed_names(results, capsys):
    run = _run_dir(results, seeds=(0,))
    folder = report.seed_folder(run, 0)
    assert main(["report", "readme", "--run-dir", str(run), "--seed", "0", "--out",
                 str(results / "readme")]) == 2
    assert "no pipeline figure" in capsys.readouterr().err
    assert main(["report", "figures", "--run-dir", str(run), "--seeds", "0"]) == 0
    for rel in ("cams/figures/b/2.png", "cams/figures/a/1.png", "cams/collage.png"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(rel.encode())
    assert main(["report", "readme", "--run-dir", str(run), "--seed", "0", "--out",
                 str(results / "readme"), "--prefix", "run_"]) == 0
    names = sorted(p.name for p in (results / "readme").iterdir())
    assert names == sorted(f"run_{n}" for n in report.readme_figure_names(localization=False))
    assert (results / "readme" / "run_pipeline.png").read_bytes() == b"cams/figures/a/1.png"


def test_classification_table_keeps_counts_as_integers(results):
    table = report.classification_table(HALF, HALF)
    assert table.loc[table["metric"] == "num_images", "half"].item() == 30
    assert isinstance(table.loc[table["metric"] == "num_images", "full"].item(), int)
