"""Gradient clipping for the trainers: by norm, by value, or both."""
from __future__ import annotations

from typing import Iterable, Optional

import torch
from torch import Tensor


def clip_gradients(parameters: Iterable[Tensor], max_norm: Optional[float] = None,
                   max_value: Optional[float] = None) -> Optional[float]:
    """Clip gradients in place: each element to ``[-max_value, max_value]``, then their total
    L2 norm to ``max_norm``; either may be ``None`` (off). Returns the total norm before norm
    clipping, or ``None`` without ``max_norm``."""
    parameters = [p for p in parameters if p.grad is not None]
    if max_value is not None:
        torch.nn.utils.clip_grad_value_(parameters, max_value)
    if max_norm is None:
        return None
    return float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))
