"""The tactile node's logic without ROS: pairing, bad input, resets, stepping, diagnostics,
parameters."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rnn_perception.data.tactile_dataset import TACTILE_FIELDS, angle_quaternion
from rnn_perception.evaluation.tactile import stepped_predictions
from rnn_perception.models.tactile import TactileConfig, TactilePredictor, save_tactile_model
from rnn_perception.models.weights_file import ModelFileError
from rnn_perception.runtime.diagnostics import DIAGNOSTIC_OK, DIAGNOSTIC_WARN
from rnn_perception.runtime.tactile import load_predictor, Outcome, TactileRuntime
from rnn_perception.runtime.tactile_parameters import parameter_problem, PARAMETERS
from rnn_perception.runtime.tactile_diagnostics import TactileDiagnostics
from rnn_perception.runtime.tactile_input import BadInput, pose_fields, tactile_values
from rnn_perception.runtime.tactile_parameters import TactileSettings
from rnn_perception.models.loading import LoadedModel
from rnn_perception.models.torch_engine import TactileTorchEngine
from test_tactile_model import NORMALISATION, make_model

CONFIG = TactileConfig(hidden_size=8, num_layers=2, head_size=6, horizon=5)
PERIOD_NS = 10_000_000


def tactile_message(values):
    return SimpleNamespace(data=np.asarray(values, np.float32))


def pose_message(stamp_ns, pose):
    (x, y, z), (qx, qy, qz, qw) = pose_fields(pose)
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return SimpleNamespace(
        header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec)),
        pose=SimpleNamespace(
            position=SimpleNamespace(x=x, y=y, z=z),
            orientation=SimpleNamespace(x=qx, y=qy, z=qz, w=qw),
        ),
    )


def samples(count, seed=0):
    rng = np.random.default_rng(seed)
    tactile = (2500 + 50 * rng.standard_normal((count, 21))).astype(np.float32)
    angle = np.cumsum(0.003 * rng.standard_normal(count))
    poses = np.stack([0.04 + 0.01 * angle, 0 * angle, -0.01 + 0.01 * angle, angle], 1).astype(
        np.float32
    )
    return tactile, poses


@pytest.fixture
def runtime():
    return TactileRuntime(LoadedModel(make_model(CONFIG), {'rate_hz': 100.0}, None,
                                      torch.device('cpu')), TactileSettings())


def reference(runtime) -> TactileTorchEngine:
    """An engine of its own on the runtime's model, for what the runtime must answer."""
    return TactileTorchEngine(runtime.model, torch.device('cpu'))


def feed(runtime, tactile, poses, start_ns=1_000_000_000):
    results = []
    for k, (values, pose) in enumerate(zip(tactile, poses)):
        results.append(runtime.on_tactile(tactile_message(values), 0.0))
        results.append(runtime.on_pose(pose_message(start_ns + k * PERIOD_NS, pose), 0.0))
    return results


def test_paired_samples_step_like_the_offline_evaluation(runtime):
    tactile, poses = samples(12)
    results = feed(runtime, tactile, poses)
    assert [r.outcome for r in results] == [Outcome.WAITING, Outcome.PROCESSED] * 12
    processed = [r for r in results if r.outcome is Outcome.PROCESSED]
    assert [r.stamp_ns for r in processed] == [1_000_000_000 + k * PERIOD_NS for k in range(12)]
    offline = stepped_predictions(reference(runtime), tactile, poses)
    # the pose goes through a quaternion and back: float32 rounding of the angle only
    np.testing.assert_allclose(np.stack([r.poses for r in processed]), offline, atol=1e-5)
    assert runtime.counters.processed == 12 and runtime.latency.percentile_ms(99) > 0


@pytest.mark.parametrize('bad,reason', [
    ([1.0] * 20, 'holds 20 values, expected 21'),
    ([], 'holds 0 values'),
    ([1.0] * 20 + [math.nan], 'non-finite values at [20]'),
    ([math.inf] + [1.0] * 20, 'non-finite values at [0]'),
    ([1.0] * 3 + [-3e38] + [1.0] * 17, 'values beyond +-1e+06 at [3]'),
])
def test_bad_tactile_arrays_are_counted_and_skipped_with_their_sample_keeping_the_state(
    runtime, bad, reason
):
    tactile, poses = samples(5)
    feed(runtime, tactile[:2], poses[:2])
    state = runtime.state
    result = runtime.on_tactile(tactile_message(bad), 0.0)
    assert result.outcome is Outcome.REJECTED and reason in result.error
    assert (
        runtime.state is state and runtime.counters.rejected == 1 and runtime.counters.resets == 0
    )
    assert (
        runtime.on_pose(pose_message(1_020_000_000, poses[2]), 0.0).outcome is Outcome.WAITING
    )  # its sample's
    assert runtime.pairer.unpaired == 1
    later = feed(runtime, tactile[3:], poses[3:], start_ns=1_030_000_000)
    assert [r.outcome for r in later].count(
        Outcome.PROCESSED
    ) == 2  # it keeps serving good samples
    # ... as if the bad array and its sample had never come
    good = np.concatenate([tactile[:2], tactile[3:]]), np.concatenate([poses[:2], poses[3:]])
    expected = stepped_predictions(reference(runtime), *good)[2:]
    np.testing.assert_allclose(
        np.stack([r.poses for r in later if r.poses is not None]), expected, atol=1e-5
    )


def labelled(values, labels, offset=0):
    dimension = SimpleNamespace(
        label=labels, size=len(values) - offset, stride=len(values) - offset
    )
    return SimpleNamespace(
        layout=SimpleNamespace(dim=[dimension] if labels is not None else [], data_offset=offset),
        data=np.asarray(values, np.float32),
    )


