"""`evaluate_classification` and `hrcam evaluate classification / compare` on a tiny model: the
result files, half and full models give identical numbers, and clear errors."""

from __future__ import annotations

import csv
import json

import pytest

from hrcam import evaluate as ev


def test_evaluate_classification_half_equals_full(tiny_run, capsys):
    from hrcam.cli import main

    out_half = tiny_run["root"] / "cls_half"
    out_full = tiny_run["root"] / "cls_full"
    m_half = ev.evaluate_classification(tiny_run["half"], tiny_run["data"], "test",
                                        batch_size=5, out_dir=out_half, progress=False)
    assert main(["evaluate", "classification", "--model", str(tiny_run["full"]), "--data",
                 str(tiny_run["data"]), "--out", str(out_full), "--batch-size", "3",
                 "--no-progress"]) == 0
    for out in (out_half, out_full):
        for name in ("metrics.json", "per_class.csv", "predictions.csv", "confusion.png"):
            assert (out / name).is_file(), name
    with open(out_half / "predictions.csv") as f:
        preds = list(csv.DictReader(f))
    assert len(preds) == m_half["num_images"] == 3 * 8 - len(
        list((tiny_run["data"] / "train").glob("*/*")))
    assert list(preds[0]) == ["relpath", "label", "predicted", "probability"]
    assert m_half["micro_f1"] == m_half["top1_accuracy"]
    with open(out_half / "per_class.csv") as f:
        assert len(list(csv.DictReader(f))) == 3
    a, b = out_half / "metrics.json", out_full / "metrics.json"
    assert main(["evaluate", "compare", str(a), str(b), "--out",
                 str(tiny_run["root"] / "cmp.json")]) == 0
    assert json.loads((tiny_run["root"] / "cmp.json").read_text())["identical"] is True
    changed = json.loads(b.read_text())
    changed["top1_accuracy"] += 0.01
    c = tiny_run["root"] / "changed.json"
    c.write_text(json.dumps(changed))
    assert main(["evaluate", "compare", str(a), str(c)]) == 1
    assert "top1_accuracy" in capsys.readouterr().err


def test_predictions_are_byte_identical_between_runs(tiny_run):
    first = tiny_run["root"] / "cls_a"
    second = tiny_run["root"] / "cls_b"
    for out in (first, second):
        ev.evaluate_classification(tiny_run["full"], tiny_run["data"], batch_size=4, out_dir=out,
                                   progress=False)
    for name in ("predictions.csv", "metrics.json", "per_class.csv"):
        assert (first / name).read_bytes() == (second / name).read_bytes()


@pytest.mark.parametrize("make, message", [
    (lambda root: root / "missing.keras", "not found"),
    (lambda root: _garbage(root / "garbage.keras"), "not a Keras model file"),
    (lambda root: _garbage(root / "garbage.weights.h5"), "not a Keras weights file"),
    (lambda root: _garbage(root / "model.pt"), "unsupported weights file"),
])
def test_cli_bad_model_files(tiny_run, capsys, make, message):
    from hrcam.cli import main

    model = make(tiny_run["root"])
    rc = main(["evaluate", "classification", "--model", str(model), "--data",
               str(tiny_run["data"]), "--out", str(tiny_run["root"] / "never")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert str(model) in err


def _garbage(path):
    path.write_bytes(b"not a model" * 20)
    return path
