"""The runtime's folders are layers: every import points down (docs/architecture.md).

Read with ``ast`` (no import runs), so a new upward import fails here, not in a review. An
import is any ``import``/``from`` statement, anywhere in the file (inside functions too), and any
``importlib.import_module("...")`` / ``__import__("...")`` with a written module name. Relative
imports are refused outright (they hide which layer they reach).

The layers form the tree docs/architecture.md draws: ``core`` at the root; the emulator on it;
the backends on both; evaluation and the teleop server on their own branches; the nodes and the
demo on everything. The trainer (``picosam3_train``) may use the runtime's core and nothing else.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNTIME = REPO / "picosam3_ros"
TRAINER = REPO / "picosam3_train"
# layer -> the layers it may import (besides itself); as the table in docs/architecture.md.
ALLOWED = {
    "core": set(),
    "emulator": {"core"},
    "backends": {"core", "emulator"},
    "evaluation": {"core", "emulator", "backends"},
    "teleop": {"core"},
    "nodes": {"core", "emulator", "backends", "evaluation", "teleop"},
    "demo": {"core", "emulator", "backends", "evaluation", "teleop", "nodes"},
}
LAYERS = list(ALLOWED)
# Folders of the package that hold no code (the packaged model files).
DATA_FOLDERS = {"models"}
# The emulated picamera2 is imported as ``picamera2`` (emulator/__init__.py puts it on sys.path):
# inside it, relative imports are how the real package is laid out, and stay inside the stand-in.
STANDIN = RUNTIME / "emulator" / "picamera2"
ROS = ("rclpy", "rcl_interfaces", "launch", "launch_ros", "ament_index_python", "rosidl_runtime_py",
       "sensor_msgs", "std_msgs", "builtin_interfaces", "geometry_msgs", "diagnostic_msgs", "vision_msgs",
       "picosam3_msgs")
NO_ROS = (*ROS, "torch", "picosam3_train")
# What a layer must not use: no layer of the runtime imports the trainer (a robot installs no
# torch), and the core, the emulator, the backends and the teleop server stay free of ROS and
# of its message packages. (Evaluation reads bags with rosbags, not rclpy.)
FORBIDDEN = {"core": NO_ROS, "emulator": NO_ROS, "backends": NO_ROS, "teleop": NO_ROS,
             "evaluation": ("rclpy", "torch", "picosam3_train"), "nodes": ("torch", "picosam3_train"),
             "demo": ("torch", "picosam3_train")}


def imported_modules(path: Path) -> list[str]:
    """Every module the file names in an import; a relative import as ``"."`` + its module."""
    tree = ast.parse(path.read_text(), str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.append("." * node.level + (node.module or ""))
                continue
            if node.module in ("picosam3_ros", "picosam3_train"):  # from picosam3_ros import emulator
                names += [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                names.append(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names.append(node.args[0].value)
    return names


def layer_of(module: str) -> str | None:
    """The runtime layer a module belongs to; "" for the package root (``picosam3_ros`` itself)."""
    parts = module.split(".")
    if parts[0] != "picosam3_ros":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else ""


def uses(module: str, names) -> bool:
    return any(module == bad or module.startswith(bad + ".") for bad in names)


def problems_of_layer(layer: str) -> list[str]:
    found = []
    for path in sorted((RUNTIME / layer).rglob("*.py")):
        for module in imported_modules(path):
            where = path.relative_to(REPO)
            if module.startswith("."):
                if STANDIN not in path.parents:
                    found.append(f"{where}: relative import {module}")
                continue
            target = layer_of(module)
            if target == "":
                found.append(f"{where} imports {module}: import the layer's module, not the package root")
            elif target is not None and target != layer and target not in ALLOWED[layer]:
                found.append(f"{where} imports {module} ({layer} -> {target})")
            if uses(module, FORBIDDEN[layer]):
                found.append(f"{where} imports {module}, which {layer}/ must not use")
    return found


def test_every_runtime_import_points_down():
    upward = [problem for layer in LAYERS for problem in problems_of_layer(layer)]
    assert not upward, "\n".join(upward)


def test_the_trainer_uses_the_runtimes_core_only():
    found = []
    for path in sorted(TRAINER.rglob("*.py")):
        for module in imported_modules(path):
            if module.startswith("."):
                found.append(f"{path.relative_to(REPO)}: relative import {module}")
            elif layer_of(module) not in (None, "core") or uses(module, ROS):
                found.append(f"{path.relative_to(REPO)} imports {module}")
    assert not found, "\n".join(found)


def test_every_runtime_module_is_in_a_known_layer():
    loose = [p.name for p in RUNTIME.glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules outside the layer folders: {loose}"
    folders = {p.name for p in RUNTIME.iterdir() if p.is_dir() and p.name != "__pycache__"}
    unknown = folders - set(LAYERS) - DATA_FOLDERS
    assert not unknown, f"folders that are no layer of docs/architecture.md (add them to ALLOWED): {unknown}"
    code = [p for d in DATA_FOLDERS for p in (RUNTIME / d).rglob("*.py")]
    assert not code, f"code in a data folder: {code}"


def test_the_layers_are_the_tree_the_doc_draws():
    doc = (REPO / "docs" / "architecture.md").read_text()
    for layer, allowed in ALLOWED.items():
        row = next(line for line in doc.splitlines() if line.startswith(f"| `picosam3_ros/{layer}/`"))
        may_import = row.rstrip(" |").rsplit("|", 1)[1]
        if layer in ("nodes", "demo"):
            assert "everything above" in may_import, (layer, may_import)
        elif not allowed:
            assert "nothing of the project" in may_import, (layer, may_import)
        else:
            named = {w.strip("` ,") for w in may_import.split() if w.startswith("`")}
            assert named == allowed, (layer, may_import)


def test_the_check_sees_each_kind_of_upward_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "from picosam3_ros.nodes.sensor_node import main\nimport rclpy\n"
        "def f():\n    import importlib\n    return importlib.import_module('picosam3_ros.demo.demo')\n"
        "from . import sibling\nfrom ..core import crop\nfrom sensor_msgs.msg import Image\n"
    )
    assert sorted(imported_modules(module)) == sorted(
        ["picosam3_ros.nodes.sensor_node", "rclpy", "importlib", "picosam3_ros.demo.demo", ".", "..core",
         "sensor_msgs.msg"])
    assert [layer_of(m) for m in ("picosam3_ros.nodes.x", "rclpy", "picosam3_ros")] == ["nodes", None, ""]
    assert uses("sensor_msgs.msg", NO_ROS) and not uses("sensor_msgsx", NO_ROS)
