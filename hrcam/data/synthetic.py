"""The embedded default dataset: generated shapes on cluttered backgrounds, with masks and boxes.

Every image holds one object whose class is its *shape* (disk, square, triangle, star, cross,
ring, hexagon, crescent, heart, arrow). Colour, size (by default 25-50% of the side,
``size_range``), rotation and position are random; the background is a smooth random colour
field with grain and stripes, crossed by distractor strokes drawn from the same colour
distribution as the objects (one of them in the object's own colour), so neither colour nor
position identifies the class: the shape does.

``distractors=N`` adds N look-alike objects per image: shapes that are *not* classes of the
dataset (with 6 of the 10 shapes as classes, the 4 others), in the same colour distribution and
size range, each placed where it covers at most :data:`MAX_OVERLAP` of the target's mask (and of
the other distractors'), shrunk in steps where the image has no such room. Label, mask and box
stay the target object's only, so a CAM has to find the class object among similar objects.

Drawing is supersampled (4x) and box-filtered down, so edges are anti-aliased; the ground-truth
mask is the object's coverage >= 50% and the box is the tight box around the mask (they agree
by construction). Every image depends only on (seed, shape, index) and the options, so the set
is reproducible and the same for any number of worker processes; without distractors a class's
images do not change when the number of classes changes (with distractors, the set of classes
decides which shapes are distractors). The default options give the same files as before they
existed.
"""

from __future__ import annotations

import colorsys
import io
import logging
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from hrcam.data.common import (
    BOX_FIELDS,
    assign_split,
    check_fraction,
    mask_box,
    write_outputs,
)
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
DEFAULT_SIZE_RANGE = (MIN_SIZE, MAX_SIZE)
DEFAULT_DISTRACTORS = 0
MIN_OBJECT_PIXELS = 4  # the smallest object extent (size_range[0] * im_size), in output pixels
#: A distractor covers at most this fraction of the target's mask (and of each earlier
#: distractor's); where no position allows it, the distractor shrinks by DISTRACTOR_SHRINK.
MAX_OVERLAP = 0.03
DISTRACTOR_SHRINK = 0.85
PLACEMENT_TRIES = 20  # random positions tried before the overlaps of all positions are computed
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


