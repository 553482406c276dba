"""Collision training: data handling, a real (tiny) run through the CLI, and bad input."""
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rnn_perception.data.dodgeball_dataset import build_manifest, DodgeballEpisode, write_shard
from rnn_perception.data.shards import shard_file_name, write_manifest
from rnn_perception.evaluation import collision as evaluation
from rnn_perception.models.collision import load_collision_model
from rnn_perception.training import collision as training
from rnn_perception.training.episode_split import split_by_episode

FPS = 30.0


def synthetic_episode(
    index: int, hit: bool, frames: int, rng: np.random.Generator
) -> DodgeballEpisode:
    """A throw in a 16x16 world: a bright square drifting to the centre (hit) or off the side
    (miss)."""
    stamps = np.arange(frames) / FPS
    contact = (frames - 2) / FPS + 0.01 if hit else math.inf
    images = np.full((frames, 16, 16, 3), rng.integers(20, 80, 3), dtype=np.uint8)
    for t in range(frames):
        column = 8 if hit else min(15, 8 + t)
        images[t, 2 + t % 12, column] = 250
    position = np.zeros((frames, 3), np.float32)
    position[:, 0] = 6.0 - 6.0 * stamps
    return DodgeballEpisode(
        index=index,
        frames=images,
        depth=None,
        stamp_s=stamps,
        time_to_contact_s=contact - stamps,
        ball_position=position,
        ball_velocity=np.tile([[-6.0, 0.0, 0.0]], (frames, 1)).astype(np.float32),
        hit=hit,
        contact_time_s=contact,
        ball_radius_m=0.1,
        launch_speed_mps=6.0,
        aim_offset_m=0.0 if hit else 0.6,
        aimed_at_robot=hit,
        has_distractor=False,
    )


def write_dataset(root: Path, episodes: int = 16, seed: int = 0, shards: int = 2) -> Path:
    """A complete dataset of ``episodes`` synthetic throws (alternating hit, miss) in
    ``shards`` shards of equal size."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    throws = [
        synthetic_episode(i, i % 2 == 0, int(rng.integers(8, 14)), rng) for i in range(episodes)
    ]
    size = episodes // shards
    entries = [
        write_shard(root / shard_file_name(n), throws[start:start + size])
        for n, start in enumerate(range(0, episodes, size))
    ]
    camera = {'width': 16, 'height': 16, 'k': np.eye(3).tolist(), 'frame_id': 'camera',
              'position_m': [0.0, 0.0, 1.0], 'world_from_optical': np.eye(3).tolist()}
    write_manifest(
        root,
        build_manifest(
            entries,
            seed=seed,
            fps=FPS,
            has_depth=False,
            camera_info=camera,
            parameters={'synthetic': True},
        ),
    )
    return root


TINY_ARCHITECTURE = [
    '--image-size',
    '16',
    '--encoder-channels',
    '4',
    '4',
    '--recurrent-channels',
    '6',
    '6',
    '--recurrent-strides',
    '1',
    '2',
]
GRID = (2, 2)  # the tiny architecture's feature grid: 16 px halved by 2 convs and 1 stride


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp('data') / 'tiny')


@pytest.fixture(scope='module')
def trained(dataset, tmp_path_factory):
    """One epoch of real training through the CLI entry point."""
    weights = tmp_path_factory.mktemp('run') / 'tiny.safetensors'
    code = training.main(
        [
            '--data',
            str(dataset),
            '--out',
            str(weights),
            '--epochs',
            '1',
            '--batch-size',
            '4',
            *TINY_ARCHITECTURE,
            '--quiet',
        ]
    )
    assert code == 0
    return weights


# ------------------------------------------------------------------------------------------ data
def test_frame_weights_ramp_in_and_stop_at_contact():
    stamps = np.arange(6) / 10
    hit = training.Episode(
        0,
        np.zeros((6, 2, 2, 3), np.uint8),
        stamps,
        True,
        0.35,
        np.zeros((6, 7)),
        np.zeros((6, 1, 1)),
    )
    np.testing.assert_allclose(hit.weights(ramp_s=0.2), [0, 0.5, 1, 1, 0, 0], atol=1e-6)
    miss = training.Episode(1, hit.frames, stamps, False, math.inf, hit.ball_state, hit.ball_mask)
    np.testing.assert_allclose(miss.weights(ramp_s=0.0), np.ones(6))
    assert (
        len(training.trained_part(hit).frames) == 4
        and len(training.trained_part(miss).frames) == 6
    )
    assert hit.warning_frames(0.1).tolist() == [True, True, True, False, False, False]
    assert hit.warning_frames(1.0).tolist() == [
        True,
        True,
        True,
        True,
        False,
        False,
    ]  # none that early
    assert miss.warning_frames(0.1).all()


def test_ball_mask_marks_the_cells_the_ball_crosses():
    frames = np.full((8, 16, 16, 3), 50, np.uint8)
    for t in range(8):
        frames[t, 1, 2 * t] = 250                                   # a ball crossing the top row
    mask = training.ball_mask(frames, (4, 4))
    assert mask.shape == (8, 4, 4)
    for t in range(8):
        assert mask[t, 0, t // 2] == pytest.approx(1 / 16) and mask[t].sum() == pytest.approx(
            1 / 16
        )


@pytest.mark.parametrize('frames, grid', [(27, (8, 8)), (8, (4, 4)), (9, (5, 7))])
def test_ball_mask_is_the_median_background_test_pooled(frames, grid):
    """The integer median and the numpy block means give the straightforward recipe's values:
    np.median (even counts average two frames), then torch's adaptive pooling."""
    images = np.random.default_rng(frames).integers(0, 256, (frames, 48, 64, 3), dtype=np.uint8)
    moving = np.abs(images.astype(np.int16) - np.median(images, axis=0)).sum(-1) > 40
    expected = torch.nn.functional.adaptive_avg_pool2d(
        torch.from_numpy(moving).float().unsqueeze(1), grid).squeeze(1).numpy().astype(np.float16)
    np.testing.assert_array_equal(training.ball_mask(images, grid), expected)


