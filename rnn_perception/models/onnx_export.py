"""One recurrent step of a model as an ONNX graph, for ONNX Runtime and TensorRT.

The graph is what a node does per message, normalisation included, with the state as explicit
inputs and outputs (the caller carries it from one step to the next, zeros or
:func:`initial_state` at a reset):

* **collision**: ``frame`` ``(1, h, w, 3)`` uint8 RGB at the model's input size (what the node
  has after :func:`~rnn_perception.models.collision.resize_frames`), ``state_0 .. state_{2L-1}``
  (each ConvLSTM layer's ``h`` and ``c``) -> ``probability`` ``(1,)``, ``next_state_*``;
* **tactile**: ``tactile`` ``(1, 21)``, ``pose`` ``(1, 4)`` float32, ``state_0 .. state_2`` (the
  LSTM's ``h`` and ``c``, the previous pose, NaN before the first sample) -> ``poses``
  ``(1, 20, 4)``, ``next_state_*``.

Exported with ``torch.onnx.export(dynamo=True)`` at opset :data:`OPSET`, checked with
``onnx.checker``, with the weights' metadata in the model's ``metadata_props`` (``kind``,
``threshold``, the config, and ``source_sha256``, the weights file's hash, so a stale export is
detected), written under a temporary name and renamed when complete.

:func:`step_graph` finds the graph of a weights file for the ``onnxruntime`` backend: beside the
weights, in the cache, or exported into the cache when neither is current.
"""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn, Tensor

from ..files import atomic_path, file_sha256, PathLike

OPSET = 18
METADATA_PREFIX = 'rnn_perception.'


def flatten_state(state) -> List[Tensor]:
    """A model's nested state (tuples, lists, named tuples of tensors) as a flat list."""
    if isinstance(state, Tensor):
        return [state]
    return [tensor for part in state for tensor in flatten_state(part)]


def unflatten_state(flat: Sequence[Tensor], template):
    """``flat`` (from :func:`flatten_state`) back in the nesting of ``template``."""
    tensors = iter(flat)

    def rebuild(part):
        if isinstance(part, Tensor):
            return next(tensors)
        items = [rebuild(item) for item in part]
        return type(part)(*items) if hasattr(part, '_fields') else type(part)(items)

    return rebuild(template)


class CollisionStep(nn.Module):
    """The collision node's step as one module: uint8 frame + flat state -> probability + state."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.template = model.init_state(1)

    def forward(self, frame: Tensor, *state: Tensor) -> Tuple[Tensor, ...]:
        rgb = frame.permute(0, 3, 1, 2).to(torch.float32) / 255.0    # (1, 3, h, w) in [0, 1]
        logits, new_state = self.model.step(rgb, unflatten_state(state, self.template))
        return (torch.sigmoid(logits), *flatten_state(new_state))


class TactileStep(nn.Module):
    """The tactile node's step as one module: sample + flat state -> poses + state."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.template = model.init_state(1)

    def forward(self, tactile: Tensor, pose: Tensor, *state: Tensor) -> Tuple[Tensor, ...]:
        poses, new_state = self.model.step(tactile, pose, unflatten_state(state, self.template))
        return (poses, *flatten_state(new_state))


def initial_state(model: nn.Module) -> List[Tensor]:
    """The flat state a step graph starts from (batch 1, CPU, float32)."""
    return flatten_state(model.init_state(1, torch.device('cpu'), torch.float32))


def example_inputs(kind: str, model: nn.Module) -> Tuple[Tuple[Tensor, ...], List[str], nn.Module]:
    """Inputs to trace a step with, their names, and the step module of ``kind``."""
    state = initial_state(model)
    if kind == 'collision':
        height, width = model.config.image_size
        inputs = (torch.zeros(1, height, width, 3, dtype=torch.uint8), *state)
        return inputs, ['frame'], CollisionStep(model)
    from .tactile import NUM_POSE, NUM_TACTILE

    inputs = (torch.zeros(1, NUM_TACTILE), torch.zeros(1, NUM_POSE), *state)
    return inputs, ['tactile', 'pose'], TactileStep(model)


def export_step(kind: str, model: nn.Module, metadata: Dict[str, Any], weights_path: PathLike,
                out: PathLike) -> Path:
    """Write ``model``'s step as ONNX at ``out`` (see the module docstring); return ``out``."""
    import onnx

    model = model.eval().to('cpu')
    inputs, data_names, step = example_inputs(kind, model)
    state_count = len(inputs) - len(data_names)
    input_names = [*data_names, *(f'state_{i}' for i in range(state_count))]
    output_names = ['probability' if kind == 'collision' else 'poses',
                    *(f'next_state_{i}' for i in range(state_count))]
    # torch's exporter warns about its own internals and a torchvision it does not need
    registration_log = logging.getLogger('torch.onnx._internal.exporter._registration')
    level = registration_log.level
    registration_log.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)
            program = torch.onnx.export(step.eval(), inputs, input_names=input_names,
                                        output_names=output_names, opset_version=OPSET,
                                        dynamo=True, verbose=False)
    finally:
        registration_log.setLevel(level)
    proto = program.model_proto
    properties = {
        'kind': kind, 'source_sha256': file_sha256(weights_path),
        'config': json.dumps(model.config.to_dict()),
        **{key: json.dumps(value) for key, value in metadata.items()
           if key in ('threshold', 'fps', 'rate_hz')},
    }
    for key, value in properties.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, str(value)
    onnx.checker.check_model(proto, full_check=True)
    with atomic_path(out) as temporary:
        onnx.save_model(proto, temporary)
    return Path(out)


def export_metadata(path: PathLike) -> Dict[str, str]:
    """The ``rnn_perception.*`` metadata of an exported step, keys without the prefix."""
    import onnx

    proto = onnx.load_model(str(path), load_external_data=False)
    return {entry.key[len(METADATA_PREFIX):]: entry.value for entry in proto.metadata_props
            if entry.key.startswith(METADATA_PREFIX)}


def graph_source(path: PathLike) -> Optional[str]:
    """The ``source_sha256`` of the step graph at ``path``; ``None`` when there is no readable
    graph there (missing, truncated, not ONNX)."""
    from google.protobuf.message import DecodeError

    try:
        return export_metadata(path).get('source_sha256')
    except (OSError, DecodeError, ValueError):
        return None


def step_graph(kind: str, model: nn.Module, metadata: Dict[str, Any], weights_path: PathLike,
               cache_dir: PathLike) -> Tuple[Path, str]:
    """The step graph of the weights at ``weights_path``, and where it came from: the ``.onnx``
    beside the weights when it was exported from exactly these weights (its ``source_sha256``),
    else the one in ``cache_dir`` named by the weights' hash, exported there now when it is not
    there yet. A graph of other weights is never used: retrained weights get a new graph."""
    source = file_sha256(weights_path)
    beside = Path(weights_path).with_suffix('.onnx')
    if graph_source(beside) == source:
        return beside, 'beside the weights'
    cached = Path(cache_dir) / f'{kind}-{source[:16]}.onnx'
    if graph_source(cached) == source:
        return cached, 'cached'
    cached.parent.mkdir(parents=True, exist_ok=True)
    export_step(kind, model, metadata, weights_path, cached)
    why = 'is stale or unreadable' if beside.exists() else 'is missing'
    return cached, f'exported at start: the .onnx beside the weights {why}'
