"""The PyBullet world: floor, backdrop, robot, balls; stepping, contacts and the head camera.

One ``DodgeballWorld`` owns one headless (DIRECT) physics client and is reset from scratch
before every episode, so an episode never depends on what ran before it in the same process.
Rendering uses the CPU TinyRenderer, which is deterministic and needs no display or GPU.
"""
from __future__ import annotations

import tempfile

import cv2
import numpy as np
import pybullet
import pybullet_data
from pybullet_utils.bullet_client import BulletClient

from sim.dodgeball.camera import PinholeCamera
from sim.dodgeball.config import PhysicsConfig
from sim.dodgeball.randomisation import Clutter, PLAIN_VARIATION, SceneVariation
from sim.dodgeball.robot import ROBOT, RobotBody
from sim.dodgeball.scene import ROBOT_RGBA, SceneLook
from sim.dodgeball.throws import Throw
from sim.native_output import native_stdout_silenced

# A wall far behind the throwers fills the view above the floor with a per-episode colour.
BACKDROP_DISTANCE_M = 14.0
BACKDROP_HALF_EXTENTS_M = (0.1, 20.0, 8.0)
BACKDROP_TEXTURE_REPEATS = (3, 6)    # (rows, columns) of a texture on the 16 x 40 m face


class DodgeballWorld:
    """A headless PyBullet world with a fixed robot at the origin and a camera on its head."""

    def __init__(self, camera: PinholeCamera, physics: PhysicsConfig, time_step_s: float, *,
                 shadows: bool = False, robot: RobotBody = ROBOT):
        self.camera = camera
        self.time_step_s = time_step_s
        self._physics = physics
        self._shadows = shadows
        self._robot_shape = robot
        with native_stdout_silenced():  # connecting prints pybullet's argv
            self._client = BulletClient(connection_mode=pybullet.DIRECT)
        self._client.setAdditionalSearchPath(pybullet_data.getDataPath())
        self._textures_loaded = 0
        self._matrices: dict[PinholeCamera, tuple] = {}   # this episode's cameras
        self._variation = PLAIN_VARIATION
        self._look: SceneLook | None = None
        self.floor = self.robot = -1

    def reset(self, look: SceneLook, variation: SceneVariation = PLAIN_VARIATION) -> None:
        """Empty the world and rebuild floor, backdrop and robot in the colours of ``look``,
        with ``variation``'s textures, clutter and light (:mod:`sim.dodgeball.randomisation`)."""
        sim = self._client
        sim.resetSimulation()
        self._matrices.clear()
        sim.setPhysicsEngineParameter(fixedTimeStep=self.time_step_s,
                                      deterministicOverlappingPairs=1)
        sim.setGravity(0, 0, -self._physics.gravity_mps2)
        self._look = look
        self.floor = sim.loadURDF('plane.urdf')
        sim.changeVisualShape(self.floor, -1, rgbaColor=look.floor_rgba)
        backdrop = sim.createVisualShape(pybullet.GEOM_BOX, halfExtents=BACKDROP_HALF_EXTENTS_M,
                                         rgbaColor=look.backdrop_rgba)
        backdrop = sim.createMultiBody(0, -1, backdrop,
                                       [BACKDROP_DISTANCE_M, 0, BACKDROP_HALF_EXTENTS_M[2]])
        self.robot = self._build_robot()
        self._variation = variation
        if variation.floor_texture is not None:
            self._apply_texture(self.floor, variation.floor_texture)
        if variation.backdrop_texture is not None:
            # A box face takes its texture once: repeat it so a pattern cell is about a metre
            self._apply_texture(backdrop, np.tile(variation.backdrop_texture,
                                                  BACKDROP_TEXTURE_REPEATS + (1,)))
        for item in variation.clutter:
            self._add_clutter(item)

    def _apply_texture(self, body: int, rgb: np.ndarray) -> None:
        """Paint ``body`` with an RGB texture. pybullet loads textures from files and caches
        them by file name, so every texture gets a name of its own. The file is gone once
        loaded: a pool worker is terminated without cleaning up after itself."""
        self._textures_loaded += 1
        with tempfile.NamedTemporaryFile(prefix=f'dodgeball-texture{self._textures_loaded}-',
                                         suffix='.png') as file:
            cv2.imwrite(file.name, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            texture = self._client.loadTexture(file.name)
        self._client.changeVisualShape(body, -1, textureUniqueId=texture,
                                       rgbaColor=[1.0, 1.0, 1.0, 1.0])

    def _add_clutter(self, item: Clutter) -> None:
        sim = self._client
        half_x, half_y, half_z = item.half_extents_m
        if item.cylinder:
            radius = max(half_x, half_y)
            shape = {'shapeType': pybullet.GEOM_CYLINDER, 'radius': radius}
            visual = sim.createVisualShape(**shape, length=2 * half_z, rgbaColor=item.rgba)
            collision = sim.createCollisionShape(**shape, height=2 * half_z)
        else:
            shape = {'shapeType': pybullet.GEOM_BOX, 'halfExtents': item.half_extents_m}
            visual = sim.createVisualShape(**shape, rgbaColor=item.rgba)
            collision = sim.createCollisionShape(**shape)
        sim.createMultiBody(0, collision, visual, [*item.position_m, half_z])

    def _build_robot(self) -> int:
        """The robot as one static body of three primitive shapes."""
        robot = self._robot_shape
        torso_length = robot.torso_top_m - robot.base_height_m
        shapes = {
            'shapeTypes': [pybullet.GEOM_CYLINDER, pybullet.GEOM_CYLINDER, pybullet.GEOM_SPHERE],
            'radii': [robot.base_radius_m, robot.torso_radius_m, robot.head_radius_m],
            'lengths': [robot.base_height_m, torso_length, 0.0],
        }
        centres = [[0, 0, robot.base_height_m / 2],
                   [0, 0, robot.base_height_m + torso_length / 2],
                   [0, 0, robot.head_centre_height_m]]
        collision = self._client.createCollisionShapeArray(**shapes,
                                                           collisionFramePositions=centres)
        visual = self._client.createVisualShapeArray(**shapes, visualFramePositions=centres)
        body = self._client.createMultiBody(0, collision, visual, [0, 0, 0])
        self._client.changeVisualShape(body, -1, rgbaColor=ROBOT_RGBA)
        self._client.changeDynamics(body, -1, restitution=self._physics.ball_restitution)
        return body

    def launch(self, throw: Throw, rgba) -> int:
        """Add a ball in flight as ``throw`` says; return its body id."""
        sim = self._client
        collision = sim.createCollisionShape(pybullet.GEOM_SPHERE, radius=throw.radius_m)
        visual = sim.createVisualShape(pybullet.GEOM_SPHERE, radius=throw.radius_m, rgbaColor=rgba)
        ball = sim.createMultiBody(self._physics.ball_mass_kg, collision, visual,
                                   throw.start_m.tolist())
        # No air drag: the launch velocity comes from a drag-free ballistic solve.
        sim.changeDynamics(ball, -1, linearDamping=0.0, angularDamping=0.0,
                           restitution=self._physics.ball_restitution)
        sim.resetBaseVelocity(ball, throw.velocity_mps.tolist(), throw.spin_radps.tolist())
        return ball

    def ignore_collisions(self, body_a: int, body_b: int) -> None:
        """Let two bodies pass through each other (a distractor never deflects the ball)."""
        self._client.setCollisionFilterPair(body_a, body_b, -1, -1, enableCollision=0)

    def step(self) -> None:
        """Advance the physics by one time step."""
        self._client.stepSimulation()

    def touching(self, body_a: int, body_b: int) -> bool:
        """Whether the two bodies pushed on each other in the last step.

        Bullet also reports nearby points (within its contact margin) and resolves fast
        approaches before any penetration, so "touching" means a positive normal force, not
        a negative distance.
        """
        contacts = self._client.getContactPoints(bodyA=body_a, bodyB=body_b)
        return any(contact[9] > 0.0 for contact in contacts)  # [9]: normal force

    def ball_state(self, ball: int) -> tuple[np.ndarray, np.ndarray]:
        """Centre position (m) and linear velocity (m/s) of a ball, world frame."""
        position, _ = self._client.getBasePositionAndOrientation(ball)
        velocity, _ = self._client.getBaseVelocity(ball)
        return np.array(position), np.array(velocity)

    def _view_and_projection(self, camera: PinholeCamera) -> tuple:
        """The OpenGL view and projection matrices of ``camera``, computed once per episode
        (a camera may be jittered from one episode to the next, never within one)."""
        if camera not in self._matrices:
            self._matrices[camera] = (
                self._client.computeViewMatrix(camera.position_m,
                                               camera.look_at_target().tolist(),
                                               camera.up_vector().tolist()),
                self._client.computeProjectionMatrixFOV(camera.vertical_fov_deg,
                                                        camera.width / camera.height,
                                                        camera.near_m, camera.far_m))
        return self._matrices[camera]

    def render(self, camera: PinholeCamera | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The (H, W, 3) uint8 RGB image of ``camera`` (default: the head camera) and its
        [0, 1] OpenGL depth buffer."""
        look, camera = self._look, camera or self.camera
        view, projection = self._view_and_projection(camera)
        _, _, rgba, zbuffer, _ = self._client.getCameraImage(
            camera.width, camera.height, view, projection,
            renderer=pybullet.ER_TINY_RENDERER, flags=pybullet.ER_NO_SEGMENTATION_MASK,
            shadow=int(self._shadows), lightDirection=look.light_direction,
            lightAmbientCoeff=look.light_ambient, lightDiffuseCoeff=look.light_diffuse,
            lightColor=list(self._variation.light_rgb))
        shape = (camera.height, camera.width)
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(*shape, 4)
        zbuffer = np.asarray(zbuffer, dtype=np.float32).reshape(shape)
        return rgb[..., :3].copy(), zbuffer

    def close(self) -> None:
        """Disconnect the physics client."""
        self._client.disconnect()
