"""Training options: `TrainConfig`, the one source of their defaults (the command line's help
and the workflow schema's defaults are read from it or checked against it), immutable and
validated field by field with errors that name the option.

Defaults are the paper's: batch 16, 50 epochs, 224 px, the paper's FC-DenseNet, Adadelta with
the old Keras default learning rate 1.0 (Keras 3's is 0.001), ReduceLROnPlateau on the loss
(factor sqrt(0.1), patience 10, min_lr 1e-5), the original augmentation with p = 0.5.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["OPTIMIZERS", "ReduceLRConfig", "TrainConfig", "load_config", "config_fingerprint",
           "default_of"]

OPTIMIZERS = ("adadelta", "adam", "sgd", "rmsprop")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(condition: bool, key: str, expected: str, value: Any) -> None:
    if not condition:
        raise ValueError(f"training option {key}: expected {expected}, got {value!r}")


@dataclass(frozen=True)
class ReduceLRConfig:
    """``keras.callbacks.ReduceLROnPlateau`` settings (the original's)."""

    enabled: bool = True
    monitor: str = "loss"
    factor: float = math.sqrt(0.1)
    patience: int = 10
    min_lr: float = 1e-5

    def __post_init__(self) -> None:
        _check(isinstance(self.enabled, bool), "reduce_lr.enabled", "true or false", self.enabled)
        _check(isinstance(self.monitor, str) and bool(self.monitor), "reduce_lr.monitor",
               "a metric name such as 'loss'", self.monitor)
        _check(_is_number(self.factor) and 0 < self.factor < 1, "reduce_lr.factor",
               "a number in (0, 1)", self.factor)
        _check(_is_int(self.patience) and self.patience >= 1, "reduce_lr.patience",
               "an integer >= 1", self.patience)
        _check(_is_number(self.min_lr) and self.min_lr >= 0, "reduce_lr.min_lr",
               "a number >= 0", self.min_lr)


@dataclass(frozen=True)
class TrainConfig:
    """Options of one training stage (``hrcam train half`` / ``hrcam train full``).

    ``arch`` names an architecture preset of `hrcam.models` and ``arch_overrides`` changes
    single fields of it. ``decoder_upsampling`` and ``decoder_loss`` (term -> weight, see
    `hrcam.train.decoder`) choose the full stage's expansion network and objective; the
    defaults are the paper's (transposed convolutions, reconstruction only). ``val_split`` None: no validation (best weights by the training
    metric). ``cache``: False, True (decoded images in memory) or a file path prefix.
    Change a field with ``dataclasses.replace(config, epochs=5)``.
    """

    batch_size: int = 16
    epochs: int = 50
    im_size: int = 224
    arch: str = "paper"
    arch_overrides: Mapping[str, Any] = field(default_factory=dict)
    optimizer: str = "adadelta"
    learning_rate: float = 1.0
    reduce_lr: ReduceLRConfig = field(default_factory=ReduceLRConfig)
    seed: int = 0
    mixed_precision: bool = False
    xla: bool = False
    cache: bool | str = False
    balanced: bool = False
    augment: bool = True
    augment_probability: float = 0.5
    train_split: str = "train"
    val_split: str | None = "test"
    steps_per_epoch: int | None = None
    validation_steps: int | None = None
    shuffle_buffer: int | None = None
    check_images: int = 64
    verbose: int | None = None
    decoder_upsampling: str = "transpose"
    decoder_loss: Mapping[str, float] = field(default_factory=lambda: {"reconstruction": 1.0})

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # normalisations of a frozen dataclass, at construction only
        if isinstance(self.reduce_lr, Mapping):
            set_(self, "reduce_lr", _from_mapping(ReduceLRConfig, self.reduce_lr, "reduce_lr."))
        elif self.reduce_lr is None or self.reduce_lr is False:
            set_(self, "reduce_lr", ReduceLRConfig(enabled=False))
        elif self.reduce_lr is True:
            set_(self, "reduce_lr", ReduceLRConfig())
        _check(isinstance(self.reduce_lr, ReduceLRConfig), "reduce_lr",
               "a mapping of ReduceLROnPlateau settings", self.reduce_lr)
        if isinstance(self.val_split, str) and self.val_split.strip().lower() in ("", "none"):
            set_(self, "val_split", None)
        if isinstance(self.optimizer, str):
            set_(self, "optimizer", self.optimizer.lower())
        if self.arch_overrides is None:
            set_(self, "arch_overrides", {})
        _check(isinstance(self.arch_overrides, Mapping), "arch_overrides",
               "a mapping of architecture fields", self.arch_overrides)
        set_(self, "arch_overrides", dict(self.arch_overrides))
        if _is_int(self.learning_rate):
            set_(self, "learning_rate", float(self.learning_rate))
        if _is_int(self.augment_probability):
            set_(self, "augment_probability", float(self.augment_probability))
        for key in ("batch_size", "epochs", "im_size", "check_images"):
            value = getattr(self, key)
            _check(_is_int(value) and value >= 1, key, "an integer >= 1", value)
        _check(self.im_size % 16 == 0, "im_size", "a multiple of 16 (the model stride)",
               self.im_size)
        for key in ("steps_per_epoch", "validation_steps", "shuffle_buffer"):
            value = getattr(self, key)
            _check(value is None or (_is_int(value) and value >= 1), key,
                   "null or an integer >= 1", value)
        _check(_is_int(self.seed) and self.seed >= 0, "seed", "an integer >= 0", self.seed)
        _check(self.optimizer in OPTIMIZERS, "optimizer", f"one of {', '.join(OPTIMIZERS)}",
               self.optimizer)
        _check(_is_number(self.learning_rate) and self.learning_rate > 0, "learning_rate",
               "a number > 0", self.learning_rate)
        _check(_is_number(self.augment_probability) and 0 <= self.augment_probability <= 1,
               "augment_probability", "a number in [0, 1]", self.augment_probability)
        for key in ("mixed_precision", "xla", "balanced", "augment"):
            _check(isinstance(getattr(self, key), bool), key, "true or false", getattr(self, key))
        _check(isinstance(self.cache, (bool, str)), "cache", "true, false or a file path prefix",
               self.cache)
        _check(isinstance(self.arch, str) and bool(self.arch), "arch", "a preset name",
               self.arch)
        for key in ("train_split",):
            _check(isinstance(getattr(self, key), str) and bool(getattr(self, key)), key,
                   "a split folder name", getattr(self, key))
        _check(self.val_split is None or isinstance(self.val_split, str), "val_split",
               "a split folder name or none", self.val_split)
        _check(self.verbose is None or self.verbose in (0, 1, 2), "verbose", "0, 1, 2 or null",
               self.verbose)
        from hrcam.models import DECODER_UPSAMPLING
        from hrcam.train.decoder import parse_decoder_loss

        _check(self.decoder_upsampling in DECODER_UPSAMPLING, "decoder_upsampling",
               f"one of {', '.join(DECODER_UPSAMPLING)}", self.decoder_upsampling)
        try:
            set_(self, "decoder_loss", parse_decoder_loss(self.decoder_loss))
        except ValueError as error:
            raise ValueError(f"training option {error}") from None

    def to_dict(self) -> dict[str, Any]:
        """Every option as plain JSON-able values."""
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainConfig:
        """A config from a mapping of option names (an unknown name is an error naming it)."""
        return _from_mapping(cls, values, "")

    def save(self, path: str | os.PathLike, **extra: Any) -> None:
        """Write the options (and ``extra`` facts such as the stage) as sorted JSON."""
        payload = {**self.to_dict(), **extra}
        Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n",
                              encoding="utf-8")


