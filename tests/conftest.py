"""Shared pytest configuration: quiet, CPU-only, deterministic TensorFlow."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("MPLBACKEND", "Agg")


import pytest  # noqa: E402

TINY_IM = 32


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A generated dataset (3 classes x 8 images, 32 px, masks + boxes) and tiny random-weights
    half / full models saved as .keras, shared by the evaluation and rendering tests."""
    from hrcam import models
    from hrcam.data import generate_synthetic

    root = tmp_path_factory.mktemp("tiny_run")
    data = root / "data"
    generate_synthetic(data, classes=3, per_class=8, im_size=TINY_IM, seed=0)
    half = models.build_half_model(3, (TINY_IM, TINY_IM, 3), "tiny")
    full = models.full_model_from_half(half)
    half.save(root / "half.keras")
    full.save(root / "full.keras")
    return {"root": root, "data": data, "half": root / "half.keras", "full": root / "full.keras",
            "full_model": full}
