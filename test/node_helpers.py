"""Helpers shared by the node tests (and usable by other test files).

* Tiny ONNX models with known outputs, written with a model card:
  :func:`write_disk_model` (a fixed centred disk of logits, whatever the input) and
  :func:`write_red_model` (logit > 0 exactly where the red channel is > 127; with ``ramp``,
  a threshold rising from left to right, so that the output is not symmetric).
* Processes: :func:`ros_env` (a test-specific ROS_DOMAIN_ID, localhost discovery),
  :func:`start_process` / :func:`stop_process` and the :func:`running` context manager
  that always kills its child.
* :class:`RosClient`: an rclpy node in the test process spinning in a thread, with
  :meth:`RosClient.wait_for` (a generous timeout, never a timed assertion).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from picosam3_ros.core.model_card import InputSpec, write_model_card
from picosam3_ros.core.process_group import start_group, stop_group
from picosam3_ros.nodes.fastdds_profile import PROFILE_VARIABLE, large_images_profile

REPO = Path(__file__).resolve().parents[1]
INTERFACES = REPO / "test" / "interfaces"
LARGE_IMAGES_PROFILE = large_images_profile()
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
SIZE = 96


def disk_logits(size: int = SIZE, radius: float = 30.0, value: float = 8.0) -> np.ndarray:
    """(size, size) float32: +value inside a centred disk, -value outside (what write_disk_model outputs)."""
    yy, xx = np.mgrid[0:size, 0:size]
    centre = (size - 1) / 2.0
    inside = (xx - centre) ** 2 + (yy - centre) ** 2 <= radius**2
    return np.where(inside, value, -value).astype(np.float32)


def _card(directory: Path, files: dict[str, str]) -> None:
    spec = InputSpec(INPUT_NAME, SIZE, "NCHW", "RGB", 1.0 / 255.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    write_model_card(directory, files, spec, OUTPUT_NAME)


def _save(graph, path: Path) -> None:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def write_disk_model(directory: Path, radius: float = 30.0, value: float = 8.0) -> Path:
    """A model whose logits are a fixed centred disk (input ignored, batch kept); returns ``directory``."""
    from onnx import TensorProto, helper, numpy_helper

    directory.mkdir(parents=True, exist_ok=True)
    disk = numpy_helper.from_array(disk_logits(SIZE, radius, value)[None, None], "disk")
    zero = numpy_helper.from_array(np.zeros((1,), np.float32), "zero")
    nodes = [
        helper.make_node("ReduceMean", [INPUT_NAME], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Mul", ["mean", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "disk"], [OUTPUT_NAME]),
    ]
    graph = helper.make_graph(
        nodes,
        "disk",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 1, SIZE, SIZE])],
        initializer=[disk, zero],
    )
    _save(graph, directory / "disk.onnx")
    _card(directory, {"fp32": "disk.onnx", "int8": "disk.onnx"})
    return directory


def write_red_model(directory: Path, gain: float = 40.0, ramp: float = 0.0) -> Path:
    """A model with logits = gain * (red/255 - 0.5 - ramp * (column/95 - 0.5)).

    ``ramp=0``: object exactly where red > 127.5. With a ramp the threshold rises from
    left to right, so the output is not symmetric: a transposed or mirrored map shows.
    """
    from onnx import TensorProto, helper, numpy_helper

    directory.mkdir(parents=True, exist_ok=True)
    columns = np.linspace(-0.5, 0.5, SIZE, dtype=np.float32) * np.float32(ramp)
    inits = [
        numpy_helper.from_array(np.array([0], np.int64), "starts"),
        numpy_helper.from_array(np.array([1], np.int64), "ends"),
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
        numpy_helper.from_array((np.float32(0.5) + columns).reshape(1, 1, 1, SIZE), "threshold"),
        numpy_helper.from_array(np.array([gain], np.float32), "gain"),
    ]
    nodes = [
        helper.make_node("Slice", [INPUT_NAME, "starts", "ends", "axes"], ["red"]),
        helper.make_node("Sub", ["red", "threshold"], ["centred"]),
        helper.make_node("Mul", ["centred", "gain"], [OUTPUT_NAME]),
    ]
    graph = helper.make_graph(
        nodes,
        "red",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 1, SIZE, SIZE])],
        initializer=inits,
    )
    _save(graph, directory / "red.onnx")
    _card(directory, {"fp32": "red.onnx", "int8": "red.onnx"})
    return directory


# --- processes ------------------------------------------------------------------------------------
def ros_env(domain_id: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child ROS process: isolated domain, localhost discovery, unbuffered output."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def large_images_env() -> dict[str, str]:
    """Environment that gives a child process the shipped Fast DDS large-images profile.

    Pass it to :func:`ros_env` (``extra``) for both ends of a topic carrying images bigger
    than 512 KiB; the publisher's side is the one that matters (README "Large images over DDS").
    """
    return {PROFILE_VARIABLE: str(LARGE_IMAGES_PROFILE)}


def node_command(
    module: str, params: dict[str, object] | None = None, params_file: Path | None = None
) -> list:
    """``python -m``-style command for a node module with ``--ros-args`` parameters."""
    cmd = [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())", "--ros-args"]
    if params_file is not None:
        cmd += ["--params-file", str(params_file)]
    for name, value in (params or {}).items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        cmd += ["-p", f"{name}:={value}"]
    return cmd


def start_process(cmd: Sequence[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start ``cmd`` in its own process group with stdout+stderr to ``log_path``."""
    return start_group(cmd, env, log_path, cwd=REPO)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
    """SIGINT, then SIGKILL after ``timeout``; returns the exit code. Only touches this process group."""
    return stop_group(proc, timeout)


