"""Stand-in for ROS 2 ``launch`` (tests only; see ../README.md): descriptions, context, service."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Iterable

__all__ = ["Action", "LaunchContext", "LaunchDescription", "LaunchService", "Substitution",
           "perform_substitutions"]


class Substitution:
    def perform(self, context: LaunchContext) -> str:
        raise NotImplementedError


def perform_substitutions(context: LaunchContext, value: Any) -> str:
    """A text, a substitution or a list of them, as launch joins them."""
    if value is None:
        return ""
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, Substitution):
        return value.perform(context)
    return "".join(perform_substitutions(context, v) for v in value)


class Action:
    def __init__(self, *, condition=None) -> None:
        self.condition = condition

    def visit(self, context: LaunchContext) -> list[Action]:
        if self.condition is not None and not self.condition.evaluate(context):
            return []
        return list(self.execute(context) or [])

    def execute(self, context: LaunchContext) -> Iterable[Action] | None:
        return None


class LaunchDescription:
    def __init__(self, initial_entities: Iterable[Action] | None = None) -> None:
        self.entities = list(initial_entities or [])


class LaunchContext:
    """Launch configurations, the launched processes' environment, the running processes."""

    def __init__(self, launch_arguments: dict[str, str]) -> None:
        self.launch_configurations = dict(launch_arguments)
        self.environment = dict(os.environ)
        self.processes: list = []  # launch_ros.actions.Node (anything with poll/send_signal)
        self.shutdown_reason: str | None = None
        self.lock = threading.Lock()
        self.event = None  # the ProcessExited being handled, for Shutdown's log line

    def log(self, text: str) -> None:
        print(text, flush=True)


class LaunchService:
    """Run a description: every action in order, then wait until the processes end or shutdown."""

    def __init__(self, argv: list[str] | None = None) -> None:
        self._descriptions: list[LaunchDescription] = []
        self.context = LaunchContext(_launch_arguments(argv or []))

    def include_launch_description(self, description: LaunchDescription) -> None:
        self._descriptions.append(description)

    def shutdown(self, reason: str = "shutdown requested") -> None:
        with self.context.lock:
            if self.context.shutdown_reason is None:
                self.context.shutdown_reason = reason

    def run(self) -> int:
        context = self.context
        try:
            pending = [a for d in self._descriptions for a in d.entities]
            while pending and context.shutdown_reason is None:
                pending = pending[0].visit(context) + pending[1:]
        except Exception as exc:  # what launch prints for a broken description or a bad argument
            context.log(f"[ERROR] [launch]: Caught exception in launch (see debug for traceback): {exc}")
            self.shutdown(str(exc))
            _stop(context)
            return 1
        while context.shutdown_reason is None and any(p.running() for p in context.processes):
            for process in context.processes:
                process.check_exit(context)
            time.sleep(0.05)
        for process in context.processes:
            process.check_exit(context)
        _stop(context)
        return 0


def _launch_arguments(argv: list[str]) -> dict[str, str]:
    out = {}
    for arg in argv:
        name, sep, value = arg.partition(":=")
        if not sep:
            raise ValueError(f"malformed launch argument '{arg}', expected format '<name>:=<value>'")
        out[name] = value
    return out


def _stop(context: LaunchContext) -> None:
    """SIGINT the running processes, SIGTERM after 5 s, SIGKILL after 5 more (launch's defaults)."""
    reason = context.shutdown_reason or "all processes exited"
    running = [p for p in context.processes if p.running()]
    if running:
        context.log(f"[INFO] [launch]: shutting down: {reason}")
    for sig, wait in ((signal.SIGINT, 5.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        running = [p for p in context.processes if p.running()]
        for process in running:
            process.send_signal(sig)
        deadline = time.monotonic() + wait
        while any(p.running() for p in running) and time.monotonic() < deadline:
            time.sleep(0.05)
    for process in context.processes:
        process.check_exit(context, handle=False)