def test_the_tactile_layout_is_honoured():
    values = np.arange(21, dtype=np.float32)
    fields = ','.join(TACTILE_FIELDS)
    for message in (labelled(values, fields), labelled(values, None), labelled(values, 'taxels'),
                    labelled(np.concatenate([[9.0, 9.0], values]), fields, offset=2)):
        np.testing.assert_array_equal(tactile_values(message), values)
    swapped = ','.join(TACTILE_FIELDS[:-2] + ('pac', 'pdc'))
    with pytest.raises(
        BadInput, match=f'tactile array fields {swapped} are not the expected {fields}'
    ):
        tactile_values(labelled(values, swapped))
    with pytest.raises(BadInput, match='holds 19 values'):
        tactile_values(labelled(values, None, offset=2))


def test_bad_poses_are_rejected(runtime):
    message = pose_message(1_000_000_000, [0.0, 0.0, 0.0, 0.1])
    message.pose.position.x = math.nan
    assert runtime.on_pose(message, 0.0).error == 'pose holds non-finite values'
    message = pose_message(1_000_000_000, [0.0, 0.0, 0.0, 0.1])
    message.pose.orientation = SimpleNamespace(x=0.0, y=0.0, z=0.0, w=0.0)
    assert runtime.on_pose(message, 0.0).error == 'pose orientation is a zero quaternion'
    message = pose_message(1_000_000_000, [0.0, 0.0, 2e4, 0.1])
    assert runtime.on_pose(message, 0.0).error == 'pose position (0, 0, 20000) is beyond +-10000 m'
    assert runtime.counters.rejected == 3


def test_a_lost_message_costs_one_sample_and_the_next_pair_up(runtime):
    tactile, poses = samples(4)
    runtime.on_pose(pose_message(1_000_000_000, poses[0]), 0.0)  # its tactile array was lost
    runtime.on_tactile(tactile_message(tactile[1]), 0.0)                     # its pose was lost
    runtime.on_tactile(tactile_message(tactile[2]), 0.0)
    result = runtime.on_pose(pose_message(1_020_000_000, poses[2]), 0.0)
    assert result.outcome is Outcome.PROCESSED and result.stamp_ns == 1_020_000_000
    assert runtime.pairer.unpaired == 2
    expected = stepped_predictions(reference(runtime), tactile[2:3], poses[2:3])[0]
    np.testing.assert_allclose(result.poses, expected, atol=1e-5)


def test_stamp_gaps_and_stamps_going_back_reset_the_state(runtime):
    tactile, poses = samples(6)
    feed(runtime, tactile[:3], poses[:3])
    gap = feed(runtime, tactile[3:4], poses[3:4], start_ns=2_000_000_000)[-1]
    assert gap.reset_reason.startswith('stamp gap') and runtime.counters.resets == 1
    back = feed(runtime, tactile[4:5], poses[4:5], start_ns=1_500_000_000)[-1]
    assert back.reset_reason.startswith('stamps went backwards')
    fresh = TactileRuntime(LoadedModel(runtime.model, {'rate_hz': 100.0}, None,
                                       torch.device('cpu')), TactileSettings())
    np.testing.assert_allclose(
        back.poses, feed(fresh, tactile[4:5], poses[4:5])[-1].poses, atol=1e-6
    )


def test_unstamped_poses_take_the_node_clock(runtime):
    tactile, poses = samples(1)
    runtime.on_tactile(tactile_message(tactile[0]), 5.0)
    assert runtime.on_pose(pose_message(0, poses[0]), 5.0).stamp_ns == 5_000_000_000


def test_diagnostics_report_rates_counters_and_problems(runtime):
    diagnostics = TactileDiagnostics(runtime)
    diagnostics.report(0.0)
    tactile, poses = samples(10)
    feed(runtime, tactile, poses)
    ok = diagnostics.report(2.0)
    values = dict(ok.values)
    assert (
        ok.level == DIAGNOSTIC_OK
        and values['rate_hz'] == '5.00'
        and values['samples_processed'] == '10'
    )
    runtime.on_tactile(tactile_message([]), 0.0)
    warned = diagnostics.report(3.0)
    assert warned.level == DIAGNOSTIC_WARN and '1 message(s) rejected' in warned.message


def test_every_parameter_is_described_and_checked():
    assert all(spec.description for spec in PARAMETERS)
    assert (
        parameter_problem('reset_gap_s', 0.0)
        == 'reset_gap_s=0.0 refused: must be a finite number > 0'
    )
    assert parameter_problem('device', 'tpu').startswith("device='tpu' refused: must be one of")
    assert parameter_problem('frame_id', ' ') == "frame_id=' ' refused: must not be empty"
    assert parameter_problem('cpu_threads', 0) == 'cpu_threads=0 refused: must be >= 1'
    assert parameter_problem('reset_gap_s', 0.2) is None


def test_load_predictor_checks_the_metadata(tmp_path):
    model = TactilePredictor(CONFIG)
    model.set_normalisation(NORMALISATION)
    path = tmp_path / 'no_rate.safetensors'
    save_tactile_model(path, model, {})
    with pytest.raises(ModelFileError, match='metadata rate_hz None is not a sample rate'):
        load_predictor(str(path), 'cpu')
    save_tactile_model(path, model, {'rate_hz': 100.0})
    assert load_predictor(str(path), 'cpu')[1]['rate_hz'] == 100.0
    with pytest.raises(ModelFileError, match='not found'):
        load_predictor(str(tmp_path / 'missing.safetensors'), 'cpu')


def test_pose_fields_turn_the_angle_into_a_quaternion_about_y():
    position, quaternion = pose_fields([1.0, 0.0, 2.0, 0.3])
    assert position == (1.0, 0.0, 2.0) and quaternion == pytest.approx(angle_quaternion(0.3))
