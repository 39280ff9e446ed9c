"""hrcam: High Resolution Class Activation Mapping (ICIP 2019), modernised on TensorFlow / Keras 3.

`HalfModel` and `FullModel` are imported lazily so that `import hrcam` (and the data and
postprocessing modules) do not pay for importing TensorFlow.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["HalfModel", "FullModel", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("HalfModel", "FullModel"):
        from hrcam import cams

        return getattr(cams, name)
    raise AttributeError(f"module 'hrcam' has no attribute {name!r}")
