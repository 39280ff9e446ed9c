"""The training input pipelines: the validation set in a fixed order, the training stream as a
function of (seed, epoch) only (same batches twice, a stream started at epoch k equals the tail
of one started at 0), class-balanced draws, the targets, and the same pixels as evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from hrcam import train as T

IM = 32


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from hrcam.data import generate_synthetic

    out = tmp_path_factory.mktemp("data") / "set"
    generate_synthetic(out, classes=3, per_class=16, im_size=IM, test_fraction=0.25, seed=0)
    return out


def _collect(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy() if not isinstance(y, dict) else y) for x, y in ds])
    return xs, ys


def test_make_dataset_is_ordered_one_hot(data_dir):
    paths, labels, class_ids = T.list_split(data_dir, "test")
    ds = T.make_dataset(data_dir, "test", im_size=IM, batch_size=5)
    xs, ys = _collect(ds)
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert x.shape == (len(paths), IM, IM, 3) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 255 and x.max() > 1
    assert y.shape == (len(paths), len(class_ids)) and y.argmax(1).tolist() == labels
    np.testing.assert_array_equal(x, np.concatenate(_collect(ds)[0]))
    with pytest.raises(ValueError, match="target"):
        T.make_dataset(data_dir, "test", target="nope")


def test_training_and_evaluation_see_the_same_pixels(data_dir):
    """The training stream without augmentation, the evaluation pipeline and the API decode a
    file to identical arrays (one decode-and-resize function)."""
    from hrcam.inference import image_batches, image_set
    from hrcam.io_utils import load_image

    for size in (IM, 48):  # as stored, and resized
        paths, labels, _ = T.list_split(data_dir, "train")
        stream, steps = T.training_dataset(data_dir, "train", im_size=size, batch_size=len(paths),
                                           augment=None, target="index")
        x_train, y_train = next(iter(stream))
        images = image_set(data_dir, "train")
        x_eval, y_eval, index, _ = next(iter(image_batches(images, (size, size), len(paths))))
        order = {p: i for i, p in enumerate(images.paths)}
        # the training stream is shuffled: match images through their labels and contents
        eval_by_index = x_eval.numpy()[np.argsort(index.numpy())]
        train = x_train.numpy().astype(np.uint8)
        for row in train:
            assert any(np.array_equal(row, e) for e in eval_by_index)
        np.testing.assert_array_equal(np.sort(y_train.numpy()), np.sort(labels))
        api = load_image(paths[0], size)[0]
        np.testing.assert_array_equal(api, eval_by_index[order[images.paths[0]]])


@pytest.mark.parametrize("cache, balanced", [(False, False), (True, False), (False, True)])
def test_training_stream_depends_on_seed_and_epoch_only(data_dir, cache, balanced):
    kwargs = dict(im_size=IM, batch_size=8, seed=3, epochs=3, cache=cache, balanced=balanced,
                  augment=T.AugmentConfig.with_probability(0.5), target="index")
    full, steps = T.training_dataset(data_dir, "train", **kwargs)
    batches = [(x.numpy(), y.numpy()) for x, y in full]
    assert len(batches) == 3 * steps
    again = [(x.numpy(), y.numpy()) for x, y in T.training_dataset(data_dir, "train", **kwargs)[0]]
    for (a, la), (b, lb) in zip(batches, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    resumed = [(x.numpy(), y.numpy()) for x, y in
               T.training_dataset(data_dir, "train", first_epoch=2, **kwargs)[0]]
    assert len(resumed) == steps
    for (a, la), (b, lb) in zip(batches[2 * steps:], resumed):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    # epochs differ from each other, and another seed gives another stream
    assert not np.array_equal(batches[0][0], batches[steps][0])
    other = next(iter(T.training_dataset(data_dir, "train", **{**kwargs, "seed": 4})[0]))
    assert not np.array_equal(other[0].numpy(), batches[0][0])


def test_balanced_sampling_oversamples_a_small_class(data_dir, tmp_path):
    import shutil

    skewed = tmp_path / "skewed"
    shutil.copytree(data_dir / "train", skewed / "train")
    small = sorted((skewed / "train").iterdir())[0]
    for path in sorted(small.iterdir())[2:]:
        path.unlink()  # class 0 keeps 2 images, the others 12
    _, labels, _ = T.list_split(skewed, "train")
    assert np.bincount(labels)[0] == 2

    def class_counts(balanced):
        ds, _ = T.training_dataset(skewed, "train", im_size=16, batch_size=300, epochs=12,
                                   augment=None, balanced=balanced, target="index")
        return np.bincount(np.concatenate([y.numpy() for _, y in ds]), minlength=3)

    assert class_counts(False)[0] == 2 * 12  # each epoch: every file once
    counts = class_counts(True)
    assert counts.sum() == 26 * 12 and counts.min() > 70  # about 104 each


def test_reconstruction_targets_and_steps(data_dir):
    ds, steps = T.training_dataset(data_dir, "train", im_size=16, batch_size=4, epochs=1,
                                   target="reconstruction", steps=5, augment=None)
    batches = list(ds)
    assert steps == 5 and len(batches) == 5
    x, y = batches[0]
    assert x.shape == (4, 16, 16, 3) and set(y) == {"predictions", "main_output"}
    np.testing.assert_allclose(y["main_output"].numpy(), x.numpy() / 255.0, rtol=1e-6)
