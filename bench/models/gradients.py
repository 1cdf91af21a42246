"""Cross-entropy gradients of the frozen backbone's parameters on calibration images, for the
importances that read them (torch-pruning's Taylor and Hessian)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.petl import freeze_backbone, is_task_parameter


def taylor_gradients(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> dict[str, torch.Tensor]:
    """Cross-entropy gradients of the backbone parameters, summed over batches (what
    torch-pruning's GroupTaylorImportance reads)."""
    batches = zip(images.split(batch_size), labels.split(batch_size), strict=True)
    return backbone_gradients(model, batches, squared=False)


def hessian_gradients(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The mean over samples of each backbone parameter's squared per-sample cross-entropy
    gradient (OBD's diagonal Hessian estimate): what torch-pruning's GroupHessianImportance
    accumulates with `accumulate_grad` after each sample's backward, as the SLS script does."""
    samples = ((x[None], y[None]) for x, y in zip(images, labels, strict=True))
    sums = backbone_gradients(model, samples, squared=True)
    return {name: total / len(images) for name, total in sums.items()}


def backbone_gradients(model: nn.Module, batches, squared: bool) -> dict[str, torch.Tensor]:
    """Sum over `batches` of each backbone parameter's cross-entropy gradient (or its square),
    in eval mode (dropout does not make them random); no optimizer step, freezing restored."""
    was_training = model.training
    model.eval()
    for param in model.parameters():
        param.requires_grad_(True)
    totals: dict[str, torch.Tensor] = {}
    try:
        for x, y in batches:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            for name, p in model.named_parameters():
                if p.grad is not None and not is_task_parameter(model, name):
                    grad = p.grad.detach().pow(2) if squared else p.grad.detach()
                    totals[name] = totals[name] + grad if name in totals else grad.clone()
        return totals
    finally:
        model.zero_grad(set_to_none=True)
        freeze_backbone(model)
        model.train(was_training)
