"""ImageNet preparation on miniature ILSVRC-style archives built inside the tests."""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hrcam import data
from hrcam.data import imagenet

WNIDS = ["n00000001", "n00000002", "n00000003"]
IM = 32


def _jpeg(rng, mode="RGB", size=(40, 30), fmt="JPEG") -> bytes:
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    im = Image.fromarray(arr).convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def class_files(wnid: str, index: int) -> dict[str, bytes]:
    """The files of one class; the first class holds every kind of odd file."""
    rng = np.random.default_rng(index)
    files = {f"{wnid}_{i}.JPEG": _jpeg(rng, size=(40 + i, 30 + (i % 3))) for i in range(10 + index)}
    if index == 0:
        files[f"{wnid}_cmyk.JPEG"] = _jpeg(rng, "CMYK")
        files[f"{wnid}_gray.JPEG"] = _jpeg(rng, "L")
        files[f"{wnid}_png.JPEG"] = _jpeg(rng, "RGBA", fmt="PNG")
        files[f"{wnid}_palette.JPEG"] = _jpeg(rng, "P", fmt="PNG")
        good = _jpeg(rng, size=(120, 90))
        files[f"{wnid}_trunc.JPEG"] = good[: len(good) // 2]
        files[f"{wnid}_zero.JPEG"] = b""
        files[f"{wnid}_junk.JPEG"] = b"this is not an image at all" * 10
    return files


BAD = {"n00000001_trunc.JPEG", "n00000001_zero.JPEG", "n00000001_junk.JPEG"}


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ilsvrc")
    path = root / "ILSVRC2012_img_train.tar"
    with tarfile.open(path, "w") as outer:
        for k, wnid in enumerate(WNIDS):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as inner:
                for name, payload in class_files(wnid, k).items():
                    _add(inner, name, payload)
            _add(outer, f"{wnid}.tar", buf.getvalue())
    return path


@pytest.fixture(scope="module")
def prepared(archive, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    data.prepare_imagenet(out, train_tar=archive, num_classes=3, im_size=IM, test_fraction=0.3,
                          seed=0, workers=1)
    return out


def _manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def _tree_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes()
            for sp in ("train", "test") for p in sorted((out / sp).rglob("*")) if p.is_file()}


def test_outputs_rgb_at_size_and_manifest_complete(prepared):
    rows = _manifest(prepared)
    expected = {f"{w}.tar/{n}" for k, w in enumerate(WNIDS) for n in class_files(w, k)}
    assert {r["source"] for r in rows} == expected
    for r in rows:
        name = r["source"].split("/", 1)[1]
        if name in BAD:
            assert r["status"] == "skipped" and r["reason"] and r["output"] == ""
        else:
            assert r["status"] == "ok", r
            with Image.open(prepared / r["output"]) as im:
                assert im.mode == "RGB" and im.size == (IM, IM) and im.format == "JPEG"
            assert r["output"].startswith(f"{r['split']}/{r['class']}/")
    reasons = {r["source"].split("/", 1)[1]: r["reason"] for r in rows if r["status"] != "ok"}
    assert "empty" in reasons["n00000001_zero.JPEG"]
    assert "truncated" in reasons["n00000001_trunc.JPEG"].lower()
    assert (prepared / "classes.txt").read_text().split("\n")[0] == "n00000001 n00000001"
    summary = json.loads((prepared / "summary.json").read_text())
    assert summary["num_sources"] == len(expected)
    assert summary["num_skipped"] == len(BAD)
    assert summary["parameters"]["im_size"] == IM
    assert not (prepared / ".tmp").exists()


def test_split_is_stratified(prepared):
    rows = [r for r in _manifest(prepared) if r["status"] == "ok"]
    for wnid in WNIDS:
        mine = [r for r in rows if r["class"] == wnid]
        n_test = sum(r["split"] == "test" for r in mine)
        assert n_test == round(len(mine) * 0.3)
        assert len(os.listdir(prepared / "test" / wnid)) == n_test
        assert len(os.listdir(prepared / "train" / wnid)) == len(mine) - n_test


def test_same_result_with_two_workers_and_per_class_jobs(archive, prepared, tmp_path):
    out2 = tmp_path / "two_workers"
    data.prepare_imagenet(out2, train_tar=archive, num_classes=3, im_size=IM, test_fraction=0.3,
                          seed=0, workers=2)
    assert _manifest(out2) == _manifest(prepared)
    assert _tree_bytes(out2) == _tree_bytes(prepared)
    out3 = tmp_path / "per_class"
    for wnid in reversed(WNIDS):
        assert data.prepare_imagenet(out3, train_tar=archive, num_classes=3, im_size=IM,
                                     test_fraction=0.3, seed=0, wnids=[wnid],
                                     merge=False) is None
        assert (out3 / "parts" / f"{wnid}.csv").is_file()
    assert not (out3 / "manifest.csv").exists()
    data.merge_imagenet_parts(out3)
    assert _manifest(out3) == _manifest(prepared)
    assert _tree_bytes(out3) == _tree_bytes(prepared)


def test_other_seed_changes_split(archive, prepared, tmp_path):
    out = tmp_path / "seed1"
    data.prepare_imagenet(out, train_tar=archive, num_classes=3, im_size=IM, test_fraction=0.3,
                          seed=1)
    a = {r["source"]: r["split"] for r in _manifest(prepared)}
    b = {r["source"]: r["split"] for r in _manifest(out)}
    assert a != b


def test_rerun_does_nothing_and_interrupted_class_is_redone(archive, tmp_path, monkeypatch):
    out = tmp_path / "resume"
    kw = dict(train_tar=archive, num_classes=3, im_size=IM, test_fraction=0.3, seed=0)
    data.prepare_imagenet(out, **kw)
    reference = _tree_bytes(out)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()
              and p.parent.name != "parts" and p.name not in ("manifest.csv", "summary.json",
                                                                 "classes.txt")}

    calls = []
    real = imagenet.TrainSource.iter_class
    monkeypatch.setattr(imagenet.TrainSource, "iter_class",
                        lambda self, w: (calls.append(w), real(self, w))[1])
    data.prepare_imagenet(out, **kw)
    assert calls == []
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # simulate an interruption in the middle of class 2: marker missing, temp dir left,
    # part of the output gone
    victim = WNIDS[1]
    (out / "parts" / f"{victim}.csv").unlink()
    (out / ".tmp" / victim / "flat").mkdir(parents=True)
    (out / ".tmp" / victim / "flat" / "half.jpg").write_bytes(b"partial")
    for p in list((out / "train" / victim).iterdir())[:3]:
        p.unlink()
    data.prepare_imagenet(out, **kw)
    assert calls == [victim]
    assert _tree_bytes(out) == reference
    assert not (out / ".tmp").exists()


