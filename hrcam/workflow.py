"""What the Snakemake workflow needs from its config beyond the JSON schema: the checks run at
start (every configured input exists, the splits and classes asked for will exist, the seeds are
distinct), and the command-line flags the rules pass to the ``hrcam`` commands, built in a
canonical order so that reordering keys in a config file never changes a rule's params (and so
never reruns a job).

No TensorFlow here; `workflow/rules/common.smk` calls these functions and only wires.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "SOURCES", "flags", "dataset_name", "image_size", "seeds",
           "train_flags", "synthetic_flags", "decoder_flags", "variant_names", "variant_flags", "imagenet_wnids", "expected_classes", "localization_data",
           "source_splits", "check_config"]

SOURCES = ("synthetic", "imagenet", "folder")


class ConfigError(ValueError):
    """An invalid workflow config; the message names the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"Invalid config: {key}: {message}")
        self.key = key


def flags(options: Mapping[str, Any], only: Iterable[str] | None = None,
          switches: Iterable[str] = ()) -> str:
    """Command-line flags for a dict of options, keys in sorted order: ``--key value`` for
    every value that is not None (underscores become dashes), ``--key``/``--no-key`` for
    booleans (``--key`` or nothing for the keys in ``switches``), ``--key a b`` for lists."""
    keep = None if only is None else set(only)
    switches = set(switches)
    parts = []
    for key in sorted(options):
        value = options[key]
        if keep is not None and key not in keep:
            continue
        if value is None or (isinstance(value, (list, tuple)) and not value):
            continue
        name = key.replace("_", "-")
        if isinstance(value, bool):
            if value or key not in switches:
                parts.append(f"--{name}" if value else f"--no-{name}")
        elif isinstance(value, (list, tuple)):
            parts.append(f"--{name} " + " ".join(shlex.quote(str(item)) for item in value))
        else:
            parts.append(f"--{name} {shlex.quote(str(value))}")
    return " ".join(parts)


def synthetic_flags(config: Mapping[str, Any]) -> str:
    """Flags of ``hrcam prepare synthetic`` from ``data.synthetic`` (``--size-range LO,HI``)."""
    options = dict(config["data"]["synthetic"])
    size_range = options.pop("size_range", None)
    extra = "" if size_range is None else " --size-range " + ",".join(map(str, size_range))
    return flags(options) + extra


def dataset_name(config: Mapping[str, Any]) -> str:
    """The prepared dataset's folder name under ``paths.resources``."""
    return config["data"]["name"] or config["run"]


def image_size(config: Mapping[str, Any]) -> int:
    """Side of the prepared images, which the models are built for."""
    return int(config["data"][config["data"]["source"]]["im_size"])


def seeds(config: Mapping[str, Any]) -> list[int]:
    """The training seeds of the run (one training and evaluation per seed)."""
    return [int(s) for s in config["seeds"]]


def train_flags(config: Mapping[str, Any], stage: str, decoder: bool = True) -> str:
    """Flags of ``hrcam train half`` / ``hrcam train full`` from the ``train`` block (and the
    prepared image size); the seed is the rule's wildcard, not part of these flags. The full
    stage gets the main decoder's options (``train.decoder``) unless ``decoder`` is False."""
    train = config["train"]
    options: dict[str, Any] = {
        "im_size": image_size(config),
        "batch_size": train["batch_size"],
        "epochs": train["epochs"] if stage == "half" else (train["full_epochs"] or
                                                          train["epochs"]),
        "mixed_precision": train["mixed_precision"],
        "xla": train["xla"],
        "cache": train["cache"],
        "augment": train["augment"],
        "augment_probability": train["augment_probability"] if train["augment"] else None,
        "progress": "epoch",
    }
    extra: list[str] = []
    if stage == "half":
        arch = dict(train["arch"])
        options.update(arch=arch.pop("preset"), optimizer=train["optimizer"],
                       learning_rate=train["learning_rate"], balanced=train["balanced"])
        reduce_lr = train["reduce_lr"]
        if reduce_lr["enabled"]:
            options.update(reduce_lr_patience=reduce_lr["patience"],
                           reduce_lr_factor=reduce_lr["factor"], min_lr=reduce_lr["min_lr"])
        else:
            options["reduce_lr"] = False
        extra = [f"--arch-set {key}={value}" for key, value in sorted(arch.items())
                 if value is not None]
    elif decoder:
        extra = [decoder_flags(config["train"]["decoder"])]
    return " ".join([flags(options, switches=("cache",)), *extra])


