"""ILSVRC-2012 train classes: the train archive (streamed) or tree -> resized, split class
folders (the validation set is :mod:`hrcam.data.imagenet_val`).

Train sources, all read without unpacking anything to disk:

* ``ILSVRC2012_img_train.tar``: an outer tar of ``nXXXXXXXX.tar`` members, each an inner tar of
  ``nXXXXXXXX_<n>.JPEG``. The outer tar is opened seekable (``'r:'``); each inner tar is
  streamed (``'r|'``) straight out of its member.
* an extracted tree: ``DIR/nXXXXXXXX/*.JPEG`` or ``DIR/nXXXXXXXX.tar`` (or the same under
  ``DIR/train/``).

Per class the outputs are complete or absent: images are converted into ``OUT/.tmp/<wnid>/``,
split, moved to ``OUT/train/<wnid>`` and ``OUT/test/<wnid>``, and only then is the marker
``OUT/parts/<wnid>.csv`` (that class's manifest rows) written, atomically. A rerun skips classes
with a marker and redoes any other (an interrupted class leaves a temp folder and no marker).
``OUT/parts/params.json`` pins the conversion parameters so that resumed or per-class runs
cannot mix image sizes. The merge step writes ``classes.txt``, ``manifest.csv`` and
``summary.json`` from the parts.

``OUT`` is built in place (that is what makes it resumable), so while classes are being added
it carries hrcam's "incomplete" marker, removed by the merge: the readers refuse it until then.
Per-class jobs (``wnids``) lock ``OUT`` shared and their classes exclusively, so parallel jobs
on other classes go on; whole runs and the merge lock ``OUT`` exclusively
(:mod:`hrcam.data.publish`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import tarfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hrcam.data.common import (
    IMAGE_EXTENSIONS,
    MANIFEST_FIELDS,
    animal_synsets,
    assign_split,
    atomic_write_text,
    check_fraction,
    csv_text,
    output_suffix,
    parse_class_names,
    read_class_names,
    read_csv,
    read_text_file,
    remove_path,
    write_outputs,
)
from hrcam.data.engine import conversion_params, convert_stream, effective_workers
from hrcam.data.publish import (
    class_locks,
    command_line,
    mark_incomplete,
    output_lock,
    resolve_out,
    unmark_incomplete,
)

log = logging.getLogger(__name__)

DEFAULT_TEST_FRACTION = 114114 / 510530
DEFAULT_NUM_CLASSES = 398
WNID = re.compile(r"^n\d{8}$")
_INNER_TAR = re.compile(r"^(?:\./)?(n\d{8})\.tar$")
_PARAM_KEYS = ("im_size", "resize", "fmt", "quality", "test_fraction", "seed")


# ----------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------


class TrainSource:
    """Where the per-class images of the train set are: an outer tar or an extracted tree."""

    def __init__(self, train_tar: str | os.PathLike | None = None,
                 train_dir: str | os.PathLike | None = None):
        if (train_tar is None) == (train_dir is None):
            raise ValueError("give exactly one of --train-tar and --train-dir")
        self.tar_path = Path(train_tar) if train_tar is not None else None
        self.dir_path = Path(train_dir) if train_dir is not None else None
        self._members: dict[str, tarfile.TarInfo] | None = None
        self._entries: dict[str, Path] = {}
        if self.tar_path is not None:
            if not self.tar_path.exists():
                raise FileNotFoundError(f"--train-tar {self.tar_path}: no such file (expected "
                                        "ILSVRC2012_img_train.tar)")
            if not self.tar_path.is_file():
                raise ValueError(f"--train-tar {self.tar_path} is not a file; for an extracted "
                                 "tree use --train-dir")
        else:
            if not self.dir_path.exists():
                raise FileNotFoundError(f"--train-dir {self.dir_path}: no such folder")
            if not self.dir_path.is_dir():
                raise ValueError(f"--train-dir {self.dir_path} is not a folder; for the archive "
                                 "use --train-tar")
            self._scan_dir()

    @property
    def description(self) -> str:
        return str(self.tar_path or self.dir_path)

    def _scan_dir(self) -> None:
        root = self.dir_path
        for candidate in (root, root / "train"):
            entries = {}
            if candidate.is_dir():
                for p in sorted(candidate.iterdir()):
                    if p.is_dir() and WNID.match(p.name):
                        entries[p.name] = p
                    elif p.is_file() and _INNER_TAR.match(p.name):
                        entries.setdefault(p.name[:-4], p)
            if entries:
                self._entries = entries
                return
        raise ValueError(f"--train-dir {root}: not in the expected layout; expected class "
                         f"folders {root}/nXXXXXXXX/*.JPEG or per-class tars {root}/nXXXXXXXX.tar "
                         "(WordNet ids like n01440764)")

    def _tar_members(self) -> dict[str, tarfile.TarInfo]:
        if self._members is None:
            members = {}
            try:
                with tarfile.open(self.tar_path, "r:") as outer:
                    for info in outer:
                        m = _INNER_TAR.match(info.name)
                        if m and info.isfile():
                            members[m.group(1)] = info
            except tarfile.TarError as error:
                raise ValueError(f"--train-tar {self.tar_path}: not a readable tar ({error}); "
                                 "expected ILSVRC2012_img_train.tar") from error
            if not members:
                raise ValueError(f"--train-tar {self.tar_path}: no nXXXXXXXX.tar members; "
                                 "expected the ILSVRC-2012 train archive (an outer tar of "
                                 "per-class tars)")
            self._members = members
        return self._members

    def wnids(self) -> list[str]:
        """All class ids present, sorted."""
        if self.tar_path is not None:
            return sorted(self._tar_members())
        return sorted(self._entries)

    def check(self, wnids: Sequence[str]) -> None:
        present = set(self.wnids())
        missing = [w for w in wnids if w not in present]
        if missing:
            where = ("member nXXXXXXXX.tar in " if self.tar_path is not None
                     else "folder nXXXXXXXX/ or nXXXXXXXX.tar in ")
            raise ValueError(f"{len(missing)} requested synset(s) missing from "
                             f"{self.description}: {', '.join(missing[:10])}"
                             f"{' ...' if len(missing) > 10 else ''} (expected a {where}"
                             f"{self.description})")

    def iter_class(self, wnid: str) -> Iterator[tuple[str, bytes | None]]:
        """``(file name, bytes)`` of every file of a class, in archive / sorted order."""
        if self.tar_path is not None:
            info = self._tar_members()[wnid]
            with open(self.tar_path, "rb") as raw:
                raw.seek(info.offset_data)
                yield from _iter_inner_tar(_Window(raw, info.size), f"{wnid}.tar")
            return
        entry = self._entries[wnid]
        if entry.is_file():
            with open(entry, "rb") as raw:
                yield from _iter_inner_tar(raw, str(entry))
            return
        for p in sorted(entry.iterdir()):
            if p.is_file():
                try:
                    data = p.read_bytes()
                except OSError:
                    data = None
                yield p.name, data


class _Window(io.RawIOBase):
    """A read-only view of ``size`` bytes of an open file from its current position (the inner
    tar inside the outer one, without reading the outer tar's headers again)."""

    def __init__(self, raw, size: int):
        self._raw = raw
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._left)
        if n <= 0:
            return 0
        data = self._raw.read(n)
        buffer[:len(data)] = data
        self._left -= len(data)
        return len(data)


