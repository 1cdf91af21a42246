"""The generated tasks' renderers by value, where mutation testing found no test: each split's
labels read off freshly drawn pixels (tests/test_generated_tasks.py draws its splits once per
module, so only its first test counts as covering a renderer), and each renderer's sizes and
positions spanning the ranges its docstring and constants state."""

from __future__ import annotations

import numpy as np
import pytest

from bench.data import generated
from bench.data.generated import (
    COUNT_GAP,
    COUNT_MAX,
    COUNT_RADIUS,
    LOC_RANGE,
    RENDERERS,
    SIZE,
    GeneratedSource,
    RenderedImages,
    _apart,
    _random_shape,
    count,
    generate,
    part_labels,
    shape_loc,
    shape_ori,
)
from bench.data.sources import SourceStatus
from bench.tasks import GENERATED_TASKS, get_task
from tests.conftest import READ_LABEL, blobs

DRAWS = 2000


@pytest.mark.parametrize("name", [task.name for task in GENERATED_TASKS])
def test_each_renderer_draws_its_label(name):
    labels, images = generate(get_task(name), "val200", seed=3)  # not DATA_SEED, the default
    classes = get_task(name).num_classes
    assert [READ_LABEL[name](image, classes) for image in images] == labels.tolist()


def test_gen_count_draws_up_to_count_max_shapes():
    rng = np.random.default_rng(0)
    assert blobs(count(rng, COUNT_MAX - 1, COUNT_MAX)) == COUNT_MAX
    with pytest.raises(ValueError, match=f"at most {COUNT_MAX}"):
        count(rng, 0, COUNT_MAX + 1)


