"""Safe writing of a prepared dataset: a lock on the output folder and all-or-nothing publication.

* **Lock.** ``fcntl.flock`` on ``<parent>/.<name>.lock`` beside ``--out``, holding a small JSON
  record (pid, host, command line, start time) so that a second preparation into the same folder
  fails at once naming the holder. The kernel drops a flock when its process dies, so a lock
  left by a killed run is no obstacle (the stale file is reused). ImageNet per-class jobs take
  the ``--out`` lock *shared* plus an exclusive lock per class (``OUT/parts/.<wnid>.lock``), so
  they run side by side; the merge and whole-dataset runs take it exclusive.
* **Publication.** A dataset is built in ``<parent>/.<name>.partial`` and renamed into place
  when complete; an existing dataset at ``--out`` is swapped out only then (so a failed or
  killed run never damages it). While a folder is being written it carries
  :data:`~hrcam.data.common.INCOMPLETE_MARKER`, which the readers refuse; the in-place ImageNet
  preparation keeps that marker in ``--out`` until its merge has run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from hrcam.data.common import INCOMPLETE_MARKER, atomic_write_text, remove_path

#: Top-level entries an hrcam dataset (or an interrupted preparation) may hold; ``--out`` is
#: replaced as a whole only if it holds nothing else.
LAYOUT_ENTRIES = frozenset({
    "train", "test", "val", "masks", "parts", "classes.txt", "manifest.csv", "summary.json",
    "boxes.csv", ".tmp", INCOMPLETE_MARKER, ".partial", ".partial-folder", ".partial-val",
    ".DS_Store"})


class OutputBusyError(ValueError):
    """Another preparation holds the lock on the output folder (or on one of its classes)."""


def _sibling(out_dir: Path, suffix: str) -> Path:
    return out_dir.parent / f".{out_dir.name}.{suffix}"


def resolve_out(out_dir: str | os.PathLike) -> Path:
    """``--out`` as an absolute path (symlinks resolved), refused if it is a file."""
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out_dir} is a file; expected a folder for the dataset")
    if out.parent == out:
        raise ValueError(f"--out {out_dir}: cannot prepare into the file-system root")
    return out


def command_line() -> str:
    """This process's command line, as a user would type it."""
    argv = list(sys.argv) or ["python"]
    first = Path(argv[0])
    head = f"python -m {first.parent.name}" if first.name == "__main__.py" else first.name
    return " ".join([head, *(shlex.quote(a) for a in argv[1:])])


