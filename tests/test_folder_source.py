"""The vtab-1k folder source on generated folders, and each bad input's message."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from bench.data.folder import SOURCE
from bench.data.sources import SOURCES, resolve_source
from bench.data.synthetic import make_vtab_folder
from bench.errors import UserError
from bench.tasks import get_task

EUROSAT = get_task("eurosat")


@pytest.fixture
def data(tmp_path) -> Path:
    return make_vtab_folder(tmp_path, "eurosat", n_train=20, n_test=10, size=16, n_val=5)


def list_file(data: Path, split: str) -> Path:
    return data / "eurosat" / f"{split}.txt"


def set_line(data: Path, split: str, number: int, text: str) -> None:
    """Replace line `number` (1-based) of a list file."""
    path = list_file(data, split)
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def read(data: Path, split: str = "train800"):
    return SOURCE.read_split(EUROSAT, split, str(data))


def test_registered_under_folder():
    assert SOURCES.get("folder") is SOURCE
    assert (SOURCE.name, SOURCE.format) == ("folder", "jpeg")


def test_status_found(data):
    status = SOURCE.status(EUROSAT, str(data))
    assert status.found and status.where == str(data / "eurosat")
    assert resolve_source(EUROSAT, "auto", str(data)) is SOURCE


def test_status_missing_names_the_exact_files(tmp_path):
    status = SOURCE.status(EUROSAT, str(tmp_path))
    assert not status.found
    assert str(tmp_path / "eurosat" / "train800val200.txt") in status.where
    assert str(tmp_path / "eurosat" / "test.txt") in status.where
    assert status.how_to_prepare == (
        f"make prepare TASK=eurosat DATA=<tfds data dir> EXPORT={tmp_path}"
    )


def test_status_without_data_dir():
    status = SOURCE.status(EUROSAT, None)
    assert not status.found and "DATA not set" in status.where


def test_status_hints_when_data_is_the_task_folder(data):
    status = SOURCE.status(EUROSAT, str(data / "eurosat"))
    assert not status.found and f"DATA={data}" in status.how_to_prepare


def test_splits_read_back(data):
    sizes = {"train800": 20, "val200": 5, "train800val200": 25, "test": 10}
    for split, size in sizes.items():
        raw = read(data, split)
        assert raw.labels.dtype == np.int64 and len(raw.labels) == size
        images = list(raw.images)
        assert len(images) == size
        assert all(im.dtype == np.uint8 and im.shape == (16, 16, 3) for im in images)
    joined = read(data, "train800val200").labels
    parts = np.concatenate([read(data, "train800").labels, read(data, "val200").labels])
    np.testing.assert_array_equal(joined, parts)
    assert read(data).labels.tolist() == [i % 10 for i in range(20)]


def test_fingerprint_follows_the_list_file(data):
    before = read(data).fingerprint
    assert read(data).fingerprint == before
    set_line(data, "train800", 1, "images/train800/000000.jpg 9")
    assert read(data).fingerprint != before


def test_blank_lines_and_crlf_are_accepted(data):
    path = list_file(data, "train800")
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n") + b"\r\n\r\n")
    assert len(read(data).labels) == 20


def test_unknown_split(data):
    with pytest.raises(UserError, match="unknown split 'train'"):
        read(data, "train")


def test_no_data_dir():
    with pytest.raises(UserError, match="needs DATA="):
        SOURCE.read_split(EUROSAT, "train800", None)


def test_missing_list_file(data):
    list_file(data, "val200").unlink()
    with pytest.raises(UserError) as error:
        read(data, "val200")
    assert f"{list_file(data, 'val200')}: list file not found" in str(error.value)
    assert "make prepare TASK=eurosat" in str(error.value)


def test_malformed_line(data):
    set_line(data, "train800", 3, "images/train800/000002.jpg")
    with pytest.raises(UserError, match="malformed line") as error:
        read(data)
    assert f"{list_file(data, 'train800')}:3:" in str(error.value)


def test_non_integer_label(data):
    set_line(data, "train800", 2, "images/train800/000001.jpg cat")
    with pytest.raises(UserError, match="label 'cat' is not an integer") as error:
        read(data)
    assert f"{list_file(data, 'train800')}:2:" in str(error.value)


@pytest.mark.parametrize("bad", [10, -1])
def test_label_out_of_range(data, bad):
    set_line(data, "test", 4, f"images/test/000003.jpg {bad}")
    with pytest.raises(UserError, match=r"outside \[0, 10\)") as error:
        read(data, "test")
    assert f"{list_file(data, 'test')}:4:" in str(error.value)


@pytest.mark.parametrize("path", ["../x.jpg", "images/../../eurosat/images/test/000000.jpg"])
def test_path_leaving_the_task_folder(data, path):
    set_line(data, "train800", 5, f"{path} 4")
    with pytest.raises(UserError, match="leaves the task folder") as error:
        read(data)
    assert f"{list_file(data, 'train800')}:5:" in str(error.value)


def test_absolute_path(data):
    target = data / "eurosat" / "images" / "train800" / "000000.jpg"  # exists, still refused
    set_line(data, "train800", 1, f"{target} 0")
    with pytest.raises(UserError, match="absolute image path") as error:
        read(data)
    assert f"{list_file(data, 'train800')}:1:" in str(error.value)


def test_missing_image(data):
    (data / "eurosat" / "images" / "train800" / "000006.jpg").unlink()
    with pytest.raises(UserError, match="image not found") as error:
        read(data)
    assert f"{list_file(data, 'train800')}:7:" in str(error.value)
    assert "000006.jpg" in str(error.value)


def test_corrupt_image_fails_when_decoded(data):
    bad = data / "eurosat" / "images" / "train800" / "000003.jpg"
    bad.write_bytes(b"not a jpeg at all")
    raw = read(data)  # list checks pass: the file exists
    with pytest.raises(UserError, match="cannot decode image") as error:
        list(raw.images)
    assert str(bad) in str(error.value)
    assert f"{list_file(data, 'train800')}:4:" in str(error.value)


def test_truncated_image_fails_when_decoded(data):
    bad = data / "eurosat" / "images" / "test" / "000000.jpg"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(UserError, match="cannot decode image") as error:
        list(read(data, "test").images)
    assert str(bad) in str(error.value)


def test_missing_class_in_training_list_warns(tmp_path):
    data = make_vtab_folder(tmp_path, "eurosat", n_train=6, n_test=4, size=8, n_val=1)
    with pytest.warns(UserWarning, match="4 of 10 classes have no training image: 6, 7, 8, 9"):
        read(data, "train800val200")
    assert _warnings_from(read, data, "train800") == []  # only train800val200 is checked


def test_complete_training_list_does_not_warn(data):
    assert _warnings_from(read, data, "train800val200") == []


def _warnings_from(function, *args) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        function(*args)
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
