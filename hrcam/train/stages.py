"""The paper's two training stages: `train_half` (the classifier, for predictions and the low-res
CAM) and `train_full` (the expansion network on top of the frozen classifier, for the high-res
CAM), each resumable after a kill (`hrcam.train.state`) and reproducible: the same options and
seed give the same weights on the CPU.

Outputs of a stage, in its output folder: ``best.keras`` (by the monitored validation metric),
``last.keras``, ``history.csv`` (every epoch once, with the learning rate), ``tensorboard/``,
``classes.json`` and ``train_config.json``; the full stage adds ``transfer_check_before.json``
and ``transfer_check.json``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hrcam.train.augment import AugmentConfig
from hrcam.train.config import TrainConfig, config_fingerprint
from hrcam.train.data import list_split, make_dataset, split_exists, training_dataset
from hrcam.train.decoder import feature_scale, make_decoder_trainer
from hrcam.train.state import TrainingState, make_state_callback
from hrcam.train.transfer import (
    TransferCheckError,
    check_images,
    transfer_failure_message,
    verify_transfer,
)
from hrcam.utils import file_sha256

log = logging.getLogger(__name__)

__all__ = ["HALF_MONITOR", "FULL_MONITOR", "class_records", "make_optimizer", "train_half",
           "train_full", "tensorboard_available"]

HALF_MONITOR = ("val_accuracy", "max")
FULL_MONITOR = ("val_loss", "min")


def class_records(data_dir: str | os.PathLike, class_ids: Sequence[str]) -> list[dict[str, Any]]:
    """``[{"index", "id", "name"}]`` for the sorted class ids, names from the dataset's
    ``classes.txt`` (`hrcam.data.read_classes`)."""
    from hrcam import data

    try:
        names = dict(data.read_classes(data_dir))
    except FileNotFoundError:
        names = {}
    return [{"index": i, "id": cid, "name": names.get(cid, cid)} for i, cid in enumerate(class_ids)]


def make_optimizer(config: TrainConfig) -> Any:
    """The configured Keras optimizer (SGD with momentum 0.9)."""
    import keras

    lr = float(config.learning_rate)
    return {
        "adadelta": lambda: keras.optimizers.Adadelta(learning_rate=lr),
        "adam": lambda: keras.optimizers.Adam(learning_rate=lr),
        "sgd": lambda: keras.optimizers.SGD(learning_rate=lr, momentum=0.9),
        "rmsprop": lambda: keras.optimizers.RMSprop(learning_rate=lr),
    }[config.optimizer]()


def tensorboard_available() -> bool:
    """Whether TensorBoard summaries can be written (TensorFlow needs the tensorboard package)."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _default_verbose() -> int:
    """Keras ``fit`` verbosity: a live progress bar (1) on a terminal, one line per epoch (2)
    when stdout is a file (Snakemake logs)."""
    try:
        return 1 if sys.stdout.isatty() else 2
    except (AttributeError, ValueError):
        return 2


def _versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    from hrcam import __version__

    return {"hrcam": __version__, "tensorflow": tf.__version__, "keras": keras.__version__}


def _dataset_identity(data_dir: str | os.PathLike, paths: Sequence[str],
                      class_ids: Sequence[str]) -> dict[str, Any]:
    """What of the data a training state depends on: the training files and the classes."""
    import hashlib

    digest = hashlib.sha256("\n".join(os.path.relpath(p, data_dir) for p in paths).encode())
    return {"files": digest.hexdigest()[:16], "classes": list(class_ids)}


def _check_output_dtype(model: Any, config: TrainConfig) -> None:
    if not config.mixed_precision:
        return
    for output in model.outputs:
        if str(output.dtype) not in ("float32", "<dtype: 'float32'>"):
            log.warning("mixed precision: a model output is %s, not float32 (softmax and loss "
                        "then run in float16)", output.dtype)


def _datasets(data_dir: str | os.PathLike, config: TrainConfig, target: str,
              first_epoch: int) -> tuple[Any, int, Any]:
    """The training stream from ``first_epoch`` on, its steps per epoch, and the validation
    dataset (None without a validation split)."""
    augment = AugmentConfig.with_probability(config.augment_probability) if config.augment \
        else None
    train_ds, steps = training_dataset(
        data_dir, config.train_split, im_size=config.im_size, batch_size=config.batch_size,
        seed=config.seed, first_epoch=first_epoch, epochs=config.epochs, augment=augment,
        balanced=config.balanced, cache=config.cache, shuffle_buffer=config.shuffle_buffer,
        target=target, steps=config.steps_per_epoch)
    if not split_exists(data_dir, config.val_split):
        return train_ds, steps, None
    cache = config.cache
    if isinstance(cache, str) and cache:
        cache = f"{cache}.{config.val_split}"
    val_ds = make_dataset(data_dir, config.val_split, im_size=config.im_size,
                          batch_size=config.batch_size, target=target, cache=cache)
    return train_ds, steps, val_ds


