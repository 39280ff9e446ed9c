"""Small helpers shared across the package: JSON files written atomically (a reader never sees
half a file), with NumPy values and paths converted; file digests; the start method of worker
processes."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_json", "json_default", "file_sha256", "worker_context", "csv_cell", "write_csv"]


def json_default(value: Any) -> Any:
    """`json.dumps` fallback for NumPy scalars and arrays and paths."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)!r}")


def write_json(path: str | os.PathLike, payload: Any, *, sort_keys: bool = False) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically (temporary file + rename)."""
    from hrcam.data.common import atomic_write_text

    text = json.dumps(payload, indent=2, sort_keys=sort_keys, default=json_default) + "\n"
    atomic_write_text(Path(path), text)


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file's bytes (read in 1 MiB blocks)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def worker_context(preload: Sequence[str] = (), fork_when_safe: bool = False) -> Any:
    """The multiprocessing context of a pool of worker processes.

    ``fork`` when ``fork_when_safe`` and TensorFlow is not loaded in this process (the fastest
    start: workers inherit the parent's memory); otherwise ``forkserver`` (workers fork from a
    clean server that imports the ``preload`` modules once: safe although TensorFlow's threads
    run in the parent), else ``spawn``.
    """
    import multiprocessing
    import sys

    methods = multiprocessing.get_all_start_methods()
    if fork_when_safe and "fork" in methods and "tensorflow" not in sys.modules:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(preload))
        return ctx
    return multiprocessing.get_context("spawn")  # pragma: no cover - not Linux


def csv_cell(value: Any) -> str:
    """A value as a CSV cell of the result tables: floats with 6 decimals, None and NaN empty."""
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.6f}" if isinstance(value, float) else str(value)


def write_csv(path: str | os.PathLike, columns: Sequence[str],
              rows: Sequence[Any]) -> None:
    """A result table: a header of ``columns``, then one line per row (a mapping), cells from
    `csv_cell` (a missing key is an empty cell)."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([csv_cell(row.get(c)) for c in columns])
