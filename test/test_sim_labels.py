"""The dodgeball labels agree with the physics and with analytic ballistics (real PyBullet)."""
import numpy as np
import pytest

from sim.dodgeball.config import load_dodgeball_config
from sim.dodgeball.episode import EpisodeClock, EpisodeSimulator, head_camera, run_throw
from sim.dodgeball.robot import ROBOT
from sim.dodgeball.scene import sample_look
from sim.dodgeball.throws import Throw, aim_point, aimed_throw, launch_velocity
from sim.dodgeball.world import DodgeballWorld

CONFIG = load_dodgeball_config(overrides={'camera': {'image_size': 16}})
GRAVITY = CONFIG.physics.gravity_mps2
CLOCK = EpisodeClock(CONFIG.camera.fps, CONFIG.physics.steps_per_frame(CONFIG.camera.fps))
TORSO_MIDDLE_M = (ROBOT.base_height_m + ROBOT.torso_top_m) / 2

# (release point, flight time to the aim point): straight, from the side, a lob, a fast one.
THROWS = [((6.0, 0.0, 1.5), 0.9), ((5.0, -2.0, 1.0), 0.8), ((8.0, 1.5, 2.0), 1.4),
          ((4.0, 0.5, 1.2), 0.5)]
BALL_RADIUS_M = 0.1


@pytest.fixture(scope='module')
def world():
    world = DodgeballWorld(head_camera(CONFIG), CONFIG.physics, CLOCK.time_step_s)
    yield world
    world.close()


def simulate(world, throw: Throw, seed: int = 0):
    """Run one throw in a seeded random look."""
    return run_throw(world, throw, sample_look(np.random.default_rng(seed)), CLOCK, CONFIG.episode)


def analytic_first_touch_s(throw: Throw) -> float:
    """First time the drag-free ball surface reaches the torso cylinder (fine time grid)."""
    t = np.arange(0.0, 3.0, 1e-4)
    drop = np.outer(0.5 * GRAVITY * t**2, [0, 0, 1])
    centre = throw.start_m + np.outer(t, throw.velocity_mps) - drop
    from_axis = np.linalg.norm(centre[:, :2], axis=1)
    at_torso_height = (centre[:, 2] > ROBOT.base_height_m) & (centre[:, 2] < ROBOT.torso_top_m)
    touching = at_torso_height & (from_axis <= ROBOT.torso_radius_m + throw.radius_m)
    return float(t[np.argmax(touching)]) if touching.any() else np.inf


@pytest.mark.parametrize('start, flight_time_s', THROWS)
def test_launch_velocity_reaches_the_target_after_the_flight_time(start, flight_time_s):
    target = np.array([0.1, -0.3, 0.9])
    velocity = launch_velocity(np.array(start), target, flight_time_s, GRAVITY)
    arrival = start + velocity * flight_time_s - [0, 0, 0.5 * GRAVITY * flight_time_s**2]
    np.testing.assert_allclose(arrival, target, atol=1e-12)


@pytest.mark.parametrize('offset_m', [-1.0, 0.0, 0.35])
def test_aim_offset_is_the_miss_distance_from_the_torso_axis(offset_m):
    start = np.array([5.0, 2.0, 1.5])
    target = aim_point(start, 0.8, offset_m)
    line = (target - start)[:2] / np.linalg.norm((target - start)[:2])
    # The aim point is the flight line's closest approach to the axis (the origin, from above).
    assert np.dot(target[:2], line) == pytest.approx(0.0, abs=1e-12)
    assert np.linalg.norm(target[:2]) == pytest.approx(abs(offset_m))
    assert target[2] == 0.8


@pytest.mark.parametrize('start, flight_time_s', THROWS)
def test_ball_aimed_at_torso_centre_hits_when_ballistics_say(world, start, flight_time_s):
    throw = aimed_throw(start, TORSO_MIDDLE_M, 0.0, flight_time_s, BALL_RADIUS_M, GRAVITY,
                        aimed_at_robot=True)
    episode = simulate(world, throw)
    expected = analytic_first_touch_s(throw)
    assert episode.hit
    # Contact is checked after every physics step and Bullet reports it one step after the
    # surfaces meet: allow one step early to three late.
    assert -1 <= (episode.contact_time_s - expected) / CLOCK.time_step_s <= 3
    assert episode.time_to_contact_s[0] == pytest.approx(episode.contact_time_s)


