"""Tactile slip simulator: physics, sensor model, determinism, dataset, bag, command line."""
import hashlib
import math
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from rnn_perception.data.bags import labelled_array_fields, read_bag, stamp_to_ns
from rnn_perception.data.shards import MANIFEST_NAME
from rnn_perception.data.shards import DatasetError
from rnn_perception.data.tactile_dataset import (load_tactile_dataset, PAC_INDEX, PDC_INDEX,
                                                 POSE_TOPIC, quaternion_angle, TACTILE_FIELDS,
                                                 TACTILE_TOPIC)
from sim.__main__ import main
from sim.tactile.cli import OPTIONS
from sim.tactile.config import load_tactile_config
from sim.tactile.generate import generate
from sim.tactile.physics import GraspDynamics, GraspObject, critical_grip
from sim.tactile.sensor import ContactTrace, tactile_samples

REPO = Path(__file__).resolve().parents[1]
GRAVITY = 9.81
BAR = GraspObject(mass_kg=0.15, length_m=0.2, height_m=0.02, grasp_offset_m=0.06,
                  mu_static=0.8, mu_kinetic=0.7, patch_radius_ref_m=0.006, grip_ref_n=10.0,
                  damping_linear=1.0, damping_angular=0.002)
SHORT = {'episode': {'duration_s': 1.5}}


def hold(grip_n: float, seconds: float, angle: float = 0.0, obj: GraspObject = BAR):
    """Run the bar at a constant grip; return the dynamics and per-step results."""
    dynamics = GraspDynamics(obj, GRAVITY, 1e-3, angle)
    return dynamics, [dynamics.step(grip_n) for _ in range(int(seconds * 1000))]


# --- physics ---------------------------------------------------------------------------------

def test_grip_above_the_friction_limit_holds_the_bar_still():
    critical = critical_grip(BAR, GRAVITY, 0.0, BAR.mu_static)
    # The limit is mu F r_tau against the gravity torque (coupled with the weight): above it...
    force_max, torque_max = BAR.limits(critical * 1.05, BAR.mu_static)
    assert torque_max > BAR.mass_kg * GRAVITY * BAR.grasp_offset_m
    dynamics, results = hold(critical * 1.05, 1.0)
    assert all(result.sticking for result in results)
    assert dynamics.angle == 0.0 and (dynamics.x, dynamics.z) == (BAR.grasp_offset_m, 0.0)


@pytest.mark.parametrize('ratio', [0.9, 0.5, 0.2])
def test_grip_below_the_limit_slips_and_the_bar_pivots_down(ratio):
    critical = critical_grip(BAR, GRAVITY, 0.0, BAR.mu_static)
    assert BAR.limits(critical * ratio, BAR.mu_static)[1] < (
        BAR.mass_kg * GRAVITY * BAR.grasp_offset_m)
    dynamics, results = hold(critical * ratio, 2.0)
    assert not results[0].sticking
    assert dynamics.angle > math.radians(20)  # far end down
    assert 0.0 < np.mean([r.sticking for r in results])  # it stops again once torque falls


def test_energy_never_rises_and_the_angle_stays_bounded():
    critical = critical_grip(BAR, GRAVITY, 0.0, BAR.mu_static)
    dynamics = GraspDynamics(BAR, GRAVITY, 1e-3, math.radians(-10))
    initial = dynamics.energy()
    energies, angles = [], []
    for step in range(4000):  # release, hold low, squeeze again, release again
        grip = critical * (0.3 + 0.8 * abs(math.sin(step / 600)))
        dynamics.step(grip)
        energies.append(dynamics.energy())
        angles.append(dynamics.angle)
    assert max(energies) <= initial + 1e-9
    assert -math.pi < min(angles) and max(angles) < math.pi
    assert abs(dynamics.contact_on_bar()[0]) < BAR.length_m / 2  # still between the pads


def test_the_bar_slides_through_the_fingers_when_the_grip_cannot_carry_its_weight():
    weight_hold = BAR.mass_kg * GRAVITY / (2 * BAR.mu_static)
    start = GraspDynamics(BAR, GRAVITY, 1e-3, math.radians(90)).contact_on_bar()
    held, _ = hold(1.02 * weight_hold, 0.3, angle=math.radians(90))  # hanging: no torque
    assert held.contact_on_bar() == pytest.approx(start)
    dynamics, results = hold(0.9 * weight_hold, 0.3, angle=math.radians(90))
    slide = dynamics.contact_on_bar()[0] - start[0]
    assert not results[-1].sticking and abs(slide) > 0.01  # slid through, along the bar
    assert dynamics.z < held.z - 0.01
    assert dynamics.angle == pytest.approx(math.radians(90), abs=1e-6)


# --- sensor model ----------------------------------------------------------------------------

