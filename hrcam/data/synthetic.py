"""The embedded default dataset: generated shapes on cluttered backgrounds, with masks and boxes.

Every image holds one object whose class is its *shape* (disk, square, triangle, star, cross,
ring, hexagon, crescent, heart, arrow). Colour, size (25-50% of the side), rotation and position
are random; the background is a smooth random colour field with grain and stripes, crossed by
distractor strokes drawn from the same colour distribution as the objects (one of them in the
object's own colour), so neither colour nor position identifies the class: the shape does.

Drawing is supersampled (4x) and box-filtered down, so edges are anti-aliased; the ground-truth
mask is the object's coverage >= 50% and the box is the tight box around the mask (they agree
by construction). Every image depends only on (seed, shape, index), so the set is reproducible,
and a class's images do not change when the number of classes changes.
"""

from __future__ import annotations

import colorsys
import io
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from hrcam.data.common import BOX_FIELDS, assign_split, check_fraction, mask_box, write_outputs
from hrcam.data.publish import command_line, resolve_out, staged_output

log = logging.getLogger(__name__)

SHAPES = ("disk", "square", "triangle", "star", "cross", "ring", "hexagon", "crescent",
          "heart", "arrow")
DEFAULT_CLASSES = 6
DEFAULT_PER_CLASS = 300  # the default workflow: ~98% test accuracy with the small model
DEFAULT_IM_SIZE = 64
DEFAULT_TEST_FRACTION = 0.2
DEFAULT_SEED = 0
SUPERSAMPLE = 4
MIN_SIZE, MAX_SIZE = 0.25, 0.50  # object extent as a fraction of the image side
#: Clutter: (min, max) of the number of distractor strokes, their width in output pixels, the
#: stripe texture amplitude (grey levels) and the sensor grain (std, grey levels).
CLUTTER = {"strokes": (2, 6), "stroke_width": (0.6, 1.5), "stripes": (3.0, 12.0), "grain": 4.0}


def shape_names(classes: int | list[str] | tuple[str, ...] = DEFAULT_CLASSES) -> list[str]:
    """The shapes used for ``classes`` (a count: the first N of :data:`SHAPES`, or names)."""
    if isinstance(classes, int):
        if not 2 <= classes <= len(SHAPES):
            raise ValueError(f"--classes must be between 2 and {len(SHAPES)}, got {classes}")
        return list(SHAPES[:classes])
    names = list(classes)
    unknown = [n for n in names if n not in SHAPES]
    if unknown or len(set(names)) < 2 or len(set(names)) != len(names):
        raise ValueError(f"classes must be 2 or more distinct names from {SHAPES}, got {names}")
    return names


# ----------------------------------------------------------------------------------------------
# Geometry (unit shapes: extent radius 1, centred at the origin)
# ----------------------------------------------------------------------------------------------


def _regular(n: int, radius: float = 1.0, phase: float = 0.0) -> np.ndarray:
    a = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(a), radius * np.sin(a)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    a = -np.pi / 2 + np.pi * np.arange(2 * points) / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _cross(half_width: float = 0.3) -> np.ndarray:
    w, L = half_width, 0.95
    return np.array([(-w, -L), (w, -L), (w, -w), (L, -w), (L, w), (w, w), (w, L), (-w, L),
                     (-w, w), (-L, w), (-L, -w), (-w, -w)])


def _heart(n: int = 60) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y + 2.5], axis=1)
    return pts / np.abs(pts).max()


def _arrow() -> np.ndarray:
    return np.array([(1.0, 0.0), (0.2, -0.75), (0.2, -0.3), (-1.0, -0.3), (-1.0, 0.3),
                     (0.2, 0.3), (0.2, 0.75)])


