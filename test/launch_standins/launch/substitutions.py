"""Stand-in for ``launch.substitutions`` (tests only)."""

from __future__ import annotations

import math
import os

from launch import LaunchContext, Substitution, perform_substitutions


class LaunchConfiguration(Substitution):
    def __init__(self, variable_name: str, *, default=None) -> None:
        self.variable_name, self.default = variable_name, default

    def perform(self, context: LaunchContext) -> str:
        if self.variable_name in context.launch_configurations:
            return context.launch_configurations[self.variable_name]
        if self.default is None:
            raise RuntimeError(f"launch configuration '{self.variable_name}' does not exist")
        return perform_substitutions(context, self.default)


class PathJoinSubstitution(Substitution):
    def __init__(self, substitutions) -> None:
        self.substitutions = substitutions

    def perform(self, context: LaunchContext) -> str:
        return os.path.join(*[perform_substitutions(context, s) for s in self.substitutions])


class PythonExpression(Substitution):
    def __init__(self, expression) -> None:
        self.expression = expression

    def perform(self, context: LaunchContext) -> str:
        return str(eval(perform_substitutions(context, self.expression), {}, dict(vars(math))))
