"""Decoder variants side by side: the localization of several full models that share one half
model (the paper's expansion network and variants of it), in one table with bootstrap intervals,
and every variant's high-res and refined CAM against LayerCAM and the low-res CAM (paired).

Every variant is evaluated on the same images with the same bootstrap seed, so the resampling
weights of an image are the same in every evaluation (they depend only on the image and the
seed): resample b of "variant minus baseline" is the difference of their resample-b scores, a
paired bootstrap across evaluations.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hrcam.evaluate.aggregate import read_seed_run
from hrcam.evaluate.metrics import bootstrap
from hrcam.utils import write_csv

__all__ = ["VARIANT_METHODS", "VARIANT_BASELINES", "compare_variants"]

METRICS = ("PxAP", "MaxBoxAccV2")
#: The methods that depend on the expansion network (the others are the same for every variant).
VARIANT_METHODS = ("high_res", "refined")
VARIANT_BASELINES = ("layercam", "low_res")
TABLE_COLUMNS = ("row", "variant", "method", *[f"{m}{s}" for m in METRICS
                                               for s in ("", "_ci_low", "_ci_high")])
PAIRED_COLUMNS = ("metric", "variant", "method", "baseline", "difference", "ci_low", "ci_high",
                  "share_above_zero")


def _interval(replicates: Mapping[str, np.ndarray], metric: str) -> tuple[Any, Any]:
    return bootstrap.percentile_interval(replicates[metric]) if metric in replicates \
        else (None, None)


def compare_variants(main: str | Path, variants: Mapping[str, str | Path],
                     main_name: str = "paper", out_dir: str | Path | None = None
                     ) -> dict[str, Any]:
    """One table over decoder variants.

    ``main``: the localization folder of the main full model (every method); ``variants``:
    ``{name: localization folder}`` of the other full models (at least `VARIANT_METHODS`).
    Rows: every method of the main evaluation, then each variant's high-res and refined CAM.
    Paired rows: every variant's (the main one's included) high-res and refined CAM against
    LayerCAM and the low-res CAM of the main evaluation. With ``out_dir`` writes
    ``variants.csv``, ``variants_paired.csv`` and ``variants.png``.
    """
    base = read_seed_run(main)
    runs = {main_name: base, **{name: read_seed_run(folder) for name, folder in variants.items()}}
    if len(runs) != len(variants) + 1:
        raise ValueError(f"the variant name {main_name!r} is used twice")
    rows: list[dict[str, Any]] = []
    for method, values in base["values"].items():
        variant = main_name if method in VARIANT_METHODS else ""
        rows.append(_row(variant, method, values, base["replicates"].get(method, {})))
    for name, run in runs.items():
        if name == main_name:
            continue
        for method in VARIANT_METHODS:
            if method not in run["values"]:
                raise ValueError(f"variant {name!r}: no {method} row in its localization table")
            rows.append(_row(name, method, run["values"][method],
                             run["replicates"].get(method, {})))
    paired = []
    for metric in METRICS:
        for baseline in VARIANT_BASELINES:
            if baseline not in base["values"] or base["values"][baseline][metric] is None:
                continue
            for name, run in runs.items():
                for method in VARIANT_METHODS:
                    value = run["values"].get(method, {}).get(metric)
                    reps = run["replicates"].get(method, {}).get(metric)
                    base_reps = base["replicates"].get(baseline, {}).get(metric)
                    if value is None or reps is None or base_reps is None \
                            or len(reps) != len(base_reps):
                        continue
                    diff = bootstrap.paired_difference(value, base["values"][baseline][metric],
                                                       reps, base_reps)
                    paired.append({"metric": metric, "variant": name, "method": method,
                                   "baseline": baseline, **diff})
    summary = {"rows": rows, "paired": paired, "variants": list(runs)}
    if out_dir is not None:
        _write(summary, Path(out_dir))
    return summary


def _row(variant: str, method: str, values: Mapping[str, Any],
         replicates: Mapping[str, np.ndarray]) -> dict[str, Any]:
    row = {"row": f"{method} [{variant}]" if variant else method, "variant": variant,
           "method": method}
    for metric in METRICS:
        row[metric] = values.get(metric)
        row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = _interval(replicates, metric)
    return row






def _write(summary: Mapping[str, Any], out: Path) -> None:
    from hrcam import plotting

    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "variants.csv", TABLE_COLUMNS, summary["rows"])
    write_csv(out / "variants_paired.csv", PAIRED_COLUMNS, summary["paired"])
    table = [{**row, "method": row["row"]} for row in summary["rows"]]
    plotting.localization_bars(table, out / "variants.png",
                               metrics=[m for m in METRICS if any(r.get(m) is not None
                                                                  for r in table)],
                               title="decoder variants (95% CI over images)")
