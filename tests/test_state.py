import torch

from bench.models.petl import attach_petl, resolve_settings
from bench.pruning import NoPruning
from bench.state import read_task_state, rebuild, save_task_state
from tests.conftest import petl_model, tiny_vit


def _fresh(meta):
    return attach_petl(tiny_vit(seed=0), resolve_settings(meta["petl"]["method"], "digits"))


def test_state_round_trip_gives_identical_outputs(tmp_path):
    model = petl_model()
    meta = {"pruner": "none", "pruner_state": {}, "petl": {"method": "convpass"}}
    size = save_task_state(model, tmp_path / "state.safetensors", meta)
    assert size == (tmp_path / "state.safetensors").stat().st_size
    rebuilt = rebuild(tmp_path / "state.safetensors", _fresh).eval()
    x = torch.randn(3, 3, 16, 16)
    assert torch.equal(rebuilt(x), model(x))


def test_state_holds_only_task_parameters(tmp_path):
    model = petl_model("lora")
    save_task_state(model, tmp_path / "s.safetensors", {"pruner": "none"})
    tensors, meta = read_task_state(tmp_path / "s.safetensors")
    assert meta == {"pruner": "none"}
    assert "head.weight" in tensors
    assert all("q_" in n or "v_" in n or n.startswith("head.") for n in tensors)


def test_state_of_a_truncated_model_rebuilds_through_the_pruner(tmp_path, register_pruner):
    class KeepTwo(NoPruning):
        @classmethod
        def restore(cls, model, state):
            from bench.models.surgery import keep_first

            return keep_first(model, state["k"])

    register_pruner("test_keep_two", KeepTwo)
    model = petl_model()
    model.blocks = model.blocks[:2]
    meta = {"pruner": "test_keep_two", "pruner_state": {"k": 2}, "petl": {"method": "convpass"}}
    save_task_state(model, tmp_path / "s.safetensors", meta)
    rebuilt = rebuild(tmp_path / "s.safetensors", _fresh).eval()
    assert len(rebuilt.blocks) == 2
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(rebuilt(x), model(x))
