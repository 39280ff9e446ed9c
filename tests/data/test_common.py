"""The generated dataset, the readers and custom folder datasets."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from hrcam import data
from hrcam.data import synthetic


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    data.generate_synthetic(out, classes=4, per_class=10, im_size=32, test_fraction=0.2, seed=3)
    return out


def test_layout_and_class_balance(generated):
    assert (generated / "classes.txt").read_text().splitlines() == [
        "disk disk", "square square", "star star", "triangle triangle"]
    paths, labels, class_ids = data.list_images(generated, "train")
    assert class_ids == ["disk", "square", "star", "triangle"]
    assert np.bincount(labels).tolist() == [8, 8, 8, 8]
    test_paths, test_labels, _ = data.list_images(generated, "test")
    assert np.bincount(test_labels).tolist() == [2, 2, 2, 2]
    for p in paths[:5] + test_paths[:5]:
        with Image.open(p) as im:
            assert im.size == (32, 32) and im.mode == "RGB" and im.format == "JPEG"
    summary = json.loads((generated / "summary.json").read_text())
    assert summary["totals"] == {"train": 32, "test": 8}
    assert summary["counts"]["disk"] == {"train": 8, "test": 2}
    assert data.read_classes(generated)[0] == ("disk", "disk")


def test_masks_and_boxes_agree(generated):
    ann = data.load_annotations(generated)
    assert len(ann) == 40
    with open(generated / "boxes.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 40
    for rel, entry in ann.items():
        mask = data.load_mask(entry["mask"])
        assert mask.shape == (32, 32) and mask.any()
        with Image.open(entry["mask"]) as m:
            assert set(np.unique(np.asarray(m)).tolist()) <= {0, 255}
        assert entry["boxes"].shape == (1, 4)
        assert tuple(entry["boxes"][0]) == data.mask_box(mask)
        assert entry["class"] == rel.split("/")[1]
        # object size roughly 20-50% of the side (the box of a rotated shape may be smaller)
        x0, y0, x1, y1 = entry["boxes"][0]
        w, h = x1 - x0, y1 - y0
        assert 0.1 * 32 <= max(w, h) <= 0.55 * 32
    test_only = data.load_annotations(generated, "test")
    assert len(test_only) == 8 and all(k.startswith("test/") for k in test_only)


def test_deterministic_by_seed(generated, tmp_path):
    again = tmp_path / "again"
    data.generate_synthetic(again, classes=4, per_class=10, im_size=32, test_fraction=0.2, seed=3)
    files = sorted(p.relative_to(generated) for p in generated.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        if rel.name != "summary.json":
            assert (generated / rel).read_bytes() == (again / rel).read_bytes(), rel
    other = tmp_path / "other"
    data.generate_synthetic(other, classes=4, per_class=10, im_size=32, test_fraction=0.2, seed=4)
    a = (generated / "boxes.csv").read_text()
    assert a != (other / "boxes.csv").read_text()


def test_class_images_do_not_depend_on_class_count(tmp_path):
    rgb_a, mask_a = synthetic.render("ring", np.random.default_rng([0, 5, 3]), 32)
    data.generate_synthetic(tmp_path / "s", classes=["ring", "cross"], per_class=4, im_size=32)
    paths, labels, ids = data.list_images(tmp_path / "s", "train")
    assert ids == ["cross", "ring"]
    rgb_b, mask_b = synthetic.render("ring", np.random.default_rng([0, 5, 3]), 32)
    assert np.array_equal(rgb_a, rgb_b) and np.array_equal(mask_a, mask_b)


def test_every_shape_renders_and_differs():
    masks = {}
    for k, shape in enumerate(synthetic.SHAPES):
        rgb, mask = synthetic.render(shape, np.random.default_rng(1), 64)
        assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
        assert 0.02 < mask.mean() < 0.5
        masks[shape] = mask
    # same rng: same pose, so different shapes give different masks
    assert len({m.tobytes() for m in masks.values()}) == len(synthetic.SHAPES)


def test_synthetic_argument_errors(tmp_path):
    with pytest.raises(ValueError):
        data.generate_synthetic(tmp_path, classes=1)
    with pytest.raises(ValueError):
        data.generate_synthetic(tmp_path, classes=["disk", "blob"])
    with pytest.raises(ValueError):
        data.generate_synthetic(tmp_path, test_fraction=1.5)


def test_readers_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        data.read_classes(tmp_path)
    with pytest.raises(FileNotFoundError):
        data.list_images(tmp_path, "train")
    assert data.load_annotations(tmp_path) == {}


def test_assign_split_properties():
    names = [f"img_{i}" for i in range(100)]
    a = data.assign_split(names, "c", 0.25, 0)
    assert sum(v == "test" for v in a.values()) == 25
    assert data.assign_split(list(reversed(names)), "c", 0.25, 0) == a
    assert data.assign_split(names, "c", 0.25, 1) != a
    assert data.assign_split(names, "d", 0.25, 0) != a
    assert set(data.assign_split(["x", "y"], "c", 0.01, 0).values()) == {"train", "test"}


def test_convert_image_modes_and_sizes():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (300, 500, 3), dtype=np.uint8)
    for mode, fmt in [("RGB", "JPEG"), ("CMYK", "JPEG"), ("L", "JPEG"), ("RGBA", "PNG"),
                      ("P", "PNG"), ("LA", "PNG"), ("I;16", "PNG")]:
        buf = io.BytesIO()
        im = Image.fromarray(arr).convert(mode) if mode != "I;16" else \
            Image.fromarray(arr[..., 0].astype(np.uint16) * 256)
        im.save(buf, format=fmt)
        for resize in ("stretch", "center-crop"):
            out, w, h, _ = data.convert_image(buf.getvalue(), 64, resize)
            with Image.open(io.BytesIO(out)) as res:
                assert res.mode == "RGB" and res.size == (64, 64) and res.format == "JPEG"
            assert (w, h) == (500, 300)
    out, *_ = data.convert_image(buf.getvalue(), 48, fmt="png")
    assert Image.open(io.BytesIO(out)).format == "PNG"


def test_reduced_decoding_close_to_full_decoding():
    """The draft (DCT-scaled) decode must give nearly the same picture as a full decode."""
    yy, xx = np.mgrid[0:600, 0:800]
    arr = np.stack([127 + 120 * np.sin(xx / 23.0), 127 + 120 * np.cos(yy / 31.0),
                    127 + 120 * np.sin((xx + yy) / 41.0)], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    fast, *_ = data.convert_image(buf.getvalue(), 64)
    full_buf = io.BytesIO()
    Image.open(io.BytesIO(buf.getvalue())).convert("RGB").resize(
        (64, 64), Image.Resampling.LANCZOS).save(full_buf, format="JPEG", quality=95)
    full = Image.open(full_buf)
    diff = np.abs(np.asarray(Image.open(io.BytesIO(fast)), dtype=float)
                  - np.asarray(full, dtype=float))
    assert diff.mean() < 2.0


# ----------------------------------------------------------------------------------------------
# Custom folders
# ----------------------------------------------------------------------------------------------


def _write_image(path, rng, size=(40, 30), fmt="JPEG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
        path, format=fmt)


def test_folder_unsplit_tree(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    for cls in ("cat", "dog", "eel"):
        for i in range(10):
            _write_image(src / cls / f"{i}.jpg", rng)
    _write_image(src / "dog" / "0.png", rng, fmt="PNG")  # same stem as 0.jpg
    (src / "eel" / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    (src / "eel" / "notes.txt").write_text("hello")
    names = tmp_path / "names.txt"
    names.write_text("cat Felis catus\n")
    out = tmp_path / "out"
    summary = data.prepare_folder(src, out, class_names=names, im_size=32, test_fraction=0.2,
                                  workers=2)
    assert summary["counts"] == {"cat": {"train": 8, "test": 2}, "dog": {"train": 9, "test": 2},
                                 "eel": {"train": 8, "test": 2}}
    assert summary["num_skipped"] == 2 and summary["num_sources"] == 33
    assert (out / "classes.txt").read_text() == "cat Felis catus\ndog dog\neel eel\n"
    assert len(data.list_images(out, "test")[0]) == 6
    again = tmp_path / "again"
    data.prepare_folder(src, again, im_size=32, test_fraction=0.2, workers=1)
    assert (again / "manifest.csv").read_text() == (out / "manifest.csv").read_text()


def test_folder_presplit_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    src = tmp_path / "src"
    for sp, n in (("train", 4), ("test", 2)):
        for cls in ("a", "b"):
            for i in range(n):
                _write_image(src / sp / cls / f"{i}.jpg", rng, size=(64, 48))
    out = tmp_path / "out"
    summary = data.prepare_folder(src, out, im_size=32, resize="center-crop")
    assert summary["counts"] == {"a": {"train": 4, "test": 2}, "b": {"train": 4, "test": 2}}

    _write_image(src / "train" / "c" / "0.jpg", rng)
    with pytest.raises(ValueError, match="same classes"):
        data.prepare_folder(src, tmp_path / "o1", im_size=32)
    (src / "test" / "c").mkdir()
    with pytest.raises(ValueError, match="empty class"):
        data.prepare_folder(src, tmp_path / "o2", im_size=32)
    one = tmp_path / "one"
    _write_image(one / "only" / "0.jpg", rng)
    with pytest.raises(ValueError, match="at least 2"):
        data.prepare_folder(one, tmp_path / "o3", im_size=32)
    with pytest.raises(FileNotFoundError):
        data.prepare_folder(tmp_path / "nope", tmp_path / "o4", im_size=32)
    flat = tmp_path / "flat"
    _write_image(flat / "0.jpg", rng)
    with pytest.raises(ValueError, match="sub-folder per class"):
        data.prepare_folder(flat, tmp_path / "o5", im_size=32)


def test_cli_synthetic(tmp_path):
    from hrcam import cli

    out = tmp_path / "syn"
    assert cli.main(["prepare", "synthetic", "--out", str(out), "--classes", "disk,ring",
                     "--per-class", "5", "--im-size", "32", "--test-fraction", "0.4"]) == 0
    assert data.read_classes(out) == [("disk", "disk"), ("ring", "ring")]
    assert len(data.list_images(out, "test")[0]) == 4
    assert cli.main(["prepare", "synthetic", "--out", str(out), "--classes", "1"]) == 2
