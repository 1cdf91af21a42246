"""Layer-wise baselines: random_blocks draws per task and seed, block_influence over every token
or the CLS token only."""

import pytest
import torch
from torch import nn

from baselines.layerwise import block_influence, draw_seed
from bench.errors import UserError
from bench.pruning import Budget, PruneContext, make_pruner
from bench.tasks import get_task
from tests.conftest import tiny_vit


def _dropped(task: str, seed: int = 0, keep: int = 6) -> list[int]:
    ctx = PruneContext(tiny_vit(depth=12), None, get_task(task), Budget.parse(f"keep:{keep}"),
                       seed, torch.device("cpu"), None)  # fmt: skip
    return make_pruner("random_blocks").prune(ctx).decision["dropped"]


def test_random_blocks_differ_between_tasks_with_the_same_k():
    """Before, the draw depended on the seed alone: every task at k = 6 dropped the same blocks."""
    assert _dropped("cifar") != _dropped("eurosat")
    assert len({tuple(_dropped(t)) for t in ("cifar", "eurosat", "dtd", "svhn", "kitti")}) > 1
    assert _dropped("cifar") == _dropped("cifar")  # a run is reproducible
    assert _dropped("cifar", seed=1) != _dropped("cifar", seed=0)  # another seed, another draw


def test_the_draw_seed_is_the_same_in_every_process():
    """The first 8 bytes of sha256(b"random_blocks|cifar|0"), whatever PYTHONHASHSEED is (the
    hash of a str is salted per process): cifar, seed 0, keep 6 of 12 always drops these."""
    assert draw_seed("cifar", 0) == 0xC544F67974FFD3B1
    assert _dropped("cifar") == [1, 2, 4, 8, 9, 10]


class _Flip(nn.Module):
    """Negates the tokens picked by `index` (CLS: 0, patches: 1:)."""

    def __init__(self, index):
        super().__init__()
        self.index = index

    def forward(self, x):
        x = x.clone()
        x[:, self.index] = -x[:, self.index]
        return x


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([_Flip(slice(1, None)), _Flip(0)])

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def test_block_influence_reads_every_token_or_the_cls_token_only():
    """A block that negates the 3 patch tokens of 4 has 1 - cos = 2 on each of them: 6 / 4 = 1.5
    over all tokens and 0 on CLS; one that negates CLS: 2 / 4 = 0.5 and 2."""
    loader = [(torch.randn(5, 4, 8), torch.zeros(5))]
    assert block_influence(_Toy(), loader, tokens="all") == pytest.approx([1.5, 0.5])
    assert block_influence(_Toy(), loader, tokens="cls") == pytest.approx([0.0, 2.0])
    assert make_pruner("block_influence").tokens == "all"  # ShortGPT's definition by default


def test_block_influence_refuses_an_unknown_token_choice():
    ctx = PruneContext(tiny_vit(), [], get_task("digits"), Budget.parse("keep:2"), 0,
                       torch.device("cpu"), None)  # fmt: skip
    with pytest.raises(UserError, match="tokens .patches.: expected one of all, cls"):
        make_pruner("block_influence", {"tokens": "patches"}).prune(ctx)


def test_block_influence_logs_the_blocks_it_removes_ties_going_to_the_earlier_block(monkeypatch):
    """Keep the 3 highest of 0.9, 0.1, 0.8, 0.3, 0.3, 0.05: blocks 1 and 3 and, of blocks 4 and 5
    tied at 0.3, block 4 (1-based). `removed/block_NN` is what the criteria table reads."""
    import baselines.layerwise

    scores = [0.9, 0.1, 0.8, 0.3, 0.3, 0.05]
    monkeypatch.setattr(baselines.layerwise, "block_influence", lambda *args, **kwargs: scores)
    ctx = PruneContext(tiny_vit(depth=6), [], get_task("digits"), Budget.parse("keep:3"), 0,
                       torch.device("cpu"), None)  # fmt: skip
    result = make_pruner("block_influence").prune(ctx)
    assert result.decision["dropped"] == [1, 4, 5]
    removed = [result.metrics[f"removed/block_{b:02d}"] for b in range(1, 7)]
    assert removed == [0.0, 1.0, 0.0, 0.0, 1.0, 1.0]
