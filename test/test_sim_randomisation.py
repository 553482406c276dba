"""Domain randomisation of the dodgeball scene: the same throws as the plain scene (here, where
no ball meets the solid clutter, the same paths and labels), a different look; reproducible for
any worker count; the held-out preset shares no texture family or light range with training."""
from __future__ import annotations

import tempfile

import numpy as np
import pytest

from rnn_perception.data.dodgeball_dataset import load_dodgeball_dataset
from sim.dodgeball.config import load_dodgeball_config
from sim.dodgeball.generate import generate
from sim.dodgeball.randomisation import (HELD_OUT, PLAIN, PLAIN_VARIATION, PRESETS,
                                         sample_variation, TRAIN)

EPISODES = 6


def make_dataset(root, scene: str, workers: int = 1):
    out = root / f'{scene}_{workers}'
    config = load_dodgeball_config(overrides={
        'episodes': EPISODES, 'seed': 4, 'workers': workers, 'randomisation': {'scene': scene},
        'camera': {'image_size': 32}, 'output': {'out': str(out)}})
    generate(config, progress=False)
    return list(load_dodgeball_dataset(out).episodes())


@pytest.fixture(scope='module')
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp('randomised')
    return {scene: make_dataset(root, scene) for scene in (PLAIN, TRAIN, HELD_OUT)}


def test_randomisation_changes_the_look_not_the_throws(datasets):
    for scene in (TRAIN, HELD_OUT):
        for plain, randomised in zip(datasets[PLAIN], datasets[scene], strict=True):
            assert randomised.hit == plain.hit
            assert randomised.contact_time_s == plain.contact_time_s
            np.testing.assert_array_equal(randomised.ball_position, plain.ball_position)
            assert np.abs(randomised.frames.astype(int) - plain.frames).mean() > 5


def test_a_randomised_dataset_does_not_depend_on_the_workers(datasets, tmp_path, monkeypatch):
    # the texture files go to the temporary directory; terminated pool workers leave none there
    scratch = tmp_path / 'scratch'
    scratch.mkdir()
    monkeypatch.setenv('TMPDIR', str(scratch))
    monkeypatch.setattr(tempfile, 'tempdir', str(scratch))
    for first, second in zip(datasets[TRAIN], make_dataset(tmp_path, TRAIN, workers=2),
                             strict=True):
        np.testing.assert_array_equal(first.frames, second.frames)
    assert list(scratch.iterdir()) == []


def test_plain_draws_nothing_and_held_out_is_never_seen_in_training():
    assert sample_variation(PLAIN, 0, 3) is PLAIN_VARIATION
    train, held_out = PRESETS[TRAIN], PRESETS[HELD_OUT]
    assert not set(train.textures) & set(held_out.textures)
    assert train.light_saturation[1] <= held_out.light_saturation[0]
    variation = sample_variation(TRAIN, 0, 3)
    assert variation.light_rgb == sample_variation(TRAIN, 0, 3).light_rgb
    assert variation.light_rgb != sample_variation(TRAIN, 0, 4).light_rgb
