"""The ``onnxruntime`` backend against ``torch``: the same answers over whole simulated episodes
and bags (resets included), the step graph found beside the weights or exported into the cache,
the execution providers, and the CPU fallback when a provider fails during a step."""
from __future__ import annotations

import shutil

import numpy as np
import onnxruntime
import pytest
import torch

from rnn_perception.evaluation import collision as collision_eval, tactile as tactile_eval
from rnn_perception.files import file_sha256
from rnn_perception.models import collision, onnx_export, tactile
from rnn_perception.models.engines import EngineOptions, start_engine
from rnn_perception.models.loading import load_model, LoadedModel
from rnn_perception.models.onnx_engine import execution_providers, PROVIDER_NAMES
from rnn_perception.models.onnx_export import graph_source, step_graph
from rnn_perception.models.step_engine import EngineStartError, ONNXRUNTIME_BACKEND
from rnn_perception.runtime.collision import CollisionRuntime, Outcome
from rnn_perception.runtime.collision_parameters import CollisionSettings
from sim.dodgeball.config import load_dodgeball_config
from sim.dodgeball.generate import generate as generate_dodgeball
from sim.tactile.config import load_tactile_config
from sim.tactile.generate import generate as generate_tactile

PARITY = 1e-5                 # what the issue asks: probabilities and poses within 1e-5
CPU, CUDA, TENSORRT = (PROVIDER_NAMES[name] for name in ('cpu', 'cuda', 'tensorrt'))
KINDS = {'collision': (collision.default_weights_path, collision.load_collision_model),
         'tactile': (tactile.default_weights_path, tactile.load_tactile_model)}


def shipped(kind: str) -> LoadedModel:
    default_path, load = KINDS[kind]
    return load_model('', 'cpu', default_path(), load)


# ---------------------------------------------------------------------------- the shipped graphs
@pytest.mark.parametrize('kind,name', [('collision', 'collision'),
                                       ('collision', 'collision_randomised'),
                                       ('tactile', 'tactile')])
def test_the_shipped_graphs_are_exported_from_the_shipped_weights(kind, name):
    """The onnxruntime backend loads these as they are: retrained weights need a new export
    (``train_default_*.sh`` and ``train_randomised_collision.sh`` do it)."""
    weights = KINDS[kind][0]().with_name(f'{name}.safetensors')
    assert graph_source(weights.with_suffix('.onnx')) == file_sha256(weights), (
        f'run: python -m rnn_perception export {kind} --weights {weights} '
        f'--out {weights.with_suffix(".onnx")}')


# ------------------------------------------------------------------------- parity over bags
@pytest.fixture(scope='module')
def dodgeball_bag(tmp_path_factory):
    root = tmp_path_factory.mktemp('dodgeball')
    config = load_dodgeball_config(overrides={
        'episodes': 4, 'seed': 11,
        'output': {'out': str(root / 'data'), 'bag': str(root / 'bag'), 'storage': 'mcap'}})
    generate_dodgeball(config, progress=False)
    return root / 'bag'


@pytest.fixture(scope='module')
def tactile_bag(tmp_path_factory):
    root = tmp_path_factory.mktemp('tactile')
    config = load_tactile_config(overrides={
        'episodes': 3, 'seed': 7, 'episode': {'duration_s': 1.0},
        'output': {'out': str(root / 'data'), 'bag': str(root / 'bag'), 'storage': 'mcap'}})
    generate_tactile(config, progress=False)
    return root / 'bag'


def test_collision_bag_answers_alike_on_both_backends(dodgeball_bag):
    weights = collision.default_weights_path()
    torch_traces, torch_metrics = collision_eval.evaluate_bag(weights, dodgeball_bag)
    onnx_traces, onnx_metrics = collision_eval.evaluate_bag(weights, dodgeball_bag,
                                                            backend=ONNXRUNTIME_BACKEND)
    assert len(onnx_traces) == 4 and sum(len(t.probabilities) for t in onnx_traces) > 60
    for ours, theirs in zip(onnx_traces, torch_traces):
        np.testing.assert_allclose(ours.probabilities, theirs.probabilities, rtol=0, atol=PARITY)
    assert onnx_metrics['accuracy'] == torch_metrics['accuracy']


