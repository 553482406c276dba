"""The collision node's logic without ROS: parameters, per-frame policy, model stepping, tiling."""
from __future__ import annotations

import re
from dataclasses import FrozenInstanceError, fields
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rnn_perception.models.collision import (CollisionConfig, CollisionPredictor,
                                             frames_to_tensor, save_collision_model)
from rnn_perception.models.weights_file import ModelFileError
from rnn_perception.ros.reliability import choose_reliability
from rnn_perception.runtime.activation_mosaic import activation_mosaic, tile_maps
from rnn_perception.runtime.collision import CollisionRuntime, load_predictor, Outcome
from rnn_perception.runtime.collision_parameters import parameter_problem, PARAMETERS
from rnn_perception.runtime.collision_diagnostics import DiagnosticsSummary
from rnn_perception.runtime.collision_parameters import CollisionSettings
from rnn_perception.runtime.diagnostics import (DIAGNOSTIC_OK, DIAGNOSTIC_WARN, LATENCY_WINDOW,
                                                LatencyStats)
from rnn_perception.runtime.frame_policy import (AlertHysteresis, CLOCK_MISMATCH_S,
                                                 FrameSubsampler, StalenessCheck)
from rnn_perception.runtime.reset_policy import ResetPolicy
from rnn_perception.runtime.watchdog import NoFrameWatchdog
from rnn_perception.models.loading import LoadedModel

FPS = 30.0


# ----------------------------------------------------------------------------------- parameters
def test_every_parameter_is_described_and_its_default_accepted():
    for spec in PARAMETERS:
        assert spec.description
        assert parameter_problem(spec.name, spec.default) is None


def test_settings_are_built_from_the_parameter_specs():
    defaults = CollisionSettings()
    assert [f.name for f in fields(CollisionSettings)] == [spec.name for spec in PARAMETERS]
    assert CollisionSettings.__module__ == 'rnn_perception.runtime.collision_parameters'
    assert all(getattr(defaults, spec.name) == spec.default for spec in PARAMETERS)
    with pytest.raises(FrozenInstanceError):
        defaults.reset_gap_s = 1.0


@pytest.mark.parametrize('name,value,reason', [
    ('reset_gap_s', 0.0, 'must be a finite number > 0'),
    ('reset_gap_s', float('nan'), 'finite'),
    ('max_frame_age_s', -0.1, '>= 0'),
    ('no_frame_warning_s', float('inf'), 'finite'),
    ('image_qos', 'fast', 'auto, reliable, best_effort'),
    ('device', 'tpu', 'auto, cpu, cuda'),
    ('cpu_threads', 0, '>= 1'),
    ('alert_on_threshold', 1.5, r'\[0, 1\], or -1'),
    ('alert_hysteresis', 1.0, r'\[0, 1\)'),
])
def test_bad_parameter_values_are_refused_with_a_reason(name, value, reason):
    problem = parameter_problem(name, value)
    assert problem is not None and problem.startswith(f'{name}={value!r} refused: ')
    assert re.search(reason, problem)


@pytest.mark.parametrize('name,value', [
    ('max_frame_age_s', 0.0), ('alert_on_threshold', -1.0), ('alert_on_threshold', 0.0),
    ('alert_hysteresis', 0.0), ('image_qos', 'best_effort'), ('device', 'cpu')])
def test_good_parameter_values_pass(name, value):
    assert parameter_problem(name, value) is None


def test_settings_update_ignores_other_names():
    defaults = CollisionSettings()
    settings = defaults.updated({'reset_gap_s': 2.0, 'use_sim_time': True})
    assert settings.reset_gap_s == 2.0 and not hasattr(settings, 'use_sim_time')
    assert defaults.reset_gap_s != 2.0 and settings.cpu_threads == defaults.cpu_threads


# --------------------------------------------------------------------------------- frame policy
def test_reset_policy():
    policy = ResetPolicy(reset_gap_s=0.5)
    assert policy.check(10.0, (64, 64)) is None                       # first frame: fresh anyway
    assert policy.check(10.4, (64, 64)) is None
    assert policy.check(11.0, (64, 64)) == 'stamp gap 0.600 s > reset_gap_s 0.5 s'
    assert policy.check(2.0, (64, 64)) == 'stamps went backwards by 9.000 s'
    assert policy.check(2.033, (64, 64)) is None
    assert policy.check(2.066, (640, 480)) == 'resolution changed from 64x64 to 640x480'
    assert policy.check(2.066, (640, 480)) is None                    # same stamp: not backwards


