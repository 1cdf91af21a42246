"""One task's data for a run set: the decoded splits, and the loaders every training shares."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.config import DataConfig, Recipe
from bench.data.cache import ImageSplit, cached_split
from bench.data.loader import BatchLoader
from bench.data.sources import resolve_source
from bench.paths import cache_dir
from bench.tasks import TaskSpec

CALIBRATION_BATCH = 250


@dataclass
class TaskData:
    task: TaskSpec
    source_name: str
    source_format: str
    train: ImageSplit
    eval: ImageSplit
    normalization: str = "imagenet"


def load_data(config: DataConfig, task: TaskSpec, progress: bool) -> TaskData:
    """The training and evaluation splits, decoded once (memory-mapped cache)."""
    source = resolve_source(task, config.source, config.data_dir)

    def split(name: str) -> ImageSplit:
        return cached_split(source, task, name, config.data_dir, config.image_size,
                            config.interpolation, cache_dir(), progress)  # fmt: skip

    return TaskData(task, source.name, source.format, split(config.train_split),
                    split(config.eval_split), config.normalization)  # fmt: skip


def data_loaders(data: TaskData, recipe: Recipe, device: torch.device, seed: int):
    """Training loader (shuffled by the seed, drop_last) and evaluation loader."""
    train_loader = BatchLoader(data.train, recipe.batch_size, device, data.normalization,
                               shuffle=True, drop_last=True, seed=seed)  # fmt: skip
    eval_loader = BatchLoader(data.eval, recipe.eval_batch_size, device, data.normalization)
    return train_loader, eval_loader


def calibration_loader(data: TaskData, device: torch.device) -> BatchLoader:
    """The training split (train800val200) in a fixed order; never the test set."""
    return BatchLoader(data.train, CALIBRATION_BATCH, device, data.normalization)
