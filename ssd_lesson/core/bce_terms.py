"""The lesson's binary cross-entropy terms, elementwise: plain BCE and the focal-weighted one.

:mod:`ssd_lesson.core.loss` sums them into the lesson's ``BCE_Loss`` and ``FocalLoss`` per image;
:mod:`ssd_lesson.core.mining` per box, to rank the negatives.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["softplus", "focal_terms"]


def softplus(x: Tensor) -> Tensor:
    """``log(1 + exp(x))``, elementwise: the binary cross-entropy of logit ``x`` against a 0 target.

    Written as ``max(x, 0) + log(1 + exp(-|x|))`` (stable: the exponent is never positive)
    because ATen's CPU ``softplus`` and ``log1p`` kernels are not vectorised: this is about
    4x faster on CPU. Using ``log`` instead of ``log1p`` loses only
    terms below the float's epsilon (under 1e-7 in float32, per element).
    """
    return x.clamp_min(0) + torch.log(1 + torch.exp(-x.abs()))


def focal_terms(x: Tensor, target_is_one: bool, alpha: float, gamma: float) -> Tensor:
    """Per-element focal-weighted BCE-with-logits for targets all 0 or all 1."""
    # softplus(-x) = -log(sigmoid(x)), softplus(x) = -log(1 - sigmoid(x)), both stable.
    bce = softplus(-x) if target_is_one else softplus(x)
    # (1 - p_t) ** gamma as exp(gamma * log(1 - p_t)), log(1 - p_t) = -softplus(+-x): finite, with a finite
    # gradient, where the sigmoid saturates (pow's gradient is inf * 0 = NaN there for gamma < 1).
    w = (alpha if target_is_one else 1 - alpha) * torch.exp(-gamma * (softplus(x) if target_is_one else softplus(-x)))
    return w * bce