def test_tactile_bag_answers_alike_on_both_backends(tactile_bag):
    weights = tactile.default_weights_path()
    torch_predictions, _ = tactile_eval.evaluate_bag(weights, tactile_bag)
    onnx_predictions, _ = tactile_eval.evaluate_bag(weights, tactile_bag,
                                                    backend=ONNXRUNTIME_BACKEND)
    assert len(onnx_predictions) == 3
    for ours, theirs in zip(onnx_predictions, torch_predictions):
        np.testing.assert_allclose(ours.predicted, theirs.predicted, rtol=0, atol=PARITY)


def test_the_runtime_answers_alike_through_resets_on_both_backends():
    """Stamp gaps, stamps going back and ``reset`` put both engines back to the initial state at
    the same frames."""
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (14, 64, 64, 3), dtype=np.uint8)
    stamps = [1.0 + i / 30 for i in range(6)] + [3.0 + i / 30 for i in range(4)] + \
        [2.0 + i / 30 for i in range(4)]
    answers = {}
    for backend in ('torch', ONNXRUNTIME_BACKEND):
        runtime = CollisionRuntime(shipped('collision'), CollisionSettings(
            backend=backend, max_frame_age_s=0.0, subsample_to_model_rate=False))
        results = []
        for index, (frame, stamp) in enumerate(zip(frames, stamps)):
            if index == 3:
                runtime.reset('test')
            results.append(runtime.process(_image(frame, stamp), 0.0))
        assert [r.outcome for r in results] == [Outcome.PROCESSED] * len(frames)
        assert runtime.counters.resets == 3 and runtime.state is not None   # reset, gap, back
        answers[backend] = [r.probability for r in results]
    np.testing.assert_allclose(answers[ONNXRUNTIME_BACKEND], answers['torch'], rtol=0,
                               atol=PARITY)


def _image(rgb: np.ndarray, stamp_s: float):
    from types import SimpleNamespace

    sec, nanosec = divmod(round(stamp_s * 1e9), 1_000_000_000)
    return SimpleNamespace(
        header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec)),
        height=rgb.shape[0], width=rgb.shape[1], encoding='rgb8', is_bigendian=0,
        step=rgb.shape[1] * 3, data=rgb.tobytes())


# -------------------------------------------------------------------------- finding the graph
@pytest.fixture
def fresh_weights(tmp_path):
    """Collision weights of their own (no .onnx beside them yet)."""
    torch.manual_seed(1)
    path = tmp_path / 'weights' / 'collision.safetensors'
    path.parent.mkdir()
    collision.save_collision_model(path, collision.CollisionPredictor(),
                                   {'fps': 30.0, 'threshold': 0.5})
    return path


def load(path) -> LoadedModel:
    return load_model(str(path), 'cpu', path, collision.load_collision_model)


def test_a_missing_graph_is_exported_into_the_cache_once(fresh_weights, tmp_path, monkeypatch):
    loaded, cache = load(fresh_weights), tmp_path / 'cache'
    path, origin = step_graph('collision', loaded.model, loaded.metadata, fresh_weights, cache)
    assert path.parent == cache and origin == ('exported at start: the .onnx beside the weights '
                                               'is missing')
    assert graph_source(path) == file_sha256(fresh_weights)

    def no_export(*args):
        raise AssertionError('exported again')

    monkeypatch.setattr(onnx_export, 'export_step', no_export)
    assert step_graph('collision', loaded.model, loaded.metadata, fresh_weights,
                      cache) == (path, 'cached')


