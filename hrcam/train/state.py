"""Resumable training: the state of an unfinished run, kept where a workflow manager does not
delete it, committed atomically once per epoch, and turned into the run's outputs at the end.

``OUT/.training-state/`` holds, while a run is unfinished:

* ``state.json`` -- the commit record: the configuration fingerprint, the number of finished
  epochs, every finished epoch's metrics (the full history), the best monitored value and its
  epoch, ReduceLROnPlateau's counters, and the name, size and SHA-256 of the two checkpoints;
* ``latest-eNNNN.weights.h5`` -- weights and optimizer state after the last finished epoch;
* ``best-eNNNN.keras`` -- the best model so far.

The state callback (`make_state_callback`) runs after every other callback at the end of an epoch: it saves the
checkpoints, then replaces ``state.json`` (the single commit point), then deletes superseded
checkpoints, so the history, the best value and the weights always describe the same epoch,
whatever moment a kill comes. At the end (`TrainingState.finish`) ``best.keras``,
``last.keras`` and ``history.csv`` are written into OUT from the complete state and the state
folder is removed. Snakemake deletes a failed job's declared outputs, never this folder, so a
rerun or a SLURM retry of the same command resumes after the last finished epoch; a state of
another configuration or with a damaged checkpoint is discarded with a warning naming it.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hrcam.utils import file_sha256

log = logging.getLogger(__name__)

__all__ = ["STATE_DIR", "TrainingState", "make_state_callback", "epoch_seed"]

STATE_DIR = ".training-state"
STATE_FILE = "state.json"


def _record(path: Path) -> dict[str, Any]:
    return {"file": path.name, "size": path.stat().st_size, "sha256": file_sha256(path)}


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class TrainingState:
    """The state folder of one training run (``out_dir/.training-state``).

    :param out_dir: the run's output folder.
    :param fingerprint: a digest of every option that changes the result
        (`hrcam.train.config.config_fingerprint`); a saved state with another one is discarded.
    :param monitor, mode: the metric that chooses ``best.keras`` and its direction.
    """

    def __init__(self, out_dir: str | os.PathLike, fingerprint: str, monitor: str,
                 mode: str) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / STATE_DIR
        self.fingerprint = fingerprint
        self.monitor = monitor
        self.mode = mode
        self.record: dict[str, Any] = self._empty()

    def _empty(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "epochs_done": 0, "history": [],
                "monitor": self.monitor, "mode": self.mode, "best": None, "best_epoch": None,
                "reduce_lr": None, "latest": None, "best_model": None}

    @property
    def epochs_done(self) -> int:
        return int(self.record["epochs_done"])

    def discard(self, reason: str) -> None:
        """Remove the state folder, saying why."""
        log.warning("discarding the training state in %s: %s; training starts from epoch 0",
                    self.path, reason)
        shutil.rmtree(self.path, ignore_errors=True)
        self.record = self._empty()

    def load(self) -> bool:
        """Read a saved state; True when the run resumes from it. A state of another
        configuration, or whose record or checkpoints are damaged, is discarded (warning)."""
        state_file = self.path / STATE_FILE
        if not state_file.is_file():
            if self.path.exists():
                shutil.rmtree(self.path, ignore_errors=True)  # killed before the first commit
            return False
        try:
            record = json.loads(state_file.read_text(encoding="utf-8"))
            if not isinstance(record, dict) or not isinstance(record.get("history"), list):
                raise ValueError("not a training state record")
        except (OSError, ValueError) as error:
            self.discard(f"{state_file} is damaged ({error})")
            return False
        if record.get("fingerprint") != self.fingerprint:
            self.discard("it belongs to another configuration (options, data or stage differ)")
            return False
        for key in ("latest", "best_model"):
            entry = record.get(key)
            if entry is None:
                continue
            path = self.path / str(entry.get("file"))
            if not path.is_file() or path.stat().st_size != entry.get("size") \
                    or file_sha256(path) != entry.get("sha256"):
                self.discard(f"the checkpoint {path} is missing or damaged (size or checksum "
                             "differs from the record)")
                return False
        if record.get("latest") is None or int(record.get("epochs_done", 0)) < 1:
            self.discard("it records no finished epoch")
            return False
        self.record = record
        log.info("resuming training from %s after epoch %d (best %s = %s at epoch %s)",
                 self.path, self.epochs_done, self.monitor, record.get("best"),
                 record.get("best_epoch"))
        return True

    @property
    def latest_weights(self) -> Path | None:
        entry = self.record.get("latest")
        return None if entry is None else self.path / entry["file"]

    @property
    def best_value(self) -> float | None:
        return self.record.get("best")

    def improved(self, value: float | None) -> bool:
        """Whether ``value`` beats the best monitored value so far."""
        if value is None:
            return False
        best = self.best_value
        if best is None:
            return True
        return value < best if self.mode == "min" else value > best

    def commit(self, model: Any, epoch: int, row: Mapping[str, Any],
               reduce_lr: Mapping[str, Any] | None, export: Any = None) -> None:
        """Record finished epoch ``epoch`` (0-based): checkpoints first, then the record.
        ``model`` is the trained model (its weights and optimizer state are saved), ``export``
        the model written as ``best.keras`` when it differs (a training wrapper's inner
        model)."""
        self.path.mkdir(parents=True, exist_ok=True)
        record = dict(self.record)
        record["history"] = [*self.record["history"], dict(row)]
        value = _finite(row.get(self.monitor))
        stale = []
        if self.improved(value):
            best = self.path / f"best-e{epoch:04d}.keras"
            (export if export is not None else model).save(best)
            record["best"], record["best_epoch"] = value, epoch
            record["best_model"] = _record(best)
            if self.record.get("best_model"):
                stale.append(self.record["best_model"]["file"])
        latest = self.path / f"latest-e{epoch:04d}.weights.h5"
        model.save_weights(latest)
        if self.record.get("latest"):
            stale.append(self.record["latest"]["file"])
        record["latest"] = _record(latest)
        record["epochs_done"] = epoch + 1
        record["reduce_lr"] = dict(reduce_lr) if reduce_lr is not None else None
        from hrcam.utils import write_json

        write_json(self.path / STATE_FILE, record)  # the commit point
        self.record = record
        keep = {entry["file"] for entry in (record["latest"], record["best_model"]) if entry}
        for name in stale:
            if name not in keep:
                (self.path / name).unlink(missing_ok=True)

    def history_csv(self) -> str:
        """The history as CSV text: ``epoch`` then the metrics in sorted order."""
        rows = self.record["history"]
        keys = sorted({k for row in rows for k in row} - {"epoch"})
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["epoch", *keys])
        for row in rows:
            writer.writerow([row["epoch"], *[_format(row.get(k)) for k in keys]])
        return out.getvalue()

    def write_history(self) -> Path:
        """Write ``OUT/history.csv`` from the state (atomically)."""
        from hrcam.data.common import atomic_write_text

        path = self.out_dir / "history.csv"
        atomic_write_text(path, self.history_csv())
        return path

    def finish(self, model: Any) -> dict[str, Path]:
        """Write ``best.keras`` (the best epoch's model; the last one when nothing was
        monitored), ``last.keras`` (``model``, holding the last epoch's weights) and
        ``history.csv`` into OUT, then remove the state folder."""
        files = {"best": self.out_dir / "best.keras", "last": self.out_dir / "last.keras"}
        _save_atomic(model, files["last"])
        best = self.record.get("best_model")
        if best is not None:
            tmp = files["best"].with_name(".best.keras.tmp")
            shutil.copyfile(self.path / best["file"], tmp)
            os.replace(tmp, files["best"])
        else:
            shutil.copyfile(files["last"], files["best"])
        files["history"] = self.write_history()
        shutil.rmtree(self.path, ignore_errors=True)
        return files


def _format(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else value


def _save_atomic(model: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def make_state_callback(state: TrainingState, reduce_lr: Any = None, export: Any = None,
                        seed: int = 0) -> Any:
    """The Keras callback that commits ``state`` after every epoch (Keras is imported here,
    not at module import). ``export``: the model saved as the best model when the trained
    model is a wrapper around it. ``seed``: the run's seed, from which the random generators of
    the model's layers (dropout) are set at the start of every epoch."""
    return _state_callback_class()(state, reduce_lr, export, seed)


def epoch_seed(seed: int, *keys: int | str) -> int:
    """A seed in [0, 2**62) that depends only on ``seed`` and ``keys`` (SHA-256 of their text,
    stable across library versions)."""
    import hashlib

    text = "/".join(str(k) for k in (int(seed), *keys))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 2


def _state_callback_class() -> type:
    import keras

    class _StateCallback(keras.callbacks.Callback):
        """Commits the training state at the end of every epoch; put it after every other
        callback (it records ReduceLROnPlateau's counters after their update) and give it the
        ReduceLROnPlateau callback, whose counters it restores when the run resumes."""

        def __init__(self, state: TrainingState, reduce_lr: Any = None,
                     export: Any = None, seed: int = 0) -> None:
            super().__init__()
            self.state = state
            self.reduce_lr = reduce_lr
            self.export = export
            self.seed = int(seed)
            self._epoch_lr: float | None = None

        def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
            # runs after ReduceLROnPlateau.on_train_begin, which resets its counters
            saved = self.state.record.get("reduce_lr")
            if self.reduce_lr is not None and saved:
                self.reduce_lr.wait = int(saved["wait"])
                self.reduce_lr.cooldown_counter = int(saved["cooldown_counter"])
                self.reduce_lr.best = float(saved["best"])

        def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            self._epoch_lr = _finite(self.model.optimizer.learning_rate.numpy())
            # the layers' random generators (dropout masks) are not part of the saved weights:
            # set them from (seed, layer, epoch), so a resumed epoch draws what it drew unbroken
            generators = [v for v in self.model.variables if "seed_generator_state" in v.path]
            for index, state in enumerate(generators):
                state.assign([epoch_seed(self.seed, "layer-rng", index, epoch), 0])

        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            row: dict[str, Any] = {"epoch": int(epoch)}
            row.update({k: _finite(v) for k, v in (logs or {}).items()})
            row["learning_rate"] = self._epoch_lr
            reduce_state = None
            if self.reduce_lr is not None:
                reduce_state = {"wait": int(self.reduce_lr.wait),
                                "cooldown_counter": int(self.reduce_lr.cooldown_counter),
                                "best": float(self.reduce_lr.best)}
            self.state.commit(self.model, epoch, row, reduce_state, self.export)
            self.state.write_history()

    return _StateCallback

