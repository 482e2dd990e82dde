"""No function of the runtime or the trainer is longer than 100 lines (issue 22's bar).

A function that long does several jobs; split it where the jobs meet (a train step, a run clock and
a checkpoint object in ``picosam3_train/train.py`` are the example). Read with ``ast``.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_LINES = 100


def long_functions(root: Path, limit: int = MAX_LINES) -> list[str]:
    """``path:line name: N lines`` for every function of ``root`` over ``limit`` lines."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name}: {lines} lines")
    return found


def test_no_function_is_over_100_lines():
    found = long_functions(REPO / "picosam3_ros") + long_functions(REPO / "picosam3_train")
    assert not found, "\n".join(found)


def test_the_check_counts_a_long_function(tmp_path):
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "m.py").write_text(f"def short():\n    pass\n\n\nclass C:\n    def long(self):\n{body}\n")
    assert [line.split()[1] for line in long_functions(tmp_path)] == ["long:"]
