"""Shared pieces of data preparation: the output layout, readers used by training and evaluation,
image conversion, the deterministic split, manifests and atomic file writes.

Layout of every prepared dataset ``OUT``::

    OUT/train/<class>/<image>        OUT/test/<class>/<image>       (OUT/val/<class>/<image>)
    OUT/classes.txt                  one "<class-id> <human name>" line per class, sorted ids
    OUT/manifest.csv                 source,class,split,output,status,reason (one row per source)
    OUT/summary.json                 counts per class and split, skipped files, parameters
    OUT/boxes.csv                    image,class,xmin,ymin,xmax,ymax (where annotations exist)
    OUT/masks/<split>/<class>/<image stem>.png  (binary masks, 0/255, where annotated)

Boxes are continuous output-pixel coordinates: ``xmax``/``ymax`` are exclusive, so a box of the
single pixel column 3 spans ``xmin 3, xmax 4``. Source annotations given as inclusive pixel
indices (VOC, ImageNet, ``prepare folder --boxes``) go through :func:`inclusive_box` first.
A folder holding :data:`INCOMPLETE_MARKER` is being prepared (or its preparation failed) and is
refused by the readers.

No TensorFlow here: this module is imported by the command line and by light-weight tools.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
SPLITS = ("train", "test", "val")
MANIFEST_FIELDS = ("source", "class", "split", "output", "status", "reason")
BOX_FIELDS = ("image", "class", "xmin", "ymin", "xmax", "ymax")
DEFAULT_JPEG_QUALITY = 95
RESIZE_MODES = ("stretch", "center-crop")
FORMATS = ("jpeg", "png")
#: Present in a dataset folder while (or because) its preparation is not complete.
INCOMPLETE_MARKER = ".hrcam-incomplete"


# ----------------------------------------------------------------------------------------------
# Readers (used by training, evaluation and the CAM tools)
# ----------------------------------------------------------------------------------------------


def check_complete(data_dir: str | os.PathLike) -> None:
    """Raise ValueError if ``data_dir`` carries hrcam's "preparation incomplete" marker.

    A plain class-folder tree (no marker) passes: users may point hrcam at their own folders.
    """
    marker = Path(data_dir) / INCOMPLETE_MARKER
    if not marker.exists():
        return
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}
    record = record if isinstance(record, dict) else {}
    command = record.get("command") or "hrcam prepare ..."
    started = (f"; started by pid {record['pid']} on host {record.get('host', '?')} at "
               f"{record.get('started', '?')}, which may still be running"
               if "pid" in record else "")
    when = f", {record['when']}" if record.get("when") else ""
    raise ValueError(f"{data_dir} was not completely prepared (it holds {INCOMPLETE_MARKER}"
                     f"{started}): run `{command}` again{when}")


def read_classes(data_dir: str | os.PathLike) -> list[tuple[str, str]]:
    """``[(class_id, human_name), ...]`` in class-index order (sorted class ids).

    Read from ``data_dir/classes.txt``; without it, the sorted class folders of ``train/`` (or
    of the first split folder found) are used, each named after itself. A folder whose
    preparation is incomplete is refused (:func:`check_complete`).
    """
    data_dir = Path(data_dir)
    check_complete(data_dir)
    path = data_dir / "classes.txt"
    if path.is_file():
        classes = []
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(maxsplit=1)
            classes.append((parts[0], parts[1] if len(parts) > 1 else parts[0]))
        return sorted(classes)
    for split in SPLITS:
        folder = data_dir / split
        if folder.is_dir():
            return [(c, c) for c in sorted(p.name for p in folder.iterdir() if p.is_dir())]
    raise FileNotFoundError(
        f"{data_dir}: no classes.txt and no train/, test/ or val/ class folders; expected a "
        "dataset prepared by `hrcam prepare`")


def list_images(data_dir: str | os.PathLike, split: str
                ) -> tuple[list[str], list[int], list[str]]:
    """``(paths, labels, class_ids)`` of ``data_dir/split/<class>/<image>``.

    ``class_ids`` is the sorted list of classes of the dataset (``classes.txt`` where present,
    else the sorted class folders of the split); ``labels[i]`` is the index of the class of
    ``paths[i]`` in it. Paths are sorted by class then file name, so the order is reproducible.
    A folder whose preparation is incomplete is refused (:func:`check_complete`).
    """
    data_dir = Path(data_dir)
    check_complete(data_dir)
    split_dir = data_dir / split
    if not split_dir.is_dir():
        raise FileNotFoundError(f"{split_dir}: no such split folder (expected "
                                f"{data_dir}/{split}/<class>/<image>)")
    folders = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if (data_dir / "classes.txt").is_file():
        class_ids = [c for c, _ in read_classes(data_dir)]
        unknown = sorted(set(folders) - set(class_ids))
        if unknown:
            raise ValueError(f"{split_dir}: class folders not in classes.txt: {unknown[:5]}")
    else:
        class_ids = folders
    index = {c: i for i, c in enumerate(class_ids)}
    paths: list[str] = []
    labels: list[int] = []
    for cls in folders:
        for name in sorted(os.listdir(split_dir / cls)):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                paths.append(str(split_dir / cls / name))
                labels.append(index[cls])
    return paths, labels, class_ids


def load_annotations(data_dir: str | os.PathLike, split: str | None = None
                     ) -> dict[str, dict[str, Any]]:
    """Ground truth for localization, keyed by image path relative to ``data_dir``.

    Each value is ``{"class": class_id, "boxes": float32 array [N, 4] of (xmin, ymin, xmax,
    ymax) in output pixels (xmax/ymax exclusive), "mask": absolute mask path or None}``.
    Boxes come from ``boxes.csv``, masks from ``masks/`` (the image path with ``masks/`` in
    front and a ``.png`` suffix). ``split`` keeps only images of that split. Images with a mask
    but no box row get a box computed from the mask. Returns ``{}`` when the dataset has
    neither boxes nor masks.
    """
    data_dir = Path(data_dir)
    rows: dict[str, dict[str, Any]] = {}
    boxes_path = data_dir / "boxes.csv"
    if boxes_path.is_file():
        with open(boxes_path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                image = row["image"]
                if split is not None and image.split("/", 1)[0] != split:
                    continue
                entry = rows.setdefault(image, {"class": row["class"], "boxes": [], "mask": None})
                entry["boxes"].append([float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")])
    masks_dir = data_dir / "masks"
    if masks_dir.is_dir():
        splits = [split] if split is not None else [p.name for p in sorted(masks_dir.iterdir())]
        for sp in splits:
            split_masks = masks_dir / sp
            for mask in sorted(split_masks.glob("*/*.png")) if split_masks.is_dir() else []:
                cls = mask.parent.name
                stem_rel = f"{sp}/{cls}/{mask.stem}"
                image = _find_image(data_dir, stem_rel)
                if image is None:
                    continue
                entry = rows.setdefault(image, {"class": cls, "boxes": [], "mask": None})
                entry["mask"] = str(mask)
                if not entry["boxes"]:
                    box = mask_box(load_mask(mask))
                    if box is not None:
                        entry["boxes"].append(list(box))
    for entry in rows.values():
        entry["boxes"] = np.asarray(entry["boxes"], dtype=np.float32).reshape(-1, 4)
    return dict(sorted(rows.items()))


def _find_image(data_dir: Path, stem_rel: str) -> str | None:
    for ext in (".jpg", ".png", ".jpeg", ".JPEG"):
        if (data_dir / (stem_rel + ext)).is_file():
            return stem_rel + ext
    return None


def load_mask(path: str | os.PathLike) -> np.ndarray:
    """A binary mask PNG as a boolean array ``[H, W]``."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L")) >= 128


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight box ``(xmin, ymin, xmax, ymax)`` (max exclusive) around the mask's pixels."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