def test_parameters_are_pinned(archive, prepared):
    with pytest.raises(ValueError, match="other parameters"):
        data.prepare_imagenet(prepared, train_tar=archive, num_classes=3, im_size=IM * 2,
                              test_fraction=0.3)


def test_extracted_trees_match_the_archive(archive, prepared, tmp_path):
    folders = tmp_path / "train_folders"
    tars = tmp_path / "train_tars"
    tars.mkdir()
    for k, wnid in enumerate(WNIDS):
        (folders / wnid).mkdir(parents=True)
        for name, payload in class_files(wnid, k).items():
            (folders / wnid / name).write_bytes(payload)
    with tarfile.open(archive) as outer:
        outer.extractall(tars, filter="data")
    for src in (folders, tars):
        out = tmp_path / f"out_{src.name}"
        data.prepare_imagenet(out, train_dir=src, num_classes=3, im_size=IM, test_fraction=0.3)
        assert _tree_bytes(out) == _tree_bytes(prepared)
        assert [r["split"] for r in _manifest(out)] == [r["split"] for r in _manifest(prepared)]


def test_synsets_and_names(archive, tmp_path):
    synsets = tmp_path / "synsets.txt"
    synsets.write_text("n00000003 third thing\nn00000001\n")
    names = tmp_path / "LOC_synset_mapping.txt"
    names.write_text("n00000001 first, one\nn00000002 second\n")
    out = tmp_path / "out"
    summary = data.prepare_imagenet(out, train_tar=archive, synsets=synsets, class_names=names,
                                    im_size=IM)
    assert summary["num_classes"] == 2
    assert (out / "classes.txt").read_text() == "n00000001 first, one\nn00000003 third thing\n"
    assert not (out / "train" / "n00000002").exists()


