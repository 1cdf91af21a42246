import pytest

from bench.config import load_config
from bench.errors import UserError
from bench.models.petl import PETL_METHODS
from bench.pruning import PRUNERS, Budget, NoPruning, make_pruner
from bench.registry import Registry
from bench.tasks import TASKS


def test_lookup_by_name_and_alias():
    registry: Registry[int] = Registry("thing")
    registry.register("alpha", 1, aliases=("a",))
    assert registry.get("alpha") == 1
    assert registry.get("A") == 1
    assert registry.names() == ["alpha"]


def test_duplicate_registration_is_an_error():
    registry: Registry[int] = Registry("thing")
    registry.register("alpha", 1)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("alpha", 2)


def test_unregister_removes_the_name_and_its_aliases():
    registry: Registry[int] = Registry("thing")
    registry.register("alpha", 1, aliases=("a",))
    registry.register("beta", 2, aliases=("b",))
    registry.unregister("a")
    assert registry.names() == ["beta"]
    assert "alpha" not in registry and "a" not in registry and "b" in registry
    registry.register("alpha", 3, aliases=("a",))  # free again
    assert registry.get("a") == 3
    with pytest.raises(UserError, match="unknown thing 'gamma'"):
        registry.unregister("gamma")


def test_lazy_entry_is_imported_on_first_get():
    registry: Registry = Registry("thing")
    registry.register("join", "os.path:join")
    import os.path

    assert registry.get("join") is os.path.join


@pytest.mark.parametrize(
    ("registry", "typo", "suggestion"),
    [
        (TASKS, "cifar10", "cifar100"),
        (PETL_METHODS, "convpas", "convpass"),
        (PRUNERS, "nonee", "none"),
    ],
)
def test_unknown_names_list_valid_ones_with_did_you_mean(registry, typo, suggestion):
    with pytest.raises(UserError) as err:
        registry.get(typo)
    message = str(err.value)
    assert f"Did you mean {suggestion!r}" in message
    assert "Valid:" in message


def test_unknown_preset_is_a_user_error():
    with pytest.raises(UserError, match="Did you mean 'paper'"):
        load_config("papr")


def test_unknown_setting_is_a_user_error():
    with pytest.raises(UserError, match="unknown setting 'train.epochz'"):
        load_config("demo", {"train.epochz": "3"})


def test_unknown_pruner_option_is_a_user_error():
    with pytest.raises(UserError, match="no setting"):
        make_pruner("none", {"alpha": 0.3})


@pytest.mark.parametrize("text", ["keep:3", "params:0.25", "match-sls", "none"])
def test_budget_parses(text):
    assert str(Budget.parse(text)).startswith(text.split(":")[0])


@pytest.mark.parametrize("text", ["keep:x", "params:1.5", "half"])
def test_bad_budget_is_a_user_error(text):
    with pytest.raises(UserError, match="unknown budget"):
        Budget.parse(text)


@pytest.mark.parametrize("attempt", [1, 2])  # the second registers the name the first released
def test_register_pruner_lasts_one_test(register_pruner, attempt):
    register_pruner("test_temporary", NoPruning)
    assert PRUNERS.get("test_temporary") is NoPruning
