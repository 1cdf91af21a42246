"""One contract every registered pruner meets, on the tiny ViT of conftest (4 blocks, keep:2).

It runs; meets its budget (2 blocks for layer-wise pruners, the same fraction of backbone block
parameters, or of PETL parameters for adapter pruners (`budget_axis = "petl"`), within tolerance
for the others; pruners that choose their own budget are exempt);
gives outputs of the right shape; is deterministic under a seed; its stored state rebuilds a
model with identical outputs; the frozen backbone tensors it keeps are unchanged. The (pruner,
PETL) pairs it declares unsupported (`Pruner.petl_methods`) are refused before training by
`check_supported`, and by `prune` itself: they are not pairs that would have worked.
"""

from __future__ import annotations

import pytest
import torch

import bench.plugins  # noqa: F401  (registers every pruner)
from baselines.layerwise import LayerwisePruner
from bench.budget import backbone_block_params, param_fraction, petl_params
from bench.errors import UserError
from bench.models.petl import (
    PETL_METHODS,
    AdapterBlock,
    PetlModule,
    attach_petl,
    is_task_parameter,
    merged_copy,
    resolve_settings,
)
from bench.pruning import PRUNERS, Budget, PruneContext, check_supported, make_pruner
from bench.state import rebuild, save_task_state
from bench.tasks import get_task
from tests.conftest import calibration_loader, petl_model, tiny_vit

BUDGET = Budget.parse("keep:2")  # of the tiny ViT's 4 blocks
FAST_OPTIONS = {
    "sls": {"embedding": "pca"},
    "taylor": {"batches": 2, "batch_size": 16},
    "pear": {"batches": 2, "batch_size": 16},
    "spa": {"batches": 2, "batch_size": 16},
    "depgraph_sls": {"batches": 2, "batch_size": 16},
    "block_benefit": {"epochs": 2, "batch_size": 32, "update_every": 2},
}


def _cases() -> list:
    """Every pruner on Convpass; those that work inside blocks (where PETL modules couple to the
    backbone) on every PETL method. Pruners of whole blocks and the controls are PETL-agnostic."""
    cases = []
    for name in PRUNERS.names():
        cls = PRUNERS.get(name)
        whole_blocks = issubclass(cls, LayerwisePruner) or cls.fixed_budget is not None
        petls = ["convpass", "repadapter", "splora"] if whole_blocks else PETL_METHODS.names()
        cases += [pytest.param(name, petl, id=f"{name}-{petl}") for petl in petls]
    return cases


def _prune(name: str, petl: str, tmp_path, seed: int = 0):
    pruner = make_pruner(name, FAST_OPTIONS.get(name))
    ctx = PruneContext(petl_model(petl), calibration_loader(), get_task("digits"), BUDGET, seed,
                       torch.device("cpu"), tmp_path)  # fmt: skip
    return pruner, pruner.prune(ctx)


def _is_slice(kept: torch.Tensor, original: torch.Tensor) -> bool:
    """`kept` equals `original` with some entries removed (in order) along the dims that shrank."""
    if kept.dim() != original.dim():
        return False
    for dim, (a, b) in enumerate(zip(kept.shape, original.shape, strict=True)):
        if a == b:
            continue
        index, j = [], 0
        for i in range(b):
            if j < a and torch.equal(original.select(dim, i), kept.select(dim, j)):
                index.append(i)
                j += 1
        if j < a:
            return False
        original = original.index_select(dim, torch.tensor(index))
    return torch.equal(kept, original)


def _original_candidates(name: str, original: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Tensors of the unpruned model a kept tensor may come from (any block, for dropped ones)."""
    parts = name.split(".")
    if parts[0] != "blocks":
        return [original[name]]
    return [
        t for k, t in original.items() if k.startswith("blocks.") and k.split(".")[2:] == parts[2:]
    ]


@pytest.mark.parametrize(("name", "petl"), _cases())
def test_pruner_contract(name, petl, tmp_path):
    declared = PRUNERS.get(name).petl_methods
    if declared is not None and petl not in declared:  # refused by design, and clearly
        with pytest.raises(UserError, match=f"^{name} does not prune PETL {petl} models"):
            check_supported(PRUNERS.get(name), petl, "vit")
        with pytest.raises(UserError):
            _prune(name, petl, tmp_path / "a")
        return
    check_supported(PRUNERS.get(name), petl, "vit")
    pruner, result = _prune(name, petl, tmp_path / "a")
    model = result.model.eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (3, 10)

    if pruner.fixed_budget is None:  # the others (sls, none) choose their own budget
        size = petl_params if pruner.budget_axis == "petl" else backbone_block_params
        removed = 1.0 - size(model) / size(petl_model(petl))
        tolerance = getattr(pruner, "tolerance", 0.02)
        assert abs(removed - param_fraction(BUDGET, 4)) <= tolerance + 1e-9, removed
        if isinstance(pruner, LayerwisePruner):
            assert len(model.blocks) == 2

    _, again = _prune(name, petl, tmp_path / "b")
    assert again.state == result.state
    with torch.no_grad():
        assert torch.equal(again.model.eval()(x), out)

    meta = {"pruner": name, "pruner_state": result.state}
    save_task_state(model, tmp_path / "state.safetensors", meta)

    def fresh(meta):
        return attach_petl(tiny_vit(seed=0), resolve_settings(petl, "digits"))

    rebuilt = rebuild(tmp_path / "state.safetensors", fresh).eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), out)
        merged = merged_copy(model)
        if merged is not None:  # what is deployed gives the same outputs
            assert torch.allclose(merged.eval()(x), out, atol=1e-5)
            assert not any(callable(getattr(m, "merged", None)) for m in merged.modules())
            if petl == "repadapter":  # folded away entirely: the backbone's own modules
                assert not any(isinstance(m, (PetlModule, AdapterBlock)) for m in merged.modules())

    original = dict(petl_model(petl).named_parameters())
    for tensor_name, tensor in model.named_parameters():
        if is_task_parameter(model, tensor_name):
            continue
        candidates = _original_candidates(tensor_name, original)
        assert any(_is_slice(tensor.detach(), c.detach()) for c in candidates), tensor_name
