"""rnn_perception.training.utils: clipping, device choice, metrics files, checkpoints, plots."""
from __future__ import annotations

import csv
import json
import os

import pytest
import torch

from rnn_perception.training import utils
from rnn_perception.training.utils import (DeviceUnavailableError, MetricsWriter, atomic_path, clip_gradients,
                                           cpu_threads, load_checkpoint, plot_curves, save_checkpoint,
                                           select_device)


def parameters_with_grads(*grads):
    parameters = []
    for grad in grads:
        parameter = torch.nn.Parameter(torch.zeros_like(grad))
        parameter.grad = grad.clone()
        parameters.append(parameter)
    return parameters


def total_norm(parameters) -> float:
    return float(torch.cat([p.grad.flatten() for p in parameters]).norm())


# ----------------------------------------------------------------------------------- clipping
def test_clip_norm_scales_the_total_norm_down_and_returns_it_before_clipping():
    parameters = parameters_with_grads(torch.full((3,), 4.0), torch.full((2, 2), -3.0))
    before = total_norm(parameters)
    returned = clip_gradients(parameters, max_norm=1.0)
    assert returned == pytest.approx(before)
    assert total_norm(parameters) == pytest.approx(1.0, rel=1e-4)
    # direction kept: every element scaled by the same factor
    assert torch.allclose(parameters[0].grad, torch.full((3,), 4.0 / before), rtol=1e-4)


def test_clip_norm_leaves_small_gradients_alone():
    parameters = parameters_with_grads(torch.tensor([0.1, -0.2]))
    clip_gradients(parameters, max_norm=10.0)
    assert torch.equal(parameters[0].grad, torch.tensor([0.1, -0.2]))


def test_clip_value_clamps_each_element():
    parameters = parameters_with_grads(torch.tensor([5.0, -7.0, 0.25, -0.1]))
    assert clip_gradients(parameters, max_value=0.5) is None
    assert torch.equal(parameters[0].grad, torch.tensor([0.5, -0.5, 0.25, -0.1]))


def test_clip_value_then_norm():
    parameters = parameters_with_grads(torch.tensor([10.0, 10.0, 10.0, 10.0]))
    norm = clip_gradients(parameters, max_norm=0.1, max_value=1.0)
    assert norm == pytest.approx(2.0)                    # the value-clipped gradient's norm
    assert total_norm(parameters) == pytest.approx(0.1, rel=1e-4)


def test_clip_skips_parameters_without_gradients_and_accepts_generators():
    with_grad = parameters_with_grads(torch.tensor([3.0, 4.0]))[0]
    without_grad = torch.nn.Parameter(torch.ones(2))
    clip_gradients((p for p in (with_grad, without_grad)), max_norm=1.0, max_value=10.0)
    assert float(with_grad.grad.norm()) == pytest.approx(1.0, rel=1e-4)
    assert without_grad.grad is None


# ------------------------------------------------------------------------------------- device
def test_select_device_cpu_and_auto_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert select_device('cpu') == torch.device('cpu')
    assert select_device('auto') == torch.device('cpu')


def test_select_device_auto_prefers_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert select_device('auto').type == 'cuda'


def test_select_device_cuda_absent_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(DeviceUnavailableError, match='cuda.*not available'):
        select_device('cuda')


def test_select_device_rejects_unknown_names():
    with pytest.raises(ValueError, match='unknown device'):
        select_device('tpu')


@pytest.mark.parametrize('count, inside', [(1, 1), (3, 3), (None, 'unchanged'), (0, 'unchanged')])
def test_cpu_threads_sets_and_restores_the_thread_count(count, inside):
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):                     # restored even when the block fails
        with cpu_threads(count):
            assert torch.get_num_threads() == (before if inside == 'unchanged' else inside)
            raise RuntimeError
    assert torch.get_num_threads() == before


# ----------------------------------------------------------------------------- atomic files
def test_atomic_path_keeps_the_old_file_and_no_temporary_on_error(tmp_path):
    target = tmp_path / 'file.txt'
    target.write_text('old')
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            with open(temporary, 'w') as stream:
                stream.write('half-writ')
            raise RuntimeError('crash mid-write')
    assert target.read_text() == 'old'
    assert os.listdir(tmp_path) == ['file.txt']


