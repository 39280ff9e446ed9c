"""Report figures and tables from a run's result files (no training, no inference).

The workflow's `figures` rule calls `hrcam report figures` so that the report can be redrawn in
seconds after changing nothing but presentation; `hrcam report readme` copies a run's key
figures to the folder the README embeds them from. A run folder holds one ``seed<k>/`` folder
per training seed (`SEED_LAYOUT`) and, for localization, ``seeds/`` (the seed aggregate).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

PathLike = str | os.PathLike

#: The classification numbers compared between the half and the full model.
CLASSIFICATION_SCALARS = ("top1_accuracy", "top5_accuracy", "macro_precision", "macro_recall",
                          "macro_f1", "micro_precision", "micro_recall", "micro_f1")
#: File names written by `write_report` into its output folder.
REPORT_FILES = {
    "training_curves": "training_curves.png",
    "classification_csv": "classification.csv",
    "classification_png": "classification.png",
    "transfer_csv": "transfer_check.csv",
}


#: Where the report's inputs lie in a seed's folder of a run (the workflow's output layout).
SEED_LAYOUT = {
    "half_history": "models/half/history.csv",
    "full_history": "models/full/history.csv",
    "half_metrics": "evaluation/classification/half/metrics.json",
    "full_metrics": "evaluation/classification/full/metrics.json",
    "transfer_train": "models/full/transfer_check.json",
    "transfer_check": "models/transfer_check.json",
    "collage": "cams/collage.png",
    "pipeline_figures": "cams/figures",
    "localization_chart": "evaluation/localization/localization.png",
}


def _read_json(path: PathLike) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"result file {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"result file {path} is not valid JSON: {error}") from None


def combined_history(half_history: PathLike | pd.DataFrame,
                     full_history: PathLike | pd.DataFrame) -> pd.DataFrame:
    """The half model's history with the full model's reconstruction loss as extra columns
    (``reconstruction_loss``, ``val_reconstruction_loss``), aligned by epoch."""
    half = half_history if isinstance(half_history, pd.DataFrame) else pd.read_csv(half_history)
    full = full_history if isinstance(full_history, pd.DataFrame) else pd.read_csv(full_history)
    decoder = full[[c for c in ("epoch", "loss", "val_loss") if c in full]].rename(
        columns={"loss": "reconstruction_loss", "val_loss": "val_reconstruction_loss"})
    if "epoch" not in half or "epoch" not in decoder:
        half = half.assign(epoch=range(len(half)))
        decoder = decoder.assign(epoch=range(len(decoder)))
    return half.merge(decoder, on="epoch", how="outer").sort_values("epoch", ignore_index=True)


def classification_table(half: Mapping[str, Any], full: Mapping[str, Any]) -> pd.DataFrame:
    """Half and full classification numbers side by side, with an ``identical`` column."""
    keys = [k for k in (*CLASSIFICATION_SCALARS, "num_images", "num_classes")
            if k in half or k in full]
    return pd.DataFrame(dtype=object, data={  # object: counts stay integers beside scores
        "metric": keys,
        "half": [half.get(k) for k in keys],
        "full": [full.get(k) for k in keys],
        "identical": [half.get(k) == full.get(k) for k in keys],
    })


def transfer_table(checks: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Every entry of one or more transfer-check reports as (check, value) rows, nested keys
    joined with dots and prefixed by the report's label."""
    rows: list[dict[str, Any]] = []

    def flatten(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                flatten(f"{prefix}.{key}", item)
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for i, item in enumerate(value):
                flatten(f"{prefix}[{i}]", item)
        else:
            rows.append({"check": prefix,
                         "value": json.dumps(value) if isinstance(value, (list, dict)) else value})

    for label, report in checks.items():
        flatten(label, report)
    return pd.DataFrame(rows, columns=["check", "value"])


def write_report(out_dir: PathLike, *, half_history: PathLike, full_history: PathLike,
                 half_metrics: PathLike, full_metrics: PathLike,
                 transfer_checks: Mapping[str, PathLike]) -> dict[str, Path]:
    """Write the report figures and tables (`REPORT_FILES`) into ``out_dir``; returns their paths."""
    from hrcam import plotting

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {key: out / name for key, name in REPORT_FILES.items()}

    plotting.training_curves(combined_history(half_history, full_history),
                             paths["training_curves"],
                             title="half model (classification) and full model (decoder)")
    table = classification_table(_read_json(half_metrics), _read_json(full_metrics))
    table.to_csv(paths["classification_csv"], index=False)
    plotting.classification_comparison(table, paths["classification_png"])
    transfer_table({label: _read_json(path) for label, path in transfer_checks.items()}).to_csv(
        paths["transfer_csv"], index=False)
    return paths


def seed_folder(run_dir: PathLike, seed: int) -> Path:
    """The folder of one training seed of a run."""
    return Path(run_dir) / f"seed{int(seed)}"


def write_run_report(run_dir: PathLike, seeds: Sequence[int]) -> dict[int, dict[str, Path]]:
    """`write_report` for every seed of a run, into ``<run>/seed<k>/report/``."""
    written = {}
    for seed in seeds:
        folder = seed_folder(run_dir, seed)
        files = {key: folder / rel for key, rel in SEED_LAYOUT.items()}
        written[int(seed)] = write_report(
            folder / "report", half_history=files["half_history"],
            full_history=files["full_history"], half_metrics=files["half_metrics"],
            full_metrics=files["full_metrics"],
            transfer_checks={"train_full": files["transfer_train"],
                             "check_transfer": files["transfer_check"]})
    return written


def readme_figure_names(localization: bool = True, variants: bool = False) -> list[str]:
    """The figures `copy_readme_figures` writes (without the localization ones when the run
    has no localization, with the decoder variants' when it has variants)."""
    names = ["collage.png", "pipeline.png", "training_curves.png", "classification.png"]
    if localization:
        names += ["localization.png", "localization_seeds.png"]
    if variants:
        names += ["variants.png", "variants_cams.png"]
    return names


def copy_readme_figures(run_dir: PathLike, seed: int, out_dir: PathLike,
                        prefix: str = "") -> dict[str, Path]:
    """Copy a run's key figures (of one seed, and the seed aggregate) into ``out_dir`` under
    ``prefix`` + the names of `readme_figure_names`; the pipeline figure is the first image's,
    in sorted order. Returns the written paths."""
    import shutil

    run = Path(run_dir)
    folder = seed_folder(run, seed)
    figures = sorted((folder / SEED_LAYOUT["pipeline_figures"]).rglob("*.png"))
    if not figures:
        raise FileNotFoundError(f"{folder / SEED_LAYOUT['pipeline_figures']}: no pipeline "
                                "figure (run `hrcam cams` first)")
    sources = {"collage.png": folder / SEED_LAYOUT["collage"], "pipeline.png": figures[0],
               "training_curves.png": folder / "report" / REPORT_FILES["training_curves"],
               "classification.png": folder / "report" / REPORT_FILES["classification_png"],
               "localization.png": folder / SEED_LAYOUT["localization_chart"],
               "localization_seeds.png": run / "seeds" / "localization_seeds.png",
               "variants.png": folder / "variants" / "variants.png",
               "variants_cams.png": folder / "variants" / "variants_cams.png"}
    names = readme_figure_names(sources["localization.png"].is_file(),
                                sources["variants.png"].is_file())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in names:
        if not sources[name].is_file():
            raise FileNotFoundError(f"{sources[name]}: no such result file")
        shutil.copyfile(sources[name], out / f"{prefix}{name}")
        written[name] = out / f"{prefix}{name}"
    return written
