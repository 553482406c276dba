"""``train ... --resume``: a run killed (SIGKILL, mid-epoch) and resumed ends exactly as the run
that was never stopped, for both trainers; a resume with other options is refused in one line;
the checkpoint's nested states survive the trip through safetensors."""
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

from rnn_perception.commands import main
from rnn_perception.device import cpu_threads
from rnn_perception.files import load_checkpoint
from rnn_perception.training import collision as collision_training
from rnn_perception.training import tactile as tactile_training
from rnn_perception.training import zoo
from rnn_perception.training.resume import flatten, unflatten
from sim.tactile.config import load_tactile_config
from sim.tactile.generate import generate
from test_collision_training import TINY_ARCHITECTURE, write_dataset

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 6
KILLED_AFTER = 2   # epochs done when the kill is sent: the run is then inside epoch 3
THREADS = 1        # every run on one thread, so that the three runs sum in the same order
RUN_TIMEOUT_S = 120


def tactile_data(root: Path) -> Path:
    config = load_tactile_config(overrides={
        'episodes': 8, 'seed': 6, 'episode': {'duration_s': 0.5}, 'output': {'out': str(root)}})
    generate(config, progress=False)
    return root


@dataclass(frozen=True)
class Trainer:
    make_data: Callable[[Path], Path]
    options: tuple


TRAINERS = {
    'collision': Trainer(write_dataset, (*TINY_ARCHITECTURE, '--batch-size', '4')),
    'tactile': Trainer(tactile_data, ('--hidden-size', '4', '--head-size', '4',
                                      '--batch-size', '2')),
}


def train_argv(kind: str, data: Path, out: Path, *extra: str) -> list:
    return ['train', kind, '--data', str(data), '--out', str(out), '--epochs', str(EPOCHS),
            '--device', 'cpu', *TRAINERS[kind].options, *extra]


def train_in_process(argv: list) -> None:
    with cpu_threads(THREADS):
        assert main(argv) == 0


@pytest.fixture
def no_plots(monkeypatch):
    """In-process runs skip the plots (two thirds of a tiny run; tested with the trainers) and
    run on one thread: the weights and the per-epoch rows are what a resume must reproduce."""
    def skip(*args, **kwargs):
        return None

    monkeypatch.setattr(collision_training, 'write_reports', skip)
    monkeypatch.setattr(tactile_training, 'plot_curves', skip)
    monkeypatch.setattr(tactile_training, 'plot_trajectories', skip)
    with cpu_threads(THREADS):
        yield


def kill_after_epoch(argv: list, epoch: int, stderr_path: Path) -> int:
    """Start the training in a process of its own, SIGKILL it once it reports ``epoch`` done
    (the epoch line comes after the checkpoint is written); its exit status."""
    env = {**os.environ, 'PYTHONUNBUFFERED': '1', 'OMP_NUM_THREADS': str(THREADS)}
    marker = f'epoch {epoch:>3}/{EPOCHS}'
    with open(stderr_path, 'w') as stderr, subprocess.Popen(
            [sys.executable, '-m', 'rnn_perception', *argv], cwd=REPO, env=env,
            stdout=subprocess.PIPE, stderr=stderr, text=True) as process:
        try:
            for line in process.stdout:  # waits for each line: no sleeping
                if line.startswith(marker):
                    process.send_signal(signal.SIGKILL)
                    break
            return process.wait(timeout=RUN_TIMEOUT_S)
        finally:
            if process.poll() is None:
                process.kill()


def weights_and_rows(out: Path):
    tensors = load_checkpoint(out).tensors
    rows = json.loads(out.with_name(f'{out.stem}_epochs.json').read_text())
    return tensors, [{k: v for k, v in row.items() if k != 'seconds'} for row in rows]


