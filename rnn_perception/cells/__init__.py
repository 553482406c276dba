"""The RNN cell library: the one place recurrence lives in rnn_perception.

Every cell has the same interface:

- ``init_state(batch, device, dtype[, spatial])`` -> zero state tuple ``(h,)`` or ``(h, c)``;
- ``cell(x_t, state) -> (y_t, state)`` (``forward``; ``state=None`` means zeros) for stateful
  per-frame use, also under the name ``step`` (the same call: hooks fire either way);
- ``project_input`` / ``project_hidden`` / ``update`` / ``activate``: the fused projections,
  one step, and the equations on the gates' pre-activations.

Each cell class documents its equations, arguments, shapes and a runnable example (doctest).

``FrozenConvStep`` prepares a convolutional cell with fixed weights for per-frame inference
(``FrozenConv``: one convolution with folded weights and a constant map).

``SequenceRunner`` stacks cells into layers (bidirectional, dropout, variable lengths) and
unrolls them for BPTT, through torch's own RNN kernels where its cells are ones torch implements;
``load_torch_weights`` turns a ``torch.nn.RNN/LSTM/GRU`` into a runner.
"""
from .base import RecurrentCell, State
from .conv import ConvGRUCell, ConvLSTMCell, ConvRNNCell
from .dense import (CELL_TYPES, ElmanCell, GRUCell, IntersectionCell, IRNNCell, LSTMCell,
                    UGRNNCell, identity_init_, make_cell_type)
from .frozen import FrozenConv, FrozenConvStep
from .gate_order import lstm_rows_from_ifog
from .runner import SequenceRunner
from .torch_compat import load_torch_weights

__all__ = [
    'CELL_TYPES', 'ConvGRUCell', 'ConvLSTMCell', 'ConvRNNCell', 'ElmanCell', 'FrozenConv',
    'FrozenConvStep', 'GRUCell', 'IRNNCell', 'IntersectionCell', 'LSTMCell', 'RecurrentCell',
    'SequenceRunner', 'State', 'UGRNNCell', 'identity_init_', 'load_torch_weights',
    'lstm_rows_from_ifog', 'make_cell_type',
]
