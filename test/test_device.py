"""rnn_perception.device: the device a --device option or a device parameter names."""
from __future__ import annotations

import pytest
import torch

from rnn_perception.device import DeviceUnavailableError, select_device


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
