"""The one parameter mechanism of every node: a table of parameters, declared, validated, tunable.

Each node lists its parameters as :class:`Param` rows in a :class:`ParamTable`. The table

* declares them on the node with descriptors (description, range or choices, read-only
  unless the row is ``runtime``) and validates the start-up values (:class:`ConfigError`
  says which parameter and what is allowed);
* keeps the run-time ones tunable: :meth:`ParamTable.watch` rejects a bad
  ``set_parameters`` value with a reason (the old value stays), hands accepted changes
  to the node and logs them in batches (:class:`ChangeLog`: one line per 2 s at most, where
  1,000 changes in 8 s wrote 1,007 lines). Start-up-only parameters are read-only and their
  descriptions say so;
* takes a whole number for a double parameter (:meth:`ParamTable.coerce`), at start-up
  (YAML, ``-p``, launch files) and at run time: ROS 2 types ``0`` as an integer, and
  ``prompt_timeout: 0`` or ``ros2 param set ... box_margin 1000`` must not stop the node or
  be refused. The parameter stays a double (``ros2 param get`` says so). A whole number for
  a text parameter is its digits (``-p classes:=0``).

The validation itself (:meth:`ParamTable.problem`, :meth:`ParamTable.validate`) is plain
Python, so it is unit-tested without ROS. Each node's table sits beside it: the sensor
node's in ``sensor_params.py`` (with its typed config, built from the table), the others in
their own files.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

RUNTIME_NOTE = " [run-time: set_parameters]"
STARTUP_NOTE = " [start-up only: restart the node to change it]"


class ConfigError(ValueError):
    """A parameter value is invalid; the message names it and the allowed values."""


@dataclass(frozen=True)
class Param:
    """One parameter: name, default (its type is the parameter's type), description and rules.

    limits: ``(low, high)`` for numbers, a tuple of allowed strings for a choice (or a function
        returning one, read when asked: the backend names come from the registry), or None.
    runtime: True when ``set_parameters`` may change it while the node runs.
    check: an extra rule, returning the reason a value is refused (or None).
    """

    name: str
    default: Any
    description: str
    limits: tuple | Callable[[], tuple] | None = None
    runtime: bool = False
    check: Callable[[Any], str | None] | None = None

    @property
    def choices(self) -> tuple[str, ...] | None:
        if callable(self.limits):
            return tuple(self.limits())
        if self.limits and all(isinstance(v, str) for v in self.limits):
            return tuple(self.limits)
        return None


class ChangeLog:
    """Accepted parameter changes as log lines: the first at once, then at most one per ``period_s``
    with every change since (the latest value of each parameter and how many changes). ROS-free:
    the caller passes the time and logs what comes back."""

    MAX_NAMES = 12  # names in one line; more are counted

    def __init__(self, period_s: float = 2.0):
        self.period_s = period_s
        self._pending: dict[str, Any] = {}
        self._changes = 0
        self._last = -math.inf

    def add(self, changes: Mapping[str, Any], now: float) -> str | None:
        self._pending.update(changes)
        self._changes += len(changes)
        return self.flush(now)

    def flush(self, now: float) -> str | None:
        """The line to log now, or None (nothing pending, or the last line is too recent)."""
        if not self._pending or now - self._last < self.period_s:
            return None
        names = list(self._pending.items())
        shown = ", ".join(f"{k}={v}" for k, v in names[: self.MAX_NAMES])
        if len(names) > self.MAX_NAMES:
            shown += f", and {len(names) - self.MAX_NAMES} more"
        extra = ""
        if self._changes > len(names):
            extra = f" ({self._changes} changes since the last line; the latest values)"
        self._pending, self._changes, self._last = {}, 0, now
        return f"parameters changed{extra}: {shown}"


class ParamTable:
    """An ordered set of :class:`Param` plus an optional rule across parameters."""

    def __init__(
        self,
        params: Sequence[Param],
        cross_check: Callable[[Mapping[str, Any]], str | None] | None = None,
    ):
        self.params = {p.name: p for p in params}
        self.cross_check = cross_check

    def defaults(self) -> dict[str, Any]:
        return {name: p.default for name, p in self.params.items()}

    def runtime_names(self) -> list[str]:
        return [name for name, p in self.params.items() if p.runtime]

    def coerce(self, name: str, value: Any) -> Any:
        """``value`` as the parameter's type where that is lossless: an integer for a double
        parameter becomes that double, an integer for a text parameter its digits; anything
        else is returned as it is (and :meth:`problem` says what is wrong with it)."""
        param = self.params.get(name)
        if param is None or isinstance(value, bool) or not isinstance(value, int):
            return value
        if isinstance(param.default, float):
            return float(value)
        if isinstance(param.default, str):
            return str(value)
        return value

    def problem(self, name: str, value: Any) -> str | None:
        """Why ``value`` is not allowed for ``name``, or None when it is."""
        param = self.params.get(name)
        if param is None:
            return f"unknown parameter '{name}'"
        default = param.default
        if isinstance(default, bool):
            if not isinstance(value, bool):
                return f"parameter '{name}' must be true or false, got {value!r}"
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                return f"parameter '{name}' must be an integer, got {value!r}"
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return f"parameter '{name}' must be a finite number, got {value!r}"
        elif isinstance(default, str) and not isinstance(value, str):
            return f"parameter '{name}' must be a string, got {value!r}"
        choices = param.choices
        if choices is not None and value not in choices:
            return f"parameter '{name}' is {value!r}; allowed: {', '.join(choices)}"
        if param.limits and choices is None:
            low, high = param.limits
            if not low <= value <= high:
                return f"parameter '{name}' is {value!r}; allowed range [{low}, {high}]"
        return param.check(value) if param.check is not None else None

    def validate(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Every value (defaults for the missing ones) checked; raises ConfigError on the first problem."""
        merged = self.defaults()
        merged.update({k: self.coerce(k, v) for k, v in values.items() if k in self.params})
        for name, value in merged.items():
            reason = self.problem(name, value)
            if reason is not None:
                raise ConfigError(reason)
        if self.cross_check is not None:
            reason = self.cross_check(merged)
            if reason is not None:
                raise ConfigError(reason)
        return merged

    # --- rclpy side ----------------------------------------------------------------------------
    def declare(self, node) -> dict[str, Any]:
        """Declare every parameter on ``node`` with a descriptor; the validated start-up values."""
        from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
        from rclpy.exceptions import InvalidParameterTypeException

        values: dict[str, Any] = {}
        for name, param in self.params.items():
            descriptor = ParameterDescriptor(
                description=param.description + (RUNTIME_NOTE if param.runtime else STARTUP_NOTE),
                read_only=not param.runtime,
            )
            default = param.default
            if param.choices is not None:
                descriptor.additional_constraints = "one of: " + ", ".join(param.choices)
            elif param.limits and isinstance(default, int) and not isinstance(default, bool):
                low, high = param.limits
                descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=0)]
            elif param.limits and isinstance(default, float):
                low, high = param.limits
                descriptor.floating_point_range = [
                    FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)
                ]
            try:
                try:
                    values[name] = node.declare_parameter(name, default, descriptor).value
                except InvalidParameterTypeException:
                    values[name] = self._declare_coerced(node, name, descriptor)
            except ConfigError:
                raise
            except Exception as exc:  # out of range from the command line / YAML
                raise ConfigError(f"parameter '{name}': {exc}") from exc
        return self.validate(values)

    def _declare_coerced(self, node, name: str, descriptor) -> Any:
        """Declare ``name`` whose start-up value (YAML, ``-p``) rclpy refused for its type.

        rclpy offers no public view of the start-up values, so the value is read by declaring
        the parameter once without a type; it is then declared for good, typed, with the value
        :meth:`coerce` makes of it, or refused with the reason.
        """
        from rcl_interfaces.msg import ParameterDescriptor

        default = self.params[name].default
        given = node.declare_parameter(name, default, ParameterDescriptor(dynamic_typing=True)).value
        node.undeclare_parameter(name)
        value = self.coerce(name, given)
        if type(value) is not type(default):
            reason = self.problem(name, given) or f"parameter '{name}': {given!r} has the wrong type"
            raise ConfigError(reason)
        return node.declare_parameter(name, value, descriptor, ignore_override=True).value

    def watch(self, node, current: Callable[[], Mapping[str, Any]],
              on_change: Callable[[dict[str, Any]], None]) -> None:
        """Validate ``set_parameters`` calls on ``node``; accepted changes go to ``on_change``
        and to the log, batched (:class:`ChangeLog`, flushed on a wall-clock timer).

        ``current`` returns the values in force (to check rules across parameters). A refused
        value keeps the old one and the caller gets the reason.
        """
        from rcl_interfaces.msg import SetParametersResult
        from rclpy.clock import Clock, ClockType
        from rclpy.parameter import Parameter

        change_log = ChangeLog()

        def log_changes(line: str | None) -> None:
            if line is not None:
                node.get_logger().info(line)

        def validate_callback(parameters) -> SetParametersResult:
            merged = dict(current())
            for parameter in parameters:
                param = self.params.get(parameter.name)
                if param is None:
                    continue  # use_sim_time and friends: rclpy's business
                # Start-up-only parameters never get here: rclpy refuses read-only ones itself.
                reason = self.problem(parameter.name, parameter.value)
                if reason is not None:
                    return SetParametersResult(successful=False, reason=reason)
                merged[parameter.name] = parameter.value
            if self.cross_check is not None:
                reason = self.cross_check(merged)
                if reason is not None:
                    return SetParametersResult(successful=False, reason=reason)
            return SetParametersResult(successful=True)

        def coerce_callback(parameters) -> list:
            # Before rclpy's type check: `ros2 param set ... prompt_timeout 0` sends an integer.
            out = []
            for parameter in parameters:
                value = self.coerce(parameter.name, parameter.value)
                same = type(value) is type(parameter.value)
                out.append(parameter if same else Parameter(parameter.name, value=value))
            return out

        def changed_callback(parameters) -> None:
            changes = {p.name: p.value for p in parameters if p.name in self.params}
            if changes:
                on_change(changes)
                log_changes(change_log.add(changes, time.monotonic()))

        node.add_pre_set_parameters_callback(coerce_callback)
        node.add_on_set_parameters_callback(validate_callback)
        node.add_post_set_parameters_callback(changed_callback)
        node.create_timer(change_log.period_s, lambda: log_changes(change_log.flush(time.monotonic())),
                          clock=Clock(clock_type=ClockType.STEADY_TIME))


