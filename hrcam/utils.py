"""Small helpers shared across the package: JSON files written atomically (a reader never sees
half a file), with NumPy values and paths converted."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_json", "json_default", "file_sha256"]


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
