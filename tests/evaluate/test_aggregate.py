"""Localization over several seeds (`hrcam evaluate aggregate`): mean, sd and range per method
and metric, and the pooled paired comparison whose resamples average the seeds' paired
differences on the same resampled images."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from hrcam.evaluate.aggregate import aggregate_seeds
from hrcam.evaluate.localization import LOCALIZATION_COLUMNS

VALUES = {  # seed -> method -> (PxAP, MaxBoxAccV2)
    0: {"low_res": (0.30, 0.40), "refined": (0.35, 0.42), "layercam": (0.60, 0.70)},
    1: {"low_res": (0.32, 0.44), "refined": (0.31, 0.45), "layercam": (0.62, 0.69)},
    2: {"low_res": (0.34, 0.39), "refined": (0.36, 0.47), "layercam": (0.58, 0.72)},
}
SAMPLES = 200


def _seed_folder(root, seed):
    folder = root / f"seed{seed}"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    with open(folder / "localization.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOCALIZATION_COLUMNS)
        writer.writeheader()
        for method, (pxap, box) in VALUES[seed].items():
            writer.writerow({"method": method, "PxAP": f"{pxap:.6f}",
                             "MaxBoxAccV2": f"{box:.6f}"})
    arrays = {f"{m}/{k}": v + rng.normal(0, 0.02, SAMPLES)
              for m, (pxap, box) in VALUES[seed].items()
              for k, v in (("PxAP", pxap), ("MaxBoxAccV2", box))}
    np.savez(folder / "bootstrap.npz", **arrays)
    return folder, arrays


def test_mean_sd_and_pooled_paired_comparison(tmp_path):
    folders, arrays = {}, {}
    for seed in VALUES:
        folders[seed], arrays[seed] = _seed_folder(tmp_path, seed)
    summary = aggregate_seeds(folders, tmp_path / "out")
    rows = {r["method"]: r for r in summary["methods"]}
    assert list(rows) == ["low_res", "refined", "layercam"]
    pxap = [VALUES[s]["refined"][0] for s in VALUES]
    assert rows["refined"]["PxAP"] == pytest.approx(np.mean(pxap))
    assert rows["refined"]["PxAP_sd"] == pytest.approx(np.std(pxap, ddof=1))
    assert (rows["refined"]["PxAP_min"], rows["refined"]["PxAP_max"]) == (0.31, 0.36)
    assert rows["layercam"]["MaxBoxAccV2_seed2"] == 0.72
    pooled = np.mean([arrays[s]["refined/PxAP"] for s in VALUES], axis=0)
    assert (rows["refined"]["PxAP_ci_low"], rows["refined"]["PxAP_ci_high"]) == \
        pytest.approx(tuple(np.percentile(pooled, [2.5, 97.5])))
    paired = {(r["metric"], r["method"], r["baseline"]): r for r in summary["paired"]}
    entry = paired[("PxAP", "refined", "low_res")]
    diffs = [VALUES[s]["refined"][0] - VALUES[s]["low_res"][0] for s in VALUES]
    assert entry["difference"] == pytest.approx(np.mean(diffs))
    assert entry["sd"] == pytest.approx(np.std(diffs, ddof=1)) and entry["n_seeds"] == 3
    resampled = np.mean([arrays[s]["refined/PxAP"] - arrays[s]["low_res/PxAP"]
                         for s in VALUES], axis=0)
    assert (entry["ci_low"], entry["ci_high"]) == \
        pytest.approx(tuple(np.percentile(resampled, [2.5, 97.5])))
    assert entry["share_above_zero"] == pytest.approx(np.mean(resampled > 0))
    assert paired[("MaxBoxAccV2", "layercam", "refined")]["difference"] > 0.2
    for name in ("localization_seeds.csv", "localization_seeds_paired.csv",
                 "localization_seeds.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_cli_aggregate_and_errors(tmp_path, capsys):
    from hrcam.cli import main

    folder, _ = _seed_folder(tmp_path, 0)
    assert main(["evaluate", "aggregate", f"0={folder}", "--out", str(tmp_path / "o")]) == 0
    with open(tmp_path / "o" / "localization_seeds.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["low_res", "refined", "layercam"]
    assert rows[0]["PxAP_sd"] == ""  # one seed: no spread
    assert main(["evaluate", "aggregate", f"x={folder}", "--out", str(tmp_path / "p")]) == 2
    assert "SEED=DIR" in capsys.readouterr().err
    assert main(["evaluate", "aggregate", f"1={tmp_path / 'nowhere'}", "--out",
                 str(tmp_path / "p")]) == 2
    assert "no localization table" in capsys.readouterr().err