def type_name_check(parameter: str, allow_empty: bool = False) -> Callable[[str], str | None]:
    """A Param check: why a value of ``parameter`` is not a type name (``pkg/msg/Type``), or None."""

    def check(value: str) -> str | None:
        parts = value.split("/")
        if value == "" and allow_empty:
            return None
        if len(parts) == 3 and parts[1] == "msg" and all(parts) or len(parts) == 2 and all(parts):
            return None
        off = " (or '' = off)" if allow_empty else ""
        return f"{parameter} '{value}' must look like package/msg/Type{off}"

    return check


# --- the frames' input -------------------------------------------------------------------------
IMAGE_TRANSPORTS = ("raw", "compressed")
# REP-2003: sensor drivers publish SensorDataQoS (best effort) or, where asked, reliable; it
# recommends SensorDataQoS subscriptions because they match both. Between two processes a
# best-effort reader loses most large frames of a driver without the large-images profile,
# while a reliable reader of a reliable driver gets them all (bench/bench_transport.py
# --matrix), so `auto` follows the publishers: reliable when every publisher is.
IMAGE_QOS_CHOICES = ("auto", "sensor_data", "reliable", "system_default")


# The frames' input, the same rows (and subscription, nodes/image_input.py) for the sensor node
# (camera:=none) and the teleop page, so the page shows what the node segments.
IMAGE_INPUT_PARAMS = (
    Param("image_transport", "raw",
          "frames: raw (sensor_msgs/Image on the image topic) | compressed (sensor_msgs/CompressedImage "
          "jpeg/png on `<image topic>/compressed`)", IMAGE_TRANSPORTS),
    Param("image_qos", "auto",
          "QoS of the image subscription (REP-2003): auto (reliable when every publisher on the topic "
          "is, else best effort; follows the publishers) | sensor_data (best effort, matches every "
          "publisher) | reliable (matches reliable publishers only) | system_default", IMAGE_QOS_CHOICES),
)
