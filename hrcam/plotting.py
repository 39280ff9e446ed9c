"""Figures: the postprocessing pipeline step by step, CAM collages and overlays, and the
training / classification / localization metric figures.

Every function builds a `matplotlib.figure.Figure` with the object API (no pyplot state, no
`show()`), so it works headless (Agg) and figures are freed when dropped. Functions that take a
`path` also save the figure there (format from the suffix) and still return it.

No TensorFlow here. One module for every figure (about 700 lines) on purpose: it is the
seed's ``plotting`` API (``from hrcam import plotting; plotting.pipeline(...)``), and the
figures share their helpers (colour maps, map normalisation, table reading).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from hrcam import postprocessing as pp

__all__ = [
    "PIPELINE_PANELS",
    "to_rgb_uint8",
    "overlay",
    "pipeline",
    "collage",
    "training_curves",
    "confusion_matrix",
    "localization_bars",
    "threshold_curves",
    "cam_grid",
    "save_figure",
]

#: Titles of the panels of `pipeline`, in order.
PIPELINE_PANELS: tuple[str, ...] = (
    "original image",
    "high-res CAM",
    "low-res CAM",
    "blurred high-res CAM",
    "region of interest",
    "focal points",
    "edges (Sobel)",
    "edge histogram in ROI",
    "region growing",
    "filled segment",
    "refined CAM (merged)",
    "result",
)

PathLike = str | os.PathLike


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def save_figure(fig: Figure, path: PathLike | None, dpi: int = 100) -> Figure:
    """Save `fig` to `path` (parent folders created) if a path is given; return `fig`."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return fig


def to_rgb_uint8(image: Any) -> np.ndarray:
    """An image as (H, W, 3) uint8. Accepts (1, H, W, C), (H, W, C), (H, W); uint8, or floats
    in [0, 1] (scaled by 255) or in [0, 255]; 1 or 4 channels (alpha dropped)."""
    arr = np.asarray(image)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(
            f"image must have shape (H, W), (H, W, 3) or (1, H, W, 3); got {np.shape(image)}")
    arr = arr[:, :, :3]
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    a = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    if a.size and a.max() <= 1.0 and a.min() >= 0.0:
        a = a * 255.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _cam_2d(cam: Any, size: tuple[int, int] | None = None) -> np.ndarray:
    """A CAM as a normalised float (H, W) map, bilinearly resized to `size` if given."""
    arr = np.asarray(cam, dtype=np.float64)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"cam must be a 2-D map (h, w) or (1, h, w); got shape {np.shape(cam)}")
    arr = np.nan_to_num(arr)
    if size is not None and arr.shape != tuple(size):
        arr = pp.resize_bilinear(arr, size)
    return pp.normalize(arr)