def _iter_inner_tar(fileobj, label: str) -> Iterator[tuple[str, bytes | None]]:
    try:
        with tarfile.open(fileobj=fileobj, mode="r|") as inner:
            for info in inner:
                if not info.isfile():
                    continue
                f = inner.extractfile(info)
                yield os.path.basename(info.name), f.read() if f is not None else None
    except tarfile.TarError as error:
        raise ValueError(f"{label}: corrupt or truncated per-class tar ({error})") from error


# ----------------------------------------------------------------------------------------------
# Class selection
# ----------------------------------------------------------------------------------------------


def select_classes(available: Sequence[str] | None, synsets: str | os.PathLike | None = None,
                   num_classes: int | None = DEFAULT_NUM_CLASSES,
                   class_names: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """The chosen ``[(wnid, name), ...]``, sorted by wnid.

    ``synsets``: a file of ``wnid [name]`` lines (exactly those classes); otherwise the first
    ``num_classes`` of the sorted ``available`` wnids (398 = the animal subset). Names come from
    ``class_names`` (LOC_synset_mapping.txt / synset_words.txt / meta.mat), else from the synsets
    file, else from the built-in list of the 398 animal synsets, else the wnid itself.
    """
    names: dict[str, str] = dict(animal_synsets())
    if synsets is not None:
        path = Path(synsets)
        if not path.is_file():
            raise FileNotFoundError(f"--synsets {path}: no such file (expected 'wnid [name]' "
                                    "lines)")
        listed = parse_class_names(read_text_file(path, "--synsets").splitlines())
        bad = [w for w, _ in listed if not WNID.match(w)]
        if bad:
            raise ValueError(f"--synsets {path}: not WordNet ids: {bad[:5]} (expected lines "
                             "like 'n01440764 tench')")
        if not listed:
            raise ValueError(f"--synsets {path}: no classes listed")
        wnids = sorted({w for w, _ in listed})
        names.update({w: n for w, n in listed if n != w})
    else:
        if available is None:
            raise ValueError("no class list: give --synsets or a source to list")
        if num_classes is None or int(num_classes) < 1:
            raise ValueError(f"--num-classes must be at least 1, got {num_classes}")
        available = sorted(available)
        if int(num_classes) > len(available):
            raise ValueError(f"--num-classes {num_classes}: the source has only "
                             f"{len(available)} synsets")
        wnids = available[:int(num_classes)]
    if class_names is not None:
        names.update(read_class_names(class_names))
    return [(w, names.get(w, w)) for w in wnids]


def require_two_classes(classes: Sequence[tuple[str, str]], how: str) -> None:
    """Refuse a selection that cannot train a classifier (per-class jobs are exempt)."""
    if len(classes) < 2:
        raise ValueError(f"{how} selects {len(classes)} class(es) "
                         f"({', '.join(w for w, _ in classes) or 'none'}); at least 2 are "
                         "needed (a per-class job takes single classes with --wnids)")


# ----------------------------------------------------------------------------------------------
# Train
# ----------------------------------------------------------------------------------------------


def _read_params(path: Path) -> dict[str, Any]:
    try:
        params = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: unreadable ({error}); it pins the parameters of the classes "
                         "prepared there: use another --out or delete that folder") from error
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a JSON object of parameters")
    return params


