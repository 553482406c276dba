"""Random grip-force schedules: hold, release ramps, re-grips, squeezes, tremor.

Levels are multiples of the episode's *critical grip* F_c, the smallest grip whose static
friction ellipse holds the bar at its initial angle (``physics.critical_grip``):

* every episode starts holding at ``initial_safety`` x F_c;
* with ``release_probability`` the grip ramps down (over ``release_ramp_s``) to
  ``release_level`` x F_c. Below 1 the bar slips, but not at once: the ramp is gradual, so
  the load on the contact (and the sensor's precursors, see ``sensor``) build up first.
  Levels just above 1 are near misses: high load, micro-slip, no gross slip. After
  ``dwell_s`` the gripper re-grips (``regrip_probability``) by ramping up to
  ``regrip_level`` x F_c, and may release again after another hold;
* the other episodes only squeeze (grip up to ``squeeze_level`` x F_c and back), so a changing
  grip alone does not mean slip;
* the grip never falls below ``weight_margin`` x m g / (2 μ_k), the force that carries the
  weight on its own, so the bar pivots and slides but is never dropped;
* a slow multiplicative tremor (relative std ``tremor``, 10 Hz knots) rides on everything;
* with ``reflex_probability`` the gripper has a slip reflex: ``reflex_delay_s`` after the
  first slip it re-grips (ramp ``regrip_ramp_s`` up to ``regrip_level`` x F_c), so slips end
  after a random, bounded rotation instead of always swinging the bar down.

The schedule is piecewise linear between knots; :meth:`GripSchedule.at` evaluates it and
:meth:`GripSchedule.reflex_grip` adds the reflex once the physics reports the slip.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.tactile.config import GripConfig

HOLD, RELEASE = 0, 1  # schedule kinds stored per episode
_TREMOR_KNOT_S = 0.1


@dataclass(frozen=True)
class GripSchedule:
    """Grip force (N) as a piecewise-linear function of time, tremor included."""

    times_s: np.ndarray
    forces_n: np.ndarray
    tremor_times_s: np.ndarray
    tremor: np.ndarray
    floor_n: float
    kind: int
    reflex: tuple[float, float, float] | None  # delay (s), ramp (s), level (N), if any

    def at(self, t: np.ndarray) -> np.ndarray:
        """Grip force at times ``t`` (s)."""
        base = np.interp(t, self.times_s, self.forces_n)
        return np.maximum(base * (1.0 + np.interp(t, self.tremor_times_s, self.tremor)),
                          self.floor_n)

    def reflex_grip(self, t: np.ndarray, grip_n: np.ndarray, onset_s: float) -> np.ndarray:
        """``grip_n`` at times ``t`` with the reflex re-grip after a slip at ``onset_s``."""
        if self.reflex is None:
            return grip_n
        delay, ramp, level = self.reflex
        start = onset_s + delay
        after = t > start
        if not after.any():
            return grip_n
        from_n = float(np.interp(start, t, grip_n))
        ramp_n = from_n + (level - from_n) * np.clip((t - start) / ramp, 0.0, 1.0)
        return np.where(after, np.maximum(grip_n, ramp_n), grip_n)


def _uniform(rng: np.random.Generator, bounds) -> float:
    return float(rng.uniform(*bounds))


def sample_grip_schedule(rng: np.random.Generator, config: GripConfig, critical_n: float,
                         weight_hold_n: float, duration_s: float) -> GripSchedule:
    """A random schedule over ``[-1 s, duration_s + 1 s]`` for a bar of critical grip
    ``critical_n`` whose weight alone needs ``weight_hold_n``."""
    floor = config.weight_margin * weight_hold_n
    current = max(critical_n * _uniform(rng, config.initial_safety), floor)
    knots = [(-1.0, current)]
    t = _uniform(rng, config.release_start_s)
    kind = RELEASE if rng.random() < config.release_probability else HOLD
    while t < duration_s:
        if kind == RELEASE:
            low = max(critical_n * _uniform(rng, config.release_level), floor)
            t_low = t + _uniform(rng, config.release_ramp_s)
            knots += [(t, current), (t_low, low)]
            t = t_low + _uniform(rng, config.dwell_s)
            current = low
            if rng.random() >= config.regrip_probability:
                break
            high = critical_n * _uniform(rng, config.regrip_level)
        else:
            low = current
            high = critical_n * _uniform(rng, config.squeeze_level)
        t_high = t + _uniform(rng, config.regrip_ramp_s)
        knots += [(t, current), (t_high, high)]
        current = high
        t = t_high + _uniform(rng, config.release_start_s)
        if kind == HOLD:  # squeeze: back down to where it was after a while
            t_back = t + _uniform(rng, config.regrip_ramp_s)
            knots += [(t, high), (t_back, low)]
            current = low
            t = t_back + _uniform(rng, config.release_start_s)
    knots.append((max(t, duration_s) + 1.0, current))
    times, forces = np.array(knots).T
    tremor_times = np.arange(-1.0, duration_s + 1.0 + _TREMOR_KNOT_S, _TREMOR_KNOT_S)
    tremor = config.tremor * rng.standard_normal(len(tremor_times))
    reflex = (_uniform(rng, config.reflex_delay_s), _uniform(rng, config.regrip_ramp_s),
              critical_n * _uniform(rng, config.regrip_level))
    if rng.random() >= config.reflex_probability:
        reflex = None
    return GripSchedule(times, forces, tremor_times, tremor, floor, kind, reflex)
