"""The decode-once cache (bench.data.cache) and the BatchLoader on a generated vtab-1k folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bench.data.folder as folder
from bench.data.cache import cached_split
from bench.data.loader import NORMALIZATIONS, BatchLoader
from bench.data.synthetic import make_vtab_folder
from bench.tasks import get_task

EUROSAT = get_task("eurosat")


@pytest.fixture
def data(tmp_path):
    return str(make_vtab_folder(tmp_path / "data", "eurosat", n_train=20, n_test=12, size=24))


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """Counts image decodes by the folder source."""
    calls: list[str] = []
    real = folder.decode_image

    def counting(path, where):
        calls.append(str(path))
        return real(path, where)

    monkeypatch.setattr(folder, "decode_image", counting)
    return calls


def split(data, tmp_path, name="train800", size=16, interpolation="bicubic"):
    return cached_split(
        folder.SOURCE, EUROSAT, name, data, size, interpolation, tmp_path / "cache", progress=False
    )


def test_second_call_reads_the_memmap_without_decoding(data, tmp_path, decodes):
    first = split(data, tmp_path)
    assert len(decodes) == 20
    images = np.array(first.images)
    second = split(data, tmp_path)
    assert len(decodes) == 20  # no decode the second time
    assert isinstance(second.images, np.memmap)
    assert second.images.shape == (20, 3, 16, 16) and second.images.dtype == np.uint8
    np.testing.assert_array_equal(second.images, images)
    np.testing.assert_array_equal(second.labels, [i % 10 for i in range(20)])


def test_cache_matches_a_direct_decode_and_resize(data, tmp_path):
    from bench.data.cache import to_rgb_resized

    cached = split(data, tmp_path, size=16)
    raw = folder.SOURCE.read_split(EUROSAT, "train800", data)
    direct = np.stack([to_rgb_resized(im, 16, "bicubic") for im in raw.images])
    np.testing.assert_array_equal(cached.images, direct)


def test_image_size_and_interpolation_get_their_own_files(data, tmp_path, decodes):
    small = split(data, tmp_path, size=16)
    large = split(data, tmp_path, size=20)
    nearest = split(data, tmp_path, size=16, interpolation="nearest")
    assert small.images.shape[-1] == 16 and large.images.shape[-1] == 20
    files = {s.images.filename for s in (small, large, nearest)}
    assert len(files) == 3 and len(decodes) == 60


def test_a_changed_list_file_misses_the_cache(data, tmp_path, decodes):
    split(data, tmp_path)
    path = f"{data}/eurosat/train800.txt"
    lines = open(path).read().splitlines()
    open(path, "w").write("\n".join(lines[:-1]) + "\n")  # drop one image
    again = split(data, tmp_path)
    assert len(again) == 19 and len(decodes) == 39


def test_splits_are_cached_separately(data, tmp_path):
    assert len(split(data, tmp_path, "test")) == 12
    assert len(split(data, tmp_path, "train800val200")) == 25


# --- BatchLoader -------------------------------------------------------------------------------


@pytest.fixture
def train(data, tmp_path):
    return split(data, tmp_path, "train800val200", size=16)


def test_batches_have_shapes_dtypes_and_all_images(train):
    loader = BatchLoader(train, batch_size=8, normalization="none")
    batches = list(loader)
    assert len(loader) == len(batches) == 4  # 25 images: 8 + 8 + 8 + 1
    images, labels = batches[0]
    assert images.shape == (8, 3, 16, 16) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert sum(len(y) for _, y in batches) == 25
    np.testing.assert_array_equal(torch.cat([y for _, y in batches]).numpy(), train.labels)


@pytest.mark.parametrize("name", list(NORMALIZATIONS))
def test_normalisation_inverts_to_the_stored_pixels(train, name):
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALIZATIONS[name])
    images, _ = next(iter(BatchLoader(train, batch_size=5, normalization=name)))
    pixels = (images * std + mean) * 255.0
    expected = torch.from_numpy(np.array(train.images[:5])).float()
    torch.testing.assert_close(pixels, expected, atol=1e-3, rtol=0)


def test_none_normalisation_gives_unit_range(train):
    images, _ = next(iter(BatchLoader(train, batch_size=25, normalization="none")))
    assert 0.0 <= images.min() and images.max() <= 1.0


def test_drop_last(train):
    loader = BatchLoader(train, batch_size=8, drop_last=True)
    assert len(loader) == 3
    assert [len(y) for _, y in loader] == [8, 8, 8]


def test_seeded_shuffle_is_reproducible(train):
    def order(seed: int, epochs: int = 2) -> list[list[int]]:
        loader = BatchLoader(train, batch_size=25, shuffle=True, seed=seed)
        return [y.tolist() for _ in range(epochs) for _, y in loader]

    assert order(0) == order(0)
    assert order(0) != order(1)
    first, second = order(0)
    assert first != second  # a new order each epoch
    assert sorted(first) == sorted(train.labels.tolist())


def test_memmap_chunks_when_not_resident(data, tmp_path):
    test = split(data, tmp_path, "test", size=16)
    loader = BatchLoader(test, batch_size=5, normalization="none", resident_limit_bytes=0)
    assert loader.resident is None
    images = torch.cat([x for x, _ in loader])
    expected = torch.from_numpy(np.array(test.images)).float() / 255.0
    torch.testing.assert_close(images, expected)
