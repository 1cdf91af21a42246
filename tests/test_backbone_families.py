"""Backbone families (bench.models.family) on tiny models of each: a Swin, CLIP, DINOv2 with
registers and MAE with average pooling. The feature of every block and the truncated model equal
hand computations; each family's published checkpoint format loads through timm's filter; only
PETL parameters and the head train; what a family cannot run is refused before training."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from torch import nn

import bench.plugins  # noqa: F401  (registers every pruner)
from baselines.layerwise import LayerwisePruner, block_influence
from baselines.similarity import angular_distances
from bench.budget import block_sizes, blocks_to_keep, param_fraction
from bench.config import load_config
from bench.errors import UserError
from bench.models.backbone import create_backbone
from bench.models.build import resolve_input
from bench.models.family import family_of
from bench.models.petl import PETL_METHODS, PetlModule, attach_petl, resolve_settings
from bench.models.surgery import keep_first
from bench.pruning import PRUNERS, Budget, PruneContext, make_pruner
from bench.run import run_benchmark
from bench.state import rebuild, save_task_state
from bench.tasks import get_task
from bench.tracking import client
from sls.features import block_features
from tests.conftest import TINY_SWIN, TINY_VIT, calibration_loader, cli_error, petl_model, tiny_swin

VITS = {  # timm architecture, options: each shrunk to TINY_VIT
    "clip": ("vit_base_patch16_clip_224", {}),  # pre-norm, CLS token
    "dinov2_reg": ("vit_base_patch14_reg4_dinov2", {}),  # layer scale, CLS + 4 registers
    "mae_avg": ("vit_base_patch16_224", {"global_pool": "avg"}),  # patch mean, fc_norm
}
KINDS = ["swin", *VITS]
HEAD_READS = {"swin": "mean", "clip": "cls", "dinov2_reg": "cls", "mae_avg": "mean"}
PREFIX_TOKENS = {"clip": 1, "dinov2_reg": 5, "mae_avg": 1}  # CLS (+ registers) before patches


def backbone(kind: str, seed: int = 0, num_classes: int = 10) -> nn.Module:
    if kind == "swin":
        return tiny_swin(num_classes, seed)
    name, options = VITS[kind]
    torch.manual_seed(seed)
    return create_backbone(name, num_classes, 16, 0.0, kwargs={**TINY_VIT, **options})


def trained(kind: str, petl: str = "convpass") -> nn.Module:
    """A PETL model with non-zero PETL weights and a perturbed backbone, in eval mode."""
    model = petl_model(petl, backbone=lambda seed: backbone(kind, seed))
    _perturb(model)
    return model


def _perturb(model: nn.Module, seed: int = 3) -> None:
    """Random offsets on every tensor (fresh norms are ones and zeros: nothing to tell apart)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)


def _images(n: int = 6) -> torch.Tensor:
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(1))


# --- by hand --------------------------------------------------------------------------------


def _vit_outputs(model, images: torch.Tensor) -> list[torch.Tensor]:
    x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))
    outputs = []
    for block in model.blocks:
        x = block(x)
        outputs.append(x)
    return outputs


def _vit_head_token(kind: str, x: torch.Tensor) -> torch.Tensor:
    return x[:, 0] if HEAD_READS[kind] == "cls" else x[:, PREFIX_TOKENS[kind] :].mean(dim=1)


def _swin_features(model, images: torch.Tensor) -> list[torch.Tensor]:
    """Each block's output through the next stage's patch merging (stages 1-3), then the mean
    over the grid; no final norm."""
    x, features = model.patch_embed(images), []
    for s, stage in enumerate(model.layers):
        x = stage.downsample(x)
        for block in stage.blocks:
            x = block(x)
            merged = model.layers[s + 1].downsample(x) if s < 3 else x
            features.append(merged.mean(dim=(1, 2)))
    return features


def _truncated_logits(kind: str, model, images: torch.Tensor, k: int) -> torch.Tensor:
    """The first k blocks, every patch merging (a Swin), the final norm, pooling and head."""
    if kind == "swin":
        x, done = model.patch_embed(images), 0
        for stage in model.layers:
            x = stage.downsample(x)
            for block in stage.blocks:
                if done < k:
                    x, done = block(x), done + 1
        return model.head.fc(model.norm(x).mean(dim=(1, 2)))
    x = _vit_outputs(model, images)[k - 1]
    return model.head(model.fc_norm(_vit_head_token(kind, model.norm(x))))


