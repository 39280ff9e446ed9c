"""Tests of hrcam.plotting: every figure has its panels, titles and data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from hrcam import plotting
from hrcam import postprocessing as pp


def disk_case(H=96, W=128, R=22):
    yy, xx = np.mgrid[0:H, 0:W]
    disk = np.hypot(yy - H / 2, xx - W / 2) <= R
    high = disk * (1 + 0.15 * np.sin(xx / 2.0) * np.sin(yy / 2.0))
    ly, lx = np.mgrid[0:H // 16, 0:W // 16]
    low = np.exp(-(((ly + 0.5) * 16 - H / 2) ** 2 + ((lx + 0.5) * 16 - W / 2) ** 2) / (2 * R ** 2))
    img = np.random.default_rng(0).integers(0, 256, (1, H, W, 3)).astype(np.uint8)
    return img, low, high


def titles(fig):
    return [ax.get_title() for ax in fig.axes]


# ------------------------------------------------------------------------------------------
# overlay and collage
# ------------------------------------------------------------------------------------------


def test_overlay_shape_dtype_and_effect():
    img = np.full((40, 60, 3), 128, np.uint8)
    cam = np.zeros((40, 60))
    cam[10:20, 20:30] = 1.0
    out = plotting.overlay(img, cam, alpha=0.5)
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    # where the CAM is high the overlay is red-ish (jet), elsewhere blue-ish
    hot, cold = out[15, 25].astype(int), out[35, 5].astype(int)
    assert hot[0] > hot[2] and cold[2] > cold[0]
    assert not np.array_equal(out[15, 25], img[15, 25])
    # alpha 0 gives back the image, alpha 1 the coloured map only
    np.testing.assert_array_equal(plotting.overlay(img, cam, alpha=0), img)
    full = plotting.overlay(img, cam, alpha=1)
    assert not np.array_equal(full[15, 25], full[35, 5])


def test_overlay_accepts_batches_floats_and_small_cams():
    img = np.random.default_rng(1).random((1, 64, 64, 3))          # floats in [0, 1]
    out = plotting.overlay(img, np.random.rand(4, 4), alpha=0.3, cmap="viridis")
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    gray = plotting.overlay(np.zeros((32, 48)), np.ones((2, 3)))
    assert gray.shape == (32, 48, 3)
    with pytest.raises(ValueError, match="alpha"):
        plotting.overlay(img, np.ones((4, 4)), alpha=2)
    with pytest.raises(ValueError, match="image"):
        plotting.overlay(np.zeros((4, 4, 5)), np.ones((4, 4)))


def test_to_rgb_uint8():
    assert plotting.to_rgb_uint8(np.ones((2, 2))).max() == 255      # [0, 1] floats scaled
    assert plotting.to_rgb_uint8(np.full((2, 2, 3), 200.0)).max() == 200
    assert plotting.to_rgb_uint8(np.zeros((1, 5, 6, 1))).shape == (5, 6, 3)


def test_collage_pairs_grid():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (5, 48, 64, 3)).astype(np.uint8)
    cams = rng.random((5, 48, 64))
    fig = plotting.collage(images, cams, ncols=3)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 10                     # image / CAM pairs only
    # first row holds 3 pairs left to right, each image then its CAM
    positions = [ax.get_position() for ax in fig.axes]
    assert positions[0].x0 < positions[1].x0 < positions[2].x0
    assert positions[0].y0 == pytest.approx(positions[5].y0)
    assert positions[6].y0 < positions[0].y0       # pair 4 starts the second row
    for ax in fig.axes:
        assert not ax.get_xticks().size and not ax.get_yticks().size
    shown = fig.axes[1].get_images()[0].get_array()
    np.testing.assert_allclose(shown, pp.normalize(cams[0]))
    np.testing.assert_array_equal(fig.axes[0].get_images()[0].get_array(), images[0])


def test_collage_titles_resizing_and_errors(tmp_path):
    images = [np.zeros((32, 32, 3), np.uint8)] * 3
    cams = [np.random.rand(2, 2)] * 3                # low-res maps are resized to the image
    fig = plotting.collage(images, cams, titles=["a", "b", "c"], path=tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 0
    assert [t for t in titles(fig) if t] == []
    assert [ax.get_title(loc="left") for ax in fig.axes[::2]] == ["a", "b", "c"]
    assert fig.axes[1].get_images()[0].get_array().shape == (32, 32)
    with pytest.raises(ValueError, match="refined CAMs"):
        plotting.collage(images, cams[:2])
    with pytest.raises(ValueError, match="titles"):
        plotting.collage(images, cams, titles=["a"])


# ------------------------------------------------------------------------------------------
# the pipeline figure
# ------------------------------------------------------------------------------------------


def test_pipeline_figure_has_every_step(tmp_path):
    img, low, high = disk_case()
    fig = plotting.pipeline(img, low, high, path=tmp_path / "p.png")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == len(plotting.PIPELINE_PANELS) == 12
    for panel, title in zip(plotting.PIPELINE_PANELS, titles(fig)):
        assert title.startswith(panel)
    assert (tmp_path / "p.png").stat().st_size > 10_000
    steps = pp.pipeline(img, low, high)
    by_title = dict(zip(plotting.PIPELINE_PANELS, fig.axes))
    # image panels show the data of the steps
    np.testing.assert_allclose(by_title["refined CAM (merged)"].get_images()[0].get_array(),
                               steps["merged"])
    np.testing.assert_array_equal(by_title["result"].get_images()[0].get_array(), steps["result"])
    # the histogram panel shows both bounds
    hist = by_title["edge histogram in ROI"]
    xs = sorted(line.get_xdata()[0] for line in hist.get_lines())
    np.testing.assert_allclose(xs, steps["bounds"])
    # the focal points panel marks every focal point
    offsets = by_title["focal points"].collections[0].get_offsets()
    assert len(offsets) == len(steps["focal_points"])
    # no ticks on image panels
    for name, ax in by_title.items():
        if name != "edge histogram in ROI":
            assert not ax.get_xticks().size, name


def test_pipeline_figure_with_params_and_precomputed_steps():
    img, low, high = disk_case()
    steps = pp.pipeline(img, low, high, focal_scope="local", merge_type="merge",
                        filter_type="threshold")
    fig = plotting.pipeline(img, low, high, steps=steps, focal_scope="local",
                            merge_type="merge", filter_type="threshold", title="my image")
    assert "local" in titles(fig)[5] and "multiply" in titles(fig)[10]
    assert "> 0.6" in titles(fig)[11]
    assert fig._suptitle.get_text() == "my image"
    with pytest.raises(ValueError, match="merge_alpha"):
        plotting.pipeline(img, low, high, merge_alpha=3)


def test_pipeline_figure_blank_cams():
    img, low, high = disk_case()
    fig = plotting.pipeline(img, np.zeros_like(low), np.zeros_like(high))
    assert len(fig.axes) == 12


# ------------------------------------------------------------------------------------------
# metric figures
# ------------------------------------------------------------------------------------------


def test_training_curves(tmp_path):
    history = pd.DataFrame({
        "epoch": range(5), "accuracy": np.linspace(0.2, 0.9, 5), "loss": np.linspace(2, 0.3, 5),
        "val_accuracy": np.linspace(0.1, 0.8, 5), "val_loss": np.linspace(2.2, 0.5, 5),
        "learning_rate": [1.0, 1.0, 0.3, 0.3, 0.1],
    })
    fig = plotting.training_curves(history, tmp_path / "h.png")
    assert (tmp_path / "h.png").is_file()
    assert titles(fig) == ["accuracy", "loss", "learning rate"]
    acc = fig.axes[0]
    assert [line.get_label() for line in acc.get_lines()] == ["train", "validation"]
    np.testing.assert_array_equal(acc.get_lines()[0].get_xdata(), [1, 2, 3, 4, 5])
    assert fig.axes[2].get_yscale() == "log"
    # from the CSVLogger file, full model (loss only, no validation)
    history[["epoch", "loss"]].to_csv(tmp_path / "history.csv", index=False)
    fig = plotting.training_curves(tmp_path / "history.csv")
    assert titles(fig) == ["loss"] and len(fig.axes[0].get_lines()) == 1
    with pytest.raises(ValueError):
        plotting.training_curves(pd.DataFrame({"epoch": [0, 1]}))


def test_confusion_matrix(tmp_path):
    cm = np.array([[8, 2, 0], [1, 9, 0], [0, 5, 5]])
    fig = plotting.confusion_matrix(cm, ["cat", "dog", "fox"], tmp_path / "cm.png")
    assert (tmp_path / "cm.png").is_file()
    ax = fig.axes[0]
    shown = ax.get_images()[0].get_array()
    np.testing.assert_allclose(shown, cm / cm.sum(axis=1, keepdims=True))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "fox"]
    assert len(ax.texts) == 9 and ax.texts[0].get_text() == "0.80"
    assert "0.733" in ax.get_title()                       # accuracy 22 / 30
    assert len(fig.axes) == 2                              # matrix + colour bar
    counts = plotting.confusion_matrix(cm, ["cat", "dog", "fox"], normalize=False)
    np.testing.assert_array_equal(counts.axes[0].get_images()[0].get_array(), cm)
    as_flag = plotting.confusion_matrix(cm, ["cat", "dog", "fox"], False)  # positional bool
    np.testing.assert_array_equal(as_flag.axes[0].get_images()[0].get_array(), cm)
    zero_row = plotting.confusion_matrix(np.array([[0, 0], [1, 1]]))
    np.testing.assert_allclose(zero_row.axes[0].get_images()[0].get_array(), [[0, 0], [.5, .5]])
    with pytest.raises(ValueError, match="square"):
        plotting.confusion_matrix(np.ones((2, 3)))
    with pytest.raises(ValueError, match="class_names"):
        plotting.confusion_matrix(cm, ["a"])


def test_localization_bars(tmp_path):
    table = {
        "refined": {"method": "refined", "PxAP": 0.71, "MaxBoxAccV2": 0.62, "top1_loc": 0.5},
        "low_res": {"method": "low_res", "PxAP": 0.55, "MaxBoxAccV2": 0.48, "top1_loc": 0.4},
        "center_gaussian": {"method": "center_gaussian", "PxAP": 0.3, "MaxBoxAccV2": None,
                            "top1_loc": None},
    }
    fig = plotting.localization_bars(table, tmp_path / "bars.png")
    assert (tmp_path / "bars.png").is_file()
    assert titles(fig) == ["PxAP", "MaxBoxAccV2", "top1 loc"]
    pxap = [p.get_height() for p in fig.axes[0].patches]
    assert pxap == [0.71, 0.55, 0.3]
    assert len(fig.axes[1].patches) == 2                   # missing value skipped
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list(table)
    df = pd.DataFrame(list(table.values()))
    fig = plotting.localization_bars(df, metrics=["PxAP"])
    assert titles(fig) == ["PxAP"]
    with pytest.raises(ValueError, match="method"):
        plotting.localization_bars(pd.DataFrame({"PxAP": [0.5]}))


def test_threshold_curves(tmp_path):
    t = np.linspace(0, 1, 11)
    rows = []
    for method, scale in (("refined", 1.0), ("low_res", 0.7)):
        for metric, values in (("box_acc_IoU50", scale * (1 - t)), ("pixel_precision", t),
                               ("pixel_recall", 1 - t)):
            rows += [{"method": method, "metric": metric, "threshold": float(a), "value": float(v)}
                     for a, v in zip(t, values)]
    fig = plotting.threshold_curves(rows, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").is_file()
    assert titles(fig) == ["box acc IoU50", "pixel precision", "pixel recall",
                           "pixel precision-recall"]
    for ax in fig.axes:
        assert len(ax.get_lines()) == 2
    np.testing.assert_allclose(fig.axes[0].get_lines()[1].get_ydata(), 0.7 * (1 - t))
    fig = plotting.threshold_curves(pd.DataFrame(rows).query("metric == 'box_acc_IoU50'"))
    assert titles(fig) == ["box acc IoU50"]
    with pytest.raises(ValueError, match="columns"):
        plotting.threshold_curves(pd.DataFrame({"x": [1]}))


def test_classification_comparison_draws_half_and_full_and_says_if_identical():
    from hrcam.report import classification_table

    half = {"top1_accuracy": 0.9, "macro_f1": 0.8, "num_images": 30}
    same = plotting.classification_comparison(classification_table(half, dict(half)))
    ax = same.axes[0]
    assert "identical" in ax.get_title()
    assert len(ax.patches) == 4  # two scores (num_images is not a score) x half and full
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"half model", "full model"}
    differing = plotting.classification_comparison(
        classification_table(half, {**half, "macro_f1": 0.7}))
    assert "DIFFERENT" in differing.axes[0].get_title()
    with pytest.raises(ValueError, match="metric"):
        plotting.classification_comparison([{"half": 1.0, "full": 1.0}])
