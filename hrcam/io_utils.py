"""The seed's input helpers (README section 5.1), without global state: pass the data directory.

* `load_image(path, size=None)`: an image file as a (1, H, W, 3) uint8 batch (any mode: CMYK,
  grayscale, palette, RGBA and PNG-saved-as-JPEG files are converted to RGB).
* `read_image(path_or_index=None, data_dir=..., split='test')`: an image and its label from a
  class-folder dataset (``data_dir/<split>/<class>/<image>``): by path, by index in the sorted
  listing, or at random.
* `AnimalsMapper`: class index <-> class id (WordNet id) <-> human-readable name.
* `dataset_info(data_dir, split='test')`: the seed's `test_images`, `num_images`,
  `num_classes`.

Class indices follow `hrcam.data` (sorted class ids, as Keras' `flow_from_directory` did).
Only `load_image` imports TensorFlow (it decodes with `hrcam.images`, as the pipelines do).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_image", "read_image", "AnimalsMapper", "DatasetInfo", "dataset_info"]

PathLike = str | os.PathLike


def load_image(path: PathLike, size: int | Sequence[int] | None = None) -> np.ndarray:
    """Read an image file as a (1, H, W, 3) uint8 array of 0-255 RGB values (the layout the
    models take), decoded and resized exactly as training and evaluation do it
    (`hrcam.images`): any mode becomes RGB (transparent pixels on black), and `size` (int or
    (height, width)) resizes it (bilinear) when it differs.

    :raises FileNotFoundError: no such file. :raises ValueError: not a readable image.
    """
    from hrcam.images import load_image_array, size_hw

    return load_image_array(path, size_hw(size))[None].copy()


@dataclass
class DatasetInfo:
    """The seed's module-level facts about a split, as one object."""

    data_dir: Path
    split: str
    images: list[str] = field(repr=False)
    labels: list[int] = field(repr=False)
    class_ids: list[str]

    @property
    def num_images(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)

    # the seed's names
    @property
    def test_images(self) -> list[str]:
        return self.images


def dataset_info(data_dir: PathLike, split: str = "test") -> DatasetInfo:
    """Images, labels and classes of ``data_dir/<split>/<class>/<image>`` (sorted)."""
    from hrcam.data import list_images

    paths, labels, class_ids = list_images(data_dir, split)
    return DatasetInfo(Path(data_dir), split, list(paths), list(labels), list(class_ids))


class AnimalsMapper:
    """Maps class indices to class ids (WordNet ids) and human-readable names, and back.

    :param synset_path: a ``wnid name[, name...]`` file (``synset_words.txt`` /
        ``LOC_synset_mapping.txt``, or the devkit's ``meta.mat``) giving the names. Optional:
        without it the names come from ``data_dir/classes.txt`` or, for ImageNet wnids, from the
        bundled list of the 398 animal synsets; otherwise a class is named by its id.
    :param data_dir: a prepared dataset; its classes (``classes.txt`` or the sorted class
        folders) give the index order.
    :param test_dir: the seed's argument: a folder of class folders (the index order is their
        sorted names). Used when `data_dir` is not given.
    :param class_ids: the class ids in index order, given directly.

    Exactly one of `data_dir`, `test_dir`, `class_ids` sets the classes.
    """

    def __init__(
        self,
        synset_path: PathLike | None = None,
        data_dir: PathLike | None = None,
        test_dir: PathLike | None = None,
        class_ids: Sequence[str] | None = None,
    ) -> None:
        given = [x is not None for x in (data_dir, test_dir, class_ids)]
        if sum(given) != 1:
            raise ValueError("AnimalsMapper needs exactly one of data_dir, test_dir or class_ids")
        names: dict[str, str] = {}
        if data_dir is not None:
            from hrcam.data import read_classes

            classes = read_classes(data_dir)
            ids = [c for c, _ in classes]
            names.update({c: n for c, n in classes if n != c})
        elif test_dir is not None:
            folder = Path(test_dir)
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder}: no such folder of class folders")
            ids = sorted(p.name for p in folder.iterdir() if p.is_dir())
        else:
            ids = [str(c) for c in class_ids]  # type: ignore[union-attr]
        if not ids:
            raise ValueError("AnimalsMapper: no classes found")
        if len(set(ids)) != len(ids):
            raise ValueError("AnimalsMapper: duplicate class ids")
        if synset_path is not None:
            from hrcam.data import read_class_names

            names.update(read_class_names(synset_path))
        else:
            missing = [c for c in ids if c not in names]
            if missing:
                from hrcam.data import animal_synsets

                bundled = dict(animal_synsets())
                names.update({c: bundled[c] for c in missing if c in bundled})
        self.class_ids: list[str] = ids
        self.class_indices: dict[str, int] = {c: i for i, c in enumerate(ids)}
        self.class_names: dict[str, str] = {c: names.get(c, c) for c in ids}
        # every lower-cased full name and comma-separated alias -> index (first wins)
        self._by_name: dict[str, int] = {}
        for i, c in enumerate(ids):
            full = self.class_names[c]
            for key in [full, *full.split(",")]:
                key = key.strip().lower()
                if key:
                    self._by_name.setdefault(key, i)

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)

    def __len__(self) -> int:
        return len(self.class_ids)

    def _check_index(self, index: Any) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not (
                0 <= index < len(self.class_ids)):
            raise ValueError(
                f"class index must be an integer in [0, {len(self.class_ids) - 1}]; got {index!r}")
        return int(index)

    def name(self, index: int) -> str:
        """The human-readable name of class `index`."""
        return self.class_names[self.class_ids[self._check_index(index)]]

    def wnid(self, index: int) -> str:
        """The class id (WordNet id for ImageNet) of class `index`."""
        return self.class_ids[self._check_index(index)]

    def index(self, wnid_or_name: str) -> int:
        """The index of a class given its id (e.g. 'n01498041'), its full name or any of its
        comma-separated names (e.g. 'stingray'; case-insensitive)."""
        key = str(wnid_or_name)
        if key in self.class_indices:
            return self.class_indices[key]
        found = self._by_name.get(key.strip().lower())
        if found is None:
            raise KeyError(f"no class with id or name {wnid_or_name!r}")
        return found

    def __repr__(self) -> str:
        return f"AnimalsMapper({self.num_classes} classes)"


