"""Stand-in for ``launch.conditions`` (tests only)."""

from __future__ import annotations

from launch import LaunchContext, perform_substitutions


class IfCondition:
    def __init__(self, predicate_expression) -> None:
        self.predicate_expression = predicate_expression

    def evaluate(self, context: LaunchContext) -> bool:
        text = perform_substitutions(context, self.predicate_expression).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise RuntimeError(f"Unknown value for condition expression: '{text}', expected true/false/1/0")
