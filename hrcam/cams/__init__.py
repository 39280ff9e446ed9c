"""CAMs: the seed's `HalfModel` / `FullModel` wrappers, the CAM engine they, the evaluation and
the rendering share, and the registry of CAM methods.

* `hrcam.cams.methods`: one small class per method (low-res, high-res, refined CAM, Grad-CAM++,
  LayerCAM, centre Gaussian) over a shared base, and `CAM_METHODS`, the registry;
* `hrcam.cams.engine`: `CamEngine` (one model call per batch gives the predictions and every
  requested map) and `derive_maps` (the maps computed on the CPU from other maps);
* `hrcam.cams.wrappers`: `HalfModel` and `FullModel`, the seed's API.
"""

from hrcam.cams.engine import CamEngine, derive_maps
from hrcam.cams.methods import (
                                CAM_METHODS,
                                CamMethod,
                                DerivedCam,
                                ModelCam,
                                create_method,
                                method_names,
                                register,
)
from hrcam.cams.wrappers import FullModel, HalfModel
from hrcam.model_files import WeightsFileError, load_model, read_classes_json

__all__ = ["HalfModel", "FullModel", "CamEngine", "derive_maps", "CAM_METHODS", "CamMethod",
           "ModelCam", "DerivedCam", "create_method", "method_names", "register", "load_model",
           "read_classes_json", "WeightsFileError"]
