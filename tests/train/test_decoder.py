"""The expansion network's variants on a tiny model: each loss term does what it says (trained
alone, it brings its own quantity down, measured from the layers' outputs, not from the training
code), the resize decoder has no transposed convolution, the variants are recorded and load
back, and the classifier stays bit-identical (the transfer check)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import keras  # noqa: E402

from hrcam import models  # noqa: E402
from hrcam import train as T  # noqa: E402
from hrcam.train.decoder import parse_decoder_loss  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

IM = 32


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from hrcam.data import generate_synthetic

    root = tmp_path_factory.mktemp("decoder")
    generate_synthetic(root / "data", classes=3, per_class=16, im_size=IM, test_fraction=0.25,
                       seed=0)
    keras.utils.set_random_seed(3)
    half = models.build_half_model(3, (IM, IM, 3), "tiny")
    half.save(root / "half.keras")
    images, _ = T.check_images(root / "data", "test", 12, IM)
    return {"root": root, "data": root / "data", "half": root / "half.keras",
            "images": images.astype(np.float32)}


def _quantities(full, images, scale):
    """Every term's quantity, computed from the full model's layer outputs with NumPy."""
    view = keras.Model(full.input, [full.get_layer(n).output for n in
                                    ("high_res_features", "conv_aux", "predictions",
                                     "main_output")])
    high, low, probs, recon = [np.asarray(a, np.float64) for a in view(images, training=False)]
    n, h, w, c = high.shape
    s = h // low.shape[1]
    pooled = high.reshape(n, h // s, s, w // s, s, c).mean(axis=(2, 4))
    kernel, bias = models.class_weights(full, bias=True)
    logits = scale * high.mean(axis=(1, 2)) @ kernel + bias
    q = np.exp(logits - logits.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    return {
        "reconstruction": float(np.mean((recon - images / 255.0) ** 2)),
        "cam_consistency": float(np.mean((pooled - low / scale) ** 2)),
        "classification": float(np.mean(np.sum(probs * np.log(probs / q), axis=1))),
        "smoothness": float(np.mean(np.abs(np.diff(high, axis=1)))
                            + np.mean(np.abs(np.diff(high, axis=2)))),
        "agreement": float(np.mean(q.argmax(1) == probs.argmax(1))),
    }


def _train(setup, name, upsampling, loss, epochs=4):
    out = setup["root"] / name
    config = T.TrainConfig(batch_size=8, epochs=epochs, im_size=IM, arch="tiny",
                           optimizer="adam", learning_rate=0.01, augment=False, verbose=0,
                           check_images=12, decoder_upsampling=upsampling, decoder_loss=loss)
    summary = T.train_full(setup["data"], out, setup["half"], config)
    return out, summary


@pytest.mark.parametrize("term", ["reconstruction", "cam_consistency", "classification",
                                  "smoothness"])
def test_each_term_brings_its_quantity_down(setup, term):
    out, summary = _train(setup, f"only_{term}", "resize", {term: 1.0})
    saved = json.loads((out / "train_config.json").read_text())
    scale = saved["decoder_scale"]
    assert scale > 0 and saved["decoder_loss"] == {term: 1.0}
    keras.utils.set_random_seed(0)  # the stage builds its decoder after seeding with 0
    before = models.build_full_model(3, (IM, IM, 3), saved["resolved_arch"])
    models.transfer_weights(keras.models.load_model(setup["half"], compile=False), before)
    after = keras.models.load_model(out / "last.keras", compile=False)
    q_before = _quantities(before, setup["images"], scale)
    q_after = _quantities(after, setup["images"], scale)
    assert q_after[term] < 0.7 * q_before[term], (term, q_before[term], q_after[term])
    assert summary["max_abs_prob_diff"] == 0.0  # the classifier is untouched
    history = (out / "history.csv").read_text().splitlines()[0]
    assert f"{term}_loss" in history and f"val_{term}_loss" in history
    if term == "classification":
        assert q_after["agreement"] >= q_before["agreement"]


def test_resize_decoder_has_no_transposed_convolution(setup):
    out, _ = _train(setup, "resize_paper_loss", "resize", {"reconstruction": 1.0}, epochs=1)
    model = keras.models.load_model(out / "best.keras", compile=False)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert "Conv2DTranspose" not in kinds and "UpSampling2D" in kinds
    assert models.infer_arch(model)["decoder_upsampling"] == "resize"
    assert model.get_layer("high_res_features").output.shape[1:3] == (IM, IM)
    # the default stays the paper's transposed convolutions
    paper, _ = _train(setup, "paper", "transpose", {"reconstruction": 1.0}, epochs=1)
    kinds = {type(layer).__name__ for layer in
             keras.models.load_model(paper / "best.keras", compile=False).layers}
    assert "Conv2DTranspose" in kinds and "UpSampling2D" not in kinds
    # a weights file of the resize decoder loads back into the right network
    from hrcam.cams import FullModel

    model.save_weights(out / "copy.weights.h5")
    loaded = FullModel(out / "copy.weights.h5", im_size=IM)
    np.testing.assert_array_equal(loaded.high_res_cam(setup["images"][:2]),
                                  FullModel(model=model).high_res_cam(setup["images"][:2]))


@pytest.mark.parametrize("text, message", [
    ("reconstruction=1,cam=1", "unknown term 'cam'"),
    ("reconstruction", "NAME=WEIGHT"),
    ("reconstruction=x", "must be a number"),
    ("reconstruction=-1", ">= 0"),
    ("reconstruction=0", "at least one term"),
])
def test_bad_decoder_losses_name_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        parse_decoder_loss(text)
    with pytest.raises(ValueError, match="decoder loss"):
        T.TrainConfig(decoder_loss=text)


def test_cli_decoder_options(setup, capsys):
    from hrcam.cli import main

    out = setup["root"] / "cli"
    assert main(["train", "full", "--half", str(setup["half"]), "--data", str(setup["data"]),
                 "--out", str(out), "--im-size", str(IM), "--epochs", "1", "--batch-size", "8",
                 "--decoder-upsampling", "resize", "--decoder-loss",
                 "reconstruction=1,cam_consistency=0.5", "--progress", "none"]) == 0
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["decoder_upsampling"] == "resize"
    assert saved["decoder_loss"] == {"reconstruction": 1.0, "cam_consistency": 0.5}
    assert saved["resolved_arch"]["decoder_upsampling"] == "resize"
    capsys.readouterr()
    assert main(["train", "full", "--half", str(setup["half"]), "--data", str(setup["data"]),
                 "--out", str(out), "--decoder-loss", "blur=1"]) == 2
    assert "unknown term 'blur'" in capsys.readouterr().err
