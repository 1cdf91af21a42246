"""What pruners draw from the calibration loader (train800val200, fixed order, never test): a
seeded sample of its images, or its first images batch by batch."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def sample_calibration(loader, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` calibration images drawn without replacement (seeded) from the fixed-order loader."""
    total = len(loader.split)
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.zeros(total, dtype=torch.bool)
    chosen[torch.randperm(total, generator=generator)[:n]] = True
    images, labels, offset = [], [], 0
    for x, y in loader:
        mask = chosen[offset : offset + len(x)].to(x.device)
        images.append(x[mask])
        labels.append(y[mask])
        offset += len(x)
    return torch.cat(images), torch.cat(labels)


def calibration_batches(
    loader, max_images: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's (images, labels) batches, the last one cut so that at most `max_images`
    images come out (None: all); stops at the first empty batch."""
    count = 0
    for images, labels in loader:
        if max_images is not None:
            keep = max(0, max_images - count)
            images, labels = images[:keep], labels[:keep]
        if len(images) == 0:
            return
        count += len(images)
        yield images, labels