def spied(monkeypatch, name: str) -> list[tuple]:
    """The arguments of every call the renderers make to generated.<name>."""
    calls, real = [], getattr(generated, name)

    def spy(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(generated, name, spy)
    return calls


def drawn_calls(monkeypatch, name: str, renderer) -> np.ndarray:
    """The arguments of generated.<name>'s calls while `renderer` draws DRAWS images over its
    8 labels (a Generator argument as 0)."""
    calls, rng = spied(monkeypatch, name), np.random.default_rng(0)
    for label in range(8):
        for _ in range(DRAWS // 8):
            renderer(rng, label, 8)
    return np.array([[0.0 if isinstance(a, np.random.Generator) else float(a) for a in call]
                     for call in calls])  # fmt: skip


def spans(values, lo: float, hi: float, slack: float) -> bool:
    """Inside [lo, hi] and within `slack` of both ends."""
    values = np.asarray(values)
    return lo <= values.min() < lo + slack and hi - slack < values.max() <= hi


def test_gen_shape_locs_shape_has_a_radius_of_3_to_5_px_and_any_y(monkeypatch):
    _, cx, cy, r = drawn_calls(monkeypatch, "_random_shape", shape_loc).T
    assert spans(r, 3.0, 5.0, 0.05)
    assert spans(cy, *LOC_RANGE, 0.1) and spans(cx, *LOC_RANGE, 1.0)


def test_gen_shape_oris_arrow_is_12_to_18_px_long_and_reaches_the_border(monkeypatch):
    cx, cy, length, width, _ = drawn_calls(monkeypatch, "arrow", shape_ori).T
    assert spans(length, 12.0, 18.0, 0.05)
    assert spans(width / length, 0.5, 0.7, 0.01)
    # the tip lies 2/3 of the length from the centre: the centre keeps it 1 px inside the image
    reach = 2 * length / 3 + 1
    for slack in (cx - reach, SIZE - reach - cx, cy - reach, SIZE - reach - cy):  # each side
        assert 0 <= slack.min() < 0.05


def test_gen_counts_shapes_lie_1_px_inside_the_image_and_count_gap_apart():
    rng = np.random.default_rng(0)
    layouts = [np.array(_apart(rng, n)) for n in range(1, COUNT_MAX + 1) for _ in range(40)]
    cx, cy, r = np.concatenate(layouts).T
    assert spans(r, *COUNT_RADIUS, 0.05)
    for inside in (cx - r - 1, SIZE - 1 - r - cx, cy - r - 1, SIZE - 1 - r - cy):  # each side
        assert 0 <= inside.min() < 0.05
    gaps = [np.hypot(a[0] - b[0], a[1] - b[1]) - a[2] - b[2]
            for layout in layouts for i, a in enumerate(layout) for b in layout[i + 1 :]]  # fmt: skip
    assert COUNT_GAP < min(gaps) < COUNT_GAP + 0.1


def test_a_random_shape_is_a_disc_triangle_or_square_at_any_angle_in_its_box(monkeypatch):
    polygons, discs = spied(monkeypatch, "regular_polygon"), spied(monkeypatch, "disc")
    rng = np.random.default_rng(0)
    for _ in range(DRAWS):
        _, box = _random_shape(rng, 16.0, 15.0, 4.0)
        assert box == (12.0, 11.0, 20.0, 19.0)
    sides = [call[3] for call in polygons]
    shares = np.array([len(discs), sides.count(3), sides.count(4)]) / DRAWS
    assert len(sides) + len(discs) == DRAWS and np.allclose(shares, 1 / 3, atol=0.04)
    assert spans([call[4] for call in polygons], 0.0, 2 * np.pi, 0.02)


def test_the_generated_source_says_where_its_data_comes_from():
    source = GeneratedSource()
    where = "generated in numpy (bench.data.generated)"
    assert source.status(get_task("gen_count"), None) == SourceStatus(True, where, "")
    only = "only gen_shape_loc, gen_shape_ori, gen_count"
    assert source.status(get_task("cifar100"), None) == SourceStatus(False, where, only)


def test_colours_span_a_dark_background_and_a_light_foreground():
    """Each channel: background 0..63, shapes 160..255, so a shape always stands out."""
    rng = np.random.default_rng(0)
    background = np.array([generated._background(rng) for _ in range(DRAWS)])
    foreground = np.array([generated._foreground(rng) for _ in range(DRAWS)])
    assert background.shape == foreground.shape == (DRAWS, 3)
    assert (background.min(), background.max(), foreground.min(), foreground.max()) == (
        0, 63, 160, 255
    )  # fmt: skip


def test_label_order_and_pixels_draw_from_separate_streams():
    """The order of the labels is not made of the random numbers that then draw the images."""
    task = get_task("gen_shape_loc")
    labels = part_labels(task, "val200", 3)
    image_stream = generated._rng(task, "val200", 3, images=True)
    assert not np.array_equal(labels, image_stream.permutation(np.sort(labels)))
    first = next(iter(RenderedImages(task, ("val200",), 3)))
    image_stream = generated._rng(task, "val200", 3, images=True)
    drawn = RENDERERS[task.name](image_stream, int(labels[0]), task.num_classes)
    assert np.array_equal(first, drawn)


def test_rendered_images_count_their_parts():
    task = get_task("gen_count")
    assert len(RenderedImages(task, ("train800", "val200"), 0)) == 1000
    assert len(list(RenderedImages(task, ("val200",), 0))) == 200


def test_a_layout_out_of_range_or_that_cannot_fit_is_an_error_not_a_hang(monkeypatch):
    rng = np.random.default_rng(0)
    for n in (0, COUNT_MAX + 1, None):
        with pytest.raises((ValueError, TypeError)):
            _apart(rng, n)
    assert len(_apart(rng, 1)) == 1 and len(_apart(rng, COUNT_MAX)) == COUNT_MAX
    monkeypatch.setattr(generated, "COUNT_GAP", float(SIZE))  # no two shapes fit this far apart
    draws = []
    monkeypatch.setattr(generated, "COUNT_TRIES", 3)
    uniform = np.random.Generator.uniform

    class Counting(np.random.Generator):
        def uniform(self, *args, **kwargs):
            draws.append(1)
            return uniform(self, *args, **kwargs)

    with pytest.raises(RuntimeError, match="did not fit"):
        _apart(Counting(np.random.PCG64(0)), 2)
    assert len(draws) == generated.COUNT_LAYOUTS * 3 * 2  # radius and centre per try


def test_the_fingerprint_tells_tasks_seeds_and_splits_apart():
    """The data cache keys on it: one cached split must not stand in for another."""
    read = GeneratedSource().read_split
    prints = [read(get_task(name), split, None, seed).fingerprint
              for name in ("gen_count", "gen_shape_loc") for split in ("val200", "test")
              for seed in (0, 1)]  # fmt: skip
    assert all(isinstance(p, str) for p in prints) and len(set(prints)) == 8
