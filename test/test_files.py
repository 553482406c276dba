"""rnn_perception.files: atomic writes and safetensors checkpoints."""
from __future__ import annotations

import os

import pytest
import torch

from rnn_perception import files
from rnn_perception.files import atomic_path, load_checkpoint, save_checkpoint


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


# -------------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trips_tensors_and_metadata(tmp_path):
    path = tmp_path / 'model.safetensors'
    tensors = {
        'weight': torch.randn(3, 4).t(),  # non-contiguous view
        'steps': torch.arange(5, dtype=torch.int64),
        'half': torch.ones(2, dtype=torch.float16),
    }
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

    monkeypatch.setattr(files, 'save_file', crash_mid_write)
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
