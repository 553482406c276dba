"""``SequenceRunner``: stacks cells into layers (optionally bidirectional) and unrolls them over
time for backpropagation through time; ``step`` runs one frame with carried state.

Layouts follow ``torch.nn.RNN/LSTM/GRU``:

- input ``(T, B, *F)``, or ``(B, T, *F)`` with ``batch_first``; ``*F`` is ``(I,)`` for dense
  cells and ``(C_in, H, W)`` for convolutional ones;
- output ``(T, B, D*H[, h, w])``: the last layer's ``y_t``, both directions concatenated;
- state: one tensor per state component, stacked over layers x directions in torch's order
  (index ``layer * D + direction``): ``h`` of shape ``(L*D, B, H[, h, w])``, or ``(h, c)`` for
  LSTM cells. When the layers' states differ in shape (conv stacks whose input convolution
  strides), each component is instead a list with one tensor per layer x direction.

Variable-length batches: pass ``lengths`` (B,) or a prefix ``mask`` ``(T, B)`` (``(B, T)`` with
``batch_first``). Steps past a sequence's end leave its state untouched and output zeros, so the
final state is the state at its last real step; the reverse direction starts at each sequence's
own last step, as with a packed sequence in torch.

**Torch's kernels.** When every cell is one torch implements exactly (a dense ``LSTMCell``
without peepholes, ``GRUCell``, ``ElmanCell``/``IRNNCell``), ``forward`` runs torch's own RNN
kernel (``torch.lstm`` / ``torch.gru`` / ``torch.rnn_tanh`` / ``torch.rnn_relu``, what
``torch.nn.LSTM`` & co. call: oneDNN or native on the CPU, cuDNN on a GPU) on the cells' own
parameters, passed as they are (no copy), variable lengths through a packed sequence. Its
outputs and gradients equal the cell library's own loop within float rounding (tests);
``torch_kernel`` names the kernel, and setting it to ``None`` runs the library's loop (the
reference). ``step`` always runs the cells.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, PackedSequence

from .base import RecurrentCell, State
from .dense import ElmanCell, GRUCell, LSTMCell

Packed = Union[Tensor, List[Tensor], Tuple[Union[Tensor, List[Tensor]], ...]]


class SequenceRunner(nn.Module):
    """Multi-layer, optionally bidirectional recurrence over a sequence, built from one cell type.

    ``cell_type(input_size, hidden_size, **cell_kwargs)`` builds each layer's cell; layer ``l > 0``
    reads ``D * hidden_size`` features (channels) from the layer below. ``dropout`` applies to
    every layer's output but the last, in training mode, as in torch.
    """

    def __init__(self, cell_type: type, input_size: int, hidden_size: int, num_layers: int = 1, *,
                 bidirectional: bool = False, dropout: float = 0.0, batch_first: bool = False,
                 **cell_kwargs):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f'SequenceRunner: num_layers must be >= 1, got {num_layers}')
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f'SequenceRunner: dropout must be in [0, 1), got {dropout}')
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.dropout = dropout
        self.batch_first = batch_first
        self.cells = nn.ModuleList(
            cell_type(input_size if layer == 0 else hidden_size * self.num_directions, hidden_size,
                      **cell_kwargs)
            for layer in range(num_layers) for _ in range(self.num_directions))
        self.torch_kernel: Optional[str] = torch_kernel_of(self.cells[0])

    @property
    def state_names(self) -> Tuple[str, ...]:
        return self.cells[0].state_names

    # ---------------------------------------------------------------------------------- forward
    def forward(self, x: Tensor, state: Optional[Packed] = None, *,
                lengths: Optional[Union[Tensor, Sequence[int]]] = None,
                mask: Optional[Tensor] = None) -> Tuple[Tensor, Packed]:
        """Unroll over the whole sequence: ``(output, final_state)`` (layouts in the module
        doc). The cells' ``project_input``/``update`` are called directly, not the cells
        themselves, so hooks registered on a cell do not fire here."""
        if not isinstance(x, Tensor) or x.dim() < 3:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError('SequenceRunner: expected input (T, B, ...) or (B, T, ...) with '
                             f'batch_first, got {got}')
        if self.batch_first:
            x = x.transpose(0, 1)                          # (T, B, *F)
            if mask is not None:
                mask = mask.transpose(0, 1)
        steps, batch = x.shape[:2]
        lengths = _resolve_lengths(lengths, mask, steps, batch, x.device)
        if self.torch_kernel is not None:
            output, final = self._forward_torch(x, state, lengths)
            return (output.transpose(0, 1) if self.batch_first else output), final
        finals: List[State] = []
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                cell = self.cells[index]
                cell_state = self._state_at(state, index, cell, layer_input)
                if direction == 0:
                    ys, final = _unroll(cell, layer_input, cell_state, lengths)
                else:
                    ys, final = _unroll(cell, _reverse_padded(layer_input, lengths), cell_state,
                                        lengths)
                    ys = _reverse_padded(ys, lengths)
                outputs.append(ys)
                finals.append(final)
            layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, 2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)
        output = layer_input.transpose(0, 1) if self.batch_first else layer_input
        return output, self._pack(finals)

    def _forward_torch(self, x: Tensor, state: Optional[Packed],
                       lengths: Optional[Tensor]) -> Tuple[Tensor, Packed]:
        """``forward`` through torch's kernel ``self.torch_kernel``: ``x (T, B, I)`` ->
        ``(output (T, B, D*H), final state)``, the same layouts as the library's loop."""
        cell = self.cells[0]
        cell.check_input(x, leading_dims=2)
        if state is None:
            state = self.init_state(x.shape[1], x.device, x.dtype)
        components = state if isinstance(state, tuple) else (state,)
        for index in range(len(self.cells)):      # the same checks as the loop's
            self._state_at(state, index, self.cells[index], x)
        hx = components if len(components) > 1 else components[0]
        has_biases = cell.bias_ih is not None
        weights = [weight for each in self.cells for weight in
                   ((each.weight_ih, each.weight_hh, each.bias_ih, each.bias_hh) if has_biases
                    else (each.weight_ih, each.weight_hh))]
        kernel = getattr(torch, self.torch_kernel)
        settings = (has_biases, self.num_layers, self.dropout, self.training, self.bidirectional)
        if lengths is None:
            output, *final = kernel(x, hx, weights, *settings, False)    # batch_first False
            return output, (tuple(final) if len(final) > 1 else final[0])
        packed = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
        order, restore = packed.sorted_indices, packed.unsorted_indices
        hx = (tuple(h.index_select(1, order) for h in hx) if isinstance(hx, tuple)
              else hx.index_select(1, order))
        data, *final = kernel(packed.data, packed.batch_sizes, hx, weights, *settings)
        output, _ = pad_packed_sequence(
            PackedSequence(data, packed.batch_sizes, order, restore), total_length=x.shape[0])
        final = tuple(h.index_select(1, restore) for h in final)
        return output, (final if len(final) > 1 else final[0])

    def step(self, x: Tensor, state: Optional[Packed] = None) -> Tuple[Tensor, Packed]:
        """One frame through every layer with carried state: ``x_t (B, *F)`` -> ``(y_t, state)``.
        Same state layout as ``forward``; without dropout (or in eval mode) running ``step`` over
        a sequence equals ``forward``. Like ``forward``, calls no cell hooks."""
        if self.bidirectional:
            raise RuntimeError('SequenceRunner.step: a bidirectional runner needs the whole '
                               'sequence '
                               '(its backward direction reads the future); use forward()')
        finals: List[State] = []
        y = x
        for layer, cell in enumerate(self.cells):
            cell.check_input(y)
            cell_state = self._state_at(state, layer, cell, y.unsqueeze(0))
            y, cell_state = cell.update(cell.project_input(y), cell_state)
            finals.append(cell_state)
            if self.dropout and self.training and layer < self.num_layers - 1:
                y = F.dropout(y, self.dropout, training=True)
        return y, self._pack(finals)

    # ------------------------------------------------------------------------------------ state
    def init_state(self, batch: int, device=None, dtype=None,
                   spatial: Optional[Sequence[int]] = None) -> Packed:
        """Zero state in ``forward``'s layout (conv cells: ``spatial`` = input ``(H, W)``)."""
        states = []
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                cell = self.cells[layer * self.num_directions + direction]
                states.append(cell.init_state(batch, device, dtype, spatial))
            if cell.is_conv:
                spatial = states[-1][0].shape[-2:]
        return self._pack(states)

    def _state_at(self, state: Optional[Packed], index: int, cell: RecurrentCell,
                  seq: Tensor) -> State:
        """Layer x direction ``index``'s state tuple from a packed state (zeros when ``None``)."""
        if state is None:
            return cell.init_state(seq.shape[1], seq.device, seq.dtype,
                                   seq.shape[-2:] if cell.is_conv else None)
        components = state if isinstance(state, tuple) else (state,)
        if len(components) != len(cell.state_names):
            raise TypeError(f'SequenceRunner: state must hold {cell.state_names}, '
                            f'got {len(components)} component(s)')
        expected = len(self.cells)
        for name, component in zip(cell.state_names, components):
            if len(component) != expected:
                raise ValueError(f'SequenceRunner: state {name} must have {expected} entries '
                                 f'(layers x directions) on dim 0, got {len(component)}')
        cell_state = tuple(component[index] for component in components)
        cell.check_state(cell_state, seq[0])
        return cell_state

    def _pack(self, states: List[State]) -> Packed:
        packed = []
        for component in zip(*states):
            same_shape = all(t.shape == component[0].shape for t in component)
            packed.append(torch.stack(component) if same_shape else list(component))
        return packed[0] if len(packed) == 1 else tuple(packed)


