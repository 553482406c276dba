"""The base every recurrent cell stands on: fused projections, state handling, input checks.

A cell is split in three so that a dense cell and its convolutional twin share their gate math:

- ``project_input(x)`` -> ``gx``: every gate's input term in **one** matmul (dense) or **one**
  convolution (conv). The sequence runner calls it once for a whole sequence (T*B rows at once).
- ``update(gx, state)`` -> ``(y, state)``: one step. The recurrent term of every gate comes from
  one matmul / one convolution of ``h`` (``add_recurrent``); the cell's equations then turn the
  pre-activations ``W x + U h + b`` into the new state (``activate``). Written once per cell type;
  all tensors carry the gate/feature axis at dim 1, so the same code serves ``(B, G*H)`` and
  ``(B, G*C, H, W)``. Cells that gate ``U h`` itself (GRU) or split ``gx`` further (the
  Intersection RNN's input carry) override ``update`` instead.

States are tuples of tensors: ``(h,)`` or ``(h, c)``. Initial states are zeros, never random.

A cell is an ``nn.Module`` called like torch's cells: ``cell(x_t, state) -> (y_t, new_state)``
(``forward``); ``step`` is the same call under the name the rest of the package uses, so forward
hooks fire either way. ``SequenceRunner`` calls ``project_input``/``update`` directly (as
``torch.nn.LSTM`` does not call ``torch.nn.LSTMCell``), so hooks on a cell do not fire there.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

State = Tuple[Tensor, ...]


def lerp(start: Tensor, end: Tensor, weight: Tensor) -> Tensor:
    """``torch.lerp`` with its three arguments in their widest dtype: under autocast the gates
    come out in bf16/fp16 while the carried state stays fp32, and ``torch.lerp`` takes one
    dtype (``.to`` of a tensor already in that dtype is free)."""
    dtype = torch.promote_types(torch.promote_types(start.dtype, end.dtype), weight.dtype)
    return torch.lerp(start.to(dtype), end.to(dtype), weight.to(dtype))


class RecurrentCell(nn.Module):
    r"""Base class of all cells; a subclass supplies the equations (``activate`` or ``update``).

    Parameters carry the names of ``torch.nn.LSTMCell`` & co. and, like them, stack the gate
    blocks on dim 0; the order of the blocks is each cell's own (see its docstring):

    - dense: ``weight_ih (G*H + E, I)``, ``weight_hh (G*H, H)``, ``bias_ih (G*H + E)``,
      ``bias_hh (G*H)``
    - conv:  ``weight_ih (G*C + E, C_in, k, k)``, ``weight_hh (G*C, C, k, k)``, biases as above

    ``G`` is the number of gate blocks (class attribute ``num_gates``) and ``E`` extra input-only
    rows a cell may fuse into the input projection (the Intersection RNN's input carry).
    Initialisation (``reset_parameters``) is not torch's: see there.

    Convolutional cells (``kernel_size`` given): the input convolution may stride; the recurrent
    convolution has stride 1 and 'same' padding, so ``h`` keeps its shape from step to step.
    With input ``(B, C_in, H_in, W_in)``, kernel ``k`` (odd) and stride ``s``, the state is
    ``(B, C, H_out, W_out)`` with ``H_out = floor((H_in + 2*(k//2) - k) / s) + 1``
    (``= ceil(H_in / s)``).

    Args:
        input_size: ``I``, features of ``x`` (dense) or its channels ``C_in`` (conv).
        hidden_size: ``H``, features of ``h`` (dense) or its channels ``C`` (conv).
        bias: if ``False``, no ``bias_ih`` / ``bias_hh``. Default: ``True``
        kernel_size: ``None`` for a dense cell, else the (odd) side of both square
            convolution kernels. Default: ``None``
        stride: stride of the input convolution (conv cells only). Default: ``1``
        extra_input_rows: ``E`` (set by the subclass that needs it). Default: ``0``

    Inputs: x, state
        - **x** ``(B, I)`` (dense) or ``(B, C_in, H_in, W_in)`` (conv): one time step of a
          batch; an unbatched input is refused. Same dtype and device as the weights.
        - **state** (optional): a tuple of tensors named by ``state_names``, each ``(B, H)`` or
          ``(B, C, H_out, W_out)``; ``None`` means zeros (``init_state``).

    Outputs: y, new_state
        - **y** ``(B, H)`` or ``(B, C, H_out, W_out)``: the output ``y_t``.
        - **new_state**: the tuple to pass to the next step.

    Example::

        >>> import torch
        >>> from rnn_perception.cells import GRUCell
        >>> cell = GRUCell(4, 8)
        >>> seen = []
        >>> handle = cell.register_forward_hook(lambda m, args, out: seen.append(args[0].shape))
        >>> y, state = cell(torch.randn(2, 4))            # state None: starts from zeros
        >>> y, state = cell.step(torch.randn(2, 4), state)  # the same call, hooks included
        >>> seen
        [torch.Size([2, 4]), torch.Size([2, 4])]
        >>> handle.remove()
    """

    num_gates: int = 1
    state_names: Tuple[str, ...] = ('h',)

    def __init__(self, input_size: int, hidden_size: int, *, bias: bool = True,
                 kernel_size: Optional[int] = None, stride: int = 1, extra_input_rows: int = 0):
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f'{type(self).__name__}: input_size and hidden_size must be '
                             f'positive, got {input_size} and {hidden_size}')
        if kernel_size is not None and (kernel_size <= 0 or kernel_size % 2 == 0):
            raise ValueError(f'{type(self).__name__}: kernel_size must be a positive odd number '
                             f"so that 'same' padding keeps h's shape, got {kernel_size}")
        if stride <= 0:
            raise ValueError(f'{type(self).__name__}: stride must be positive, got {stride}')
        if kernel_size is None and stride != 1:
            raise ValueError(f'{type(self).__name__}: stride applies to convolutional cells only')
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.kernel_size = kernel_size
        self.stride = stride
        self.extra_input_rows = extra_input_rows
        gate_rows = self.num_gates * hidden_size
        kernel = () if kernel_size is None else (kernel_size, kernel_size)
        self.weight_ih = nn.Parameter(
            torch.empty(gate_rows + extra_input_rows, input_size, *kernel))
        self.weight_hh = nn.Parameter(torch.empty(gate_rows, hidden_size, *kernel))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gate_rows + extra_input_rows))
            self.bias_hh = nn.Parameter(torch.empty(gate_rows))
        else:
            self.register_parameter('bias_ih', None)
            self.register_parameter('bias_hh', None)
        self.reset_parameters()

    # ----------------------------------------------------------------------------------- shapes
    @property
    def is_conv(self) -> bool:
        return self.kernel_size is not None

    @property
    def output_size(self) -> int:
        """Features (dense) or channels (conv) of ``y_t``."""
        return self.hidden_size

    def state_shape(self, batch: int, spatial: Optional[Sequence[int]] = None) -> Tuple[int, ...]:
        """Shape of each state tensor; conv cells need the *input* spatial size
        ``(H_in, W_in)``."""
        if not self.is_conv:
            return (batch, self.hidden_size)
        if spatial is None or len(spatial) != 2:
            raise ValueError(f'{type(self).__name__}: a convolutional cell needs the input '
                             f'spatial size (H_in, W_in) to build its state, got {spatial}')
        return (batch, self.hidden_size, *(math.ceil(n / self.stride) for n in spatial))

    def init_state(self, batch: int, device=None, dtype=None,
                   spatial: Optional[Sequence[int]] = None) -> State:
        """Zero state for ``batch`` sequences (conv cells: ``spatial`` = input
        ``(H_in, W_in)``); device and dtype default to the weights'."""
        device = self.weight_hh.device if device is None else device
        dtype = self.weight_hh.dtype if dtype is None else dtype
        shape = self.state_shape(batch, spatial)
        return tuple(torch.zeros(shape, device=device, dtype=dtype) for _ in self.state_names)

    # ------------------------------------------------------------------------------ projections
    def check_input(self, x: Tensor, leading_dims: int = 1) -> None:
        """Raise a clear error unless ``x`` is ``(*lead, I)`` (dense) or ``(*lead, C_in, H, W)``
        (conv), ``leading_dims`` long lead, with the weights' dtype and device."""
        feature_dims = 3 if self.is_conv else 1
        lead = 'T, B' if leading_dims == 2 else 'B'
        expected = (f'({lead}, {self.input_size}, H, W)' if self.is_conv
                    else f'({lead}, {self.input_size})')
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f'{name}: expected a torch.Tensor of shape {expected}, '
                            f'got {type(x).__name__}')
        if x.dim() != leading_dims + feature_dims or x.shape[leading_dims] != self.input_size:
            raise ValueError(f'{name}: expected input of shape {expected}, got {tuple(x.shape)}')
        if x.dtype != self.weight_ih.dtype:
            raise TypeError(f'{name}: expected input dtype {self.weight_ih.dtype} '
                            f"(the weights' dtype), got {x.dtype}")
        if x.device != self.weight_ih.device:
            raise ValueError(f'{name}: expected input on {self.weight_ih.device} '
                             f"(the weights' device), got {x.device}")

    #: Cells whose gates need only the sum ``W x + b_ih + U h + b_hh`` fold ``b_hh`` into the
    #: input projection and add ``U h`` with one fused multiply-add; GRU needs ``U h + b_hh``
    #: apart.
    fold_recurrent_bias = True

    def project_input(self, x: Tensor) -> Tensor:
        """All gates' input terms at once, with ``b_ih`` (and ``b_hh`` where folded):
        ``x (N, I)`` or ``(N, C_in, H, W)`` -> ``(N, G*H + E[, h, w])``."""
        bias = self.bias_ih
        if bias is not None and self.fold_recurrent_bias:
            bias = bias + F.pad(self.bias_hh, (0, self.extra_input_rows))
        if self.is_conv:
            return F.conv2d(x, self.weight_ih, bias, self.stride, self.kernel_size // 2)
        return F.linear(x, self.weight_ih, bias)

    def add_recurrent(self, gx: Tensor, h: Tensor) -> Tensor:
        """``gx + U h``: the gates' pre-activations, ``gx`` already holding both biases."""
        if self.is_conv:
            return gx + F.conv2d(h, self.weight_hh, None, 1, self.kernel_size // 2)
        return torch.addmm(gx, h, self.weight_hh.t())

    def project_hidden(self, h: Tensor) -> Tensor:
        """``U h + b_hh`` on its own, for cells that gate it (GRU)."""
        if self.is_conv:
            return F.conv2d(h, self.weight_hh, self.bias_hh, 1, self.kernel_size // 2)
        return F.linear(h, self.weight_hh, self.bias_hh)

    # ----------------------------------------------------------------------------------- steps
    def update(self, gx: Tensor, state: State) -> Tuple[Tensor, State]:
        """One step from the input projection ``gx`` (both biases in it): ``U h`` added, then the
        cell's equations."""
        return self.activate(self.add_recurrent(gx, state[0]), state)

    def activate(self, pre: Tensor, state: State) -> Tuple[Tensor, State]:
        """The cell's equations on the gates' pre-activations ``pre = W x + U h + b`` (``(B, G*H)``
        or ``(B, G*C, h, w)``) and the previous ``state`` -> ``(y, new state)``. Per cell type."""
        raise NotImplementedError

    def unroll(self, gx: Tensor, state: State) -> Tuple[Tensor, State]:
        """Every step of full-length sequences from their input projection
        ``gx (T, B, G*H[, h, w])`` -> ``(y (T, B, ...), final state)``. Cells may override it
        with a fused kernel."""
        ys = []
        # unbind, not gx[t]: the backward of T selects would build T zero-filled copies of gx
        for gx_t in gx.unbind(0):
            y, state = self.update(gx_t, state)
            ys.append(y)
        return torch.stack(ys), state

    def forward(self, x: Tensor, state: Optional[State] = None) -> Tuple[Tensor, State]:
        """One time step for stateful per-frame use: ``x_t (B, ...)`` -> ``(y_t, new_state)``;
        ``state=None`` starts from zeros. Call the cell (``cell(x, state)``) or ``step``, not
        ``forward`` itself, so that hooks run."""
        self.check_input(x)
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype,
                                    x.shape[-2:] if self.is_conv else None)
        else:
            self.check_state(state, x)
        return self.update(self.project_input(x), state)

    def step(self, x: Tensor, state: Optional[State] = None) -> Tuple[Tensor, State]:
        """``cell(x, state)`` under the name the package's models use: the same computation
        (``forward``), through ``nn.Module.__call__`` so that forward (pre-)hooks fire."""
        return self(x, state)

    def check_state(self, state: State, x: Tensor) -> None:
        expected = self.state_shape(x.shape[0], x.shape[-2:] if self.is_conv else None)
        if not isinstance(state, tuple) or len(state) != len(self.state_names):
            raise TypeError(f'{type(self).__name__}: state must be a tuple {self.state_names}, '
                            f'got {type(state).__name__}')
        for name, tensor in zip(self.state_names, state):
            if tuple(tensor.shape) != expected:
                raise ValueError(f'{type(self).__name__}: state {name} must have shape '
                                 f'{expected}, got {tuple(tensor.shape)}')

    # ------------------------------------------------------------------------------ initialise
    def gate_blocks(self, weight: Tensor):
        """Views of ``weight`` per gate block (rows ``k*H:(k+1)*H``), for per-gate
        initialisers."""
        return weight[:self.num_gates * self.hidden_size].split(self.hidden_size, dim=0)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """This library's initialisation, not torch's:

        - ``weight_ih``: Xavier-uniform per gate block (and once over the ``E`` extra rows);
        - ``weight_hh``: orthogonal per gate block (dense: an orthogonal ``H x H`` matrix; conv:
          the block flattened to ``(C, C*k*k)`` has orthonormal rows);
        - ``bias_ih``, ``bias_hh``: zeros.

        Subclasses then adjust (``LSTMCell``: ``forget_bias``; ``IRNNCell``: identity
        ``weight_hh``). ``torch.nn.RNNCell``/``LSTMCell``/``GRUCell`` instead draw every weight
        and bias from ``U(-1/sqrt(H), 1/sqrt(H))``; for that distribution, after construction:
        ``for p in cell.parameters(): nn.init.uniform_(p, -H ** -0.5, H ** -0.5)``.
        """
        for block in self.gate_blocks(self.weight_ih):
            nn.init.xavier_uniform_(block)
        extra = self.weight_ih[self.num_gates * self.hidden_size:]
        if extra.numel():
            nn.init.xavier_uniform_(extra)
        for block in self.gate_blocks(self.weight_hh):
            nn.init.orthogonal_(block)
        if self.bias_ih is not None:
            self.bias_ih.zero_()
            self.bias_hh.zero_()

    def extra_repr(self) -> str:
        text = f'{self.input_size}, {self.hidden_size}'
        if self.is_conv:
            text += f', kernel_size={self.kernel_size}, stride={self.stride}'
        if self.bias_ih is None:
            text += ', bias=False'
        return text
