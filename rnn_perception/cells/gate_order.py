"""The LSTM gate rows' order across versions: weights saved before ``LSTMCell`` took torch's
order ``(i, f, g, o)`` stored ``(i, f, o, g)``; :func:`lstm_rows_from_ifog` converts them, so
older weights files keep loading with the same outputs."""
from __future__ import annotations

from typing import Dict

import torch
from torch import Tensor, nn

from .dense import LSTMCell

# rows of an (i, f, o, g) tensor, in the order (i, f, g, o)
IFOG_TO_IFGO = (0, 1, 3, 2)
GATE_TENSORS = ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh')


def lstm_rows_from_ifog(tensors: Dict[str, Tensor], model: nn.Module) -> Dict[str, Tensor]:
    """``tensors`` (a ``state_dict`` of ``model``, as saved with the older order) with the gate
    blocks of every ``LSTMCell`` in ``model`` (dense or convolutional) put in torch's order; the
    other tensors as they are."""
    converted = dict(tensors)
    for name, module in model.named_modules():
        if not isinstance(module, LSTMCell):
            continue
        for tensor_name in GATE_TENSORS:
            key = f'{name}.{tensor_name}' if name else tensor_name
            if key in converted:
                blocks = converted[key].chunk(4, 0)
                converted[key] = torch.cat([blocks[index] for index in IFOG_TO_IFGO])
    return converted