def test_subsampler_halves_a_60hz_camera():
    sampler = FrameSubsampler(FPS, enabled=True)
    kept = [sampler.accept(i / 60.0) for i in range(12)]
    assert kept == [True, False] * 6
    assert sampler.input_rate_hz == pytest.approx(60.0)
    assert sampler.slow_camera_warning() is None


def test_subsampler_keeps_every_frame_at_the_model_rate_and_when_off():
    jittery = [i / FPS + (0.004 if i % 2 else -0.004) for i in range(30)]
    sampler = FrameSubsampler(FPS, enabled=True)
    assert all(sampler.accept(stamp) for stamp in jittery)
    disabled = FrameSubsampler(FPS, enabled=False)
    assert all(disabled.accept(i / 120.0) for i in range(10))


def test_subsampler_warns_about_a_slow_camera_and_restarts():
    sampler = FrameSubsampler(FPS, enabled=True)
    assert all(sampler.accept(i / 15.0) for i in range(5))
    assert '15.0 Hz, slower than the 30 Hz' in sampler.slow_camera_warning()
    sampler.accept(1.0)
    sampler.restart()
    assert sampler.accept(1.001)                                      # first frame after a reset


def test_staleness_rule():
    check = StalenessCheck(max_frame_age_s=0.5)
    assert not check.is_stale(99.8, 100.0) and check.status == 'on'
    assert check.is_stale(99.0, 100.0)
    assert not check.is_stale(100.2, 100.0)                           # from the future: not stale
    assert not check.is_stale(1.0, 1.7e9) and 'different time bases' in check.status
    assert check.is_stale(1.0, 1.0 + CLOCK_MISMATCH_S - 1)            # an hour old, same time base
    assert not check.is_stale(5.0, 0.0) and check.status == 'off (clock not started)'
    check.max_frame_age_s = 0.0
    assert not check.is_stale(0.0, 100.0) and 'max_frame_age_s is 0' in check.status


def test_alert_hysteresis():
    alert = AlertHysteresis(on_threshold=0.6, hysteresis=0.2)
    assert [alert.update(p) for p in (0.5, 0.6, 0.45, 0.41, 0.39, 0.59, 0.6)] == \
        [False, True, True, True, False, False, True]
    alert.set_thresholds(0.05, 0.1)
    assert alert.off_threshold == 0.0


@pytest.mark.parametrize('mode,offered,expected', [
    ('auto', [], 'best_effort'),
    ('auto', ['reliable'], 'reliable'),
    ('auto', ['reliable', 'reliable'], 'reliable'),
    ('auto', ['reliable', 'best_effort'], 'best_effort'),
    ('auto', ['best_effort'], 'best_effort'),
    ('reliable', ['best_effort'], 'reliable'),
    ('best_effort', ['reliable'], 'best_effort'),
])
def test_choose_reliability(mode, offered, expected):
    assert choose_reliability(mode, offered) == expected


def test_no_frame_watchdog():
    watchdog = NoFrameWatchdog(timeout_s=2.0)
    assert watchdog.check(0.0, 0, '/cam') is None
    assert watchdog.check(1.0, 1, '/cam') is None                     # matched at 1 s
    assert watchdog.check(2.5, 1, '/cam') is None
    warning = watchdog.check(3.5, 1, '/cam')
    assert '1 publisher(s) matched on /cam but no frame arrived for 2 s' in warning
    assert 'FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA' in warning
    watchdog.frame_arrived(3.6)
    assert watchdog.check(4.0, 1, '/cam') is None
    assert watchdog.check(9.0, 0, '/cam') is None                     # publisher gone: forget


def test_latency_stats_are_bounded():
    stats = LatencyStats()
    assert stats.percentile_ms(50) is None
    for i in range(3 * LATENCY_WINDOW):
        stats.add(0.001 if i < 2 * LATENCY_WINDOW else 0.002)
    assert stats.percentile_ms(50) == pytest.approx(2.0)              # only the last window counts


# ---------------------------------------------------------------------------------- the runtime
@pytest.fixture(scope='module')
def model():
    """Two ConvLSTM layers at the camera frames' 64x64, so the state carried per layer and the
    mosaic of several layers are exercised, and no resize stands between frames and model."""
    torch.manual_seed(0)
    return CollisionPredictor(TWO_LAYERS).eval()


TWO_LAYERS = CollisionConfig(
    image_size=(64, 64),
    encoder_channels=[16, 32],
    recurrent_channels=[32, 32],
    recurrent_strides=[1, 2],
)


