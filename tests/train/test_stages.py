"""The two training stages on a tiny model: outputs, reproducibility (the same config and seed
give bit-identical weights), resume after a kill (bit-identical to an uninterrupted run, every
epoch once in history.csv, also after the outputs were deleted as Snakemake deletes a failed
job's outputs), damaged or foreign training states, and the full stage's transfer check."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import keras  # noqa: E402

import hrcam.cli  # noqa: E402
from hrcam import train as T  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

IM = 32
TINY = {"batch_size": 8, "epochs": 3, "im_size": IM, "arch": "tiny", "optimizer": "adam",
        "learning_rate": 0.01, "augment": True, "verbose": 0, "check_images": 12, "seed": 0,
        "arch_overrides": {"dropout": 0.2},  # dropout's random masks must resume too
        "reduce_lr": {"patience": 1, "factor": 0.5}}  # and a learning-rate cut at the kill
OUTPUTS = ("best.keras", "last.keras", "history.csv", "classes.json", "train_config.json")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from hrcam.data import generate_synthetic

    out = tmp_path_factory.mktemp("data") / "set"
    generate_synthetic(out, classes=3, per_class=16, im_size=IM, test_fraction=0.25, seed=0)
    return out


class _Kill(keras.callbacks.Callback):
    """Simulates a kill at the end of epoch ``epoch`` (after the state was committed)."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt(f"killed after epoch {epoch}")


def _history(out: Path) -> list[dict]:
    with (out / "history.csv").open() as handle:
        return list(csv.DictReader(handle))


def _weights(path: Path) -> list[np.ndarray]:
    return keras.models.load_model(path, compile=False).get_weights()


def _same_weights(a: Path, b: Path) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(_weights(a), _weights(b)))


@pytest.fixture(scope="module")
def half_runs(data_dir, tmp_path_factory):
    """An uninterrupted run; the same run again; and one killed after epoch 1 whose outputs
    are then deleted (as Snakemake does) before it is resumed through the command line."""
    root = tmp_path_factory.mktemp("half")
    config = T.TrainConfig(**TINY)
    T.train_half(data_dir, root / "straight", config)
    T.train_half(data_dir, root / "again", config)
    killed = root / "killed"
    with pytest.raises(KeyboardInterrupt):
        T.train_half(data_dir, killed, config, callbacks=[_Kill(1)])
    at_kill = {"state": (killed / T.STATE_DIR / "state.json").is_file(),
               "history": [int(r["epoch"]) for r in _history(killed)],
               "best": (killed / "best.keras").exists()}
    for name in ("history.csv", "classes.json"):
        (killed / name).unlink()
    import yaml

    cfg = root / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    rc = hrcam.cli.main(["train", "half", "--data", str(data_dir), "--out", str(killed),
                         "--config", str(cfg)])
    return {"root": root, "straight": root / "straight", "again": root / "again",
            "killed": killed, "at_kill": at_kill, "rc": rc}


def test_half_run_writes_outputs_and_learns(half_runs):
    out = half_runs["straight"]
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    assert not (out / T.STATE_DIR).exists()
    if T.tensorboard_available():
        assert any((out / "tensorboard").rglob("events.out.tfevents.*"))
    rows = _history(out)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(rows[0])
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    classes = json.loads((out / "classes.json").read_text())
    assert [c["index"] for c in classes] == [0, 1, 2]
    assert [c["id"] for c in classes] == sorted(c["id"] for c in classes)
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["stage"] == "half" and saved["arch"] == "tiny"
    assert saved["resolved_arch"]["growth_rate"] == 4
    best_epoch = int(np.argmax([float(r["val_accuracy"]) for r in rows]))
    assert keras.models.load_model(out / "best.keras", compile=False).output_shape == (None, 3)
    if best_epoch != 2:
        assert not _same_weights(out / "best.keras", out / "last.keras")


def test_same_config_and_seed_give_identical_weights(half_runs):
    for name in ("best.keras", "last.keras"):
        assert _same_weights(half_runs["straight"] / name, half_runs["again"] / name), name
    assert (half_runs["straight"] / "history.csv").read_bytes() == \
        (half_runs["again"] / "history.csv").read_bytes()


def test_killed_run_resumes_like_an_uninterrupted_one(half_runs):
    at_kill = half_runs["at_kill"]
    assert at_kill["state"] and at_kill["history"] == [0, 1] and not at_kill["best"]
    assert half_runs["rc"] == 0
    killed, straight = half_runs["killed"], half_runs["straight"]
    assert [int(r["epoch"]) for r in _history(killed)] == [0, 1, 2]  # every epoch once
    assert (killed / "history.csv").read_bytes() == (straight / "history.csv").read_bytes()
    for name in ("best.keras", "last.keras"):
        assert _same_weights(killed / name, straight / name), name
    assert not (killed / T.STATE_DIR).exists()


def test_finished_state_materialises_outputs_without_training(data_dir, tmp_path):
    config = T.TrainConfig(**{**TINY, "epochs": 2})
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):  # killed after the last epoch's commit
        T.train_half(data_dir, out, config, callbacks=[_Kill(1)])
    summary = T.train_half(data_dir, out, config)
    assert summary["initial_epoch"] == 2
    assert [int(r["epoch"]) for r in _history(out)] == [0, 1]
    assert (out / "best.keras").is_file() and (out / "last.keras").is_file()


