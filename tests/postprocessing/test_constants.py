"""The postprocessing constants that depend on the image size (`constants='paper'|'scaled'`)."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from hrcam import postprocessing as pp
from hrcam.cli.common import add_pipeline_arguments, pipeline_params_from_args


def blob_case(H: int, W: int, seed: int = 0):
    """A textured disk in the high-res CAM, a smooth blob over it in the low-res CAM."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    cy, cx, R = 0.45 * H, 0.55 * W, 0.2 * min(H, W)
    high = (np.hypot(yy - cy, xx - cx) <= R) * (1 + 0.3 * rng.random((H, W)))
    ly, lx = np.mgrid[0:H // 16, 0:W // 16]
    low = np.exp(-(((ly + 0.5) * 16 - cy) ** 2 + ((lx + 0.5) * 16 - cx) ** 2) / (2 * R * R))
    img = rng.integers(0, 256, (1, H, W, 3)).astype(np.uint8)
    return img, low.astype(np.float32), high.astype(np.float32)


def assert_same_steps(a: dict, b: dict) -> None:
    assert list(a) == list(b) == list(pp.PIPELINE_KEYS)
    for key in pp.PIPELINE_KEYS:
        if key in ("bounds", "focal_points"):
            assert a[key] == b[key], key
        else:
            assert a[key].dtype == b[key].dtype and a[key].tobytes() == b[key].tobytes(), key


# ------------------------------------------------------------------------------------------
# the rule
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size, paper, scaled", [
    ((224, 224), (5, 256, 15), (5, 256, 15)),     # the paper's size: the same values
    ((128, 128), (5, 256, 11), (3, 84, 5)),       # 128^2/224^2 = 0.327 of the paper's area
    ((64, 64), (5, 256, 8), (3, 21, 1)),          # 0.0816 of it
    ((448, 448), (5, 256, 21), (11, 1024, 60)),   # 4x the area: 4x the holes and points
    ((96, 160), (5, 256, 11), (3, 78, 5)),        # non-square: side = sqrt(H * W)
    ((16, 16), (5, 256, 4), (3, 1, 1)),           # the lower bounds
])
def test_constants_rule(size, paper, scaled):
    keys = ("blur_size", "max_hole_size", "num_global_points")
    assert tuple(pp.pipeline_constants(size, "paper")[k] for k in keys) == paper
    assert tuple(pp.pipeline_constants(size, "scaled")[k] for k in keys) == scaled
    assert pp.pipeline_constants(size) == pp.pipeline_constants(size, "paper")


def test_scaled_blur_is_the_nearest_odd_size():
    for side in range(16, 1200, 7):
        blur = pp.pipeline_constants((side, side), "scaled")["blur_size"]
        target = 5 * side / 224
        assert blur % 2 == 1 and blur >= 3
        if target >= 3:
            assert abs(blur - target) <= 1  # no odd integer is closer


# ------------------------------------------------------------------------------------------
# 'paper' is the seed's pipeline
# ------------------------------------------------------------------------------------------


def seed_pipeline(img, low, high, focal_scope="global", maxima_areas="small"):
    """The seed's steps with its literal constants: 5x5 blur, round(sqrt(side)) global focal
    points, holes of up to 256 pixels."""
    size = img.shape[1:3]
    blurred = pp.blur(high, 5)
    edges = pp.sobel_edges(blurred)
    low_resized = pp.normalize(pp.resize_pil(low, size))
    roi = pp.region_of_interest(low_resized, 85)
    lower, upper = pp.edge_bounds(edges, roi)
    points = pp.find_focal_points(low, size, focal_scope, maxima_areas, low_resized=low_resized,
                                  num_points=round(math.sqrt(math.sqrt(size[0] * size[1]))))
    segmented = pp.region_growing(edges, points, lower, upper)
    full_segment = pp.fill_segment(segmented, edges, roi, upper, 256)
    merged = pp.merge(full_segment, low_resized, "blend", 0.5)
    return {"blurred": blurred, "focal_points": points, "full_segment": full_segment,
            "merged": merged}


@pytest.mark.parametrize("size", [(64, 64), (128, 128), (224, 224), (96, 160)])
@pytest.mark.parametrize("focal_scope", ["global", "local"])
def test_paper_constants_are_the_seeds(size, focal_scope):
    img, low, high = blob_case(*size)
    default = pp.pipeline(img, low, high, focal_scope=focal_scope)
    paper = pp.pipeline(img, low, high, focal_scope=focal_scope, constants="paper")
    assert_same_steps(default, paper)
    seed = seed_pipeline(img, low, high, focal_scope)
    for key, value in seed.items():
        if key == "focal_points":
            assert sorted(paper[key]) == sorted(value)
        else:
            np.testing.assert_array_equal(paper[key], value, err_msg=key)


