"""MaxBoxAccV2 box scoring: every CAM threshold in one pass (NumPy + numba, no TensorFlow).

For each CAM threshold the map is binarised, a box is drawn around every region, and the image
is correct at IoU delta when some estimated box has IoU >= delta with some ground-truth box
(Choe et al., CVPR 2020, "Evaluating Weakly Supervised Object Localization Methods Right").
Two conventions:

``"wsol"`` (default): bit-identical to ``BoxEvaluator`` of the authors' code (repository
    clovaai/wsolevaluation, ``evaluation.py``) with ``multi_contour_eval=True``:

    1. the map is quantised ``q = (float64(cam) * 255).astype(uint8)``, and a pixel is on at
       threshold t when ``q > int(t * q.max())`` (``cv2.threshold``, ``THRESH_BINARY``);
    2. boxes are the ``cv2.boundingRect`` of *every* contour of
       ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)``, written ``(x, y, x + w, y + h)``
       with x1, y1 clipped to W - 1, H - 1. OpenCV pads the image with background, follows
       8-connected foreground, and reports one outer contour per 8-connected foreground component
       and one hole contour per 4-connected background component that does not reach the image
       border. An outer contour's rect is its component's pixel box; a hole contour runs over the
       foreground pixels around the hole, so its rect is the hole's pixel box grown by one pixel
       on every side (checked against cv2 in the tests);
    3. IoU adds 1 to widths and heights of both boxes (inclusive integer corners);
    4. a map with no foreground at some threshold scores the single box [0, 0, 0, 0].

    Ground-truth boxes are inclusive integer pixel corners (x0, y0, x1, y1); see
    :func:`wsol_gt_boxes` for hrcam's dataset boxes.

``"exact"``: a pixel is on when ``cam > t`` on the float map (compared in float64); one box
    ``(c0, r0, c1 + 1, r1 + 1)`` in continuous coordinates around every 8-connected component,
    ground-truth boxes continuous with xmax/ymax exclusive, IoU of the covered pixel areas (no +1),
    no box (IoU 0) when nothing is on. This is hrcam's original definition.

Speed: the thresholded sets are nested, so components only merge as the threshold falls. The
pixels are sorted once by value and added in that order to a union-find forest (8-connected;
every root keeps its bounding box), and each threshold reads the current components as the sweep
passes it. The same sweep counts the holes at every threshold from the Euler number (components
minus holes, updated per pixel from its 3 x 3 neighbourhood). Only where there are holes does a
second sweep run the other way round (the 4-connected background growing as the threshold rises,
merged into one "outside" root when it reaches the border), and only as far as the last
threshold with holes. Each root caches its best IoU until it changes. Cost: one counting sort
and one or two near-linear sweeps per map, nearly independent of the number of thresholds (a
"wsol" map has at most 257 distinct binarisations). The kernels are compiled once and cached on
disk (``cache=True``), so worker processes load them instead of compiling.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

BOX_CONVENTIONS = ("wsol", "exact")
DEFAULT_BOX_CONVENTION = "wsol"


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

def _check_convention(convention: str) -> bool:
    """True for "wsol", False for "exact"."""
    if convention not in BOX_CONVENTIONS:
        raise ValueError(f"convention must be one of {BOX_CONVENTIONS}; got {convention!r}")
    return convention == "wsol"


def _check_cam(cam: np.ndarray, wsol: bool) -> np.ndarray:
    arr = np.asarray(cam)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"cam must be a non-empty 2-D array (H, W); got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
            or arr.dtype == bool):
        raise ValueError(f"cam must hold real numbers; got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    lo, hi = arr.min(), arr.max()
    if np.isnan(lo) or np.isnan(hi):
        raise ValueError("cam contains NaN")
    if wsol and (lo < 0.0 or hi > 1.0):
        raise ValueError(f"cam values must lie in [0, 1] for convention 'wsol' (min-max "
                         f"normalise the map first); got min {lo}, max {hi}")
    return arr


def _check_vector(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of numbers; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return arr


def _check_boxes(boxes: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 4:
        arr = arr.reshape(1, 4)
    elif arr.size == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) of (x0, y0, x1, y1); got shape "
                         f"{np.shape(boxes)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return np.ascontiguousarray(arr)


def _check_gt(gt_boxes: np.ndarray, wsol: bool) -> np.ndarray:
    gt = _check_boxes(gt_boxes, "gt_boxes")
    if wsol and len(gt):
        if (gt != np.floor(gt)).any() or (gt < 0).any():
            raise ValueError("gt_boxes must be non-negative integer pixel corners for convention "
                             "'wsol' (convert hrcam's continuous boxes with wsol_gt_boxes())")
        if (gt[:, 2] < gt[:, 0]).any() or (gt[:, 3] < gt[:, 1]).any():
            raise ValueError("gt_boxes must satisfy x1 >= x0 and y1 >= y0 (inclusive corners)")
    return gt


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------
# Pixels live on a grid padded by one cell on every side (stride W + 2), so neighbours need no
# bounds checks. ``parent[i] < 0`` marks a cell not added yet. In the holes sweep every padding
# cell belongs from the start to the outside root (cell 0), so a background component that
# reaches the image border merges into it and stops being a hole.

_OUTSIDE = 0


@njit(cache=True)
def _order_u8(q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Padded pixel indices by decreasing quantised value (counting sort), their rows and
    columns, and the value histogram."""
    H, W = q.shape
    hist = np.zeros(256, dtype=np.int64)
    for r in range(H):
        for c in range(W):
            hist[q[r, c]] += 1
    start = np.empty(256, dtype=np.int64)
    s = 0
    for v in range(255, -1, -1):
        start[v] = s
        s += hist[v]
    order = np.empty(H * W, dtype=np.int32)
    rows = np.empty(H * W, dtype=np.int32)
    cols = np.empty(H * W, dtype=np.int32)
    for r in range(H):
        for c in range(W):
            k = start[q[r, c]]
            start[q[r, c]] += 1
            order[k] = (r + 1) * (W + 2) + c + 1
            rows[k] = r
            cols[k] = c
    return order, rows, cols, hist