def decoder_flags(decoder: Mapping[str, Any]) -> str:
    """``--decoder-upsampling`` and ``--decoder-loss`` of one decoder (``upsampling``, ``loss``),
    the loss terms in sorted order."""
    loss = ",".join(f"{name}={float(weight):g}" for name, weight in sorted(decoder["loss"].items()))
    return flags({"decoder_upsampling": decoder["upsampling"], "decoder_loss": loss})


def variant_names(config: Mapping[str, Any]) -> list[str]:
    """The names of the extra decoder variants (``train.decoder.variants``)."""
    return [v["name"] for v in config["train"]["decoder"]["variants"]]


def variant_flags(config: Mapping[str, Any], name: str) -> str:
    """``hrcam train full`` flags of one decoder variant: the full stage's flags with the
    variant's decoder."""
    for variant in config["train"]["decoder"]["variants"]:
        if variant["name"] == name:
            return " ".join([train_flags(config, "full", decoder=False),
                             decoder_flags(variant)])
    raise ConfigError("train.decoder.variants", f"no variant named {name!r}")


def imagenet_wnids(config: Mapping[str, Any]) -> list[str]:
    """The ImageNet classes to extract, one job each: the synsets file's first column, else the
    first ``data.imagenet.num_classes`` of the package's 398 animal synsets (sorted)."""
    imagenet = config["data"]["imagenet"]
    if imagenet["synsets"]:
        path = Path(imagenet["synsets"])
        lines = path.read_text(encoding="utf-8").splitlines()
        wnids = sorted({line.split()[0] for line in lines
                        if line.strip() and not line.lstrip().startswith("#")})
        if len(wnids) < 2:
            raise ConfigError("data.imagenet.synsets",
                              f"{str(path)!r} lists {len(wnids)} synset(s); a classifier needs "
                              "at least 2")
        return wnids
    from hrcam.data import animal_synsets

    wnids = sorted(wnid for wnid, _ in animal_synsets())
    if imagenet["num_classes"] > len(wnids):
        raise ConfigError("data.imagenet.num_classes",
                          f"{imagenet['num_classes']} > {len(wnids)} (the animal subset); list "
                          "the classes in data.imagenet.synsets instead")
    return wnids[: imagenet["num_classes"]]