@pytest.mark.parametrize('start, flight_time_s', THROWS)
@pytest.mark.parametrize('side', [-1.0, 1.0])
def test_ball_aimed_one_metre_wide_misses(world, start, flight_time_s, side):
    throw = aimed_throw(start, TORSO_MIDDLE_M, side * 1.0, flight_time_s, BALL_RADIUS_M, GRAVITY,
                        aimed_at_robot=False)
    episode = simulate(world, throw)
    assert not episode.hit
    assert episode.contact_time_s == np.inf
    assert np.all(episode.time_to_contact_s == np.inf)


def test_time_to_contact_decreases_by_one_frame_period_per_frame(world):
    start, flight_time_s = THROWS[0]
    throw = aimed_throw(start, TORSO_MIDDLE_M, 0.0, flight_time_s, BALL_RADIUS_M, GRAVITY,
                        aimed_at_robot=True)
    episode = simulate(world, throw)
    period = 1.0 / CONFIG.camera.fps
    np.testing.assert_allclose(episode.stamp_s, np.arange(episode.num_frames) * period)
    np.testing.assert_allclose(np.diff(episode.time_to_contact_s), -period, atol=1e-12)
    # It crosses zero once; the episode ends tail_after_contact_s (±1 frame) after contact.
    after_contact = episode.time_to_contact_s < 0
    assert after_contact.any() and not after_contact[0]
    assert -episode.time_to_contact_s[-1] == pytest.approx(
        CONFIG.episode.tail_after_contact_s, abs=period)


def test_ground_truth_follows_ballistic_flight_before_contact(world):
    start, flight_time_s = THROWS[2]
    throw = aimed_throw(start, TORSO_MIDDLE_M, 0.0, flight_time_s, BALL_RADIUS_M, GRAVITY,
                        aimed_at_robot=True)
    episode = simulate(world, throw)
    before = episode.time_to_contact_s > 0
    t = episode.stamp_s[before][:, None]
    expected_position = throw.start_m + throw.velocity_mps * t - [0, 0, 0.5 * GRAVITY] * t**2
    expected_velocity = throw.velocity_mps - [0, 0, GRAVITY] * t
    # Semi-implicit Euler at 240 Hz drifts by about g*dt*t/2 (< 3 cm over 1.4 s).
    np.testing.assert_allclose(episode.ball_position[before], expected_position, atol=0.03)
    np.testing.assert_allclose(episode.ball_velocity[before], expected_velocity, atol=1e-3)


@pytest.mark.parametrize('on_optical_axis', [True, False])
def test_camera_intrinsics_match_the_rendered_ball(on_optical_axis):
    config = load_dodgeball_config(overrides={'camera': {'image_size': 64}})
    camera = head_camera(config)
    world = DodgeballWorld(camera, config.physics, CLOCK.time_step_s)
    look = sample_look(np.random.default_rng(3))
    centre = np.asarray(camera.position_m) + 3.0 * camera.world_from_optical()[:, 2]
    if not on_optical_axis:
        centre = np.array([3.0, -0.8, 0.9])
    ball = Throw(start_m=centre, velocity_mps=np.zeros(3), spin_radps=np.zeros(3), radius_m=0.2,
                 aim_offset_m=0.0, aimed_at_robot=False)
    world.reset(look)
    world.launch(ball, (1.0, 0.0, 0.0, 1.0))
    with_ball, _ = world.render()
    world.reset(look)
    without_ball, _ = world.render()
    world.close()
    rows, cols = np.nonzero(np.any(with_ball != without_ball, axis=2))
    (u, v), = camera.project(centre)
    # On the axis the disc is symmetric about the principal point; off it, perspective
    # shifts the disc's centroid a little from the projected centre.
    tolerance_px = 0.05 if on_optical_axis else 0.4
    assert cols.mean() == pytest.approx(u, abs=tolerance_px)
    assert rows.mean() == pytest.approx(v, abs=tolerance_px)


def test_sampled_throws_give_a_balanced_mix_labelled_by_physics():
    simulator = EpisodeSimulator(load_dodgeball_config(overrides={'camera': {'image_size': 8}}))
    episodes = [simulator(index) for index in range(40)]
    simulator.close()
    hits = np.array([episode.hit for episode in episodes])
    aimed = np.array([episode.aimed_at_robot for episode in episodes])
    assert 0.3 <= hits.mean() <= 0.7
    assert (hits == aimed).mean() >= 0.9
    durations = [episode.stamp_s[-1] for episode in episodes]
    assert 0.5 <= min(durations) and max(durations) <= CONFIG.episode.max_duration_s