#: The options that do not change what is trained (so a resumed run may differ in them).
NON_RESULT_OPTIONS = ("verbose", "check_images")


def config_fingerprint(config: TrainConfig, **extra: Any) -> str:
    """A stable digest of every option that changes the training result (plus ``extra``), so a
    resumed run can tell whether a saved training state belongs to the same run."""
    import hashlib

    payload = {k: v for k, v in config.to_dict().items() if k not in NON_RESULT_OPTIONS}
    payload.update(extra)
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _from_mapping(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, values)) - names)
    if unknown:
        raise ValueError(f"unknown training option(s) {', '.join(prefix + u for u in unknown)} "
                         f"(known: {', '.join(sorted(prefix + n for n in names))})")
    return cls(**dict(values))


def default_of(name: str) -> Any:
    """The default value of a `TrainConfig` option (``"reduce_lr.patience"`` for nested ones)."""
    config = TrainConfig()
    value: Any = config
    for part in name.split("."):
        value = getattr(value, part)
    return value


def load_config(path: str | os.PathLike | None = None, **overrides: Any) -> TrainConfig:
    """The training config: defaults, then the YAML file ``path``, then non-``None`` overrides.

    ``reduce_lr`` overrides given as a mapping are merged into the file's ``reduce_lr``;
    ``arch_overrides`` likewise. An unknown key, a wrong type or a malformed file raises a
    ValueError naming the file and the key.
    """
    values: dict[str, Any] = {}
    if path is not None:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"--config {path}: no such file")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ValueError(f"--config {path}: not valid YAML{where}: {problem}") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"--config {path}: not readable ({error})") from None
        if not isinstance(loaded, Mapping):
            raise ValueError(f"--config {path}: a training config must be a mapping of options, "
                             f"got {type(loaded).__name__}")
        values.update(loaded)
    for key, value in overrides.items():
        if value is None:
            continue
        if key in ("reduce_lr", "arch_overrides") and isinstance(value, Mapping):
            base = values.get(key) or {}
            if not isinstance(base, Mapping):
                base = {} if key == "arch_overrides" else {"enabled": bool(base)}
            values[key] = {**base, **value}
        else:
            values[key] = value
    try:
        return TrainConfig.from_mapping(values)
    except ValueError as error:
        raise ValueError(f"--config {path}: {error}" if path is not None else str(error)) \
            from None