@pytest.mark.parametrize('kind', sorted(TRAINERS))
def test_a_killed_run_resumed_ends_as_the_uninterrupted_run(kind, tmp_path, capsys, no_plots):
    data = TRAINERS[kind].make_data(tmp_path / 'data')
    reference, run = tmp_path / 'reference' / 'm.safetensors', tmp_path / 'run' / 'm.safetensors'
    train_in_process(train_argv(kind, data, reference, '--quiet'))

    status = kill_after_epoch(train_argv(kind, data, run), KILLED_AFTER, tmp_path / 'err.txt')
    assert status == -signal.SIGKILL, (tmp_path / 'err.txt').read_text()
    done = load_checkpoint(run.with_name('m_resume.safetensors')).metadata['epochs_done']
    assert KILLED_AFTER <= done < EPOCHS  # killed mid-way, the checkpoint whole
    capsys.readouterr()

    train_in_process(train_argv(kind, data, run, '--resume'))
    assert f'resuming after epoch {done} ' in capsys.readouterr().out
    expected_weights, expected_rows = weights_and_rows(reference)
    weights, rows = weights_and_rows(run)
    assert rows == expected_rows
    assert sorted(weights) == sorted(expected_weights)
    for name, tensor in expected_weights.items():
        assert torch.equal(weights[name], tensor), name


def test_resume_with_other_options_is_one_line_and_resume_without_a_checkpoint_starts(
        tmp_path, capsys, no_plots):
    data = tactile_data(tmp_path / 'data')
    out = tmp_path / 'run' / 'm.safetensors'
    options = ['--hidden-size', '4', '--head-size', '4', '--epochs', '1']
    argv = ['train', 'tactile', '--data', str(data), '--out', str(out), *options]
    assert main([*argv, '--resume']) == 0
    assert 'no checkpoint' in capsys.readouterr().out
    assert main([*argv, '--resume', '--seed', '1', '--quiet']) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and 'written by a run with options.seed 0, this one has 1' in lines[0]


def test_nested_states_come_back_as_they_went_in():
    state = {'state': {0: {'step': torch.tensor(3.0), 'exp_avg': torch.ones(2)}},
             'param_groups': [{'betas': (0.9, 0.999), 'params': [0], 'name': None}],
             'python': (3, (1, 2, 2 ** 70), None), 'numpy': {'state': {'inc': 2 ** 127}}}
    tensors = {}
    encoded = json.loads(json.dumps(flatten(state, tensors)))
    decoded = unflatten(encoded, tensors)
    assert decoded['state'][0]['exp_avg'] is tensors['state.state.0.exp_avg']
    assert decoded['param_groups'] == state['param_groups']
    assert decoded['python'] == state['python'] and decoded['numpy'] == state['numpy']


class Preempted(Exception):
    """Stands in for a kill in the in-process zoo run."""


def test_zoo_stopped_mid_run_and_resumed_ends_as_the_uninterrupted_run(tmp_path, monkeypatch):
    """The zoo shares the trainers' checkpoint; stopped in-process while validating epoch
    ``KILLED_AFTER + 1`` (that epoch trained, not yet checkpointed), it resumes exactly."""
    monkeypatch.setattr(zoo, 'plot_curves', lambda *args, **kwargs: None)
    argv = ['--model-type', 'gru', '--hx', '6', '--epochs', str(EPOCHS), '--batch-size', '256',
            '--quiet']
    assert zoo.main([*argv, '--out', str(tmp_path / 'reference')]) == 0
    evaluate, calls = zoo.evaluate, []

    def evaluate_until_preempted(*args, **kwargs):
        calls.append(1)
        if len(calls) > KILLED_AFTER:
            raise Preempted
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(zoo, 'evaluate', evaluate_until_preempted)
    with pytest.raises(Preempted):
        zoo.main([*argv, '--out', str(tmp_path / 'run')])
    monkeypatch.setattr(zoo, 'evaluate', evaluate)
    assert zoo.main([*argv, '--out', str(tmp_path / 'run'), '--resume']) == 0
    expected = load_checkpoint(tmp_path / 'reference' / 'model.safetensors')
    got = load_checkpoint(tmp_path / 'run' / 'model.safetensors')
    assert got.metadata['epoch'] == expected.metadata['epoch']
    rows = [json.loads((tmp_path / run / 'metrics.json').read_text())
            for run in ('reference', 'run')]
    assert [[{**row, 'seconds': 0} for row in run] for run in rows] == [
        [{**row, 'seconds': 0} for row in rows[0]]] * 2
    for name, tensor in expected.tensors.items():
        assert torch.equal(got.tensors[name], tensor), name