def test_kept_masks_give_back_the_masks_bit_for_bit_in_a_fraction_of_the_bytes():
    """A ball crossing a 48x64 scene on an 8x8 grid, and an empty scene: the kept form is the
    masks exactly, and the crossing's at most a fifth of the dense masks' bytes."""
    frames = np.full((30, 48, 64, 3), 60, np.uint8)
    for t in range(30):
        frames[t, 20:26, 2 * t:2 * t + 6] = 240                     # a 6x6 ball moving right
    for mask in (training.ball_mask(frames, (8, 8)), np.zeros((5, 8, 8), np.float16)):
        kept = training.KeptMask.of(mask)
        dense = kept.dense()
        assert dense.dtype == mask.dtype
        np.testing.assert_array_equal(dense, mask)
    crossing = training.ball_mask(frames, (8, 8))
    kept = training.KeptMask.of(crossing)
    assert 0 < crossing.astype(bool).sum() < crossing.size
    assert kept.cells.nbytes + kept.values.nbytes <= crossing.nbytes / 5


def test_split_is_by_episode_disjoint_and_keeps_both_labels(dataset):
    episodes, _ = training.load_episodes(str(dataset), (16, 16), GRID)
    train, val = split_by_episode(episodes, [e.hit for e in episodes], 0.25, seed=0)
    assert len(train) + len(val) == len(episodes) and len(val) == 4
    assert not {e.index for e in train} & {e.index for e in val}
    assert {e.hit for e in val} == {True, False}


def test_batches_cover_every_episode_once_and_padding_weighs_nothing(dataset):
    episodes, _ = training.load_episodes(str(dataset), (16, 16), GRID)
    batches = training.length_bucketed_batches(episodes, 3, np.random.default_rng(0))
    assert sorted(e.index for batch in batches for e in batch) == sorted(e.index for e in episodes)
    batch = training.make_batch(batches[0], ramp_s=0.0, warning_s=0.1, device=torch.device('cpu'))
    lengths = [
        len(training.trained_part(e).frames) if e.hit else len(e.frames) for e in batches[0]
    ]
    for row, episode in enumerate(batches[0]):
        assert batch.frame_mask[row].sum() == len(episode.frames)
        assert batch.weights[row, len(episode.frames):].eq(0).all()
        assert batch.weights[row].sum() == lengths[row]
    assert batch.frames.shape[:2] == batch.weights.shape == batch.frame_mask.shape


