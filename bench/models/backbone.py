"""timm backbones by name (ViTs and Swins: `bench.models.family`), with optional local weights
(.npz, .pth, .safetensors, an OpenAI CLIP TorchScript .pt) or the hub.

A local file in a family's published format (Microsoft's Swin `.pth` with its state dict under
`model` and the old key names, OpenAI's or open_clip's CLIP, Meta's DINOv2 with or without
registers, MAE's encoder) goes through timm's own checkpoint filter for that family, which renames
and reshapes its tensors to timm's layout.
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
import zipfile
from pathlib import Path

import timm
import torch
from torch import nn

from bench.errors import UserError
from bench.models.family import FAMILIES, family_of

HEAD_PREFIX = "head."  # the classifier (a Swin's `head.fc.`): task-specific, never loaded


def create_backbone(
    name: str,
    num_classes: int,
    image_size: int,
    drop_path: float = 0.0,
    checkpoint: str | None = None,
    pretrained: bool = False,
    kwargs: dict | None = None,
) -> nn.Module:
    """A timm ViT or Swin with a fresh `num_classes` head; weights from `checkpoint` or the hub
    if asked. Weights that cannot be downloaded, or that hold NaN or infinite values, fail in one
    line."""
    download = pretrained and checkpoint is None
    try:
        with _hub_session() if download else contextlib.nullcontext():
            model = timm.create_model(
                name,
                pretrained=download,
                num_classes=num_classes,
                img_size=image_size,
                drop_path_rate=drop_path,
                **(kwargs or {}),
            )
    except RuntimeError as err:
        if "Unknown model" in str(err):
            raise UserError(
                f"{err}. List names with: python -c 'import timm; print(timm.list_models(\"vit*\"))'"
                ' (or "swin*")'
            ) from None
        if not download:
            raise
        raise _not_downloaded(name, err) from None
    except OSError as err:  # huggingface_hub's offline / not-found / connection errors
        if not download:
            raise
        raise _not_downloaded(name, err) from None
    if not any(isinstance(model, family.model_class) for family in FAMILIES):
        raise UserError(
            f"backbone {name!r} is a timm {type(model).__name__}; the suite prunes timm "
            "VisionTransformers (vit_*) and SwinTransformers (swin_*)"
        )
    if checkpoint:
        load_checkpoint(model, checkpoint)
    if checkpoint or download:
        check_finite(model, Path(checkpoint).name if checkpoint else name)
    return model


def pretrained_input(name: str, kwargs: dict | None = None) -> tuple[int, tuple, tuple]:
    """(input size, mean, std) of the weights `name` stands for, from timm's pretrained config
    (nothing downloaded; a deprecated alias is resolved by building the model)."""
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is not None:
        return cfg.input_size[-1], tuple(cfg.mean), tuple(cfg.std)
    try:
        built = timm.create_model(name, pretrained=False, **(kwargs or {})).pretrained_cfg
    except RuntimeError as err:
        raise UserError(f"{err}; cannot read the input configuration of {name!r}") from None
    return built["input_size"][-1], tuple(built["mean"]), tuple(built["std"])


@contextlib.contextmanager
def _hub_session():
    """huggingface_hub quiet, and in offline mode (its local cache only) when the hub cannot be
    reached at all: one clear error at once instead of a minute of logged retries."""
    import huggingface_hub
    from huggingface_hub import constants

    saved, level = constants.HF_HUB_OFFLINE, huggingface_hub.logging.get_verbosity()
    huggingface_hub.logging.set_verbosity_error()
    if not saved and not _reachable(constants.ENDPOINT):
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved
        huggingface_hub.logging.set_verbosity(level)


def _reachable(url: str, timeout: float = 3.0) -> bool:
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _not_downloaded(name: str, err: Exception) -> UserError:
    lines = str(err).strip().splitlines()
    reason = lines[0].split(". ")[0][:200] if lines else "no reason given"
    return UserError(
        f"cannot download the weights of {name} ({type(err).__name__}: {reason}); "
        "without internet pass a local file: CHECKPOINT=/path/ViT-B_16.npz "
        "(or .pth / .safetensors)"
    )


def check_finite(model: torch.nn.Module, source: str) -> None:
    """Refuse backbone weights holding NaN or infinite values, naming the first such tensor."""
    for key, tensor in model.state_dict().items():
        if (not key.startswith(HEAD_PREFIX) and tensor.is_floating_point()
                and not torch.isfinite(tensor).all()):  # fmt: skip
            bad = int((~torch.isfinite(tensor)).sum())
            raise UserError(
                f"weights {source}: tensor {key!r} holds {bad} NaN or infinite value(s); "
                "the file is corrupt or from a diverged run: use another checkpoint"
            )


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive (torch.jit.save) holds its code beside its tensors."""
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 1)[-1].startswith("code/") for name in archive.namelist())


def weights_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load backbone weights through timm's checkpoint filter of the model's family; the head
    stays task-specific. Fails clearly if they do not fit."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"checkpoint {str(path)!r} does not exist")
    family = family_of(model)
    if path.suffix == ".npz":  # the original ViT-B_16.npz, through timm's own loader
        if family.name != "vit":
            raise UserError(
                f"checkpoint {path.name}: .npz files hold ViT weights, not {family.name}"
            )
        try:
            model.load_pretrained(str(path))
        except (KeyError, ValueError, RuntimeError) as err:
            raise UserError(f"checkpoint {path.name} does not fit the model: {err}") from None
        return
    state = _pooled_norm(family.checkpoint_filter(_read_state_dict(path), model), model)
    state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)}
    own = {k: v.shape for k, v in model.state_dict().items() if not k.startswith(HEAD_PREFIX)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k] != state[k].shape)
    if missing or unexpected or wrong:
        raise UserError(
            f"checkpoint {path.name} does not fit the model: {len(missing)} missing "
            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}), "
            f"{len(wrong)} with another shape (e.g. {wrong[:2]}). Check BACKBONE matches it."
        )
    model.load_state_dict(state, strict=False)


def _pooled_norm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """A ViT that pools its patch tokens (global_pool 'avg') normalises after pooling
    (`fc_norm`) and has no final token norm; a checkpoint pretrained with a final norm (MAE's
    encoder) has `norm.*` instead: its norm becomes the model's `fc_norm`."""
    if (isinstance(getattr(model, "norm", None), nn.Identity)
            and not isinstance(getattr(model, "fc_norm", nn.Identity()), nn.Identity)
            and "norm.weight" in state and "fc_norm.weight" not in state):  # fmt: skip
        state = {(f"fc_{k}" if k.startswith("norm.") else k): v for k, v in state.items()}
    return state


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        if zipfile.is_zipfile(path) and _is_torchscript(path):  # OpenAI's CLIP ViT-B-16.pt
            with warnings.catch_warnings():  # torch.jit is deprecated; its archives are not
                warnings.simplefilter("ignore", FutureWarning)
                return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt or foreign file: say which, not a traceback
        raise UserError(f"cannot read checkpoint {path.name}: {err}") from None
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise UserError(f"checkpoint {path.name} holds no state dict")
    return state