# ----------------------------------------------------------------------------------------------
# Class lists
# ----------------------------------------------------------------------------------------------


def animal_synsets() -> list[tuple[str, str]]:
    """The 398 ILSVRC-2012 animal synsets ``[(wnid, name), ...]`` (n01440764 tench ...
    n02655020 puffer): the first 398 lines of the ILSVRC-2012 ``synset_words.txt``."""
    from importlib import resources

    text = resources.files("hrcam").joinpath("synsets", "animal_synsets.txt").read_text("utf-8")
    return parse_class_names(text.splitlines())


def parse_class_names(lines: Iterable[str]) -> list[tuple[str, str]]:
    """Parse ``wnid [name]`` lines (LOC_synset_mapping.txt / synset_words.txt style)."""
    out = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        name = parts[1].strip() if len(parts) > 1 else parts[0]
        if name.startswith(":"):  # "n01440764 : tench" variants
            name = name[1:].strip()
        out.append((parts[0], name))
    return out


def read_text_file(path: str | os.PathLike, option: str) -> str:
    """The text of a UTF-8 file given with ``option`` (a clear error if it is not text)."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{option} {path}: not a UTF-8 text file ({error})") from error


def read_class_names(path: str | os.PathLike) -> dict[str, str]:
    """``{wnid: name}`` from LOC_synset_mapping.txt / synset_words.txt, or the devkit's meta.mat
    (needs SciPy)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--class-names {path}: no such file (expected "
                                "LOC_synset_mapping.txt, synset_words.txt or meta.mat)")
    if path.suffix == ".mat":
        from scipy.io import loadmat

        try:
            synsets = loadmat(str(path), squeeze_me=True)["synsets"]
            return {str(s["WNID"]): str(s["words"]) for s in synsets}
        except Exception as error:  # noqa: BLE001 - SciPy's many reader errors
            raise ValueError(f"--class-names {path}: not the devkit's meta.mat (a 'synsets' "
                             f"table with WNID and words): {type(error).__name__}: "
                             f"{' '.join(str(error).split())}") from error
    return dict(parse_class_names(read_text_file(path, "--class-names").splitlines()))


