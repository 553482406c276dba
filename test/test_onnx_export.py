"""``export collision|tactile``: one step as an ONNX graph that ONNX Runtime runs with the same
outputs as the torch step, resets included, with the weights' metadata, written atomically."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
import torch

from rnn_perception.commands import main
from rnn_perception.models.collision import (CollisionConfig, CollisionPredictor,
                                             frames_to_tensor, save_collision_model)
from rnn_perception.files import file_sha256
from rnn_perception.models.onnx_export import export_metadata, initial_state
from rnn_perception.models.tactile import save_tactile_model, TactilePredictor


def session(path):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp('onnx')
    torch.manual_seed(0)
    paths = {'collision': root / 'collision.safetensors', 'tactile': root / 'tactile.safetensors',
             'collision_difference': root / 'collision_difference.safetensors'}
    save_collision_model(paths['collision'], CollisionPredictor(), {'fps': 30.0, 'threshold': 0.4})
    save_collision_model(paths['collision_difference'],
                         CollisionPredictor(CollisionConfig(frame_difference=True)),
                         {'fps': 30.0, 'threshold': 0.4})
    save_tactile_model(paths['tactile'], TactilePredictor(), {'rate_hz': 100.0})
    for name, weights in paths.items():
        kind = name.split('_')[0]
        assert main(['export', kind, '--weights', str(weights), '--out',
                     str(root / f'{name}.onnx')]) == 0
    return root


@pytest.mark.parametrize('name,states', [('collision', 2), ('collision_difference', 3)])
def test_the_collision_step_runs_in_onnxruntime_as_in_torch_resets_included(exported, name,
                                                                            states):
    """``states``: the ConvLSTM's h and c, and with frame differences the previous frame."""
    from rnn_perception.models.collision import load_collision_model

    model, _ = load_collision_model(exported / f'{name}.safetensors')
    frozen, graph = model.frozen(), session(exported / f'{name}.onnx')
    names = [f'state_{index}' for index in range(states)]
    assert [i.name for i in graph.get_inputs()] == ['frame', *names]
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (40, 64, 64, 3), dtype=np.uint8)
    torch_state, onnx_state, worst = None, [t.numpy() for t in initial_state(model)], 0.0
    for index, frame in enumerate(frames):
        if index == 25:     # a reset: both start over from the initial state
            torch_state, onnx_state = None, [t.numpy() for t in initial_state(model)]
        with torch.inference_mode():
            logits, torch_state = frozen.step(frames_to_tensor(frame[None]), torch_state)
        probability, *onnx_state = graph.run(
            None, {'frame': frame[None], **dict(zip(names, onnx_state))})
        worst = max(worst, abs(float(torch.sigmoid(logits)[0]) - float(probability[0])))
    assert worst < 1e-5


def test_the_tactile_step_runs_in_onnxruntime_as_in_torch(exported):
    from rnn_perception.models.tactile import load_tactile_model

    model, _ = load_tactile_model(exported / 'tactile.safetensors')
    graph = session(exported / 'tactile.onnx')
    rng = np.random.default_rng(1)
    torch_state, onnx_state = None, [t.numpy() for t in initial_state(model)]
    pose = np.array([[0.0, 0.0, 0.0, 1.0]], np.float32)
    for _ in range(60):
        tactile = rng.normal(0, 1, (1, 21)).astype(np.float32)
        pose = (pose + rng.normal(0, 0.01, (1, 4))).astype(np.float32)
        with torch.inference_mode():
            poses, torch_state = model.step(torch.from_numpy(tactile), torch.from_numpy(pose),
                                            torch_state)
        onnx_poses, *onnx_state = graph.run(None, {
            'tactile': tactile, 'pose': pose,
            **{f'state_{i}': value for i, value in enumerate(onnx_state)}})
        np.testing.assert_allclose(onnx_poses, poses.numpy(), rtol=1e-5, atol=1e-5)


def test_the_graph_carries_the_weights_metadata(exported):
    metadata = export_metadata(exported / 'collision.onnx')
    assert metadata['kind'] == 'collision'
    assert metadata['source_sha256'] == file_sha256(exported / 'collision.safetensors')
    assert json.loads(metadata['threshold']) == pytest.approx(0.4)
    assert json.loads(metadata['config'])['image_size'] == [64, 64]
    assert sorted(path.name for path in exported.iterdir()) == [     # no temporary files left
        'collision.onnx', 'collision.safetensors', 'collision_difference.onnx',
        'collision_difference.safetensors', 'tactile.onnx', 'tactile.safetensors']


@pytest.mark.parametrize('argv, status, fragment', [
    (['--weights', '{tmp}/missing.safetensors', '--out', '{tmp}/x.onnx'], 1,
     'missing.safetensors'),
    (['--out', '{tmp}/no/such/dir/x.onnx'], 2, 'is not a directory'),
    ([], 2, 'the following arguments are required: --out'),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, status, fragment):
    argv = [arg.replace('{tmp}', str(tmp_path)) for arg in argv]
    assert main(['export', 'collision', *argv]) == status
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('export collision: error: ')
    assert fragment in lines[0]
    assert list(tmp_path.iterdir()) == []