def _run(model: Any, data_dir: str | os.PathLike, out_dir: Path, config: TrainConfig,
         state: TrainingState, target: str, extra_callbacks: Sequence[Any],
         export: Any = None) -> Any:
    """Fit ``model`` from the state's epoch on (or not at all when every epoch is done) and
    write the stage's outputs (``export``, when ``model`` is a training wrapper around it) from
    the complete state."""
    import keras

    if state.epochs_done:
        model.optimizer.build(model.trainable_variables)
        model.load_weights(state.latest_weights)
    if state.epochs_done < config.epochs:
        train_ds, steps, val_ds = _datasets(data_dir, config, target, state.epochs_done)
        reduce_lr = None
        callbacks: list[Any] = []
        if config.reduce_lr.enabled:
            reduce_lr = keras.callbacks.ReduceLROnPlateau(
                monitor=config.reduce_lr.monitor, factor=config.reduce_lr.factor,
                patience=config.reduce_lr.patience, min_lr=config.reduce_lr.min_lr, verbose=1)
            callbacks.append(reduce_lr)
        if tensorboard_available():
            callbacks.append(keras.callbacks.TensorBoard(
                str(out_dir / "tensorboard"), write_graph=False, profile_batch=0))
        else:
            log.warning("the tensorboard package is not installed: no TensorBoard logs "
                        "(pip install tensorboard)")
        callbacks.append(make_state_callback(state, reduce_lr, export, config.seed))
        callbacks.extend(extra_callbacks)
        verbose = config.verbose if config.verbose is not None else _default_verbose()
        model.fit(train_ds, validation_data=val_ds, epochs=config.epochs,
                  initial_epoch=state.epochs_done, steps_per_epoch=steps,
                  validation_steps=config.validation_steps, callbacks=callbacks,
                  shuffle=False, verbose=verbose)
    else:
        log.info("every epoch of %s is done: writing its outputs", out_dir)
    return state.finish(export if export is not None else model)


def _summary(stage: str, out_dir: Path, state: TrainingState, initial_epoch: int,
             n_train: int) -> dict[str, Any]:
    history = state.record["history"]
    return {
        "stage": stage, "out_dir": str(out_dir), "best": str(out_dir / "best.keras"),
        "last": str(out_dir / "last.keras"), "history": str(out_dir / "history.csv"),
        "classes": str(out_dir / "classes.json"), "monitor": state.monitor,
        "initial_epoch": initial_epoch, "n_train_images": n_train,
        "best_epoch": state.record.get("best_epoch"),
        "final": {k: v for k, v in (history[-1] if history else {}).items() if k != "epoch"},
    }


def _prepare_run(data_dir: str | os.PathLike, out_dir: str | os.PathLike, config: TrainConfig
                 ) -> tuple[Path, list[str], list[str]]:
    import keras

    from hrcam.runtime import configure_tensorflow

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # reproducible: seeded Python, NumPy and TensorFlow generators, deterministic op kernels
    configure_tensorflow(deterministic=True)
    keras.utils.set_random_seed(config.seed)
    paths, _, class_ids = list_split(data_dir, config.train_split)
    if len(class_ids) < 2:
        raise ValueError(f"{Path(data_dir) / config.train_split}: a classifier needs at least 2 "
                         f"classes, found {len(class_ids)}")
    return out, paths, class_ids


def _load_state(data_dir: str | os.PathLike, out: Path, config: TrainConfig,
                preferred: tuple[str, str], paths: Sequence[str], class_ids: Sequence[str],
                **identity: Any) -> TrainingState:
    """The stage's training state (resumed when a saved one matches the run): best model by
    ``preferred`` (metric, mode), by the training metric without a validation split."""
    monitor, mode = preferred
    if not split_exists(data_dir, config.val_split):
        log.warning("no validation split %r in %s: best.keras is chosen by the training metric",
                    config.val_split, data_dir)
        monitor = monitor.removeprefix("val_")
    fingerprint = config_fingerprint(config, data=_dataset_identity(data_dir, paths, class_ids),
                                     **identity)
    state = TrainingState(out, fingerprint, monitor, mode)
    state.load()
    return state