def _check_params(out_dir: Path, params: dict[str, Any],
                  classes: Sequence[tuple[str, str]] | None = None) -> None:
    """Refuse parameters other than those pinned in ``parts/params.json``; with ``classes``,
    also pin them and record the selection (under the lock)."""
    path = out_dir / "parts" / "params.json"
    wanted = {k: params[k] for k in _PARAM_KEYS}
    if path.is_file():
        have = _read_params(path)
        have = {k: have.get(k) for k in _PARAM_KEYS}
        if have != wanted:
            diff = {k: (have[k], wanted[k]) for k in _PARAM_KEYS if have[k] != wanted[k]}
            raise ValueError(f"{out_dir} holds classes prepared with other parameters "
                             f"(prepared, requested): {diff}; use another --out or delete it")
    if classes is None:
        return
    selection = "".join(f"{w} {n}\n" for w, n in classes)
    sel_path = out_dir / "parts" / "selection.txt"
    if not sel_path.is_file() or sel_path.read_text(encoding="utf-8") != selection:
        atomic_write_text(sel_path, selection)
    if not path.is_file():
        atomic_write_text(path, json.dumps(wanted, indent=2) + "\n")


def class_complete(out_dir: str | os.PathLike, wnid: str) -> bool:
    return (Path(out_dir) / "parts" / f"{wnid}.csv").is_file()


