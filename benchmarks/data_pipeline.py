"""Images/s of the decode-once pipeline against per-sample JPEG decode + resize every epoch.

Run: python benchmarks/data_pipeline.py [--epochs 3 --workers 2 --threads 1 --jpeg-sizes 32,384
     --size 224 --device cpu]

Data: a vtab-1k folder (task `digits`) of scikit-learn's digits upsampled to JPEGs of each size:
train800val200 holds 1000 images. Decode-once = bench.data.cache.cached_split (decode and resize
once into a uint8 memmap) + bench.data.loader.BatchLoader; its first epoch (which builds the
cache) is reported apart and the rate counts the epochs after it. The baseline is what most PETL
repositories do: a torch Dataset that opens each JPEG with PIL, resizes it to 224 bicubic and
normalises it, in a DataLoader, every epoch.

On a CPU both pipelines pay for turning 224 px uint8 images into normalised floats, which bounds
the ratio there (more so with tiny 32 px JPEGs, whose decode is cheap); with --device cuda the
decode-once batches stay uint8 on the GPU and are normalised there.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, Dataset

from bench.data.cache import cached_split
from bench.data.folder import SOURCE as FOLDER
from bench.data.loader import BatchLoader, normalization_stats
from bench.tasks import get_task

TASK = get_task("digits")


def write_digits_folder(root: Path, size: int = 32, train: int = 800, val: int = 200) -> Path:
    """scikit-learn's 1797 digits as a vtab-1k folder of `size` px JPEGs; returns the DATA root."""
    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    ranges = {"train800": (0, train), "val200": (train, train + val), "test": (train + val, None)}
    lines = {}
    for split, (start, stop) in ranges.items():
        (root / TASK.name / "images" / split).mkdir(parents=True, exist_ok=True)
        lines[split] = []
        for i, index in enumerate(range(len(pixels))[start:stop]):
            relative = f"images/{split}/{i:06d}.jpg"
            image = Image.fromarray(pixels[index]).resize((size, size), Image.Resampling.BICUBIC)
            image.convert("RGB").save(root / TASK.name / relative, format="JPEG", quality=75)
            lines[split].append(f"{relative} {int(digits.target[index])}")
    lines["train800val200"] = lines["train800"] + lines["val200"]
    for split, split_lines in lines.items():
        (root / TASK.name / f"{split}.txt").write_text("".join(f"{x}\n" for x in split_lines))
    return root


class JpegDataset(Dataset):
    """The usual per-sample pipeline: open, convert, resize, normalise, on every access."""

    def __init__(self, data: Path, split: str, size: int, normalization: str) -> None:
        raw = FOLDER.read_split(TASK, split, str(data))
        self.paths = [entry.path for entry in raw.images.entries]
        self.labels = raw.labels
        self.size = size
        mean, std = normalization_stats(normalization)
        self.mean = np.array(mean, np.float32).reshape(3, 1, 1)
        self.std = np.array(std, np.float32).reshape(3, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[index]) as image:
            image = image.convert("RGB").resize((self.size, self.size), Image.Resampling.BICUBIC)
        # Contiguous CHW, as torchvision's ToTensor gives (a strided array makes collate slow).
        array = np.ascontiguousarray(np.asarray(image, np.float32).transpose(2, 0, 1)) / 255.0
        return torch.from_numpy((array - self.mean) / self.std), int(self.labels[index])


def run_epochs(batches, epochs: int, device: torch.device) -> tuple[float, int]:
    """Seconds and images for `epochs` passes; each batch lands on `device`."""
    count, start = 0, time.perf_counter()
    for _ in range(epochs):
        for images, _labels in batches:
            images = images.to(device, non_blocking=True)
            count += len(images)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, count


def compare(jpeg_size: int, args: argparse.Namespace, device: torch.device) -> float:
    """Both pipelines on one generated folder; prints their rates and returns the ratio."""
    with tempfile.TemporaryDirectory() as tmp:
        data = write_digits_folder(Path(tmp) / "data", size=jpeg_size)
        print(
            f"\n== 1000 digits JPEGs of {jpeg_size} px -> {args.size} px, batch {args.batch_size}"
        )
        start = time.perf_counter()
        split = cached_split(
            FOLDER, TASK, "train800val200", str(data), args.size, "bicubic", Path(tmp) / "cache",
            progress=False,
        )  # fmt: skip
        loader = BatchLoader(split, args.batch_size, device, args.normalization, shuffle=True)
        _, n = run_epochs(loader, 1, device)
        build = time.perf_counter() - start
        print(
            f"decode-once: first epoch incl. building the cache {build:.2f} s ({n / build:.0f} img/s)"
        )
        seconds, n = run_epochs(loader, args.epochs, device)
        cached_rate = n / seconds
        print(f"decode-once: {args.epochs} epochs after the first: {cached_rate:,.0f} img/s")

        dataset = JpegDataset(data, "train800val200", args.size, args.normalization)
        batches = DataLoader(
            dataset, args.batch_size, shuffle=True, num_workers=args.workers,
            persistent_workers=args.workers > 0, generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        seconds, n = run_epochs(batches, args.epochs, device)
        baseline_rate = n / seconds
        print(
            f"per-sample PIL decode + resize (DataLoader, {args.workers} workers): "
            f"{args.epochs} epochs: {baseline_rate:,.0f} img/s"
        )
    ratio = cached_rate / baseline_rate
    print(f"ratio decode-once / per-sample: {ratio:.1f}x (target >= 5x)")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="model input size")
    parser.add_argument(
        "--jpeg-sizes", default="32,384",
        help="stored JPEG sizes to try: 32 is CIFAR/SVHN-like, 384 like most natural VTAB tasks",
    )  # fmt: skip
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (baseline)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--normalization", default="imagenet")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    ratios = {size: compare(size, args, device) for size in map(int, args.jpeg_sizes.split(","))}
    print("\nsummary: " + ", ".join(f"{s} px JPEGs {r:.1f}x" for s, r in ratios.items()))


if __name__ == "__main__":
    main()
