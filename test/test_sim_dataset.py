"""Dodgeball dataset: determinism across seeds and worker counts, and the reader's checks."""
import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from rnn_perception.data.dodgeball_dataset import load_dodgeball_dataset, SCHEMA_VERSION
from rnn_perception.data.shards import DatasetError, MANIFEST_NAME
from sim.dodgeball.config import load_dodgeball_config
from sim.dodgeball.generate import generate

EPISODES = 7


def make_dataset(root, *, seed=11, workers=1, name=None):
    """Generate a small dataset (3 shards, with depth) under ``root``; return its path."""
    out = root / (name or f'seed{seed}_workers{workers}')
    config = load_dodgeball_config(overrides={
        'episodes': EPISODES, 'seed': seed, 'workers': workers, 'episodes_per_shard': 3,
        'camera': {'image_size': 24, 'depth': True}, 'output': {'out': str(out)}})
    generate(config, progress=False)
    return out


def content_hash(directory) -> str:
    """sha256 over the names and bytes of every file in ``directory``."""
    digest = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope='module')
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp('datasets')
    return {'one_worker': make_dataset(root, workers=1),
            'two_workers': make_dataset(root, workers=2),
            'again': make_dataset(root, workers=1, name='again'),
            'other_seed': make_dataset(root, seed=12)}


def test_same_seed_gives_identical_bytes_whatever_the_workers(datasets):
    reference = content_hash(datasets['one_worker'])
    assert content_hash(datasets['again']) == reference
    assert content_hash(datasets['two_workers']) == reference


def test_another_seed_gives_other_data(datasets):
    assert content_hash(datasets['other_seed']) != content_hash(datasets['one_worker'])


def test_reader_returns_what_the_manifest_counts(datasets):
    dataset = load_dodgeball_dataset(datasets['one_worker'])
    episodes = list(dataset.episodes())
    manifest = dataset.manifest
    assert manifest['schema_version'] == SCHEMA_VERSION
    assert len(dataset) == EPISODES
    assert [episode.index for episode in episodes] == list(range(EPISODES))
    assert sum(episode.num_frames for episode in episodes) == dataset.num_frames
    assert dataset.hit_ratio == pytest.approx(np.mean([episode.hit for episode in episodes]))
    assert [shard['episodes'] for shard in manifest['shards']] == [3, 3, 1]
    assert dataset.camera_info['width'] == dataset.camera_info['height'] == 24
    first = episodes[0]
    assert first.frames.shape[1:] == (24, 24, 3) and first.frames.dtype == np.uint8
    assert first.depth.shape == first.frames.shape[:3] and first.depth.dtype == np.float16


def test_flat_arrays_agree_with_episodes(datasets):
    dataset = load_dodgeball_dataset(datasets['one_worker'])
    arrays = dataset.arrays()
    offsets = arrays['episode_offsets']
    assert offsets[-1] == len(arrays['frames']) == dataset.num_frames
    for episode in dataset.episodes():
        frames = slice(offsets[episode.index], offsets[episode.index + 1])
        np.testing.assert_array_equal(arrays['frames'][frames], episode.frames)
        np.testing.assert_array_equal(arrays['frame_index'][frames], np.arange(episode.num_frames))
        assert np.all(arrays['episode_index'][frames] == episode.index)
        assert arrays['hit'][episode.index] == episode.hit
        ttc = arrays['time_to_contact_s'][frames]
        assert np.all(np.isinf(ttc)) != episode.hit


def test_missing_manifest_means_incomplete(datasets, tmp_path):
    copy = shutil.copytree(datasets['one_worker'], tmp_path / 'copy')
    (copy / MANIFEST_NAME).unlink()
    with pytest.raises(DatasetError, match='incomplete'):
        load_dodgeball_dataset(copy)
    with pytest.raises(DatasetError, match='no manifest'):
        load_dodgeball_dataset(tmp_path / 'does_not_exist')


@pytest.mark.parametrize('damage, message', [
    (lambda manifest: manifest.update(schema_version=2), 'schema version 1'),
    (lambda manifest: manifest.update(num_frames=manifest['num_frames'] + 1), 'add up'),
    (lambda manifest: manifest['shards'][0].update(file='shard_99999.npz'), 'missing shard'),
])
def test_inconsistent_manifest_is_rejected(datasets, tmp_path, damage, message):
    copy = shutil.copytree(datasets['one_worker'], tmp_path / 'copy')
    manifest = json.loads((copy / MANIFEST_NAME).read_text())
    damage(manifest)
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=message):
        load_dodgeball_dataset(copy)


def test_truncated_shard_is_rejected(datasets, tmp_path):
    copy = shutil.copytree(datasets['one_worker'], tmp_path / 'copy')
    shard = copy / 'shard_00001.npz'
    shard.write_bytes(shard.read_bytes()[:shard.stat().st_size // 2])
    dataset = load_dodgeball_dataset(copy)
    with pytest.raises(DatasetError, match='shard_00001'):
        list(dataset.episodes())


def test_reader_and_bag_helpers_never_import_pybullet_or_sim():
    code = ('import sys, rnn_perception.data.dodgeball_dataset, rnn_perception.data.bags; '
            'print(sorted(m for m in sys.modules if m.split(".")[0] in ("pybullet", "sim")))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == '[]'