def write_classes(out_dir: Path, classes: Sequence[tuple[str, str]]) -> None:
    """``classes.txt``: one ``<id> <name>`` line per class (line breaks in names become
    spaces, so that every class stays on its line)."""
    text = "".join(f"{cid} {' '.join(name.splitlines())}\n" for cid, name in sorted(classes))
    atomic_write_text(out_dir / "classes.txt", text)


# ----------------------------------------------------------------------------------------------
# Image conversion (runs in worker processes: plain functions of bytes)
# ----------------------------------------------------------------------------------------------


def target_geometry(width: int, height: int, im_size: int, resize: str
                    ) -> tuple[tuple[float, float, float, float], float, float]:
    """Crop box in source pixels and scale factors (x, y) from source to output pixels."""
    if resize == "stretch":
        return (0.0, 0.0, float(width), float(height)), im_size / width, im_size / height
    if resize == "center-crop":
        side = min(width, height)
        left = (width - side) / 2.0
        top = (height - side) / 2.0
        return (left, top, left + side, top + side), im_size / side, im_size / side
    raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")


def convert_image(data: bytes, im_size: int, resize: str = "stretch", fmt: str = "jpeg",
                  quality: int = DEFAULT_JPEG_QUALITY) -> tuple[bytes, int, int, str]:
    """Decode ``data`` (any format Pillow reads), convert to RGB, resize to ``im_size`` square
    and encode. Returns ``(encoded, source_width, source_height, source_mode)``.

    JPEGs at least twice the target size are decoded at reduced size (DCT scaling, the same
    trick as ``Image.thumbnail``), then resized with Lanczos; the result is visually the same
    as resizing the full decode and several times cheaper on large sources. Raises on
    unreadable data (the caller records the reason).
    """
    from PIL import Image

    if not data:
        raise ValueError("empty file (0 bytes)")
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
        mode = im.mode
        fmt_in = im.format
        box, _, _ = target_geometry(width, height, im_size, resize)
        crop_w, crop_h = box[2] - box[0], box[3] - box[1]
        if fmt_in == "JPEG" and min(crop_w, crop_h) >= 2 * im_size:
            # request a size such that the cropped region stays >= im_size after reduction
            req = (max(1, int(im_size * width / crop_w)), max(1, int(im_size * height / crop_h)))
            im.draft("RGB" if mode in ("RGB", "YCbCr") else mode, req)
        im.load()
        scale_x = im.size[0] / width
        scale_y = im.size[1] / height
        img = im
        if img.mode != "RGB":
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, rgba).convert("RGB")
            elif img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float64)
                peak = arr.max() if arr.max() > 255 else 255.0
                img = Image.fromarray((arr * (255.0 / peak)).astype(np.uint8)).convert("RGB")
            else:
                img = img.convert("RGB")
        sbox = (box[0] * scale_x, box[1] * scale_y, box[2] * scale_x, box[3] * scale_y)
        img = img.resize((im_size, im_size), Image.Resampling.LANCZOS, box=sbox,
                         reducing_gap=3.0)
    out = io.BytesIO()
    if fmt == "jpeg":
        img.save(out, format="JPEG", quality=quality)
    elif fmt == "png":
        img.save(out, format="PNG", compress_level=1)
    else:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    return out.getvalue(), width, height, mode


