"""The node steps on a real GPU: the same answers as on the CPU, uploads from pinned memory, and
no host-device synchronisation in a step but the one read of its output.

Marked ``cuda``: they run wherever torch sees a GPU (``benchmarks/gpu_check.sh`` runs them on a
fresh GPU machine) and skip cleanly elsewhere; the onnxruntime ones need the CUDA execution
provider too (``onnxruntime-gpu``).
"""
from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch

from rnn_perception.models import collision, tactile
from rnn_perception.models.engines import EngineOptions, start_engine
from rnn_perception.models.loading import load_model

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA GPU here'),
]
needs_cuda_provider = pytest.mark.skipif(
    'CUDAExecutionProvider' not in onnxruntime.get_available_providers(),
    reason='this onnxruntime has no CUDA execution provider (onnxruntime-gpu)')

STEPS = 300
RESET_EVERY = 100           # a fresh state now and then, as the nodes' resets do
CUDA_PARITY = 1e-4          # what the issue asks: CUDA equals CPU within 1e-4 over 300 steps
KINDS = {'collision': (collision.default_weights_path, collision.load_collision_model),
         'tactile': (tactile.default_weights_path, tactile.load_tactile_model)}


def engine(kind: str, backend: str, device: str):
    default_path, load = KINDS[kind]
    options = EngineOptions(backend=backend, device=device)
    return start_engine(kind, load_model('', options.model_device, default_path(), load), options)


def inputs(kind: str):
    """``STEPS`` inputs on the model's own scale: camera frames, or tactile samples and poses."""
    rng = np.random.default_rng(0)
    if kind == 'collision':
        frames = rng.integers(0, 256, (STEPS, 1, 64, 64, 3), dtype=np.uint8)
        return [(frame,) for frame in frames]
    tactile_values = (2500 + 50 * rng.standard_normal((STEPS, 1, 21))).astype(np.float32)
    poses = np.cumsum(0.001 * rng.standard_normal((STEPS, 1, 4)), 0).astype(np.float32)
    return list(zip(tactile_values, poses))


def run(step_engine, steps) -> np.ndarray:
    outputs = []
    for index, step_inputs in enumerate(steps):
        if index % RESET_EVERY == 0:
            step_engine.reset()
        outputs.append(step_engine.step(*step_inputs))
    return np.stack(outputs)


@pytest.mark.parametrize('kind', KINDS)
def test_torch_on_cuda_answers_as_on_the_cpu(kind):
    steps = inputs(kind)
    gpu = engine(kind, 'torch', 'cuda')
    assert gpu.device.startswith('cuda')
    np.testing.assert_allclose(run(gpu, steps), run(engine(kind, 'torch', 'cpu'), steps),
                               rtol=0, atol=CUDA_PARITY)


@needs_cuda_provider
@pytest.mark.parametrize('kind', KINDS)
def test_onnxruntime_on_cuda_answers_as_torch_on_the_cpu(kind):
    steps = inputs(kind)
    gpu = engine(kind, 'onnxruntime', 'cuda')
    assert gpu.provider == 'CUDAExecutionProvider' and gpu.failure is None
    np.testing.assert_allclose(run(gpu, steps), run(engine(kind, 'torch', 'cpu'), steps),
                               rtol=0, atol=CUDA_PARITY)


@pytest.mark.parametrize('kind', KINDS)
def test_a_torch_step_synchronises_only_to_read_its_output(kind):
    """The upload (pinned, asynchronous) and the step queue work on the GPU without waiting for
    it; only the read of the output does (``torch.cuda.set_sync_debug_mode('error')`` raises on
    any synchronising call)."""
    gpu = engine(kind, 'torch', 'cuda')
    steps = inputs(kind)[:5]
    run(gpu, steps)                                  # warm: kernels chosen, staging made
    state = gpu.state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        with torch.inference_mode():
            output, state = gpu._step([gpu._upload(array) for array in steps[0]], state)
    finally:
        torch.cuda.set_sync_debug_mode('default')
    assert np.isfinite(output.cpu().numpy()).all()
    assert all(staging.is_pinned() for staging in gpu._upload._staging.values())