def test_the_graph_beside_the_weights_is_used_only_when_it_is_theirs(fresh_weights, tmp_path):
    loaded, cache, beside = load(fresh_weights), tmp_path / 'cache', fresh_weights.with_suffix(
        '.onnx')
    onnx_export.export_step('collision', loaded.model, loaded.metadata, fresh_weights, beside)
    assert step_graph('collision', loaded.model, loaded.metadata, fresh_weights,
                      cache) == (beside, 'beside the weights')
    assert not cache.exists()
    # retrained weights: the graph beside them is stale
    torch.manual_seed(2)
    collision.save_collision_model(fresh_weights, collision.CollisionPredictor(),
                                   {'fps': 30.0, 'threshold': 0.5})
    retrained = load(fresh_weights)
    path, origin = step_graph('collision', retrained.model, retrained.metadata, fresh_weights,
                              cache)
    assert path.parent == cache and origin.endswith('is stale or unreadable')
    assert graph_source(path) == file_sha256(fresh_weights) != graph_source(beside)
    # a truncated graph beside them is no graph
    beside.write_bytes(beside.read_bytes()[:1000])
    assert step_graph('collision', retrained.model, retrained.metadata, fresh_weights,
                      cache) == (path, 'cached')


def test_an_engine_started_on_other_weights_answers_for_those(fresh_weights, tmp_path):
    """The cache is keyed by the weights' hash: two weights files never share a graph."""
    options = EngineOptions(backend=ONNXRUNTIME_BACKEND, device='cpu',
                            onnx_cache_dir=str(tmp_path / 'cache'))
    frame = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    ours = start_engine('collision', load(fresh_weights), options)
    shipped_engine = start_engine('collision', shipped('collision'), options)
    assert ours.path != shipped_engine.path
    assert shipped_engine.path == collision.default_weights_path().with_suffix('.onnx')
    torch_engine = start_engine('collision', load(fresh_weights), EngineOptions())
    torch_answer = float(torch_engine.step(frame))
    assert abs(float(ours.step(frame)) - torch_answer) < PARITY
    assert abs(float(shipped_engine.step(frame)) - torch_answer) > 1e-3


def test_an_unwritable_cache_is_a_start_error(fresh_weights, tmp_path):
    blocked = tmp_path / 'file'
    blocked.write_text('not a directory')
    options = EngineOptions(backend=ONNXRUNTIME_BACKEND, device='cpu', onnx_cache_dir=str(blocked))
    with pytest.raises(EngineStartError, match='cannot export the collision step into'):
        start_engine('collision', load(fresh_weights), options)


# ------------------------------------------------------------------------- execution providers
@pytest.mark.parametrize('device, requested, available, chosen, left_out', [
    ('cpu', 'auto', [CUDA, CPU], [CPU], None),
    ('auto', 'auto', [CPU], [CPU], None),
    ('auto', 'auto', [CUDA, CPU], [CUDA, CPU], None),
    ('cuda', 'auto', [TENSORRT, CUDA, CPU], [CUDA, CPU], None),
    ('cpu', 'tensorrt,cuda', [TENSORRT, CUDA, CPU], [TENSORRT, CUDA, CPU], None),
    ('auto', 'tensorrt, cuda,cpu', [CUDA, CPU], [CUDA, CPU],
     f'{TENSORRT} not in this onnxruntime'),
    ('auto', 'cpu,cuda', [CPU], [CPU], f'{CUDA} not in this onnxruntime'),
])
def test_execution_providers(device, requested, available, chosen, left_out):
    providers, reason = execution_providers(device, requested, available)
    assert providers == chosen
    assert (reason is None) if left_out is None else reason.startswith(left_out)


def test_cuda_without_a_cuda_provider_is_refused_with_the_remedy():
    with pytest.raises(EngineStartError, match=r'no CUDA execution provider \(pip install '
                                               r'onnxruntime-gpu'):
        execution_providers('cuda', 'auto', [CPU])


