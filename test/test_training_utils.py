"""rnn_perception.training.utils: clipping, CPU threads, metrics files, plots."""
from __future__ import annotations

import csv
import json
import os

import pytest
import torch

from rnn_perception.device import cpu_threads
from rnn_perception.training.gradients import clip_gradients
from rnn_perception.training.metrics_log import MetricsWriter, plot_curves


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


@pytest.mark.parametrize('count, inside', [(1, 1), (3, 3), (None, 'unchanged'), (0, 'unchanged')])
def test_cpu_threads_sets_and_restores_the_thread_count(count, inside):
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):                     # restored even when the block fails
        with cpu_threads(count):
            assert torch.get_num_threads() == (before if inside == 'unchanged' else inside)
            raise RuntimeError
    assert torch.get_num_threads() == before


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


# ----------------------------------------------------------------------------------- plotting
def test_plot_curves_writes_a_png(tmp_path):
    rows = [{'epoch': e, 'train_loss': 1 / e, 'val_loss': 1.2 / e, 'train_accuracy': 1 - 1 / e,
             'val_accuracy': 1 - 1.2 / e} for e in range(1, 5)]
    plot_curves(rows, tmp_path / 'curves.png', title='demo')
    data = (tmp_path / 'curves.png').read_bytes()
    assert data.startswith(b'\x89PNG\r\n\x1a\n') and len(data) > 1000
    assert os.listdir(tmp_path) == ['curves.png']
