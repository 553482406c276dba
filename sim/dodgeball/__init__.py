"""Dodgeball: balls thrown at a robot, seen by its head camera, labelled by the physics.

Modules, in data-flow order: ``config`` (parameters), ``robot`` and ``camera`` (fixed
geometry), ``throws`` and ``scene`` (per-episode random draws), ``world`` (PyBullet),
``episode`` (one throw → one labelled episode), ``generate`` (many episodes → dataset, bag,
preview), ``bag_export``, ``preview``, ``cli``.
"""
