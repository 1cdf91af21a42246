"""Pruners declare what they prune and type their settings: a bad pair or a bad value fails in
one line before any data is decoded or any epoch trained; the registry names each pruner."""

from __future__ import annotations

import typing
from dataclasses import dataclass

import pytest

import bench.plugins  # noqa: F401  (registers every pruner)
import bench.preflight
import bench.run
from bench.config import coerce
from bench.errors import UserError
from bench.pruning import (
    PRUNERS,
    PruneContext,
    Pruner,
    PruneResult,
    PrunerRegistry,
    check_supported,
    make_pruner,
)
from tests.conftest import cli_error


def test_unsupported_petl_fails_before_training_with_what_to_use(no_training, monkeypatch, capsys):
    monkeypatch.setattr(bench.preflight, "build_backbone", no_training)  # nor any weights read
    err = cli_error(["--petl", "lora", "--methods", "none,magnitude"], capsys)
    assert err.startswith(
        "magnitude does not prune PETL lora models (it supports convpass, adapter, repadapter); "
        "use PETL=convpass or METHODS="
    )
    offered = err.partition("METHODS=")[2].split(",")  # what prunes lora: no control, no width
    assert "sls" in offered and "cka" in offered
    assert not {"none", "retrained", "magnitude", "taylor", "spa"} & set(offered)


def test_bad_setting_value_fails_before_training(no_training, monkeypatch, capsys):
    monkeypatch.setattr(bench.preflight, "build_backbone", no_training)
    err = cli_error(["--methods", "sls", "--set", "pruners.sls.alpha=abc"], capsys)
    assert err == "pruners.sls.alpha 'abc': expected a number"


def test_settings_of_a_pruner_not_run_are_checked_too(no_training, capsys):
    # SLS's settings decide the match-sls budget of magnitude
    err = cli_error(["--methods", "magnitude", "--set", "pruners.sls.metric=silhuette"], capsys)
    assert err.startswith("pruners.sls.metric 'silhuette': expected one of silhouette,")
    err = cli_error(["--methods", "sls", "--set", "pruners.sl.alpha=0.5"], capsys)
    assert err.startswith("unknown method 'sl'. Did you mean 'sls'?")


def test_backbone_family_is_checked_before_training(no_training, monkeypatch, capsys):
    monkeypatch.setattr(PRUNERS.get("cka"), "backbones", frozenset({"swin"}))
    err = cli_error(["--methods", "none,cka"], capsys)
    assert err.startswith("cka does not prune vit backbones (it supports swin); use one of those")


def test_spa_names_the_petl_method_it_needs():
    with pytest.raises(UserError, match=r"\(it supports splora\); use PETL=splora or METHODS="):
        check_supported(PRUNERS.get("spa"), "adaptformer", "vit")  # an alias of adapter
    check_supported(PRUNERS.get("spa"), "splora", "vit")
    check_supported(PRUNERS.get("sls"), "lora", "vit")  # None: every PETL method


def test_unsupported_backbone_family_is_refused():
    with pytest.raises(
        UserError, match=r"^magnitude does not prune swin backbones \(it supports vit\)"
    ):
        check_supported(PRUNERS.get("magnitude"), "convpass", "swin")
    check_supported(PRUNERS.get("sls"), "convpass", "swin")


@pytest.mark.parametrize(
    ("name", "option", "text", "value"),
    [
        ("sls", "alpha", "0.5", 0.5),  # float
        ("sls", "alpha", "1", 1.0),
        ("sls", "min_blocks", "3", 3),  # int
        ("sls", "full_curve", "true", True),  # bool
        ("sls", "full_curve", "0", False),
        ("sls", "metric", "probe", "probe"),  # Literal
        ("block_influence", "max_images", "none", None),  # Optional
        ("block_influence", "max_images", "50", 50),
        ("magnitude", "round_to", "null", None),
    ],
)
def test_command_line_values_are_typed_by_the_field(name, option, text, value):
    got = getattr(make_pruner(name, {option: text}), option)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("name", "option", "text", "message"),
    [
        ("sls", "alpha", "abc", "pruners.sls.alpha 'abc': expected a number"),
        ("sls", "min_blocks", "2.5", "pruners.sls.min_blocks '2.5': expected an integer"),
        ("sls", "full_curve", "maybe", "pruners.sls.full_curve 'maybe': expected true or false"),
        ("pear", "knowledge", "max", "pruners.pear.knowledge 'max': expected one of distil, none"),
        ("pear", "knowledge", 1, "pruners.pear.knowledge 1: expected one of distil, none, taylor"),
        ("cka", "max_images", "all", "pruners.cka.max_images 'all': expected an integer"),
        ("sls", "workers", "-1", "pruners.sls.workers must be >= 0"),
        ("sls", "min_blocks", "0", "pruners.sls.min_blocks must be >= 1"),
        ("block_benefit", "sparse_at", "0.05", "pruners.block_benefit: need 0 <= prune_start"),
    ],
)
def test_bad_values_are_refused_when_the_pruner_is_built(name, option, text, message):
    with pytest.raises(UserError) as err:
        make_pruner(name, {option: text})
    assert str(err.value).startswith(message)


def test_coerce_keeps_strings_and_typed_values():
    assert coerce("abc", str, "x") == "abc"
    assert coerce(0.5, float, "x") == 0.5  # a preset's value is kept as it is
    assert coerce("a,b", list[str], "x") == ["a", "b"]


def test_sls_choices_are_the_ones_its_steps_accept():
    from sls.embed import EMBED_METHODS
    from sls.features import FEATURES
    from sls.score import HIGHER_IS_BETTER

    hints = typing.get_type_hints(PRUNERS.get("sls"))
    assert typing.get_args(hints["metric"]) == tuple(HIGHER_IS_BETTER)
    assert typing.get_args(hints["embedding"]) == EMBED_METHODS
    assert typing.get_args(hints["feature"]) == FEATURES


def test_the_registry_names_the_pruner():
    registry = PrunerRegistry("method")

    @registry.register("keep_all")
    @dataclass
    class KeepAll(Pruner):
        def prune(self, ctx: PruneContext) -> PruneResult:
            return PruneResult(ctx.model)

    assert KeepAll.name == "keep_all" and registry.get("keep_all") is KeepAll
    assert all(PRUNERS.get(name).name == name for name in PRUNERS.names())
