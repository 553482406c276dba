"""Faults without ROS, for both runtimes: when the recurrent state resets (dropped frames and
messages, stamps jumping forward and backward) and the fall-back to the CPU when the GPU fails.

The reset rule is checked as a property: for any sequence of stamps, the state resets exactly
before the inputs whose stamp went backwards or jumped over ``reset_gap_s``, and every answer
equals what a fresh runtime gives for the inputs since the last reset (the state is carried,
not reset, everywhere else).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnn_perception.evaluation.tactile import stepped_predictions
from rnn_perception.models.collision import CollisionConfig, CollisionPredictor, frames_to_tensor
from rnn_perception.runtime.collision import CollisionRuntime, Outcome
from rnn_perception.runtime.collision_diagnostics import DiagnosticsSummary
from rnn_perception.runtime.collision_parameters import CollisionSettings
from rnn_perception.models.torch_engine import is_device_failure, TactileTorchEngine
from rnn_perception.runtime.diagnostics import DIAGNOSTIC_WARN
from rnn_perception.runtime.tactile import Outcome as TactileOutcome
from rnn_perception.runtime.tactile import TactileRuntime
from rnn_perception.runtime.tactile_diagnostics import TactileDiagnostics
from rnn_perception.runtime.tactile_parameters import TactileSettings
from rnn_perception.models.loading import LoadedModel
from test_collision_runtime import image
from test_tactile_runtime import CONFIG as TACTILE_CONFIG
from test_tactile_runtime import PERIOD_NS, pose_message, samples, tactile_message
from test_tactile_model import make_model as make_tactile_model

FPS = 30.0
SMALL = CollisionConfig(image_size=(32, 32), encoder_channels=[8, 8], recurrent_channels=[8],
                        recurrent_strides=[1], head_channels=8)
MAX_STEPS = 16
PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def small_collision_model(seed: int = 0) -> CollisionPredictor:
    torch.manual_seed(seed)
    return CollisionPredictor(SMALL).eval()


def collision_runtime(model, device=torch.device('cpu'), **settings) -> CollisionRuntime:
    return CollisionRuntime(LoadedModel(model, {'fps': FPS, 'threshold': 0.5}, None, device),
                            CollisionSettings(**settings))


def tactile_runtime(model, device=torch.device('cpu')) -> TactileRuntime:
    return TactileRuntime(LoadedModel(model, {'rate_hz': 100.0}, None, device), TactileSettings())


def offline_probabilities(model, frames) -> np.ndarray:
    """A fresh model over ``frames``: what the runtime must answer after a reset."""
    with torch.inference_mode():
        return torch.sigmoid(model(frames_to_tensor(np.asarray(frames)[None])))[0].numpy()


def segments(resets):
    """``[start, stop)`` of the runs of inputs between resets (``resets[i]``: reset before
    input i)."""
    starts = [0] + [i for i, reset in enumerate(resets) if reset and i > 0]
    return list(zip(starts, starts[1:] + [len(resets)]))


# -------------------------------------------------------------------------- stamp jumps: property
def stamp_steps(period: float, gap: float):
    """Steps between consecutive inputs' stamps, as (expected reason or None, seconds): the next
    period or a few dropped ones (kept within the gap, clear of its edge), the same stamp again,
    a jump over the gap, a jump backwards."""
    carried = st.integers(0, int(gap / period) - 2).map(lambda k: (None, k * period))
    over_gap = st.floats(1.05 * gap, 3600.0).map(lambda s: ('stamp gap', s))
    backwards = st.floats(1e-3, 3600.0).map(lambda s: ('stamps went backwards', -s))
    return st.lists(
        st.one_of(carried, carried, over_gap, backwards), min_size=1, max_size=MAX_STEPS - 1
    )


@pytest.fixture(scope='module')
def collision_model():
    return small_collision_model()


@pytest.fixture(scope='module')
def pool():
    return np.random.default_rng(5).integers(0, 256, (MAX_STEPS, 32, 32, 3), dtype=np.uint8)


def reset_kind(reason):
    """A reset reason without its numbers (an unknown reason stays whole, for the assert
    message)."""
    if reason is None:
        return None
    return next(
        (kind for kind in ('stamp gap', 'stamps went backwards') if reason.startswith(kind)),
        reason,
    )


@PROPERTY_SETTINGS
@given(steps=stamp_steps(1 / FPS, gap=0.5))
def test_collision_state_resets_exactly_on_stamp_jumps(collision_model, pool, steps):
    # subsampling off: every frame is stepped, so every answer can be checked
    runtime = collision_runtime(collision_model, reset_gap_s=0.5, subsample_to_model_rate=False)
    stamps = np.cumsum([1e5] + [seconds for _, seconds in steps])
    results = [runtime.process(image(pool[i], stamp), 0.0) for i, stamp in enumerate(stamps)]
    expected = [None] + [reason for reason, _ in steps]
    assert all(r.outcome is Outcome.PROCESSED for r in results)
    assert [reset_kind(r.reset_reason) for r in results] == expected
    assert runtime.counters.resets == sum(reason is not None for reason in expected)
    probabilities = np.array([r.probability for r in results])
    assert np.isfinite(probabilities).all()
    for start, stop in segments([reason is not None for reason in expected]):
        np.testing.assert_allclose(
            probabilities[start:stop],
            offline_probabilities(collision_model, pool[start:stop]),
            atol=1e-5,
        )


@pytest.fixture(scope='module')
def tactile_model():
    return make_tactile_model(TACTILE_CONFIG)


@PROPERTY_SETTINGS
@given(
    steps=stamp_steps(PERIOD_NS * 1e-9, gap=0.1),
    lost=st.lists(
        st.sampled_from(['both', 'tactile', 'pose']), min_size=MAX_STEPS, max_size=MAX_STEPS
    ),
)
def test_tactile_state_resets_exactly_on_stamp_jumps(tactile_model, steps, lost):
    """Samples lost between two (their tactile array, their pose or both) cost only themselves:
    the stray half is counted as unpaired and the state carries on within ``reset_gap_s``."""
    runtime = tactile_runtime(tactile_model)
    tactile, poses = samples(MAX_STEPS, seed=2)
    stamps_ns = np.cumsum([1000 * 10**9] + [round(seconds * 1e9) for _, seconds in steps])
    results, strays = [], 0
    for k, stamp in enumerate(stamps_ns):
        if k and stamp - stamps_ns[k - 1] >= 2 * PERIOD_NS and lost[k] != 'both':
            strays += 1        # a sample in between was lost but for one half of it
            if lost[k] == 'pose':
                runtime.on_tactile(tactile_message(tactile[k - 1]), 0.0)
            else:
                runtime.on_pose(pose_message(int(stamp) - PERIOD_NS, poses[k - 1]), 0.0)
        runtime.on_tactile(tactile_message(tactile[k]), 0.0)
        results.append(runtime.on_pose(pose_message(int(stamp), poses[k]), 0.0))
    expected = [None] + [reason for reason, _ in steps]
    assert all(r.outcome is TactileOutcome.PROCESSED for r in results)
    assert [reset_kind(r.reset_reason) for r in results] == expected
    assert runtime.counters.resets == sum(reason is not None for reason in expected)
    assert runtime.pairer.unpaired == strays and runtime.counters.rejected == 0
    predicted = np.stack([r.poses for r in results])
    assert np.isfinite(predicted).all()
    for start, stop in segments([reason is not None for reason in expected]):
        fresh = stepped_predictions(TactileTorchEngine(tactile_model, torch.device('cpu')),
                                    tactile[start:stop], poses[start:stop])
        np.testing.assert_allclose(predicted[start:stop], fresh, atol=1e-5)


def test_a_camera_that_drops_frames_restarts_and_rewinds(collision_model, pool):
    """The node's defaults (reset_gap_s 0.5 s, subsampling to 30 Hz on)."""
    runtime = collision_runtime(collision_model)
    stamps = (
        [10 + i / FPS for i in (0, 1, 2, 12, 13)]  # 9 frames lost (0.33 s): state carried
        + [13 + i / FPS for i in (0, 1)]  # the driver restarted, 2.6 s later
        + [1 + i / FPS for i in (0, 1, 2)]
    )  # a sim camera restarted from its start
    results = [runtime.process(image(pool[i], stamp), 0.0) for i, stamp in enumerate(stamps)]
    assert [r.outcome for r in results] == [Outcome.PROCESSED] * len(stamps)
    assert [reset_kind(r.reset_reason) for r in results] == \
        [None] * 5 + ['stamp gap', None, 'stamps went backwards', None, None]
    assert runtime.counters.resets == 2
    for start, stop in ((0, 5), (5, 7), (7, 10)):
        np.testing.assert_allclose(
            [r.probability for r in results[start:stop]],
            offline_probabilities(collision_model, pool[start:stop]),
            atol=1e-5,
        )