def test_augmentation_mirrors_frames_and_the_ball_together(dataset):
    episodes, _ = training.load_episodes(str(dataset), (16, 16), GRID)
    batch = training.make_batch(episodes[:8], 0.5, 0.1, torch.device('cpu'))
    batch.ball_state[..., 1] = 0.3                                   # the ball is on the left
    mirrored = training.augment(batch, torch.Generator().manual_seed(0), jitter=0.0)
    flipped = mirrored.ball_state[:, 0, 1] < 0
    assert 0 < flipped.sum() < 8
    torch.testing.assert_close(mirrored.frames[flipped], batch.frames[flipped].flip(-1))
    torch.testing.assert_close(mirrored.ball_mask[flipped], batch.ball_mask[flipped].flip(-1))
    torch.testing.assert_close(mirrored.frames[~flipped], batch.frames[~flipped])


def test_a_random_camera_changes_the_frames_of_most_episodes_and_never_the_labels(dataset):
    episodes, _ = training.load_episodes(str(dataset), (16, 16), GRID)
    rng = np.random.default_rng(0)
    changed = 0
    for _ in range(10):
        for episode in episodes:
            camera = training.with_random_camera(episode, rng)
            assert camera.frames.shape == episode.frames.shape
            np.testing.assert_array_equal(camera.ball_mask, episode.ball_mask)
            assert camera.hit == episode.hit
            changed += not np.array_equal(camera.frames, episode.frames)
    assert changed / (10 * len(episodes)) == pytest.approx(training.CAMERA_EFFECTS_SHARE,
                                                           abs=0.1)


# -------------------------------------------------------------------------------------- training
def test_a_one_epoch_run_writes_weights_metrics_and_plots(trained, dataset):
    run_dir = trained.parent
    for suffix in (
        'metrics.json',
        'epochs.csv',
        'epochs.json',
        'curves.png',
        'roc.png',
        'traces.png',
    ):
        assert (run_dir / f'tiny_{suffix}').is_file(), suffix
    for plot in run_dir.glob('*.png'):
        assert plot.read_bytes().startswith(b'\x89PNG')
    model, metadata = load_collision_model(trained)
    assert model.config.image_size == (16, 16)
    assert metadata['fps'] == FPS and 0 < metadata['threshold'] < 1
    assert (
        metadata['threshold'] == metadata['validation_metrics']['threshold']
    )  # calibrated on validation
    assert (
        metadata['dataset_manifest_sha256']
        == hashlib.sha256((dataset / 'manifest.json').read_bytes()).hexdigest()
    )
    assert metadata['training_command'].startswith(
        'python -m rnn_perception train collision --data '
    )
    assert set(evaluation.METRIC_KEYS) <= set(metadata['validation_metrics'])
    assert metadata['camera_effects'] == training.CAMERA_EFFECTS_TRAIN
    summary = json.loads((run_dir / 'tiny_metrics.json').read_text())
    assert summary['validation'] == metadata['validation_metrics'] and summary['train_seconds'] > 0
    assert len(json.loads((run_dir / 'tiny_epochs.json').read_text())) == 1
    assert not torch.allclose(
        model.mean, torch.full_like(model.mean, 0.5)
    )  # normalised to the data