def test_clear_errors(archive, tmp_path):
    synsets = tmp_path / "synsets.txt"
    synsets.write_text("n00000001\nn09999999 missing\n")
    with pytest.raises(ValueError, match="n09999999"):
        data.prepare_imagenet(tmp_path / "o1", train_tar=archive, synsets=synsets, im_size=IM)
    with pytest.raises(FileNotFoundError, match="ILSVRC2012_img_train.tar"):
        data.prepare_imagenet(tmp_path / "o2", train_tar=tmp_path / "nope.tar", im_size=IM)
    with pytest.raises(ValueError, match="only 3 synsets"):
        data.prepare_imagenet(tmp_path / "o3", train_tar=archive, im_size=IM)  # default 398
    bad_tree = tmp_path / "flat_images"
    bad_tree.mkdir()
    (bad_tree / "img.JPEG").write_bytes(b"x")
    with pytest.raises(ValueError, match="expected class folders"):
        data.prepare_imagenet(tmp_path / "o4", train_dir=bad_tree, im_size=IM)
    with pytest.raises(ValueError, match="not complete"):
        out = tmp_path / "o5"
        data.prepare_imagenet(out, train_tar=archive, num_classes=3, im_size=IM,
                              wnids=[WNIDS[0]], merge=False)
        data.merge_imagenet_parts(out)


def test_cli_exit_code_2(archive, tmp_path, capsys):
    from hrcam import cli

    code = cli.main(["prepare", "imagenet", "--train-tar", str(tmp_path / "missing.tar"),
                     "--out", str(tmp_path / "o")])
    assert code == 2
    assert "no such file" in capsys.readouterr().err
    code = cli.main(["prepare", "imagenet", "--train-tar", str(archive), "--out",
                     str(tmp_path / "o"), "--num-classes", "2", "--im-size", str(IM),
                     "--workers", "1"])
    assert code == 0
    assert sorted(os.listdir(tmp_path / "o" / "train")) == WNIDS[:2]


def test_animal_synsets_resource():
    synsets = data.animal_synsets()
    assert len(synsets) == 398
    assert synsets[0] == ("n01440764", "tench, Tinca tinca")
    assert synsets[-1][0] == "n02655020" and synsets[-1][1].startswith("puffer")
    wnids = [w for w, _ in synsets]
    assert wnids == sorted(set(wnids))


# ----------------------------------------------------------------------------------------------
# Validation set
# ----------------------------------------------------------------------------------------------

VAL = {  # image id -> (wnid, size, boxes as inclusive source pixel indices, like ILSVRC's)
    "ILSVRC2012_val_00000001": ("n00000001", (40, 30), [(4, 3, 20, 15)]),
    "ILSVRC2012_val_00000002": ("n00000002", (80, 40), [(0, 0, 79, 39), (10, 10, 30, 20)]),
    "ILSVRC2012_val_00000003": ("n00000009", (40, 30), [(1, 1, 5, 5)]),  # class not selected
    "ILSVRC2012_val_00000004": ("n00000001", (64, 64), [(8, 8, 32, 48)]),
}


