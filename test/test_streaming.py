"""Streaming shards (``train collision|tactile --shards-in-memory K``), for both trainers: the
index knows every episode's label and length without its frames; each epoch takes every
training episode once, in an order that changes with the epoch and repeats with the seed, never
holding more than K shards (the stream's own counter); K = all is the in-memory trainer, batch
for batch and weight for weight; a run streaming one shard at a time trains, and resumes
exactly. Tactile: the streamed normalisation statistics are the in-memory ones, bit for bit.
A rank of a data-parallel run prepares only its shares of the global batches."""
import json

import numpy as np
import pytest
import torch

from rnn_perception.data.dodgeball_dataset import load_dodgeball_dataset
from rnn_perception.data.shards import DatasetError
from rnn_perception.data.streaming import (most_batches, parse_shards_in_memory, shard_groups,
                                           shard_windows, ShardStream)
from rnn_perception.data.tactile_dataset import load_tactile_dataset
from rnn_perception.device import cpu_threads
from rnn_perception.files import load_checkpoint
from rnn_perception.models.collision import CollisionConfig, CollisionPredictor
from rnn_perception.training import collision as training
from rnn_perception.training import resume
from rnn_perception.training import tactile as tactile_training
from rnn_perception.training.distributed import Ranks
from rnn_perception.training.episode_split import split_by_episode
from sim.tactile.config import load_tactile_config
from sim.tactile.generate import generate
from test_collision_training import GRID, TINY_ARCHITECTURE, write_dataset

SHARDS = 6
EPISODES = 24          # 4 per shard


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp('data') / 'six', EPISODES, shards=SHARDS)


@pytest.fixture(scope='module')
def index(dataset):
    return training.index_episodes(str(dataset))


@pytest.fixture(scope='module')
def refs(index):
    return index.refs


def stream(dataset, shards_in_memory):
    return ShardStream(load_dodgeball_dataset(dataset),
                       training.preparation((16, 16), GRID), shards_in_memory)


def indices(batches):
    return [[episode.index for episode in batch] for batch in batches]