def check_size_range(size_range: Sequence[float], im_size: int = DEFAULT_IM_SIZE
                     ) -> tuple[float, float]:
    """``(lo, hi)``: the object extent's range as fractions of the side, 0 < lo < hi <= 1, and
    lo * im_size at least :data:`MIN_OBJECT_PIXELS` pixels (else a ValueError naming
    --size-range)."""
    try:
        lo, hi = (float(v) for v in size_range)
    except (TypeError, ValueError):
        raise ValueError(f"--size-range must be two fractions LO,HI of the image side, got "
                         f"{size_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi <= 1):
        raise ValueError(f"--size-range must be two fractions LO,HI of the image side with "
                         f"0 < LO < HI <= 1, got {lo:g},{hi:g}")
    if lo * im_size < MIN_OBJECT_PIXELS:
        raise ValueError(f"--size-range LO={lo:g} gives objects of {lo * im_size:.1f} pixels at "
                         f"--im-size {im_size}; LO must be at least "
                         f"{MIN_OBJECT_PIXELS / im_size:.3g} ({MIN_OBJECT_PIXELS} pixels)")
    return lo, hi


def distractor_pool(names: Sequence[str], distractors: int = DEFAULT_DISTRACTORS) -> list[str]:
    """The shapes distractors are drawn from: every shape of :data:`SHAPES` that is not a class
    (empty for ``distractors == 0``). ValueError for a negative count or no spare shape."""
    if isinstance(distractors, bool) or not isinstance(distractors, (int, np.integer)) \
            or distractors < 0:
        raise ValueError(f"--distractors must be an integer >= 0, got {distractors!r}")
    if distractors == 0:
        return []
    pool = [s for s in SHAPES if s not in names]
    if not pool:
        raise ValueError(f"--distractors {distractors} needs shapes that are not classes, but "
                         f"all {len(SHAPES)} shapes are classes; use at most "
                         f"{len(SHAPES) - 1} classes")
    return pool


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


class Rendered(NamedTuple):
    """One generated image and the masks of its objects, at output resolution."""

    rgb: np.ndarray  #: uint8 [S, S, 3]
    mask: np.ndarray  #: bool [S, S]: the target object (the image's label, mask and box)
    #: ``(shape, bool [S, S])`` of every distractor, its whole extent (the target is drawn last,
    #: over it)
    distractors: tuple[tuple[str, np.ndarray], ...] = ()


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


def _strokes(draw: Any, rng: np.random.Generator, colour: tuple[int, int, int], big: int,
             ss: int) -> None:
    """Distractor strokes (lines and arcs), same colour distribution, one in ``colour``."""
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


def _draw_cover(draw: Any, shape: str, radius: float, theta: float, cx: float, cy: float) -> None:
    """Draw the coverage of ``shape`` (extent radius ``radius``, rotated by ``theta``, centred at
    (cx, cy)) onto an "L" image: 255 inside, 0 in its holes."""
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    for vertices, fill in shape_polygons(shape):
        pts = vertices @ rot.T * radius + (cx, cy)
        draw.polygon(pts.ravel().tolist(), fill=255 * fill)


class _Distractor(NamedTuple):
    shape: str
    colour: tuple[int, int, int]
    cover: Any  # PIL "L" image, supersampled, k*ss square
    x: int  # top-left corner of `cover`, output pixels
    y: int
    mask: np.ndarray  # bool [S, S]


def _place_distractors(rng: np.random.Generator, pool: Sequence[str], n: int, target: np.ndarray,
                       ss: int, size_range: tuple[float, float]) -> list[_Distractor]:
    """Choose ``n`` distractors from ``pool`` and place each uniformly among the positions where
    it covers at most MAX_OVERLAP of the target's mask and of the earlier distractors' masks
    (rejection sampling; after PLACEMENT_TRIES misses, the overlaps of every position at once,
    a correlation of the masks). A distractor with no such position shrinks by
    DISTRACTOR_SHRINK until one exists; below MIN_OBJECT_PIXELS it is left out. Its mask is
    its own coverage image, so the drawn object matches it exactly."""
    from PIL import Image, ImageDraw

    side = target.shape[0]
    target_limit = MAX_OVERLAP * float(target.sum())
    occupied = np.zeros_like(target)
    placed: list[_Distractor] = []
    for _ in range(n):
        shape = pool[int(rng.integers(len(pool)))]
        colour = _vivid_colour(rng)
        theta = rng.uniform(0, 2 * np.pi)
        extent = rng.uniform(*size_range) * side
        while extent >= MIN_OBJECT_PIXELS:
            k = math.ceil(extent) + 2  # the cover's side: the shape plus a margin
            if k <= side:
                cover = Image.new("L", (k * ss, k * ss), 0)
                _draw_cover(ImageDraw.Draw(cover), shape, extent / 2 * ss, theta, k * ss / 2,
                            k * ss / 2)
                kernel = np.asarray(cover.reduce(ss)) >= 128
                position = _free_position(rng, kernel, target, target_limit, occupied,
                                          MAX_OVERLAP * float(kernel.sum()))
                if position is not None:
                    y, x = position
                    mask = np.zeros(target.shape, dtype=bool)
                    mask[y:y + k, x:x + k] = kernel
                    occupied |= mask
                    placed.append(_Distractor(shape, colour, cover, x, y, mask))
                    break
            extent *= DISTRACTOR_SHRINK
    return placed


def _overlaps(mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` under ``kernel`` for every top-left corner that keeps it inside
    (a 'valid' correlation, through the FFT): int array [S - k + 1, S - k + 1]."""
    side, k = mask.shape[0], kernel.shape[0]
    n = side + k - 1
    spectrum = np.fft.rfft2(mask, (n, n)) * np.fft.rfft2(kernel[::-1, ::-1], (n, n))
    return np.rint(np.fft.irfft2(spectrum, (n, n))[k - 1:side, k - 1:side]).astype(np.int64)


def _free_position(rng: np.random.Generator, kernel: np.ndarray, target: np.ndarray,
                   target_limit: float, occupied: np.ndarray, occupied_limit: float
                   ) -> tuple[int, int] | None:
    """A uniformly chosen top-left corner (y, x) at which ``kernel`` overlaps ``target`` by at
    most ``target_limit`` pixels and ``occupied`` by at most ``occupied_limit``; None if none."""
    k = kernel.shape[0]
    n = target.shape[0] - k + 1
    for _ in range(PLACEMENT_TRIES):
        y, x = (int(v) for v in rng.integers(n, size=2))
        if np.count_nonzero(kernel & target[y:y + k, x:x + k]) <= target_limit and \
                np.count_nonzero(kernel & occupied[y:y + k, x:x + k]) <= occupied_limit:
            return y, x
    ok = _overlaps(target, kernel) <= target_limit
    if occupied.any():
        ok &= _overlaps(occupied, kernel) <= occupied_limit
    positions = np.flatnonzero(ok)
    if not positions.size:
        return None
    y, x = divmod(int(positions[rng.integers(positions.size)]), n)
    return y, x


def render_layers(shape: str, rng: np.random.Generator, im_size: int = DEFAULT_IM_SIZE,
                  supersample: int = SUPERSAMPLE, *,
                  size_range: tuple[float, float] = DEFAULT_SIZE_RANGE,
                  distractors: int = DEFAULT_DISTRACTORS,
                  pool: Sequence[str] = ()) -> Rendered:
    """One image of ``shape`` with the masks of every object (see :class:`Rendered`).

    ``size_range``: the object's extent as fractions of the side; ``distractors``: how many
    look-alike objects, drawn from ``pool`` (:func:`distractor_pool`), to add. The random draws
    happen in a fixed order (background, colour, strokes, object, distractors, grain), so the
    defaults give the images of the generator before these options existed.
    """
    from PIL import Image, ImageDraw

    if distractors and not pool:
        raise ValueError("distractors need a pool of distractor shapes (distractor_pool)")
    ss = supersample
    big = im_size * ss
    canvas = Image.fromarray(np.clip(_background(rng, im_size), 0, 255).astype(np.uint8))
    canvas = canvas.resize((big, big), Image.Resampling.BILINEAR)
    colour = _vivid_colour(rng)
    _strokes(ImageDraw.Draw(canvas), rng, colour, big, ss)

    # the object
    extent = rng.uniform(*size_range) * im_size  # diameter in output pixels
    radius = extent / 2 * ss
    cx, cy = rng.uniform(radius, big - radius, size=2)
    theta = rng.uniform(0, 2 * np.pi)
    cover = Image.new("L", (big, big), 0)
    _draw_cover(ImageDraw.Draw(cover), shape, radius, theta, cx, cy)
    mask = np.asarray(cover.reduce(ss), dtype=np.float32) / 255.0 >= 0.5

    others = _place_distractors(rng, pool, distractors, mask, ss, size_range) \
        if distractors else []
    for d in others:
        canvas.paste(d.colour, (d.x * ss, d.y * ss), d.cover)
    box = cover.getbbox()
    if box is not None:  # the object over everything
        canvas.paste(colour, box, cover.crop(box))

    rgb = np.asarray(canvas.reduce(ss), dtype=np.float32)
    # sensor grain everywhere
    rgb += rng.normal(0, CLUTTER["grain"], size=rgb.shape).astype(np.float32)
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    return Rendered(rgb, mask, tuple((d.shape, d.mask) for d in others))


def render(shape: str, rng: np.random.Generator, im_size: int = DEFAULT_IM_SIZE,
           supersample: int = SUPERSAMPLE, **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """One image of ``shape``: ``(rgb uint8 [S, S, 3], mask bool [S, S])`` (``options``: those
    of :func:`render_layers`)."""
    layers = render_layers(shape, rng, im_size, supersample, **options)
    return layers.rgb, layers.mask


# ----------------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------------


def _encode(shape: str, index: int, seed: int, im_size: int, quality: int,
            options: dict[str, Any]) -> tuple[bytes, bytes, tuple[int, int, int, int] | None]:
    """Image ``index`` of ``shape``: (JPEG bytes, mask PNG bytes, box or None)."""
    from PIL import Image

    rgb, mask = render(shape, np.random.default_rng([seed, SHAPES.index(shape), index]),
                       im_size, **options)
    image, mask_png = io.BytesIO(), io.BytesIO()
    Image.fromarray(rgb).save(image, format="JPEG", quality=quality)
    Image.fromarray(mask.astype(np.uint8) * 255).save(mask_png, format="PNG")
    return image.getvalue(), mask_png.getvalue(), mask_box(mask)


def _encode_chunk(task: tuple[list[tuple[str, int]], tuple]) -> list[tuple]:
    jobs, args = task
    return [_encode(shape, index, *args) for shape, index in jobs]


def generate_synthetic(out_dir: str | Path, classes: int | list[str] = DEFAULT_CLASSES,
                       per_class: int = DEFAULT_PER_CLASS, im_size: int = DEFAULT_IM_SIZE,
                       test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = DEFAULT_SEED,
                       quality: int = 95,
                       size_range: tuple[float, float] = DEFAULT_SIZE_RANGE,
                       distractors: int = DEFAULT_DISTRACTORS,
                       workers: int | None = 1) -> dict[str, Any]:
    """Generate the dataset into ``out_dir`` (layout of :mod:`hrcam.data.common`); returns the
    summary. Images are JPEG (``quality``), masks binary PNG under ``masks/``.

    ``size_range``: (lo, hi), the object's extent as fractions of the side (0 < lo < hi <= 1);
    ``distractors``: look-alike non-class shapes per image (see the module docstring);
    ``workers``: processes that render (None: every available CPU); the files are the same for
    any number. Both options are recorded in summary.json's parameters.

    The dataset is built beside ``out_dir`` under a lock and replaces it only when complete
    (:func:`hrcam.data.publish.staged_output`): a failed or killed run leaves no dataset that
    the readers accept and does not touch a dataset already there.
    """
    from hrcam.data.engine import effective_workers

    t0 = time.perf_counter()
    names = shape_names(classes)
    test_fraction = check_fraction(test_fraction)
    if per_class < 2:
        raise ValueError(f"--per-class must be at least 2, got {per_class}")
    if im_size < 16:
        raise ValueError(f"--im-size must be at least 16, got {im_size}")
    size_range = check_size_range(size_range, im_size)
    pool = distractor_pool(names, distractors)
    workers = effective_workers(workers)
    options = {"size_range": size_range, "distractors": int(distractors), "pool": pool}
    out_dir = resolve_out(out_dir)
    with staged_output(out_dir, command_line()) as stage:
        manifest, boxes = _generate(stage, names, per_class, im_size, test_fraction, seed,
                                    quality, options, workers)
        params = {"dataset": "synthetic", "classes": names, "per_class": per_class,
                  "im_size": im_size, "test_fraction": test_fraction, "seed": seed,
                  "quality": quality, "format": "jpeg", "size_range": list(size_range),
                  "distractors": int(distractors), "distractor_shapes": pool}
        summary = write_outputs(stage, [(n, n) for n in names], manifest, params, boxes)
    log.info("generated %d images of %d classes in %.1f s into %s", len(manifest), len(names),
             time.perf_counter() - t0, out_dir)
    return summary


def _encoded(jobs: list[tuple[str, int]], args: tuple, workers: int) -> Iterator[tuple]:
    """``_encode`` of every job, in order; chunks spread over ``workers`` processes."""
    if workers <= 1 or len(jobs) < 2:
        yield from _encode_chunk((jobs, args))
        return
    from concurrent.futures import ProcessPoolExecutor

    from hrcam.utils import worker_context

    size = max(1, min(64, math.ceil(len(jobs) / (4 * workers))))
    tasks = [(jobs[i:i + size], args) for i in range(0, len(jobs), size)]
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=worker_context(["hrcam.data.synthetic"])) as ex:
        for results in ex.map(_encode_chunk, tasks):
            yield from results


def _generate(partial: Path, names: list[str], per_class: int, im_size: int,
              test_fraction: float, seed: int, quality: int, options: dict[str, Any],
              workers: int) -> tuple[list, list]:
    """Render every image and mask into ``partial``; ``(manifest rows, box rows)``."""
    splits = {}
    for shape in names:
        stems = [f"{shape}_{i:05d}" for i in range(per_class)]
        splits[shape] = assign_split(stems, shape, test_fraction, seed)
        for sp in ("train", "test"):
            (partial / sp / shape).mkdir(parents=True, exist_ok=True)
            (partial / "masks" / sp / shape).mkdir(parents=True, exist_ok=True)
    jobs = [(shape, i) for shape in names for i in range(per_class)]
    manifest, boxes = [], []
    results = _encoded(jobs, (seed, im_size, quality, options), workers)
    for (shape, i), (image, mask_png, box) in zip(jobs, results):
        stem = f"{shape}_{i:05d}"
        sp = splits[shape][stem]
        rel = f"{sp}/{shape}/{stem}.jpg"
        (partial / rel).write_bytes(image)
        (partial / "masks" / sp / shape / f"{stem}.png").write_bytes(mask_png)
        manifest.append({"source": f"generated:{shape}/{i}", "class": shape, "split": sp,
                         "output": rel, "status": "ok", "reason": ""})
        if box is not None:
            boxes.append(dict(zip(BOX_FIELDS, (rel, shape, *box))))
    return manifest, boxes


def render_to_bytes(shape: str, seed: int, index: int, im_size: int = DEFAULT_IM_SIZE, *,
                    classes: int | list[str] = DEFAULT_CLASSES,
                    size_range: tuple[float, float] = DEFAULT_SIZE_RANGE,
                    distractors: int = DEFAULT_DISTRACTORS) -> bytes:
    """One generated image as JPEG bytes, as in a dataset of ``classes`` (for previews and
    docs)."""
    options = {"size_range": check_size_range(size_range, im_size),
               "distractors": int(distractors),
               "pool": distractor_pool(shape_names(classes), distractors)}
    return _encode(shape, index, seed, im_size, 95, options)[0]