def make_runtime(model, **settings):
    return CollisionRuntime(LoadedModel(model, {'fps': FPS, 'threshold': 0.5}, None,
                                        torch.device('cpu')), CollisionSettings(**settings))


def image(rgb: np.ndarray, stamp_s: float, encoding='rgb8') -> SimpleNamespace:
    sec, nanosec = divmod(round(stamp_s * 1e9), 1_000_000_000)
    return SimpleNamespace(
        header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec)),
        height=rgb.shape[0],
        width=rgb.shape[1],
        encoding=encoding,
        is_bigendian=0,
        step=rgb.shape[1] * 3,
        data=rgb.tobytes(),
    )


def offline_probabilities(model, frames) -> np.ndarray:
    with torch.inference_mode():
        return torch.sigmoid(model(frames_to_tensor(np.asarray(frames)[None])))[0].numpy()


@pytest.fixture(scope='module')
def frames():
    return np.random.default_rng(1).integers(0, 256, (12, 64, 64, 3), dtype=np.uint8)


def test_one_step_per_frame_equals_the_whole_sequence(model, frames):
    runtime = make_runtime(model)
    results = [runtime.process(image(f, 1.0 + i / FPS), 0.0) for i, f in enumerate(frames)]
    assert all(r.outcome is Outcome.PROCESSED for r in results)
    np.testing.assert_allclose(
        [r.probability for r in results], offline_probabilities(model, frames), atol=1e-5
    )
    assert runtime.counters.processed == 12 and runtime.latency.percentile_ms(99) > 0


def test_gap_and_backwards_stamps_restart_from_zeros(model, frames):
    runtime = make_runtime(model, reset_gap_s=0.5)
    stamps = [1.0, 1.033, 1.066, 3.0, 3.033, 0.5, 0.533]
    results = [runtime.process(image(f, s), 0.0) for f, s in zip(frames, stamps)]
    assert [r.reset_reason is not None for r in results] == [
        False,
        False,
        False,
        True,
        False,
        True,
        False,
    ]
    for start, stop in ((0, 3), (3, 5), (5, 7)):
        np.testing.assert_allclose([r.probability for r in results[start:stop]],
                                   offline_probabilities(model, frames[start:stop]), atol=1e-5)
    assert runtime.counters.resets == 2 and 'backwards' in runtime.last_reset_reason


def test_garbage_between_good_frames_changes_nothing(model, frames):
    runtime = make_runtime(model)
    garbage = image(frames[0], 1.01, encoding='32FC1')
    short = image(frames[0], 1.02)
    short.data = short.data[:100]
    results = []
    for i, frame in enumerate(frames[:4]):
        results.append(runtime.process(image(frame, 1.0 + i / FPS), 0.0))
        results += [runtime.process(garbage, 0.0), runtime.process(short, 0.0)]
    processed = [r.probability for r in results if r.outcome is Outcome.PROCESSED]
    np.testing.assert_allclose(processed, offline_probabilities(model, frames[:4]), atol=1e-5)
    assert runtime.counters.rejected == 8 and 'fewer than' in runtime.last_rejection


def test_any_resolution_is_resized_and_a_new_one_resets(model):
    runtime = make_runtime(model)
    big = np.random.default_rng(2).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    first = runtime.process(image(big, 1.0), 0.0)
    assert first.outcome is Outcome.PROCESSED and 0.0 <= first.probability <= 1.0
    second = runtime.process(image(big[:240, :320].copy(), 1.033), 0.0)
    assert second.reset_reason == 'resolution changed from 640x480 to 320x240'


def test_stale_and_subsampled_frames_are_counted(model, frames):
    runtime = make_runtime(model, max_frame_age_s=0.5)
    assert runtime.process(image(frames[0], 98.0), now_s=100.0).outcome is Outcome.STALE
    results = [runtime.process(image(frames[i], 100.0 + i / 60.0), now_s=100.2) for i in range(6)]
    assert [r.outcome for r in results] == [Outcome.PROCESSED, Outcome.SUBSAMPLED] * 3
    assert (runtime.counters.stale, runtime.counters.subsampled, runtime.counters.received) == (
        1,
        3,
        7,
    )


def test_unstamped_frames_use_the_clock(model, frames):
    runtime = make_runtime(model, max_frame_age_s=0.5)
    result = runtime.process(image(frames[0], 0.0), now_s=50.0)
    assert result.outcome is Outcome.PROCESSED and result.stamp_s == 50.0


