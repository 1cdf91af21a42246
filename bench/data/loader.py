"""Batches straight from uint8 tensors: no per-sample decode, normalised on the device."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from bench.data.cache import ImageSplit

NORMALIZATIONS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # NOAH, Convpass, SLS
    "0.5": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # timm's config for the in21k ViTs
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),  # OpenAI
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # FacT, PETL_Vision: pixels in [0, 1]
}


def normalization_stats(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if name not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {name!r}; expected one of {list(NORMALIZATIONS)}")
    return NORMALIZATIONS[name]


class BatchLoader:
    """Iterates (images, labels) batches of an ImageSplit on `device`.

    Small splits (training: 1000 images) are held as one uint8 tensor on the device; large ones
    are read from the memmap chunk by chunk in order. Shuffling is seeded per epoch.
    """

    def __init__(
        self,
        split: ImageSplit,
        batch_size: int,
        device: torch.device | str = "cpu",
        normalization: str = "imagenet",
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        resident_limit_bytes: int = 1 << 30,
    ) -> None:
        self.split, self.batch_size = split, batch_size
        self.device = torch.device(device)
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.epoch = 0
        mean, std = normalization_stats(normalization)
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1) * 255.0
        self.labels = torch.from_numpy(np.asarray(split.labels, dtype=np.int64)).to(self.device)
        self.resident = None
        if shuffle or split.images.nbytes <= resident_limit_bytes:
            self.resident = torch.from_numpy(np.array(split.images)).to(self.device)

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.split)
        order = None
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=generator).to(self.device)
        self.epoch += 1
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, n)
            if order is not None:
                index = order[lo:hi]  # index_select: ~10x faster than fancy indexing here
                yield self._normalize(self.resident.index_select(0, index)), self.labels[index]
            else:
                yield self._normalize(self._slice(lo, hi)), self.labels[lo:hi]

    def _slice(self, lo: int, hi: int) -> torch.Tensor:
        if self.resident is not None:
            return self.resident[lo:hi]
        chunk = torch.from_numpy(np.array(self.split.images[lo:hi]))
        return chunk.to(self.device, non_blocking=True)

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().sub_(self.mean).div_(self.std)  # in place: no extra float copies