def test_damaged_or_foreign_state_is_discarded(data_dir, tmp_path, caplog):
    config = T.TrainConfig(**{**TINY, "epochs": 2})
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        T.train_half(data_dir, out, config, callbacks=[_Kill(0)])
    latest = next((out / T.STATE_DIR).glob("latest-*.weights.h5"))
    latest.write_bytes(latest.read_bytes()[:100])  # truncated
    summary = T.train_half(data_dir, out, config)
    assert summary["initial_epoch"] == 0
    assert "damaged" in caplog.text and str(latest) in caplog.text
    caplog.clear()
    with pytest.raises(KeyboardInterrupt):
        T.train_half(data_dir, out, config, callbacks=[_Kill(0)])
    summary = T.train_half(data_dir, out, T.TrainConfig(**{**TINY, "epochs": 2, "seed": 1}))
    assert summary["initial_epoch"] == 0 and "another configuration" in caplog.text


def test_restart_flag_discards_the_state(data_dir, tmp_path):
    import yaml

    out = tmp_path / "run"
    config = T.TrainConfig(**{**TINY, "epochs": 2})
    with pytest.raises(KeyboardInterrupt):
        T.train_half(data_dir, out, config, callbacks=[_Kill(0)])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "epochs": 2}))
    assert hrcam.cli.main(["train", "half", "--data", str(data_dir), "--out", str(out),
                           "--config", str(cfg), "--restart"]) == 0
    assert [int(r["epoch"]) for r in _history(out)] == [0, 1]


# ----------------------------------------------------------------------------------------------
# the full model and the transfer check
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_run(data_dir, half_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    config = T.TrainConfig(**{**TINY, "epochs": 2, "im_size": 64, "arch": "small"})
    summary = T.train_full(data_dir, out, half_runs["straight"] / "best.keras", config)
    return {"out": out, "summary": summary, "config": config}


def test_full_run_transfer_check_passes(full_run):
    out = full_run["out"]
    for name in (*OUTPUTS, "transfer_check.json", "transfer_check_before.json"):
        assert (out / name).is_file(), name
    for name, stage in (("transfer_check_before.json", "before"),
                        ("transfer_check.json", "after")):
        report = json.loads((out / name).read_text())
        assert report["ok"] is True and report["stage"] == stage
        assert report["same_classes"] is True and report["different_layers"] == []
        assert report["max_abs_prob_diff"] <= 1e-6 and report["n_images"] == 12
        assert report["weights"]["identical"] and report["weights"]["layers_checked"] > 5
    rows = _history(out)
    assert len(rows) == 2 and "val_loss" in rows[0]
    saved = json.loads((out / "train_config.json").read_text())
    # the half model's architecture and image size, whatever the config said
    assert saved["stage"] == "full" and saved["arch"] == "tiny" and saved["im_size"] == IM
    assert saved["half_model"].endswith("best.keras")
    assert full_run["config"].arch == "small"  # the caller's config is not changed
    full = keras.models.load_model(out / "best.keras", compile=False)
    assert "main_output" in full.output_names


def test_transfer_check_fails_on_corruption(data_dir, half_runs, full_run, tmp_path):
    half_path = half_runs["straight"] / "best.keras"
    half = keras.models.load_model(half_path, compile=False)
    full = keras.models.load_model(full_run["out"] / "best.keras", compile=False)
    images, _ = T.check_images(data_dir, "test", 8, IM)
    assert T.verify_transfer(half, full, images, stage="check")["ok"]
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
    rc = hrcam.cli.main(["train", "check", "--half", str(half_path), "--full", str(bad),
                         "--data", str(data_dir), "--out", str(report), "--n-images", "8"])
    assert rc == 1
    result = json.loads(report.read_text())
    assert result["ok"] is False and "conv_aux" in result["different_layers"]
    rc = hrcam.cli.main(["train", "check", "--half", str(half_path), "--full",
                         str(full_run["out"] / "best.keras"), "--data", str(data_dir), "--out",
                         str(report), "--n-images", "8"])
    assert rc == 0 and json.loads(report.read_text())["ok"] is True


def test_models_of_the_wrong_kind_are_refused(data_dir, half_runs, full_run, tmp_path, capsys):
    half_path = half_runs["straight"] / "best.keras"
    full_path = full_run["out"] / "best.keras"
    cases = [
        ["train", "check", "--half", str(full_path), "--full", str(half_path), "--data",
         str(data_dir)],
        ["train", "full", "--half", str(full_path), "--data", str(data_dir), "--out",
         str(tmp_path / "never"), "--epochs", "1"],
    ]
    for argv in cases:
        assert hrcam.cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "is a full model, but a half model is expected" in err and "Traceback" not in err
    assert not (tmp_path / "never").exists()


def test_killed_full_run_resumes_like_an_uninterrupted_one(data_dir, half_runs, full_run,
                                                           tmp_path):
    """The decoder trainer wraps the full model; its weights and optimizer state must load
    from the training state after a kill (a Snakemake rerun or a SLURM retry)."""
    half_path = half_runs["straight"] / "best.keras"
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        T.train_full(data_dir, out, half_path, full_run["config"], callbacks=[_Kill(0)])
    assert (out / T.STATE_DIR / "state.json").is_file() and not (out / "best.keras").exists()
    summary = T.train_full(data_dir, out, half_path, full_run["config"])
    assert summary["initial_epoch"] == 1
    assert (out / "history.csv").read_bytes() == (full_run["out"] / "history.csv").read_bytes()
    for name in ("best.keras", "last.keras"):
        assert _same_weights(out / name, full_run["out"] / name), name
    assert json.loads((out / "transfer_check.json").read_text())["ok"] is True
