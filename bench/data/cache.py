"""Decode once: every split is decoded, resized and stored as uint8 (N, 3, S, S) on disk.

Later runs memory-map the file, so a second run starts fast and a large test split (dsprites:
73,728 images) never needs to fit in memory. Normalisation happens on the fly in the loader.
The key hashes the source's fingerprint, the task's version, the split and the preprocessing.

An entry is `<split>-<size>px-<key>.{images,labels}.npy` and its manifest (`.manifest.json`,
written last: sizes and checksums, `bench.cache_entry`). Every read checks the files against the
manifest, the arrays' shapes and dtypes, and the labels against the source's; a damaged entry is
set aside and decoded again. An entry of an older version (no manifest) is checked for all but the
checksums and then given its manifest: decoding again can take minutes, and its pixels are what
this version would write.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from bench.cache_entry import (
    Damaged,
    check_files,
    read_manifest,
    require,
    set_aside,
    write_manifest,
)
from bench.data.sources import Source
from bench.tasks import TaskSpec

CACHE_FORMAT = 1
INTERPOLATIONS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


@dataclass
class ImageSplit:
    images: np.ndarray  # (N, 3, S, S) uint8, usually a read-only memmap
    labels: np.ndarray  # (N,) int64
    key: str = ""  # hash of what produced it (source bytes, task version, split, preprocessing)

    def __len__(self) -> int:
        return len(self.labels)


def to_rgb_resized(image: np.ndarray, size: int, interpolation: str) -> np.ndarray:
    """HWC/HW uint8 image -> (3, size, size) uint8, grayscale tiled to RGB."""
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    pil = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
    if pil.size != (size, size):
        pil = pil.resize((size, size), INTERPOLATIONS[interpolation])
    return np.asarray(pil).transpose(2, 0, 1)


def cached_split(
    source: Source,
    task: TaskSpec,
    split: str,
    data_dir: str | None,
    image_size: int,
    interpolation: str,
    cache_root: Path,
    progress: bool = True,
) -> ImageSplit:
    """The split as uint8 tensors, decoded on first use and memory-mapped afterwards."""
    raw = source.read_split(task, split, data_dir)
    key = _key(source.name, raw.fingerprint, task, split, image_size, interpolation)
    path = cache_root / "data" / task.name / f"{split}-{image_size}px-{key}"
    entry = _entry_files(path)
    if any(f.exists() for f in entry):
        try:
            return _read(entry, lambda: raw.labels, image_size, key)
        except Damaged as damage:
            set_aside(damage, entry, cache_root)
    images_file, labels_file, manifest_file = entry
    _write(raw, images_file, labels_file, image_size, interpolation, f"{task.name}/{split}",
           progress)  # fmt: skip
    write_manifest(manifest_file, [images_file, labels_file])
    return _read(entry, lambda: raw.labels, image_size, key)


def _entry_files(path: Path) -> list[Path]:
    """images, labels, manifest"""
    return [path.with_suffix(s) for s in (".images.npy", ".labels.npy", ".manifest.json")]


def _read(entry: list[Path], source_labels, size: int, key: str) -> ImageSplit:
    """The entry, checked: against its manifest, then the arrays' shapes and dtypes. Only an
    entry without a manifest (an older version's) has its labels compared with the source's
    (`source_labels()`, which reads every record of a tfds split: a checked hit reads none).
    Raises `Damaged` naming the first file that fails."""
    images_file, labels_file, manifest_file = entry
    require([images_file, labels_file])
    adopt = not manifest_file.exists()  # an older version's entry
    if not adopt:
        check_files(read_manifest(manifest_file), [images_file, labels_file])
    stored = _load(labels_file)
    if stored.dtype != np.int64 or stored.ndim != 1:
        raise Damaged(labels_file, f"holds {stored.dtype} {stored.shape}, expected int64 (N,)")
    if adopt and not np.array_equal(stored, source_labels()):
        raise Damaged(labels_file, "its labels are not the source's")
    n = len(stored)
    images = _load(images_file, mmap_mode="r")
    if images.dtype != np.uint8 or images.shape != (n, 3, size, size):
        raise Damaged(images_file, f"holds {images.dtype} {images.shape}, expected uint8 "
                                   f"{(n, 3, size, size)}")  # fmt: skip
    if adopt:
        write_manifest(manifest_file, [images_file, labels_file])
    return ImageSplit(images, stored, key)


def _load(path: Path, **kwargs) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False, **kwargs)
    except (OSError, ValueError, EOFError) as err:
        raise Damaged(path, f"does not load ({type(err).__name__}: {err})") from err


def _key(source: str, fingerprint: str, task: TaskSpec, split: str, size: int, interp: str) -> str:
    if interp not in INTERPOLATIONS:
        raise ValueError(
            f"unknown interpolation {interp!r}; expected one of {list(INTERPOLATIONS)}"
        )
    payload = [CACHE_FORMAT, source, fingerprint, task.name, task.version, split, size, interp]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def _write(
    raw, images_file: Path, labels_file: Path, size: int, interp: str, what: str, progress: bool
):
    """Stream images into a memmap under a temporary name, then rename: never a half file."""
    images_file.parent.mkdir(parents=True, exist_ok=True)
    n = len(raw.labels)
    tmp_images = images_file.with_name(f".{images_file.name}.{os.getpid()}.tmp")
    out = np.lib.format.open_memmap(tmp_images, mode="w+", dtype=np.uint8, shape=(n, 3, size, size))
    count = 0
    for i, image in enumerate(
        tqdm(raw.images, total=n, desc=f"decode {what}", disable=not progress)
    ):
        out[i] = to_rgb_resized(image, size, interp)
        count += 1
    out.flush()
    del out
    if count != n:
        tmp_images.unlink(missing_ok=True)
        raise RuntimeError(f"{what}: the source gave {count} images for {n} labels")
    tmp_labels = labels_file.with_name(f".{labels_file.name}.{os.getpid()}.tmp.npy")
    np.save(tmp_labels, np.asarray(raw.labels, dtype=np.int64))
    os.replace(tmp_labels, labels_file)
    os.replace(tmp_images, images_file)
