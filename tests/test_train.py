"""Tests of hrcam.train and `hrcam train`: augmentation, input pipeline, configuration, a tiny
half run (killed after one epoch and resumed), a tiny full run with the transfer check, and the
check failing on a corrupted transfer."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

import hrcam.cli  # noqa: E402
from hrcam import train as T  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

IM = 32
TINY = {"batch_size": 8, "epochs": 3, "im_size": IM, "arch": "tiny", "optimizer": "adam",
        "learning_rate": 0.01, "augment": False, "verbose": 0, "check_images": 12, "seed": 0}


def cli_main(argv):
    """`hrcam ...` through the real dispatcher, with only the `train` subcommands registered
    (these tests do not depend on the other subcommand modules)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hrcam.cli, "SUBCOMMAND_MODULES", ("train",))
        return hrcam.cli.main(argv)


# ----------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from hrcam.data import generate_synthetic

    out = tmp_path_factory.mktemp("data")
    generate_synthetic(out, classes=3, per_class=16, im_size=IM, test_fraction=0.25, seed=0)
    return out


class _Kill(keras.callbacks.Callback):
    """Simulates a kill right after the first epoch was finished (and backed up)."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise KeyboardInterrupt("killed after epoch 1")


@pytest.fixture(scope="module")
def half_run(data_dir, tmp_path_factory):
    """A tiny half run killed after epoch 1, then resumed with the same command (the CLI)."""
    out = tmp_path_factory.mktemp("half")
    cfg_file = out.parent / "half_config.yaml"
    import yaml

    cfg_file.write_text(yaml.safe_dump(TINY))
    config = T.load_config(cfg_file)
    with pytest.raises(KeyboardInterrupt):
        T.train_half(data_dir, out, config, callbacks=[_Kill()])
    killed = {
        "backup": (out / "backup").is_dir(),
        "history_rows": _history(out)["rows"],
        "best_exists": (out / "best.keras").exists(),
    }
    rc = cli_main(["train", "half", "--data", str(data_dir), "--out", str(out),
                   "--config", str(cfg_file)])
    return {"out": out, "killed": killed, "rc": rc, "config": cfg_file}


@pytest.fixture(scope="module")
def full_run(data_dir, half_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    config = T.TrainConfig(**{**TINY, "epochs": 2})
    summary = T.train_full(data_dir, out, half_run["out"] / "best.keras", config)
    return {"out": out, "summary": summary}


def _history(out: Path) -> dict:
    path = out / "history.csv"
    if not path.exists():
        return {"rows": []}
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    return {"rows": rows}


# ----------------------------------------------------------------------------------------------
# augmentation
# ----------------------------------------------------------------------------------------------


def _batch(n=6, size=IM, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, size, size, 3)).astype(np.float32)
    x[:, : size // 4] = 0  # asymmetric, so that a flip changes the image
    return x


def test_augment_identity_when_probability_zero():
    x = _batch()
    out = T.augment_batch(x, T.AugmentConfig.with_probability(0.0)).numpy()
    assert np.array_equal(out, x)
    # the pipeline-level switch too: probability 0 on the affine and the flip
    out = T.augment_batch(x, T.AugmentConfig(affine_probability=0, flip_probability=0))
    assert np.array_equal(out.numpy(), x)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_augment_keeps_shape_dtype_and_range(dtype):
    x = _batch().astype(dtype)
    out = T.augment_batch(tf.constant(x), T.AugmentConfig.with_probability(1.0)).numpy()
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 255
    assert np.isfinite(out.astype(np.float64)).all()


def test_flip_changes_images_when_probability_one():
    x = _batch()
    out = T.augment_batch(x, T.AugmentConfig(affine_probability=0, flip_probability=1)).numpy()
    assert np.array_equal(out, x[:, :, ::-1])


def test_affine_changes_images_when_probability_one():
    x = _batch()
    cfg = T.AugmentConfig(affine_probability=1, flip_probability=0)
    out = T.augment_batch(x, cfg).numpy()
    assert all(not np.array_equal(out[i], x[i]) for i in range(len(x)))
    # constant 0 fill: rotations of up to 180 deg leave black corners in most images
    assert (out == 0).mean() > (x == 0).mean()


def test_affine_matrix_geometry():
    # a pure 90-degree rotation about the centre maps the top-right pixel to bottom-right
    cfg = T.AugmentConfig(affine_probability=1, scale=(1, 1), translate=(0, 0),
                          rotate=(90, 90), shear=(0, 0), flip_probability=0,
                          interpolations=("nearest",))
    img = np.zeros((1, 9, 9, 1), np.float32)
    img[0, 0, 8] = 1
    out = T.augment_batch(img, cfg).numpy()
    assert np.argwhere(out[0, :, :, 0] > 0).tolist() == [[8, 8]]
    # a pure translation by +20% of the width moves content right
    cfg = T.AugmentConfig(affine_probability=1, scale=(1, 1), translate=(0.2, 0.2),
                          rotate=(0, 0), shear=(0, 0), flip_probability=0,
                          interpolations=("nearest",))
    img = np.zeros((1, 10, 10, 1), np.float32)
    img[0, 0, 0] = 1
    out = T.augment_batch(img, cfg).numpy()
    assert np.argwhere(out[0, :, :, 0] > 0).tolist() == [[2, 2]]


def test_augment_config_validation():
    with pytest.raises(ValueError, match="affine_probability"):
        T.AugmentConfig(affine_probability=1.5)
    with pytest.raises(ValueError, match="interpolations"):
        T.AugmentConfig(interpolations=("cubic",))


# ----------------------------------------------------------------------------------------------
# input pipeline and configuration
# ----------------------------------------------------------------------------------------------


def test_make_dataset_eval_is_ordered_one_hot(data_dir):
    paths, labels, class_ids = T.list_split(data_dir, "test")
    ds = T.make_dataset(data_dir, "test", im_size=IM, batch_size=5, training=False)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert x.shape == (len(paths), IM, IM, 3) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 255 and x.max() > 1
    assert y.shape == (len(paths), len(class_ids))
    assert y.argmax(1).tolist() == labels
    # deterministic: a second pass gives the same images
    x2 = np.concatenate([b.numpy() for b, _ in ds])
    assert np.array_equal(x, x2)


def test_make_dataset_targets_resize_and_balance(data_dir):
    ds = T.make_dataset(data_dir, "train", im_size=16, batch_size=4, training=True,
                        augment=True, target="reconstruction", cache=True)
    x, y = next(iter(ds))
    assert x.shape == (4, 16, 16, 3)
    assert set(y) == {"predictions", "main_output"}
    np.testing.assert_allclose(y["main_output"].numpy(), x.numpy() / 255.0, rtol=1e-6)
    with pytest.raises(ValueError, match="target"):
        T.make_dataset(data_dir, "train", target="nope")


def test_balanced_sampling_oversamples_small_class(data_dir, tmp_path):
    import shutil

    skewed = tmp_path / "skewed"
    shutil.copytree(data_dir / "train", skewed / "train")
    small = sorted((skewed / "train").iterdir())[0]
    for path in sorted(small.iterdir())[2:]:
        path.unlink()  # class 0 keeps 2 images, the others about 12
    _, labels, _ = T.list_split(skewed, "train")
    assert np.bincount(labels)[0] == 2

    def class_counts(balanced):
        ds = T.make_dataset(skewed, "train", im_size=16, batch_size=300, training=True,
                            augment=False, balanced=balanced, target="index", repeat=True)
        return np.bincount(next(iter(ds))[1].numpy(), minlength=3)

    assert class_counts(False)[0] < 60
    assert class_counts(True).min() > 60  # about 100 each
def test_config_yaml_flags_and_unknown_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 7\nbatch_size: 4\nreduce_lr: {patience: 3}\n")
    config = T.load_config(cfg, batch_size=2, epochs=None)
    assert (config.epochs, config.batch_size) == (7, 2)
    assert config.reduce_lr.patience == 3 and config.reduce_lr.min_lr == 1e-5
    default = T.TrainConfig()
    assert (default.optimizer, default.learning_rate, default.batch_size, default.epochs) == \
        ("adadelta", 1.0, 16, 50)
    assert abs(default.reduce_lr.factor - 0.1 ** 0.5) < 1e-12
    cfg.write_text("epochs: 7\nbatch_sise: 4\n")
    with pytest.raises(ValueError, match="batch_sise"):
        T.load_config(cfg)
    cfg.write_text("reduce_lr: {patiense: 3}\n")
    with pytest.raises(ValueError, match="patiense"):
        T.load_config(cfg)
    # the command line reports it as a usage error (exit 2)
    rc = cli_main(["train", "half", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                   "--config", str(cfg)])
    assert rc == 2


# ----------------------------------------------------------------------------------------------
# the half model: tiny run, killed and resumed
# ----------------------------------------------------------------------------------------------


def test_half_run_killed_then_resumed(half_run):
    out = half_run["out"]
    killed = half_run["killed"]
    assert killed["backup"] and len(killed["history_rows"]) == 1
    assert half_run["rc"] == 0
    rows = _history(out)["rows"]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert not (out / "backup").exists()


def test_half_run_writes_outputs_and_learns(half_run):
    out = half_run["out"]
    for name in ("best.keras", "last.keras", "history.csv", "classes.json", "train_config.json"):
        assert (out / name).is_file(), name
    if T.tensorboard_available():
        assert any((out / "tensorboard").rglob("events.out.tfevents.*"))
    rows = _history(out)["rows"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(rows[0])
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < losses[0]
    classes = json.loads((out / "classes.json").read_text())
    assert [c["index"] for c in classes] == [0, 1, 2]
    assert [c["id"] for c in classes] == sorted(c["id"] for c in classes)
    assert all(set(c) == {"index", "id", "name"} for c in classes)
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["stage"] == "half" and saved["arch"] == "tiny"
    assert saved["resolved_arch"]["growth_rate"] == 4
    model = keras.models.load_model(out / "best.keras", compile=False)
    assert model.output_shape == (None, 3)


# ----------------------------------------------------------------------------------------------
# the full model and the transfer check
# ----------------------------------------------------------------------------------------------


def test_full_run_transfer_check_passes(full_run):
    out = full_run["out"]
    for name in ("best.keras", "last.keras", "history.csv", "classes.json", "train_config.json",
                 "transfer_check.json", "transfer_check_before.json"):
        assert (out / name).is_file(), name
    for name, stage in (("transfer_check_before.json", "before"),
                        ("transfer_check.json", "after")):
        report = json.loads((out / name).read_text())
        assert report["ok"] is True and report["stage"] == stage
        assert report["same_classes"] is True and report["different_layers"] == []
        assert report["max_abs_prob_diff"] <= 1e-6 and report["n_images"] == 12
        assert report["weights"]["identical"] and report["weights"]["layers_checked"] > 5
    rows = _history(out)["rows"]
    assert len(rows) == 2 and "val_loss" in rows[0]
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["stage"] == "full" and saved["arch"] == "tiny"
    assert saved["half_model"].endswith("best.keras")
    full = keras.models.load_model(out / "best.keras", compile=False)
    assert "main_output" in full.output_names


def test_transfer_check_fails_on_corruption(data_dir, half_run, full_run, tmp_path):
    half = keras.models.load_model(half_run["out"] / "best.keras", compile=False)
    full = keras.models.load_model(full_run["out"] / "best.keras", compile=False)
    images, _ = T.check_images(data_dir, "test", 8, IM)
    ok = T.verify_transfer(half, full, images, stage="check")
    assert ok["ok"]
    # corrupt a BatchNorm moving mean (a weight no gradient touches) and the CAM layer
    bn = full.get_layer("initial_bn")
    weights = bn.get_weights()
    weights[2] = weights[2] + 0.5
    bn.set_weights(weights)
    aux = full.get_layer("conv_aux")
    aux.set_weights([w * 1.5 for w in aux.get_weights()])
    with pytest.raises(T.TransferCheckError, match="initial_bn") as info:
        T.verify_transfer(half, full, images, stage="check")
    assert "conv_aux" in str(info.value)
    assert info.value.report["different_layers"] == ["initial_bn", "conv_aux"]
    # the standalone command: exit 1 and a report naming the layers
    bad = tmp_path / "corrupted.keras"
    full.save(bad)
    report = tmp_path / "check.json"
    rc = cli_main(["train", "check", "--half", str(half_run["out"] / "best.keras"),
                   "--full", str(bad), "--data", str(data_dir), "--out", str(report),
                   "--n-images", "8"])
    assert rc == 1
    result = json.loads(report.read_text())
    assert result["ok"] is False and "conv_aux" in result["different_layers"]
    rc = cli_main(["train", "check", "--half", str(half_run["out"] / "best.keras"),
                   "--full", str(full_run["out"] / "best.keras"), "--data", str(data_dir),
                   "--out", str(report), "--n-images", "8"])
    assert rc == 0 and json.loads(report.read_text())["ok"] is True
