r"""Rigid-body model of a bar held in a two-finger pinch that pivots and slips as the grip loosens.

Frames and state
----------------
Gripper frame: origin at the centre C of the two fingertip contacts, **y along the grasp
axis** (the pads' normal, finger to finger), z up against gravity, x completing a right-handed
frame (the bar points roughly along +x when held level). The bar (length L, height h in the
x-z plane, mass m, uniform) stays in the x-z plane between the pads, so it has three degrees
of freedom: the position p = (x, z) of its centre O and its angle θ about +y. Its axis points
along e(θ) = (cos θ, -sin θ) in (x, z): θ = 0 is level, θ > 0 tips the far end down,
θ = π/2 hangs it straight down. Initially the bar is held a distance d from its centre
(p = d e(θ0)), so gravity pulls it round the grasp.

Generalised velocity q̇ = (v_x, v_z, ω) with ω = θ̇; mass matrix M = diag(m, m, I),
I = m (L² + h²) / 12. With r = C - p (from the centre to the contact), the twist of the bar's
material at C (slip velocity and spin) is

    ξ = (v_C, ω) = J q̇,    J = [[1, 0, r_z], [0, 1, -r_x], [0, 0, 1]],

and a wrench w = (f_x, f_z, τ) applied at C acts on the bar as J^T w (a force at C plus a
couple about y).

Friction: the soft-finger limit surface
---------------------------------------
Each finger presses with the grip force F (the bar's weight is carried by friction alone).
A Hertzian patch of radius a = a_ref (F / F_ref)^{1/3} resists sliding with up to μF and
spinning with up to (3π/16) μ F a, so the two contacts together hold any wrench inside the
ellipse (the elliptic limit surface of soft-finger contacts)

    (|f| / F_max)² + (τ / T_max)² ≤ 1,   F_max = 2 μ F,   T_max = μ F r_τ,   r_τ = (3π/8) a,

with μ = μ_s (static) while the contact sticks and μ = μ_k < μ_s while it slips. Holding the
bar at rest takes f = (0, m g) and τ = -m g (p_x - C_x) = -m g d cos θ: the classic
comparison of the gravity torque m g d cos θ with the friction limit μ F r_τ, coupled with the
weight. Sliding friction obeys maximal dissipation on the (kinetic) ellipse: the twist is
normal to it, ξ ∝ (f / F_max², τ / T_max²), which also gives **translational slip** (the
bar sliding through the fingers) together with the pivoting. On top of Coulomb friction the
sliding skin adds viscous damping w_d = -(b_v v_C, b_ω ω).

Time stepping (velocity level, implicit friction)
-------------------------------------------------
With step Δt and the other forces g = (0, -m g, 0) + J^T w_d:

    q̇* = q̇ + Δt M⁻¹ g                          free motion
    W = J M⁻¹ J^T,   p_stop = -W⁻¹ J q̇*          contact impulse that stops the contact
    stick  if ‖D⁻¹ p_stop‖ ≤ 1,  D = Δt diag(F_max, F_max, T_max):   p = p_stop
    slip   otherwise: p = D u*,  u* = argmin_{‖u‖≤1} ½ (D u - p_stop)^T W (D u - p_stop)
    q̇ ← q̇* + M⁻¹ J^T p,   q ← q + Δt q̇                (semi-implicit Euler)

The slip case is the exact maximal-dissipation friction impulse of the step (a 3×3
trust-region problem, solved in the eigenbasis of D W D by Newton's method on 1/‖u‖), so the
friction never overshoots and stick/slip switching needs no velocity threshold. A sticking
contact is tested against the static ellipse and a slipping one against the kinetic one, so
slip, once started, lasts until the kinetic friction stops it (stick-slip hysteresis). The
gripper is fixed and the normal force does no work, so the bar's energy
E = ½ m |v|² + ½ I ω² + m g p_z never rises: the pose stays bounded.

Limitation: the bar is assumed to stay between the pads. Grip schedules never drop below the
force that carries the weight alone (see ``sim.tactile.grip``), so translational slip stays
a few millimetres to centimetres; ``max_slide_m`` per episode records how far C wandered on
the bar.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HERTZ_TORSION = 3 * math.pi / 16  # spin friction of one Hertzian patch: HERTZ_TORSION μ N a


@dataclass(frozen=True)
class GraspObject:
    """The bar and its contact with the fingers."""

    mass_kg: float
    length_m: float
    height_m: float
    grasp_offset_m: float      # d: distance from the bar's centre to the grasp, along its axis
    mu_static: float
    mu_kinetic: float
    patch_radius_ref_m: float  # a_ref at grip force F_ref
    grip_ref_n: float          # F_ref
    damping_linear: float      # b_v (N s / m)
    damping_angular: float     # b_ω (N m s / rad)

    @property
    def inertia(self) -> float:
        """Moment of inertia about the centre, axis y."""
        return self.mass_kg * (self.length_m ** 2 + self.height_m ** 2) / 12.0

    def patch_radius(self, grip_n: float) -> float:
        """Hertzian contact radius a at grip force ``grip_n``."""
        return self.patch_radius_ref_m * (max(grip_n, 0.0) / self.grip_ref_n) ** (1.0 / 3.0)

    def limits(self, grip_n: float, mu: float) -> tuple[float, float]:
        """(F_max, T_max) of the two contacts at grip force ``grip_n``."""
        force = max(grip_n, 0.0)
        return 2.0 * mu * force, mu * force * 2.0 * HERTZ_TORSION * self.patch_radius(force)


def holding_wrench(obj: GraspObject, gravity: float, centre_x: float) -> np.ndarray:
    """(f_x, f_z, τ) the contacts at C must apply to hold the bar, centre at x = ``centre_x``,
    at rest."""
    weight = obj.mass_kg * gravity
    return np.array([0.0, weight, -weight * centre_x])


def utilisation(wrench: np.ndarray, force_max: float, torque_max: float) -> float:
    """Where ``wrench`` lies relative to the limit ellipse (1 = on it)."""
    if force_max <= 0 or torque_max <= 0:
        return math.inf
    return math.hypot(math.hypot(wrench[0], wrench[1]) / force_max, wrench[2] / torque_max)


def critical_grip(obj: GraspObject, gravity: float, angle: float, mu: float) -> float:
    """Smallest grip force whose ``mu`` ellipse holds the bar at rest at ``angle``."""
    wrench = holding_wrench(obj, gravity, obj.grasp_offset_m * math.cos(angle))
    low, high = 1e-6, 1.0
    while utilisation(wrench, *obj.limits(high, mu)) > 1:
        high *= 2.0
    for _ in range(60):  # utilisation falls monotonically with the grip
        middle = 0.5 * (low + high)
        low, high = (middle, high) if utilisation(wrench, *obj.limits(middle, mu)) > 1 else (
            low, middle)
    return high


def _trust_region(a_matrix: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmin_{|u| <= 1} ½ uᵀAu - bᵀu for SPD ``a_matrix`` whose free minimum has |u| > 1."""
    eigenvalues, basis = np.linalg.eigh(a_matrix)
    c = basis.T @ b
    mu = 0.0
    for _ in range(50):
        shifted = eigenvalues + mu
        norm = math.sqrt(float(np.sum((c / shifted) ** 2)))
        if abs(norm - 1.0) < 1e-12:
            break
        derivative = float(np.sum(c ** 2 / shifted ** 3)) / norm ** 3
        mu = max(mu - (1.0 / norm - 1.0) / derivative, 0.0)  # Newton on 1/|u| - 1
    u = basis @ (c / (eigenvalues + mu))
    return u / max(1.0, float(np.linalg.norm(u)))