def torch_kernel_of(cell: RecurrentCell) -> Optional[str]:
    """The torch RNN kernel that computes exactly ``cell``'s equations on its parameters
    (``'lstm'``, ``'gru'``, ``'rnn_tanh'``, ``'rnn_relu'``), or ``None``: convolutional cells,
    peephole LSTMs, and the cells torch has no kernel for (UGRNN, Intersection RNN)."""
    if cell.is_conv or cell.extra_input_rows:
        return None
    if type(cell) is LSTMCell and not cell.peephole:
        return 'lstm'
    if type(cell) is GRUCell:
        return 'gru'
    if isinstance(cell, ElmanCell) and type(cell).activate is ElmanCell.activate:
        return f'rnn_{cell.nonlinearity}'
    return None


def _unroll(cell: RecurrentCell, seq: Tensor, state: State,
            lengths: Optional[Tensor]) -> Tuple[Tensor, State]:
    """Run ``cell`` over ``seq (T, B, *F)``; the input projection of all T steps is one
    matmul/conv."""
    steps, batch = seq.shape[:2]
    cell.check_input(seq, leading_dims=2)
    gx = cell.project_input(seq.flatten(0, 1)).unflatten(0, (steps, batch))   # (T, B, G*H[, h, w])
    if lengths is None:
        return cell.unroll(gx, state)
    ys = []
    valid = torch.arange(steps, device=seq.device).unsqueeze(1) < lengths.unsqueeze(0)   # (T, B)
    for gx_t, valid_t in zip(gx.unbind(0), valid.unbind(0)):
        y, new_state = cell.update(gx_t, state)
        keep = valid_t.view(batch, *(1,) * (y.dim() - 1))
        state = tuple(torch.where(keep, new, old) for new, old in zip(new_state, state))
        ys.append(y * keep)
    return torch.stack(ys), state


