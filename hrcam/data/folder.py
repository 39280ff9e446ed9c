"""A user's own dataset: ``SRC/train/<class>/``, ``SRC/test/<class>/`` (already split, optionally
``SRC/val/<class>/``) or ``SRC/<class>/`` (one tree, split here per class). Same conversion,
resize, manifest and checks as the ImageNet preparation."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from hrcam.data.common import (IMAGE_EXTENSIONS, assign_split, check_fraction, output_suffix,
                               parse_class_names, remove_path, write_outputs)
from hrcam.data.engine import conversion_params, convert_stream, effective_workers

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


def prepare_folder(src: str | os.PathLike, out_dir: str | os.PathLike,
                   class_names: str | os.PathLike | None = None, im_size: int = 224,
                   resize: str = "stretch", test_fraction: float = 0.2, seed: int = 0,
                   workers: int | None = 1, fmt: str = "jpeg", quality: int = 95
                   ) -> dict[str, Any]:
    """Prepare a class-folder dataset into ``out_dir``; returns the summary."""
    t0 = time.perf_counter()
    src = Path(src)
    units, presplit = scan_folder(src)
    conv = conversion_params(im_size, resize, fmt, quality)
    test_fraction = check_fraction(test_fraction)
    workers = effective_workers(workers)
    classes = sorted({cls for _, cls in units})
    names = {c: c for c in classes}
    if class_names is not None:
        path = Path(class_names)
        if not path.is_file():
            raise FileNotFoundError(f"--class-names {path}: no such file")
        names.update({c: n for c, n in parse_class_names(path.read_text("utf-8").splitlines())
                      if c in names})
    out_dir = Path(out_dir)
    if out_dir.resolve() == src.resolve():
        raise ValueError("--out must differ from --src")
    partial = out_dir / ".partial-folder"
    remove_path(partial)
    suffix = output_suffix(conv["fmt"])
    manifest: list[dict[str, Any]] = []
    results: dict[tuple[str | None, str], list[tuple[str, Path]]] = {u: [] for u in units}

    def items():
        for unit, files in units.items():
            (partial / "flat" / (unit[0] or "_") / unit[1]).mkdir(parents=True, exist_ok=True)
            used: set[str] = set()
            for f in files:
                source = str(f.relative_to(src))
                if not f.name.lower().endswith(IMAGE_EXTENSIONS):
                    manifest.append({"source": source, "class": unit[1], "split": "",
                                     "output": "", "status": "skipped",
                                     "reason": "not an image file name"})
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
            manifest.append({"source": source, "class": unit[1], "split": "", "output": "",
                             "status": "skipped", "reason": result[1]})
            continue
        (partial / "flat" / (unit[0] or "_") / unit[1] / (stem + suffix)).write_bytes(result[1])
        results[unit].append((stem, source))
    for unit, done in sorted(results.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        sp_fixed, cls = unit
        if not done:
            raise ValueError(f"--src {src}: class {cls!r}"
                             f"{' in ' + sp_fixed + '/' if sp_fixed else ''} has no decodable "
                             "image (see the reasons with -v)")
        stems = [s for s, _ in done]
        split = {s: sp_fixed for s in stems} if sp_fixed else \
            assign_split(stems, cls, test_fraction, seed)
        for stem, source in sorted(done):
            sp = split[stem]
            (partial / sp / cls).mkdir(parents=True, exist_ok=True)
            os.replace(partial / "flat" / (sp_fixed or "_") / cls / (stem + suffix),
                       partial / sp / cls / (stem + suffix))
            manifest.append({"source": source, "class": cls, "split": sp,
                             "output": f"{sp}/{cls}/{stem}{suffix}", "status": "ok",
                             "reason": ""})
    for sp in ("train", "test", "val"):
        remove_path(out_dir / sp)
        if (partial / sp).is_dir():
            os.replace(partial / sp, out_dir / sp)
    remove_path(partial)
    manifest.sort(key=lambda r: r["source"])
    params = dict(conv, dataset="folder", src=str(src), presplit=presplit,
                  test_fraction=None if presplit else test_fraction,
                  seed=None if presplit else seed)
    summary = write_outputs(out_dir, [(c, names[c]) for c in classes], manifest, params)
    log.info("folder: %d images, %d skipped, %d classes in %.1f s", summary["num_images"],
             summary["num_skipped"], len(classes), time.perf_counter() - t0)
    return summary