def test_scaled_equals_paper_at_224():
    img, low, high = blob_case(224, 224)
    assert_same_steps(pp.pipeline(img, low, high, constants="scaled"), pp.pipeline(img, low, high))


# ------------------------------------------------------------------------------------------
# 'scaled' on crafted images (128 px: blur 3, holes <= 84 px, 5 global focal points)
# ------------------------------------------------------------------------------------------


def test_scaled_blur_size():
    high = np.zeros((128, 128), np.float32)
    high[64, 64] = 1.0  # an impulse: the blurred map is the box filter's footprint
    low = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    img = np.zeros((128, 128, 3), np.uint8)
    assert np.count_nonzero(pp.pipeline(img, low, high)["blurred"]) == 25
    assert np.count_nonzero(pp.pipeline(img, low, high, constants="scaled")["blurred"]) == 9


def test_scaled_hole_size():
    """A flat high-res CAM with a small dip: region growing covers the flat part and leaves a
    hole around the dip of 84 < area <= 256 pixels, filled by 'paper' but not by 'scaled'."""
    yy, xx = np.mgrid[0:128, 0:128]
    high = (np.hypot(yy - 63.5, xx - 63.5) > 4).astype(np.float32)
    low = np.zeros((8, 8), np.float32)
    low[2:6, 2:6] = 1.0
    low[3:5, 3:5] = 0.0
    img = np.zeros((128, 128, 3), np.uint8)
    for constants, filled in (("paper", True), ("scaled", False)):
        steps = pp.pipeline(img, low, high, roi_percentile=50, constants=constants)
        kept = (steps["segmented"] > 0) | ((steps["edges"] >= steps["bounds"][1]) & steps["roi"])
        labels, n = ndi.label(~kept)
        assert n == 1  # one hole, around the dip
        hole = labels == 1
        assert hole[64, 64] and 84 < hole.sum() <= 256
        assert (steps["full_segment"][hole] == 1).all() == filled
        assert (steps["full_segment"][~hole] == 1).all()


def test_scaled_focal_points():
    img, low, high = blob_case(128, 128)
    paper = pp.pipeline(img, low, high)["focal_points"]
    steps = pp.pipeline(img, low, high, constants="scaled")
    points = steps["focal_points"]
    assert len(paper) == 11 and len(points) == 5
    # the 5 highest pixels of the resized low-res CAM
    lr = steps["low_resized"]
    chosen = np.zeros(lr.shape, bool)
    for x, y in points:
        chosen[y, x] = True
    assert lr[chosen].min() >= lr[~chosen].max()
    # the local scope does not use the number
    local = {"focal_scope": "local"}
    assert pp.pipeline(img, low, high, constants="scaled", **local)["focal_points"] == \
        pp.pipeline(img, low, high, **local)["focal_points"]


def test_batch_passes_constants():
    cases = [blob_case(128, 128, seed) for seed in range(3)]
    images = np.concatenate([c[0] for c in cases])
    lows = np.stack([c[1] for c in cases])
    highs = np.stack([c[2] for c in cases])
    batch = pp.pipeline_batch(images, lows, highs, keys=("merged", "focal_points"),
                              constants="scaled")
    for k, (img, low, high) in enumerate(cases):
        one = pp.pipeline(img, low, high, constants="scaled")
        np.testing.assert_array_equal(batch["merged"][k], one["merged"])
        assert batch["focal_points"][k] == one["focal_points"]


# ------------------------------------------------------------------------------------------
# errors and the command line
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["auto", "Paper", "", None, 1])
def test_bad_constants_raise(bad):
    img, low, high = blob_case(64, 64)
    for call in (lambda: pp.pipeline(img, low, high, constants=bad),
                 lambda: pp.validate_pipeline_params(constants=bad),
                 lambda: pp.pipeline_batch(img, low[None], high[None], constants=bad),
                 lambda: pp.pipeline_constants((64, 64), bad)):
        with pytest.raises(ValueError) as info:
            call()
        assert "constants" in str(info.value) and "'paper', 'scaled'" in str(info.value)
    with pytest.raises(ValueError, match="size must be"):
        pp.pipeline_constants((0, 64), "scaled")


def test_cli_flag():
    parser = argparse.ArgumentParser()
    add_pipeline_arguments(parser)
    assert pipeline_params_from_args(parser.parse_args([]))["constants"] == "paper"
    params = pipeline_params_from_args(parser.parse_args(["--constants", "scaled"]))
    assert pp.validate_pipeline_params(**params)["constants"] == "scaled"
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--constants", "fitted"])
    assert stop.value.code == 2