def expected_classes(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``[(class id, name)]`` the prepared dataset will have, known before it exists."""
    source = config["data"]["source"]
    if source == "synthetic":
        from hrcam.data.synthetic import shape_names

        return [(name, name) for name in shape_names(config["data"]["synthetic"]["classes"])]
    if source == "folder":
        from hrcam.data.folder import class_ids, scan_folder

        src = config["data"]["folder"]["src"]
        units, _ = scan_folder(src)
        ids = class_ids({cls for _, cls in units}, src)
        return sorted((cid, folder) for folder, cid in ids.items())
    from hrcam.data import animal_synsets

    names = dict(animal_synsets())
    return [(wnid, names.get(wnid, wnid)) for wnid in imagenet_wnids(config)]


def source_splits(config: Mapping[str, Any]) -> set[str]:
    """The splits the prepared training dataset will have."""
    if config["data"]["source"] == "folder":
        src = Path(config["data"]["folder"]["src"])
        if (src / "train").is_dir() and (src / "test").is_dir() and (src / "val").is_dir():
            return {"train", "test", "val"}
    return {"train", "test"}


def localization_data(config: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(dataset kind, split)`` localization is evaluated on -- ``("data", "test")``: the
    training dataset's test split, ``("val", "val")``: the ImageNet validation set -- or None
    when it is off (``evaluate.localization`` false, or no annotations and not required)."""
    wanted = config["evaluate"]["localization"]
    if wanted is False:
        return None
    source = config["data"]["source"]
    if source == "synthetic":
        return ("data", "test")
    if source == "imagenet" and _imagenet_val(config):
        return ("val", "val")
    folder = config["data"]["folder"]
    if source == "folder" and (folder.get("boxes") or folder.get("masks")):
        return ("data", "test")
    if wanted:
        need = ("ImageNet validation boxes: set data.imagenet.val_tar (or val_dir) and "
                "data.imagenet.val_solution_csv (or val_bbox_xml)") if source == "imagenet" \
            else "annotations: set data.folder.boxes and/or data.folder.masks"
        raise ConfigError("evaluate.localization", f"true needs {need}")
    return None


def _imagenet_val(config: Mapping[str, Any]) -> bool:
    imagenet = config["data"]["imagenet"]
    return bool(imagenet["val_tar"] or imagenet["val_dir"])


def _check_path(key: str, value: str, kind: str = "any") -> None:
    path = Path(value)
    if not path.exists():
        raise ConfigError(key, f"{value!r} does not exist")
    if kind == "file" and not path.is_file():
        raise ConfigError(key, f"{value!r} is not a file")
    if kind == "dir" and not path.is_dir():
        raise ConfigError(key, f"{value!r} is not a folder")


def _one_of(block: Mapping[str, Any], prefix: str, keys: Sequence[str], why: str,
            required: bool = True) -> str | None:
    given = [key for key in keys if block.get(key)]
    names = " or ".join(f"{prefix}.{key}" for key in keys)
    if len(given) > 1:
        raise ConfigError(names, "set only one of them")
    if required and not given:
        raise ConfigError(names, f"one of them is required {why}")
    return given[0] if given else None


def _check_imagenet(config: Mapping[str, Any]) -> None:
    imagenet = config["data"]["imagenet"]
    train = _one_of(imagenet, "data.imagenet", ("train_tar", "train_dir"),
                    "when data.source is 'imagenet'")
    _check_path(f"data.imagenet.{train}", imagenet[train],
                "file" if train == "train_tar" else "dir")
    val = _one_of(imagenet, "data.imagenet", ("val_tar", "val_dir"), "", required=False)
    if val:
        _check_path(f"data.imagenet.{val}", imagenet[val], "file" if val == "val_tar" else "dir")
        labels = _one_of(imagenet, "data.imagenet", ("val_solution_csv", "val_bbox_xml"),
                         "with a validation set")
        _check_path(f"data.imagenet.{labels}", imagenet[labels],
                    "file" if labels == "val_solution_csv" else "any")
    for key in ("class_names", "synsets"):
        if imagenet[key]:
            _check_path(f"data.imagenet.{key}", imagenet[key], "file")
    imagenet_wnids(config)


def _check_folder(config: Mapping[str, Any]) -> None:
    folder = config["data"]["folder"]
    if not folder["src"]:
        raise ConfigError("data.folder.src", "required when data.source is 'folder'")
    _check_path("data.folder.src", folder["src"], "dir")
    try:
        expected_classes(config)
    except (ValueError, FileNotFoundError) as error:
        raise ConfigError("data.folder.src", str(error)) from None
    for key, kind in (("boxes", "file"), ("masks", "dir"), ("class_names", "file")):
        if folder.get(key):
            _check_path(f"data.folder.{key}", folder[key], kind)


def check_config(config: Mapping[str, Any]) -> None:
    """Every check the schema cannot express; raises `ConfigError` naming the key."""
    source = config["data"]["source"]
    if source == "imagenet":
        _check_imagenet(config)
    elif source == "folder":
        _check_folder(config)
    splits = source_splits(config)
    for key in ("evaluate", "render"):
        split = config[key]["split"]
        if split not in splits:
            raise ConfigError(f"{key}.split", f"{split!r}: the {source} dataset will have the "
                              f"splits {', '.join(sorted(splits))}")
    localization_data(config)
    wanted = [str(c) for c in config["render"]["classes"]]
    if wanted:
        known = expected_classes(config)
        tokens = {cid for cid, _ in known} | {name for _, name in known} | {
            str(i) for i in range(len(known))}
        unknown = [c for c in wanted if c not in tokens]
        if unknown:
            shown = ", ".join(cid if cid == name else f"{cid} ({name})" for cid, name in known[:12])
            raise ConfigError("render.classes", f"unknown class(es) {unknown}; the dataset's "
                              f"classes are {shown}{' ...' if len(known) > 12 else ''}")
    values = seeds(config)
    if len(set(values)) != len(values):
        raise ConfigError("seeds", f"{values}: every seed must be different")
    names = [config["train"]["decoder"]["name"], *variant_names(config)]
    if len(set(names)) != len(names):
        raise ConfigError("train.decoder.variants", f"every decoder needs its own name, got "
                          f"{names} (train.decoder.name first)")
    if variant_names(config) and not localization_data(config):
        raise ConfigError("train.decoder.variants", "decoder variants are compared by their "
                          "localization: they need a dataset with annotations")
    from hrcam.train.decoder import parse_decoder_loss

    for key, decoder in (("train.decoder", config["train"]["decoder"]),
                         *[(f"train.decoder.variants[{v['name']}]", v)
                           for v in config["train"]["decoder"]["variants"]]):
        try:
            parse_decoder_loss(decoder["loss"])
        except ValueError as error:
            raise ConfigError(f"{key}.loss", str(error)) from None
