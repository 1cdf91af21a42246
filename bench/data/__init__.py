"""Data: sources (digits, vtab-1k folders, tensorflow-datasets) -> decode-once cache -> loaders."""

from bench.data.cache import ImageSplit, cached_split
from bench.data.loader import BatchLoader, normalization_stats
from bench.data.sources import SOURCES, RawSplit, Source, SourceStatus, resolve_source

__all__ = [
    "SOURCES",
    "BatchLoader",
    "ImageSplit",
    "RawSplit",
    "Source",
    "SourceStatus",
    "cached_split",
    "normalization_stats",
    "resolve_source",
]
