"""timm ViT backbones by name, with optional local weights (.npz, .pth, .safetensors) or the hub."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import timm
import torch
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from bench.errors import UserError

HEAD_KEYS = ("head.weight", "head.bias")


def create_backbone(
    name: str,
    num_classes: int,
    image_size: int,
    drop_path: float = 0.0,
    checkpoint: str | None = None,
    pretrained: bool = False,
    kwargs: dict | None = None,
) -> VisionTransformer:
    """A timm ViT with a fresh `num_classes` head; weights from `checkpoint` or the hub if asked.
    Weights that cannot be downloaded, or that hold NaN or infinite values, fail in one line."""
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
            ) from None
        if not download:
            raise
        raise _not_downloaded(name, err) from None
    except OSError as err:  # huggingface_hub's offline / not-found / connection errors
        if not download:
            raise
        raise _not_downloaded(name, err) from None
    if not isinstance(model, VisionTransformer):
        raise UserError(f"backbone {name!r} is not a timm VisionTransformer; SLS needs a ViT")
    if checkpoint:
        load_checkpoint(model, checkpoint)
    if checkpoint or download:
        check_finite(model, Path(checkpoint).name if checkpoint else name)
    return model


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
        if key not in HEAD_KEYS and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise UserError(
                f"weights {source}: tensor {key!r} holds {bad} NaN or infinite value(s); "
                "the file is corrupt or from a diverged run: use another checkpoint"
            )


def weights_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_checkpoint(model: VisionTransformer, path: str | Path) -> None:
    """Load backbone weights; the head stays task-specific. Fails clearly if they do not fit."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"checkpoint {str(path)!r} does not exist")
    if path.suffix == ".npz":  # the original ViT-B_16.npz, through timm's own loader
        try:
            model.load_pretrained(str(path))
        except (KeyError, ValueError, RuntimeError) as err:
            raise UserError(f"checkpoint {path.name} does not fit the model: {err}") from None
        return
    state = _read_state_dict(path)
    state = {k: v for k, v in checkpoint_filter_fn(state, model).items() if k not in HEAD_KEYS}
    own = {k: v.shape for k, v in model.state_dict().items() if k not in HEAD_KEYS}
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


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt or foreign file: say which, not a traceback
        raise UserError(f"cannot read checkpoint {path.name}: {err}") from None
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise UserError(f"checkpoint {path.name} holds no state dict")
    return state
