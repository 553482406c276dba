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
    r"""Convolutional Elman RNN:

    .. math:: H_t = \phi(W * X_t + b_{ih} + U * H_{t-1} + b_{hh}), \quad Y_t = H_t

    with ``*`` a 2-D convolution here and :math:`\phi` the ``nonlinearity``.

    Args:
        input_size: ``C_in``, the channels of ``x``.
        hidden_size: ``C``, the channels of ``h``.
        kernel_size: side ``k`` (odd) of both square kernels. Default: ``3``
        stride: stride of the input convolution. Default: ``1``
        nonlinearity: :math:`\phi`, ``'tanh'`` or ``'relu'``. Default: ``'tanh'``
        bias: if ``False``, no ``bias_ih`` / ``bias_hh``. Default: ``True``

    Inputs: x, state
        - **x** ``(B, C_in, H_in, W_in)``
        - **state** ``(h,)``, ``h (B, C, H_out, W_out)``; ``None`` (default) means zeros.

    Outputs: y, (h',)
        - **y** ``(B, C, H_out, W_out)``: ``h'``.
        - **(h',)**: the new state.

    Example::

        >>> import torch
        >>> from rnn_perception.cells import ConvRNNCell
        >>> cell = ConvRNNCell(3, 8, kernel_size=3, stride=2)
        >>> y, (h,) = cell(torch.randn(2, 3, 9, 7))     # H_out = ceil(9 / 2), W_out = ceil(7 / 2)
        >>> y.shape
        torch.Size([2, 8, 5, 4])
    """

    def __init__(self, input_size: int, hidden_size: int, kernel_size: int = 3, stride: int = 1,
                 nonlinearity: str = 'tanh', **kwargs):
        super().__init__(input_size, hidden_size, nonlinearity=nonlinearity,
                         kernel_size=kernel_size, stride=stride, **kwargs)


class ConvLSTMCell(LSTMCell):
    r"""ConvLSTM (Shi et al. 2015): the ``LSTMCell`` equations with ``W x`` and ``U h`` as 2-D
    convolutions, optional peepholes (``peephole=True``) with one weight per channel. Gate rows
    ``(i, f, g, o)``; initialised as ``LSTMCell`` (``forget_bias`` in ``b_ih``'s forget block).

    Args:
        input_size: ``C_in``, the channels of ``x``.
        hidden_size: ``C``, the channels of ``h`` and ``c``.
        kernel_size: side ``k`` (odd) of both square kernels. Default: ``3``
        stride: stride of the input convolution. Default: ``1``
        peephole: add the per-channel peephole terms ``p * c``. Default: ``False``
        forget_bias: initial value of the forget gate's ``b_ih`` block. Default: ``1.0``
        bias: if ``False``, no ``bias_ih`` / ``bias_hh``. Default: ``True``

    Inputs: x, state
        - **x** ``(B, C_in, H_in, W_in)``
        - **state** ``(h, c)``, each ``(B, C, H_out, W_out)``; ``None`` (default) means zeros.

    Outputs: y, (h', c')
        - **y** ``(B, C, H_out, W_out)``: ``h'``.
        - **(h', c')**: the new state.

    Example::

        >>> import torch
        >>> from rnn_perception.cells import ConvLSTMCell
        >>> cell = ConvLSTMCell(3, 8, kernel_size=5, peephole=True)
        >>> y, state = cell(torch.randn(2, 3, 16, 16))
        >>> y, (h, c) = cell(torch.randn(2, 3, 16, 16), state)
        >>> y.shape, c.shape
        (torch.Size([2, 8, 16, 16]), torch.Size([2, 8, 16, 16]))
    """

    def __init__(self, input_size: int, hidden_size: int, kernel_size: int = 3, stride: int = 1,
                 peephole: bool = False, forget_bias: float = 1.0, **kwargs):
        super().__init__(input_size, hidden_size, peephole=peephole, forget_bias=forget_bias,
                         kernel_size=kernel_size, stride=stride, **kwargs)


class ConvGRUCell(GRUCell):
    r"""ConvGRU: the ``GRUCell`` equations (torch convention, gate rows ``(r, z, n)``) with
    ``W x`` and ``U h`` as 2-D convolutions.

    Args:
        input_size: ``C_in``, the channels of ``x``.
        hidden_size: ``C``, the channels of ``h``.
        kernel_size: side ``k`` (odd) of both square kernels. Default: ``3``
        stride: stride of the input convolution. Default: ``1``
        bias: if ``False``, no ``bias_ih`` / ``bias_hh``. Default: ``True``

    Inputs: x, state
        - **x** ``(B, C_in, H_in, W_in)``
        - **state** ``(h,)``, ``h (B, C, H_out, W_out)``; ``None`` (default) means zeros.

    Outputs: y, (h',)
        - **y** ``(B, C, H_out, W_out)``: ``h'``.
        - **(h',)**: the new state.

    Example::

        >>> import torch
        >>> from rnn_perception.cells import ConvGRUCell
        >>> cell = ConvGRUCell(3, 8)
        >>> y, (h,) = cell(torch.randn(2, 3, 10, 12))
        >>> y.shape
        torch.Size([2, 8, 10, 12])
    """

    def __init__(self, input_size: int, hidden_size: int, kernel_size: int = 3, stride: int = 1,
                 **kwargs):
        super().__init__(input_size, hidden_size, kernel_size=kernel_size, stride=stride,
                         **kwargs)