def prepare_imagenet(out_dir: str | os.PathLike, train_tar: str | os.PathLike | None = None,
                     train_dir: str | os.PathLike | None = None,
                     synsets: str | os.PathLike | None = None,
                     num_classes: int | None = DEFAULT_NUM_CLASSES,
                     class_names: str | os.PathLike | None = None,
                     wnids: Sequence[str] | None = None, merge: bool = True,
                     im_size: int = 224, resize: str = "stretch",
                     test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = 0,
                     workers: int | None = 1, fmt: str = "jpeg", quality: int = 95
                     ) -> dict[str, Any] | None:
    """Prepare the ImageNet train classes into ``out_dir``; returns the summary (None when
    ``merge`` is off).

    ``wnids`` restricts the run to some of the selected classes (per-class cluster jobs); each
    class then needs only its own member of the archive. Complete classes are skipped. Without
    ``wnids`` the selection must hold at least 2 classes.
    """
    t0 = time.perf_counter()
    out_dir = resolve_out(out_dir)
    source = TrainSource(train_tar, train_dir)
    conv = conversion_params(im_size, resize, fmt, quality)
    test_fraction = check_fraction(test_fraction)
    workers = effective_workers(workers)
    available = None if (synsets is not None) else source.wnids()
    classes = select_classes(available, synsets, num_classes, class_names)
    selected = [w for w, _ in classes]
    if wnids is not None:
        wnids = list(dict.fromkeys(wnids))
        if not wnids:
            raise ValueError("--wnids: no WordNet id given (expected e.g. --wnids n01440764)")
        bad = [w for w in wnids if not WNID.match(w)]
        if bad:
            raise ValueError(f"--wnids: not WordNet ids: {bad[:5]}")
        outside = [w for w in wnids if w not in selected]
        if outside:
            raise ValueError(f"--wnids {outside[:5]} not among the selected classes "
                             f"({len(selected)} selected by --synsets/--num-classes)")
        todo = wnids
    else:
        require_two_classes(classes, f"--synsets {synsets}" if synsets is not None
                            else f"--num-classes {num_classes}")
        todo = selected
    source.check(todo)
    params = dict(conv, test_fraction=test_fraction, seed=seed)
    _check_params(out_dir, params)  # before anything is written
    if wnids is None:
        hint = {"command": command_line()}
    else:
        hint = {"command": f"hrcam prepare imagenet-merge --out {out_dir}",
                "when": "once every per-class `hrcam prepare imagenet --wnids` job is done"}
    with output_lock(out_dir, shared=wnids is not None):
        out_dir.mkdir(exist_ok=True)
        _check_params(out_dir, params, classes)
        with class_locks(out_dir, todo) if wnids is not None else contextlib.nullcontext():
            pending = [w for w in todo if not class_complete(out_dir, w)]
            log.info("%d class(es) requested, %d already complete, %d to do (workers=%d)",
                     len(todo), len(todo) - len(pending), len(pending), workers)
            if pending:
                mark_incomplete(out_dir, **hint)
            n = _convert_classes(source, pending, out_dir, conv, test_fraction, seed, workers)
        dt = time.perf_counter() - t0
        if n:
            log.info("converted %d images in %.1f s (%.1f images/s)", n, dt, n / dt)
        if not merge:
            return None
        if wnids is None:
            return _merge(out_dir, classes=classes)
    return merge_imagenet_parts(out_dir, classes=classes)  # takes the lock exclusively


def _convert_classes(source: TrainSource, wnids: Sequence[str], out_dir: Path,
                     conv: dict[str, Any], test_fraction: float, seed: int,
                     workers: int) -> int:
    suffix = output_suffix(conv["fmt"])
    tmp_root = out_dir / ".tmp"
    state: dict[str, dict[str, Any]] = {}
    count = 0

    def finalize(wnid: str) -> None:
        st = state[wnid]
        if st["done"]:
            return
        st["done"] = True
        tmp = st["tmp"]
        rows = sorted(st["rows"], key=lambda r: r["name"])
        ok = [r["stem"] for r in rows if r["status"] == "ok"]
        split = assign_split(ok, wnid, test_fraction, seed)
        for sp in ("train", "test"):
            (tmp / sp).mkdir(exist_ok=True)
        manifest = []
        for r in rows:
            out = ""
            if r["status"] == "ok":
                sp = split[r["stem"]]
                os.replace(tmp / "flat" / (r["stem"] + suffix), tmp / sp / (r["stem"] + suffix))
                out = f"{sp}/{wnid}/{r['stem']}{suffix}"
            manifest.append({"source": r["source"], "class": wnid,
                             "split": split.get(r["stem"], "") if r["status"] == "ok" else "",
                             "output": out, "status": r["status"], "reason": r["reason"]})
        for sp in ("train", "test"):
            final = out_dir / sp / wnid
            remove_path(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / sp, final)
        atomic_write_text(out_dir / "parts" / f"{wnid}.csv", csv_text(MANIFEST_FIELDS, manifest))
        remove_path(tmp)
        n_skip = sum(r["status"] != "ok" for r in rows)
        log.info("%s: %d images (%d test), %d skipped", wnid, len(ok),
                 sum(v == "test" for v in split.values()), n_skip)
        if not ok:
            log.warning("%s: no usable image", wnid)

    def items():
        for wnid in wnids:
            tmp = tmp_root / wnid
            remove_path(tmp)  # leftovers of an interrupted run
            for sp in ("train", "test"):
                remove_path(out_dir / sp / wnid)
            (tmp / "flat").mkdir(parents=True)
            st = state[wnid] = {"tmp": tmp, "rows": [], "expected": 0, "got": 0,
                                "closed": False, "done": False, "stems": set()}
            label = f"{wnid}.tar" if source.tar_path is not None else wnid
            for name, data in source.iter_class(wnid):
                st["expected"] += 1
                stem = os.path.splitext(name)[0]
                src = f"{label}/{name}"
                if stem in st["stems"]:
                    st["got"] += 1
                    st["rows"].append({"name": name, "stem": stem + "#dup", "source": src,
                                       "status": "skipped", "reason": "duplicate file name"})
                    continue
                st["stems"].add(stem)
                if not name.lower().endswith(IMAGE_EXTENSIONS):
                    st["got"] += 1
                    st["rows"].append({"name": name, "stem": stem, "source": src,
                                       "status": "skipped", "reason": "not an image file name"})
                    continue
                yield (wnid, name, stem, src), data
            st["closed"] = True
            if st["got"] == st["expected"]:
                finalize(wnid)

    for (wnid, name, stem, src), result in convert_stream(items(), conv, workers):
        st = state[wnid]
        st["got"] += 1
        if result[0] == "ok":
            (st["tmp"] / "flat" / (stem + suffix)).write_bytes(result[1])
            st["rows"].append({"name": name, "stem": stem, "source": src, "status": "ok",
                               "reason": ""})
            count += 1
        else:
            st["rows"].append({"name": name, "stem": stem, "source": src, "status": "skipped",
                               "reason": result[1]})
        if st["closed"] and st["got"] == st["expected"]:
            finalize(wnid)
    for wnid in wnids:
        if wnid in state and not state[wnid]["done"]:
            finalize(wnid)
    try:
        tmp_root.rmdir()  # only if empty: parallel per-class jobs may still use it
    except OSError:
        pass
    return count


