"""Mixed precision for the trainers and the zoo: ``--precision fp32|bf16|fp16``.

``bf16`` and ``fp16`` run the forward pass under ``torch.autocast`` (matrix products and
convolutions in the lower precision, reductions and the loss in fp32, the weights and the
optimiser in fp32); ``fp16`` scales the loss (``torch.amp.GradScaler``) so small gradients do not
underflow, and is offered on CUDA only: the CPU has no fast fp16 arithmetic, bf16 is its mixed
precision.
"""
from __future__ import annotations

import argparse
from contextlib import nullcontext
from typing import Callable, ContextManager, Dict

import torch

PRECISIONS = ('fp32', 'bf16', 'fp16')
AUTOCAST_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--precision', choices=PRECISIONS, default='fp32',
        help='arithmetic of the forward pass: fp32, or mixed with bf16 (CPU or GPU) or fp16 (GPU '
             'only, loss scaled); weights stay fp32 (default: fp32)')


class Precision:
    """One run's precision on ``device``: :meth:`autocast` around forward passes,
    :meth:`step` for the backward pass and the optimiser step."""

    def __init__(self, name: str, device: torch.device):
        if name not in PRECISIONS:
            raise ValueError(
                f'unknown precision {name!r}; expected one of {", ".join(PRECISIONS)}')
        if name == 'fp16' and device.type != 'cuda':
            raise ValueError(f'--precision fp16 needs a CUDA device (this run is on {device}); '
                             'use bf16 on the CPU')
        self.name, self.device = name, device
        self.scaler = torch.amp.GradScaler(device.type) if name == 'fp16' else None

    def stateful(self) -> Dict[str, torch.amp.GradScaler]:
        """What a resumable run must save besides its modules: the loss scaler, with fp16."""
        return {} if self.scaler is None else {'scaler': self.scaler}

    def autocast(self) -> ContextManager:
        if self.name == 'fp32':
            return nullcontext()
        return torch.autocast(self.device.type, dtype=AUTOCAST_DTYPES[self.name])

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
             clip: Callable[[], object]) -> None:
        """``loss.backward()``, ``clip()`` (gradient clipping, on the true gradients), then
        ``optimizer.step()``; with fp16 through the loss scaler (a step with inf/NaN gradients
        is skipped and the scale lowered)."""
        if self.scaler is None:
            loss.backward()
            clip()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        clip()
        self.scaler.step(optimizer)
        self.scaler.update()
