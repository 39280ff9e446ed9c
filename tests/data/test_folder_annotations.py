"""`prepare folder` with the user's own boxes (CSV) and masks (PNG folder), and class ids."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hrcam import cli, data

W, H, S = 40, 20, 80  # source images 40x20 -> 80x80: stretch scales x by 2 and y by 4
#: the object of every annotated image: columns 10..20 and rows 5..14 (inclusive indices)
OBJECT = (10, 5, 20, 14)


def _image(path, size=(W, H), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def _mask(path, mode="L", size=(W, H), box=OBJECT):
    """A mask of ``box`` (inclusive) in ``mode``; only 'non-zero = object' is promised."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size[1], size[0]), dtype=np.uint8)
    arr[box[1]:box[3] + 1, box[0]:box[2] + 1] = 1
    if mode == "RGB":
        Image.fromarray(np.stack([arr * 0, arr * 0, arr * 7], -1)).save(path)
    elif mode == "P":
        im = Image.frombytes("P", size, arr.tobytes())
        im.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
        im.save(path)
    else:
        Image.fromarray(arr * 255 if mode == "L" else arr).save(path)


def _csv(path, rows, header="image,xmin,ymin,xmax,ymax"):
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def _manifest(out):
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def source(tmp_path):
    """Two classes, one with whitespace in its name; images with box + mask, box only, mask
    only, and neither."""
    src = tmp_path / "src"
    masks = tmp_path / "masks"
    for i in range(4):
        _image(src / "big  cat" / f"{i}.jpg", seed=i)
        _image(src / "dog" / f"{i}.png", seed=10 + i)
    _mask(masks / "big  cat" / "0.png", "L")          # box + mask
    _mask(masks / "dog" / "0.png", "P")               # box + mask (palette)
    _mask(masks / "dog" / "2.png", "RGB")             # mask only (colour)
    boxes = _csv(tmp_path / "boxes.csv", [
        ("big  cat/0.jpg", *OBJECT), ("dog/0.png", *OBJECT),
        ("big  cat/1.jpg", *OBJECT), ("big  cat/1.jpg", 12, 1, 15, 3),  # box only, two
    ])
    return src, boxes, masks


@pytest.mark.parametrize("resize, expected", [
    # continuous [10, 21) x [5, 15) -> stretch x2, y4
    ("stretch", (20.0, 20.0, 42.0, 60.0)),
    # centre crop: x in [10, 30), side 20 -> scale 4, x shifted by -10
    ("center-crop", (0.0, 20.0, 44.0, 60.0)),
])
def test_boxes_and_masks_follow_the_image(source, tmp_path, resize, expected):
    src, boxes, masks = source
    out = tmp_path / "out"
    summary = data.prepare_folder(src, out, im_size=S, resize=resize, test_fraction=0.5,
                                  boxes=boxes, masks=masks)
    # the class id replaces whitespace runs with "_", the human name stays the folder name
    assert (out / "classes.txt").read_text() == "big_cat big  cat\ndog dog\n"
    assert data.read_classes(out) == [("big_cat", "big  cat"), ("dog", "dog")]
    rows = {r["source"]: r for r in _manifest(out) if r["status"] == "ok"}
    assert len(rows) == 8 and all(r["class"] in ("big_cat", "dog") for r in rows.values())
    ann = data.load_annotations(out)  # what `hrcam evaluate localization` reads
    cat0, dog0 = rows["big  cat/0.jpg"]["output"], rows["dog/0.png"]["output"]
    cat1, dog2 = rows["big  cat/1.jpg"]["output"], rows["dog/2.png"]["output"]
    assert sorted(ann) == sorted([cat0, dog0, cat1, dog2])  # images without anything: absent
    for image in (cat0, dog0):
        assert ann[image]["boxes"].tolist() == [list(expected)]
        mask = data.load_mask(ann[image]["mask"])
        assert mask.shape == (S, S)
        assert data.mask_box(mask) == expected  # mask and box stay aligned through the resize
        with Image.open(ann[image]["mask"]) as m:
            assert set(np.unique(np.asarray(m)).tolist()) == {0, 255}
    assert ann[cat0]["mask"].endswith(f"masks/{cat0.rsplit('.', 1)[0]}.png")
    assert ann[cat1]["mask"] is None and ann[cat1]["boxes"].shape == (2, 4)
    assert data.mask_box(data.load_mask(ann[dog2]["mask"])) == expected  # colour mask
    assert ann[dog2]["boxes"].tolist() == [list(expected)]  # from the mask (no box row)
    for image in rows.values():
        with Image.open(out / image["output"]) as im:
            assert im.size == (S, S)
    assert summary["annotations"] == {
        "boxes_csv": str(boxes), "masks_dir": str(masks), "images": 8, "with_boxes": 3,
        "with_masks": 3, "with_both": 2, "without": 4, "boxes": 4, "bad_rows": 0,
        "bad_rows_by_reason": {}, "bad": []}
    assert json.loads((out / "summary.json").read_text())["annotations"]["with_masks"] == 3
    assert len(data.list_images(out, "train")[0]) + len(data.list_images(out, "test")[0]) == 8


