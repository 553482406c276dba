"""``train`` and ``eval`` with ``--data DIR DIR``: the parts of a ``--shard K/N`` run are the
whole run to them (same weights, same metrics), and a bad union is one line, exit status 1."""
import json
from pathlib import Path

import pytest

from rnn_perception.commands import main
from rnn_perception.data.tactile_dataset import load_tactile_dataset
from rnn_perception.device import cpu_threads
from rnn_perception.files import load_checkpoint
from rnn_perception.models.tactile import default_weights_path
from rnn_perception.training import tactile as tactile_training
from sim.sharding import RunShard
from sim.tactile.config import load_tactile_config
from sim.tactile.generate import generate

EPISODES = 8
TINY = ['--epochs', '1', '--hidden-size', '4', '--head-size', '4', '--batch-size', '4',
        '--quiet', '--device', 'cpu']


def simulate(out: Path, shard=None) -> str:
    config = load_tactile_config(overrides={
        'episodes': EPISODES, 'seed': 5, 'episode': {'duration_s': 0.5},
        'output': {'out': str(out)}})
    generate(config, progress=False, shard=shard)
    return str(out)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('parts')
    return {'whole': [simulate(root / 'whole')],
            'parts': [simulate(root / f'part{k}', RunShard(k, 2)) for k in (1, 2)]}


@pytest.fixture
def no_plots(monkeypatch):
    """Skip the plots (most of a tiny run's time; tested with the trainer): the weights are
    what must match. One thread: on a busy 2-core machine two fight over tiny models."""
    for name in ('plot_curves', 'plot_trajectories'):
        monkeypatch.setattr(tactile_training, name, lambda *args, **kwargs: None)
    with cpu_threads(1):
        yield


def train(data, out: Path) -> dict:
    assert main(['train', 'tactile', '--data', *data, '--out', str(out), *TINY]) == 0
    return load_checkpoint(out).tensors


def test_training_on_the_parts_is_training_on_the_whole_run(runs, tmp_path, no_plots):
    whole = train(runs['whole'], tmp_path / 'whole.safetensors')
    parts = train(runs['parts'], tmp_path / 'parts.safetensors')
    assert sorted(parts) == sorted(whole)
    for name, tensor in whole.items():
        assert parts[name].equal(tensor), name
    summary = json.loads((tmp_path / 'parts_metrics.json').read_text())
    assert summary['data'] == ' + '.join(runs['parts'])
    assert summary['dataset_manifest_sha256'] == load_tactile_dataset(
        runs['parts']).manifest_sha256


def test_eval_on_the_parts_is_eval_on_the_whole_run(runs, capsys, no_plots):
    def metrics(data):
        assert main(['eval', 'tactile', '--weights', str(default_weights_path()), '--data',
                     *data, '--json']) == 0
        return json.loads(capsys.readouterr().out)

    assert metrics(runs['parts']) == metrics(runs['whole'])


BAD_UNIONS = {
    'train tactile': (['train', 'tactile', '--out', 'unused.safetensors'], 'are in both'),
    'eval tactile': (['eval', 'tactile', '--weights', str(default_weights_path())],
                     'are in both'),
    'train collision': (['train', 'collision', '--out', 'unused.safetensors'],
                        'expected a dodgeball dataset'),
}


@pytest.mark.parametrize('command, message', BAD_UNIONS.values(), ids=BAD_UNIONS)
def test_a_bad_union_is_one_line_with_status_1(runs, capsys, command, message):
    data = ['--data', *runs['parts'], runs['whole'][0]]  # the parts overlap the whole run
    assert main([*command[:2], *data, *command[2:]]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and message in lines[0]
