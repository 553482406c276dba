"""The recurrent cells. Each class holds one set of equations (``activate``, or ``update`` for a
cell that gates ``U h`` itself); the same class serves dense inputs ``(B, I)`` and, through
``kernel_size``, convolutional inputs ``(B, C_in, H, W)`` (see ``conv.py`` for the named
convolutional cells). Notation: ``W x`` is the fused input projection, ``U h`` the fused
recurrent projection, both with their biases, ``*`` is elementwise.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from .base import lerp, RecurrentCell, State


class ElmanCell(RecurrentCell):
    r"""Elman RNN, the equations of ``torch.nn.RNNCell``:

    .. math:: h_t = \phi(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}), \quad y_t = h_t

    with :math:`\phi` the ``nonlinearity``. One gate block. Initialised as
    ``RecurrentCell.reset_parameters`` says (Xavier-uniform / orthogonal / zero biases), not as
    torch's ``RNNCell``.

    Args:
        input_size: ``I``, the features of ``x``.
        hidden_size: ``H``, the features of ``h``.
        nonlinearity: :math:`\phi`, ``'tanh'`` or ``'relu'``. Default: ``'tanh'``
        bias: if ``False``, no ``bias_ih`` / ``bias_hh``. Default: ``True``
        kernel_size: ``None`` for a dense cell, or the odd side of square kernels that
            make it convolutional (as ``ConvRNNCell``). Default: ``None``
        stride: stride of the input convolution (conv only). Default: ``1``

    Inputs: x, state
        - **x** ``(B, I)``
        - **state** ``(h,)``, ``h (B, H)``; ``None`` (default) means zeros.

    Outputs: y, (h',)
        - **y** ``(B, H)``: ``h'``.
        - **(h',)**: the new state.

    Example::

        >>> import torch
        >>> from rnn_perception.cells import ElmanCell
        >>> cell = ElmanCell(10, 20, nonlinearity='relu')
        >>> x = torch.randn(6, 3, 10)                  # (T, B, I)
        >>> state = None                               # zeros
        >>> for x_t in x:
        ...     y, state = cell(x_t, state)
        >>> y.shape, torch.equal(y, state[0])
        (torch.Size([3, 20]), True)
    """

    num_gates = 1

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = 'tanh', **kwargs):
        if nonlinearity not in ('tanh', 'relu'):
            raise ValueError(f"{type(self).__name__}: nonlinearity must be 'tanh' or 'relu', "
                             f'got {nonlinearity!r}')
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, **kwargs)

    def activate(self, pre: Tensor, state: State) -> Tuple[Tensor, State]:
        h = torch.relu(pre) if self.nonlinearity == 'relu' else torch.tanh(pre)
        return h, (h,)


class IRNNCell(ElmanCell):
    r"""IRNN (Le, Jaitly & Hinton 2015): a ReLU Elman RNN whose recurrent matrix starts as the
    identity and whose biases start at zero:

    .. math:: h_t = \mathrm{ReLU}(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}), \quad y_t = h_t

    At initialisation :math:`W_{hh} = I` (conv: a kernel whose centre tap is :math:`I`, see
    ``identity_init_``), so :math:`h_t = \mathrm{ReLU}(W_{ih} x_t + h_{t-1})`: with zero input a
    non-negative state is copied forward. :math:`W_{ih}` starts Xavier-uniform.

    Args:
        input_size: ``I``, the features of ``x``.
        hidden_size: ``H``, the features of ``h``.
        bias: if ``False``, no ``bias_ih`` / ``bias_hh``. Default: ``True``
        kernel_size: ``None`` for a dense cell, or the odd side of square kernels that
            make it convolutional. Default: ``None``
        stride: stride of the input convolution (conv only). Default: ``1``

    Inputs: x, state
        - **x** ``(B, I)``
        - **state** ``(h,)``, ``h (B, H)``; ``None`` (default) means zeros.

    Outputs: y, (h',)
        - **y** ``(B, H)``: ``h'``.
        - **(h',)**: the new state.

    Example::

        >>> import torch
        >>> from rnn_perception.cells import IRNNCell
        >>> cell = IRNNCell(10, 20)
        >>> h = torch.rand(3, 20)
        >>> y, (h_next,) = cell(torch.zeros(3, 10), (h,))  # zero input: h is carried unchanged
        >>> torch.equal(h_next, h)
        True
    """

    def __init__(self, input_size: int, hidden_size: int, **kwargs):
        super().__init__(input_size, hidden_size, nonlinearity='relu', **kwargs)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        super().reset_parameters()
        identity_init_(self.weight_hh)


class LSTMCell(RecurrentCell):
    r"""LSTM, optionally with peephole connections (Gers & Schmidhuber 2000):

    .. math::
        i_t &= \sigma(W_i x_t + U_i h_{t-1} + p_i * c_{t-1} + b_i) \\
        f_t &= \sigma(W_f x_t + U_f h_{t-1} + p_f * c_{t-1} + b_f) \\
        g_t &= \tanh(W_g x_t + U_g h_{t-1} + b_g) \\
        c_t &= f_t * c_{t-1} + i_t * g_t \\
        o_t &= \sigma(W_o x_t + U_o h_{t-1} + p_o * c_t + b_o) \\
        h_t &= o_t * \tanh(c_t), \quad y_t = h_t

    Without peepholes (``p = 0``) these are the equations of ``torch.nn.LSTMCell``, and the gate
    rows are stored in torch's order ``(i, f, g, o)``, so a ``SequenceRunner`` of them runs
    torch's own LSTM kernel on these very parameters. Peephole weights ``weight_peephole``
    ``(3, H)`` (rows ``p_i, p_f, p_o``) are diagonal: one per unit (dense) or per channel
    (conv). (Weights files before this order stored ``(i, f, o, g)``:
    :func:`~rnn_perception.cells.lstm_rows_from_ifog` converts them.)

    Initialisation: ``RecurrentCell.reset_parameters`` (Xavier-uniform ``W``, orthogonal ``U`` per
    gate block, zero biases), zero peepholes, then the forget block of ``bias_ih`` is set to
    ``forget_bias`` (``bias_hh`` stays zero). 1.0 eases learning of long dependencies; 0.0 leaves
    every bias at zero. Neither value gives torch's initial distribution: ``torch.nn.LSTMCell``
    draws every weight and bias from ``U(-1/sqrt(H), 1/sqrt(H))``.

    Args:
        input_size: ``I``, the features of ``x``.
        hidden_size: ``H``, the features of ``h`` and ``c``.
        peephole: add the peephole terms ``p * c``. Default: ``False``
        forget_bias: initial value of the forget gate's ``b_ih`` block (ignored when
            ``bias=False``). Default: ``1.0``
        bias: if ``False``, no ``bias_ih`` / ``bias_hh``. Default: ``True``
        kernel_size: ``None`` for a dense cell, or the odd side of square kernels that
            make it convolutional (as ``ConvLSTMCell``). Default: ``None``
        stride: stride of the input convolution (conv only). Default: ``1``

    Inputs: x, state
        - **x** ``(B, I)``
        - **state** ``(h, c)``, each ``(B, H)``; ``None`` (default) means zeros.

    Outputs: y, (h', c')
        - **y** ``(B, H)``: ``h'``.
        - **(h', c')**: the new state.

    Example::

        >>> import torch
        >>> from rnn_perception.cells import LSTMCell
        >>> cell = LSTMCell(10, 20)
        >>> y, state = cell(torch.randn(3, 10))        # state None: h = c = 0
        >>> y, (h, c) = cell(torch.randn(3, 10), state)
        >>> y.shape, h.shape, c.shape
        (torch.Size([3, 20]), torch.Size([3, 20]), torch.Size([3, 20]))
    """

    num_gates = 4
    state_names = ('h', 'c')

    def __init__(self, input_size: int, hidden_size: int, peephole: bool = False,
                 forget_bias: float = 1.0, **kwargs):
        self.forget_bias = forget_bias
        self.peephole = peephole
        super().__init__(input_size, hidden_size, **kwargs)
        if peephole:
            spatial = (1, 1) if self.is_conv else ()
            # rows: p_i, p_f (see c_{t-1}) and p_o (sees c_t); shaped to broadcast over
            # (B, H[, h, w])
            self.weight_peephole = nn.Parameter(torch.zeros(3, hidden_size, *spatial))
        else:
            self.register_parameter('weight_peephole', None)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias_ih is not None:
            self.bias_ih[self.hidden_size:2 * self.hidden_size].fill_(self.forget_bias)
        if getattr(self, 'weight_peephole', None) is not None:
            self.weight_peephole.zero_()

    def activate(self, pre: Tensor, state: State) -> Tuple[Tensor, State]:
        c_prev = state[1]
        n = self.hidden_size
        # split, not slicing: one concatenation in backward instead of a zero-filled copy per slice
        i_f, g, o_pre = pre.split((2 * n, n, n), 1)          # (B, 2H), (B, H), (B, H)
        if self.peephole:
            p = self.weight_peephole
            # (B, 2, H[, h, w]): the i and f blocks side by side, each plus its peephole term
            i, f = torch.sigmoid(i_f.unflatten(1, (2, n)) + p[:2] * c_prev.unsqueeze(1)).unbind(1)
            c = torch.addcmul(f * c_prev, i, torch.tanh(g))
            o = torch.sigmoid(o_pre + p[2] * c)
        else:
            i, f = torch.sigmoid(i_f).chunk(2, 1)
            c = torch.addcmul(f * c_prev, i, torch.tanh(g))
            o = torch.sigmoid(o_pre)
        h = o * torch.tanh(c)
        return h, (h, c)


class GRUCell(RecurrentCell):
    r"""GRU in the ``torch.nn.GRUCell`` convention (reset gate applied after the recurrent matmul):

    .. math::
        r_t &= \sigma(W_r x_t + b_{ir} + U_r h_{t-1} + b_{hr}) \\
        z_t &= \sigma(W_z x_t + b_{iz} + U_z h_{t-1} + b_{hz}) \\
        n_t &= \tanh(W_n x_t + b_{in} + r_t * (U_n h_{t-1} + b_{hn})) \\
        h_t &= (1 - z_t) * n_t + z_t * h_{t-1}, \quad y_t = h_t

    Gate rows in torch's order ``(r, z, n)``, so a ``torch.nn.GRU``'s weights load as they are
    (``load_torch_weights``). Initialised as ``RecurrentCell.reset_parameters`` says, not as
    torch's ``GRUCell``.

    Args:
        input_size: ``I``, the features of ``x``.
        hidden_size: ``H``, the features of ``h``.
        bias: if ``False``, no ``bias_ih`` / ``bias_hh``. Default: ``True``
        kernel_size: ``None`` for a dense cell, or the odd side of square kernels that
            make it convolutional (as ``ConvGRUCell``). Default: ``None``
        stride: stride of the input convolution (conv only). Default: ``1``

    Inputs: x, state
        - **x** ``(B, I)``
        - **state** ``(h,)``, ``h (B, H)``; ``None`` (default) means zeros.

    Outputs: y, (h',)
        - **y** ``(B, H)``: ``h'``.
        - **(h',)**: the new state.

    Example::

        >>> import torch
        >>> from rnn_perception.cells import GRUCell
        >>> cell = GRUCell(10, 20)
        >>> y, state = cell(torch.randn(3, 10), (torch.zeros(3, 20),))
        >>> y.shape, len(state)
        (torch.Size([3, 20]), 1)
    """

    num_gates = 3
    fold_recurrent_bias = False

    def update(self, gx: Tensor, state: State) -> Tuple[Tensor, State]:
        h_prev, = state
        n = self.hidden_size
        gx_rz, gx_n = gx.split((2 * n, n), 1)
        gh_rz, gh_n = self.project_hidden(h_prev).split((2 * n, n), 1)
        r, z = torch.sigmoid(gx_rz + gh_rz).chunk(2, 1)
        candidate = torch.tanh(torch.addcmul(gx_n, r, gh_n))
        h = lerp(candidate, h_prev, z)               # (1 - z) * n + z * h_prev
        return h, (h,)


class UGRNNCell(RecurrentCell):
    r"""Update-gate RNN (Collins, Sohl-Dickstein & Sussillo 2016):

    .. math::
        g_t &= \sigma(W_g x_t + U_g h_{t-1} + b_g) \\
        c_t &= \tanh(W_c x_t + U_c h_{t-1} + b_c) \\
        h_t &= g_t * h_{t-1} + (1 - g_t) * c_t, \quad y_t = h_t

    Gate rows ``(g, c)``; ``b`` is ``b_ih + b_hh``. ``c_t`` is a candidate, not a cell state:
    the state is ``(h,)``.

    Args:
        input_size: ``I``, the features of ``x``.
        hidden_size: ``H``, the features of ``h``.
        bias: if ``False``, no ``bias_ih`` / ``bias_hh``. Default: ``True``
        kernel_size: ``None`` for a dense cell, or the odd side of square kernels that
            make it convolutional. Default: ``None``
        stride: stride of the input convolution (conv only). Default: ``1``

    Inputs: x, state
        - **x** ``(B, I)``
        - **state** ``(h,)``, ``h (B, H)``; ``None`` (default) means zeros.

    Outputs: y, (h',)
        - **y** ``(B, H)``: ``h'``.
        - **(h',)**: the new state.

    Example::

        >>> import torch
        >>> from rnn_perception.cells import UGRNNCell
        >>> cell = UGRNNCell(10, 20)
        >>> y, (h,) = cell(torch.randn(3, 10))
        >>> y.shape
        torch.Size([3, 20])
    """

    num_gates = 2

    def activate(self, pre: Tensor, state: State) -> Tuple[Tensor, State]:
        h_prev, = state
        g, c = pre.chunk(2, 1)
        h = lerp(torch.tanh(c), h_prev, torch.sigmoid(g))
        return h, (h,)


class IntersectionCell(RecurrentCell):
    r"""Intersection RNN (Collins, Sohl-Dickstein & Sussillo 2016): separate output (y) and state
    (h) paths, each gated between a carry and a new candidate:

    .. math::
        y^{in}_t &= \tanh(W_{yin} x_t + U_{yin} h_{t-1} + b_{yin}) \\
        h^{in}_t &= \tanh(W_{hin} x_t + U_{hin} h_{t-1} + b_{hin}) \\
        g^y_t &= \sigma(W_{gy} x_t + U_{gy} h_{t-1} + b_{gy}) \\
        g^h_t &= \sigma(W_{gh} x_t + U_{gh} h_{t-1} + b_{gh}) \\
        y_t &= g^y_t * P x_t + (1 - g^y_t) * y^{in}_t \\
        h_t &= g^h_t * h_{t-1} + (1 - g^h_t) * h^{in}_t

    The output carries the input forward, so it needs ``x`` in the hidden size: ``P x_t`` is
    ``x_t`` itself when ``input_size == hidden_size`` (and, conv, ``stride == 1``), and otherwise
    a learned projection with its own bias (``W_P x_t + b_P``, ``b_P`` zero at initialisation;
    the "first layer may project the input" rule), fused into the input matmul as ``E = H``
    extra rows. Gate rows ``(g_y, g_h, y_in, h_in)``, then ``P``'s rows. The cell returns
    ``y_t``; the state is ``(h_t,)``.

    Args:
        input_size: ``I``, the features of ``x``.
        hidden_size: ``H``, the features of ``y`` and ``h``.
        bias: if ``False``, no ``bias_ih`` / ``bias_hh`` (nor ``b_P``). Default: ``True``
        kernel_size: ``None`` for a dense cell, or the odd side of square kernels that
            make it convolutional. Default: ``None``
        stride: stride of the input convolution (conv only). Default: ``1``

    Inputs: x, state
        - **x** ``(B, I)``
        - **state** ``(h,)``, ``h (B, H)``; ``None`` (default) means zeros.

    Outputs: y, (h',)
        - **y** ``(B, H)``: the output, not ``h'``.
        - **(h',)**: the new state.

    Example::

        >>> import torch
        >>> from rnn_perception.cells import IntersectionCell
        >>> cell = IntersectionCell(10, 20)            # 10 != 20: x is projected (P)
        >>> y, (h,) = cell(torch.randn(3, 10))
        >>> y.shape, h.shape, cell.projects_input
        (torch.Size([3, 20]), torch.Size([3, 20]), True)
    """

    num_gates = 4

    def __init__(self, input_size: int, hidden_size: int, **kwargs):
        # x is carried as it is only where it already has h's shape: same width, and (conv) the
        # same grid, which a strided input convolution would not keep
        projects = input_size != hidden_size or kwargs.get('stride', 1) != 1
        super().__init__(input_size, hidden_size,
                         extra_input_rows=hidden_size if projects else 0, **kwargs)
        self.projects_input = projects
        if projects and self.bias_ih is not None:
            with torch.no_grad():
                self.bias_ih[4 * hidden_size:].zero_()

    def project_input(self, x: Tensor) -> Tensor:
        gx = super().project_input(x)
        if self.projects_input:
            return gx                                     # (N, 5H): gates, then P x
        return torch.cat((gx, x), 1)                      # (N, 5H): gates, then x itself

    def update(self, gx: Tensor, state: State) -> Tuple[Tensor, State]:
        h_prev, = state
        n = self.hidden_size
        gx_gates, carry = gx.split((4 * n, n), 1)
        gates, candidates = self.add_recurrent(gx_gates, h_prev).split((2 * n, 2 * n), 1)
        g_y, g_h = torch.sigmoid(gates).chunk(2, 1)
        y_in, h_in = torch.tanh(candidates).chunk(2, 1)
        y = lerp(y_in, carry, g_y)
        h = lerp(h_in, h_prev, g_h)
        return y, (h,)


def identity_init_(weight: Tensor) -> Tensor:
    """Identity recurrent init: ``I`` for a dense ``(H, H)`` matrix; for a conv kernel
    ``(C, C, k, k)`` the centre tap is ``I`` so the convolution maps ``h`` to itself."""
    with torch.no_grad():
        weight.zero_()
        eye = torch.eye(weight.shape[0], weight.shape[1], dtype=weight.dtype, device=weight.device)
        if weight.dim() == 2:
            weight.copy_(eye)
        else:
            k = weight.shape[-1] // 2
            weight[:, :, k, k] = eye
    return weight


CELL_TYPES = {
    'rnn': ElmanCell,
    'irnn': IRNNCell,
    'lstm': LSTMCell,
    'gru': GRUCell,
    'ugrnn': UGRNNCell,
    'intersection': IntersectionCell,
}


def make_cell_type(name: str) -> Tuple[type, dict]:
    """``'peephole'`` and the names in ``CELL_TYPES`` -> ``(cell class, extra kwargs)``."""
    if name == 'peephole':
        return LSTMCell, {'peephole': True}
    try:
        return CELL_TYPES[name], {}
    except KeyError:
        raise ValueError(f'unknown cell type {name!r}; expected one of '
                         f'{sorted([*CELL_TYPES, "peephole"])}') from None