@njit(cache=True)
def _pad_order(flat: np.ndarray, W: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Padded indices, rows and columns of flat pixel indices."""
    order = np.empty(flat.size, dtype=np.int32)
    rows = np.empty(flat.size, dtype=np.int32)
    cols = np.empty(flat.size, dtype=np.int32)
    for k in range(flat.size):
        r = flat[k] // W
        c = flat[k] - r * W
        order[k] = (r + 1) * (W + 2) + c + 1
        rows[k] = r
        cols[k] = c
    return order, rows, cols


@njit(cache=True)
def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True)
def _est_box(r0, c0, r1, c1, H, W, wsol, holes):
    """The estimated box (x0, y0, x1, y1) of a component with pixel box rows r0..r1, columns
    c0..c1 (a hole's pixel box for the holes sweep)."""
    if not wsol:
        return float(c0), float(r0), float(c1 + 1), float(r1 + 1)
    if holes:  # the surrounding foreground: one more pixel on every side
        return float(c0 - 1), float(r0 - 1), float(min(c1 + 2, W - 1)), float(min(r1 + 2, H - 1))
    return float(c0), float(r0), float(min(c1 + 1, W - 1)), float(min(r1 + 1, H - 1))


@njit(cache=True)
def _best_iou(x0, y0, x1, y1, gt, wsol):
    """Best IoU of one box against all ground-truth boxes, with the float operations of
    wsolevaluation's ``calculate_multiple_iou`` ("wsol") or hrcam's area IoU ("exact")."""
    best = 0.0
    for g in range(gt.shape[0]):
        bx0, by0, bx1, by1 = gt[g, 0], gt[g, 1], gt[g, 2], gt[g, 3]
        if wsol:
            ix = max(0.0, min(x1, bx1) - max(x0, bx0) + 1.0)
            iy = max(0.0, min(y1, by1) - max(y0, by0) + 1.0)
            inter = ix * iy
            den = (x1 - x0 + 1.0) * (y1 - y0 + 1.0) + (bx1 - bx0 + 1.0) * (by1 - by0 + 1.0) - inter
            iou = inter / den if den > 0.0 else 0.0
        else:
            ix = max(min(x1, bx1) - max(x0, bx0), 0.0)
            iy = max(min(y1, by1) - max(y0, by0), 0.0)
            inter = ix * iy
            area_a = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
            area_b = max(bx1 - bx0, 0.0) * max(by1 - by0, 0.0)
            union = area_a + area_b - inter
            iou = inter / union if union != 0.0 else 0.0
        best = max(best, iou)
    return best


def _euler_deltas() -> np.ndarray:
    """4 x the change of the 8-connected Euler number (components - holes) when a pixel is added,
    by the bit mask of its added neighbours (bits in the order of the foreground offsets NW, N,
    NE, W, E, SW, S, SE). Gray's bit quads: E = (#1-pixel quads - #3-pixel quads - 2 x
    #diagonal quads) / 4, and adding a pixel changes only its four quads."""

    def quad(tl: int, tr: int, bl: int, br: int) -> int:
        count = tl + tr + bl + br
        if count == 2 and tl == br:
            return -2
        return {1: 1, 3: -1}.get(count, 0)

    table = np.zeros(256, dtype=np.int64)
    for mask in range(256):
        nw, n, ne, w, e, sw, s, se = ((mask >> b) & 1 for b in range(8))
        for p in (0, 1):
            sign = 1 if p else -1
            table[mask] += sign * (quad(nw, n, w, p) + quad(n, ne, p, e) + quad(w, p, sw, s)
                                   + quad(p, e, s, se))
    return table


_EULER_DELTA = _euler_deltas()


@njit(cache=True)
def _sweep(order, rows, cols, steps, need, H, W, gt, wsol, holes, collect):
    """Best IoU per step for the foreground components (``holes`` False) or the holes (True),
    and the number of holes per step (foreground sweep only).

    ``steps`` (ascending) are on-pixel counts: at step s the pixels ``order[:steps[s]]`` are
    on. The foreground sweep adds on-pixels from the front (8-connected), the holes sweep adds
    off-pixels from the back (4-connected) and stops after the last step with ``need[s]``. A
    new pixel joins its first neighbouring component (or starts one) and merges the others into
    it. Every root keeps its pixel box; the active list holds the roots that give a box (all
    foreground components; the background components not merged into the outside). A root's
    best IoU is cached until it changes. The hole count comes from the Euler number (components
    minus holes), updated per pixel from its neighbour mask. With ``collect`` (one step) the
    estimated boxes are returned instead of IoUs."""
    N = H * W
    Wp = W + 2
    M = (H + 2) * Wp
    parent = np.full(M, -1, dtype=np.int32)
    size = np.empty(M, dtype=np.int32)
    r0 = np.empty(M, dtype=np.int32)
    c0 = np.empty(M, dtype=np.int32)
    r1 = np.empty(M, dtype=np.int32)
    c1 = np.empty(M, dtype=np.int32)
    pos = np.empty(M, dtype=np.int32)
    dirty = np.empty(M, dtype=np.bool_)
    cache = np.empty(M, dtype=np.float64)
    active = np.empty(N, dtype=np.int32)
    if holes:
        offsets = np.array([-Wp, -1, 1, Wp])
        for c in range(Wp):
            parent[c] = _OUTSIDE
            parent[M - 1 - c] = _OUTSIDE
        for r in range(H + 2):
            parent[r * Wp] = _OUTSIDE
            parent[r * Wp + Wp - 1] = _OUTSIDE
    else:
        offsets = np.array([-Wp - 1, -Wp, -Wp + 1, -1, 1, Wp - 1, Wp, Wp + 1])
    out = np.zeros(len(steps), dtype=np.float64)
    n_holes = np.zeros(len(steps), dtype=np.int64)
    no_boxes = np.empty((0, 4), dtype=np.float64)
    first = 0  # the holes sweep stops after the first (smallest) needed step
    while first < len(steps) and not need[first]:
        first += 1
    euler4 = 0  # 4 x (components - holes) of the foreground
    n = 0
    i = 0  # foreground: order[:i] added
    j = N  # holes: order[j:] added
    for k in range(len(steps)):
        s = len(steps) - 1 - k if holes else k
        if holes and (s < first or steps[s] == 0):
            break  # no further hole is needed (or nothing is on, so there is none)
        while (j > steps[s]) if holes else (i < steps[s]):
            if holes:
                j -= 1
                a = j
            else:
                a = i
                i += 1
            p = order[a]
            r = rows[a]
            c = cols[a]
            rp = -1
            mask = 0
            for b in range(len(offsets)):
                pq = parent[p + offsets[b]]
                if pq < 0:
                    continue
                mask |= 1 << b
                if pq == rp:
                    continue
                rq = _find(parent, pq)
                if rq == rp:
                    continue
                if rp < 0:  # p joins its first neighbouring component
                    rp = rq
                    parent[p] = rq
                    if rq != _OUTSIDE:
                        size[rq] += 1
                        r0[rq] = min(r0[rq], r)
                        c0[rq] = min(c0[rq], c)
                        r1[rq] = max(r1[rq], r)
                        c1[rq] = max(c1[rq], c)
                        dirty[rq] = True
                    continue
                if rq == _OUTSIDE or rp == _OUTSIDE:  # (holes only) reaches the border
                    gone = rp if rq == _OUTSIDE else rq
                    parent[gone] = _OUTSIDE
                    rp = _OUTSIDE
                else:
                    if size[rp] < size[rq]:
                        rp, rq = rq, rp
                    gone = rq
                    parent[gone] = rp
                    size[rp] += size[gone]
                    r0[rp] = min(r0[rp], r0[gone])
                    c0[rp] = min(c0[rp], c0[gone])
                    r1[rp] = max(r1[rp], r1[gone])
                    c1[rp] = max(c1[rp], c1[gone])
                    dirty[rp] = True
                n -= 1  # the merged root leaves the active list (the last entry moves in)
                last = active[n]
                active[pos[gone]] = last
                pos[last] = pos[gone]
            if rp < 0:  # no neighbour: a new component
                parent[p] = p
                size[p] = 1
                r0[p] = r
                r1[p] = r
                c0[p] = c
                c1[p] = c
                dirty[p] = True
                active[n] = p
                pos[p] = n
                n += 1
            if not holes:
                euler4 += _EULER_DELTA[mask]
        if collect:
            boxes = np.empty((n, 4), dtype=np.float64)
            for a in range(n):
                root = active[a]
                x0, y0, x1, y1 = _est_box(r0[root], c0[root], r1[root], c1[root], H, W, wsol,
                                          holes)
                boxes[a, 0] = x0
                boxes[a, 1] = y0
                boxes[a, 2] = x1
                boxes[a, 3] = y1
            return out, n_holes, boxes
        if not holes:
            n_holes[s] = n - euler4 // 4
        if not need[s]:
            continue
        best = 0.0
        if n == 0 and wsol and not holes:  # no contour at all: wsolevaluation's [0, 0, 0, 0]
            best = _best_iou(0.0, 0.0, 0.0, 0.0, gt, True)
        for a in range(n):
            root = active[a]
            if dirty[root]:
                x0, y0, x1, y1 = _est_box(r0[root], c0[root], r1[root], c1[root], H, W, wsol,
                                          holes)
                cache[root] = _best_iou(x0, y0, x1, y1, gt, wsol)
                dirty[root] = False
            best = max(best, cache[root])
        out[s] = best
    return out, n_holes, no_boxes


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

def _on_counts(cam: np.ndarray, thresholds: np.ndarray, wsol: bool
               ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """Pixel order (first on first; padded indices, rows, columns) and the number of on-pixels
    at each threshold."""
    if wsol:
        q = (cam * 255).astype(np.uint8)
        order, rows, cols, hist = _order_u8(q)
        # wsolevaluation: int(threshold * np.max(scoremap_image)); int() truncates toward zero
        levels = np.clip(np.trunc(thresholds * int(q.max())), -1, 255).astype(np.int64)
        at_most = np.concatenate(([0], np.cumsum(hist)))  # at_most[L + 1] = #(q <= L)
        counts = q.size - at_most[levels + 1]
    else:
        flat = cam.ravel()
        ascending = np.argsort(flat)  # ties: any order (steps fall between distinct values)
        order, rows, cols = _pad_order(ascending[::-1].astype(np.int64), cam.shape[1])
        counts = flat.size - np.searchsorted(flat[ascending], thresholds, side="right")
    return (order, rows, cols), counts.astype(np.int64)


def best_iou_per_threshold(cam: np.ndarray, gt_boxes: np.ndarray,
                           thresholds: Sequence[float] | np.ndarray,
                           convention: str = DEFAULT_BOX_CONVENTION) -> np.ndarray:
    """For each CAM threshold, the best IoU between any estimated box and any ground-truth box.

    ``cam`` is one (H, W) map ("wsol": values in [0, 1]; float32 maps are widened to float64
    first, the dtype wsolevaluation requires); ``gt_boxes`` (N, 4) in the convention's
    coordinates (module docstring). Returns float64 (len(thresholds),); all zeros when there is
    no ground-truth box.
    """
    wsol = _check_convention(convention)
    cam = _check_cam(cam, wsol)
    gt = _check_gt(gt_boxes, wsol)
    thresholds = _check_vector(thresholds, "thresholds")
    if len(gt) == 0 or len(thresholds) == 0:
        return np.zeros(len(thresholds))
    order, counts = _on_counts(cam, thresholds, wsol)
    steps, inverse = np.unique(counts, return_inverse=True)
    H, W = cam.shape
    every = np.ones(len(steps), dtype=bool)
    best, n_holes, _ = _sweep(*order, steps, every, H, W, gt, wsol, False, False)
    if wsol and n_holes.any():  # the holes sweep runs only as far as a step has holes
        holes, _, _ = _sweep(*order, steps, n_holes > 0, H, W, gt, wsol, True, False)
        best = np.maximum(best, holes)
    return best[inverse.ravel()]


def box_hits(cam: np.ndarray, gt_boxes: np.ndarray, thresholds: Sequence[float] | np.ndarray,
             iou_thresholds: Sequence[float] | np.ndarray,
             convention: str = DEFAULT_BOX_CONVENTION) -> np.ndarray:
    """Bool (len(iou_thresholds), len(thresholds)): whether the image counts as correctly
    localised at each (IoU threshold, CAM threshold), i.e. best IoU >= the IoU threshold."""
    iou_thresholds = _check_vector(iou_thresholds, "iou_thresholds")
    best = best_iou_per_threshold(cam, gt_boxes, thresholds, convention)
    return best[None, :] >= iou_thresholds[:, None]


def estimated_boxes(cam: np.ndarray, threshold: float,
                    convention: str = DEFAULT_BOX_CONVENTION) -> np.ndarray:
    """All estimated boxes (K, 4) at one CAM threshold, rows sorted.

    "wsol": int64 inclusive corners, foreground components then holes, exactly the boxes
    wsolevaluation scores (``[[0, 0, 0, 0]]`` when nothing is on). "exact": float64
    continuous boxes, (0, 4) when nothing is on.
    """
    wsol = _check_convention(convention)
    cam = _check_cam(cam, wsol)
    t = _check_vector([threshold], "threshold")
    order, counts = _on_counts(cam, t, wsol)
    H, W = cam.shape
    empty, need = np.zeros((0, 4)), np.ones(1, dtype=bool)
    _, _, boxes = _sweep(*order, counts, need, H, W, empty, wsol, False, True)
    if wsol:
        _, _, hole_boxes = _sweep(*order, counts, need, H, W, empty, wsol, True, True)
        boxes = np.concatenate([boxes, hole_boxes]).astype(np.int64)
        if len(boxes) == 0:
            boxes = np.zeros((1, 4), dtype=np.int64)
    return boxes[np.lexsort(boxes.T[::-1])] if len(boxes) else boxes


def wsol_gt_boxes(boxes: np.ndarray) -> np.ndarray:
    """hrcam's dataset boxes in wsolevaluation's ground-truth convention (int64 (N, 4)).

    hrcam stores continuous pixel coordinates ``(xmin, ymin, xmax, ymax)`` with xmax/ymax
    exclusive (a box over pixel columns 10..20 is [10, 21)); wsolevaluation uses inclusive
    integer pixel corners. The rule takes every pixel the box touches:
    ``x0 = floor(xmin), y0 = floor(ymin), x1 = ceil(xmax) - 1, y1 = ceil(ymax) - 1``, so an
    integer box [10, 21) gives columns 10..20. Boxes must be non-negative with xmax > xmin and
    ymax > ymin.

    This is not wsolevaluation's own resizing of source boxes (``resize_bbox``: inclusive source
    corners scaled by new / old size and truncated, ``int(x1 * new / old)``). A source box
    (x0, y0, x1, y1) stored as the continuous ``(x0, y0, x1 + 1, y1 + 1) * s`` gives
    ``ceil((x1 + 1) * s) - 1``, one more than wsolevaluation whenever ``frac(x1 * s) > 1 - s``
    (about a third to a half of the boxes when downscaling ImageNet to 224 px) and always more
    when upscaling (s > 1). Exact parity on a benchmark needs the source boxes resized the
    wsolevaluation way.
    """
    arr = _check_boxes(boxes, "boxes")
    if (arr < 0).any():
        raise ValueError("boxes must be non-negative pixel coordinates")
    if (arr[:, 2] <= arr[:, 0]).any() or (arr[:, 3] <= arr[:, 1]).any():
        raise ValueError("boxes must satisfy xmax > xmin and ymax > ymin (xmax/ymax exclusive)")
    out = np.empty(arr.shape, dtype=np.int64)
    out[:, :2] = np.floor(arr[:, :2])
    out[:, 2:] = np.ceil(arr[:, 2:]) - 1
    return out
