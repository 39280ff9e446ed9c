"""Parallel conversion of a stream of encoded images.

The main process reads the sources (tar members, files) and hands their *bytes* to worker
processes in chunks; workers decode, convert, resize and encode (the whole per-image cost) and
send back the encoded output. Results come back as they complete; each image's result depends
only on its bytes and the parameters, so outputs are identical for any number of workers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from hrcam.data.common import DEFAULT_JPEG_QUALITY, convert_image
from hrcam.utils import worker_context

#: A conversion result: ("ok", encoded bytes, source width, source height, source mode) or
#: ("skipped", reason).
Result = tuple
_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


def conversion_params(im_size: int, resize: str = "stretch", fmt: str = "jpeg",
                      quality: int = DEFAULT_JPEG_QUALITY) -> dict[str, Any]:
    from hrcam.data.common import FORMATS, RESIZE_MODES

    if int(im_size) < 1:
        raise ValueError(f"--im-size must be positive, got {im_size}")
    if resize not in RESIZE_MODES:
        raise ValueError(f"--resize must be one of {RESIZE_MODES}, got {resize!r}")
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, got {fmt!r}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"--quality must be in 1..100, got {quality}")
    return {"im_size": int(im_size), "resize": resize, "fmt": fmt, "quality": int(quality)}


def convert_one(data: bytes | None, params: dict[str, Any]) -> Result:
    """Convert one image; never raises for bad image data (returns a "skipped" result)."""
    import warnings

    if data is None:
        return ("skipped", "unreadable source")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            encoded, width, height, mode = convert_image(data, **params)
    except Exception as error:  # noqa: BLE001 - every decoder failure is a skip reason
        message = str(error).strip().replace("\n", " ") or "no message"
        message = _OBJECT_REPR.sub("data", message)  # "<_io.BytesIO object at 0x...>"
        if data and len(data) > 0 and type(error).__name__ != "ValueError":
            message = f"{type(error).__name__}: {message}"
        return ("skipped", f"undecodable: {message}")
    return ("ok", encoded, width, height, mode)


def _convert_chunk(chunk: list[tuple[Any, bytes | None]], params: dict[str, Any]
                   ) -> list[tuple[Any, Result]]:
    return [(tag, convert_one(data, params)) for tag, data in chunk]


def convert_stream(items: Iterable[tuple[Any, bytes | None]], params: dict[str, Any],
                   workers: int = 1, chunk_size: int = 8) -> Iterator[tuple[Any, Result]]:
    """Convert ``(tag, bytes)`` items; yield ``(tag, result)`` as results complete.

    ``workers <= 1`` converts in this process (no pool overhead). Otherwise a pool of
    ``workers`` processes gets chunks of ``chunk_size`` items, with a bounded number of chunks
    in flight, so memory stays small however large the source is. The items iterator is
    consumed lazily, in this process.
    """
    if workers <= 1:
        for tag, data in items:
            yield tag, convert_one(data, params)
        return
    max_in_flight = 3 * workers
    with ProcessPoolExecutor(max_workers=workers, mp_context=worker_context(["hrcam.data.engine"])) as pool:
        in_flight: set = set()
        chunk: list = []
        iterator = iter(items)
        exhausted = False
        while True:
            while not exhausted and len(in_flight) < max_in_flight:
                try:
                    chunk.append(next(iterator))
                except StopIteration:
                    exhausted = True
                    break
                if len(chunk) >= chunk_size:
                    in_flight.add(pool.submit(_convert_chunk, chunk, params))
                    chunk = []
            if exhausted and chunk:
                in_flight.add(pool.submit(_convert_chunk, chunk, params))
                chunk = []
            if not in_flight:
                if exhausted:
                    return
                continue
            done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                yield from future.result()


def effective_workers(workers: int | None) -> int:
    if workers is None:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:
            return max(1, os.cpu_count() or 1)
    if int(workers) < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    return int(workers)
