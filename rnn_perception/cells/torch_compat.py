"""Take a trained ``torch.nn.RNN``/``LSTM``/``GRU`` and return the library's equivalent runner,
called the way the torch module is: ``runner(x, h_0) -> (output, h_n)``, ``h_0`` optional
(``(h_0, c_0)`` and ``(h_n, c_n)`` for an LSTM; as a keyword it is ``state=``), same layouts,
the same numbers within float rounding (tests). ``PackedSequence`` input is not accepted:
pass the padded batch with ``lengths=`` instead.
"""
from __future__ import annotations

import torch
from torch import nn

from .dense import ElmanCell, GRUCell, LSTMCell
from .runner import SequenceRunner


def load_torch_weights(module: nn.RNNBase) -> SequenceRunner:
    """Build a ``SequenceRunner`` equal to ``module`` (an ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU``).

    The runner gets the module's ``num_layers``, ``bidirectional``, ``dropout``, ``batch_first``,
    ``bias``, dtype and device, and a copy of its weights (later changes to either do not
    propagate). LSTM projections (``proj_size > 0``) have no counterpart here and are refused.
    """
    if isinstance(module, nn.LSTM):
        if module.proj_size:
            raise ValueError('load_torch_weights: nn.LSTM with proj_size > 0 has no equivalent '
                             'cell')
        cell_type, cell_kwargs = LSTMCell, {'forget_bias': 0.0}
    elif isinstance(module, nn.GRU):
        cell_type, cell_kwargs = GRUCell, {}
    elif isinstance(module, nn.RNN):
        nonlinearity = 'tanh' if module.mode == 'RNN_TANH' else 'relu'
        cell_type, cell_kwargs = ElmanCell, {'nonlinearity': nonlinearity}
    else:
        raise TypeError('load_torch_weights: expected nn.RNN, nn.LSTM or nn.GRU, '
                        f'got {type(module).__name__}')

    reference = next(module.parameters())
    runner = SequenceRunner(cell_type, module.input_size, module.hidden_size, module.num_layers,
                            bidirectional=module.bidirectional, dropout=module.dropout,
                            batch_first=module.batch_first, bias=module.bias, **cell_kwargs)
    runner.to(device=reference.device, dtype=reference.dtype)
    with torch.no_grad():
        for layer in range(module.num_layers):
            for direction in range(runner.num_directions):
                cell = runner.cells[layer * runner.num_directions + direction]
                suffix = f'_l{layer}' + ('_reverse' if direction else '')
                for name in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh'):
                    if getattr(cell, name) is None:
                        continue
                    getattr(cell, name).copy_(getattr(module, name + suffix))
    runner.train(module.training)
    return runner