def constant_trace(slip_speed: float, grip_n: float = 10.0, n: int = 2000) -> ContactTrace:
    """A contact slipping at a constant speed (0: sticking) under a constant grip."""
    wrench = np.tile([0.0, 1.5, -0.05], (n, 1))
    twist = np.tile([0.0, -slip_speed, 0.0], (n, 1))
    return ContactTrace(grip_n=np.full(n, grip_n), wrench=wrench, slip_twist=twist,
                        sticking=np.full(n, slip_speed == 0.0), utilisation=np.full(n, 0.5),
                        patch_radius_m=np.full(n, BAR.patch_radius(grip_n)))


def sense(trace: ContactTrace) -> np.ndarray:
    config = load_tactile_config().sensor
    return tactile_samples(trace, config, 10, 1e-3, np.zeros(21), np.random.default_rng(0))


def test_pac_grows_with_slip_velocity():
    pac = [np.median(sense(constant_trace(speed))[:, PAC_INDEX])
           for speed in (0.0, 0.005, 0.02, 0.08)]
    assert pac == sorted(pac) and pac[-1] > 10 * pac[0]


def test_pdc_follows_the_grip_and_electrodes_feel_the_load():
    weak, strong = sense(constant_trace(0.0, grip_n=5.0)), sense(constant_trace(0.0, 20.0))
    assert np.mean(strong[:, PDC_INDEX]) > np.mean(weak[:, PDC_INDEX]) + 200
    centre = 0  # electrode 0 sits under the contact centre
    assert np.mean(strong[:, centre]) > np.mean(weak[:, centre])
    assert weak.shape == (200, 21) and weak.dtype == np.float32


# --- generated data --------------------------------------------------------------------------

def make(root: Path, name: str, **overrides) -> Path:
    out = root / name
    output = {'out': str(out), **overrides.pop('output', {})}
    config = load_tactile_config(overrides={'episodes': 5, 'seed': 4, 'episodes_per_shard': 2,
                                            **SHORT, **overrides, 'output': output})
    generate(config, progress=False)
    return out


def content_hash(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope='module')
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp('tactile')
    return {'one': make(root, 'one', output={'bag': str(root / 'bag')}),
            'two_workers': make(root, 'two', workers=2),
            'other_seed': make(root, 'other', seed=5), 'root': root}


def test_same_seed_same_bytes_for_any_workers_and_another_seed_differs(datasets):
    reference = content_hash(datasets['one'])
    assert content_hash(datasets['two_workers']) == reference
    assert content_hash(datasets['other_seed']) != reference


def test_dataset_round_trip(datasets):
    dataset = load_tactile_dataset(datasets['one'])
    episodes = list(dataset.episodes())
    assert len(dataset) == 5 and [e.index for e in episodes] == list(range(5))
    assert [shard['episodes'] for shard in dataset.manifest['shards']] == [2, 2, 1]
    assert dataset.manifest['tactile_fields'] == list(TACTILE_FIELDS)
    assert dataset.slip_ratio == pytest.approx(np.mean([e.slipped for e in episodes]))
    arrays = dataset.arrays()
    assert arrays['tactile'].shape == (dataset.num_frames, 21)
    for episode in episodes:
        assert episode.tactile.shape == (150, 21) and episode.tactile.dtype == np.float32
        assert episode.pose.shape == (150, 4) and np.all(episode.pose[:, 1] == 0)
        np.testing.assert_allclose(episode.stamp_s, np.arange(150) / 100.0)
        assert episode.slipped == bool(episode.slipping.any())
        assert np.isinf(episode.slip_onset_s) != episode.slipped
        assert 0 < episode.mu_kinetic <= episode.mu_static and episode.mass_kg > 0
        rows = slice(arrays['episode_offsets'][episode.index],
                     arrays['episode_offsets'][episode.index + 1])
        np.testing.assert_array_equal(arrays['pose'][rows], episode.pose)


def test_reader_rejects_an_incomplete_dataset(datasets, tmp_path):
    with pytest.raises(DatasetError, match='incomplete'):
        load_tactile_dataset(tmp_path)
    dodgeball_like = tmp_path / 'other_kind'
    dodgeball_like.mkdir()
    (dodgeball_like / MANIFEST_NAME).write_text('{"kind": "dodgeball", "schema_version": 1}')
    with pytest.raises(DatasetError, match='expected a tactile dataset'):
        load_tactile_dataset(dodgeball_like)


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_bag_round_trip(datasets, storage, tmp_path):
    if storage == 'mcap':
        bag, dataset = datasets['root'] / 'bag', load_tactile_dataset(datasets['one'])
    else:
        out = make(tmp_path, 'data', episodes=2, output={'bag': str(tmp_path / 'bag'),
                                                         'storage': storage})
        bag, dataset = tmp_path / 'bag', load_tactile_dataset(out)
    messages = defaultdict(list)
    for message in read_bag(bag):
        messages[message.topic].append(message)
    arrays = dataset.arrays()
    tactile, poses = messages[TACTILE_TOPIC], messages[POSE_TOPIC]
    assert len(tactile) == len(poses) == dataset.num_frames
    assert tactile[0].msgtype == 'std_msgs/msg/Float32MultiArray'
    assert list(labelled_array_fields(tactile[0].message)) == list(TACTILE_FIELDS)
    np.testing.assert_array_equal([m.message.data for m in tactile], arrays['tactile'])
    bag_stamps = [m.stamp_ns for m in tactile]
    assert [m.stamp_ns for m in poses] == bag_stamps
    assert [stamp_to_ns(m.message.header.stamp) for m in poses] == bag_stamps
    assert all(np.diff(bag_stamps) > 0)
    assert poses[0].message.header.frame_id == dataset.frame_id == 'gripper'
    pose = [m.message.pose for m in poses]
    np.testing.assert_allclose([[p.position.x, p.position.y, p.position.z] for p in pose],
                               arrays['pose'][:, :3], atol=1e-6)
    angles = [quaternion_angle(p.orientation.x, p.orientation.y, p.orientation.z,
                               p.orientation.w) for p in pose]
    np.testing.assert_allclose(angles, arrays['pose'][:, 3], atol=1e-6)


