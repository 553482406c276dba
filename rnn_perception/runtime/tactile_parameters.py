"""The tactile node's parameters, written once (:class:`~.parameters.ParameterSpec`): the specs,
their checks and the :data:`TactileSettings` dataclass made from them."""
from __future__ import annotations

from typing import Optional, Tuple

from .parameters import (DIAGNOSTICS_PERIOD, finite_above, model_parameters, parameter_checker,
                         ParameterSpec, settings_class)


def _frame_id(value: str) -> Optional[str]:
    return None if value.strip() else 'must not be empty'


PARAMETERS: Tuple[ParameterSpec, ...] = (
    *model_parameters('tactile', '1 is fastest for one small sample per step'),
    ParameterSpec(
        'frame_id',
        'gripper',
        'frame_id of the published PoseArray (the frame of the input poses)',
        _frame_id,
    ),
    ParameterSpec(
        'reset_gap_s',
        0.1,
        'reset the recurrent state when consecutive sample stamps are further apart (s)',
        finite_above(0.0, inclusive=False),
    ),
    DIAGNOSTICS_PERIOD,
)


# Why ``value`` is not acceptable for parameter ``name``, or ``None`` when it is.
parameter_problem = parameter_checker(PARAMETERS)


TactileSettings = settings_class('TactileSettings', PARAMETERS, __name__)