def _circle(n: int = 72, radius: float = 1.0, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    a = 2 * np.pi * np.arange(n) / n
    return np.stack([cx + radius * np.cos(a), cy + radius * np.sin(a)], axis=1)


def shape_polygons(shape: str) -> list[tuple[np.ndarray, int]]:
    """``[(vertices [N, 2], fill), ...]`` drawn in order; fill 1 adds, 0 cuts a hole."""
    if shape == "disk":
        return [(_circle(), 1)]
    if shape == "square":
        return [(_regular(4, 1.0, np.pi / 4) * 0.92, 1)]
    if shape == "triangle":
        return [(_regular(3, 1.0, -np.pi / 2), 1)]
    if shape == "star":
        return [(_star(), 1)]
    if shape == "cross":
        return [(_cross(), 1)]
    if shape == "ring":
        return [(_circle(), 1), (_circle(radius=0.55), 0)]
    if shape == "hexagon":
        return [(_regular(6), 1)]
    if shape == "crescent":
        return [(_circle(), 1), (_circle(radius=0.85, cx=0.5), 0)]
    if shape == "heart":
        return [(_heart(), 1)]
    if shape == "arrow":
        return [(_arrow(), 1)]
    raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------


def _vivid_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    h = rng.random()
    s = rng.uniform(0.55, 1.0)
    v = rng.uniform(0.55, 1.0)
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v))


def _background(rng: np.random.Generator, side: int) -> np.ndarray:
    """A smooth random colour field with stripes: float32 [side, side, 3] in [0, 255]
    (computed at the output resolution; the caller upsamples it for supersampled drawing)."""
    from PIL import Image

    grid = rng.integers(2, 5)
    base_hue = rng.random()
    cells = np.empty((grid, grid, 3), dtype=np.float32)
    for i in range(grid):
        for j in range(grid):
            h = (base_hue + rng.normal(0, 0.15)) % 1.0
            cells[i, j] = colorsys.hsv_to_rgb(h, rng.uniform(0.05, 0.6), rng.uniform(0.25, 0.9))
    field = np.asarray(Image.fromarray((cells * 255).astype(np.uint8)).resize(
        (side, side), Image.Resampling.BICUBIC), dtype=np.float32)
    # stripes texture at a random angle and period
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(0.06, 0.2) * side
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    field += rng.uniform(*CLUTTER["stripes"]) * stripes[..., None]
    return field