def merge_imagenet_parts(out_dir: str | os.PathLike,
                         classes: Sequence[tuple[str, str]] | None = None,
                         class_names: str | os.PathLike | None = None,
                         synsets: str | os.PathLike | None = None,
                         num_classes: int | None = None) -> dict[str, Any]:
    """Write ``classes.txt``, ``manifest.csv`` and ``summary.json`` from ``OUT/parts`` and
    remove the "incomplete" marker, holding the exclusive lock on ``OUT``.

    The classes are, in order of precedence: ``classes``; the ``synsets`` file; the first
    ``num_classes`` of the selection recorded by the preparing runs
    (``OUT/parts/selection.txt``); that whole selection; at least 2 of them. Fails with the
    list of missing classes if any of them is not complete. ``class_names`` renames classes.
    """
    out_dir = resolve_out(out_dir)
    if not (out_dir / "parts").is_dir():
        raise FileNotFoundError(f"{out_dir / 'parts'}: no per-class parts; run `hrcam prepare "
                                "imagenet` first")
    with output_lock(out_dir):
        return _merge(out_dir, classes, class_names, synsets, num_classes)


def _merge(out_dir: Path, classes: Sequence[tuple[str, str]] | None = None,
           class_names: str | os.PathLike | None = None,
           synsets: str | os.PathLike | None = None,
           num_classes: int | None = None) -> dict[str, Any]:
    parts = out_dir / "parts"
    selection_path = parts / "selection.txt"
    selection = parse_class_names(selection_path.read_text(encoding="utf-8").splitlines()) \
        if selection_path.is_file() else None
    if classes is None and synsets is not None:
        classes = select_classes(None, synsets, None, None)
        if selection is not None:
            known = dict(selection)
            classes = [(w, known.get(w, n)) for w, n in classes]
    if classes is None:
        if selection is None:
            raise FileNotFoundError(f"{selection_path}: missing; run `hrcam prepare imagenet` "
                                    "first (or give --synsets)")
        classes = selection
        if num_classes is not None:
            if int(num_classes) < 2:
                raise ValueError(f"--num-classes must be at least 2, got {num_classes}")
            if int(num_classes) > len(selection):
                raise ValueError(f"--num-classes {num_classes}: the preparing runs selected "
                                 f"only {len(selection)} classes ({selection_path})")
            classes = selection[:int(num_classes)]
    if class_names is not None:
        names = read_class_names(class_names)
        classes = [(w, names.get(w, n)) for w, n in classes]
    require_two_classes(classes, f"--synsets {synsets}" if synsets is not None else
                        f"--num-classes {num_classes}" if num_classes is not None else
                        f"the selection of the preparing runs ({selection_path})")
    missing = [w for w, _ in classes if not (parts / f"{w}.csv").is_file()]
    if missing:
        raise ValueError(f"{out_dir}: {len(missing)} of {len(classes)} selected class(es) not "
                         f"complete: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}"
                         "; run `hrcam prepare imagenet` (optionally --wnids) for them")
    manifest = []
    for wnid, _ in classes:
        manifest.extend(read_csv(parts / f"{wnid}.csv"))
    params = _read_params(parts / "params.json") if (parts / "params.json").is_file() else {}
    params = dict(params, dataset="imagenet", classes=len(classes))
    mark_incomplete(out_dir, f"hrcam prepare imagenet-merge --out {out_dir}")
    summary = write_outputs(out_dir, classes, manifest, params)
    unmark_incomplete(out_dir)
    return summary
