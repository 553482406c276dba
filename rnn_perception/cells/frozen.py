"""A convolutional cell prepared for per-frame inference with fixed weights.

A node steps one frame at a time at batch 1, where each op's fixed cost (a few µs for an
elementwise op, about 15 µs for any convolution on a CPU) is a large share of the step. With the
weights fixed, what is the same from frame to frame is computed once:

- both biases, and the input channels that never change (e.g. coordinate maps), become one gate
  map ``b_ih + b_hh + W_const * x_const`` of shape ``(1, G*C, h, w)``;
- with stride 1 (``x`` and ``h`` on the same grid) and a cell whose gates need only the sum
  ``W x + U h + b`` (all but the GRU, which gates ``U h``), the input and the recurrent
  convolutions become one convolution over ``[x, h]`` stacked on the channel axis, whose output
  goes straight to the cell's equations (``activate``): per step one convolution instead of
  two, and no concatenation of constant channels or sum of biases. Otherwise the input
  convolution is frozen and the cell's ``update`` adds the recurrent one.

The outputs equal ``cell.step``'s within float rounding (tests). A snapshot: build it again
after the weights change or move to another device. It is not an ``nn.Module`` and calls no
hooks.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.nn import functional as F

from .base import RecurrentCell, State


class FrozenConv:
    """A convolution with fixed (folded) ``weight`` and ``bias``, the weight kept in
    ``memory_format``, plus a constant ``(1, C, h, w)`` map added when one is given."""

    def __init__(self, weight: Tensor, bias: Optional[Tensor], stride, padding,
                 constant_map: Optional[Tensor] = None,
                 memory_format: torch.memory_format = torch.contiguous_format):
        self.weight = weight.detach().contiguous(memory_format=memory_format)
        self.bias = None if bias is None else bias.detach()
        self.map = (None if constant_map is None
                    else constant_map.detach().contiguous(memory_format=memory_format))
        self.stride, self.padding = stride, padding

    def __call__(self, x: Tensor) -> Tensor:
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding)
        return y if self.map is None else y.add_(self.map)


class FrozenConvStep:
    """``cell`` frozen for stepping: ``frozen(x, state) -> (y, new state)`` like ``cell.step``.

    ``constant_input`` ``(1, K, H_in, W_in)``: the last ``K`` of the cell's input channels,
    the same at every step; ``x`` then carries only the first ``input_size - K``.
    ``memory_format``: the layout to keep the convolution's weights in, best the one ``x``
    comes in.
    """

    def __init__(self, cell: RecurrentCell, constant_input: Optional[Tensor] = None,
                 memory_format: torch.memory_format = torch.contiguous_format):
        name = type(cell).__name__
        if not cell.is_conv:
            raise ValueError(f'FrozenConvStep: {name} is not a convolutional cell')
        if type(cell).project_input is not RecurrentCell.project_input:
            raise ValueError(f'FrozenConvStep: {name} builds its input projection its own way')
        self.cell = cell
        padding = cell.kernel_size // 2
        constant_channels = 0 if constant_input is None else constant_input.shape[1]
        input_channels = cell.input_size - constant_channels
        # fused: one convolution yields W x + U h; GRU needs U h apart (it gates it)
        self.fused = cell.fold_recurrent_bias and cell.stride == 1
        with torch.no_grad():
            weight_x = cell.weight_ih[:, :input_channels]
            # (G*C, C_x [+ C], k, k)
            weight = torch.cat([weight_x, cell.weight_hh], 1) if self.fused else weight_x
            bias = cell.bias_ih
            if bias is not None and cell.fold_recurrent_bias:
                bias = bias + cell.bias_hh
            gate_map = None            # (1, G*C, h, w) when the input has constants
            if constant_input is not None:
                gate_map = F.conv2d(constant_input.to(weight_x),
                                    cell.weight_ih[:, input_channels:], bias, cell.stride,
                                    padding)
                bias = None
        self.conv = FrozenConv(weight, bias, 1 if self.fused else cell.stride, padding, gate_map,
                               memory_format)

    def __call__(self, x: Tensor, state: State) -> Tuple[Tensor, State]:
        """One step: ``x (B, input_size - K, H_in, W_in)``, ``state`` as the cell's."""
        if self.fused:
            return self.cell.activate(self.conv(torch.cat([x, state[0]], 1)), state)
        return self.cell.update(self.conv(x), state)
