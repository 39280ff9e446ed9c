"""ILSVRC-2012 validation images of the chosen classes, with their boxes in output pixels.

Labels and boxes come from ``LOC_val_solution.csv`` or the PASCAL-VOC XMLs
(``ILSVRC2012_bbox_val_v3.tgz`` or its extracted folder). Their coordinates are inclusive pixel
indices; they are stored in ``boxes.csv`` as continuous output coordinates (``xmax``/``ymax``
exclusive, full precision, see :func:`hrcam.data.common.inclusive_box`). The dataset is built
beside ``--out`` and published whole (:mod:`hrcam.data.publish`).
"""

from __future__ import annotations

import csv
import logging
import math
import os
import tarfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hrcam.data.common import (
    BOX_FIELDS,
    IMAGE_EXTENSIONS,
    inclusive_box,
    output_suffix,
    rescale_box,
    write_outputs,
    wsol_resized_box,
)
from hrcam.data.engine import conversion_params, convert_stream, effective_workers
from hrcam.data.imagenet import DEFAULT_NUM_CLASSES, select_classes
from hrcam.data.publish import command_line, resolve_out, staged_output

log = logging.getLogger(__name__)

Labels = dict[str, list[tuple[str, list[float]]]]


def _numbers(tokens: list[str], where: str) -> list[float]:
    try:
        values = [float(t) for t in tokens]
    except (TypeError, ValueError):
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{where}: box coordinates must be 4 numbers (xmin ymin xmax ymax), "
                         f"got {tokens}")
    return values


def read_val_solution(path: str | os.PathLike) -> Labels:
    """``{image id: [(wnid, [xmin, ymin, xmax, ymax]), ...]}`` from LOC_val_solution.csv
    (inclusive pixel indices, as in the file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--solution-csv {path}: no such file (expected "
                                "LOC_val_solution.csv)")
    labels: Labels = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or \
                    not {"ImageId", "PredictionString"} <= set(reader.fieldnames):
                raise ValueError(f"--solution-csv {path}: expected the columns "
                                 "ImageId,PredictionString of LOC_val_solution.csv")
            for row in reader:
                tokens = (row["PredictionString"] or "").split()
                where = f"--solution-csv {path}, line {reader.line_num} ({row['ImageId']})"
                if len(tokens) % 5:
                    raise ValueError(f"{where}: PredictionString must repeat "
                                     "'wnid xmin ymin xmax ymax'")
                labels[row["ImageId"]] = [(tokens[i], _numbers(tokens[i + 1:i + 5], where))
                                          for i in range(0, len(tokens), 5)]
    except UnicodeDecodeError as error:
        raise ValueError(f"--solution-csv {path}: not a UTF-8 text file ({error})") from error
    return labels


def _parse_voc(text: bytes | str, where: str) -> tuple[str, list[tuple[str, list[float]]]]:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as error:
        raise ValueError(f"--bbox-xml {where}: not a readable PASCAL-VOC XML ({error})") from error
    filename = (root.findtext("filename") or "").strip()
    objects = []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        if box is None:
            continue
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise ValueError(f"--bbox-xml {where}: an <object> without <name>")
        objects.append((name, _numbers([box.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")],
                                       f"--bbox-xml {where}")))
    return os.path.splitext(filename)[0], objects


def read_val_xml(path: str | os.PathLike) -> Labels:
    """Labels and boxes from the PASCAL-VOC XMLs: a folder (searched recursively) or the
    ``ILSVRC2012_bbox_val_v3.tgz`` archive itself (inclusive pixel indices)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--bbox-xml {path}: no such file or folder (expected the "
                                "folder of ILSVRC2012_val_*.xml or ILSVRC2012_bbox_val_v3.tgz)")
    labels = {}
    if path.is_dir():
        files = sorted(path.rglob("*.xml"))
        if not files:
            raise ValueError(f"--bbox-xml {path}: no *.xml files")
        for p in files:
            stem, objects = _parse_voc(p.read_bytes(), str(p))
            labels[stem or p.stem] = objects
        return labels
    try:
        with tarfile.open(path, "r:*") as tar:
            for info in tar:
                if info.isfile() and info.name.endswith(".xml"):
                    stem, objects = _parse_voc(tar.extractfile(info).read(),
                                               f"{path}:{info.name}")
                    labels[stem or Path(info.name).stem] = objects
    except (tarfile.TarError, EOFError, OSError) as error:
        raise ValueError(f"--bbox-xml {path}: not a folder or readable tar "
                         f"({' '.join(str(error).split())})") from error
    if not labels:
        raise ValueError(f"--bbox-xml {path}: no *.xml members")
    return labels


def _check_val_source(val_tar, val_dir) -> None:
    """Fail before anything is written if the validation images cannot be there."""
    if val_tar is not None:
        path = Path(val_tar)
        if not path.is_file():
            raise FileNotFoundError(f"--val-tar {path}: no such file (expected "
                                    "ILSVRC2012_img_val.tar)")
        if not tarfile.is_tarfile(path):
            raise ValueError(f"--val-tar {path}: not a tar archive (expected "
                             "ILSVRC2012_img_val.tar)")
        return
    root = Path(val_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"--val-dir {root}: no such folder")
    if not any(p.is_file() for p in root.rglob("*")):
        raise ValueError(f"--val-dir {root}: no files (expected ILSVRC2012_val_*.JPEG)")


