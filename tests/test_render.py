"""Batch CAM rendering (`hrcam.render.render_cams`, `hrcam cams`) on a tiny model and dataset
(the shared `tiny_run` fixture)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from hrcam import render

IM = 32  # image side of the shared `tiny_run` fixture (conftest.TINY_IM)


def test_select_images_round_robin_and_classes():
    paths = [f"p{i}" for i in range(7)]
    labels = [0, 0, 0, 1, 1, 2, 2]
    ids, names = ["a", "b", "c"], ["ant", "bee", "cat"]
    assert render.select_images(paths, labels, ids, names) == list(range(7))
    assert render.select_images(paths, labels, ids, names, limit=4) == [0, 1, 3, 5]
    assert render.select_images(paths, labels, ids, names, classes=["bee", "c"]) == [3, 4, 5, 6]
    assert render.select_images(paths, labels, ids, names, classes=["0"], limit=2) == [0, 1]
    with pytest.raises(ValueError, match="unknown class"):
        render.select_images(paths, labels, ids, names, classes=["dog"])


def test_render_cams_outputs(tiny_run):
    out = tiny_run["root"] / "cams"
    summary = render.render_cams(tiny_run["full"], tiny_run["data"], "test", out, limit=4, workers=1,
                                 batch_size=3, progress=False)
    assert summary["num_images"] == 4
    with open(out / "cams.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert len({r["label"] for r in rows}) == 3  # round-robin: every class shown
    for row in rows:
        for key in ("npz", "figure", "overlay"):
            assert (out / row[key]).is_file(), row[key]
        with np.load(out / row["npz"]) as z:
            assert z["low"].shape == (IM // 16, IM // 16)
            assert z["high"].shape == (IM, IM)
            assert z["refined"].shape == (IM, IM)
            assert z["probabilities"].shape == (3,)
            assert 0 <= z["refined"].min() and z["refined"].max() <= 1
            assert int(z["prediction"]) == int(np.argmax(z["probabilities"]))
            assert int(z["prediction"]) == int(row["prediction"])
            assert int(z["label"]) == int(row["label"])
            assert int(z["cam_class"]) == int(z["prediction"])
    npz = sorted((out / "arrays").rglob("*.npz"))
    assert len(npz) == 4 and len(list((out / "figures").rglob("*.png"))) == 4
    assert len(list((out / "overlays").rglob("*.png"))) == 4
    assert (out / "collage.png").stat().st_size > 0
    # the stored CAMs are the model's: same as FullModel.generate_cams on the same decoded image
    import tensorflow as tf

    from hrcam.cams import FullModel

    fm = FullModel(tiny_run["full"])
    raw = tf.io.read_file(str(tiny_run["data"] / rows[0]["relpath"]))
    x = tf.io.decode_image(raw, channels=3, expand_animations=False).numpy().astype(np.float32)
    high, low, pred = fm.generate_cams(x)
    with np.load(out / rows[0]["npz"]) as z:
        np.testing.assert_allclose(z["low"], low, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(z["high"], high, rtol=1e-4, atol=1e-4)
        assert int(z["prediction"]) == pred


def test_cli_cams_classes_limit_and_workers(tiny_run, capsys):
    from hrcam.cli import main

    out = tiny_run["root"] / "cams_cli"
    assert main(["cams", "--model", str(tiny_run["full"]), "--data", str(tiny_run["data"]), "--out",
                 str(out), "--classes", "disk", "square", "--limit", "3", "--workers", "2",
                 "--cam-class", "label", "--no-figures", "--no-progress"]) == 0
    assert "rendered 3" in capsys.readouterr().out
    with open(out / "cams.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    assert {r["label_name"] for r in rows} <= {"disk", "square"}
    assert not (out / "figures").exists()
    assert len(list((out / "overlays").rglob("*.png"))) == 3
    for row in rows:
        with np.load(out / row["npz"]) as z:
            assert int(z["cam_class"]) == int(z["label"])
    assert (out / "collage.png").is_file()