def read_image(
    path_or_index: PathLike | int | None = None,
    data_dir: PathLike | None = None,
    split: str = "test",
    return_class_name: bool = False,
    *,
    mapper: AnimalsMapper | None = None,
    size: int | Sequence[int] | None = None,
    seed: int | np.random.Generator | None = None,
) -> tuple[np.ndarray, int | str | None]:
    """An image and its label, as the seed's `read_image`.

    :param path_or_index: an image path; or the index of an image in the sorted listing of
        ``data_dir/<split>`` (0 is the first image); or None for a random image of the split.
    :param data_dir: the dataset (``data_dir/<split>/<class>/<image>``); needed for an index or
        a random image. For a path it is optional: the label then comes from the image's class
        folder (``.../<split>/<class>/<image>``, data_dir inferred) or is None.
    :param return_class_name: return the class's human-readable name instead of its index.
    :param mapper: an `AnimalsMapper` to use for the labels (default: built from data_dir).
    :param size: resize the image to this size (int or (height, width)).
    :param seed: seed or Generator for the random choice.
    :return: ``(x, y)``: x (1, H, W, 3) uint8, y the class index (or name), None if unknown.
    """
    from hrcam.data.common import SPLITS

    if path_or_index is None or (isinstance(path_or_index, (int, np.integer))
                                 and not isinstance(path_or_index, bool)):
        if data_dir is None:
            raise ValueError("read_image needs data_dir to pick an image by index or at random")
        info = dataset_info(data_dir, split)
        if info.num_images == 0:
            raise ValueError(f"{Path(data_dir) / split}: no images")
        if path_or_index is None:
            rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
            index = int(rng.integers(info.num_images))
        else:
            index = int(path_or_index)
            if not 0 <= index < info.num_images:
                raise ValueError(f"image index must be in [0, {info.num_images - 1}] for "
                                 f"{Path(data_dir) / split}; got {index}")
        path = Path(info.images[index])
        if mapper is None:
            mapper = AnimalsMapper(data_dir=data_dir)
    elif isinstance(path_or_index, (str, os.PathLike)):
        path = Path(path_or_index)
        if mapper is None:
            root = Path(data_dir) if data_dir is not None else None
            if root is None and len(path.parents) >= 3 and path.parent.parent.name in SPLITS:
                root = path.parent.parent.parent
            if root is not None:
                try:
                    mapper = AnimalsMapper(data_dir=root)
                except (FileNotFoundError, ValueError):
                    mapper = None
    else:
        raise ValueError(f"path_or_index must be a path, an int or None; got {path_or_index!r}")

    x = load_image(path, size)
    y: int | str | None = None
    if mapper is not None:
        cls = path.parent.name
        if cls in mapper.class_indices:
            y = mapper.class_names[cls] if return_class_name else mapper.class_indices[cls]
    return x, y
