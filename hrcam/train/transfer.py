"""The transfer check (the seed README's section 3.3, automatic): a full model must carry its
half model's classifier unchanged -- every shared layer's weights bit-identical (BatchNorm
statistics included, compared with `hrcam.debug.check_weights`) and the same classes and
probabilities on a fixed sample of images."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PROB_TOLERANCE", "CHECK_IMAGES", "TransferCheckError", "check_images",
           "verify_transfer", "transfer_failure_message", "check_transfer_files"]

PROB_TOLERANCE = 1e-6
CHECK_IMAGES = 64


class TransferCheckError(RuntimeError):
    """The full model's shared layers or predictions differ from the half model's."""

    def __init__(self, message: str, report: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.report = dict(report or {})


def check_images(data_dir: str | os.PathLike, split: str = "test", n_images: int = CHECK_IMAGES,
                 im_size: int = 224) -> tuple[np.ndarray, list[str]]:
    """A fixed sample of ``n_images`` images of ``data_dir/split`` (evenly spaced over the
    sorted file list, so every class is represented when n_images >= classes) as uint8
    ``[N, im_size, im_size, 3]``, decoded as everywhere else (`hrcam.images`), and their
    paths."""
    from hrcam.data import list_images
    from hrcam.images import load_image_array

    paths, _, _ = list_images(data_dir, split)
    if not paths:
        raise ValueError(f"no images in {Path(data_dir) / split} for the transfer check")
    n = min(int(n_images), len(paths))
    idx = np.unique(np.linspace(0, len(paths) - 1, n).round().astype(int))
    chosen = [paths[i] for i in idx]
    return np.stack([load_image_array(p, im_size) for p in chosen]), chosen


def _probabilities(model: Any, images: np.ndarray, batch_size: int) -> np.ndarray:
    from hrcam.cams import CamEngine
    from hrcam.cams.engine import PROBABILITIES

    return CamEngine(model, (), batch_size)(images)[PROBABILITIES].astype(np.float64)


def verify_transfer(half: Any, full: Any, images: np.ndarray, *, stage: str = "check",
                    batch_size: int = 16, tolerance: float = PROB_TOLERANCE,
                    out: str | os.PathLike | None = None, raise_on_failure: bool = True
                    ) -> dict[str, Any]:
    """Check that ``full`` carries ``half``'s classifier unchanged.

    Every weighted layer of the half model must exist in the full model with bit-identical
    weights, and on ``images`` both models must predict the same classes with class
    probabilities within ``tolerance`` (max abs diff). Writes the report to ``out`` (JSON) when
    given; raises `TransferCheckError` naming the differing layers when the check fails (unless
    ``raise_on_failure=False``).
    """
    from hrcam import models
    from hrcam.debug import check_weights
    from hrcam.model_files import check_kind
    from hrcam.utils import write_json

    check_kind(half, "half", f"the half model {half.name!r}")
    check_kind(full, "full", f"the full model {full.name!r}")
    shared = [name for name in models.shared_layer_names(half) if half.get_layer(name).weights]
    present = {layer.name for layer in full.layers}
    missing = [name for name in shared if name not in present]
    weights = check_weights(half, full, [n for n in shared if n not in missing])
    p_half = _probabilities(half, images, batch_size)
    p_full = _probabilities(full, images, batch_size)
    max_prob = float(np.max(np.abs(p_half - p_full))) if len(images) else 0.0
    same_classes = bool(np.array_equal(p_half.argmax(-1), p_full.argmax(-1)))
    finite = [v for v in weights["max_abs_diff"].values() if np.isfinite(v)]
    identical = not weights["different"] and not missing
    report = {
        "ok": bool(identical and same_classes and max_prob <= tolerance),
        "stage": stage,
        "weights": {"layers_checked": len(weights["compared"]), "identical": identical,
                    "max_abs_diff": (max(finite, default=0.0)
                                     if len(finite) == len(weights["compared"]) else None),
                    "missing_layers": missing},
        "different_layers": list(weights["different"]),
        "max_abs_prob_diff": max_prob,
        "same_classes": same_classes,
        "n_images": int(len(images)),
        "n_different_classes": int(np.sum(p_half.argmax(-1) != p_full.argmax(-1))),
        "tolerance": tolerance,
    }
    if out is not None:
        write_json(out, report)
    if not report["ok"] and raise_on_failure:
        raise TransferCheckError(transfer_failure_message(report), report)
    return report


def transfer_failure_message(report: Mapping[str, Any]) -> str:
    """One line saying what differs (layers, classes, probabilities)."""
    parts = [f"transfer check ({report.get('stage')}) failed:"]
    layers = list(report.get("different_layers") or [])
    missing = list((report.get("weights") or {}).get("missing_layers") or [])
    if layers:
        parts.append(f"weights differ in layer(s) {', '.join(layers)};")
    if missing:
        parts.append(f"layer(s) missing from the full model: {', '.join(missing)};")
    if not report.get("same_classes", True):
        parts.append(f"predicted classes differ on {report.get('n_different_classes')} of "
                     f"{report.get('n_images')} images;")
    parts.append(f"max abs probability difference {report.get('max_abs_prob_diff'):.3g} "
                 f"(tolerance {report.get('tolerance', PROB_TOLERANCE):.0e})")
    return " ".join(parts)


def check_transfer_files(half_path: str | os.PathLike, full_path: str | os.PathLike,
                         data_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
                         split: str = "test", n_images: int = CHECK_IMAGES,
                         batch_size: int = 16,
                         tolerance: float = PROB_TOLERANCE) -> dict[str, Any]:
    """`verify_transfer` on two saved models (``hrcam train check``); raises on failure. A
    half model given as the full one (or the reverse) is a ValueError naming the option."""
    from hrcam.inference import positive_int
    from hrcam.model_files import load_model
    from hrcam.utils import write_json

    n_images = positive_int(n_images, "--n-images")
    batch_size = positive_int(batch_size, "--batch-size")
    half = load_model(half_path, kind="half", what=f"--half {half_path}")
    full = load_model(full_path, kind="full", what=f"--full {full_path}")
    im_size = int(half.inputs[0].shape[1] or 224)
    images, _ = check_images(data_dir, split, n_images, im_size)
    report = verify_transfer(half, full, images, stage="check", batch_size=batch_size,
                             tolerance=tolerance, raise_on_failure=False)
    report["half"] = str(half_path)
    report["full"] = str(full_path)
    if out is not None:
        write_json(out, report)
    if not report["ok"]:
        raise TransferCheckError(transfer_failure_message(report), report)
    return report