# --- features and truncation ----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_the_feature_of_each_block_is_what_the_head_would_read_there(kind):
    model, loader = trained(kind), calibration_loader(12)
    features, labels = block_features(model, loader, "head")
    images = torch.cat([batch for batch, _ in loader])
    with torch.no_grad():
        if kind == "swin":
            expected = _swin_features(model, images)
        else:
            expected = [_vit_head_token(kind, x) for x in _vit_outputs(model, images)]
    assert len(features) == family_of(model).num_blocks(model) == len(expected)
    for got, want in zip(features, expected, strict=True):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)
    assert len(labels) == 12


def test_the_patch_mean_of_a_vit_with_registers_leaves_them_out():
    model, loader = trained("dinov2_reg"), calibration_loader(12)
    features, _ = block_features(model, loader, "mean")
    images = torch.cat([batch for batch, _ in loader])
    with torch.no_grad():
        last = _vit_outputs(model, images)[-1]
    np.testing.assert_allclose(features[-1], last[:, 5:].mean(dim=1).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("kind", "k"), [("swin", 1), ("swin", 3), ("swin", 5), ("swin", 8),
                                         ("clip", 1), ("dinov2_reg", 3), ("mae_avg", 2)])  # fmt: skip
def test_truncation_to_k_equals_running_the_first_k_blocks_by_hand(kind, k):
    model, images = trained(kind), _images()
    truncated = keep_first(copy.deepcopy(model), k)
    assert family_of(truncated).num_blocks(truncated) == k
    with torch.no_grad():
        torch.testing.assert_close(truncated(images), _truncated_logits(kind, model, images, k))


def test_a_swin_keeps_every_patch_merging_when_whole_stages_go():
    model = keep_first(trained("swin"), 1)
    assert [len(stage.blocks) for stage in model.layers] == [1, 0, 0, 0]
    assert all(stage.downsample.reduction.weight.numel() for stage in model.layers[1:])


def test_a_swin_block_reads_its_input_after_the_patch_merging():
    """block_influence of stage 2's first block: 1 - cos of its merged input and its output."""
    model, loader = trained("swin"), calibration_loader(12)
    images = torch.cat([batch for batch, _ in loader])
    with torch.no_grad():
        x = model.layers[0].blocks(model.patch_embed(images))
        before = model.layers[1].downsample(x)
        after = model.layers[1].blocks[0](before)
    cos = torch.nn.functional.cosine_similarity(
        before.double().mean(dim=(1, 2)), after.double().mean(dim=(1, 2)), dim=-1
    )
    scores = block_influence(model, loader, tokens="head")
    assert scores[2] == pytest.approx(float((1 - cos).mean()), rel=1e-5)


def test_angular_on_a_swin_removes_a_run_within_one_stage():
    model, loader = trained("swin"), calibration_loader(12)
    d = angular_distances(model, loader, "head")
    assert not np.isnan(d[0, 2]) and not np.isnan(d[2, 4]) and not np.isnan(d[6, 8])
    assert np.isnan(d[0, 3]) and np.isnan(d[1, 3]) and np.isnan(d[5, 8])  # across a merging
    ctx = PruneContext(model, loader, get_task("digits"), Budget.parse("keep:6"), 0,
                       torch.device("cpu"), None)  # fmt: skip
    dropped = make_pruner("angular").prune(ctx).decision["dropped"]
    assert dropped in ([0, 1], [2, 3], [4, 5], [6, 7])
    with pytest.raises(UserError, match="no stage has 3 blocks"):
        make_pruner("angular").prune(replace_budget(ctx, "keep:5"))


def replace_budget(ctx: PruneContext, text: str) -> PruneContext:
    return PruneContext(trained("swin"), ctx.calibration, ctx.task, Budget.parse(text), 0,
                        ctx.device, None)  # fmt: skip


# --- budgets --------------------------------------------------------------------------------


