"""A user's own localization ground truth for ``hrcam prepare folder --boxes CSV --masks DIR``.

* ``--boxes``: a CSV with the columns ``image,xmin,ymin,xmax,ymax`` (others are ignored);
  ``image`` is the image's path relative to ``--src``; the coordinates are *inclusive* pixel
  indices of the source image (VOC / ImageNet style: a box over columns 10..20 has ``xmin 10,
  xmax 20``); several rows for one image are several boxes.
* ``--masks``: a folder mirroring ``--src`` with one ``.png`` per image (same relative path,
  suffix ``.png``; non-zero = object). Images of the same path but another suffix share it.

Boxes and masks follow their image through the resize (:func:`hrcam.data.common.target_geometry`)
and are written in hrcam's layout: ``boxes.csv`` in continuous output pixels (``xmax``/``ymax``
exclusive, full precision) and ``masks/<split>/<class>/<stem>.png`` (0/255). Images without
annotations are kept. A bad row never stops the preparation: it is recorded with its reason
(:data:`REASONS`) in manifest.csv and summary.json. A CSV without the required columns or a
missing masks folder is an error before anything is written.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from hrcam.data.common import (
    BOX_FIELDS,
    inclusive_box,
    printable,
    rescale_box,
    target_geometry,
)

BOX_COLUMNS = ("image", "xmin", "ymin", "xmax", "ymax")
#: Why an annotation row was not used (the ``reason`` of its manifest row starts with one).
REASONS = ("unknown image", "non-numeric value", "xmin > xmax or ymin > ymax",
           "box outside the image", "box outside the centre crop", "image skipped",
           "mask size differs from the image", "unreadable mask", "mask without image",
           "duplicate mask")


def _key(rel: str) -> str:
    """Path without suffix: the key that pairs an image with its mask."""
    return PurePosixPath(rel).with_suffix("").as_posix()


def _normalise(image: str) -> str:
    image = image.strip().replace("\\", "/")
    while image.startswith("./"):
        image = image[2:]
    return image


class MaskSizeError(ValueError):
    """A mask whose size is not its image's."""


def convert_mask(data: bytes, width: int, height: int, im_size: int, resize: str) -> bytes:
    """A mask of the source image (any mode; non-zero = object) as the output's binary PNG
    (0/255), resized with nearest neighbour and cropped like the image. Raises ValueError if
    its size is not ``width x height`` (:class:`MaskSizeError`), and Pillow's errors if it is
    unreadable."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        if im.size != (width, height):
            raise MaskSizeError(f"mask {im.size[0]}x{im.size[1]}, image {width}x{height}")
        arr = np.asarray(im)
    if arr.ndim == 3:  # colour masks: any colour channel (alpha ignored)
        arr = arr[..., :3] if arr.shape[-1] >= 3 else arr[..., :1]
        arr = arr.any(axis=-1)
    binary = Image.fromarray((arr != 0).astype(np.uint8) * 255)
    crop, _, _ = target_geometry(width, height, im_size, resize)
    small = binary.resize((im_size, im_size), Image.Resampling.NEAREST, box=crop)
    out = io.BytesIO()
    small.save(out, format="PNG")
    return out.getvalue()


def _read_box_rows(path: Path) -> list[tuple[int, str, list[str | None]]]:
    """``[(line, image, [xmin, ymin, xmax, ymax] as text)]``; raises on a bad header."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            columns = [c.strip().lower() for c in header or []]
            missing = [c for c in BOX_COLUMNS if c not in columns]
            if missing:
                raise ValueError(f"--boxes {path}: missing column(s) {', '.join(missing)}; "
                                 f"expected a header line {','.join(BOX_COLUMNS)} (coordinates:"
                                 " inclusive pixel indices of the source image)")
            index = [columns.index(c) for c in BOX_COLUMNS]
            rows = []
            for fields in reader:
                if not any(f.strip() for f in fields):
                    continue
                values = [fields[i] if i < len(fields) else None for i in index]
                rows.append((reader.line_num, _normalise(values[0] or ""), values[1:]))
    except UnicodeDecodeError as error:
        raise ValueError(f"--boxes {path}: not a UTF-8 text file ({error})") from error
    except csv.Error as error:
        raise ValueError(f"--boxes {path}: not a readable CSV ({error})") from error
    return rows


def _numbers(values: list[str | None]) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in values)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return numbers if all(math.isfinite(v) for v in numbers) else None