@contextlib.contextmanager
def running(cmd: Sequence[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """Run a child for the duration of a ``with`` block; it is always stopped, even on failure."""
    proc = start_process(cmd, env, log_path)
    try:
        yield proc
    finally:
        stop_process(proc)


# --- a ROS client in the test process -------------------------------------------------------------
class RosClient:
    """A node in the test process with its own context (domain ``domain_id``), spinning in a thread."""

    def __init__(self, domain_id: int, name: str = "test_client"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:
                if not self.context.ok():
                    return
                raise

    def collect(self, msg_type, topic: str, qos=10) -> list:
        """Subscribe and return the list the messages are appended to."""
        received: list = []

        def callback(msg) -> None:
            with self.lock:
                received.append(msg)

        self.node.create_subscription(msg_type, topic, callback, qos)
        return received

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 60.0, proc=None) -> bool:
        """Poll ``predicate`` until true or timeout; stops early if ``proc`` exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate():
                    return True
            if proc is not None and proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def close(self) -> None:
        import rclpy

        try:
            self.executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
        finally:
            if self.context.ok():
                rclpy.shutdown(context=self.context)
        self._thread.join(timeout=2.0)


@contextlib.contextmanager
def sensor_node_and_client(domain_id: int, params: dict, log_path: Path) -> Iterator[tuple]:
    """The sensor node (config/sensor.yaml + ``params``) as a process and a client on its domain."""
    cmd = node_command("picosam3_ros.nodes.sensor_node", params, REPO / "config" / "sensor.yaml")
    with running(cmd, ros_env(domain_id), log_path) as proc:
        client = RosClient(domain_id)
        try:
            yield proc, client
        finally:
            client.close()


def prompt_array(boxes: dict[int, tuple], frame_id: str = "", follow: dict[int, int] | None = None):
    """A RoiPromptArray of ``{id: (x, y, w, h)}`` in that order (``follow``: RoiPrompt.follow per id)."""
    from picosam3_msgs.msg import RoiPrompt, RoiPromptArray

    array = RoiPromptArray()
    array.header.frame_id = frame_id
    for prompt_id, (x, y, w, h) in boxes.items():
        prompt = RoiPrompt(id=prompt_id, follow=(follow or {}).get(prompt_id, RoiPrompt.FOLLOW_DEFAULT))
        prompt.roi.x_offset, prompt.roi.y_offset, prompt.roi.width, prompt.roi.height = x, y, w, h
        array.prompts.append(prompt)
    return array


def status_mb(pid: int, key: str = "VmRSS") -> float:
    """A memory figure of a process from /proc (VmRSS: now; VmHWM: its peak so far), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError(f"no {key} for process {pid}")


def spin_until_stdin_closes(node, on_line: Callable[[str], None] | None = None) -> None:
    """For a peer process (its own rclpy context): spin ``node`` until stdin closes, handing each
    line to ``on_line``; then shut rclpy down. The test ends a peer by closing its stdin."""
    import rclpy

    def read_stdin() -> None:
        for line in sys.stdin:
            if on_line is not None:
                on_line(line.strip())
        rclpy.try_shutdown()

    threading.Thread(target=read_stdin, daemon=True).start()
    try:
        rclpy.spin(node)
    except Exception:  # the context shut down by EOF on stdin
        pass
    rclpy.try_shutdown()


def set_parameter(client: RosClient, node: str, name: str, value, timeout: float = 30.0):
    """``ros2 param set`` from the test process: the SetParametersResult (successful, reason)."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    if isinstance(value, bool):
        kind, field = ParameterType.PARAMETER_BOOL, "bool_value"
    elif isinstance(value, int):
        kind, field = ParameterType.PARAMETER_INTEGER, "integer_value"
    elif isinstance(value, float):
        kind, field = ParameterType.PARAMETER_DOUBLE, "double_value"
    else:
        kind, field = ParameterType.PARAMETER_STRING, "string_value"
    service = client.node.create_client(SetParameters, f"{node}/set_parameters")
    try:
        if not service.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"no {node}/set_parameters service")
        request = SetParameters.Request(
            parameters=[Parameter(name=name, value=ParameterValue(type=kind, **{field: value}))]
        )
        future = service.call_async(request)
        if not client.wait_for(future.done, timeout=timeout):
            raise TimeoutError(f"{node}/set_parameters did not answer")
        return future.result().results[0]
    finally:
        client.node.destroy_client(service)


# --- test-only message packages -------------------------------------------------------------------
def build_interfaces(packages: dict[str, Path]) -> Path:
    """colcon-build test message packages once per content; returns the (merged) install prefix.

    ``packages``: package name -> source folder (under test/interfaces/). A name other than the
    folder's builds the same messages under that name (``vision_msgs`` from
    picosam3_test_vision_msgs, for the README's examples typed as written). Built into
    build/test_interfaces/<hash>/ (about a minute), never installed with the workspace.
    """
    files = sorted((name, p) for name, source in packages.items() for p in source.rglob("*") if p.is_file())
    digest = hashlib.sha1(b"".join(name.encode() + p.read_bytes() + str(p).encode() for name, p in files))
    base = REPO / "build" / "test_interfaces" / digest.hexdigest()[:12]
    base.mkdir(parents=True, exist_ok=True)
    install = base / "install"
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs of the suite in one checkout build it once
        if (base / "built").is_file():
            return install
        sources = base / "src"
        shutil.rmtree(sources, ignore_errors=True)
        for name, source in packages.items():
            target = sources / name
            shutil.copytree(source, target)
            for path in (target / "CMakeLists.txt", target / "package.xml"):
                text = path.read_text().replace("${CMAKE_CURRENT_SOURCE_DIR}/../../../", f"{REPO}/")
                text = text.replace(f"project({source.name})", f"project({name})")
                path.write_text(text.replace(f"<name>{source.name}</name>", f"<name>{name}</name>"))
        env = dict(os.environ)
        if not env.get("ROS_DISTRO"):  # ROS from the venv's wheels: their CMake files live there
            env["AMENT_PREFIX_PATH"] = os.pathsep.join(
                filter(None, [sys.prefix, env.get("AMENT_PREFIX_PATH")]))
        colcon = "import sys; sys.argv[0] = 'colcon'; from colcon_core.command import main; sys.exit(main())"
        cmd = [sys.executable, "-c", colcon, "--log-base", str(base / "log"), "build",
               "--base-paths", str(sources), "--build-base", str(base / "build"),
               "--install-base", str(install), "--merge-install"]
        result = subprocess.run(cmd, env=env, cwd=base, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"building the test interfaces failed:\n{result.stdout[-4000:]}"
        (base / "built").write_text("ok\n")
    return install


def with_prefix(env: dict[str, str], install: Path) -> dict[str, str]:
    """``env`` with a colcon install prefix on the Python, library and ament paths."""
    site = install / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    paths = (("PYTHONPATH", site), ("LD_LIBRARY_PATH", install / "lib"), ("AMENT_PREFIX_PATH", install))
    for name, path in paths:
        env[name] = os.pathsep.join(filter(None, [str(path), env.get(name)]))
    return env