@pytest.fixture(scope="module")
def val_files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("val")
    rng = np.random.default_rng(5)
    with tarfile.open(root / "ILSVRC2012_img_val.tar", "w") as tar:
        for image_id, (_, size, _) in VAL.items():
            _add(tar, f"{image_id}.JPEG", _jpeg(rng, size=size))
        _add(tar, "ILSVRC2012_val_00000005.JPEG", b"")  # no label, empty
    with open(root / "LOC_val_solution.csv", "w") as f:
        f.write("ImageId,PredictionString\n")
        for image_id, (wnid, _, boxes) in VAL.items():
            f.write(image_id + "," + " ".join(f"{wnid} {a} {b} {c} {d}"
                                              for a, b, c, d in boxes) + " \n")
    xml_dir = root / "xml" / "val"
    xml_dir.mkdir(parents=True)
    for image_id, (wnid, size, boxes) in VAL.items():
        objs = "".join(f"<object><name>{wnid}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
                       f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
                       for a, b, c, d in boxes)
        (xml_dir / f"{image_id}.xml").write_text(
            f"<annotation><folder>val</folder><filename>{image_id}</filename><size><width>"
            f"{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>{objs}"
            "</annotation>")
    with tarfile.open(root / "ILSVRC2012_bbox_val_v3.tgz", "w:gz") as tgz:
        tgz.add(xml_dir, arcname="val")
    return root


