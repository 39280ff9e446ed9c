"""Localization over several training seeds: mean and standard deviation over the seeds per
method and metric, and every method against ``low_res`` and ``refined`` pooled over the seeds.

Every seed is evaluated on the same images with the same bootstrap weights (they depend only on
the image and the bootstrap seed), so resample b of the seed-averaged difference of two methods
is the average over seeds of their resample-b differences: the pooled paired comparison keeps
the pairing by image, and its interval reflects the image sample; the spread over seeds is the
``sd`` column beside it.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hrcam.evaluate.metrics import bootstrap
from hrcam.utils import write_csv

__all__ = ["SEED_COLUMNS", "SEED_PAIRED_COLUMNS", "read_seed_run", "aggregate_seeds"]

METRICS = ("PxAP", "MaxBoxAccV2")
BASELINES = ("low_res", "refined")
SEED_COLUMNS = ("method", "n_seeds", *[f"{m}{s}" for m in METRICS
                                        for s in ("", "_sd", "_min", "_max", "_ci_low",
                                                  "_ci_high")])
SEED_PAIRED_COLUMNS = ("metric", "method", "baseline", "difference", "sd", "ci_low", "ci_high",
                       "share_above_zero", "n_seeds")


def _number(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def read_seed_run(folder: str | Path) -> dict[str, Any]:
    """One seed's localization results: ``{"values": {method: {metric: value}},
    "replicates": {method: {metric: array}}}`` from its localization.csv and bootstrap.npz."""
    folder = Path(folder)
    table = folder / "localization.csv"
    if not table.is_file():
        raise FileNotFoundError(f"{table}: no localization table (run `hrcam evaluate "
                                "localization` first)")
    with open(table, newline="", encoding="utf-8") as f:
        values = {row["method"]: {m: _number(row.get(m, "")) for m in METRICS}
                  for row in csv.DictReader(f)}
    replicates: dict[str, dict[str, np.ndarray]] = {m: {} for m in values}
    npz = folder / "bootstrap.npz"
    if npz.is_file():
        with np.load(npz) as arrays:
            for name in arrays.files:
                method, metric = name.split("/", 1)
                replicates.setdefault(method, {})[metric] = arrays[name]
    return {"values": values, "replicates": replicates}


def _stats(values: list[float]) -> dict[str, float | None]:
    arr = np.asarray(values, dtype=np.float64)
    return {"": float(arr.mean()), "_sd": float(arr.std(ddof=1)) if arr.size > 1 else None,
            "_min": float(arr.min()), "_max": float(arr.max())}


def _mean_replicates(runs: list[Mapping[str, Any]], method: str, metric: str
                     ) -> np.ndarray | None:
    reps = [run["replicates"].get(method, {}).get(metric) for run in runs]
    if any(r is None for r in reps) or len({len(r) for r in reps}) != 1:
        return None
    return np.mean(np.stack(reps), axis=0)


def aggregate_seeds(runs: Mapping[int, str | Path], out_dir: str | Path | None = None
                    ) -> dict[str, Any]:
    """Aggregate the localization results of several seeds (``{seed: folder}``).

    Returns ``{"methods": [rows], "paired": [rows], "seeds": [...]}``; with ``out_dir`` writes
    ``localization_seeds.csv``, ``localization_seeds_paired.csv`` and
    ``localization_seeds.png``. Methods present in every seed are aggregated, in the first
    seed's order.
    """
    if not runs:
        raise ValueError("aggregate_seeds: no seed given")
    seeds = sorted(runs)
    loaded = [read_seed_run(runs[s]) for s in seeds]
    methods = [m for m in loaded[0]["values"] if all(m in run["values"] for run in loaded)]
    rows: list[dict[str, Any]] = []
    pooled: dict[tuple[str, str], np.ndarray | None] = {}
    for method in methods:
        row: dict[str, Any] = {"method": method, "n_seeds": len(seeds)}
        for metric in METRICS:
            values = [run["values"][method][metric] for run in loaded]
            if any(v is None for v in values):
                continue
            row.update({f"{metric}{k}": v for k, v in _stats(values).items()})
            for seed, value in zip(seeds, values):
                row[f"{metric}_seed{seed}"] = value
            reps = _mean_replicates(loaded, method, metric)
            pooled[(method, metric)] = reps
            if reps is not None:
                row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = \
                    bootstrap.percentile_interval(reps)
        rows.append(row)
    by_method = {row["method"]: row for row in rows}
    paired: list[dict[str, Any]] = []
    for metric in METRICS:
        for baseline in BASELINES:
            if metric not in by_method.get(baseline, {}):
                continue
            for method in methods:
                if method == baseline:
                    continue
                diffs = [run["values"][method][metric] - run["values"][baseline][metric]
                         for run in loaded if run["values"][method][metric] is not None]
                if len(diffs) != len(loaded):
                    continue
                a, b = pooled.get((method, metric)), pooled.get((baseline, metric))
                mean = float(np.mean(diffs))
                entry = {"metric": metric, "method": method, "baseline": baseline,
                         "difference": mean,
                         "sd": float(np.std(diffs, ddof=1)) if len(diffs) > 1 else None,
                         "n_seeds": len(diffs), "ci_low": None, "ci_high": None,
                         "share_above_zero": None}
                if a is not None and b is not None:
                    differences = a - b
                    entry["ci_low"], entry["ci_high"] = bootstrap.percentile_interval(differences)
                    finite = differences[np.isfinite(differences)]
                    entry["share_above_zero"] = float(np.mean(finite > 0)) if finite.size \
                        else None
                paired.append(entry)
    summary = {"seeds": seeds, "methods": rows, "paired": paired}
    if out_dir is not None:
        _write(summary, Path(out_dir))
    return summary




def _write(summary: Mapping[str, Any], out: Path) -> None:
    from hrcam import plotting

    out.mkdir(parents=True, exist_ok=True)
    per_seed = [f"{m}_seed{s}" for m in METRICS for s in summary["seeds"]]
    write_csv(out / "localization_seeds.csv", (*SEED_COLUMNS, *per_seed), summary["methods"])
    write_csv(out / "localization_seeds_paired.csv", SEED_PAIRED_COLUMNS, summary["paired"])
    n = len(summary["seeds"])
    plotting.localization_bars(
        summary["methods"], out / "localization_seeds.png",
        metrics=[m for m in METRICS if any(m in row for row in summary["methods"])],
        errors="sd" if n > 1 else "ci",
        title=f"mean over {n} seed(s)" + (" +- sd" if n > 1 else ", 95% CI over images"))
