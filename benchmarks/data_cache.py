"""Speed-up of the decode-once cache: a second run of a split over the first (cold) one.

Run: python benchmarks/data_cache.py [--split train800val200 --size 224 --jpeg-size 32]

Each "run" is what a benchmark run does before training: bench.data.cache.cached_split, then
the split loaded into memory (as BatchLoader does for training splits). The first run decodes
and resizes every JPEG and writes the memmap; the second finds the file and only reads it (from
the OS page cache when the machine has just written it, as here).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from data_pipeline import TASK, write_digits_folder

from bench.data.cache import cached_split
from bench.data.folder import SOURCE as FOLDER


def one_run(data: Path, cache: Path, split: str, size: int) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    images = cached_split(FOLDER, TASK, split, str(data), size, "bicubic", cache, progress=False)
    loaded = np.ascontiguousarray(images.images)
    return time.perf_counter() - start, loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="train800val200")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--jpeg-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="warm runs (the best is shown)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = write_digits_folder(Path(tmp) / "data", size=args.jpeg_size)
        cache = Path(tmp) / "cache"
        cold, first = one_run(data, cache, args.split, args.size)
        warm_runs = [one_run(data, cache, args.split, args.size) for _ in range(args.repeats)]
        warm = min(seconds for seconds, _ in warm_runs)
        assert all(np.array_equal(first, images) for _, images in warm_runs)
        n = len(first)
        print(f"{TASK.name}/{args.split}: {n} JPEGs ({args.jpeg_size} px) -> {args.size} px uint8")
        print(f"first run (decode + resize + write cache): {cold:.3f} s ({n / cold:,.0f} img/s)")
        print(f"second run (memmap read): {warm:.3f} s ({n / warm:,.0f} img/s)")
        print(f"speed-up: {cold / warm:.1f}x")


if __name__ == "__main__":
    main()
