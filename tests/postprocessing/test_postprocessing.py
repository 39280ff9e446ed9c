"""Tests of the refined-CAM postprocessing (hrcam.postprocessing)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import filters, morphology

from hrcam import postprocessing as pp
from hrcam.maps import percentiles
from hrcam.postprocessing import steps


def disk_case(H=224, W=224, R=35, cy=None, cx=None, stride=16):
    """A textured disk in the high-res CAM, a smooth blob over it in the low-res CAM."""
    yy, xx = np.mgrid[0:H, 0:W]
    cy = H / 2 if cy is None else cy
    cx = W / 2 if cx is None else cx
    disk = np.hypot(yy - cy, xx - cx) <= R
    high = disk * (1 + 0.15 * np.sin(xx / 2.0) * np.sin(yy / 2.0))
    h, w = H // stride, W // stride
    ly, lx = np.mgrid[0:h, 0:w]
    low = np.exp(-(((ly + 0.5) * stride - cy) ** 2 + ((lx + 0.5) * stride - cx) ** 2)
                 / (2 * (0.8 * R) ** 2))
    rng = np.random.default_rng(0)
    img = rng.integers(1, 256, (1, H, W, 3)).astype(np.uint8)
    return img, low.astype(np.float32), high.astype(np.float32), disk


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


# ------------------------------------------------------------------------------------------
# the constructed case
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("focal_scope", ["global", "local"])
def test_disk_is_recovered(focal_scope):
    img, low, high, disk = disk_case()
    steps = pp.pipeline(img, low, high, focal_scope=focal_scope)
    assert set(steps) == set(pp.PIPELINE_KEYS)
    full = steps["full_segment"] > 0
    refined = steps["merged"] >= 0.5
    # the refined CAM follows the object, much better than the low-res ROI alone
    assert iou(full, disk) > 0.8
    assert iou(refined, disk) > 0.8
    assert iou(refined, disk) > iou(steps["roi"], disk) + 0.2
    # the result keeps image pixels only where the refined CAM is high, 15 % of them
    kept = steps["result"].any(axis=-1)
    assert steps["result"].shape == img.shape[1:]
    assert kept.sum() <= 0.15 * disk.size + 1
    assert kept.sum() > 0.10 * disk.size
    assert kept[disk].mean() > 0.95  # the disk (7.7 % of the image) is kept
    np.testing.assert_array_equal(steps["result"][kept], img[0][kept])


def test_non_square_image():
    img, low, high, disk = disk_case(H=160, W=224, R=40)
    steps = pp.pipeline(img[0], low, high)
    for key in ("blurred", "low_resized", "edges", "roi", "segmented", "full_segment", "merged"):
        assert steps[key].shape == (160, 224), key
    assert steps["low"].shape == (10, 14)
    assert steps["result"].shape == (160, 224, 3)
    assert iou(steps["full_segment"] > 0, disk) > 0.85
    # round(sqrt(geometric mean side)) global focal points, as (x, y) inside the image
    assert len(steps["focal_points"]) == round(np.sqrt(np.sqrt(160 * 224))) == 14
    for x, y in steps["focal_points"]:
        assert 0 <= x < 224 and 0 <= y < 160
    # transposed image: transposed results (up to rounding at a few region borders)
    t = pp.pipeline(img[0].transpose(1, 0, 2), low.T, high.T)
    differ = ~np.isclose(t["merged"], steps["merged"].T, atol=1e-12)
    assert differ.mean() < 1e-3


def test_step_semantics():
    img, low, high, disk = disk_case()
    s = pp.pipeline(img, low[None], high[None])
    for key in ("blurred", "low", "low_resized", "edges", "segmented", "full_segment", "merged"):
        assert s[key].min() >= 0 and s[key].max() <= 1, key
    # 1-2: blur and Sobel edges as skimage / scipy compute them
    blurred = ndi.convolve(pp.normalize(high), np.full((5, 5), 1 / 25))
    np.testing.assert_allclose(s["blurred"], blurred, atol=1e-12)
    np.testing.assert_allclose(s["edges"], pp.normalize(filters.sobel(blurred)), atol=1e-12)
    # 4: the ROI is the top 15 % of the resized low-res CAM
    assert s["roi"].dtype == bool
    assert abs(s["roi"].mean() - 0.15) < 0.01
    assert np.array_equal(s["roi"], s["low_resized"] > np.percentile(s["low_resized"], 85))
    # 5: bounds are the quartiles of the edges inside the ROI
    np.testing.assert_allclose(s["bounds"], np.percentile(s["edges"][s["roi"]], [25, 75]))
    lower, upper = s["bounds"]
    # 6: global focal points are the 15 highest pixels of low_resized
    assert len(s["focal_points"]) == 15
    values = sorted(s["low_resized"][y, x] for x, y in s["focal_points"])
    assert values[0] >= np.sort(s["low_resized"].ravel())[-15]
    # 7: the grown region only holds pixels within the bounds, connected to a seed
    seg = s["segmented"] > 0
    assert seg.any()
    assert np.all((s["edges"][seg] >= lower) & (s["edges"][seg] <= upper))
    labels, _ = ndi.label(seg)
    seeds = {labels[y, x] for x, y in s["focal_points"]} - {0}
    assert set(np.unique(labels[seg])) <= seeds
    # 8: full segment = segment + strong edges in the ROI, small holes filled
    base = seg | ((s["edges"] >= upper) & s["roi"])
    assert np.array_equal(s["full_segment"] > 0, morphology.remove_small_holes(base, max_size=256))
    # 9: blend with alpha 0.5
    np.testing.assert_allclose(s["merged"], 0.5 * s["full_segment"] + 0.5 * s["low_resized"])


def test_merge_types_and_filters():
    img, low, high, _ = disk_case()
    blend = pp.pipeline(img, low, high, merge_alpha=0.8)
    mult = pp.pipeline(img, low, high, merge_type="multiply")
    seed_word = pp.pipeline(img, low, high, merge_type="merge")
    np.testing.assert_allclose(blend["merged"],
                               0.8 * blend["full_segment"] + 0.2 * blend["low_resized"])
    np.testing.assert_allclose(mult["merged"], mult["full_segment"] * mult["low_resized"])
    np.testing.assert_array_equal(seed_word["merged"], mult["merged"])
    thr = pp.pipeline(img, low, high, filter_type="threshold", filter_threshold=0.7)
    keep = pp.normalize(thr["merged"]) > 0.7
    np.testing.assert_array_equal(thr["result"].any(axis=-1), keep)
    pct = pp.pipeline(img, low, high, filter_percentage=40)
    assert abs(pct["result"].any(axis=-1).mean() - 0.40) < 0.02


def test_local_focal_points():
    low = np.zeros((14, 14))
    low[3, 4] = 1.0     # highest maximum
    low[10, 9] = 0.8    # above the mean of the lowest and highest maxima
    low[7, 12] = 0.2    # below: dropped
    large = pp.find_focal_points(low, (224, 224), "local", "large")
    small = pp.find_focal_points(low, (224, 224), "local", "small")
    large_cells = {(x // 16, y // 16) for x, y in large}
    assert large_cells == {(4, 3), (9, 10)}
    assert len(large) == 2 * 16 * 16
    assert 0 < len(small) < 20 and set(small) <= set(large)
    # one blob: its maximum is a focal point (the seed's strict '>' dropped it)
    one = np.zeros((14, 14))
    one[5, 5] = 1
    assert pp.find_focal_points(one, (224, 224), "local", "small")


def test_blend_when_one_map_is_blank():
    seg = np.zeros((8, 8))
    low = np.linspace(2, 5, 64).reshape(8, 8)
    np.testing.assert_allclose(pp.merge(seg, low), pp.normalize(low))
    np.testing.assert_allclose(pp.merge(np.ones((8, 8)) * (low > 3), np.full((8, 8), 7.0)),
                               (low > 3).astype(float))
    np.testing.assert_array_equal(pp.merge(seg, seg), np.zeros((8, 8)))


# ------------------------------------------------------------------------------------------
# blank CAMs
# ------------------------------------------------------------------------------------------


def test_blank_high_res_cam():
    img, low, _, _ = disk_case()
    with np.errstate(all="raise"):
        s = pp.pipeline(img, low, np.zeros((224, 224)))
    assert not s["blurred"].any() and not s["edges"].any()
    assert not s["segmented"].any() and not s["full_segment"].any()
    np.testing.assert_array_equal(s["merged"], s["low_resized"])
    assert s["result"].any()


@pytest.mark.parametrize("value", [0.0, 3.5, -2.0])
def test_blank_low_res_cam(value):
    img, _, high, _ = disk_case()
    with np.errstate(all="raise"):
        s = pp.pipeline(img, np.full((14, 14), value), high, focal_scope="local")
        g = pp.pipeline(img, np.full((14, 14), value), high)
    for steps in (s, g):
        assert steps["focal_points"] == []
        assert not steps["roi"].any()
        assert np.all(np.isfinite(steps["bounds"]))
        assert not steps["merged"].any()
        assert not steps["result"].any()


def test_both_blank():
    with np.errstate(all="raise"):
        s = pp.pipeline(np.ones((32, 48, 3)), np.ones((2, 3)), np.ones((32, 48)))
    for key in ("blurred", "low", "low_resized", "edges", "segmented", "full_segment", "merged"):
        assert np.all(np.isfinite(s[key])) and not s[key].any(), key
    assert s["bounds"] == (0.0, 0.0)


# ------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, words",
    [
        ({"focal_scope": "everywhere"}, ["focal_scope", "'global'", "'local'"]),
        ({"maxima_areas": "medium"}, ["maxima_areas", "'small'", "'large'"]),
        ({"merge_type": "add"}, ["merge_type", "'blend'", "'multiply'", "'merge'"]),
        ({"filter_type": "top"}, ["filter_type", "'percentage'", "'threshold'"]),
        ({"roi_percentile": 0}, ["roi_percentile", "(0, 100)"]),
        ({"roi_percentile": 100}, ["roi_percentile", "(0, 100)"]),
        ({"roi_percentile": -5}, ["roi_percentile"]),
        ({"roi_percentile": float("nan")}, ["roi_percentile"]),
        ({"roi_percentile": "85"}, ["roi_percentile"]),
        ({"merge_alpha": 1.5}, ["merge_alpha", "[0, 1]"]),
        ({"merge_alpha": -0.1}, ["merge_alpha", "[0, 1]"]),
        ({"filter_threshold": 2}, ["filter_threshold", "[0, 1]"]),
        ({"filter_threshold": -1e-9}, ["filter_threshold", "[0, 1]"]),
        ({"filter_percentage": 0}, ["filter_percentage", "(0, 100]"]),
        ({"filter_percentage": 100.5}, ["filter_percentage", "(0, 100]"]),
        ({"filter_percentage": True}, ["filter_percentage"]),
    ],
)
def test_bad_parameters_raise(params, words):
    img, low, high, _ = disk_case(64, 64, 10)
    with pytest.raises(ValueError) as info:
        pp.pipeline(img, low, high, **params)
    for word in words:
        assert word in str(info.value)
    with pytest.raises(ValueError):
        pp.validate_pipeline_params(**params)
    with pytest.raises(ValueError):
        pp.pipeline_batch(img, low[None], high[None], **params)


def test_valid_edge_parameters_accepted():
    img, low, high, _ = disk_case(64, 64, 10)
    for params in ({"merge_alpha": 0}, {"merge_alpha": 1}, {"filter_percentage": 100},
                   {"filter_threshold": 0}, {"filter_threshold": 1}, {"roi_percentile": 0.5},
                   {"roi_percentile": 99.5}):
        steps = pp.pipeline(img, low, high, **params)
        assert steps["merged"].shape == (64, 64)
    assert pp.validate_pipeline_params() == pp.PIPELINE_DEFAULTS
    with pytest.raises(ValueError, match="unknown postprocessing parameter"):
        pp.validate_pipeline_params(alpha=0.3)


@pytest.mark.parametrize(
    "img_shape, low_shape, high_shape, word",
    [
        ((224, 224, 3), (14, 14), (224, 200), "high"),
        ((224, 224, 3), (14, 14), (112, 112), "high"),
        ((160, 224, 3), (14, 10), (160, 224), "low"),     # transposed low-res CAM
        ((224, 224, 3), (300, 300), (224, 224), "low"),   # larger than the image
        ((224, 224, 3), (14, 14, 2), (224, 224), "low"),
        ((224, 224, 3), (14,), (224, 224), "low"),
        ((2, 224, 224, 3), (14, 14), (224, 224), "img"),  # a batch is not an image
        ((224,), (14, 14), (224, 224), "img"),
    ],
)
def test_bad_shapes_raise(img_shape, low_shape, high_shape, word):
    with pytest.raises(ValueError, match=word):
        pp.pipeline(np.zeros(img_shape), np.random.rand(*low_shape),
                    np.random.rand(*high_shape))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["low", "high"])
def test_non_finite_maps_raise(bad, which):
    img, low, high, _ = disk_case(64, 64, 10)
    low, high = low.copy(), high.copy()
    (low if which == "low" else high)[1, 1] = bad
    with pytest.raises(ValueError, match=f"{which} contains NaN or infinite"):
        pp.pipeline(img, low, high)


def test_accepted_input_layouts():
    img, low, high, _ = disk_case(64, 96, 12)
    ref = pp.pipeline(img, low, high)
    for args in ((img[0], low[None], high[None]), (img[0, ..., 0], low, high),
                 (img, low[None, ..., None], high[..., None])):
        out = pp.pipeline(*args)
        np.testing.assert_array_equal(out["merged"], ref["merged"])
    assert pp.pipeline(img[0, ..., 0], low, high)["result"].shape == (64, 96)
    # stride-32 low-res CAM and a stride that does not divide the image evenly
    assert pp.pipeline(img, np.random.rand(2, 3), high)["merged"].shape == (64, 96)
    assert pp.pipeline(np.zeros((70, 100, 3)), np.random.rand(4, 6),
                       np.random.rand(70, 100))["merged"].shape == (70, 100)


# ------------------------------------------------------------------------------------------
# building blocks
# ------------------------------------------------------------------------------------------


def test_resize_bilinear_matches_pil():
    from PIL import Image

    rng = np.random.default_rng(1)
    for h, w, H, W in [(14, 14, 224, 224), (10, 14, 160, 224), (3, 5, 40, 17)]:
        low = rng.random((h, w)).astype(np.float32)
        ref = np.array(Image.fromarray(low).resize((W, H), Image.BILINEAR))
        np.testing.assert_allclose(pp.resize_bilinear(low, (H, W)), ref, atol=1e-6)
        nearest = np.array(Image.fromarray(low).resize((W, H), Image.NEAREST))
        np.testing.assert_array_equal(pp.resize_nearest(low, (H, W)), nearest)


def test_fast_helpers_are_exact():
    rng = np.random.default_rng(2)
    for n in (10, 5000, 50176):
        x = rng.random(n)
        x[: n // 3] = x[0]  # ties
        qs = (25, 75, 85, 33.3)
        assert percentiles(x, qs) == list(np.percentile(x, qs))
    for _ in range(30):
        mask = rng.random((60, 80)) > rng.uniform(0.3, 0.9)
        size = int(rng.integers(1, 300))
        got = mask.copy()
        steps._fill_small_holes(got, size)
        assert np.array_equal(got, morphology.remove_small_holes(mask, max_size=size))
    m = pp.resize_nearest(rng.random((14, 14)) > 0.8, (224, 224))
    assert np.array_equal(steps._skeletonize(m), morphology.skeletonize(m))
    x = rng.random((224, 224))
    top = steps._top_k(x, 15)
    np.testing.assert_array_equal(np.sort(x.ravel()[top]), np.sort(x.ravel())[-15:])


def test_region_growing_matches_connected_threshold():
    import SimpleITK as sitk

    rng = np.random.default_rng(3)
    edges = ndi.gaussian_filter(rng.random((50, 70)), 2)
    edges = pp.normalize(edges)
    seeds = [(10, 20), (60, 40)]
    ref = sitk.GetArrayFromImage(sitk.ConnectedThreshold(
        sitk.GetImageFromArray(edges), seedList=seeds, lower=0.3, upper=0.7, replaceValue=1))
    np.testing.assert_array_equal(pp.region_growing(edges, seeds, 0.3, 0.7), ref)
    assert not pp.region_growing(edges, [], 0.3, 0.7).any()


def test_normalize_and_blank():
    assert not pp.normalize(np.full((3, 3), 5.0)).any()
    np.testing.assert_allclose(pp.normalize([[1, 3], [5, 9]]), [[0, 0.25], [0.5, 1]])
    assert pp.is_blank(np.zeros((4, 4))) and not pp.is_blank(np.eye(4))


# ------------------------------------------------------------------------------------------
# batches
# ------------------------------------------------------------------------------------------


def batch_cases(n=5):
    cases = [disk_case(96, 128, 10 + 3 * i, cy=30 + 5 * i, cx=40 + 8 * i) for i in range(n)]
    images = np.concatenate([c[0] for c in cases])
    lows = np.stack([c[1] for c in cases])
    highs = np.stack([c[2] for c in cases])
    return images, lows, highs


@pytest.mark.parametrize("workers", [1, 2])
def test_batch_equals_per_image(workers):
    images, lows, highs = batch_cases()
    params = {"focal_scope": "local", "merge_type": "multiply"}
    out = pp.pipeline_batch(images, lows, highs, keys=("merged", "bounds", "focal_points",
                                                       "result"),
                            workers=workers, chunksize=2, **params)
    assert set(out) == {"merged", "bounds", "focal_points", "result"}
    assert out["merged"].shape == (5, 96, 128)
    assert out["result"].shape == (5, 96, 128, 3)
    assert out["bounds"].shape == (5, 2)
    for i in range(5):
        ref = pp.pipeline(images[i], lows[i], highs[i], **params)
        np.testing.assert_array_equal(out["merged"][i], ref["merged"])
        np.testing.assert_array_equal(out["result"][i], ref["result"])
        assert tuple(out["bounds"][i]) == ref["bounds"]
        assert out["focal_points"][i] == ref["focal_points"]


def test_batch_defaults_and_errors():
    images, lows, highs = batch_cases(3)
    out = pp.pipeline_batch(list(images), list(lows), list(highs))
    assert list(out) == ["merged"]
    assert set(pp.pipeline_batch(images, lows, highs, keys=None)) == set(pp.PIPELINE_KEYS)
    with pytest.raises(ValueError, match="keys"):
        pp.pipeline_batch(images, lows, highs, keys=("refined",))
    with pytest.raises(ValueError, match="lows"):
        pp.pipeline_batch(images, lows[:2], highs)
    with pytest.raises(ValueError, match="workers"):
        pp.pipeline_batch(images, lows, highs, workers=-1)
    empty = pp.pipeline_batch(images[:0], lows[:0], highs[:0])
    assert len(empty["merged"]) == 0


def test_no_tensorflow_import():
    import subprocess

    code = ("import sys, hrcam.postprocessing, hrcam.plotting, hrcam.io_utils; "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
