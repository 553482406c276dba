"""What the package's rclpy nodes share: declaring validated parameters, and their ``main``."""
from __future__ import annotations

import sys
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

import rclpy
import torch
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterValueException, ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter

from ..models.weights_file import ModelFileError
from ..runtime.common import ParameterSpec, Settings
from ..training.utils import DeviceUnavailableError

INTERNAL_ERROR_THROTTLE_S = 5.0


class StartupError(RuntimeError):
    """The node cannot start; the message says why (weights file, device or parameter)."""


class ValidatedParameters:
    """Declares a node's parameters with their descriptions and refuses bad values with the
    reason ``problem(name, value)`` gives: at start-up (YAML, command line) the node does not
    start, at run time the old value stays."""

    def __init__(self, node: Node, specs: Iterable[ParameterSpec], problem: Callable[[str, object], Optional[str]]):
        self._node, self._specs, self._problem = node, tuple(specs), problem
        self._last_refusal = ''
        # Registered first, so values from YAML / the command line are checked as declared.
        node.add_on_set_parameters_callback(self._validate)

    def declare(self, defaults: Settings) -> Settings:
        """Declare every parameter; ``defaults`` updated with the declared values. Raises
        :class:`StartupError` with the reason of the first refusal."""
        try:
            declared = self._node.declare_parameters('', [
                (spec.name, spec.default, ParameterDescriptor(description=spec.description, read_only=spec.read_only))
                for spec in self._specs])
        except InvalidParameterValueException as error:   # say our own reason, not rclpy's wrapping
            raise StartupError(self._last_refusal or str(error)) from None
        return defaults.updated({parameter.name: parameter.value for parameter in declared})

    def _validate(self, parameters: List[Parameter]) -> SetParametersResult:
        problems = [problem for problem in (self._problem(p.name, p.value) for p in parameters) if problem]
        self._last_refusal = '; '.join(problems)
        return SetParametersResult(successful=not problems, reason=self._last_refusal)


class CallbackGuard:
    """The last line of defence of a node's message callbacks: ``with guard:`` around one
    callback's work swallows any exception, counts it and logs it (throttled) with its text.

    The runtimes classify bad input themselves (rejected, with a reason); what reaches this is a
    bug, and a perception node that dies on one message is worse than one that skips it.
    """

    def __init__(self, logger):
        self._logger = logger
        self.count = 0
        self.last_error = 'none'
        self._reported = 0

    def __enter__(self) -> 'CallbackGuard':
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if not isinstance(error, Exception):
            return False          # KeyboardInterrupt, SystemExit and the like still stop the node
        self.count += 1
        self.last_error = f'{kind.__name__}: {error}'
        self._logger.error(f'internal error on a message, message skipped: {self.last_error}',
                           throttle_duration_sec=INTERNAL_ERROR_THROTTLE_S)
        return True

    def report(self) -> Tuple[List[str], Sequence[Tuple[str, str]]]:
        """For the next diagnostics report: (warnings since the last call, key/values)."""
        new, self._reported = self.count - self._reported, self.count
        warnings = [f'{new} internal error(s) since the last report (last: {self.last_error})'] if new else []
        return warnings, [('internal_errors', str(self.count)), ('last_internal_error', self.last_error)]


def start_model(node: Node, specs: Iterable[ParameterSpec], problem: Callable[[str, object], Optional[str]],
                defaults: Settings, load_predictor: Callable[[str, str], Tuple[Any, ...]]) -> Tuple[Any, ...]:
    """A model node's start: declare its validated parameters, give torch ``cpu_threads`` and
    load the weights; ``(settings, *load_predictor(weights, device))``. On any problem the node
    is destroyed and :class:`StartupError` says which."""
    try:
        settings = ValidatedParameters(node, specs, problem).declare(defaults)
        torch.set_num_threads(settings.cpu_threads)
        return (settings, *load_predictor(settings.weights, settings.device))
    except (StartupError, ParameterException, ModelFileError, DeviceUnavailableError) as error:
        node.destroy_node()
        raise StartupError(str(error)) from None


def run_node(name: str, make_node: Callable[[], Node], args: Optional[List[str]] = None) -> int:
    """``ros2 run rnn_perception <name>``: start the node and spin it until shut down. Exit
    status 0, or 1 with one line ``<name>: error: ...`` when it cannot start."""
    rclpy.init(args=args)
    try:
        node = make_node()
    except StartupError as error:
        print(f'{name}: error: {error}', file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