def _record() -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": command_line(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def _describe(record: dict) -> str:
    return (f"pid {record.get('pid', '?')} on host {record.get('host', '?')} since "
            f"{record.get('started', '?')} (`{record.get('command', '?')}`)")


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _alive(record: dict) -> bool:
    """False only where the holder is certainly gone (same host, no such process)."""
    if record.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(record.get("pid", -1)), 0)
    except (ProcessLookupError, ValueError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def _try_flock(path: Path, exclusive: bool) -> int | None:
    """An fd holding ``flock`` on ``path`` (created if missing), or None if someone holds it.

    Checks after locking that ``path`` still names the locked file: a holder removes its lock
    file on release, and a lock on the removed file would protect nothing."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _write_record(fd: int) -> None:
    data = (json.dumps(_record()) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _release(path: Path, fd: int, exclusive: bool) -> None:
    try:
        if exclusive:  # the only holder: remove the file while still holding it
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    finally:
        os.close(fd)


def _busy(out_dir: Path, holders: Sequence[dict], what: str) -> OutputBusyError:
    if holders:
        who = "; ".join(_describe(r) for r in holders[:5])
        more = f" and {len(holders) - 5} more" if len(holders) > 5 else ""
    else:
        who, more = "another process (no record of it)", ""
    return OutputBusyError(
        f"{what} is being prepared by {who}{more}. Wait for that preparation to finish (or "
        f"stop it; a lock of a process that no longer runs is released by itself) and run again, "
        f"or use another --out than {out_dir}")


def _class_lock_holders(out_dir: Path) -> list[dict]:
    parts = out_dir / "parts"
    if not parts.is_dir():
        return []
    records = [_read_record(p) for p in sorted(parts.glob(".*.lock"))]
    return [r for r in records if r is not None and _alive(r)]


@contextlib.contextmanager
def output_lock(out_dir: Path, shared: bool = False) -> Iterator[None]:
    """Hold the lock on ``out_dir`` (exclusive, or ``shared`` for ImageNet per-class jobs);
    raises :class:`OutputBusyError` at once if it is taken. Creates ``out_dir``'s parent."""
    path = _sibling(out_dir, "lock")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        fd = _try_flock(path, exclusive=not shared)
    except OSError as error:
        raise ValueError(f"--out {out_dir}: cannot create the lock file {path} "
                         f"({error.strerror or error}); the folder that holds --out must be a "
                         "writable folder") from error
    if fd is None:
        record = _read_record(path)
        holders = [record] if record else _class_lock_holders(out_dir)
        raise _busy(out_dir, holders, str(out_dir))
    try:
        if shared:  # a record there is from a dead exclusive holder: only those write one
            os.ftruncate(fd, 0)
        else:
            _write_record(fd)
        yield
    finally:
        _release(path, fd, exclusive=not shared)


@contextlib.contextmanager
def class_locks(out_dir: Path, wnids: Sequence[str]) -> Iterator[None]:
    """Exclusive locks on the given classes of an ImageNet ``out_dir`` (its ``parts/`` must
    exist); raises :class:`OutputBusyError` naming the holder if one of them is taken."""
    held: list[tuple[Path, int]] = []
    try:
        for wnid in sorted(set(wnids)):
            path = out_dir / "parts" / f".{wnid}.lock"
            fd = _try_flock(path, exclusive=True)
            if fd is None:
                record = _read_record(path)
                raise _busy(out_dir, [record] if record else [], f"class {wnid} of {out_dir}")
            held.append((path, fd))
            _write_record(fd)
        yield
    finally:
        for path, fd in reversed(held):
            _release(path, fd, exclusive=True)


# ----------------------------------------------------------------------------------------------
# Incomplete marker and publication
# ----------------------------------------------------------------------------------------------


def mark_incomplete(folder: Path, command: str, when: str | None = None) -> None:
    """Write the marker that makes the readers refuse ``folder`` until it is complete;
    ``command`` is what the user should run to complete it (``when``: a condition on that)."""
    record = dict(_record(), command=command, **({"when": when} if when else {}))
    atomic_write_text(folder / INCOMPLETE_MARKER, json.dumps(record, indent=2) + "\n")


def unmark_incomplete(folder: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (folder / INCOMPLETE_MARKER).unlink()


def check_replaceable(out_dir: Path) -> None:
    """Refuse an ``out_dir`` that holds anything but an hrcam dataset (it gets replaced)."""
    if not out_dir.is_dir():
        return
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in LAYOUT_ENTRIES
                     and not (p.name.startswith(".") and p.name.endswith(".tmp")))
    if foreign:
        raise ValueError(f"--out {out_dir} holds files that are not part of an hrcam dataset: "
                         f"{', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}; the "
                         "prepared dataset replaces the whole folder, so give a new or empty "
                         "folder, or one holding a dataset prepared by hrcam")


def _recover(out_dir: Path) -> None:
    """Undo what a run killed during publication left behind (under the lock)."""
    old = _sibling(out_dir, "old")
    if old.exists():
        if out_dir.exists():
            remove_path(old)
        else:  # killed between the two renames: the previous dataset comes back
            os.rename(old, out_dir)
    remove_path(_sibling(out_dir, "partial"))


def _publish(stage: Path, out_dir: Path) -> None:
    unmark_incomplete(stage)
    if out_dir.exists():
        old = _sibling(out_dir, "old")
        os.rename(out_dir, old)
        os.rename(stage, out_dir)
        remove_path(old)
    else:
        os.rename(stage, out_dir)


@contextlib.contextmanager
def staged_output(out_dir: Path, command: str) -> Iterator[Path]:
    """Lock ``out_dir`` and yield an empty staging folder beside it, marked incomplete.

    When the block completes, the staging folder replaces ``out_dir`` (renamed into place; a
    previous dataset there is removed only after that). On an error it is removed and
    ``out_dir`` is left as it was; a killed run leaves only the marked staging folder, removed
    by the next run. Parent folders created here are removed again if nothing was published.
    """
    missing = [p for p in out_dir.parents if not p.exists()]
    published = False
    try:
        with output_lock(out_dir):
            _recover(out_dir)
            check_replaceable(out_dir)
            stage = _sibling(out_dir, "partial")
            stage.mkdir()
            mark_incomplete(stage, command)
            try:
                yield stage
                _publish(stage, out_dir)
                published = True
            finally:
                if not published:
                    remove_path(stage)
    finally:
        if not published:
            for parent in missing:  # innermost first
                with contextlib.suppress(OSError):
                    parent.rmdir()
