"""Tactile slip: a bar in a two-finger grasp pivots and slips; a BioTac-like fingertip feels it.

Modules, in data-flow order: ``config`` (parameters), ``physics`` (the grasp's rigid-body and
friction model, equations in its docstring), ``grip`` (random grip-force schedules),
``sensor`` (electrodes, PDC, PAC), ``episode`` (one grasp → one episode), ``generate`` (many
episodes → dataset, bag, preview through ``sim.pipeline``), ``bag_export``, ``preview``,
``cli``.
"""
