"""Benchmark `hrcam prepare imagenet` against a plain Pillow loop (not a test).

Builds, in a temporary folder, a miniature ILSVRC-style train archive (an outer tar of per-class
tars) of full-size JPEGs: a "typical" group at 500x375 (the ImageNet median) and a "large"
group (default 1600x1200). For each group it prints images per second of

* ``plain``: one core, ``Image.open -> convert('RGB') -> resize(224, LANCZOS) -> save(q95)``
  over the same files already extracted to disk,
* ``prepare -w N``: :func:`hrcam.data.prepare_imagenet` straight from the tar with N workers
  (streaming, conversion, split, manifest: the whole command),

and the ratios: per core against plain, and the scaling from 1 to N workers.

    python benchmarks/bench_prepare.py                       # 1 and 2 workers
    python benchmarks/bench_prepare.py --workers 1 2 4 8 --per-class 100
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hrcam.data import prepare_imagenet  # noqa: E402


def photo_like(rng: np.random.Generator, width: int, height: int) -> bytes:
    """A JPEG (quality 90) with photo-like statistics: smooth regions, edges, texture."""
    small = rng.integers(0, 256, (max(2, height // 40), max(2, width // 40), 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC),
                      dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = 18 * np.sin(xx / rng.uniform(3, 9) + yy / rng.uniform(4, 11))
    noise = rng.normal(0, 6, (height, width, 1)).astype(np.float32)
    img = np.clip(base + texture[..., None] + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def build_archive(root: Path, classes: int, per_class: int, size: tuple[int, int], seed: int
                  ) -> tuple[Path, Path]:
    """The outer tar and a folder with the same files extracted (for the plain loop)."""
    rng = np.random.default_rng(seed)
    tar_path = root / "ILSVRC2012_img_train.tar"
    flat = root / "extracted"
    flat.mkdir()
    with tarfile.open(tar_path, "w") as outer:
        for c in range(classes):
            wnid = f"n{seed:04d}{c:04d}"
            inner_buf = io.BytesIO()
            with tarfile.open(fileobj=inner_buf, mode="w") as inner:
                for i in range(per_class):
                    w, h = size if rng.random() < 0.7 else size[::-1]
                    payload = photo_like(rng, w, h)
                    name = f"{wnid}_{i}.JPEG"
                    (flat / name).write_bytes(payload)
                    info = tarfile.TarInfo(name)
                    info.size = len(payload)
                    inner.addfile(info, io.BytesIO(payload))
            info = tarfile.TarInfo(f"{wnid}.tar")
            info.size = inner_buf.tell()
            inner_buf.seek(0)
            outer.addfile(info, inner_buf)
    return tar_path, flat


def plain_loop(files: list[Path], out: Path, im_size: int) -> float:
    out.mkdir()
    t0 = time.perf_counter()
    for f in files:
        with Image.open(f) as im:
            im.convert("RGB").resize((im_size, im_size), Image.Resampling.LANCZOS).save(
                out / (f.stem + ".jpg"), quality=95)
    return time.perf_counter() - t0


def run_prepare(tar: Path, out: Path, classes: int, im_size: int, workers: int) -> float:
    t0 = time.perf_counter()
    prepare_imagenet(out, train_tar=tar, num_classes=classes, im_size=im_size, workers=workers)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--per-class", type=int, default=60)
    ap.add_argument("--im-size", type=int, default=224)
    ap.add_argument("--large", default="1600x1200", help="size of the large group (WxH)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=2, help="best of N timings")
    ap.add_argument("--tmp", default=None, help="scratch folder (default: system temp)")
    args = ap.parse_args(argv)
    large = tuple(int(v) for v in args.large.lower().split("x"))
    groups = {"typical 500x375": (500, 375), f"large {large[0]}x{large[1]}": large}
    n = args.classes * args.per_class
    print(f"cpus available: {len(os.sched_getaffinity(0))}; {args.classes} classes x "
          f"{args.per_class} images per group, output {args.im_size}px JPEG q95; best of "
          f"{args.repeat}")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for g, (label, size) in enumerate(groups.items()):
            root = Path(tmp) / f"group{g}"
            root.mkdir()
            tar, flat = build_archive(root, args.classes, args.per_class, size, seed=g + 1)
            files = sorted(flat.iterdir())
            mb = tar.stat().st_size / 1e6

            def best(fn) -> float:
                times = []
                for r in range(args.repeat):
                    out = root / f"out{r}"
                    times.append(fn(out))
                    shutil.rmtree(out)
                return min(times)

            plain = n / best(lambda out: plain_loop(files, out, args.im_size))
            print(f"\n[{label}] archive {mb:.1f} MB, {n} images")
            print(f"  {'plain Pillow loop (1 core)':32s} {plain:8.1f} images/s")
            rates = {}
            for w in args.workers:
                rates[w] = n / best(lambda out: run_prepare(tar, out, args.classes,
                                                            args.im_size, w))
                line = (f"  {'prepare imagenet --workers ' + str(w):32s} {rates[w]:8.1f} images/s"
                        f"   per core vs plain: {rates[w] / w / plain:5.2f}x")
                if w != args.workers[0] and args.workers[0] == 1:
                    line += f"   scaling vs 1 worker: {rates[w] / rates[1]:5.2f}x"
                print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