def test_a_swin_depth_removes_the_share_of_its_blocks_parameters():
    model = trained("swin")
    per_stage = [sum(p.numel() for p in stage.blocks.parameters() if not p.requires_grad)
                 for stage in model.layers]  # fmt: skip
    sizes = block_sizes(model)
    assert sizes is not None and len(sizes) == 8
    removed = param_fraction(Budget.parse("keep:4"), 8, sizes)
    assert removed == pytest.approx(sum(per_stage[2:]) / sum(per_stage))  # not 4 / 8
    assert removed > 0.9
    assert blocks_to_keep(Budget.parse(f"params:{removed:.6f}"), 8, sizes) == 4
    assert block_sizes(trained("clip")) is None  # equal blocks: (N - k) / N


# --- checkpoints in each family's published format ------------------------------------------


def _microsoft_swin(model) -> dict:
    """Microsoft's layout (Swin-Transformer repo, and the SLS authors' file): state dict under
    `model`, a stage's patch merging at its end (`layers.N.downsample` is timm's N + 1), the
    classifier `head.`, the buffers `relative_position_index` and `attn_mask` stored."""
    state = {}
    for key, value in model.state_dict().items():
        merging = re.match(r"layers\.(\d+)\.downsample\.(.*)", key)
        if merging:
            key = f"layers.{int(merging[1]) - 1}.downsample.{merging[2]}"
        state[key.replace("head.fc.", "head.")] = value.clone()
    for s, stage in enumerate(model.layers):
        for j, block in enumerate(stage.blocks):
            prefix = f"layers.{s}.blocks.{j}."
            state[prefix + "attn.relative_position_index"] = block.attn.relative_position_index
            if block.attn_mask is not None:
                state[prefix + "attn_mask"] = block.attn_mask.clone()
    assert "layers.0.downsample.reduction.weight" in state and "head.weight" in state
    return {"model": state}


def _openai_clip(model) -> dict:
    """OpenAI's CLIP names (`visual.` tower, `resblocks`, `in_proj`, `ln_post`, `proj`), with
    a piece of the text tower the loader must ignore."""
    state = {"visual.conv1.weight": model.patch_embed.proj.weight,
             "visual.class_embedding": model.cls_token[0, 0],
             "visual.positional_embedding": model.pos_embed[0],
             "visual.proj": torch.randn(model.embed_dim, 12),
             "token_embedding.weight": torch.randn(20, 12), "logit_scale": torch.ones(())}  # fmt: skip
    parts = {"ln_pre": model.norm_pre, "ln_post": model.norm}
    for i, block in enumerate(model.blocks):
        p = f"transformer.resblocks.{i}."
        parts.update({p + "ln_1": block.norm1, p + "ln_2": block.norm2,
                      p + "mlp.c_fc": block.mlp.fc1, p + "mlp.c_proj": block.mlp.fc2,
                      p + "attn.out_proj": block.attn.proj})  # fmt: skip
        state[f"visual.{p}attn.in_proj_weight"] = block.attn.qkv.weight
        state[f"visual.{p}attn.in_proj_bias"] = block.attn.qkv.bias
    for name, module in parts.items():
        state[f"visual.{name}.weight"], state[f"visual.{name}.bias"] = module.weight, module.bias
    return {k: v.detach().clone() for k, v in state.items()}


def _meta_dinov2(model) -> dict:
    """Meta's DINOv2 with registers: `register_tokens`, a `mask_token`, and the CLS token's
    position inside `pos_embed` (timm keeps it in the CLS token)."""
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head.")}
    cls_position = torch.randn(1, 1, model.embed_dim)
    state["register_tokens"] = state.pop("reg_token")
    state["cls_token"] = state["cls_token"] - cls_position
    state["pos_embed"] = torch.cat([cls_position, state["pos_embed"]], dim=1)
    state["mask_token"] = torch.zeros(1, model.embed_dim)
    return state


def _mae_encoder(model) -> dict:
    """MAE's released encoder: under `model`, no head, its final `norm` (which an average-pooled
    timm ViT holds as `fc_norm`)."""
    state = {k: v.clone() for k, v in model.state_dict().items()
             if not k.startswith(("head.", "fc_norm."))}  # fmt: skip
    state["norm.weight"], state["norm.bias"] = model.fc_norm.weight, model.fc_norm.bias
    return {"model": state}