def test_a_provider_this_onnxruntime_lacks_is_reported_and_the_cpu_answers():
    if CUDA in onnxruntime.get_available_providers():
        pytest.skip('this onnxruntime has the CUDA provider')
    options = EngineOptions(backend=ONNXRUNTIME_BACKEND, onnx_providers='cuda,cpu')
    engine = start_engine('collision', shipped('collision'), options)
    assert engine.device == 'cpu' and engine.provider == CPU
    assert engine.warning().startswith(f'degraded: {CUDA} not in this onnxruntime')
    assert 'CPUExecutionProvider' in engine.describe()


# ----------------------------------------------------------------------- a provider that fails
class FailingRuns:
    """Wraps a session's ``run_with_iobinding``: the calls numbered in ``failures`` raise
    ``error``."""

    def __init__(self, session, failures, error):
        self._run, self.failures, self.error, self.calls = (
            session.run_with_iobinding, set(failures), error, 0)
        session.run_with_iobinding = self

    def __call__(self, binding):
        self.calls += 1
        if self.calls in self.failures:
            raise self.error
        return self._run(binding)


def ort_error(name: str, text: str) -> Exception:
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return getattr(state, name)(text)


def gpu_engine_on_the_cpu():
    """An onnxruntime engine that believes its provider is a GPU one; the session is the CPU's,
    so a failure injected into it is what moves it."""
    engine = start_engine('collision', shipped('collision'),
                          EngineOptions(backend=ONNXRUNTIME_BACKEND, device='cpu'))
    engine._on_gpu = True
    return engine


def test_a_provider_failing_during_a_step_moves_the_engine_to_the_cpu():
    engine = gpu_engine_on_the_cpu()
    reference = start_engine('collision', shipped('collision'), EngineOptions())
    frames = np.random.default_rng(3).integers(0, 256, (5, 1, 64, 64, 3), dtype=np.uint8)
    FailingRuns(engine._session, {3},
                ort_error('EPFail', 'CUDA failure 700: an illegal memory access was encountered'))
    resets, answers = [], []
    for frame in frames:
        output, failure = engine.run((frame,), resets.append)
        answers.append(float(output))
    assert engine.device == 'cpu' and len(resets) == 1
    assert resets[0].startswith('cuda:0 failed, model moved to the CPU for good: CUDA failure')
    assert engine.warning() == f'degraded: {resets[0]}'
    # the failed frame is answered from the initial state on the CPU, the next ones carry on
    expected = [float(reference.step(frame)) for frame in frames[:2]]
    reference.reset()
    expected += [float(reference.step(frame)) for frame in frames[2:]]
    np.testing.assert_allclose(answers, expected, rtol=0, atol=PARITY)


def test_a_bad_input_is_not_a_provider_failure():
    engine = gpu_engine_on_the_cpu()
    error = ort_error('InvalidArgument', 'Got invalid dimensions for input: frame')
    FailingRuns(engine._session, {1}, error)
    with pytest.raises(type(error)):
        engine.run((np.zeros((1, 64, 64, 3), np.uint8),), lambda reason: None)
    assert engine.failure is None and engine.device == 'cuda:0'


def test_weights_copied_with_their_graph_need_no_export(tmp_path):
    """Weights deployed with their .onnx beside them start without exporting anything (a robot
    computer may have onnxruntime alone)."""
    weights = tmp_path / 'collision.safetensors'
    shutil.copy(collision.default_weights_path(), weights)
    graph = collision.default_weights_path().with_suffix('.onnx')
    shutil.copy(graph, weights.with_suffix('.onnx'))
    engine = start_engine('collision', load(weights),
                          EngineOptions(backend=ONNXRUNTIME_BACKEND, device='cpu',
                                        onnx_cache_dir=str(tmp_path / 'cache')))
    assert engine.origin == 'beside the weights' and not (tmp_path / 'cache').exists()