def overlay(image: Any, cam: Any, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend a CAM, coloured with `cmap`, on its image: ``(1 - alpha) * image + alpha *
    cmap(cam)``. The CAM is normalised and, if its size differs, bilinearly resized to the
    image. Returns an (H, W, 3) uint8 RGB array."""
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1]; got {alpha!r}")
    rgb = to_rgb_uint8(image)
    heat = _cam_2d(cam, rgb.shape[:2])
    colored = colormaps[cmap](heat)[..., :3] * 255.0
    out = (1.0 - alpha) * rgb.astype(np.float64) + alpha * colored
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _clean(ax, title: str | None = None, fontsize: int = 10) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def _show_map(ax, data, title, cmap="viridis", interpolation="antialiased"):
    im = ax.imshow(data, cmap=cmap, vmin=0.0, vmax=1.0, interpolation=interpolation)
    _clean(ax, title)
    return im


# ---------------------------------------------------------------------------------------------
# the pipeline figure
# ---------------------------------------------------------------------------------------------


def pipeline(
    x: Any,
    low: Any,
    high: Any,
    *,
    steps: Mapping[str, Any] | None = None,
    path: PathLike | None = None,
    title: str | None = None,
    cmap: str = "viridis",
    figsize: tuple[float, float] = (16.0, 12.5),
    **params: Any,
) -> Figure:
    """Draw every step of the postprocessing pipeline (the seed's `plotting.pipeline`).

    :param x: the image, (1, H, W, 3) or (H, W, 3).
    :param low: the low-res CAM; :param high: the high-res CAM.
    :param steps: the output of `hrcam.postprocessing.pipeline` for these inputs, if already
                  computed (else it is computed here with `params`).
    :param params: the `hrcam.postprocessing.pipeline` keywords (validated).
    :param path: where to save the figure (optional).
    :return: a Figure with 12 panels, titled as `PIPELINE_PANELS`: original image, high-res
             CAM, low-res CAM, blurred, ROI, focal points, edges, the edge histogram inside the
             ROI with the two region-growing bounds, region growing, filled segment, refined
             CAM and result.
    """
    full = pp.validate_pipeline_params(**params)
    if steps is None:
        steps = pp.pipeline(x, low, high, **full)
    image = to_rgb_uint8(x)
    high_n = _cam_2d(high)
    lower, upper = steps["bounds"]

    fig = Figure(figsize=figsize, layout="constrained")
    a = iter(fig.subplots(3, 4).ravel())
    titles = iter(PIPELINE_PANELS)

    ax = next(a)
    ax.imshow(image)
    _clean(ax, next(titles))

    _show_map(next(a), high_n, next(titles), "jet")
    low_n = np.asarray(steps["low"])
    _show_map(next(a), low_n, f"{next(titles)} ({low_n.shape[0]}x{low_n.shape[1]})", "jet",
              interpolation="nearest")
    _show_map(next(a), steps["blurred"], next(titles), "jet")

    ax = next(a)
    ax.imshow(image)
    roi = np.asarray(steps["roi"], dtype=bool)
    shade = np.zeros(roi.shape + (4,))
    shade[~roi] = (0, 0, 0, 0.65)
    ax.imshow(shade)
    if roi.any():
        ax.contour(roi, levels=[0.5], colors="yellow", linewidths=1.0)
    _clean(ax, f"{next(titles)} (top {100 - full['roi_percentile']:g}% of low-res)")

    ax = next(a)
    ax.imshow(steps["low_resized"], cmap="jet", vmin=0, vmax=1)
    pts = np.asarray(steps["focal_points"], dtype=float).reshape(-1, 2)
    if len(pts):
        ax.scatter(pts[:, 0], pts[:, 1], s=14, c="white", edgecolors="black", linewidths=0.6)
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(image.shape[0] - 0.5, -0.5)
    _clean(ax, f"{next(titles)} ({len(pts)}, {full['focal_scope']})")

    _show_map(next(a), steps["edges"], next(titles), "gray")

    ax = next(a)
    edges = np.asarray(steps["edges"])
    values = edges[roi] if roi.any() else edges.ravel()
    ax.hist(values, bins=50, range=(0, 1), color="0.55")
    ax.axvline(lower, color="tab:blue", linestyle="--", label=f"lower {lower:.3f}")
    ax.axvline(upper, color="tab:red", linestyle="--", label=f"upper {upper:.3f}")
    ax.axvspan(lower, upper, color="tab:green", alpha=0.15)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_xlabel("edge magnitude", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(next(titles), fontsize=10)

    _show_map(next(a), steps["segmented"], next(titles), "gray")
    _show_map(next(a), steps["full_segment"], next(titles), "gray")
    merge_name = "multiply" if full["merge_type"] in ("multiply", "merge") else (
        f"blend, alpha={full['merge_alpha']:g}")
    _show_map(next(a), steps["merged"], f"{next(titles)} ({merge_name})", cmap)

    ax = next(a)
    ax.imshow(to_rgb_uint8(steps["result"]))
    how = (f"top {full['filter_percentage']:g}%" if full["filter_type"] == "percentage"
           else f"> {full['filter_threshold']:g}")
    _clean(ax, f"{next(titles)} ({how})")

    fig.suptitle(title or "refined-CAM postprocessing (maps normalised to [0, 1]; "
                 "jet/viridis: low to high)")
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# collages
# ---------------------------------------------------------------------------------------------


def _as_list(items: Any) -> list:
    if isinstance(items, np.ndarray):
        return list(items)
    return list(items)


def collage(
    images: Any,
    refined_cams: Any,
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    *,
    cmap: str = "viridis",
    path: PathLike | None = None,
    tile: float = 2.2,
) -> Figure:
    """Image / refined-CAM pairs in a grid, like the paper's collage (`seed/good.png`).

    :param images: (N, H, W, 3) array or a list of images.
    :param refined_cams: (N, H, W) array or a list of maps (resized to their image if needed).
    :param titles: optional N titles (e.g. class names), drawn above each pair.
    :param ncols: pairs per row (default ceil(sqrt(N))).
    :return: a Figure with 2 * N axes (image, CAM, image, CAM, ...), no ticks.
    """
    imgs = _as_list(images)
    cams = _as_list(refined_cams)
    n = len(imgs)
    if n == 0:
        raise ValueError("collage needs at least one image")
    if len(cams) != n:
        raise ValueError(f"collage got {n} images but {len(cams)} refined CAMs")
    if titles is not None and len(titles) != n:
        raise ValueError(f"collage got {n} images but {len(titles)} titles")
    if ncols is None:
        ncols = math.ceil(math.sqrt(n))
    if not isinstance(ncols, (int, np.integer)) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer; got {ncols!r}")
    ncols = min(int(ncols), n)
    nrows = math.ceil(n / ncols)
    first = to_rgb_uint8(imgs[0])
    aspect = first.shape[0] / first.shape[1]
    head = 0.25 if titles is not None else 0.0
    height = nrows * (tile * aspect + head)
    fig = Figure(figsize=(2 * ncols * tile, height))
    grid = fig.add_gridspec(nrows, 2 * ncols, left=0, right=1, bottom=0, top=1 - head / height,
                            wspace=0, hspace=head / (tile * aspect))
    for i in range(n):
        r, c = divmod(i, ncols)
        image = to_rgb_uint8(imgs[i])
        heat = _cam_2d(cams[i], image.shape[:2])
        ax_img = fig.add_subplot(grid[r, 2 * c])
        ax_img.imshow(image)
        _clean(ax_img)
        ax_cam = fig.add_subplot(grid[r, 2 * c + 1])
        ax_cam.imshow(heat, cmap=cmap, vmin=0, vmax=1)
        _clean(ax_cam)
        for ax in (ax_img, ax_cam):
            for spine in ax.spines.values():
                spine.set_visible(False)
        if titles is not None:
            ax_img.set_title(str(titles[i]), fontsize=9, loc="left")
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# metric figures
# ---------------------------------------------------------------------------------------------


def _frame(data: Any):
    """A pandas DataFrame from a DataFrame, a CSV path, a dict of columns or a list of rows."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, (str, os.PathLike)):
        return pd.read_csv(data)
    if isinstance(data, Mapping):
        values = list(data.values())
        if values and all(isinstance(v, Mapping) for v in values):  # {key: row}
            rows = []
            for key, row in data.items():
                row = dict(row)
                row.setdefault("method", key)
                rows.append(row)
            return pd.DataFrame(rows)
        return pd.DataFrame(dict(data))
    return pd.DataFrame(list(data))


_LR_COLUMNS = ("lr", "learning_rate")


def training_curves(
    history: Any, path: PathLike | None = None, *, title: str | None = None
) -> Figure:
    """Training curves from a Keras history: a DataFrame (or CSVLogger CSV path, or dict of
    lists) with an optional 'epoch' column, metric columns ('loss', 'accuracy', ...) and their
    'val_' counterparts, and optionally 'lr'/'learning_rate'.

    One panel per metric (training and validation lines together) and a log-scale learning-rate
    panel when present. Returns the Figure.
    """
    df = _frame(history)
    if df.empty:
        raise ValueError("training_curves: the history is empty")
    epochs = df["epoch"].to_numpy() + 1 if "epoch" in df else np.arange(1, len(df) + 1)
    metrics: list[str] = []
    for col in df.columns:
        if col == "epoch" or col in _LR_COLUMNS:
            continue
        base = col[4:] if col.startswith("val_") else col
        if base not in metrics:
            metrics.append(base)
    lr_cols = [c for c in _LR_COLUMNS if c in df]
    panels = len(metrics) + (1 if lr_cols else 0)
    if panels == 0:
        raise ValueError("training_curves: no metric columns in the history")
    ncols = min(panels, 3)
    nrows = math.ceil(panels / ncols)
    fig = Figure(figsize=(4.5 * ncols, 3.4 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax, name in zip(axes, metrics):
        for col, label, style in ((name, "train", "-"), (f"val_{name}", "validation", "--")):
            if col in df:
                ax.plot(epochs, df[col].to_numpy(dtype=float), style, marker="o", markersize=3,
                        label=label)
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if lr_cols:
        ax = axes[len(metrics)]
        ax.plot(epochs, df[lr_cols[0]].to_numpy(dtype=float), marker="o", markersize=3,
                color="tab:gray")
        if (df[lr_cols[0]] > 0).all():
            ax.set_yscale("log")
        ax.set_title("learning rate")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in axes[panels:]:
        fig.delaxes(ax)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def confusion_matrix(
    matrix: Any,
    class_names: Sequence[str] | None = None,
    path: PathLike | bool | None = None,
    normalize: bool = True,
    *,
    title: str | None = None,
    annotate: bool | None = None,
) -> Figure:
    """A confusion matrix (rows = true class, columns = predicted class) as a heat map.

    :param matrix: (C, C) counts.
    :param class_names: C names for the axes (labels hidden beyond 40 classes).
    :param path: where to save the figure (optional). For compatibility a bool in this position
                 is taken as `normalize`.
    :param normalize: divide each row by its total (rows without samples stay 0).
    :param annotate: write the values in the cells (default: up to 20 classes).
    """
    if isinstance(path, bool):
        normalize, path = path, None
    cm = np.asarray(matrix, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"matrix must be square (C, C); got shape {cm.shape}")
    n = cm.shape[0]
    if class_names is None:
        class_names = [str(i) for i in range(n)]
    if len(class_names) != n:
        raise ValueError(f"{n} classes in the matrix but {len(class_names)} class_names")
    data = cm
    if normalize:
        totals = cm.sum(axis=1, keepdims=True)
        data = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    side = min(max(5.0, 0.35 * n + 2.5), 30.0)
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(data, cmap="Blues", vmin=0, vmax=1 if normalize else None,
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02,
                 label="fraction of true class" if normalize else "count")
    if n <= 40:
        ax.set_xticks(range(n), [str(c) for c in class_names], rotation=90, fontsize=8)
        ax.set_yticks(range(n), [str(c) for c in class_names], fontsize=8)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if annotate is None:
        annotate = n <= 20
    if annotate:
        vmax = data.max() if data.size else 1
        for i in range(n):
            for j in range(n):
                v = data[i, j]
                text = f"{v:.2f}" if normalize else f"{int(round(v))}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if v > 0.6 * vmax else "black")
    accuracy = np.trace(cm) / cm.sum() if cm.sum() else float("nan")
    ax.set_title(title or f"Confusion matrix{' (row-normalised)' if normalize else ''}"
                 f" - accuracy {accuracy:.3f}")
    return save_figure(fig, path)


LOCALIZATION_METRICS = ("PxAP", "MaxBoxAccV2", "top1_loc", "gt_known_loc")


def classification_comparison(
    table: Any, path: PathLike | None = None, *, title: str | None = None
) -> Figure:
    """Half vs full model classification scores as grouped bars.

    :param table: rows with 'metric', 'half', 'full' (and optionally 'identical') columns, as
                  written by `hrcam.report.classification_table`; only metrics with values in
                  [0, 1] are drawn. The title says whether every number is identical.
    """
    import pandas as pd

    df = _frame(table)
    missing = [c for c in ("metric", "half", "full") if c not in df]
    if missing:
        raise ValueError(f"classification_comparison: no column(s) {missing} in the table")
    half = pd.to_numeric(df["half"], errors="coerce")
    full = pd.to_numeric(df["full"], errors="coerce")
    scores = df[half.between(0, 1) & full.between(0, 1)]
    if scores.empty:
        raise ValueError("classification_comparison: no score in [0, 1] in the table")
    identical = bool(df["identical"].astype(bool).all()) if "identical" in df else bool(
        (half == full).all())
    x = np.arange(len(scores))
    fig = Figure(figsize=(max(6.0, 1.1 * len(scores) + 2.0), 4.0), layout="constrained")
    ax = fig.subplots()
    ax.bar(x - 0.2, half[scores.index], 0.4, label="half model")
    ax.bar(x + 0.2, full[scores.index], 0.4, label="full model")
    ax.set_xticks(x, [str(m).replace("_", " ") for m in scores["metric"]], rotation=30,
                  ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or "classification, half vs full model: "
                 + ("identical" if identical else "DIFFERENT"))
    return save_figure(fig, path)


def localization_bars(
    table: Any,
    path: PathLike | None = None,
    metrics: Sequence[str] | None = None,
    *,
    title: str | None = None,
    errors: str | None = "auto",
) -> Figure:
    """Bar charts comparing CAM methods on localization metrics.

    :param table: one row per method with a 'method' column and metric columns (a DataFrame,
                  a list of dicts, a CSV path, or a dict ``{method: {metric: value}}``).
    :param metrics: the metric columns to draw (default: those of ``PxAP, MaxBoxAccV2,
                    top1_loc, gt_known_loc`` with values); one panel per metric, one bar per
                    method, missing values skipped.
    :param errors: error bars: ``"ci"`` (columns ``<metric>_ci_low`` / ``_ci_high``),
                   ``"sd"`` (``<metric>_sd``, plus or minus one), None, or ``"auto"``: the
                   confidence interval where the table has one, else the sd, else none.
    """
    import pandas as pd

    df = _frame(table)
    if "method" not in df:
        raise ValueError("localization_bars: the table needs a 'method' column")
    if metrics is None:
        metrics = [m for m in LOCALIZATION_METRICS
                   if m in df and pd.to_numeric(df[m], errors="coerce").notna().any()]
    else:
        missing = [m for m in metrics if m not in df]
        if missing:
            raise ValueError(f"localization_bars: no column(s) {missing} in the table")
    if not metrics:
        raise ValueError("localization_bars: no metric with values in the table")
    methods = [str(m) for m in df["method"]]
    colors = [colormaps["tab10"](i % 10) for i in range(len(methods))]
    width = min(max(3.2, 0.5 * len(methods) + 1.0), 8.0)
    fig = Figure(figsize=(width * len(metrics), 4.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(metrics))).ravel()
    for ax, metric in zip(axes, metrics):
        values = pd.to_numeric(df[metric], errors="coerce").to_numpy(dtype=float)
        x = np.arange(len(methods))
        ok = np.isfinite(values)
        yerr = _error_bars(df, metric, values, errors)
        bars = ax.bar(x[ok], values[ok], color=[c for c, k in zip(colors, ok) if k],
                      yerr=None if yerr is None else yerr[:, ok], capsize=3,
                      error_kw={"elinewidth": 1.0, "ecolor": "0.25"})
        ax.bar_label(bars, fmt="%.3f", fontsize=8, label_type="center")
        ax.set_xticks(x, methods, rotation=30, ha="right", fontsize=8)
        finite = values[ok]
        top = max(1.0, float(finite.max()) * 1.15) if finite.size else 1.0
        ax.set_ylim(0, top)
        ax.set_title(metric.replace("_", " "))
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def _error_bars(df: Any, metric: str, values: np.ndarray, errors: str | None
                ) -> np.ndarray | None:
    """(2, n) lower / upper error-bar lengths for `localization_bars`, or None."""
    import pandas as pd

    def column(name: str) -> np.ndarray | None:
        if name not in df:
            return None
        col = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)
        return col if np.isfinite(col).any() else None

    low, high, sd = column(f"{metric}_ci_low"), column(f"{metric}_ci_high"), column(f"{metric}_sd")
    if errors == "auto":
        errors = "ci" if low is not None and high is not None else ("sd" if sd is not None
                                                                      else None)
    if errors is None:
        return None
    if errors == "ci":
        if low is None or high is None:
            raise ValueError(f"localization_bars: no {metric}_ci_low / _ci_high columns")
        bars = np.stack([values - low, high - values])
    elif errors == "sd":
        if sd is None:
            raise ValueError(f"localization_bars: no {metric}_sd column")
        bars = np.stack([sd, sd])
    else:
        raise ValueError(f"errors must be 'auto', 'ci', 'sd' or None, got {errors!r}")
    return np.where(np.isfinite(bars), np.maximum(bars, 0.0), 0.0)


def threshold_curves(
    curves: Any, path: PathLike | None = None, *, title: str | None = None
) -> Figure:
    """Metric-vs-CAM-threshold curves, one panel per metric and one line per method.

    :param curves: long format with columns method, metric, threshold, value (a DataFrame, a
                   list of dicts or a CSV path). When 'pixel_precision' and 'pixel_recall' are
                   both present a precision-recall panel is added.
    """
    df = _frame(curves)
    needed = {"method", "metric", "threshold", "value"}
    if not needed <= set(df.columns):
        raise ValueError(f"threshold_curves needs columns {sorted(needed)}; got {list(df.columns)}")
    if df.empty:
        raise ValueError("threshold_curves: no curve rows")
    metrics = sorted(df["metric"].unique(), key=str)
    methods = list(dict.fromkeys(df["method"]))
    pr = {"pixel_precision", "pixel_recall"} <= set(metrics)
    panels = len(metrics) + (1 if pr else 0)
    ncols = min(panels, 3)
    nrows = math.ceil(panels / ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.5 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    colors = {m: colormaps["tab10"](i % 10) for i, m in enumerate(methods)}
    for ax, metric in zip(axes, metrics):
        sub = df[df["metric"] == metric]
        for method in methods:
            rows = sub[sub["method"] == method].sort_values("threshold")
            if len(rows):
                ax.plot(rows["threshold"].to_numpy(float), rows["value"].to_numpy(float),
                        label=str(method), color=colors[method], linewidth=1.4)
        ax.set_title(str(metric).replace("_", " "))
        ax.set_xlabel("CAM threshold")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    if pr:
        ax = axes[len(metrics)]
        for method in methods:
            sub = df[df["method"] == method]
            p = sub[sub["metric"] == "pixel_precision"].sort_values("threshold")
            r = sub[sub["metric"] == "pixel_recall"].sort_values("threshold")
            if len(p) and len(p) == len(r):
                ax.plot(r["value"].to_numpy(float), p["value"].to_numpy(float),
                        label=str(method), color=colors[method], linewidth=1.4)
        ax.set_title("pixel precision-recall")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes[panels:]:
        fig.delaxes(ax)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(methods), 6),
                   fontsize=9)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def cam_grid(
    images: Any,
    maps: Mapping[str, Any],
    *,
    row_titles: Sequence[str] | None = None,
    cmap: str = "jet",
    path: PathLike | None = None,
    tile: float = 1.8,
) -> Figure:
    """Several CAMs of the same images side by side: one row per image, the image then one
    column per named map (e.g. the high-res CAM of each decoder variant), each map normalised
    and resized to its image.

    :param images: (N, H, W, 3) array or a list of images.
    :param maps: ``{column title: (N, h, w) maps}``, in column order.
    """
    imgs = _as_list(images)
    columns = {name: _as_list(values) for name, values in maps.items()}
    n = len(imgs)
    if n == 0 or not columns:
        raise ValueError("cam_grid needs at least one image and one column of maps")
    bad = [name for name, values in columns.items() if len(values) != n]
    if bad:
        raise ValueError(f"cam_grid: columns {bad} do not have {n} maps")
    if row_titles is not None and len(row_titles) != n:
        raise ValueError(f"cam_grid got {n} images but {len(row_titles)} row titles")
    ncols = 1 + len(columns)
    fig = Figure(figsize=(ncols * tile, n * tile + 0.4), layout="constrained")
    axes = np.asarray(fig.subplots(n, ncols, squeeze=False))
    for i in range(n):
        image = to_rgb_uint8(imgs[i])
        axes[i, 0].imshow(image)
        _clean(axes[i, 0], "image" if i == 0 else None, fontsize=8)
        if row_titles is not None:
            axes[i, 0].set_ylabel(str(row_titles[i]), fontsize=7)
        for j, (name, values) in enumerate(columns.items(), start=1):
            _show_map(axes[i, j], _cam_2d(values[i], image.shape[:2]),
                      name if i == 0 else None, cmap=cmap)
            axes[i, j].title.set_fontsize(8)
    return save_figure(fig, path)