class _Holder(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _torchscript(state: dict, path) -> None:
    """`state` as OpenAI ships CLIP: a TorchScript archive (torch.jit.save)."""
    root = _Holder()
    for key, value in state.items():
        *path_parts, leaf = key.split(".")
        module = root
        for part in path_parts:
            if part not in module._modules:
                module.add_module(part, _Holder())
            module = module._modules[part]
        module.register_parameter(leaf, nn.Parameter(value, requires_grad=False))
    torch.jit.save(torch.jit.script(root), str(path))


PUBLISHED = {  # kind -> (file name, writer)
    "swin": ("swin_base_patch4_window7_224_22k.pth", lambda m, p: torch.save(_microsoft_swin(m), p)),
    "clip": ("ViT-B-16.pt", lambda m, p: _torchscript(_openai_clip(m), p)),
    "dinov2_reg": ("dinov2_vitb14_reg4_pretrain.pth", lambda m, p: torch.save(_meta_dinov2(m), p)),
    "mae_avg": ("mae_pretrain_vit_base.pth", lambda m, p: torch.save(_mae_encoder(m), p)),
}  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_a_published_checkpoint_round_trips_through_the_loader(kind, tmp_path):
    source = backbone(kind, seed=1, num_classes=7)
    _perturb(source)
    name, write = PUBLISHED[kind]
    write(source, tmp_path / name)
    if kind == "swin":
        loaded = create_backbone("swin_tiny_patch4_window7_224", 10, 16, 0.0,
                                 str(tmp_path / name), kwargs=TINY_SWIN)  # fmt: skip
    else:
        arch, options = VITS[kind]
        loaded = create_backbone(arch, 10, 16, 0.0, str(tmp_path / name),
                                 kwargs={**TINY_VIT, **options})  # fmt: skip
    got, want = loaded.state_dict(), source.state_dict()
    backbone_keys = [k for k in want if not k.startswith("head.")]
    assert sorted(backbone_keys) == sorted(k for k in got if not k.startswith("head."))
    for key in backbone_keys:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-6, msg=key)
    assert loaded.get_classifier().out_features == 10  # the task's head, fresh


# --- PETL ------------------------------------------------------------------------------------


def _petl_cases() -> list:
    return [pytest.param(kind, petl, id=f"{kind}-{petl}") for kind in KINDS
            for petl in PETL_METHODS.names()
            if ("swin" if kind == "swin" else "vit") in PETL_METHODS.get(petl).backbones]  # fmt: skip


@pytest.mark.parametrize(("kind", "petl"), _petl_cases())
def test_petl_parameters_and_the_head_are_the_only_trainable_ones(kind, petl):
    model = attach_petl(backbone(kind), resolve_settings(petl, "digits"))
    frozen_inside = {id(p) for m in model.modules() if isinstance(m, PetlModule)
                     for name in m.frozen_children for p in _parameters(getattr(m, name))}  # fmt: skip
    petl = {id(p) for m in model.modules() if isinstance(m, PetlModule)
            for p in m.parameters()} - frozen_inside  # fmt: skip
    head = {id(p) for p in model.get_classifier().parameters()}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert petl and trainable == petl | head
    family = family_of(model)
    for block in family.blocks(model):  # every block carries PETL parameters
        assert any(id(p) in petl for p in block.parameters())


def _parameters(child) -> list[nn.Parameter]:
    """A frozen child of a PETL module: a backbone layer, or one of its parameters (SPLoRA)."""
    return [child] if isinstance(child, nn.Parameter) else list(child.parameters())


def test_a_petl_method_not_built_for_swin_is_refused():
    with pytest.raises(UserError, match=r"^PETL repadapter is not built for swin backbones "
                                        r"\(it supports vit\); use PETL=convpass or adapter or lora"):  # fmt: skip
        attach_petl(backbone("swin"), resolve_settings("repadapter", "digits"))


# --- refused before training ----------------------------------------------------------------


def test_a_pruner_that_does_not_prune_swin_fails_in_preflight(no_training, capsys):
    err = cli_error(["--methods", "none,sls,magnitude"], capsys, "demo-swin")
    assert err.startswith("magnitude does not prune swin backbones (it supports vit); use one of")
    offered = set(err.partition("METHODS=")[2].split(","))
    assert {"sls", "drop_last", "fixed_depth", "random_blocks", "block_influence", "angular",
            "cka"} == offered  # fmt: skip


def test_a_petl_method_that_does_not_fit_swin_fails_in_preflight(no_training, capsys):
    err = cli_error(["--petl", "splora", "--methods", "none"], capsys, "demo-swin")
    assert err.startswith("PETL splora is not built for swin backbones (it supports vit)")