@dataclass
class StepResult:
    """What the contact did during one physics step."""

    sticking: bool
    wrench: tuple[float, float, float]      # friction + damping on the bar at C: f_x, f_z, τ
    slip_twist: tuple[float, float, float]  # v_C,x, v_C,z, ω after the step
    utilisation: float                      # holding wrench vs the static ellipse (>1: slips)


class GraspDynamics:
    """The bar's state and the implicit friction step (see the module docstring).

    Written with scalars: W⁻¹ J = J^{-T} M, so the stopping impulse is -J^{-T} M q̇* without a
    3×3 solve; only slipping steps build W for the trust-region problem.
    """

    def __init__(self, obj: GraspObject, gravity: float, time_step: float, angle: float):
        self.obj = obj
        self.gravity = gravity
        self.dt = time_step
        self.x = obj.grasp_offset_m * math.cos(angle)
        self.z = -obj.grasp_offset_m * math.sin(angle)
        self.angle = float(angle)
        self.v_x = self.v_z = self.omega = 0.0
        self.sticking = True

    def energy(self) -> float:
        """Kinetic plus potential energy (J), potential zero at z = 0."""
        obj = self.obj
        return (0.5 * obj.mass_kg * (self.v_x ** 2 + self.v_z ** 2)
                + 0.5 * obj.inertia * self.omega ** 2 + obj.mass_kg * self.gravity * self.z)

    def contact_on_bar(self) -> tuple[float, float]:
        """C in the bar's own frame: (along its axis, across it), metres from its centre."""
        r_x, r_z = -self.x, -self.z
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        return r_x * cos - r_z * sin, r_x * sin + r_z * cos

    def slip_twist(self) -> tuple[float, float, float]:
        """Current twist of the bar's material at C: v_C,x, v_C,z, ω."""
        r_x, r_z = -self.x, -self.z
        return self.v_x + r_z * self.omega, self.v_z - r_x * self.omega, self.omega

    def step(self, grip_n: float) -> StepResult:
        """Advance one time step under grip force ``grip_n``."""
        obj, dt = self.obj, self.dt
        mass, inertia = obj.mass_kg, obj.inertia
        r_x, r_z = -self.x, -self.z
        # Damping wrench at C from the current slip twist, then the free velocity q̇*.
        t_x, t_z, t_w = self.slip_twist()
        d_x, d_z, d_w = (-obj.damping_linear * t_x, -obj.damping_linear * t_z,
                         -obj.damping_angular * t_w)
        free_x = self.v_x + dt * d_x / mass
        free_z = self.v_z + dt * (d_z / mass - self.gravity)
        free_w = self.omega + dt * (r_z * d_x - r_x * d_z + d_w) / inertia
        # p_stop = -J^{-T} M q̇*.
        p_x, p_z = -mass * free_x, -mass * free_z
        p_w = -(inertia * free_w - r_z * mass * free_x + r_x * mass * free_z)
        static = obj.limits(grip_n, obj.mu_static)
        kinetic = obj.limits(grip_n, obj.mu_kinetic)
        force_max, torque_max = static if self.sticking else kinetic
        if force_max > 0 and torque_max > 0 and (
                (p_x ** 2 + p_z ** 2) / force_max ** 2 + p_w ** 2 / torque_max ** 2
                <= dt * dt):
            sticking = True
            self.v_x = self.v_z = self.omega = 0.0
        else:
            sticking = False
            p_x, p_z, p_w = self._slip_impulse((p_x, p_z, p_w), kinetic, r_x, r_z)
            self.v_x = free_x + p_x / mass
            self.v_z = free_z + p_z / mass
            self.omega = free_w + (r_z * p_x - r_x * p_z + p_w) / inertia
        self.x += dt * self.v_x
        self.z += dt * self.v_z
        self.angle += dt * self.omega
        self.sticking = sticking
        weight = mass * self.gravity
        holding = math.hypot(weight / static[0], weight * self.x / static[1]) if (
            static[0] > 0) else math.inf
        return StepResult(sticking=sticking, wrench=(p_x / dt + d_x, p_z / dt + d_z,
                                                     p_w / dt + d_w),
                          slip_twist=self.slip_twist(), utilisation=holding)

    def _slip_impulse(self, stop_impulse, kinetic, r_x: float, r_z: float):
        """The maximal-dissipation impulse on the kinetic ellipse (trust-region problem)."""
        force_max, torque_max = kinetic
        if force_max <= 0 or torque_max <= 0:
            return 0.0, 0.0, 0.0
        inv_m, inv_i = 1.0 / self.obj.mass_kg, 1.0 / self.obj.inertia
        w_matrix = np.array([
            [inv_m + inv_i * r_z * r_z, -inv_i * r_z * r_x, inv_i * r_z],
            [-inv_i * r_z * r_x, inv_m + inv_i * r_x * r_x, -inv_i * r_x],
            [inv_i * r_z, -inv_i * r_x, inv_i]])
        scale = self.dt * np.array([force_max, force_max, torque_max])
        a_matrix = scale[:, None] * w_matrix * scale[None, :]
        impulse = scale * _trust_region(a_matrix, scale * (w_matrix @ np.asarray(stop_impulse)))
        return float(impulse[0]), float(impulse[1]), float(impulse[2])