def test_the_index_knows_labels_and_trained_lengths_without_the_frames(dataset, refs):
    episodes, _ = training.load_episodes(str(dataset), (16, 16), GRID)
    assert [ref.index for ref in refs] == [e.index for e in episodes]
    assert [ref.label for ref in refs] == [e.hit for e in episodes]
    assert [ref.length for ref in refs] == [len(training.trained_part(e).frames)
                                            for e in episodes]
    assert [ref.shard for ref in refs] == [i // 4 for i in range(EPISODES)]
    assert [ref.row for ref in refs] == [i % 4 for i in range(EPISODES)]


@pytest.mark.parametrize('shards_in_memory', [1, 2, 4])
def test_an_epoch_takes_every_training_episode_once_holding_at_most_k_shards(
        dataset, refs, shards_in_memory):
    train, _ = split_by_episode(refs, [r.label for r in refs], 0.25, seed=0)
    source = stream(dataset, shards_in_memory)
    rng = np.random.default_rng(0)
    for epoch in range(2):
        plan = training.epoch_plan(train, shards_in_memory, 3, rng)
        batches = list(source.batches(plan))
        assert indices(batches) == [[ref.index for ref in batch] for batch in plan]
        assert sorted(sum(indices(batches), [])) == sorted(ref.index for ref in train)
        assert source.resident == 0
    assert 1 <= source.peak_resident <= shards_in_memory
    assert source.shard_reads == 2 * SHARDS     # every shard read once per epoch, no more
    episodes = {e.index: e for e in training.load_episodes(str(dataset), (16, 16), GRID)[0]}
    for episode in batches[0]:
        expected = episodes[episode.index]
        np.testing.assert_array_equal(episode.frames, expected.frames)
        np.testing.assert_array_equal(episode.ball_mask, expected.ball_mask)
        np.testing.assert_array_equal(episode.ball_state, expected.ball_state)


def test_the_order_changes_with_the_epoch_and_repeats_with_the_seed(refs):
    def epochs(seed):
        rng = np.random.default_rng(seed)
        return [[[ref.index for ref in batch] for batch in training.epoch_plan(refs, 2, 3, rng)]
                for _ in range(3)]
    first = epochs(0)
    assert first == epochs(0)
    assert first[0] != first[1] != first[2] and first != epochs(1)
    windows = shard_windows(refs, 2, np.random.default_rng(0))
    assert len(windows) == 3 and all(len({r.shard for r in w}) == 2 for w in windows)
    assert [r.shard for w in windows for r in w] != [r.shard for r in refs]   # shuffled shards


def test_all_shards_in_memory_is_the_in_memory_trainer(dataset, refs):
    """K = all: the batches of one shuffle over every episode, the same random draws, and the
    dataset read once and held across epochs."""
    episodes, _ = training.load_episodes(str(dataset), (16, 16), GRID)
    for shards_in_memory in (None, SHARDS, 100):
        source = stream(dataset, shards_in_memory)
        planned, listed = np.random.default_rng(3), np.random.default_rng(3)
        for epoch in range(2):
            plan = training.epoch_plan(refs, shards_in_memory, 5, planned)
            expected = training.length_bucketed_batches(
                [training.trained_part(e) for e in episodes], 5, listed)
            assert indices(source.batches(plan)) == indices(expected)
        assert planned.random() == listed.random()
        assert source.shard_reads == SHARDS and source.resident == SHARDS
    assert shard_groups(refs, None) == [refs]
    assert parse_shards_in_memory('all') is None and parse_shards_in_memory('3') == 3
    with pytest.raises(ValueError):
        parse_shards_in_memory('0')


def test_a_plan_that_needs_more_shards_than_allowed_is_refused(dataset, refs):
    with pytest.raises(ValueError, match='needs 3 shards at a time'):
        stream(dataset, 2).batches([[refs[0], refs[4], refs[8]], [refs[1], refs[5], refs[9]]])
    assert len(list(stream(dataset, 1).batches([[refs[0], refs[4], refs[8]]]))) == 1
    with pytest.raises(ValueError, match='twice'):
        stream(dataset, 2).batches([[refs[0]], [refs[0]]])


def test_a_corrupt_shard_is_raised_in_the_consumer(tmp_path, refs):
    data = write_dataset(tmp_path / 'data', EPISODES, shards=SHARDS)
    (data / 'shard_00003.npz').write_bytes(b'not a zip')
    with pytest.raises(DatasetError, match='shard_00003.npz: unreadable shard'):
        list(stream(data, 2).batches(shard_groups(refs, 2)))


def one_epoch(steps, times, seed=0):
    """The weights after one training epoch over ``steps(rng)`` (from the same initial
    model)."""
    torch.manual_seed(seed)
    config = CollisionConfig(image_size=(16, 16), encoder_channels=[4, 4],
                             recurrent_channels=[6, 6], recurrent_strides=[1, 2])
    model = CollisionPredictor(config)
    auxiliary = training.AuxiliaryHeads(model)
    args = training.build_parser().parse_args(['--data', 'x', '--out', 'x', '--quiet'])
    optimizer = torch.optim.AdamW([*model.parameters(), *auxiliary.parameters()], lr=1e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    rng, generator = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    with cpu_threads(1):
        losses = training.train_epoch(model, auxiliary, steps(rng), times, optimizer, schedule,
                                      args, torch.device('cpu'), rng, generator, '')
    return model.state_dict(), losses


def test_streaming_all_trains_as_the_list_of_episodes(dataset, index):
    """The streamed episodes train as those of a list (the plan's batches are those of the
    list's shuffle: above), and the index's frame times weigh them as their own do."""
    episodes, _ = training.load_episodes(str(dataset), (16, 16), GRID)
    held = {e.index: e for e in episodes}
    for ref in index.refs:
        episode = training.trained_part(held[ref.index])
        np.testing.assert_array_equal(index.times[ref.index].weights(0.5), episode.weights(0.5))
    source = stream(dataset, None)
    listed = one_epoch(lambda rng: Ranks().steps(
        training.epoch_plan(index.refs, None, 4, rng),
        lambda plan: [[held[ref.index] for ref in batch] for batch in plan]), index.times)
    streamed = one_epoch(lambda rng: Ranks().steps(training.epoch_plan(index.refs, None, 4, rng),
                                                   source.batches), index.times)
    assert listed[1] == streamed[1]
    for name, tensor in listed[0].items():
        assert torch.equal(streamed[0][name], tensor), name


@pytest.mark.parametrize('world_size', [2, 3])
def test_each_rank_prepares_only_its_shares_of_the_global_batches(dataset, refs, world_size):
    """Streaming two shards at a time, each rank's stream prepares the episodes of its shares
    (and an empty share's stand-in) and no others, reading once each shard those touch; the
    ranks' shares take every training episode once."""
    train, _ = split_by_episode(refs, [r.label for r in refs], 0.25, seed=0)
    plan = training.epoch_plan(train, 2, 5, np.random.default_rng(0))
    taken = []
    for rank in range(world_size):
        ranks, source = Ranks(rank, world_size), stream(dataset, 2)
        steps = list(ranks.steps(plan, source.batches))
        assert [step.batch for step in steps] == plan
        for step in steps:
            assert indices([step.episodes]) == [[step.batch[row].index for row in step.rows]]
            taken += [e.index for e in step.episodes] if step.weight else []
        shares = ranks.plan(plan)
        assert source.prepared == sum(map(len, shares)) < len(train)
        assert source.shard_reads == len({ref.shard for share in shares for ref in share})
        assert source.peak_resident <= 2
    assert sorted(taken) == sorted(ref.index for ref in train)


def train_argv(data, out, *extra):
    return ['--data', str(data), '--out', str(out), '--epochs', '2', '--batch-size', '3',
            '--shards-in-memory', '1', '--device', 'cpu', '--quiet', *TINY_ARCHITECTURE, *extra]


class Stop(Exception):
    """Pre-emption, in-process."""


def assert_resumes_exactly(trainer, argv, tmp_path, monkeypatch):
    """``trainer.main(argv(out, *extra))`` run through, and stopped after its first epoch then
    resumed: the same weights bit for bit and the same per-epoch rows."""
    reference, run = tmp_path / 'reference' / 'm.safetensors', tmp_path / 'run' / 'm.safetensors'
    with cpu_threads(1):
        assert trainer.main(argv(reference)) == 0
        rows = json.loads((tmp_path / 'reference' / 'm_epochs.json').read_text())
        assert len(rows) == 2 and all(np.isfinite(row['train_loss']) for row in rows)

        end_epoch = resume.end_epoch

        def stop_after_first(run_, epoch, *args):
            end_epoch(run_, epoch, *args)
            if epoch == 1:
                raise Stop
        monkeypatch.setattr(trainer, 'end_epoch', stop_after_first)
        with pytest.raises(Stop):
            trainer.main(argv(run))
        monkeypatch.setattr(trainer, 'end_epoch', end_epoch)
        assert trainer.main(argv(run, '--resume')) == 0
    expected, weights = load_checkpoint(reference).tensors, load_checkpoint(run).tensors
    for name, tensor in expected.items():
        assert torch.equal(weights[name], tensor), name
    resumed = json.loads((tmp_path / 'run' / 'm_epochs.json').read_text())
    assert [{k: v for k, v in row.items() if k != 'seconds'} for row in resumed] == [
        {k: v for k, v in row.items() if k != 'seconds'} for row in rows]


def test_a_run_streaming_one_shard_at_a_time_trains_and_resumes_exactly(
        dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(training, 'write_reports', lambda *args, **kwargs: None)
    assert_resumes_exactly(training, lambda out, *extra: train_argv(dataset, out, *extra),
                           tmp_path, monkeypatch)


# --------------------------------------------------------------------------------------- tactile
@pytest.fixture(scope='module')
def tactile_dataset(tmp_path_factory):
    """24 grasps of 1 s (2 of them slipping), 4 a shard."""
    root = tmp_path_factory.mktemp('tactile') / 'six'
    generate(load_tactile_config(overrides={
        'episodes': EPISODES, 'seed': 4, 'episodes_per_shard': EPISODES // SHARDS,
        'episode': {'duration_s': 1.0}, 'output': {'out': str(root)}}), progress=False)
    return root


@pytest.fixture(scope='module')
def tactile_split(tactile_dataset):
    """The training and validation refs, and the training episodes as the in-memory trainer
    held them (in the split's order)."""
    refs, _ = tactile_training.index_episodes(str(tactile_dataset))
    episodes, _ = tactile_training.load_episodes(str(tactile_dataset))
    train, val = split_by_episode(refs, [r.label for r in refs], 0.25, seed=0)
    held, _ = split_by_episode(episodes, [e.slipped for e in episodes], 0.25, seed=0)
    return train, val, held


def tactile_stream(dataset, shards_in_memory):
    return ShardStream(load_tactile_dataset(dataset), tactile_training.detached, shards_in_memory)


def test_the_tactile_index_knows_slips_and_lengths_without_the_samples(tactile_dataset):
    refs, _ = tactile_training.index_episodes(str(tactile_dataset))
    episodes, _ = tactile_training.load_episodes(str(tactile_dataset))
    assert [ref.index for ref in refs] == [e.index for e in episodes]
    assert [ref.label for ref in refs] == [e.slipped for e in episodes]
    assert [ref.length for ref in refs] == [e.num_frames for e in episodes]
    assert [ref.shard for ref in refs] == [i // 4 for i in range(EPISODES)]
    assert any(ref.label for ref in refs)     # the labels compared are not all False


@pytest.mark.parametrize('shards_in_memory', [1, 2])
def test_a_tactile_epoch_takes_every_training_episode_once_holding_at_most_k_shards(
        tactile_dataset, tactile_split, shards_in_memory):
    train, _, held = tactile_split
    source = tactile_stream(tactile_dataset, shards_in_memory)
    rng = np.random.default_rng(0)
    plans = []
    for epoch in range(2):
        plan = tactile_training.epoch_plan(train, shards_in_memory, 3, rng)
        batches = list(source.batches(plan))
        assert indices(batches) == [[ref.index for ref in batch] for batch in plan]
        assert sorted(sum(indices(batches), [])) == sorted(ref.index for ref in train)
        assert len(plan) <= most_batches(train, shards_in_memory, 3)
        assert source.resident == 0
        plans.append(indices(batches))
    assert plans[0] != plans[1]
    assert 1 <= source.peak_resident <= shards_in_memory
    assert source.shard_reads == 2 * SHARDS
    expected = {e.index: e for e in held}
    for episode in batches[0]:
        np.testing.assert_array_equal(episode.tactile, expected[episode.index].tactile)
        np.testing.assert_array_equal(episode.pose, expected[episode.index].pose)
        assert episode.pose.base is None    # its own copy, not a view of the whole shard


def test_streamed_tactile_statistics_are_the_in_memory_ones_bit_for_bit(
        tactile_dataset, tactile_split):
    """At any K, in episode order: the same bits as one list of the training episodes; and
    the statistics are those of all training samples at once, to float64 rounding."""
    train, _, held = tactile_split
    horizon = tactile_training.TactileConfig().horizon
    in_order = sorted(held, key=lambda e: e.index)
    expected = tactile_training.normalisation([in_order], horizon)
    for shards_in_memory in (1, 2, None):
        streamed = tactile_training.normalisation(
            tactile_stream(tactile_dataset, shards_in_memory).batches(
                shard_groups(sorted(train), shards_in_memory)), horizon)
        for name, values in expected.items():
            np.testing.assert_array_equal(streamed[name], values, err_msg=name)
    features = tactile_training.tactile_features(
        torch.from_numpy(np.concatenate([e.tactile for e in held]))).numpy().astype(np.float64)
    poses = np.concatenate([e.pose for e in held]).astype(np.float64)
    velocities = np.concatenate([np.diff(e.pose, axis=0, prepend=e.pose[:1])
                                 for e in held]).astype(np.float64)
    np.testing.assert_allclose(expected['tactile_mean'], features.mean(0), rtol=1e-12)
    np.testing.assert_allclose(expected['tactile_std'], features.std(0), rtol=1e-9)
    np.testing.assert_allclose(expected['pose_mean'], poses.mean(0), rtol=1e-12)
    np.testing.assert_allclose(expected['pose_std'][[0, 2, 3]], poses.std(0)[[0, 2, 3]],
                               rtol=1e-9)
    np.testing.assert_allclose(expected['velocity_std'][[0, 2, 3]],
                               velocities.std(0, ddof=1)[[0, 2, 3]], rtol=1e-9)


def tactile_epoch(steps, args):
    """The weights and the loss after one tactile training epoch over ``steps`` (from the same
    initial model and statistics)."""
    torch.manual_seed(0)
    model = tactile_training.TactilePredictor(tactile_training.TactileConfig(
        hidden_size=4, head_size=4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    with cpu_threads(1):
        loss = tactile_training.train_epoch(model, steps, optimizer, schedule, args,
                                            torch.device('cpu'), '')
    return model.state_dict(), loss


def test_streaming_all_trains_tactile_as_the_list_of_episodes(tactile_dataset, tactile_split):
    """K = all: the batches the in-memory trainer cut from one permutation of its list of
    training episodes, the same random draws, the same weights bit for bit."""
    train, _, held = tactile_split
    args = tactile_training.build_parser().parse_args(['--data', 'x', '--out', 'x', '--quiet',
                                                       '--batch-size', '4'])
    planned, listed = np.random.default_rng(3), np.random.default_rng(3)
    plan = tactile_training.epoch_plan(train, None, 4, planned)
    order = listed.permutation(len(held))
    in_memory = [[held[i] for i in order[k:k + 4]] for k in range(0, len(order), 4)]
    assert [[ref.index for ref in batch] for batch in plan] == indices(in_memory)
    assert planned.random() == listed.random()
    source = tactile_stream(tactile_dataset, None)
    streamed = tactile_epoch(Ranks().steps(plan, source.batches), args)
    expected = tactile_epoch(Ranks().steps(plan, lambda shares: in_memory), args)
    assert streamed[1] == expected[1] and source.shard_reads == SHARDS
    for name, tensor in expected[0].items():
        assert torch.equal(streamed[0][name], tensor), name


def test_a_tactile_run_streaming_one_shard_at_a_time_resumes_exactly(
        tactile_dataset, tmp_path, monkeypatch):
    for plot in ('plot_curves', 'plot_trajectories'):
        monkeypatch.setattr(tactile_training, plot, lambda *args, **kwargs: None)
    assert_resumes_exactly(tactile_training, lambda out, *extra: [
        '--data', str(tactile_dataset), '--out', str(out), '--epochs', '2', '--batch-size', '3',
        '--shards-in-memory', '1', '--hidden-size', '4', '--head-size', '4', '--device', 'cpu',
        '--quiet', *extra], tmp_path, monkeypatch)
