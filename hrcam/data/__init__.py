"""Data preparation and dataset readers (``hrcam prepare ...``).

Public API (no TensorFlow is imported by this package):

* readers: :func:`read_classes`, :func:`list_images`, :func:`load_annotations`,
  :func:`load_mask`, :func:`animal_synsets`, :func:`read_class_names`;
* preparation: :func:`generate_synthetic` (the embedded default dataset),
  :func:`prepare_imagenet` (ILSVRC-2012 train archive or tree),
  :func:`prepare_imagenet_val` (validation images with boxes), :func:`merge_imagenet_parts`,
  :func:`prepare_folder` (a user's own class-folder dataset, optionally with boxes and masks);
* helpers: :func:`convert_image`, :func:`assign_split`.

See :mod:`hrcam.data.common` for the output layout and coordinate conventions, and
:mod:`hrcam.data.publish` for the lock on the output folder and all-or-nothing publication.
"""

from hrcam.data.common import (
    DEFAULT_JPEG_QUALITY,
    animal_synsets,
    assign_split,
    convert_image,
    list_images,
    load_annotations,
    load_mask,
    mask_box,
    read_class_names,
    read_classes,
)
from hrcam.data.synthetic import SHAPES, generate_synthetic

__all__ = [
    "DEFAULT_JPEG_QUALITY", "SHAPES", "animal_synsets", "assign_split", "convert_image",
    "generate_synthetic", "list_images", "load_annotations", "load_mask", "mask_box",
    "merge_imagenet_parts", "prepare_folder", "prepare_imagenet", "prepare_imagenet_val",
    "read_class_names", "read_classes", "DEFAULT_TEST_FRACTION",
]

DEFAULT_TEST_FRACTION = 114114 / 510530


def __getattr__(name):
    if name in ("prepare_imagenet", "merge_imagenet_parts"):
        from hrcam.data import imagenet

        return getattr(imagenet, name)
    if name == "prepare_imagenet_val":
        from hrcam.data import imagenet_val

        return imagenet_val.prepare_imagenet_val
    if name == "prepare_folder":
        from hrcam.data import folder

        return folder.prepare_folder
    raise AttributeError(f"module 'hrcam.data' has no attribute {name!r}")