def _resolve_lengths(lengths, mask: Optional[Tensor], steps: int, batch: int,
                     device) -> Optional[Tensor]:
    """Validate ``lengths``/``mask``; ``None`` when every sequence is full length (fast path)."""
    if lengths is not None and mask is not None:
        raise ValueError('SequenceRunner: give lengths or mask, not both')
    if mask is not None:
        if mask.shape != (steps, batch):
            raise ValueError(f'SequenceRunner: mask must have shape {(steps, batch)} '
                             '(time, batch; '
                             f'batch, time with batch_first), got {tuple(mask.shape)}')
        mask = mask.to(device=device, dtype=torch.bool)
        lengths = mask.sum(0)
        prefix = torch.arange(steps, device=device).unsqueeze(1) < lengths.unsqueeze(0)
        if not torch.equal(prefix, mask):
            raise ValueError('SequenceRunner: mask must mark a prefix of each sequence '
                             '(valid steps first, then padding)')
    if lengths is None:
        return None
    lengths = torch.as_tensor(lengths, device=device).long()
    if lengths.shape != (batch,):
        raise ValueError(f'SequenceRunner: lengths must have shape ({batch},), '
                         f'got {tuple(lengths.shape)}')
    if bool((lengths < 1).any()) or bool((lengths > steps).any()):
        raise ValueError(f'SequenceRunner: lengths must lie in [1, {steps}], '
                         f'got {lengths.tolist()}')
    return None if bool((lengths == steps).all()) else lengths


def _reverse_padded(seq: Tensor, lengths: Optional[Tensor]) -> Tensor:
    """Reverse each sequence within its own length (padding stays in place)."""
    if lengths is None:
        return seq.flip(0)
    steps = seq.shape[0]
    t = torch.arange(steps, device=seq.device).unsqueeze(1)                  # (T, 1)
    index = torch.where(t < lengths.unsqueeze(0), lengths.unsqueeze(0) - 1 - t, t)   # (T, B)
    index = index.view(*index.shape, *(1,) * (seq.dim() - 2)).expand_as(seq)
    return seq.gather(0, index)