def output_suffix(fmt: str) -> str:
    return {"jpeg": ".jpg", "png": ".png"}[fmt]


def inclusive_box(box: Sequence[float]) -> tuple[float, float, float, float]:
    """An inclusive pixel-index box (VOC / ImageNet: columns ``xmin..xmax`` both covered) as
    continuous coordinates with exclusive ``xmax``/``ymax``: ``(x0, y0, x1 + 1, y1 + 1)``."""
    return float(box[0]), float(box[1]), float(box[2]) + 1.0, float(box[3]) + 1.0


def wsol_resized_box(box: Sequence[float], width: int, height: int,
                     im_size: int) -> tuple[float, float, float, float]:
    """An inclusive source-pixel box resized to a stretched ``im_size`` square exactly as
    wsolevaluation resizes its ground truth (``resize_bbox``: every corner scaled by new / old
    size and truncated, ``int(x * im_size / width)``), as continuous coordinates with exclusive
    ``xmax``/``ymax``: ``(x0', y0', x1' + 1, y1' + 1)``. With these boxes MaxBoxAccV2 on the
    ImageNet validation set is the published metric to the bit."""
    x0, y0, x1, y1 = (int(float(box[0]) * im_size / width), int(float(box[1]) * im_size / height),
                      int(float(box[2]) * im_size / width), int(float(box[3]) * im_size / height))
    return float(x0), float(y0), float(x1 + 1), float(y1 + 1)


def rescale_box(box: Sequence[float], width: int, height: int, im_size: int,
                resize: str) -> tuple[float, float, float, float] | None:
    """A continuous source-pixel box (``xmax``/``ymax`` exclusive) in output pixel coordinates,
    clipped to the output, at full float precision; None if it falls outside the output (a
    centre crop can cut a box away)."""
    (left, top, right, bottom), sx, sy = target_geometry(width, height, im_size, resize)
    x0 = min(max((box[0] - left) * sx, 0.0), float(im_size))
    y0 = min(max((box[1] - top) * sy, 0.0), float(im_size))
    x1 = min(max((box[2] - left) * sx, 0.0), float(im_size))
    y1 = min(max((box[3] - top) * sy, 0.0), float(im_size))
    if x1 <= x0 or y1 <= y0:
        return None
    return float(x0), float(y0), float(x1), float(y1)


