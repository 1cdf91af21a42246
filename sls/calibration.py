"""Which calibration images SLS embeds for each block (`pruners.sls.calibration`).

- `all` (default): every calibration image (train800val200: 1000), in the loader's fixed order,
  the same set for every block. The authors' 2023 visualization.py also embedded all 1000 (its
  batches of 40 divide 1000), though its shuffling loader gave each block another order, which
  the silhouette ignores and t-SNE's result depends on only slightly.
- `released`: what the released prune.py embeds. Its training loader (batch 64, shuffle=True,
  drop_last=True) is iterated anew for every block it scores, so each block gets its own random
  960 of the 1000 images (n // 64 * 64), in its own order. Drawn here from a generator seeded
  with the run's seed, one draw per block in the scan's order (N, N-1, ..., 1), all drawn up
  front so a lazy or parallel scan embeds the same images; the authors' draws (torch's global
  generator after their seeding and model building) cannot be reproduced.
"""

from __future__ import annotations

import numpy as np

from bench.errors import UserError

CALIBRATIONS = ("all", "released")
RELEASED_BATCH = 64  # prune.py's loader: batch 64, drop_last


def released_indices(images: int, blocks: int, seed: int) -> list[np.ndarray]:
    """Per block (index l - 1), the images prune.py's reshuffled, drop_last loader would give
    that block: a fresh permutation cut to whole batches of 64."""
    used = images // RELEASED_BATCH * RELEASED_BATCH
    if used == 0:
        raise UserError(
            f"pruners.sls.calibration=released needs at least {RELEASED_BATCH} calibration "
            f"images (one batch of the released loader), got {images}"
        )
    rng = np.random.default_rng(seed)
    draws = {block: rng.permutation(images)[:used] for block in range(blocks - 1, -1, -1)}
    return [draws[block] for block in range(blocks)]


def block_samples(
    features: list[np.ndarray], labels: np.ndarray, calibration: str, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(features, labels) each block is scored on, as `calibration` says."""
    if calibration == "all":
        return [(f, labels) for f in features]
    if calibration != "released":
        raise ValueError(f"unknown calibration {calibration!r}; expected one of {CALIBRATIONS}")
    indices = released_indices(len(labels), len(features), seed)
    return [(f[i], labels[i]) for f, i in zip(features, indices, strict=True)]
