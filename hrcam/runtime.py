"""TensorFlow runtime settings shared by every command that runs a model: thread counts (so a job
uses the cores the scheduler gave it, not every core of the node), op determinism, the mixed-
precision policy and the distribution strategy."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["available_cpus", "configure_tensorflow", "precision_policy", "distribution_strategy"]


def available_cpus() -> int:
    """CPUs this process may use (respects affinity masks set by schedulers such as SLURM)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def configure_tensorflow(threads: int | None = None, deterministic: bool = False) -> None:
    """Apply the process-wide TensorFlow settings; call before any TensorFlow op runs.

    ``threads``: intra- and inter-op thread pools of TensorFlow (None leaves TensorFlow's
    default, every core of the machine). ``deterministic``: TensorFlow op determinism, so the
    same inputs give bit-identical results (and ops without a deterministic kernel raise).
    Settings that can no longer change (TensorFlow already initialised) are left as they are
    with a debug message.
    """
    import tensorflow as tf

    if threads is not None:
        if isinstance(threads, bool) or int(threads) != threads or int(threads) < 1:
            raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
        for setter, getter in (
            (tf.config.threading.set_intra_op_parallelism_threads,
             tf.config.threading.get_intra_op_parallelism_threads),
            (tf.config.threading.set_inter_op_parallelism_threads,
             tf.config.threading.get_inter_op_parallelism_threads),
        ):
            if getter() == int(threads):
                continue
            try:
                setter(int(threads))
            except RuntimeError as error:  # TensorFlow is already initialised
                log.debug("thread count not changed: %s", error)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


@contextlib.contextmanager
def precision_policy(mixed: bool) -> Iterator[None]:
    """Keras' global dtype policy ``mixed_float16`` (or ``float32``) inside the block, restored
    on exit."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def distribution_strategy() -> Any:
    """``MirroredStrategy`` over all visible GPUs, or TensorFlow's default strategy on CPU."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        strategy = tf.distribute.MirroredStrategy()
        log.info("training on %d GPU(s) with MirroredStrategy", strategy.num_replicas_in_sync)
        return strategy
    log.info("no GPU visible: running on CPU")
    return tf.distribute.get_strategy()