# --- the weights' own input -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "size", "normalization"),
    [("vit_base_patch16_clip_224.openai", 224, "clip"),
     ("vit_base_patch14_reg4_dinov2.lvd142m", 518, "imagenet"),
     ("vit_base_patch16_224.mae", 224, "imagenet"),
     ("vit_base_patch16_224.augreg_in21k", 224, "0.5"),
     ("swin_base_patch4_window7_224.ms_in22k", 224, "imagenet")],
)  # fmt: skip
def test_input_size_and_normalisation_come_from_the_weights_where_asked(name, size, normalization):
    config = load_config("paper-weights", {"model.backbone": name})
    assert config.data.image_size is None and config.data.normalization == "weights"
    resolve_input(config)
    assert (config.data.image_size, config.data.normalization) == (size, normalization)
    fixed = load_config("paper", {"model.backbone": name})
    resolve_input(fixed)  # the paper's recipe: the authors' 224 px and ImageNet mean/std
    assert (fixed.data.image_size, fixed.data.normalization) == (224, "imagenet")


# --- every pruner declared for Swin, on a Swin ------------------------------------------------


def _swin_pruners() -> list[str]:
    return [name for name in PRUNERS.names() if "swin" in PRUNERS.get(name).backbones]


@pytest.mark.parametrize("name", _swin_pruners())
def test_a_pruner_declared_for_swin_prunes_one_and_its_state_rebuilds_it(name, tmp_path):
    pruner = make_pruner(name, {"embedding": "pca"} if name == "sls" else None)
    model = petl_model("convpass", backbone=tiny_swin)
    ctx = PruneContext(model, calibration_loader(), get_task("digits"), Budget.parse("keep:6"),
                       0, torch.device("cpu"), tmp_path)  # fmt: skip
    result = pruner.prune(ctx)
    pruned, x = result.model.eval(), _images(3)
    with torch.no_grad():
        out = pruned(x)
    assert out.shape == (3, 10)
    kept = family_of(pruned).num_blocks(pruned)
    assert kept == 6 if isinstance(pruner, LayerwisePruner) else 1 <= kept <= 8
    save_task_state(pruned, tmp_path / "state.safetensors",
                    {"pruner": name, "pruner_state": result.state})  # fmt: skip

    def fresh(meta):
        return attach_petl(tiny_swin(seed=0), resolve_settings("convpass", "digits"))

    with torch.no_grad():
        assert torch.equal(rebuild(tmp_path / "state.safetensors", fresh).eval()(x), out)


@pytest.mark.slow
def test_the_offline_swin_preset_runs_every_method_and_keeps_its_backbone_apart():
    config = load_config("demo-swin", {
        "model.kwargs": {**TINY_SWIN}, "train.epochs": 2, "train.warmup_epochs": 1,
        "train.eval_every": 1, "measure.warmup_iters": 1, "measure.timed_iters": 2,
        "measure.rounds": 1, "measure.ratio_target": None, "measure.batch_sizes": [1, 8],
        "methods": ["none", "sls", "drop_last@keep:3"], "suite": "tests-swin"})  # fmt: skip
    config.pruners["sls"] = {"embedding": "pca", "full_curve": True}
    outcomes = run_benchmark(config, progress=False)
    assert [o.status for o in outcomes] == ["FINISHED"] * 3
    none, sls, drop = (client().get_run(o.run_id).data for o in outcomes)
    assert 1 <= sls.metrics["sls/k"] <= 8 and sls.metrics["blocks/kept"] == sls.metrics["sls/k"]
    assert all(f"sls/score/block_{b:02d}" in sls.metrics for b in range(1, 9))  # whole curve
    assert sls.tags["sls.feature"] == "mean" and sls.tags["backbone.family"] == "swin"
    assert drop.metrics["blocks/kept"] == 3
    sizes = block_sizes(petl_model("convpass", backbone=tiny_swin))
    share = param_fraction(Budget.parse("keep:3"), 8, sizes)
    assert drop.metrics["budget/params_target_fraction"] == pytest.approx(share)
    assert drop.metrics["budget/params_removed_fraction"] == pytest.approx(share)
    assert drop.metrics["macs"] < none.metrics["macs"]
    assert none.params["model.backbone"] == "swin_tiny_patch4_window7_224"