def test_eval_json_on_the_trained_model(trained, dataset, capsys):
    assert evaluation.main(['--weights', str(trained), '--data', str(dataset), '--json']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert set(evaluation.METRIC_KEYS) <= set(report) and report['episodes'] == 16


def test_run_dir_takes_the_reports(dataset, tmp_path):
    weights, reports = tmp_path / 'model.safetensors', tmp_path / 'reports'
    assert (
        training.main(
            [
                '--data',
                str(dataset),
                '--out',
                str(weights),
                '--run-dir',
                str(reports),
                '--epochs',
                '1',
                '--batch-size',
                '8',
                *TINY_ARCHITECTURE,
                '--quiet',
            ]
        )
        == 0
    )
    assert weights.is_file() and sorted(p.name for p in tmp_path.iterdir()) == [
        'model.safetensors',
        'reports',
    ]
    assert (reports / 'model_metrics.json').is_file() and (reports / 'model_curves.png').is_file()


def test_init_fine_tunes_the_given_weights_with_their_architecture(
        trained, dataset, tmp_path, capsys):
    weights = tmp_path / 'tuned.safetensors'
    start, _ = load_collision_model(trained)
    assert training.main(['--data', str(dataset), '--out', str(weights), '--init', str(trained),
                          '--epochs', '1', '--batch-size', '4', '--image-size', '32',
                          '--quiet']) == 0
    tuned, metadata = load_collision_model(weights)
    assert tuned.config == start.config                  # --image-size 32 is ignored
    torch.testing.assert_close(tuned.mean, start.mean)   # so is the dataset's normalisation
    assert metadata['initial_weights'] == str(trained)
    assert training.main(['--data', str(dataset), '--out', str(tmp_path / 'x.safetensors'),
                          '--init', str(tmp_path / 'missing.safetensors'), '--quiet']) == 1
    assert 'missing.safetensors' in capsys.readouterr().err


def test_a_given_threshold_is_kept(dataset, tmp_path):
    weights = tmp_path / 'model.safetensors'
    assert (
        training.main(
            [
                '--data',
                str(dataset),
                '--out',
                str(weights),
                '--threshold',
                '0.4',
                '--epochs',
                '1',
                *TINY_ARCHITECTURE,
                '--quiet',
            ]
        )
        == 0
    )
    _, metadata = load_collision_model(weights)
    assert metadata['threshold'] == 0.4 and metadata['validation_metrics']['threshold'] == 0.4


# ------------------------------------------------------------------------------------- bad input
def assert_one_line_error(capsys, argv, *fragments):
    assert training.main(argv) != 0
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('train collision: error: '), err
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_data_dir(tmp_path, capsys):
    assert_one_line_error(
        capsys,
        ['--data', str(tmp_path / 'absent'), '--out', str(tmp_path / 'm.safetensors')],
        'absent',
        'manifest.json',
    )
    assert not (tmp_path / 'm.safetensors').exists()


def test_incomplete_dataset(dataset, tmp_path, capsys):
    partial = tmp_path / 'partial'
    partial.mkdir()
    (partial / 'shard_00000.npz').write_bytes((dataset / 'shard_00000.npz').read_bytes())
    assert_one_line_error(
        capsys, ['--data', str(partial), '--out', str(tmp_path / 'm.safetensors')], 'incomplete'
    )


def test_dataset_with_one_label_only(tmp_path, capsys):
    rng = np.random.default_rng(0)
    root = tmp_path / 'hits'
    root.mkdir()
    shards = [
        write_shard(
            root / shard_file_name(0), [synthetic_episode(i, True, 8, rng) for i in range(4)]
        )
    ]
    write_manifest(
        root,
        build_manifest(shards, seed=0, fps=FPS, has_depth=False, camera_info={}, parameters={}),
    )
    assert_one_line_error(
        capsys, ['--data', str(root), '--out', str(tmp_path / 'm.safetensors')], 'hits and misses'
    )


@pytest.mark.parametrize('argv, fragment', [
    (['--out', 'm.safetensors'], '--data'),
    (['--data', 'd', '--out', 'm.safetensors', '--epochs', '0'], '--epochs'),
    (['--data', 'd', '--out', 'm.safetensors', '--device', 'tpu'], '--device'),
    (['--data', 'd', '--out', 'm.safetensors', '--val-fraction', '1'], '--val-fraction'),
])
def test_usage_errors(argv, fragment, capsys):
    assert_one_line_error(capsys, argv, fragment)


def test_mismatched_architecture_lists(dataset, tmp_path, capsys):
    assert_one_line_error(
        capsys,
        [
            '--data',
            str(dataset),
            '--out',
            str(tmp_path / 'm.safetensors'),
            '--recurrent-channels',
            '4',
            '4',
            '4',
        ],
        'recurrent_strides',
    )


def test_bf16_mixed_precision_trains_fp32_weights(dataset, tmp_path):
    """``--precision bf16``: the forward pass under autocast, the weights stay fp32 and finite."""
    weights = tmp_path / 'bf16.safetensors'
    assert training.main(['--data', str(dataset), '--out', str(weights), '--epochs', '1',
                          '--batch-size', '8', *TINY_ARCHITECTURE, '--precision', 'bf16',
                          '--quiet']) == 0
    model, _ = load_collision_model(weights)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
