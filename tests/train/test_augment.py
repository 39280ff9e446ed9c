"""The paper's augmentation policy with TensorFlow ops: identity at probability 0, shape, dtype
and range kept, flips and affine geometry, and reproducible draws from a stateless seed."""

from __future__ import annotations

import numpy as np
import pytest

import tensorflow as tf  # noqa: E402

from hrcam import train as T  # noqa: E402

IM = 32


def _batch(n=6, size=IM, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, size, size, 3)).astype(np.float32)
    x[:, : size // 4] = 0  # asymmetric, so that a flip changes the image
    return x


def test_augment_identity_when_probability_zero():
    x = _batch()
    out = T.augment_batch(x, T.AugmentConfig.with_probability(0.0)).numpy()
    assert np.array_equal(out, x)
    # the pipeline-level switch too: probability 0 on the affine and the flip
    out = T.augment_batch(x, T.AugmentConfig(affine_probability=0, flip_probability=0))
    assert np.array_equal(out.numpy(), x)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_augment_keeps_shape_dtype_and_range(dtype):
    x = _batch().astype(dtype)
    out = T.augment_batch(tf.constant(x), T.AugmentConfig.with_probability(1.0)).numpy()
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 255
    assert np.isfinite(out.astype(np.float64)).all()


def test_flip_changes_images_when_probability_one():
    x = _batch()
    out = T.augment_batch(x, T.AugmentConfig(affine_probability=0, flip_probability=1)).numpy()
    assert np.array_equal(out, x[:, :, ::-1])


def test_affine_changes_images_when_probability_one():
    x = _batch()
    cfg = T.AugmentConfig(affine_probability=1, flip_probability=0)
    out = T.augment_batch(x, cfg).numpy()
    assert all(not np.array_equal(out[i], x[i]) for i in range(len(x)))
    # constant 0 fill: rotations of up to 180 deg leave black corners in most images
    assert (out == 0).mean() > (x == 0).mean()


def test_affine_matrix_geometry():
    # a pure 90-degree rotation about the centre maps the top-right pixel to bottom-right
    cfg = T.AugmentConfig(affine_probability=1, scale=(1, 1), translate=(0, 0),
                          rotate=(90, 90), shear=(0, 0), flip_probability=0,
                          interpolations=("nearest",))
    img = np.zeros((1, 9, 9, 1), np.float32)
    img[0, 0, 8] = 1
    out = T.augment_batch(img, cfg).numpy()
    assert np.argwhere(out[0, :, :, 0] > 0).tolist() == [[8, 8]]
    # a pure translation by +20% of the width moves content right
    cfg = T.AugmentConfig(affine_probability=1, scale=(1, 1), translate=(0.2, 0.2),
                          rotate=(0, 0), shear=(0, 0), flip_probability=0,
                          interpolations=("nearest",))
    img = np.zeros((1, 10, 10, 1), np.float32)
    img[0, 0, 0] = 1
    out = T.augment_batch(img, cfg).numpy()
    assert np.argwhere(out[0, :, :, 0] > 0).tolist() == [[2, 2]]


def test_augment_config_validation():
    with pytest.raises(ValueError, match="affine_probability"):
        T.AugmentConfig(affine_probability=1.5)
    with pytest.raises(ValueError, match="interpolations"):
        T.AugmentConfig(interpolations=("cubic",))


def test_seeded_augmentation_is_reproducible_and_seed_dependent():
    x = _batch(8)
    cfg = T.AugmentConfig.with_probability(0.5)
    first = T.augment_batch(x, cfg, seed=(0, 5)).numpy()
    np.testing.assert_array_equal(first, T.augment_batch(x, cfg, seed=(0, 5)).numpy())
    assert not np.array_equal(first, T.augment_batch(x, cfg, seed=(0, 6)).numpy())
    assert not np.array_equal(first, x)  # with 8 images, some are augmented
