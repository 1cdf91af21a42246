"""One softmax-scale rule for every width pruner (`magnitude`, `taylor`, `depgraph_sls`,
`block_benefit`, `spa`): cutting head dims from q and k leaves the choice of the attention's
softmax scale, and every one of them makes it the same way, with the same default.

- `keep_scale=true` (the default, `KEEP_SCALE`): the unpruned head's head_dim ** -0.5. The
  backbone is frozen, so q and k cannot adapt to the sharper softmax that the pruned head's
  larger scale gives; the kept scale leaves each kept dim's share of the logits as it was. It is
  also what a masked model computes (block_benefit trains its gates with it, as P3B's attention
  multiplies by the `self.scale` set when the model was built and never changed by its pruning).
- `keep_scale=false`: the pruned head's head_dim' ** -0.5, what fused attention (SDPA without a
  `scale`) computes from the sliced q.

The SLS authors' DepGraph script (compare_depgraph.py) sets neither: its attention forward takes
SDPA's default (the pruned head's scale) where timm's `fused_attn` is on and `q * self.scale`
(the unpruned scale) where it is off, which depends on the timm and torch versions it ran with
(unknown). So `depgraph_sls` follows this rule too, and says which scale it used.

Each pruner logs the choice as its setting (`pruner.keep_scale`) and tags the run with
`record.SOFTMAX_SCALE` (`scale_tags`), the label the tables show beside the method.
"""

from __future__ import annotations

from bench import record as R

KEEP_SCALE = True  # the default of every width pruner


def scale_label(keep_scale: bool) -> str:
    return R.SCALE_UNPRUNED if keep_scale else R.SCALE_PRUNED_HEAD


def scale_tags(keep_scale: bool) -> dict[str, str]:
    """The run's tag naming which softmax scale its pruned attention uses."""
    return {R.SOFTMAX_SCALE: scale_label(keep_scale)}