def train_half(data_dir: str | os.PathLike, out_dir: str | os.PathLike,
               config: TrainConfig | None = None, *,
               callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train the half model (classifier) on ``data_dir/<train_split>``.

    ``best.keras`` is the epoch with the best validation accuracy (training accuracy without a
    validation split). Resumable: run the same call again after an interruption and training
    continues after the last finished epoch. ``callbacks`` run after the state is committed.
    Returns a summary dict (paths, epochs, final metrics).
    """
    import keras

    from hrcam import models
    from hrcam.runtime import distribution_strategy, precision_policy
    from hrcam.utils import write_json

    config = config or TrainConfig()
    out, paths, class_ids = _prepare_run(data_dir, out_dir, config)
    write_json(out / "classes.json", class_records(data_dir, class_ids))
    arch = models.resolve_arch(config.arch, **config.arch_overrides)
    config.save(out / "train_config.json", stage="half", data_dir=str(data_dir),
                num_classes=len(class_ids), resolved_arch=arch, versions=_versions())
    state = _load_state(data_dir, out, config, HALF_MONITOR, paths, class_ids, stage="half",
                        resolved_arch=arch)
    initial_epoch = state.epochs_done

    with precision_policy(config.mixed_precision):
        with distribution_strategy().scope():
            model = models.build_half_model(len(class_ids), (config.im_size, config.im_size, 3),
                                            arch)
            _check_output_dtype(model, config)
            metrics: list[Any] = ["accuracy"]
            if len(class_ids) > 5:
                metrics.append(keras.metrics.TopKCategoricalAccuracy(5, name="top5_accuracy"))
            model.compile(optimizer=make_optimizer(config), loss="categorical_crossentropy",
                          metrics=metrics, jit_compile=bool(config.xla))
        _run(model, data_dir, out, config, state, "class", callbacks)
    return _summary("half", out, state, initial_epoch, len(paths))


def train_full(data_dir: str | os.PathLike, out_dir: str | os.PathLike,
               half_path: str | os.PathLike, config: TrainConfig | None = None, *,
               callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train the full model's decoder on top of the frozen half model.

    Builds the full model with the half model's encoder architecture and input size (whatever
    ``config`` says about them) and the config's decoder upsampling, copies every shared layer's
    weights, freezes encoder + head (frozen BatchNorm runs in inference mode) and trains the
    decoder on the config's objective (`hrcam.train.decoder`; the paper's: MSE against
    ``images / 255``); ``best.keras`` by validation loss (training loss without a validation
    split). The transfer is verified before and after training (``transfer_check_before.json``,
    ``transfer_check.json``); a failure raises `TransferCheckError`. Resumable as `train_half`.
    """
    from hrcam import models
    from hrcam.model_files import load_model, read_train_config
    from hrcam.runtime import distribution_strategy, precision_policy
    from hrcam.utils import write_json

    config = config or TrainConfig()
    half_path = Path(half_path)
    half = load_model(half_path, kind="half", what=f"--half {half_path}")
    half_run = read_train_config(half_path)
    im_size = half.inputs[0].shape[1]
    if im_size is not None and int(im_size) != config.im_size:
        log.info("the half model's image size %s is used (im_size=%d ignored)", im_size,
                 config.im_size)
        config = dataclasses.replace(config, im_size=int(im_size))
    # the encoder's architecture is the half model's, whatever the config says; the decoder's
    # upsampling is the config's
    config = dataclasses.replace(config, arch=str(half_run.get("arch", "inferred")),
                                 arch_overrides=dict(half_run.get("arch_overrides") or {}))
    arch = models.resolve_arch(half_run.get("resolved_arch") or models.infer_arch(half),
                               decoder_upsampling=config.decoder_upsampling)
    num_classes = int(half.get_layer(models.PREDICTIONS_LAYER).units)
    out, paths, class_ids = _prepare_run(data_dir, out_dir, config)
    if len(class_ids) != num_classes:
        raise ValueError(f"{data_dir} has {len(class_ids)} classes but the half model "
                         f"{half_path} predicts {num_classes}")
    write_json(out / "classes.json", class_records(data_dir, class_ids))
    check_split = config.val_split if split_exists(data_dir, config.val_split) \
        else config.train_split
    images, _ = check_images(data_dir, check_split, config.check_images, config.im_size)
    scale = feature_scale(half, images, config.batch_size)
    config.save(out / "train_config.json", stage="full", data_dir=str(data_dir),
                half_model=str(half_path), num_classes=num_classes, resolved_arch=arch,
                decoder_scale=scale, versions=_versions())
    state = _load_state(data_dir, out, config, FULL_MONITOR, paths, class_ids, stage="full",
                        resolved_arch=arch, half_model=file_sha256(half_path)[:16])
    initial_epoch = state.epochs_done

    with precision_policy(config.mixed_precision):
        with distribution_strategy().scope():
            full = models.build_full_model(num_classes, (config.im_size, config.im_size, 3),
                                           arch)
            models.transfer_weights(half, full)
            models.freeze_shared(full)
            _check_output_dtype(full, config)
            trainer = make_decoder_trainer(full, config.decoder_loss, scale)
            trainer.compile(optimizer=make_optimizer(config), jit_compile=bool(config.xla))
        verify_transfer(half, full, images, stage="before", batch_size=config.batch_size,
                        out=out / "transfer_check_before.json")
        files = _run(trainer, data_dir, out, config, state, "image", callbacks, export=full)
        best = load_model(files["best"], kind="full")
        report = verify_transfer(half, best, images, stage="after",
                                 batch_size=config.batch_size, raise_on_failure=False)
        report["model"] = str(files["best"])
        report["half"] = str(half_path)
        write_json(out / "transfer_check.json", report)
        if not report["ok"]:
            raise TransferCheckError(transfer_failure_message(report), report)
    summary = _summary("full", out, state, initial_epoch, len(paths))
    summary.update({"transfer_check": str(out / "transfer_check.json"),
                    "max_abs_prob_diff": report["max_abs_prob_diff"]})
    return summary