# ----------------------------------------------------------------------------------------------
# Split
# ----------------------------------------------------------------------------------------------


def split_key(seed: int, class_id: str, name: str) -> bytes:
    return hashlib.sha256(f"{seed}\0{class_id}\0{name}".encode()).digest()


def assign_split(names: Sequence[str], class_id: str, test_fraction: float, seed: int
                 ) -> dict[str, str]:
    """``{name: "train" | "test"}`` for one class.

    Deterministic in (seed, class id, the set of names): the names are ordered by a hash of
    (seed, class id, name) and the first ``round(n * test_fraction)`` go to test. It does not
    depend on the order the names arrive in, on worker counts, or on other classes, so per-class
    jobs split exactly as one big run does.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test fraction must be in [0, 1), got {test_fraction}")
    ordered = sorted(set(names), key=lambda n: split_key(seed, class_id, n))
    n_test = int(round(len(ordered) * test_fraction))
    if len(ordered) >= 2 and test_fraction > 0:
        n_test = min(max(n_test, 1), len(ordered) - 1)
    test = set(ordered[:n_test])
    return {n: ("test" if n in test else "train") for n in names}


# ----------------------------------------------------------------------------------------------
# Files: atomic writes, manifests, summaries
# ----------------------------------------------------------------------------------------------


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def printable(name: str) -> str:
    """A file name as text that can be written to UTF-8 files: bytes that are not UTF-8
    (kept by Python as surrogates) become ``\\xNN`` escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def csv_text(fields: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in fields})
    return buf.getvalue()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def summarize(manifest: Sequence[Mapping[str, Any]], classes: Sequence[tuple[str, str]],
              parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The summary.json document: counts per class and split, skipped files, parameters."""
    counts: dict[str, dict[str, int]] = {cid: {} for cid, _ in sorted(classes)}
    totals: dict[str, int] = {}
    skipped = []
    for row in manifest:
        if row["status"] == "ok":
            per = counts.setdefault(row["class"], {})
            per[row["split"]] = per.get(row["split"], 0) + 1
            totals[row["split"]] = totals.get(row["split"], 0) + 1
        else:
            skipped.append({"source": row["source"], "class": row["class"],
                            "reason": row["reason"]})
    return {
        "num_classes": len(classes),
        "num_sources": len(manifest),
        "num_images": sum(totals.values()),
        "num_skipped": len(skipped),
        "totals": totals,
        "counts": counts,
        "skipped": skipped,
        "parameters": {("format" if k == "fmt" else k): v for k, v in parameters.items()},
    }


def write_outputs(out_dir: Path, classes: Sequence[tuple[str, str]],
                  manifest: Sequence[Mapping[str, Any]], parameters: Mapping[str, Any],
                  boxes: Sequence[Mapping[str, Any]] | None = None,
                  annotations: Mapping[str, Any] | None = None,
                  annotation_rows: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """Write classes.txt, manifest.csv, boxes.csv (if given) and summary.json (last).

    ``annotation_rows`` (bad annotation rows, manifest fields) follow the image rows in
    manifest.csv; ``annotations`` (their summary) goes into summary.json under that key.
    """
    out_dir = Path(out_dir)
    write_classes(out_dir, classes)
    atomic_write_text(out_dir / "manifest.csv",
                      csv_text(MANIFEST_FIELDS, [*manifest, *annotation_rows]))
    if boxes is not None:
        atomic_write_text(out_dir / "boxes.csv", csv_text(BOX_FIELDS, boxes))
    summary = summarize(manifest, classes, parameters)
    if annotations is not None:
        summary["annotations"] = dict(annotations)
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def check_fraction(test_fraction: float) -> float:
    if not 0.0 <= float(test_fraction) < 1.0:
        raise ValueError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    return float(test_fraction)