def _iter_val_images(val_tar, val_dir) -> Iterator[tuple[str, bytes | None]]:
    if val_tar is not None:
        path = Path(val_tar)
        try:
            with tarfile.open(path, "r|*") as tar:
                for info in tar:
                    if info.isfile():
                        f = tar.extractfile(info)
                        yield info.name, f.read() if f is not None else None
        except (tarfile.TarError, EOFError) as error:
            raise ValueError(f"--val-tar {path}: not a readable tar "
                             f"({' '.join(str(error).split())})") from error
        return
    root = Path(val_dir)
    for p in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            data = p.read_bytes()
        except OSError:
            data = None
        yield str(p.relative_to(root)), data


def prepare_imagenet_val(out_dir: str | os.PathLike, val_tar: str | os.PathLike | None = None,
                         val_dir: str | os.PathLike | None = None,
                         solution_csv: str | os.PathLike | None = None,
                         bbox_xml: str | os.PathLike | None = None,
                         synsets: str | os.PathLike | None = None,
                         num_classes: int | None = DEFAULT_NUM_CLASSES,
                         class_names: str | os.PathLike | None = None,
                         im_size: int = 224, resize: str = "stretch", workers: int | None = 1,
                         fmt: str = "jpeg", quality: int = 95) -> dict[str, Any]:
    """Validation images of the chosen classes into ``out_dir/val/<wnid>/``, with their boxes
    rescaled to the output size in ``out_dir/boxes.csv``. Every source file appears in the
    manifest (images of other classes as ``skipped``, reason ``class not selected``)."""
    t0 = time.perf_counter()
    if (val_tar is None) == (val_dir is None):
        raise ValueError("give exactly one of --val-tar and --val-dir")
    if (solution_csv is None) == (bbox_xml is None):
        raise ValueError("give exactly one of --solution-csv and --bbox-xml")
    conv = conversion_params(im_size, resize, fmt, quality)
    workers = effective_workers(workers)
    out_dir = resolve_out(out_dir)
    _check_val_source(val_tar, val_dir)
    labels = read_val_solution(solution_csv) if solution_csv is not None else \
        read_val_xml(bbox_xml)
    available = sorted({objs[0][0] for objs in labels.values() if objs})
    classes = select_classes(available, synsets, num_classes, class_names)
    selected = {w for w, _ in classes}
    suffix = output_suffix(conv["fmt"])
    label_file = solution_csv or bbox_xml
    manifest, boxes = [], []

    def items():
        for name, data in _iter_val_images(val_tar, val_dir):
            stem = os.path.splitext(os.path.basename(name))[0]
            objects = labels.get(stem)
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                manifest.append({"source": name, "class": "", "split": "", "output": "",
                                 "status": "skipped", "reason": "not an image file name"})
            elif not objects:
                manifest.append({"source": name, "class": "", "split": "", "output": "",
                                 "status": "skipped", "reason": f"no label in {label_file}"})
            elif objects[0][0] not in selected:
                manifest.append({"source": name, "class": objects[0][0], "split": "",
                                 "output": "", "status": "skipped",
                                 "reason": "class not selected"})
            else:
                yield (name, stem, objects), data

    with staged_output(out_dir, command_line()) as stage:
        (stage / "val").mkdir()
        for (name, stem, objects), result in convert_stream(items(), conv, workers):
            wnid = objects[0][0]
            if result[0] != "ok":
                manifest.append({"source": name, "class": wnid, "split": "", "output": "",
                                 "status": "skipped", "reason": result[1]})
                continue
            encoded, width, height = result[1], result[2], result[3]
            rel = f"val/{wnid}/{stem}{suffix}"
            (stage / "val" / wnid).mkdir(exist_ok=True)
            (stage / rel).write_bytes(encoded)
            manifest.append({"source": name, "class": wnid, "split": "val", "output": rel,
                             "status": "ok", "reason": ""})
            for obj_wnid, box in objects:
                # stretched as wsolevaluation does (its published numbers); a centre crop
                # geometrically
                scaled = (wsol_resized_box(box, width, height, conv["im_size"])
                          if conv["resize"] == "stretch" else
                          rescale_box(inclusive_box(box), width, height, conv["im_size"],
                                      conv["resize"]))
                if scaled is not None:
                    boxes.append(dict(zip(BOX_FIELDS, (rel, obj_wnid, *scaled))))
        manifest.sort(key=lambda r: r["source"])
        boxes.sort(key=lambda r: (r["image"], r["xmin"], r["ymin"]))
        params = dict(conv, dataset="imagenet-val", classes=len(classes),
                      labels=str(label_file), source=str(val_tar or val_dir))
        summary = write_outputs(stage, classes, manifest, params, boxes)
    log.info("val: %d images of %d classes, %d boxes, in %.1f s", summary["totals"].get("val", 0),
             len(classes), len(boxes), time.perf_counter() - t0)
    return summary