def test_default_parameters_make_a_slip_problem(tmp_path):
    """Slips in a good share of episodes, announced by falling grip (PDC) before the bar moves."""
    out = make(tmp_path, 'data', episodes=40, seed=0, episodes_per_shard=64,
               episode={'duration_s': 4.0})
    episodes = list(load_tactile_dataset(out).episodes())
    slipped = [e for e in episodes if e.slipped]
    assert 0.35 <= len(slipped) / len(episodes) <= 0.8
    lead = 20  # samples: 0.2 s before the onset
    drops = [e.tactile[max(0, int(e.slip_onset_s * 100) - lead), PDC_INDEX]
             - e.tactile[int(e.slip_onset_s * 100), PDC_INDEX] for e in slipped]
    assert np.median(drops) > 0
    turned = [np.ptp(np.degrees(e.angle_rad)) for e in slipped]
    assert np.median(turned) > 10 and max(turned) < 180


# --- command line ----------------------------------------------------------------------------

def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(['tactile', '--help'])
    assert exit_.value.code == 0
    help_text = ' '.join(capsys.readouterr().out.split())
    assert all(option.flag in help_text for option in OPTIONS)
    assert '(default: 100.0)' in help_text


def test_command_line_writes_dataset_bag_and_preview(tmp_path):
    out, bag, preview = tmp_path / 'data', tmp_path / 'bag', tmp_path / 'preview.png'
    result = subprocess.run(
        [sys.executable, '-m', 'sim', 'tactile', '--episodes', '4', '--duration', '1',
         '--seed', '1', '--out', str(out), '--bag', str(bag), '--storage', 'sqlite3',
         '--preview', str(preview), '--workers', '2'],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert 'wrote 4 episodes (400 samples' in result.stdout
    assert load_tactile_dataset(out).num_episodes == 4
    assert (bag / 'metadata.yaml').is_file()
    assert preview.read_bytes().startswith(b'\x89PNG')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bag', 'data', 'preview.png']


BAD_INPUTS = {
    'zero episodes': (['--episodes', '0'], 1, 'episodes must be at least 1'),
    'zero rate': (['--rate', '0'], 1, 'rate_hz must be positive'),
    'too short': (['--duration', '0.01'], 1, 'duration_s must hold at least 2 samples'),
    'not a number': (['--rate', 'fast'], 2, "invalid float value: 'fast'"),
    'output exists': (['--out', '{tmp}/file.txt'], 1, 'already exists'),
    'bag is the dataset': (['--bag', '{tmp}/data'], 1, 'paths must differ'),
    'unknown key': (['--config', '{tmp}/unknown.yaml'], 1, 'unknown parameter(s) in sensor: x'),
    'bad range': (['--config', '{tmp}/range.yaml'], 1, 'object.mass_kg must be a range'),
}


@pytest.mark.parametrize('argv, status, message', BAD_INPUTS.values(), ids=BAD_INPUTS)
def test_bad_input_is_one_clear_line_and_leaves_nothing(tmp_path, capsys, argv, status, message):
    (tmp_path / 'file.txt').write_text('not a directory')
    (tmp_path / 'unknown.yaml').write_text('sensor: {x: 1}\n')
    (tmp_path / 'range.yaml').write_text('object: {mass_kg: [0.5, 0.1]}\n')
    before = sorted(tmp_path.iterdir())
    argv = [arg.replace('{tmp}', str(tmp_path)) for arg in ['--out', '{tmp}/data', *argv]]
    try:
        got = main(['tactile', '--episodes', '1', *argv])
    except SystemExit as exit_:
        got = exit_.code
    lines = capsys.readouterr().err.splitlines()
    assert got == status
    assert len(lines) == 1 and lines[0].startswith('sim: error: ') and message in lines[0]
    assert sorted(tmp_path.iterdir()) == before


def test_reader_never_imports_the_simulator():
    code = ('import sys, rnn_perception.data.tactile_dataset, rnn_perception.data.bags; '
            'print(sorted(m for m in sys.modules if m.split(".")[0] in ("pybullet", "sim")))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == '[]'
