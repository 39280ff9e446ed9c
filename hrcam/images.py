"""Where images are decoded: the one decode-and-resize function of hrcam.

Training, evaluation, CAM rendering and the Python API (`hrcam.io_utils.load_image`) all turn
an image file into the model's input with `decode_and_resize`, so a model sees exactly the same
pixels for the same file everywhere:

1. ``tf.io.decode_image`` with 3 channels (JPEG, PNG, GIF, BMP, WebP; grayscale and CMYK
   become RGB);
2. when the decoded size differs from the model's input size: bilinear resize
   (``tf.image.resize``, half-pixel centres, no antialiasing), rounded and clipped back to
   uint8.

The result is uint8 RGB ``(H, W, 3)`` with values 0-255; the models rescale to [0, 1] inside.
Files TensorFlow cannot decode (TIFF, PPM, ...) or that carry transparency are converted to a
lossless RGB PNG with Pillow first (transparent pixels composited on black), then decoded the
same way (`file_contents`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["decode", "resize", "decode_and_resize", "read_and_resize", "file_contents", "load_image_array",
           "size_hw"]

#: Formats ``tf.io.decode_image`` reads (Pillow's format names).
TF_FORMATS = frozenset({"JPEG", "PNG", "GIF", "BMP", "WEBP"})


def size_hw(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``size`` (an int side or (height, width)) as a (height, width) tuple; None stays None."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        sides = [int(size), int(size)]
    else:
        try:
            sides = [int(s) for s in size]  # type: ignore[union-attr]
        except (TypeError, ValueError):
            sides = []
    if len(sides) != 2 or min(sides) < 1:
        raise ValueError(f"size must be a positive int or (height, width); got {size!r}")
    return sides[0], sides[1]


def decode(contents: Any) -> Any:
    """Step 1: encoded image bytes (a string tensor) -> uint8 RGB tensor ``(H, W, 3)``."""
    import tensorflow as tf

    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def _resized(image, target):  # no annotations: AutoGraph converts this function
    """Bilinear resize of a uint8 image to ``target`` (H, W), rounded and clipped to uint8."""
    import tensorflow as tf

    out = tf.image.resize(image, target, method="bilinear")
    return tf.cast(tf.round(tf.clip_by_value(out, 0.0, 255.0)), tf.uint8)


def resize(image: Any, size: int | Sequence[int] | None) -> Any:
    """Step 2: a decoded uint8 image resized to ``size`` when it differs (bilinear, rounded and
    clipped to uint8); ``size`` None keeps it. Graph-safe (tf.data)."""
    import tensorflow as tf

    target = size_hw(size)
    if target is None:
        return image
    same = tf.reduce_all(tf.equal(tf.shape(image)[:2], tf.constant(target, tf.int32)))
    image = tf.cond(same, lambda: image, lambda: _resized(image, target))
    image.set_shape([target[0], target[1], 3])
    return image


def decode_and_resize(contents: Any, size: int | Sequence[int] | None = None) -> Any:
    """Decode encoded image bytes (a string tensor) to a uint8 RGB tensor ``(H, W, 3)``,
    resized to ``size`` (bilinear, rounded to uint8) when it differs. Graph-safe (tf.data)."""
    return resize(decode(contents), size)


def read_and_resize(path: Any, size: int | Sequence[int] | None = None) -> Any:
    """`decode_and_resize` of a file path tensor (the input pipelines' per-file step)."""
    import tensorflow as tf

    return decode_and_resize(tf.io.read_file(path), size)


def file_contents(path: str | os.PathLike) -> bytes:
    """The bytes `decode_and_resize` should decode for a file: the file itself when TensorFlow
    reads its format and it has no transparency, else a lossless RGB PNG made with Pillow.

    :raises FileNotFoundError: no such file. :raises ValueError: not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as im:
            transparent = im.mode in ("RGBA", "LA", "PA") or (
                im.mode == "P" and "transparency" in im.info)
            if im.format in TF_FORMATS and not transparent:
                return data
            im.load()
            if transparent:
                rgba = im.convert("RGBA")
                rgb = Image.new("RGB", rgba.size, (0, 0, 0))
                rgb.paste(rgba, mask=rgba.getchannel("A"))
            else:
                rgb = im.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path}: not a readable image ({error})") from error
    out = io.BytesIO()
    rgb.save(out, format="PNG")
    return out.getvalue()


def load_image_array(path: str | os.PathLike,
                     size: int | Sequence[int] | None = None) -> np.ndarray:
    """One image file as a uint8 RGB array ``(H, W, 3)``, decoded and resized exactly as the
    training and evaluation pipelines do it."""
    import tensorflow as tf

    contents = file_contents(path)
    try:
        image = decode_and_resize(tf.constant(contents), size)
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(f"{path}: not a readable image ({error.message})") from None
    return np.asarray(image.numpy(), dtype=np.uint8)
