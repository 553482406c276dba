"""One throw → one labelled episode.

Timeline: frame k is rendered at sim time ``k / fps``, frame 0 at the release. Between two
frames the physics advances a whole number of fixed steps and the ball–robot contact is
checked after every step, so ``contact_time_s`` has the physics step's resolution
(1/240 s by default) rather than the camera's.

An episode stops at the first frame that is ``tail_after_contact_s`` past the first contact,
or, without contact, once the ball has passed behind the robot or touched the floor, or at
``max_duration_s``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from rnn_perception.data.dodgeball_dataset import DodgeballEpisode
from sim.dodgeball.camera import PinholeCamera
from sim.dodgeball.config import DodgeballConfig, EpisodeConfig
from sim.dodgeball.randomisation import PLAIN_VARIATION, sample_variation, SceneVariation
from sim.dodgeball.robot import ROBOT
from sim.dodgeball.scene import SceneLook, sample_look
from sim.dodgeball.throws import AimKind, Throw, sample_throw
from sim.dodgeball.world import DodgeballWorld
from sim.pipeline import episode_rng


def head_camera(config: DodgeballConfig) -> PinholeCamera:
    """The robot's head camera as configured."""
    camera = config.camera
    return PinholeCamera(width=camera.image_size, height=camera.image_size,
                         vertical_fov_deg=camera.vertical_fov_deg, near_m=camera.near_m,
                         far_m=camera.far_m, position_m=ROBOT.camera_position_m,
                         pitch_deg=camera.pitch_deg)


def bag_camera(config: DodgeballConfig) -> PinholeCamera | None:
    """The camera the bag records when it has a resolution of its own: the head camera at that
    size, same vertical field of view (so its centre square is the dataset's view); else
    None (the bag records the dataset's frames)."""
    if config.bag_camera.resolution is None:
        return None
    width, height = config.bag_camera.resolution
    return dataclasses.replace(head_camera(config), width=width, height=height)


def jittered(camera: PinholeCamera, variation: SceneVariation) -> PinholeCamera:
    """``camera`` moved and turned by ``variation``'s camera jitter (itself when there is
    none)."""
    if variation is PLAIN_VARIATION:
        return camera
    x, y, z = camera.position_m
    return dataclasses.replace(
        camera, position_m=(x, y, z + variation.camera_height_offset_m),
        pitch_deg=camera.pitch_deg + variation.camera_pitch_offset_deg,
        vertical_fov_deg=camera.vertical_fov_deg + variation.camera_fov_offset_deg)


@dataclass(frozen=True)
class EpisodeClock:
    """Camera frames and physics steps on one sim clock."""

    fps: float
    steps_per_frame: int

    @property
    def frame_period_s(self) -> float:
        """Time between camera frames."""
        return 1.0 / self.fps

    @property
    def time_step_s(self) -> float:
        """Physics time step."""
        return self.frame_period_s / self.steps_per_frame


class FrameLog:
    """What the camera (and the bag's camera, if any) and the ground truth saw, frame by
    frame."""

    def __init__(self, camera: PinholeCamera, with_depth: bool,
                 bag_camera: PinholeCamera | None = None):
        self._camera = camera
        self._with_depth = with_depth
        self._bag_camera = bag_camera
        self.images, self.depths, self.positions, self.velocities = [], [], [], []
        self.bag_images = []

    def record(self, world: DodgeballWorld, ball: int) -> None:
        """Render the current frame and log the ball's state."""
        rgb, zbuffer = world.render()
        position, velocity = world.ball_state(ball)
        self.images.append(rgb)
        if self._bag_camera is not None:
            self.bag_images.append(world.render(self._bag_camera)[0])
        if self._with_depth:
            self.depths.append(self._camera.metric_depth(zbuffer))
        self.positions.append(position)
        self.velocities.append(velocity)

    def __len__(self) -> int:
        return len(self.images)