def test_metrics_writer_writes_every_row_to_csv_and_json(tmp_path):
    writer = MetricsWriter(tmp_path)
    rows = [{'epoch': 1, 'train_loss': 2.5, 'val_accuracy': 0.25},
            {'epoch': 2, 'train_loss': 1.5, 'val_accuracy': 0.5}]
    for row in rows:
        writer.append(row)
    assert json.loads((tmp_path / 'metrics.json').read_text()) == rows
    with open(tmp_path / 'metrics.csv', newline='') as stream:
        table = list(csv.DictReader(stream))
    assert [{key: float(value) for key, value in row.items()} for row in table] == rows
    assert sorted(os.listdir(tmp_path)) == ['metrics.csv', 'metrics.json']


def test_metrics_writer_rejects_rows_with_other_keys(tmp_path):
    writer = MetricsWriter(tmp_path)
    writer.append({'epoch': 1, 'loss': 1.0})
    with pytest.raises(ValueError, match='differ'):
        writer.append({'epoch': 2, 'accuracy': 1.0})


# -------------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trips_tensors_and_metadata(tmp_path):
    path = tmp_path / 'model.safetensors'
    tensors = {'weight': torch.randn(3, 4).t(),                   # non-contiguous view
               'steps': torch.arange(5, dtype=torch.int64), 'half': torch.ones(2, dtype=torch.float16)}
    metadata = {'model_type': 'lstm', 'hidden_size': 128, 'val_accuracy': 0.975,
                'permutation': [2, 0, 1], 'extra': None, 'nested': {'a': [1.5, True]}}
    save_checkpoint(path, tensors, metadata)
    loaded, loaded_metadata = load_checkpoint(path)
    assert loaded_metadata == metadata
    assert loaded.keys() == tensors.keys()
    for key, tensor in tensors.items():
        assert loaded[key].dtype == tensor.dtype
        assert torch.equal(loaded[key], tensor)
    assert os.listdir(tmp_path) == ['model.safetensors']


def test_checkpoint_round_trips_a_state_dict(tmp_path):
    model = torch.nn.LSTM(3, 5, num_layers=2)
    save_checkpoint(tmp_path / 'm.safetensors', model.state_dict(), {})
    clone = torch.nn.LSTM(3, 5, num_layers=2)
    clone.load_state_dict(load_checkpoint(tmp_path / 'm.safetensors').tensors)
    for ours, theirs in zip(model.parameters(), clone.parameters()):
        assert torch.equal(ours, theirs)


def test_failed_checkpoint_save_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / 'model.safetensors'
    save_checkpoint(path, {'w': torch.ones(2)}, {'epoch': 1})

    def crash_mid_write(tensors, filename, metadata=None):
        with open(filename, 'wb') as stream:
            stream.write(b'\x00' * 7)
        raise OSError('disk full')

    monkeypatch.setattr(utils, 'save_file', crash_mid_write)
    with pytest.raises(OSError, match='disk full'):
        save_checkpoint(path, {'w': torch.zeros(2)}, {'epoch': 2})
    tensors, metadata = load_checkpoint(path)
    assert metadata == {'epoch': 1} and torch.equal(tensors['w'], torch.ones(2))
    assert os.listdir(tmp_path) == ['model.safetensors']


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='not found'):
        load_checkpoint(tmp_path / 'missing.safetensors')
    corrupt = tmp_path / 'corrupt.safetensors'
    corrupt.write_bytes(b'not a safetensors file at all')
    with pytest.raises(ValueError, match='not a readable checkpoint'):
        load_checkpoint(corrupt)


# ----------------------------------------------------------------------------------- plotting
def test_plot_curves_writes_a_png(tmp_path):
    rows = [{'epoch': e, 'train_loss': 1 / e, 'val_loss': 1.2 / e, 'train_accuracy': 1 - 1 / e,
             'val_accuracy': 1 - 1.2 / e} for e in range(1, 5)]
    plot_curves(rows, tmp_path / 'curves.png', title='demo')
    data = (tmp_path / 'curves.png').read_bytes()
    assert data.startswith(b'\x89PNG\r\n\x1a\n') and len(data) > 1000
    assert os.listdir(tmp_path) == ['curves.png']
