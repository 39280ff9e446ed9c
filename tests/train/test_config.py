"""`TrainConfig`: the paper's defaults, immutability, YAML + flags, and errors that name the
option (unknown keys, wrong types, impossible values, malformed YAML) -- through the library
and as usage errors of `hrcam train` (exit 2, no traceback)."""

from __future__ import annotations

import dataclasses

import pytest

from hrcam import train as T


def test_defaults_are_the_papers_and_the_config_is_immutable():
    default = T.TrainConfig()
    assert (default.optimizer, default.learning_rate, default.batch_size, default.epochs) == \
        ("adadelta", 1.0, 16, 50)
    assert abs(default.reduce_lr.factor - 0.1 ** 0.5) < 1e-12
    assert T.default_of("reduce_lr.patience") == 10 and T.default_of("im_size") == 224
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.epochs = 3
    changed = dataclasses.replace(default, epochs=3)
    assert changed.epochs == 3 and default.epochs == 50


def test_yaml_flags_and_unknown_keys(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 7\nbatch_size: 4\nreduce_lr: {patience: 3}\n")
    config = T.load_config(cfg, batch_size=2, epochs=None)
    assert (config.epochs, config.batch_size) == (7, 2)
    assert config.reduce_lr.patience == 3 and config.reduce_lr.min_lr == 1e-5
    cfg.write_text("epochs: 7\nbatch_sise: 4\n")
    with pytest.raises(ValueError, match="batch_sise"):
        T.load_config(cfg)
    cfg.write_text("reduce_lr: {patiense: 3}\n")
    with pytest.raises(ValueError, match="reduce_lr.patiense"):
        T.load_config(cfg)


@pytest.mark.parametrize("text, key", [
    ("epochs: ten\n", "epochs"),
    ("learning_rate: -1\n", "learning_rate"),
    ("batch_size: 0\n", "batch_size"),
    ("im_size: 100\n", "im_size"),
    ("optimizer: lbfgs\n", "optimizer"),
    ("augment_probability: 1.5\n", "augment_probability"),
    ("augment: maybe\n", "augment"),
    ("reduce_lr: {factor: 2}\n", "reduce_lr.factor"),
    ("seed: -3\n", "seed"),
])
def test_wrong_values_name_the_option(tmp_path, text, key):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ValueError, match=rf"training option {key}: expected"):
        T.load_config(cfg)


def test_malformed_yaml_and_missing_file(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("epochs: [1, 2\nbatch_size: 4\n")
    with pytest.raises(ValueError, match=r"not valid YAML \(line \d+"):
        T.load_config(cfg)
    cfg.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        T.load_config(cfg)
    with pytest.raises(FileNotFoundError, match="no such file"):
        T.load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("argv, message", [
    (["--config", "{bad}"], "not valid YAML"),
    (["--config", "{unknown}"], "batch_sise"),
    (["--learning-rate", "-1"], "learning_rate"),
    (["--epochs", "0"], "--epochs"),
    (["--batch-size", "x"], "--batch-size"),
])
def test_cli_reports_bad_options_as_usage_errors(tmp_path, capsys, argv, message):
    from hrcam.cli import main

    (tmp_path / "bad.yaml").write_text("epochs: [1\n")
    (tmp_path / "unknown.yaml").write_text("batch_sise: 4\n")
    argv = [a.replace("{bad}", str(tmp_path / "bad.yaml"))
            .replace("{unknown}", str(tmp_path / "unknown.yaml")) for a in argv]
    try:
        rc = main(["train", "half", "--data", str(tmp_path), "--out", str(tmp_path / "o"), *argv])
    except SystemExit as exit_info:  # argparse's own usage errors
        rc = exit_info.code
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
