"""What the package's rclpy nodes share: declaring validated parameters, starting the model,
guarding callbacks, ``~/reset``, the ``/diagnostics`` report (:class:`ModelNode`), and their
``main``."""

from __future__ import annotations

import time
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidParameterValueException, ParameterException
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from ..cli import report_error
from ..device import DeviceUnavailableError
from ..models.loading import LoadedModel
from ..models.step_engine import EngineStartError
from ..models.weights_file import ModelFileError
from ..runtime.diagnostics import DiagnosticReport
from ..runtime.parameters import engine_options, parameter_checker, ParameterSpec, Settings

INTERNAL_ERROR_THROTTLE_S = 5.0
WARNING_THROTTLE_S = 5.0        # bad-input warnings, at most one per this many seconds
OUTPUT_DEPTH = 10


class StartupError(RuntimeError):
    """The node cannot start; the message says why (weights file, device or parameter)."""


class ValidatedParameters:
    """Declares a node's parameters with their descriptions and refuses bad values with the
    reason their spec's check gives: at start-up (YAML, command line) the node does not start, at
    run time the old value stays."""

    def __init__(self, node: Node, specs: Iterable[ParameterSpec]):
        self._node, self._specs = node, tuple(specs)
        self._problem = parameter_checker(self._specs)
        self._last_refusal = ''
        # Registered first, so values from YAML / the command line are checked as declared.
        node.add_on_set_parameters_callback(self._validate)

    def declare(self, defaults: Settings) -> Settings:
        """Declare every parameter; ``defaults`` updated with the declared values. Raises
        :class:`StartupError` with the reason of the first refusal."""
        try:
            declared = self._node.declare_parameters(
                '',
                [
                    (
                        spec.name,
                        spec.default,
                        ParameterDescriptor(
                            description=spec.description, read_only=spec.read_only
                        ),
                    )
                    for spec in self._specs
                ],
            )
        except InvalidParameterValueException as error:  # say our own reason, not rclpy's wrapping
            raise StartupError(self._last_refusal or str(error)) from None
        return defaults.updated({parameter.name: parameter.value for parameter in declared})

    def _validate(self, parameters: List[Parameter]) -> SetParametersResult:
        problems = [
            problem for problem in (self._problem(p.name, p.value) for p in parameters) if problem
        ]
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
        warnings = (
            [f'{new} internal error(s) since the last report (last: {self.last_error})']
            if new
            else []
        )
        return warnings, [
            ('internal_errors', str(self.count)),
            ('last_internal_error', self.last_error),
        ]


class ModelNode(Node):
    """Base of the package's model nodes, what the collision and the tactile node share.

    A subclass names its parts as class attributes: ``parameters`` (the specs), ``settings_type``
    (the settings dataclass made from them), ``load_model(weights, device)`` (its runtime
    module's ``load_predictor``) and ``runtime_type``, built as ``runtime_type(loaded model,
    settings)``. The base declares the validated parameters, gives torch ``cpu_threads``, loads
    the weights and builds ``self.runtime`` with its step engine (a problem with any of these
    is a :class:`StartupError`: the node is destroyed and the message says which); gives the
    message callbacks ``self.callback_guard`` (:class:`CallbackGuard`); serves ``~/reset``;
    publishes :meth:`diagnostics_report` on ``/diagnostics`` every ``diagnostics_period_s`` of
    steady time; hands changed parameters to the runtime, then to :meth:`parameters_changed`.
    """

    parameters: Tuple[ParameterSpec, ...] = ()
    settings_type: type = Settings
    load_model: Callable[[str, str], LoadedModel]
    runtime_type: type
    title = 'model'            # the diagnostics status is '<node name>: <title>'
    input_name = 'input'       # what ~/reset's answer calls the next input

    def __init__(self, name: str, **kwargs):
        super().__init__(name, **kwargs)
        try:
            self.settings = ValidatedParameters(self, self.parameters).declare(
                self.settings_type()
            )
            torch.set_num_threads(self.settings.cpu_threads)
            loaded = type(self).load_model(self.settings.weights,
                                           engine_options(self.settings).model_device)
            self.runtime = self.runtime_type(loaded, self.settings)
        except (StartupError, ParameterException, ModelFileError, DeviceUnavailableError,
                EngineStartError) as error:
            self.destroy_node()
            raise StartupError(str(error)) from None
        self.model_path = loaded.path
        if self.runtime.engine.failure:
            self.get_logger().warning(f'degraded at start: {self.runtime.engine.failure}')
        self.callback_guard = CallbackGuard(self.get_logger())
        self._diagnostics_pub = self.create_publisher(
            DiagnosticArray, '/diagnostics', OUTPUT_DEPTH
        )
        self.create_service(Trigger, '~/reset', self._on_reset)
        # Steady time, not the node clock: a paused or absent /clock must not stop the reports.
        self.create_timer(self.settings.diagnostics_period_s, self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.add_post_set_parameters_callback(self._apply_parameters)

    def _apply_parameters(self, parameters: List[Parameter]) -> None:
        self.settings = self.settings.updated({p.name: p.value for p in parameters})
        self.runtime.configure(self.settings)
        self.parameters_changed()

    def parameters_changed(self) -> None:
        """Called once ``self.settings`` changed and the runtime took them; for the node's own
        parts."""

    def log_state(self, result) -> None:
        """Log what a step did to the recurrent state: a device failure (an error) or a reset."""
        if result.device_failure:
            self.get_logger().error(f'{result.device_failure}; answering on the CPU from now on')
        elif result.reset_reason:
            self.get_logger().info(
                f'state reset: {result.reset_reason}', throttle_duration_sec=1.0
            )

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.runtime.reset('~/reset service call')
        self.get_logger().info('state reset: ~/reset service call')
        response.success = True
        response.message = f'recurrent state reset; the next {self.input_name} starts from zeros'
        return response

    def diagnostics_report(self, now_s: float, warnings: List[str],
                           values: Sequence[Tuple[str, str]]) -> DiagnosticReport:
        """The runtime's report at monotonic ``now_s``, with the guard's ``warnings`` and
        ``values``."""
        raise NotImplementedError

    def _publish_diagnostics(self) -> None:
        report = self.diagnostics_report(time.monotonic(), *self.callback_guard.report())
        status = DiagnosticStatus(
            level=bytes([report.level]), name=f'{self.get_fully_qualified_name()}: {self.title}',
            message=report.message, hardware_id=str(self.runtime.device),
            values=[KeyValue(key=key, value=value) for key, value in report.values])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(array)


def spin_until_shutdown(executor: Executor) -> None:
    """Spin ``executor`` until Ctrl-C, SIGTERM or another shutdown of its context.

    rclpy's signal handler shuts the context down from under the executor. Where ``spin`` was at
    that moment decides what surfaces: ``KeyboardInterrupt``, ``ExternalShutdownException``, or,
    when it was about to build its next wait set, an ``RCLError`` (a ``RuntimeError``) saying
    the context is not valid. All three are the shutdown that was asked for; a ``RuntimeError``
    while the context is still valid is a real failure and propagates.
    """
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        if executor.context.ok():
            raise


def run_node(name: str, make_node: Callable[[], Node], args: Optional[List[str]] = None) -> int:
    """``ros2 run rnn_perception <name>``: start the node and spin it until shut down. Exit
    status 0, or 1 with one line ``<name>: error: ...`` when it cannot start."""
    rclpy.init(args=args)
    try:
        node = make_node()
    except StartupError as error:
        rclpy.try_shutdown()
        return report_error(name, error)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        spin_until_shutdown(executor)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
