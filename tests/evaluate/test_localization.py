"""`evaluate_localization` and `hrcam evaluate localization` end to end on a tiny random-weights
model and a tiny generated dataset (the shared `tiny_run` fixture): the result files, the
bootstrap intervals and paired table, identical numbers whatever the worker count, byte-identical
tables from two runs, and clear errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from hrcam import evaluate as ev
from hrcam.cams import method_names

IM = 32  # image side of the shared `tiny_run` fixture (conftest.TINY_IM)


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _check_outputs(out_dir, summary, methods):
    for name in ("localization.csv", "localization_paired.csv", "localization.json",
                 "curves.csv", "bootstrap.npz", "localization.png", "curves.png"):
        assert (out_dir / name).is_file() and (out_dir / name).stat().st_size > 0, name
    rows = _rows(out_dir / "localization.csv")
    assert [r["method"] for r in rows] == list(methods)
    for r in rows:
        for key in ("PxAP", "MaxBoxAccV2", "BoxAcc_IoU30", "BoxAcc_IoU50", "BoxAcc_IoU70",
                    "gt_known_loc", "top1_loc"):
            assert 0.0 <= float(r[key]) <= 1.0, (r["method"], key)
        assert float(r["BoxAcc_IoU30"]) >= float(r["BoxAcc_IoU50"]) >= float(r["BoxAcc_IoU70"])
        assert float(r["top1_loc"]) <= float(r["gt_known_loc"])
        assert int(r["n_images"]) == summary["num_images"] > 0
        for metric in ("PxAP", "MaxBoxAccV2"):
            assert float(r[f"{metric}_ci_low"]) <= float(r[metric]) <= float(r[f"{metric}_ci_high"])
    for row in summary["methods"].values():
        assert row["min_value"] >= 0.0 and row["max_value"] <= 1.0
    curves = _rows(out_dir / "curves.csv")
    assert {"pixel_precision", "pixel_recall", "box_acc_IoU30", "box_acc_IoU50",
            "box_acc_IoU70"} <= {r["metric"] for r in curves}
    assert {r["method"] for r in curves} == set(methods)
    with np.load(out_dir / "bootstrap.npz") as z:
        assert set(z.files) == {f"{m}/{k}" for m in methods for k in ("PxAP", "MaxBoxAccV2")}
        assert all(len(z[name]) == summary["bootstrap"]["samples"] for name in z.files)


def test_evaluate_localization_end_to_end(tiny_run):
    out = tiny_run["root"] / "loc"
    summary = ev.evaluate_localization(tiny_run["full"], tiny_run["data"], "test", out_dir=out,
                                       batch_size=4, workers=1, bootstrap_samples=200,
                                       progress=False)
    _check_outputs(out, summary, method_names())
    assert summary["gradcam_layer"] == "bottleneck" and summary["layercam_layer"] == "skip_3"
    assert summary["box_convention"] == "wsol" and summary["cam_curve_interval"] == 0.001
    paired = _rows(out / "localization_paired.csv")
    others = len(method_names()) - 1
    assert len(paired) == 2 * 2 * others  # 2 metrics x 2 baselines x every other method
    for row in paired:
        assert row["method"] != row["baseline"] and row["baseline"] in ("low_res", "refined")
        assert float(row["ci_low"]) <= float(row["difference"]) <= float(row["ci_high"])
        assert 0.0 <= float(row["share_above_zero"]) <= 1.0
        table = {r["method"]: r for r in _rows(out / "localization.csv")}
        expected = float(table[row["method"]][row["metric"]]) - float(
            table[row["baseline"]][row["metric"]])
        assert float(row["difference"]) == pytest.approx(expected, abs=2e-6)


def test_same_numbers_whatever_the_workers_and_reruns_are_byte_identical(tiny_run):
    methods = ("low_res", "refined", "center_gaussian")
    kwargs = dict(limit=5, batch_size=2, methods=methods, bootstrap_samples=100,
                  progress=False)
    one = tiny_run["root"] / "loc_w1"
    two = tiny_run["root"] / "loc_w2"
    again = tiny_run["root"] / "loc_w1_again"
    ev.evaluate_localization(tiny_run["full"], tiny_run["data"], out_dir=one, workers=1, **kwargs)
    limited = ev.evaluate_localization(tiny_run["full"], tiny_run["data"], out_dir=two,
                                       workers=2, **kwargs)
    ev.evaluate_localization(tiny_run["full"], tiny_run["data"], out_dir=again, workers=1,
                             **kwargs)
    assert limited["num_images"] == 5
    _check_outputs(two, limited, methods)
    for name in ("localization.csv", "localization_paired.csv", "curves.csv"):
        assert (one / name).read_bytes() == (two / name).read_bytes() == \
            (again / name).read_bytes(), name


def test_evaluate_localization_errors(tiny_run):
    with pytest.raises(ValueError, match="full model"):
        ev.evaluate_localization(tiny_run["half"], tiny_run["data"], "test", progress=False)
    # a half model is fine for the methods that do not need the expansion network
    summary = ev.evaluate_localization(tiny_run["half"], tiny_run["data"], limit=2,
                                       methods=["low_res", "layercam"], bootstrap_samples=0,
                                       progress=False)
    assert summary["methods"]["layercam"]["PxAP_ci_low"] is None
    import shutil

    bare = tiny_run["root"] / "unannotated"
    shutil.copytree(tiny_run["data"], bare, dirs_exist_ok=True)
    shutil.rmtree(bare / "masks")
    (bare / "boxes.csv").unlink()
    with pytest.raises(ValueError, match="no image has a mask or boxes"):
        ev.evaluate_localization(tiny_run["full"], bare, "test", progress=False)


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "0"], "--batch-size"),
    (["--limit", "0"], "--limit"),
    (["--limit", "-1"], "--limit"),
    (["--workers", "0"], "--workers"),
    (["--methods", "nope"], "--methods"),
    (["--box-convention", "loose"], "--box-convention"),
])
def test_cli_bad_options_are_usage_errors(tiny_run, capsys, argv, message):
    from hrcam.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "localization", "--model", str(tiny_run["full"]), "--data",
              str(tiny_run["data"]), "--out", str(tiny_run["root"] / "never"), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tiny_run["root"] / "never").exists()


def test_cli_localization(tiny_run, capsys):
    from hrcam.cli import main

    out = tiny_run["root"] / "loc_cli"
    assert main(["evaluate", "localization", "--model", str(tiny_run["full"]), "--data",
                 str(tiny_run["data"]), "--out", str(out), "--limit", "4", "--workers", "1",
                 "--methods", "high_res", "refined", "--merge-type", "multiply",
                 "--box-convention", "exact", "--bootstrap-samples", "50", "--threads", "1",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "refined" in printed and "95% CI" in printed
    summary = json.loads((out / "localization.json").read_text())
    assert summary["num_images"] == 4 and summary["box_convention"] == "exact"
    assert summary["pipeline_params"]["merge_type"] == "multiply"
    assert summary["method_options"]["refined"]["merge_type"] == "multiply"
    assert list(summary["methods"]) == ["high_res", "refined"]
    assert summary["bootstrap"]["samples"] == 50