# ------------------------------------------------------------------------------- GPU fallback
@pytest.fixture
def fake_cuda(monkeypatch):
    """``torch.device('cuda')`` on a machine without one: tensors sent there stay on the CPU
    (and pinning host memory is a no-op), so a runtime built for CUDA runs, and a failure
    injected into its model is what stops it."""
    real_to = torch.Tensor.to

    def to(tensor, *args, **kwargs):
        if (
            args
            and isinstance(args[0], (str, torch.device))
            and torch.device(args[0]).type == 'cuda'
        ):
            args = ('cpu', *args[1:])
        return real_to(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, 'to', to)
    monkeypatch.setattr(torch.Tensor, 'pin_memory', lambda tensor: tensor)
    # the engine turns TF32 off for CUDA, process-wide: put the flags back after the test
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    yield torch.device('cuda')
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


class FailingSteps:
    """Wraps the model's per-frame method ``method`` (the collision runtime steps a frozen
    snapshot, which calls ``step_from``; the tactile one ``step``): the calls numbered in
    ``failures`` raise the given error instead. ``wipe``: the failure also garbles the weights,
    as device memory after a fatal CUDA error."""

    def __init__(self, model, method: str, failures, error: Exception, wipe: bool = False):
        self._step, self.failures, self.error, self.wipe = (
            getattr(model, method),
            set(failures),
            error,
            wipe,
        )
        self.calls = 0
        self._model = model
        setattr(model, method, self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls in self.failures:
            if self.wipe:
                with torch.no_grad():
                    for parameter in self._model.parameters():
                        parameter.fill_(math.nan)
            raise self.error
        return self._step(*args, **kwargs)


OUT_OF_MEMORY = torch.OutOfMemoryError(
    'CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 7.79 GiB total)'
)
ILLEGAL_ADDRESS = RuntimeError(
    'CUDA error: an illegal memory access was encountered\nCUDA kernel errors might '
    'be asynchronously reported at some other API call'
)


@pytest.mark.parametrize('error,wipe', [(OUT_OF_MEMORY, False), (ILLEGAL_ADDRESS, True)])
def test_collision_runtime_falls_back_to_the_cpu(fake_cuda, pool, monkeypatch, error, wipe):
    freezes = []
    real_frozen = CollisionPredictor.frozen
    monkeypatch.setattr(
        CollisionPredictor, 'frozen', lambda model: freezes.append(model) or real_frozen(model)
    )
    model = small_collision_model()
    reference = small_collision_model()
    runtime = collision_runtime(model, device=fake_cuda)
    diagnostics = DiagnosticsSummary(runtime)
    diagnostics.report(0.0)
    failing = FailingSteps(model, 'step_from', failures={3}, error=error, wipe=wipe)
    results = [runtime.process(image(pool[i], 1.0 + i / FPS), 0.0) for i in range(5)]
    assert [r.outcome for r in results] == [Outcome.PROCESSED] * 5 and failing.calls == 6
    # the snapshot the runtime steps is frozen again from the model moved to the CPU, once
    assert freezes == [model, model]
    failure = results[2].device_failure
    assert failure.startswith('cuda failed, model moved to the CPU for good: CUDA ')
    assert [r.device_failure for r in results] == [None, None, failure, None, None]
    assert results[2].reset_reason == failure and runtime.last_reset_reason == failure
    assert runtime.counters.resets == 1
    assert runtime.device == 'cpu' and all(
        p.device.type == 'cpu' for p in model.parameters()
    )
    # the failed frame is answered from a fresh state on the CPU, the next ones carry it on; the
    # weights come from the copy taken at start, not from the (garbled) device memory
    probabilities = [r.probability for r in results]
    np.testing.assert_allclose(
        probabilities[:2], offline_probabilities(reference, pool[:2]), atol=1e-5
    )
    np.testing.assert_allclose(
        probabilities[2:], offline_probabilities(reference, pool[2:5]), atol=1e-5
    )
    report = diagnostics.report(1.0)
    values = dict(report.values)
    assert report.level == DIAGNOSTIC_WARN and f'degraded: {failure}' in report.message
    assert values['device'] == 'cpu' and values['device_fallback'] == failure


@pytest.mark.parametrize('error,wipe', [(OUT_OF_MEMORY, False), (ILLEGAL_ADDRESS, True)])
def test_tactile_runtime_falls_back_to_the_cpu(fake_cuda, error, wipe):
    model = make_tactile_model(TACTILE_CONFIG)
    reference = make_tactile_model(TACTILE_CONFIG)
    runtime = tactile_runtime(model, device=fake_cuda)
    diagnostics = TactileDiagnostics(runtime)
    FailingSteps(model, 'step', failures={2}, error=error, wipe=wipe)
    tactile, poses = samples(4, seed=3)
    results = []
    for k in range(4):
        runtime.on_tactile(tactile_message(tactile[k]), 0.0)
        results.append(runtime.on_pose(pose_message(1_000_000_000 + k * PERIOD_NS, poses[k]), 0.0))
    assert [r.outcome for r in results] == [TactileOutcome.PROCESSED] * 4
    failure = results[1].device_failure
    assert failure.startswith('cuda failed, model moved to the CPU for good: CUDA ')
    assert [r.device_failure for r in results] == [None, failure, None, None]
    assert runtime.counters.resets == 1 and runtime.device == 'cpu'
    predicted = np.stack([r.poses for r in results])
    cpu = torch.device('cpu')
    np.testing.assert_allclose(
        predicted[:1], stepped_predictions(TactileTorchEngine(reference, cpu), tactile[:1],
                                           poses[:1]), atol=1e-5
    )
    np.testing.assert_allclose(
        predicted[1:], stepped_predictions(TactileTorchEngine(reference, cpu), tactile[1:],
                                           poses[1:]), atol=1e-5
    )
    report = diagnostics.report(1.0)
    assert report.level == DIAGNOSTIC_WARN and f'degraded: {failure}' in report.message
    assert dict(report.values)['device'] == 'cpu'


@pytest.mark.parametrize(
    'device,error',
    [
        (
            'cuda',
            RuntimeError('mat1 and mat2 shapes cannot be multiplied (1x3 and 4x5)'),
        ),  # a bug, not the GPU
        ('cpu', OUT_OF_MEMORY),  # no CPU to fall back to
    ],
)
def test_other_failures_propagate(fake_cuda, pool, device, error):
    model = small_collision_model()
    runtime = collision_runtime(model, device=torch.device(device))
    FailingSteps(model, 'step_from', failures={1}, error=error)
    with pytest.raises(RuntimeError) as raised:
        runtime.process(image(pool[0], 1.0), 0.0)
    assert (
        raised.value is error and runtime.engine.failure is None and runtime.counters.resets == 0
    )


@pytest.mark.parametrize('error,failure', [
    (OUT_OF_MEMORY, True),
    (ILLEGAL_ADDRESS, True),
    (RuntimeError('cuDNN error: CUDNN_STATUS_EXECUTION_FAILED'), True),
    (RuntimeError('CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate(handle)'), True),
    (RuntimeError('Expected all tensors to be on the same device'), False),
    (ValueError('CUDA'), False),
])
def test_is_device_failure(error, failure):
    assert is_device_failure(error) is failure
