"""The runtime's folders are layers: every import points down (docs/architecture.md).

Read with ``ast`` (no import runs), so a new upward import fails here, not in a review.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNTIME = REPO / "picosam3_ros"
# Each layer may import itself and the layers listed before it.
LAYERS = ["core", "emulator", "backends", "evaluation", "teleop", "nodes", "demo"]
# What a layer must not use: no layer of the runtime imports the trainer (a robot installs
# no torch), and the core, the emulator, the backends and the teleop server stay free of ROS.
NO_ROS = ("rclpy", "torch", "picosam3_train")
FORBIDDEN = {"core": NO_ROS, "emulator": NO_ROS, "backends": NO_ROS, "teleop": NO_ROS,
             "evaluation": ("torch", "picosam3_train"), "nodes": ("torch", "picosam3_train"),
             "demo": ("torch", "picosam3_train")}


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            if node.module == "picosam3_ros":  # from picosam3_ros import emulator
                names += [f"picosam3_ros.{alias.name}" for alias in node.names]
    return names


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "picosam3_ros" and parts[1] in LAYERS else None


def test_every_runtime_import_points_down():
    upward = []
    for layer in LAYERS:
        allowed = set(LAYERS[: LAYERS.index(layer) + 1])
        for path in sorted((RUNTIME / layer).rglob("*.py")):
            for module in imported_modules(path):
                target = layer_of(module)
                if target is not None and target not in allowed:
                    upward.append(f"{path.relative_to(REPO)} imports {module} ({layer} -> {target})")
                if any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN.get(layer, ())):
                    upward.append(f"{path.relative_to(REPO)} imports {module}, which {layer}/ must not use")
    assert not upward, "\n".join(upward)


def test_every_runtime_module_is_in_a_layer():
    loose = [p.name for p in RUNTIME.glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules outside the layer folders: {loose}"


def test_the_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from picosam3_ros.nodes.sensor_node import main\nimport rclpy\n")
    assert [layer_of(m) for m in imported_modules(module)] == ["nodes", None]