def run_throw(world: DodgeballWorld, throw: Throw, look: SceneLook, clock: EpisodeClock,
              stop: EpisodeConfig, *, index: int = 0, with_depth: bool = False,
              distractor: Throw | None = None, bag_camera: PinholeCamera | None = None,
              variation: SceneVariation = PLAIN_VARIATION) -> DodgeballEpisode:
    """Simulate ``throw`` (and an optional distractor ball) in a scene of ``look`` and
    ``variation`` and label what happened; with a ``bag_camera``, also render its frames for the
    bag."""
    world.reset(look, variation)
    ball = world.launch(throw, look.ball_rgba)
    if distractor is not None:
        world.ignore_collisions(ball, world.launch(distractor, look.distractor_rgba))
    log = FrameLog(world.camera, with_depth, bag_camera)
    max_frames = int(stop.max_duration_s * clock.fps) + 1
    contact_step = None
    landed = False
    step = 0
    for frame in range(max_frames):
        log.record(world, ball)
        contact_time = None if contact_step is None else contact_step * clock.time_step_s
        if _episode_over(frame * clock.frame_period_s, contact_time, landed,
                         ball_x=log.positions[-1][0], stop=stop):
            break
        for _ in range(clock.steps_per_frame):
            world.step()
            step += 1
            if contact_step is None and world.touching(ball, world.robot):
                contact_step = step
            landed = landed or world.touching(ball, world.floor)
    return _label(log, throw, clock, contact_step, index, distractor is not None)


def _episode_over(now_s: float, contact_time_s: float | None, landed: bool, ball_x: float,
                  stop: EpisodeConfig) -> bool:
    """Whether the frame just recorded is the episode's last."""
    if contact_time_s is not None:
        return now_s >= contact_time_s + stop.tail_after_contact_s
    return landed or ball_x < -stop.passed_margin_m


def _label(log: FrameLog, throw: Throw, clock: EpisodeClock, contact_step: int | None,
           index: int, has_distractor: bool) -> DodgeballEpisode:
    """Turn a frame log and the contact step into an episode with labels."""
    stamps = np.arange(len(log)) * clock.frame_period_s
    contact_time = np.inf if contact_step is None else contact_step * clock.time_step_s
    return DodgeballEpisode(
        index=index, frames=np.stack(log.images),
        depth=np.stack(log.depths) if log.depths else None,
        stamp_s=stamps, time_to_contact_s=contact_time - stamps,
        ball_position=np.stack(log.positions), ball_velocity=np.stack(log.velocities),
        hit=contact_step is not None, contact_time_s=contact_time,
        ball_radius_m=throw.radius_m, launch_speed_mps=throw.speed_mps,
        aim_offset_m=throw.aim_offset_m, aimed_at_robot=throw.aimed_at_robot,
        has_distractor=has_distractor,
        bag_frames=np.stack(log.bag_images) if log.bag_images else None)


class EpisodeSimulator:
    """Makes episode ``i`` from the config and ``i`` alone, whichever process calls it.

    Episode ``i`` draws from :func:`sim.pipeline.episode_rng` of the seed and ``i`` and runs
    in a freshly reset world.
    """

    def __init__(self, config: DodgeballConfig):
        self._config = config
        fps = config.camera.fps
        self._clock = EpisodeClock(fps, config.physics.steps_per_frame(fps))
        self._head_camera = head_camera(config)
        self._world = DodgeballWorld(self._head_camera, config.physics, self._clock.time_step_s,
                                     shadows=config.camera.shadows)
        self._bag_camera = bag_camera(config)

    def __call__(self, index: int) -> DodgeballEpisode:
        config = self._config
        variation = sample_variation(config.randomisation.scene, config.seed, index)
        self._world.camera = jittered(self._head_camera, variation)
        bag_camera = None if self._bag_camera is None else jittered(self._bag_camera, variation)
        rng = episode_rng(config.seed, index)
        gravity = config.physics.gravity_mps2
        look = sample_look(rng)
        throw = sample_throw(rng, config.throw, gravity)
        distractor = None
        if rng.random() < config.throw.distractor_probability:
            distractor = sample_throw(rng, config.throw, gravity, kind=AimKind.WIDE_MISS)
        return run_throw(self._world, throw, look, self._clock, config.episode, index=index,
                         with_depth=config.camera.depth, distractor=distractor,
                         bag_camera=bag_camera, variation=variation)

    def close(self) -> None:
        """Release the physics client."""
        self._world.close()
