"""Convolutional recurrent cells: the dense cells' equations with every matmul replaced by a
convolution (Shi et al. 2015 for the ConvLSTM). They differ from their dense twins only in the
projections, which ``RecurrentCell`` switches on ``kernel_size``; the gate math is shared.

Shapes (see ``RecurrentCell``): input ``(B, C_in, H_in, W_in)``; the input convolution uses
``stride`` and padding ``k // 2``; the recurrent convolution uses stride 1 and padding ``k // 2``
('same'), so ``h`` (and ``c``) are ``(B, C, ceil(H_in / stride), ceil(W_in / stride))`` and keep
that shape over time. ``y_t`` is ``h_t``.

Peephole weights of the ConvLSTM are one per channel (broadcast over the image) rather than
Shi et al.'s one per pixel, so a trained model runs at any input resolution.
"""
from __future__ import annotations

from .dense import ElmanCell, GRUCell, LSTMCell


class ConvRNNCell(ElmanCell):
    r""":math:`H_t = \phi(W * X_t + U * H_{t-1} + b)` with ``*`` a 2-D convolution."""

    def __init__(self, input_size: int, hidden_size: int, kernel_size: int = 3, stride: int = 1,
                 nonlinearity: str = 'tanh', **kwargs):
        super().__init__(input_size, hidden_size, nonlinearity=nonlinearity,
                         kernel_size=kernel_size, stride=stride, **kwargs)


class ConvLSTMCell(LSTMCell):
    r"""ConvLSTM (Shi et al. 2015): the ``LSTMCell`` equations with convolutions,
    optional per-channel peepholes (``peephole=True``)."""

    def __init__(self, input_size: int, hidden_size: int, kernel_size: int = 3, stride: int = 1,
                 peephole: bool = False, forget_bias: float = 1.0, **kwargs):
        super().__init__(input_size, hidden_size, peephole=peephole, forget_bias=forget_bias,
                         kernel_size=kernel_size, stride=stride, **kwargs)


class ConvGRUCell(GRUCell):
    r"""ConvGRU: the ``GRUCell`` equations (torch convention) with convolutions."""

    def __init__(self, input_size: int, hidden_size: int, kernel_size: int = 3, stride: int = 1, **kwargs):
        super().__init__(input_size, hidden_size, kernel_size=kernel_size, stride=stride, **kwargs)
