"""The collision node's parameters, written once (:class:`~.parameters.ParameterSpec`): the specs,
their checks and the :data:`CollisionSettings` dataclass made from them."""
from __future__ import annotations

from typing import Optional, Tuple

from ..data.camera_frames import IMAGE_TRANSPORTS, RAW_TRANSPORT
from ..ros.reliability import RELIABILITY_CHOICES
from .parameters import (at_least_one, DIAGNOSTICS_PERIOD, finite_above, model_parameters, one_of,
                         parameter_checker, ParameterSpec, settings_class)


USE_MODEL_THRESHOLD = -1.0             # alert_on_threshold: take the weights' own threshold


def _threshold_or_model(value: float) -> Optional[str]:
    if value == USE_MODEL_THRESHOLD or 0.0 <= value <= 1.0:
        return None
    return f"must be in [0, 1], or {USE_MODEL_THRESHOLD:g} for the weights' own threshold"


def _hysteresis(value: float) -> Optional[str]:
    return None if 0.0 <= value < 1.0 else 'must be in [0, 1)'


PARAMETERS: Tuple[ParameterSpec, ...] = (
    *model_parameters(
        'collision',
        '1 is fastest for one small frame per step, more threads only wait '
        'on each other (and on a busy CPU wreck the tail latency)',
    ),
    ParameterSpec(
        'image_transport',
        RAW_TRANSPORT,
        'how the camera is subscribed, as image_transport names it: raw (sensor_msgs/Image on '
        'the image topic) or compressed (sensor_msgs/CompressedImage, JPEG or PNG, on '
        '<image topic>/compressed)',
        one_of(IMAGE_TRANSPORTS),
        read_only=True,
    ),
    ParameterSpec(
        'image_qos',
        'auto',
        "image subscription reliability: auto (match the camera's publishers), reliable "
        'or best_effort',
        one_of(RELIABILITY_CHOICES),
    ),
    ParameterSpec(
        'image_queue_depth',
        1,
        'keep-last depth of the image subscription: 1 = always act on the newest frame (a live '
        'camera: a frame that waits is stale); more = step every frame of a burst, e.g. when '
        'replaying a bag to evaluate (a player that falls behind publishes frames back to back)',
        at_least_one,
        read_only=True,
    ),
    ParameterSpec(
        'reset_gap_s',
        0.5,
        'reset the recurrent state when consecutive frame stamps are further apart (s)',
        finite_above(0.0, inclusive=False),
    ),
    ParameterSpec(
        'max_frame_age_s',
        0.5,
        'drop frames older than this against the node clock (s); 0 = never; frames '
        'stamped on another time base (over an hour off) are never called stale',
        finite_above(0.0, inclusive=True),
    ),
    ParameterSpec(
        'subsample_to_model_rate',
        True,
        "thin frames faster than the weights' training rate down to it (else use all)",
    ),
    ParameterSpec(
        'alert_on_threshold',
        USE_MODEL_THRESHOLD,
        f"probability at which the alert turns on; {USE_MODEL_THRESHOLD:g} = the weights' "
        'calibrated threshold',
        _threshold_or_model,
    ),
    ParameterSpec(
        'alert_hysteresis',
        0.1,
        'the alert turns off only once the probability drops below '
        'alert_on_threshold - alert_hysteresis',
        _hysteresis,
    ),
    ParameterSpec(
        'no_frame_warning_s',
        5.0,
        'warn when a publisher is matched but no frame arrived for this long (s)',
        finite_above(0.0, inclusive=False),
    ),
    DIAGNOSTICS_PERIOD,
)


# Why ``value`` is not acceptable for parameter ``name``, or ``None`` when it is.
parameter_problem = parameter_checker(PARAMETERS)


CollisionSettings = settings_class('CollisionSettings', PARAMETERS, __name__)
