"""``--shard K/N``: the parts of a run, read together, are the unsharded run frame for frame
(dodgeball and tactile); the blocks cover every episode once; bad shards and bad unions of
directories are refused in one line."""
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from rnn_perception.data.dodgeball_dataset import load_dodgeball_dataset
from rnn_perception.data.shards import DatasetError
from rnn_perception.data.tactile_dataset import load_tactile_dataset
from sim.__main__ import main
from sim.dodgeball.config import load_dodgeball_config
from sim.dodgeball.generate import generate as generate_dodgeball
from sim.sharding import RunShard
from sim.tactile.config import load_tactile_config
from sim.tactile.generate import generate as generate_tactile

EPISODES = 5            # odd: the two blocks differ in size
EPISODES_PER_FILE = 2   # shard files cut inside each part, unlike the whole run's
SEED = 21


@dataclass(frozen=True)
class Simulator:
    """What the test needs of one simulator: its config, generator and reader."""

    load_config: Callable
    generate: Callable
    load_dataset: Callable
    small: dict  # overrides that keep the run quick


SIMULATORS = {
    'dodgeball': Simulator(load_dodgeball_config, generate_dodgeball, load_dodgeball_dataset,
                           {'camera': {'image_size': 16}}),
    'tactile': Simulator(load_tactile_config, generate_tactile, load_tactile_dataset,
                         {'episode': {'duration_s': 1.0}}),
}


def simulate(simulator: Simulator, out: Path, *, shard=None, episodes=EPISODES,
             seed=SEED) -> Path:
    config = simulator.load_config(overrides={
        'episodes': episodes, 'seed': seed, 'episodes_per_shard': EPISODES_PER_FILE,
        **simulator.small, 'output': {'out': str(out)}})
    simulator.generate(config, progress=False, shard=shard)
    return out


@pytest.fixture(scope='module', params=sorted(SIMULATORS))
def runs(request, tmp_path_factory):
    """One simulator's whole run, its two parts, and a run of another seed."""
    simulator = SIMULATORS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    return simulator, {
        'whole': simulate(simulator, root / 'whole'),
        'part1': simulate(simulator, root / 'part1', shard=RunShard(1, 2)),
        'part2': simulate(simulator, root / 'part2', shard=RunShard(2, 2)),
        'other_seed': simulate(simulator, root / 'other_seed', shard=RunShard(2, 2),
                               seed=SEED + 1),
    }


def test_two_parts_read_together_are_the_whole_run_frame_for_frame(runs):
    simulator, paths = runs
    whole = simulator.load_dataset(paths['whole'])
    merged = simulator.load_dataset([paths['part2'], paths['part1']])  # any order
    assert [e.index for e in merged.episodes()] == list(range(EPISODES))
    expected, got = whole.arrays(), merged.arrays()
    assert sorted(got) == sorted(expected)
    for name, array in expected.items():
        np.testing.assert_array_equal(got[name], array, err_msg=name)
    for mine, theirs in zip(merged.episodes(), whole.episodes()):
        for name, value in asdict(theirs).items():
            np.testing.assert_array_equal(asdict(mine)[name], value, err_msg=name)
    ignored = {'shards'}  # the files are cut differently; their episodes are the same
    assert ({k: v for k, v in merged.manifest.items() if k not in ignored}
            == {k: v for k, v in whole.manifest.items() if k not in ignored})


def test_a_part_says_which_block_of_the_run_it_holds(runs):
    simulator, paths = runs
    manifest = simulator.load_dataset(paths['part2']).manifest
    assert manifest['shard'] == {'index': 2, 'count': 2, 'episodes': [2, 5]}
    assert 'shard' not in simulator.load_dataset(paths['whole']).manifest


def test_one_directory_keeps_its_own_manifest_and_fingerprint(runs):
    simulator, paths = runs
    one, both = (simulator.load_dataset(paths['part1']),
                 simulator.load_dataset([paths['part1'], paths['part2']]))
    assert one.manifest_sha256 == simulator.load_dataset([paths['part1']]).manifest_sha256
    assert len({one.manifest_sha256, both.manifest_sha256,
                simulator.load_dataset(paths['whole']).manifest_sha256}) == 3
    assert both.manifest_sha256 == simulator.load_dataset(
        [paths['part2'], paths['part1']]).manifest_sha256


@pytest.mark.parametrize('parts, message', [
    (['part1', 'part1'], 'given twice'),
    (['part1', 'whole'], 'episodes 0..1 are in both'),
    (['part1', 'other_seed'], 'made with other simulator settings than'),
])
def test_directories_that_are_not_parts_of_one_run_are_refused(runs, parts, message):
    simulator, paths = runs
    with pytest.raises(DatasetError, match=message) as error:
        simulator.load_dataset([paths[name] for name in parts])
    assert '\n' not in str(error.value)


def test_another_seed_names_the_setting_that_differs(runs):
    simulator, paths = runs
    with pytest.raises(DatasetError, match=rf'\(parameters.seed {SEED + 1}, not {SEED}\)'):
        simulator.load_dataset([paths['part1'], paths['other_seed']])


def test_a_later_block_grows_a_dataset(runs, tmp_path):
    """Asking for more episodes changes no episode: the first run plus a later block of a
    larger run is the larger run."""
    simulator, paths = runs
    grown = simulate(simulator, tmp_path / 'grown', shard=RunShard(2, 2), episodes=2 * 2)
    merged = simulator.load_dataset([paths['part1'], grown])
    whole = list(simulator.load_dataset(paths['whole']).episodes())
    for mine, theirs in zip(merged.episodes(), whole, strict=False):
        for name, value in asdict(theirs).items():
            np.testing.assert_array_equal(asdict(mine)[name], value, err_msg=name)
    assert merged.num_episodes == 4


@pytest.mark.parametrize('total', [1, 2, 5, 7, 100, 101])
@pytest.mark.parametrize('count', [1, 2, 3, 8])
def test_blocks_cover_every_episode_once_and_balance(total, count):
    if count > total:
        return
    blocks = [RunShard(k, count).episodes(total) for k in range(1, count + 1)]
    assert [i for block in blocks for i in block] == list(range(total))
    assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


BAD_SHARDS = {
    'zero': ('0/2', 'between 1 and N=2'),
    'beyond the count': ('3/2', 'between 1 and N=2'),
    'no shards': ('1/0', 'N must be at least 1'),
    'garbage': ('half', 'expected K/N such as 3/8'),
    'three numbers': ('1/2/3', 'expected K/N'),
    'negative': ('-1/2', 'expected K/N'),
}


@pytest.mark.parametrize('text, message', BAD_SHARDS.values(), ids=BAD_SHARDS)
@pytest.mark.parametrize('simulator', sorted(SIMULATORS))
def test_bad_shard_is_one_line_with_status_2(tmp_path, capsys, simulator, text, message):
    status = main([simulator, '--episodes', '2', '--out', str(tmp_path / 'data'),
                   f'--shard={text}'])  # = form: '-1/2' is a value, not a flag
    lines = capsys.readouterr().err.splitlines()
    assert status == 2
    assert len(lines) == 1 and lines[0].startswith('sim: error: argument --shard: ')
    assert message in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_more_shards_than_episodes_is_one_line_and_leaves_nothing(tmp_path, capsys):
    status = main(['tactile', '--episodes', '2', '--out', str(tmp_path / 'data'),
                   '--shard', '3/3'])
    lines = capsys.readouterr().err.splitlines()
    assert status == 1 and len(lines) == 1
    assert 'would leave some empty' in lines[0] and list(tmp_path.iterdir()) == []