def test_box_coordinates_keep_full_precision(source, tmp_path):
    src, boxes, masks = source
    out = tmp_path / "out"
    data.prepare_folder(src, out, im_size=30, boxes=boxes)  # x scale 0.75, y scale 1.5
    with open(out / "boxes.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["image"].startswith(("train/dog", "test/dog"))]
    assert [float(rows[0][k]) for k in ("xmin", "ymin", "xmax", "ymax")] == \
        [10 * 0.75, 5 * 1.5, 21 * 0.75, 15 * 1.5]
    assert rows[0]["xmax"] == "15.75"  # not rounded to 2 decimals, not truncated


def test_bad_rows_are_recorded_and_never_fatal(tmp_path):
    src = tmp_path / "src"
    masks = tmp_path / "masks"
    for cls in ("a", "b"):
        for i in range(3):
            _image(src / cls / f"{i}.jpg", seed=i)
    _image(src / "a" / "wide.jpg", size=(60, 20))
    (src / "b" / "broken.jpg").write_bytes(b"not a jpeg")
    _mask(masks / "a" / "0.png", size=(W + 1, H))             # another size than its image
    (masks / "a" / "1.png").write_bytes(b"\x89PNG garbage")     # unreadable
    _mask(masks / "a" / "ghost.png")                            # no such image
    _mask(masks / "b" / "broken.png")                           # its image is undecodable
    _mask(masks / "b" / "0.png")                                # fine
    boxes = _csv(tmp_path / "boxes.csv", [
        ("a/0.jpg", *OBJECT),               # fine (its mask is bad, the box stays)
        ("a/nope.jpg", *OBJECT),            # unknown image
        ("a/1.jpg", 1, 2, "x", 4),          # non-numeric
        ("a/1.jpg", 1, 2, "nan", 4),        # non-numeric
        ("a/2.jpg", 0, 0, W, H - 1),        # xmax = width: outside (inclusive indices)
        ("a/2.jpg", -1, 0, 5, 5),           # outside
        ("b/1.jpg", 8, 2, 4, 6),            # xmin > xmax
        ("b/broken.jpg", *OBJECT),          # its image is undecodable
        ("a/wide.jpg", 0, 0, 9, 9),         # inside the image, outside the 20x20 centre crop
        ("a/wide.jpg", 15, 0, 25, 9),       # partly inside the crop: kept, clipped
    ])
    out = tmp_path / "out"
    summary = data.prepare_folder(src, out, im_size=20, resize="center-crop", boxes=boxes,
                                  masks=masks)
    ann = summary["annotations"]
    assert ann["bad_rows_by_reason"] == {
        "box outside the centre crop": 1, "box outside the image": 2, "image skipped": 2,
        "mask size differs from the image": 1, "mask without image": 1,
        "non-numeric value": 2, "unknown image": 1, "unreadable mask": 1,
        "xmin > xmax or ymin > ymax": 1}
    assert ann["bad_rows"] == 12 == len(ann["bad"])
    assert ann["boxes"] == 2 and ann["with_boxes"] == 2 and ann["with_masks"] == 1
    bad = {r["source"]: r for r in _manifest(out) if r["status"] == "skipped"}
    assert bad[f"{boxes}:3"]["reason"].startswith("unknown image")
    assert bad[f"{boxes}:6"]["reason"].startswith("box outside the image")
    assert "0..39" in bad[f"{boxes}:6"]["reason"]
    assert bad[f"{boxes}:6"]["output"].endswith("/a/2.jpg")
    assert bad[str(masks / "a" / "0.png")]["reason"].startswith("mask size differs")
    assert bad[str(masks / "a" / "ghost.png")]["reason"].startswith("mask without image")
    assert bad[str(masks / "b" / "broken.png")]["reason"].startswith("image skipped")
    assert bad["b/broken.jpg"]["reason"].startswith("undecodable")  # the image itself
    assert summary["num_skipped"] == 1 and summary["num_images"] == 7  # images only
    kept = data.load_annotations(out)
    assert sorted(kept) == sorted(r["output"] for r in _manifest(out)
                                  if r["source"] in ("a/0.jpg", "a/wide.jpg", "b/0.jpg"))


@pytest.mark.parametrize("header, match", [
    ("image,x0,y0,x1,y1", "missing column.*xmin"),
    ("", "missing column"),
])
def test_bad_csv_or_masks_folder_is_an_error_before_anything_is_written(source, tmp_path,
                                                                        capsys, header, match):
    src, _, masks = source
    bad = _csv(tmp_path / "bad.csv", [], header=header)
    out = tmp_path / "new" / "out"
    with pytest.raises(ValueError, match=match):
        data.prepare_folder(src, out, boxes=bad)
    with pytest.raises(FileNotFoundError, match="--masks"):
        data.prepare_folder(src, out, masks=tmp_path / "no_masks")
    assert cli.main(["prepare", "folder", "--src", str(src), "--out", str(out),
                     "--boxes", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "--boxes" in err and "image,xmin,ymin,xmax,ymax" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists()


def test_class_ids_from_folder_names(tmp_path):
    src = tmp_path / "src"
    for cls in ("red fox", "red_fox", "owl"):
        _image(src / cls / "0.jpg")
        _image(src / cls / "1.jpg")
    with pytest.raises(ValueError, match="'red fox' and 'red_fox' both become the class id"):
        data.prepare_folder(src, tmp_path / "out", im_size=16)
    (src / "red_fox" / "0.jpg").unlink()
    (src / "red_fox" / "1.jpg").unlink()
    (src / "red_fox").rmdir()
    names = tmp_path / "names.txt"
    names.write_text("red_fox Vulpes vulpes\n")
    out = tmp_path / "out"
    data.prepare_folder(src, out, im_size=16, class_names=names)
    assert data.read_classes(out) == [("owl", "owl"), ("red_fox", "Vulpes vulpes")]
    assert sorted(p.name for p in (out / "train").iterdir()) == ["owl", "red_fox"]
    _, labels, ids = data.list_images(out, "train")
    assert ids == ["owl", "red_fox"] and sorted(set(labels)) == [0, 1]


def test_file_names_that_are_not_utf8(tmp_path):
    src = tmp_path / "src"
    for cls in ("a", "b"):
        for i in range(2):
            _image(src / cls / f"{i}.jpg")
    _image(Path(os.fsdecode(os.path.join(os.fsencode(src / "a"), b"odd\xff.jpg"))))
    out = tmp_path / "out"
    summary = data.prepare_folder(src, out, im_size=16)
    assert summary["num_images"] == 4
    assert summary["skipped"] == [{"source": "a/odd\\xff.jpg", "class": "a",
                                   "reason": "file name is not valid UTF-8; rename it"}]
    odd = Path(os.fsdecode(os.path.join(os.fsencode(src), b"c\xfe")))
    _image(odd / "0.jpg")
    with pytest.raises(ValueError, match=r"class folder 'c\\udcfe': its name is not valid UTF-8"):
        data.prepare_folder(src, tmp_path / "out2", im_size=16)


def test_cli_boxes_and_masks_with_two_workers(source, tmp_path):
    src, boxes, masks = source
    out = tmp_path / "cli"
    assert cli.main(["prepare", "folder", "--src", str(src), "--out", str(out), "--boxes",
                     str(boxes), "--masks", str(masks), "--im-size", str(S), "--workers",
                     "2"]) == 0
    reference = tmp_path / "lib"
    data.prepare_folder(src, reference, im_size=S, boxes=boxes, masks=masks, workers=1)
    assert (out / "boxes.csv").read_text() == (reference / "boxes.csv").read_text()
    assert len(data.load_annotations(out)) == 4
    assert sorted(p.relative_to(out) for p in (out / "masks").rglob("*.png")) == \
        sorted(p.relative_to(reference) for p in (reference / "masks").rglob("*.png"))