def render(shape: str, rng: np.random.Generator, im_size: int = DEFAULT_IM_SIZE,
           supersample: int = SUPERSAMPLE) -> tuple[np.ndarray, np.ndarray]:
    """One image of ``shape``: ``(rgb uint8 [S, S, 3], mask bool [S, S])``."""
    from PIL import Image, ImageDraw

    ss = supersample
    big = im_size * ss
    canvas = Image.fromarray(np.clip(_background(rng, im_size), 0, 255).astype(np.uint8))
    canvas = canvas.resize((big, big), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(canvas)

    colour = _vivid_colour(rng)
    # distractor strokes: lines and arcs, same colour distribution, one in the object's colour
    n_strokes = int(rng.integers(CLUTTER["strokes"][0], CLUTTER["strokes"][1]))
    for k in range(n_strokes):
        c = colour if k == 0 else _vivid_colour(rng)
        width = max(1, int(round(rng.uniform(*CLUTTER["stroke_width"]) * ss)))
        if rng.random() < 0.5:
            p = rng.uniform(-0.1, 1.1, size=4) * big
            draw.line([(p[0], p[1]), (p[2], p[3])], fill=c, width=width)
        else:
            cx, cy = rng.uniform(0, 1, size=2) * big
            r = rng.uniform(0.15, 0.5) * big
            start = rng.uniform(0, 360)
            draw.arc([cx - r, cy - r, cx + r, cy + r], start, start + rng.uniform(40, 140),
                     fill=c, width=width)

    # the object
    extent = rng.uniform(MIN_SIZE, MAX_SIZE) * im_size  # diameter in output pixels
    radius = extent / 2 * ss
    cx, cy = rng.uniform(radius, big - radius, size=2)
    theta = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    cover = Image.new("L", (big, big), 0)
    cdraw = ImageDraw.Draw(cover)
    for vertices, fill in shape_polygons(shape):
        pts = vertices @ rot.T * radius + (cx, cy)
        cdraw.polygon([tuple(p) for p in pts], fill=255 * fill)
    solid = Image.new("RGB", (big, big), colour)
    canvas.paste(solid, (0, 0), cover)

    rgb = np.asarray(canvas.reduce(ss), dtype=np.float32)
    coverage = np.asarray(cover.reduce(ss), dtype=np.float32) / 255.0
    # sensor grain everywhere
    rgb += rng.normal(0, CLUTTER["grain"], size=rgb.shape).astype(np.float32)
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    return rgb, coverage >= 0.5


def generate_synthetic(out_dir: str | Path, classes: int | list[str] = DEFAULT_CLASSES,
                       per_class: int = DEFAULT_PER_CLASS, im_size: int = DEFAULT_IM_SIZE,
                       test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = DEFAULT_SEED,
                       quality: int = 95) -> dict[str, Any]:
    """Generate the dataset into ``out_dir`` (layout of :mod:`hrcam.data.common`); returns the
    summary. Images are JPEG (``quality``), masks binary PNG under ``masks/``.

    The dataset is built beside ``out_dir`` under a lock and replaces it only when complete
    (:func:`hrcam.data.publish.staged_output`): a failed or killed run leaves no dataset that
    the readers accept and does not touch a dataset already there.
    """
    t0 = time.perf_counter()
    names = shape_names(classes)
    test_fraction = check_fraction(test_fraction)
    if per_class < 2:
        raise ValueError(f"--per-class must be at least 2, got {per_class}")
    if im_size < 16:
        raise ValueError(f"--im-size must be at least 16, got {im_size}")
    out_dir = resolve_out(out_dir)
    with staged_output(out_dir, command_line()) as stage:
        manifest, boxes = _generate(stage, names, per_class, im_size, test_fraction, seed,
                                    quality)
        params = {"dataset": "synthetic", "classes": names, "per_class": per_class,
                  "im_size": im_size, "test_fraction": test_fraction, "seed": seed,
                  "quality": quality, "format": "jpeg"}
        summary = write_outputs(stage, [(n, n) for n in names], manifest, params, boxes)
    log.info("generated %d images of %d classes in %.1f s into %s", len(manifest), len(names),
             time.perf_counter() - t0, out_dir)
    return summary


def _generate(partial: Path, names: list[str], per_class: int, im_size: int,
              test_fraction: float, seed: int, quality: int) -> tuple[list, list]:
    """Render every image and mask into ``partial``; ``(manifest rows, box rows)``."""
    from PIL import Image

    manifest, boxes = [], []
    for shape in names:
        shape_index = SHAPES.index(shape)
        stems = [f"{shape}_{i:05d}" for i in range(per_class)]
        split = assign_split(stems, shape, test_fraction, seed)
        for sp in ("train", "test"):
            (partial / sp / shape).mkdir(parents=True, exist_ok=True)
            (partial / "masks" / sp / shape).mkdir(parents=True, exist_ok=True)
        for i, stem in enumerate(stems):
            rng = np.random.default_rng([seed, shape_index, i])
            rgb, mask = render(shape, rng, im_size)
            sp = split[stem]
            rel = f"{sp}/{shape}/{stem}.jpg"
            Image.fromarray(rgb).save(partial / rel, format="JPEG", quality=quality)
            Image.fromarray(mask.astype(np.uint8) * 255).save(
                partial / "masks" / sp / shape / f"{stem}.png", format="PNG")
            box = mask_box(mask)
            manifest.append({"source": f"generated:{shape}/{i}", "class": shape, "split": sp,
                             "output": rel, "status": "ok", "reason": ""})
            if box is not None:
                boxes.append(dict(zip(BOX_FIELDS, (rel, shape, *box))))
    return manifest, boxes


def render_to_bytes(shape: str, seed: int, index: int, im_size: int = DEFAULT_IM_SIZE) -> bytes:
    """One generated image as JPEG bytes (for previews and docs)."""
    from PIL import Image

    rgb, _ = render(shape, np.random.default_rng([seed, SHAPES.index(shape), index]), im_size)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
    return buf.getvalue()
