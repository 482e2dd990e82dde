"""Stand-in for ``launch.actions`` (tests only): the actions sensor.launch.py uses."""

from __future__ import annotations

from typing import Any, Callable

from launch import Action, LaunchContext, perform_substitutions


class DeclareLaunchArgument(Action):
    def __init__(self, name: str, *, default_value: Any = None, description: str = "",
                 choices: list[str] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.name, self.default_value = name, default_value
        self.description, self.choices = description, choices

    def execute(self, context: LaunchContext):
        if self.name not in context.launch_configurations:
            if self.default_value is None:
                raise RuntimeError(f"Required launch argument '{self.name}' was not provided")
            context.launch_configurations[self.name] = perform_substitutions(context, self.default_value)
        value = context.launch_configurations[self.name]
        if self.choices is not None and value not in self.choices:
            raise RuntimeError(f"Argument '{self.name}' provided value '{value}' is not valid. "
                               f"Valid options are: {self.choices}")


class OpaqueFunction(Action):
    def __init__(self, *, function: Callable, args=None, kwargs=None, **action_kwargs) -> None:
        super().__init__(**action_kwargs)
        self.function, self.args, self.kwargs = function, args or [], kwargs or {}

    def execute(self, context: LaunchContext):
        return self.function(context, *self.args, **self.kwargs)


class SetEnvironmentVariable(Action):
    def __init__(self, name: Any, value: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.name, self.value = name, value

    def execute(self, context: LaunchContext):
        name = perform_substitutions(context, self.name)
        context.environment[name] = perform_substitutions(context, self.value)


class Shutdown(Action):
    def __init__(self, *, reason: str = "reason not given", **kwargs) -> None:
        super().__init__(**kwargs)
        self.reason = reason

    def execute(self, context: LaunchContext):
        if context.event is not None:
            context.log(f"[INFO] [launch]: process[{context.event}] was required: "
                        "shutting down launched system")
        with context.lock:
            if context.shutdown_reason is None:
                context.shutdown_reason = perform_substitutions(context, self.reason)