class UserAnnotations:
    """Boxes and masks of a ``prepare folder`` source, checked and converted image by image.

    Collects the rows that cannot be used (with their reasons) and the counts for
    summary.json while the preparation goes on.
    """

    def __init__(self, src: Path, images: Iterable[str], boxes: str | os.PathLike | None,
                 masks: str | os.PathLike | None):
        """Read the CSV and list the masks; ``images`` are the source images' paths relative
        to ``src`` (POSIX). Raises before anything is written if the CSV lacks the columns or
        the masks folder does not exist."""
        self.boxes_path = Path(boxes) if boxes is not None else None
        self.masks_dir = Path(masks) if masks is not None else None
        self.boxes: dict[str, list[tuple[str, tuple[float, ...]]]] = {}
        self.masks: dict[str, Path] = {}
        self.bad: list[dict[str, str]] = []
        self.counts: Counter = Counter()
        images = set(images)
        if self.boxes_path is not None:
            if not self.boxes_path.is_file():
                raise FileNotFoundError(f"--boxes {self.boxes_path}: no such file (expected a "
                                        f"CSV with the columns {','.join(BOX_COLUMNS)})")
            for line, image, values in _read_box_rows(self.boxes_path):
                source = f"{self.boxes_path}:{line}"
                numbers = _numbers(values)
                if image not in images:
                    self._bad(source, "unknown image", f"{image!r} is not an image of --src")
                elif numbers is None:
                    self._bad(source, "non-numeric value", ",".join(map(str, values)))
                elif numbers[0] > numbers[2] or numbers[1] > numbers[3]:
                    self._bad(source, "xmin > xmax or ymin > ymax",
                              ",".join(f"{v:g}" for v in numbers))
                else:
                    self.boxes.setdefault(image, []).append((source, numbers))
        if self.masks_dir is not None:
            if not self.masks_dir.is_dir():
                raise FileNotFoundError(f"--masks {self.masks_dir}: no such folder (expected "
                                        "one .png mask per image, mirroring --src)")
            by_key: dict[str, list[str]] = {}
            for image in images:
                by_key.setdefault(_key(image), []).append(image)
            seen: set[str] = set()
            for path in sorted(self.masks_dir.rglob("*")):
                rel = path.relative_to(self.masks_dir).as_posix()
                if not path.is_file() or path.suffix.lower() != ".png" or \
                        any(part.startswith(".") for part in PurePosixPath(rel).parts):
                    continue
                key = _key(rel)
                if key not in by_key:
                    self._bad(str(path), "mask without image",
                              f"no image {key}.* in --src")
                elif key in seen:
                    self._bad(str(path), "duplicate mask", "another mask of the same image")
                else:
                    seen.add(key)
                    for image in by_key[key]:
                        self.masks[image] = path

    def _bad(self, source: str, reason: str, detail: str, class_id: str = "", split: str = "",
             output: str = "") -> None:
        self.bad.append({"source": printable(source), "class": class_id, "split": split,
                         "output": output, "status": "skipped",
                         "reason": f"{reason}: {detail}" if detail else reason, "kind": reason})

    def skipped_image(self, image: str, class_id: str, reason: str) -> None:
        """Record the annotations of a source image that was not prepared."""
        for source, _ in self.boxes.get(image, []):
            self._bad(source, "image skipped", f"{image}: {reason}", class_id)
        if image in self.masks:
            self._bad(str(self.masks[image]), "image skipped", f"{image}: {reason}", class_id)

    def convert(self, image: str, class_id: str, split: str, output: str, width: int,
                height: int, im_size: int, resize: str
                ) -> tuple[list[dict[str, Any]], bytes | None]:
        """``(boxes.csv rows, mask PNG or None)`` of one prepared image (``output``: its path
        in the dataset, ``width x height``: its source size)."""
        rows = []
        for source, (x0, y0, x1, y1) in self.boxes.get(image, []):
            where = dict(class_id=class_id, split=split, output=output)
            if x0 < 0 or y0 < 0 or x1 > width - 1 or y1 > height - 1:
                self._bad(source, "box outside the image",
                          f"({x0:g}, {y0:g}, {x1:g}, {y1:g}) in a {width}x{height} image "
                          f"(inclusive pixel indices: 0..{width - 1}, 0..{height - 1})", **where)
                continue
            scaled = rescale_box(inclusive_box((x0, y0, x1, y1)), width, height, im_size, resize)
            if scaled is None:
                self._bad(source, "box outside the centre crop", f"({x0:g}, {y0:g}, {x1:g}, "
                          f"{y1:g}) in a {width}x{height} image", **where)
                continue
            rows.append(dict(zip(BOX_FIELDS, (output, class_id, *scaled))))
        mask = None
        if image in self.masks:
            path = self.masks[image]
            where = dict(class_id=class_id, split=split, output=output)
            try:
                mask = convert_mask(path.read_bytes(), width, height, im_size, resize)
            except MaskSizeError as error:
                self._bad(str(path), "mask size differs from the image", str(error), **where)
            except Exception as error:  # noqa: BLE001 - any decoder failure is a reason
                self._bad(str(path), "unreadable mask",
                          f"{type(error).__name__}: {error}".replace("\n", " "), **where)
        self.counts["images"] += 1
        self.counts["with_boxes"] += bool(rows)
        self.counts["with_masks"] += mask is not None
        self.counts["with_both"] += bool(rows) and mask is not None
        self.counts["boxes"] += len(rows)
        return rows, mask

    def manifest_rows(self) -> list[dict[str, str]]:
        """The unusable rows, as manifest.csv rows (status ``skipped``)."""
        return [{k: v for k, v in row.items() if k != "kind"} for row in self.bad]

    def summary(self) -> dict[str, Any]:
        """The ``annotations`` section of summary.json."""
        c = self.counts
        return {
            "boxes_csv": str(self.boxes_path) if self.boxes_path else None,
            "masks_dir": str(self.masks_dir) if self.masks_dir else None,
            "images": c["images"], "with_boxes": c["with_boxes"], "with_masks": c["with_masks"],
            "with_both": c["with_both"],
            "without": c["images"] - c["with_boxes"] - c["with_masks"] + c["with_both"],
            "boxes": c["boxes"], "bad_rows": len(self.bad),
            "bad_rows_by_reason": dict(sorted(Counter(r["kind"] for r in self.bad).items())),
            "bad": [{"source": r["source"], "reason": r["reason"]} for r in self.bad],
        }