def test_alert_follows_the_configured_threshold(model, frames):
    runtime = make_runtime(model, alert_on_threshold=0.0)
    assert runtime.process(image(frames[0], 1.0), 0.0).alert is True
    runtime.configure(
        runtime.settings.updated({'alert_on_threshold': 1.0, 'alert_hysteresis': 0.0})
    )
    assert runtime.process(image(frames[1], 1.033), 0.0).alert is False
    assert runtime.state is not None                                  # configure kept the state
    runtime.reset('test')
    assert runtime.state is None and runtime.last_reset_reason == 'test'


def test_diagnostics_summary(model, frames):
    runtime = make_runtime(model)
    summary = DiagnosticsSummary(runtime)
    first = summary.report(10.0)
    assert first.level == DIAGNOSTIC_OK
    for i in range(4):
        runtime.process(image(frames[i], 1.0 + i / FPS), 0.0)
    runtime.process(image(frames[0], 2.0, encoding='jpeg'), 0.0)
    report = summary.report(
        12.0, warnings=['camera silent'], extra_values=[('image_qos', 'reliable')]
    )
    values = dict(report.values)
    assert report.level == DIAGNOSTIC_WARN
    assert report.message.startswith('camera silent; 1 frame(s) rejected since the last report')
    assert (values['rate_hz'], values['frames_processed'], values['frames_rejected']) == (
        '2.00',
        '4',
        '1',
    )
    assert float(values['latency_p99_ms']) > 0 and values['device'] == 'cpu'
    assert values['image_qos'] == 'reliable'
    assert summary.report(13.0).level == DIAGNOSTIC_OK                # nothing new went wrong


# ------------------------------------------------------------------------------ weights loading
def test_load_predictor(tmp_path, model):
    path = tmp_path / 'w.safetensors'
    save_collision_model(path, model, {'fps': FPS})
    loaded, metadata, resolved, device = load_predictor(str(path), 'cpu')
    assert resolved == path and device == torch.device('cpu') and metadata['fps'] == FPS
    assert make_runtime(loaded).model_threshold == 0.5                # no threshold: 0.5


@pytest.mark.parametrize('problem,match', [
    ('missing', 'not found'),
    ('corrupt', 'not a readable checkpoint'),
    ('no fps', r"metadata fps None is not a frame rate"),
    ('bad threshold', r'metadata threshold 2 is not a probability'),
])
def test_bad_weights_files_are_named_with_the_problem(tmp_path, model, problem, match):
    path = tmp_path / 'w.safetensors'
    if problem == 'corrupt':
        path.write_bytes(b'this is not a safetensors file')
    elif problem != 'missing':
        save_collision_model(path, model, {'fps': FPS} if problem == 'bad threshold' else {})
        if problem == 'bad threshold':
            _rewrite_metadata(path, threshold=2)
    with pytest.raises(ModelFileError, match=match) as error:
        load_predictor(str(path), 'cpu')
    assert str(path) in str(error.value)


def _rewrite_metadata(path, **changes):
    from rnn_perception.files import load_checkpoint, save_checkpoint

    tensors, metadata = load_checkpoint(path)
    save_checkpoint(path, tensors, {**metadata, **changes})


# ------------------------------------------------------------------------------------- tiling
def test_tile_maps_layout_and_grey_levels():
    maps = np.stack([np.full((2, 2), -1.0), np.zeros((2, 2)), np.full((2, 2), 1.0)])
    grid = tile_maps(maps, columns=2, cell=4)
    assert grid.shape == (2 * 5 - 1, 2 * 5 - 1) and grid.dtype == np.uint8
    assert (
        (grid[:4, :4] == 0).all() and (grid[:4, 5:] == 127).all() and (grid[5:, :4] == 255).all()
    )
    assert (grid[4, :] == 0).all() and (grid[:, 4] == 0).all()        # 1 px gaps
    assert (grid[5:, 5:] == 0).all()                                  # unused cell stays black


def test_activation_mosaic_shows_every_state_map(model, frames):
    runtime = make_runtime(model)
    runtime.process(image(frames[0], 1.0), 0.0)
    mosaic = activation_mosaic(runtime.engine.state_arrays(), columns=8)
    # two layers x (h, c), 32 channels each -> 4 blocks of 4 rows of 16 px cells, 3 px gaps
    block_height = 4 * 17 - 1
    assert mosaic.dtype == np.uint8
    assert mosaic.shape == (4 * block_height + 3 * 3, 8 * 17 - 1)
    assert mosaic.std() > 0
