"""Tests of hrcam.io_utils: load_image, read_image, AnimalsMapper, dataset_info."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hrcam import io_utils

WNIDS = ("n01440764", "n01443537", "n01498041")   # tench, goldfish, stingray


def make_dataset(root, with_classes_txt=False):
    """root/{train,test}/<wnid>/<image>: RGB, CMYK, grayscale and a PNG saved as .JPEG."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for k, wnid in enumerate(WNIDS):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for j in range(2):
                arr = np.full((40, 50, 3), 40 * k + 10 * j, np.uint8)
                arr[..., 0] = rng.integers(0, 256)
                Image.fromarray(arr).save(folder / f"{wnid}_{j}.JPEG", quality=95)
    test = root / "test"
    Image.fromarray(np.full((40, 50, 3), 200, np.uint8)).convert("CMYK").save(
        test / WNIDS[0] / "cmyk.JPEG")
    Image.fromarray(np.full((30, 20), 90, np.uint8)).save(test / WNIDS[1] / "gray.JPEG")
    Image.fromarray(np.full((40, 50, 3), 7, np.uint8)).save(test / WNIDS[2] / "png.JPEG",
                                                            format="PNG")
    (test / WNIDS[2] / "notes.txt").write_text("not an image")
    if with_classes_txt:
        (root / "classes.txt").write_text(
            "n01440764 tench, Tinca tinca\nn01443537 goldfish\nn01498041 stingray\n")
    return root


def test_load_image_modes(tmp_path):
    root = make_dataset(tmp_path)
    test = root / "test"
    for path, hw in ((test / WNIDS[0] / "cmyk.JPEG", (40, 50)),
                     (test / WNIDS[1] / "gray.JPEG", (30, 20)),
                     (test / WNIDS[2] / "png.JPEG", (40, 50))):
        x = io_utils.load_image(path)
        assert x.shape == (1, *hw, 3) and x.dtype == np.uint8
    gray = io_utils.load_image(test / WNIDS[1] / "gray.JPEG")
    assert np.all(gray[..., 0] == gray[..., 2])
    assert abs(int(gray.mean()) - 90) <= 2
    png = io_utils.load_image(test / WNIDS[2] / "png.JPEG")
    assert np.all(png == 7)
    assert io_utils.load_image(test / WNIDS[2] / "png.JPEG", size=16).shape == (1, 16, 16, 3)
    assert io_utils.load_image(test / WNIDS[2] / "png.JPEG", size=(8, 12)).shape == (1, 8, 12, 3)


def test_load_image_rgba_and_errors(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:5, :, 3] = 255           # top half opaque red, bottom transparent
    Image.fromarray(rgba).save(tmp_path / "a.png")
    x = io_utils.load_image(tmp_path / "a.png")
    assert x[0, 0, 0, 0] == 255 and x[0, 9, 0, 0] == 0
    with pytest.raises(FileNotFoundError):
        io_utils.load_image(tmp_path / "missing.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        io_utils.load_image(tmp_path / "bad.jpg")
    with pytest.raises(ValueError, match="size"):
        io_utils.load_image(tmp_path / "a.png", size=(0, 3))


def test_animals_mapper_from_data_dir(tmp_path):
    root = make_dataset(tmp_path)
    mapper = io_utils.AnimalsMapper(data_dir=root)
    assert mapper.num_classes == len(mapper) == 3
    # names come from the bundled list of animal synsets when no synset file is given
    assert mapper.name(0) == "tench, Tinca tinca"
    assert mapper.name(2) == "stingray"
    assert mapper.wnid(1) == "n01443537"
    assert mapper.index("stingray") == 2
    assert mapper.index("n01443537") == 1
    assert mapper.index("Tinca tinca") == 0 == mapper.index("TENCH")
    with pytest.raises(KeyError):
        mapper.index("unicorn")
    for bad in (-1, 3, 1.0, True, "0"):
        with pytest.raises(ValueError, match=r"\[0, 2\]"):
            mapper.name(bad)


def test_animals_mapper_synset_file_and_test_dir(tmp_path):
    root = make_dataset(tmp_path)
    synsets = tmp_path / "synset_words.txt"
    synsets.write_text("n01440764 tench\nn01443537 goldfish, Carassius auratus\n"
                       "n01498041 stingray\nn99999999 unused\n")
    mapper = io_utils.AnimalsMapper(synsets, test_dir=root / "test")   # the seed's call
    assert [mapper.name(i) for i in range(3)] == ["tench", "goldfish, Carassius auratus",
                                                  "stingray"]
    assert mapper.index("Carassius auratus") == 1
    custom = io_utils.AnimalsMapper(class_ids=["b", "a"])
    assert custom.name(0) == "b" and custom.index("a") == 1
    with pytest.raises(ValueError, match="exactly one"):
        io_utils.AnimalsMapper(synsets)
    with pytest.raises(ValueError, match="exactly one"):
        io_utils.AnimalsMapper(data_dir=root, test_dir=root / "test")


def test_animals_mapper_uses_classes_txt(tmp_path):
    root = make_dataset(tmp_path, with_classes_txt=True)
    mapper = io_utils.AnimalsMapper(data_dir=root)
    assert mapper.name(1) == "goldfish"


def test_dataset_info(tmp_path):
    root = make_dataset(tmp_path)
    info = io_utils.dataset_info(root)
    assert info.num_classes == 3
    assert info.num_images == 9                      # 6 + cmyk + gray + png, no .txt
    assert info.test_images == info.images
    assert info.labels == sorted(info.labels)
    train = io_utils.dataset_info(root, "train")
    assert train.num_images == 6


def test_read_image_by_index_random_and_path(tmp_path):
    root = make_dataset(tmp_path)
    info = io_utils.dataset_info(root)
    x, y = io_utils.read_image(0, data_dir=root)     # index 0 is the first image, not random
    assert x.shape == (1, 40, 50, 3) and x.dtype == np.uint8
    assert y == info.labels[0] == 0
    np.testing.assert_array_equal(x, io_utils.load_image(info.images[0]))
    last, y_last = io_utils.read_image(info.num_images - 1, data_dir=root)
    assert y_last == 2
    x, name = io_utils.read_image(info.num_images - 1, data_dir=root, return_class_name=True)
    assert name == "stingray"
    a = io_utils.read_image(data_dir=root, seed=3)
    b = io_utils.read_image(None, data_dir=root, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1] and 0 <= a[1] < 3
    # by path: the label from the class folder, data_dir inferred from the layout
    x, y = io_utils.read_image(root / "test" / WNIDS[1] / "gray.JPEG")
    assert y == 1 and x.shape == (1, 30, 20, 3)
    x, y = io_utils.read_image(str(root / "train" / WNIDS[2] / f"{WNIDS[2]}_0.JPEG"), size=224)
    assert y == 2 and x.shape == (1, 224, 224, 3)
    loose = tmp_path / "loose.png"
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(loose)
    assert io_utils.read_image(loose)[1] is None


def test_read_image_errors(tmp_path):
    root = make_dataset(tmp_path)
    with pytest.raises(ValueError, match="data_dir"):
        io_utils.read_image(3)
    with pytest.raises(ValueError, match=r"\[0, 8\]"):
        io_utils.read_image(9, data_dir=root)
    with pytest.raises(FileNotFoundError):
        io_utils.read_image(0, data_dir=root, split="val")
    with pytest.raises(ValueError, match="path_or_index"):
        io_utils.read_image(1.5, data_dir=root)