def _boxes(out: Path) -> list[tuple]:
    with open(out / "boxes.csv", newline="") as f:
        return [(r["image"], r["class"], *(float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax")))
                for r in csv.DictReader(f)]


@pytest.mark.parametrize("labels", ["csv", "xml", "tgz"])
def test_val_boxes_in_resized_coordinates(val_files, tmp_path, labels):
    out = tmp_path / "val_out"
    kw = {"csv": {"solution_csv": val_files / "LOC_val_solution.csv"},
          "xml": {"bbox_xml": val_files / "xml"},
          "tgz": {"bbox_xml": val_files / "ILSVRC2012_bbox_val_v3.tgz"}}[labels]
    synsets = tmp_path / "syn.txt"
    synsets.write_text("n00000001\nn00000002\n")
    summary = data.prepare_imagenet_val(out, val_tar=val_files / "ILSVRC2012_img_val.tar",
                                        synsets=synsets, im_size=IM, workers=1, **kw)
    assert summary["totals"] == {"val": 3}
    boxes = _boxes(out)
    assert [b[:2] for b in boxes] == [
        ("val/n00000001/ILSVRC2012_val_00000001.jpg", "n00000001"),
        ("val/n00000001/ILSVRC2012_val_00000004.jpg", "n00000001"),
        ("val/n00000002/ILSVRC2012_val_00000002.jpg", "n00000002"),
        ("val/n00000002/ILSVRC2012_val_00000002.jpg", "n00000002"),
    ]
    # stretched as wsolevaluation resizes its ground truth: every inclusive corner scaled by
    # 32 / width, 32 / height and truncated (int), stored with exclusive xmax / ymax (+1)
    def wsol(box, size):
        x0, y0, x1, y1 = box
        w, h = size
        return (int(x0 * IM / w), int(y0 * IM / h), int(x1 * IM / w) + 1, int(y1 * IM / h) + 1)

    expected = [wsol((4, 3, 20, 15), (40, 30)), wsol((8, 8, 32, 48), (64, 64)),
                wsol((0, 0, 79, 39), (80, 40)), wsol((10, 10, 30, 20), (80, 40))]
    assert [b[2:] for b in boxes] == expected
    assert expected[0] == (3, 3, 17, 17) and expected[2] == (0, 0, 32, 32)
    for image, *_ in boxes:
        with Image.open(out / image) as im:
            assert im.size == (IM, IM) and im.mode == "RGB"
    rows = {r["source"]: r for r in _manifest(out)}
    assert len(rows) == 5
    assert rows["ILSVRC2012_val_00000003.JPEG"]["reason"] == "class not selected"
    assert rows["ILSVRC2012_val_00000005.JPEG"]["status"] == "skipped"
    ann = data.load_annotations(out, "val")
    assert ann["val/n00000002/ILSVRC2012_val_00000002.jpg"]["boxes"].shape == (2, 4)


def test_val_center_crop_and_extracted_folder(val_files, tmp_path):
    folder = tmp_path / "val_dir"
    with tarfile.open(val_files / "ILSVRC2012_img_val.tar") as tar:
        tar.extractall(folder, filter="data")
    synsets = tmp_path / "syn.txt"
    synsets.write_text("n00000002\n")
    out = tmp_path / "out"
    data.prepare_imagenet_val(out, val_dir=folder, solution_csv=val_files / "LOC_val_solution.csv",
                              synsets=synsets, im_size=IM, resize="center-crop")
    # 80x40 centre crop is x in [20, 60), scale 0.8: inclusive (0,0,79,39) -> (0,0,32,32);
    # (10,10,30,20) = [10, 31) x [10, 21) -> x clipped at 0, (31 - 20) * 0.8, 10 * 0.8, 21 * 0.8
    assert [b[2:] for b in _boxes(out)] == [(0.0, 0.0, 32.0, 32.0),
                                            pytest.approx((0.0, 8.0, 8.8, 16.8), rel=1e-12)]


def test_cli_per_class_jobs_then_merge(archive, prepared, tmp_path):
    from hrcam import cli

    out = tmp_path / "jobs"
    common = ["--train-tar", str(archive), "--out", str(out), "--num-classes", "3",
              "--im-size", str(IM), "--test-fraction", "0.3", "--workers", "1"]
    for wnid in WNIDS:
        assert cli.main(["prepare", "imagenet", "--wnids", wnid, *common]) == 0
    assert not (out / "summary.json").exists()
    assert cli.main(["prepare", "imagenet-merge", "--out", str(out), "--num-classes", "3"]) == 0
    assert _manifest(out) == _manifest(prepared)
    assert cli.main(["prepare", "imagenet-merge", "--out", str(out), "--num-classes", "5"]) == 2


# ----------------------------------------------------------------------------------------------
# Locks, the "incomplete" marker and class counts
# ----------------------------------------------------------------------------------------------


def test_per_class_jobs_lock_their_class_only_and_the_merge_locks_everything(archive, tmp_path):
    from hrcam.data import publish

    out = tmp_path / "jobs"
    kw = dict(train_tar=archive, num_classes=3, im_size=IM, test_fraction=0.3, merge=False)
    data.prepare_imagenet(out, wnids=[WNIDS[0]], **kw)
    # this process plays a per-class job running on class 2 (own open file: its own flock)
    with publish.output_lock(out, shared=True), publish.class_locks(out, [WNIDS[1]]):
        data.prepare_imagenet(out, wnids=[WNIDS[2]], **kw)  # another class: goes on
        with pytest.raises(publish.OutputBusyError,
                           match=f"class {WNIDS[1]} of .* by pid {os.getpid()} on host"):
            data.prepare_imagenet(out, wnids=[WNIDS[1]], **kw)
        for run in (lambda: data.merge_imagenet_parts(out),
                    lambda: data.prepare_imagenet(out, **dict(kw, merge=True, wnids=None))):
            with pytest.raises(publish.OutputBusyError,
                               match=f"{out} is being prepared by pid {os.getpid()} on"):
                run()
    assert not (out / "parts" / f"{WNIDS[1]}.csv").exists()
    with publish.output_lock(out):  # a merge is running: per-class jobs wait for it
        with pytest.raises(publish.OutputBusyError, match=str(out)):
            data.prepare_imagenet(out, wnids=[WNIDS[1]], **kw)
    # the last job merges (after giving its shared lock back)
    assert data.prepare_imagenet(out, wnids=[WNIDS[1]], **dict(kw, merge=True))[
        "num_classes"] == 3
    assert data.list_images(out, "train")[2] == WNIDS
    assert sorted(p.name for p in (out / "parts").iterdir()) == sorted(
        [f"{w}.csv" for w in WNIDS] + ["params.json", "selection.txt"])  # no lock files left


def test_readers_refuse_a_dataset_whose_merge_has_not_run(archive, tmp_path):
    out = tmp_path / "jobs"
    kw = dict(train_tar=archive, num_classes=3, im_size=IM, test_fraction=0.3, merge=False)
    for wnid in WNIDS:
        data.prepare_imagenet(out, wnids=[wnid], **kw)
    assert sorted(os.listdir(out / "train")) == WNIDS  # every class is there, but not merged
    for read in (lambda: data.list_images(out, "train"), lambda: data.read_classes(out)):
        with pytest.raises(ValueError, match=f"{out} was not completely prepared.*"
                                             f"`hrcam prepare imagenet-merge --out {out}` again"):
            read()
    data.merge_imagenet_parts(out)
    assert data.list_images(out, "train")[2] == WNIDS
    # a rerun with nothing to do keeps it readable; a killed class (no part) is refused again
    data.prepare_imagenet(out, wnids=[WNIDS[0]], **kw)
    assert data.read_classes(out)[0][0] == WNIDS[0]
    (out / "parts" / f"{WNIDS[0]}.csv").unlink()
    data.prepare_imagenet(out, wnids=[WNIDS[0]], **kw)
    with pytest.raises(ValueError, match="not completely prepared"):
        data.list_images(out, "test")


def test_fewer_than_two_classes_refused_except_per_class_jobs(archive, tmp_path, capsys):
    from hrcam import cli

    one = tmp_path / "one.txt"
    one.write_text("n00000002 second\n")
    with pytest.raises(ValueError, match="--num-classes 1 selects 1 class.*at least 2"):
        data.prepare_imagenet(tmp_path / "o1", train_tar=archive, num_classes=1, im_size=IM)
    with pytest.raises(ValueError, match="--synsets .*one.txt selects 1 class"):
        data.prepare_imagenet(tmp_path / "o2", train_tar=archive, synsets=one, im_size=IM,
                              merge=False)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
    out = tmp_path / "jobs"
    assert data.prepare_imagenet(out, train_tar=archive, synsets=one, wnids=[WNIDS[1]],
                                 im_size=IM, merge=False) is None
    assert (out / "parts" / f"{WNIDS[1]}.csv").is_file()
    with pytest.raises(ValueError, match="selects 1 class"):
        data.merge_imagenet_parts(out)
    common = ["prepare", "imagenet-merge", "--out", str(out)]
    for extra in (["--num-classes", "1"], ["--num-classes", "-1"], ["--synsets", str(one)]):
        assert cli.main([*common, *extra]) == 2
        err = capsys.readouterr().err
        assert "at least 2" in err and "Traceback" not in err, err
    assert cli.main(["prepare", "imagenet", "--train-tar", str(archive), "--out", str(out),
                     "--num-classes", "3", "--wnids", ","]) == 2
    assert "--wnids: no WordNet id" in capsys.readouterr().err


@pytest.mark.parametrize("content, match", [
    (b"<annotation><object><bndbox>", "not a readable PASCAL-VOC XML"),
    (b"<annotation><object><bndbox><xmin>1</xmin></bndbox></object></annotation>",
     "without <name>"),
    (b"<annotation><object><name>n00000001</name><bndbox><xmin>a</xmin></bndbox></object>"
     b"</annotation>", "4 numbers"),
])
def test_val_bad_xml_is_a_clear_error(val_files, tmp_path, content, match):
    xml = tmp_path / "xml"
    xml.mkdir()
    (xml / "ILSVRC2012_val_00000001.xml").write_bytes(content)
    with pytest.raises(ValueError, match=match):
        data.prepare_imagenet_val(tmp_path / "out", val_tar=val_files / "ILSVRC2012_img_val.tar",
                                  bbox_xml=xml, im_size=IM)
    assert not (tmp_path / "out").exists()


def test_val_bad_solution_csv_is_a_clear_error(val_files, tmp_path):
    bad = tmp_path / "LOC_val_solution.csv"
    bad.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n00000001 1 2 x 4\n")
    with pytest.raises(ValueError, match="line 2 .*4 numbers"):
        data.prepare_imagenet_val(tmp_path / "out", val_tar=val_files / "ILSVRC2012_img_val.tar",
                                  solution_csv=bad, im_size=IM)
    bad.write_bytes(b"ImageId,PredictionString\n\xff\xfe\n")
    with pytest.raises(ValueError, match="not a UTF-8"):
        data.prepare_imagenet_val(tmp_path / "out", val_tar=val_files / "ILSVRC2012_img_val.tar",
                                  solution_csv=bad, im_size=IM)
