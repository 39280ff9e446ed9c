"""A user's own dataset: ``SRC/train/<class>/``, ``SRC/test/<class>/`` (already split, optionally
``SRC/val/<class>/``) or ``SRC/<class>/`` (one tree, split here per class). Same conversion,
resize, manifest and checks as the ImageNet preparation; optional boxes and masks
(:mod:`hrcam.data.annotations`).

A class's id is its folder name with every run of whitespace replaced by ``_`` (class ids are
the first whitespace-separated field of classes.txt); its human name stays the folder name.
The dataset is built beside ``--out`` and published whole (:mod:`hrcam.data.publish`).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hrcam.data.annotations import UserAnnotations
from hrcam.data.common import (
    IMAGE_EXTENSIONS,
    assign_split,
    check_fraction,
    output_suffix,
    parse_class_names,
    printable,
    read_text_file,
    remove_path,
    write_outputs,
)
from hrcam.data.engine import conversion_params, convert_stream, effective_workers
from hrcam.data.publish import command_line, resolve_out, staged_output

log = logging.getLogger(__name__)


def _class_folders(root: Path) -> dict[str, list[Path]]:
    return {p.name: sorted(f for f in p.iterdir() if f.is_file())
            for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def _images(files: list[Path]) -> list[Path]:
    return [f for f in files if f.name.lower().endswith(IMAGE_EXTENSIONS)]


def scan_folder(src: str | os.PathLike) -> tuple[dict[tuple[str | None, str], list[Path]], bool]:
    """``({(split or None, class): [files]}, presplit)`` after checking the layout."""
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"--src {src}: no such folder")
    if not src.is_dir():
        raise ValueError(f"--src {src} is not a folder")
    presplit = (src / "train").is_dir() and (src / "test").is_dir()
    units: dict[tuple[str | None, str], list[Path]] = {}
    if presplit:
        per_split = {sp: _class_folders(src / sp) for sp in ("train", "test", "val")
                     if (src / sp).is_dir()}
        train_classes = set(per_split["train"])
        for sp, folders in per_split.items():
            if set(folders) != train_classes:
                only_train = sorted(train_classes - set(folders))
                only_here = sorted(set(folders) - train_classes)
                raise ValueError(f"--src {src}: train/ and {sp}/ must hold the same classes; "
                                 f"only in train: {only_train[:10]}, only in {sp}: "
                                 f"{only_here[:10]}")
            for cls, files in folders.items():
                units[(sp, cls)] = files
        classes = sorted(train_classes)
    else:
        if (src / "train").is_dir() or (src / "test").is_dir():
            raise ValueError(f"--src {src}: has {'train' if (src / 'train').is_dir() else 'test'}"
                             "/ but not both train/ and test/; expected SRC/train/<class>/ and "
                             "SRC/test/<class>/, or SRC/<class>/ only")
        folders = _class_folders(src)
        loose = _images([f for f in src.iterdir() if f.is_file()])
        if loose and not folders:
            raise ValueError(f"--src {src}: images directly in the folder; expected one "
                             "sub-folder per class (SRC/<class>/<image>)")
        for cls, files in folders.items():
            units[(None, cls)] = files
        classes = sorted(folders)
    if len(classes) < 2:
        raise ValueError(f"--src {src}: found {len(classes)} class folder(s) {classes}; at least "
                         "2 are needed (expected SRC/<class>/<image> or "
                         "SRC/train/<class>/<image> + SRC/test/<class>/<image>)")
    empty = [f"{sp + '/' if sp else ''}{cls}" for (sp, cls), files in units.items()
             if not _images(files)]
    if empty:
        raise ValueError(f"--src {src}: empty class folder(s) (no image files): {empty[:10]}")
    return units, presplit


def class_ids(folders: Iterable[str], src: str | os.PathLike) -> dict[str, str]:
    """``{folder name: class id}``: runs of whitespace become ``_``. Two folders with the same
    id, or a name that cannot be a class id, are an error naming them."""
    ids: dict[str, str] = {}
    by_id: dict[str, str] = {}
    for folder in sorted(folders):
        try:
            folder.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"--src {src}: class folder {folder!r}: its name is not valid "
                             "UTF-8; rename it") from None
        cid = re.sub(r"\s+", "_", folder)
        if cid.startswith("#"):
            raise ValueError(f"--src {src}: class folder {folder!r}: a class id cannot start "
                             "with '#' (a comment in classes.txt); rename it")
        if cid in by_id:
            raise ValueError(f"--src {src}: class folders {by_id[cid]!r} and {folder!r} both "
                             f"become the class id {cid!r} (whitespace is replaced by '_'); "
                             "rename one of them")
        ids[folder], by_id[cid] = cid, folder
    return ids


def _check_paths(src: Path, out_dir: Path) -> None:
    src_abs = src.resolve()
    if out_dir == src_abs:
        raise ValueError("--out must differ from --src")
    if src_abs in out_dir.parents:
        raise ValueError(f"--out {out_dir} is inside --src {src}; put it elsewhere (it would be "
                         "read as a class folder)")
    if out_dir in src_abs.parents:
        raise ValueError(f"--src {src} is inside --out {out_dir}; the prepared dataset replaces "
                         "--out, so put it elsewhere")


def prepare_folder(src: str | os.PathLike, out_dir: str | os.PathLike,
                   class_names: str | os.PathLike | None = None, im_size: int = 224,
                   resize: str = "stretch", test_fraction: float = 0.2, seed: int = 0,
                   workers: int | None = 1, fmt: str = "jpeg", quality: int = 95,
                   boxes: str | os.PathLike | None = None,
                   masks: str | os.PathLike | None = None) -> dict[str, Any]:
    """Prepare a class-folder dataset into ``out_dir``; returns the summary.

    ``boxes`` (CSV) and ``masks`` (folder) are the user's annotations, see
    :mod:`hrcam.data.annotations`. Everything is checked before anything is written.
    """
    t0 = time.perf_counter()
    src = Path(src)
    units, presplit = scan_folder(src)
    conv = conversion_params(im_size, resize, fmt, quality)
    test_fraction = check_fraction(test_fraction)
    workers = effective_workers(workers)
    ids = class_ids({folder for _, folder in units}, src)
    names = {cid: folder for folder, cid in ids.items()}
    if class_names is not None:
        path = Path(class_names)
        if not path.is_file():
            raise FileNotFoundError(f"--class-names {path}: no such file")
        names.update({c: n for c, n in parse_class_names(
            read_text_file(path, "--class-names").splitlines()) if c in names})
    out_dir = resolve_out(out_dir)
    _check_paths(src, out_dir)
    ann = None
    if boxes is not None or masks is not None:
        images = [f.relative_to(src).as_posix() for files in units.values() for f in files
                  if f.name.lower().endswith(IMAGE_EXTENSIONS)]
        ann = UserAnnotations(src, images, boxes, masks)
    with staged_output(out_dir, command_line()) as stage:
        manifest, box_rows = _convert(src, units, ids, stage, conv, test_fraction, seed,
                                      workers, ann)
        params = dict(conv, dataset="folder", src=str(src), presplit=presplit,
                      test_fraction=None if presplit else test_fraction,
                      seed=None if presplit else seed,
                      boxes=None if boxes is None else str(boxes),
                      masks=None if masks is None else str(masks))
        summary = write_outputs(
            stage, sorted(names.items()), manifest, params,
            box_rows if boxes is not None else None,
            annotations=ann.summary() if ann is not None else None,
            annotation_rows=ann.manifest_rows() if ann is not None else ())
    log.info("folder: %d images, %d skipped, %d classes in %.1f s", summary["num_images"],
             summary["num_skipped"], len(names), time.perf_counter() - t0)
    return summary


def _convert(src: Path, units: dict[tuple[str | None, str], list[Path]], ids: dict[str, str],
             stage: Path, conv: dict[str, Any], test_fraction: float, seed: int, workers: int,
             ann: UserAnnotations | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Convert, split and annotate every image into ``stage``; ``(manifest, box rows)``."""
    suffix = output_suffix(conv["fmt"])
    flat = stage / ".flat"
    manifest: list[dict[str, Any]] = []
    box_rows: list[dict[str, Any]] = []
    done: dict[tuple[str | None, str], list[tuple[str, str, int, int]]] = {u: [] for u in units}

    def items():
        for unit, files in units.items():
            (flat / (unit[0] or "_") / unit[1]).mkdir(parents=True, exist_ok=True)
            used: set[str] = set()
            for f in files:
                source = f.relative_to(src).as_posix()
                reason = None
                if not f.name.lower().endswith(IMAGE_EXTENSIONS):
                    reason = "not an image file name"
                elif printable(source) != source:
                    reason = "file name is not valid UTF-8; rename it"
                if reason:
                    manifest.append({"source": printable(source), "class": ids[unit[1]],
                                     "split": "", "output": "", "status": "skipped",
                                     "reason": reason})
                    continue
                stem = f.stem if f.stem not in used else f.name  # a.jpg + a.png -> a, a.png
                used.add(stem)
                try:
                    data = f.read_bytes()
                except OSError:
                    data = None
                yield (unit, stem, source), data

    for (unit, stem, source), result in convert_stream(items(), conv, workers):
        if result[0] != "ok":
            manifest.append({"source": source, "class": ids[unit[1]], "split": "", "output": "",
                             "status": "skipped", "reason": result[1]})
            if ann is not None:
                ann.skipped_image(source, ids[unit[1]], result[1])
            continue
        (flat / (unit[0] or "_") / unit[1] / (stem + suffix)).write_bytes(result[1])
        done[unit].append((stem, source, result[2], result[3]))
    for unit, images in sorted(done.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        sp_fixed, folder = unit
        cid = ids[folder]
        if not images:
            raise ValueError(f"--src {src}: class {folder!r}"
                             f"{' in ' + sp_fixed + '/' if sp_fixed else ''} has no decodable "
                             "image (see the reasons with -v)")
        stems = [s for s, *_ in images]
        split = {s: sp_fixed for s in stems} if sp_fixed else \
            assign_split(stems, cid, test_fraction, seed)
        for stem, source, width, height in sorted(images):
            sp = split[stem]
            output = f"{sp}/{cid}/{stem}{suffix}"
            (stage / sp / cid).mkdir(parents=True, exist_ok=True)
            os.replace(flat / (sp_fixed or "_") / folder / (stem + suffix), stage / output)
            manifest.append({"source": source, "class": cid, "split": sp, "output": output,
                             "status": "ok", "reason": ""})
            if ann is None:
                continue
            rows, mask = ann.convert(source, cid, sp, output, width, height, conv["im_size"],
                                     conv["resize"])
            box_rows.extend(rows)
            if mask is not None:
                (stage / "masks" / sp / cid).mkdir(parents=True, exist_ok=True)
                (stage / "masks" / sp / cid / f"{stem}.png").write_bytes(mask)
    remove_path(flat)
    manifest.sort(key=lambda r: r["source"])
    return manifest, box_rows
