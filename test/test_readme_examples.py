"""Every README example, typed as written, works (issue 23's bar), against real node processes.

"The README" here is README.md and the docs/ pages its sections moved to (README_PAGES: each example
lives where a reader looks for it, the launch lines of a robot in docs/robot.md, every parameter in
docs/parameters.md).

* Each ``ros2 launch picosam3_ros sensor.launch.py ...`` line runs through the launch file with
  stand-ins for launch/launch_ros (no wheels exist; test/launch_standins/README.md): the nodes
  come up, answer a frame and a prompt on the topics the arguments name, and stop on Ctrl-C.
* Each ``ros2 param set`` line is sent over DDS as ``ros2 param`` types it (the value read as
  YAML: ``1000`` is an integer, ``0.6`` a double) and must be accepted; so must every special
  value of the parameter table (`` `-1.0` = ...``), at run time and as ``-p name:=value``.
* Each inline YAML snippet (`` `prompt_timeout: 0.0` ``) is written into a copy of
  config/sensor.yaml, launched with ``config_file:=``, and is the value in force.
* The parameter tables' defaults (README.md's short one, docs/parameters.md's full one) are the code's.
* The README's Python example (``picosam3_ros.Predictor``) runs as written.
* The launch file: a node that exits takes the launch down; the same colour rule for every node
  (plain into a file, colours when RCUTILS_COLORIZED_OUTPUT=1 asks); use_sim_time and log_level.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import shlex
import signal
import socket
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import yaml
from node_helpers import (
    INTERFACES,
    REPO,
    RosClient,
    build_interfaces,
    node_command,
    ros_env,
    running,
    set_parameter,
    start_process,
    stop_process,
    with_prefix,
)

from picosam3_ros.core.pipeline import Status
from picosam3_ros.nodes.sensor_params import SENSOR_PARAMS

DOMAIN = 24
README_ONLY = (REPO / "README.md").read_text()
PARAMETERS_PAGE = (REPO / "docs" / "parameters.md").read_text()
# The pages the README's examples moved to (docs/install.md ... docs/training.md), read as one text.
README_PAGES = ("install", "interfaces", "parameters", "robot", "models", "evaluation", "dds_transport",
                "robustness", "training")
README = "\n\n".join([README_ONLY, *((REPO / "docs" / f"{page}.md").read_text() for page in README_PAGES)])
LAUNCH = [sys.executable, str(REPO / "test" / "launch_standins" / "ros2_launch.py")]
ESCAPE = "\x1b["


# --- what the README says ------------------------------------------------------------------------
def readme_commands(prefix: str) -> list[str]:
    """Every command starting with ``prefix`` in the README's code blocks and inline code, as typed
    (continuation lines joined, comments dropped)."""
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            found.append(line.strip())
    found += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", README, flags=re.S))
    return sorted({" ".join(shlex.split(c, comments=True)) for c in found if c.startswith(prefix)})


def readme_yaml_snippets() -> list[tuple[str, str]]:
    """Inline `name: value` spans naming a sensor parameter: (name, value as written)."""
    spans = re.findall(r"`([a-z_.]+): ([^`]+)`", README)
    return sorted({(k, v) for k, v in spans if k in SENSOR_PARAMS.params})


def parameter_table(section: str | None = None) -> dict[str, tuple[str, list[str]]]:
    """name -> (default as written, special values written `V` = ...) for single-name rows of a
    parameter table (default: docs/parameters.md's)."""
    if section is None:
        section = PARAMETERS_PAGE.split("## Sensor node parameters", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        names = re.findall(r"`([^`]+)`", cells[0]) if len(cells) == 4 else []
        defaults = re.findall(r"`([^`]*)`", cells[1]) if names else []
        if len(names) == 1 and names[0] in SENSOR_PARAMS.params and len(defaults) == 1:
            rows[names[0]] = (defaults[0], re.findall(r"`([^`]+)` =", cells[3]))
    return rows


def test_the_readme_has_the_examples_this_test_runs():
    assert len(readme_commands("ros2 launch picosam3_ros sensor.launch.py")) >= 5
    assert len(readme_commands("ros2 param set /")) >= 3
    assert {("prompt_timeout", "0.0"), ("prompt_timeout", "0")} <= set(readme_yaml_snippets())
    table = parameter_table()
    assert table["prompt_timeout"] == ("2.0", ["0.0"]) and table["box_margin"][1] == ["-1.0", "1000.0"]


def test_parameter_table_defaults_are_the_codes():
    short = parameter_table(README_ONLY.split("## Parameters", 1)[1].split("\n## ", 1)[0])
    assert len(short) >= 8 and short.items() <= parameter_table().items()  # the README's rows, as in docs/
    for name, (written, _) in parameter_table().items():
        default = SENSOR_PARAMS.params[name].default
        value = "" if written == "''" else yaml.safe_load(written)
        assert value == default and type(value) is type(default), (name, written, default)


def test_the_readme_python_example_runs_as_written(monkeypatch):
    (block,) = re.findall(r"```python\n(.*?)```", README_ONLY, re.S)
    assert len(block.strip().splitlines()) <= 6
    monkeypatch.chdir(REPO)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    (mask,) = namespace["masks"]
    assert mask.ok and mask.mask.shape == namespace["image"].shape[:2]
    # the skier of the demo clip: most of her box is her, little of it is not
    x, y, w, h = 277, 51, 244, 391
    inside = mask.mask[y : y + h, x : x + w].sum()
    assert inside == mask.mask.sum() and 0.2 * w * h < inside < 0.8 * w * h and mask.score > 0.5


# --- running the launch file ------------------------------------------------------------------------
@contextlib.contextmanager
def launched(tmp_path: Path, arguments: list[str], ready: int = 1, env: dict | None = None,
             cmd: list[str] | None = None):
    """``ros2 launch picosam3_ros sensor.launch.py ARGS`` (or ``cmd``); yields (process, log path)
    once ``ready`` nodes said so; Ctrl-C at the end must stop everything cleanly."""
    log = tmp_path / f"launch_{uuid.uuid4().hex[:6]}.log"
    cmd = cmd or [*LAUNCH, "picosam3_ros", "sensor.launch.py", *arguments]
    proc = start_process(cmd, env or ros_env(DOMAIN), log)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None and len(ready_lines(log)) < ready:
            time.sleep(0.2)
        assert len(ready_lines(log)) >= ready, log.read_text()
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Ctrl-C, to the launch only: it stops its nodes
        try:
            proc.wait(timeout=30)
        except Exception:
            proc.kill()
            raise
    text = log.read_text()
    assert "Traceback" not in text and "process has died" not in text, text


def ready_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines()
            if "]: ready: " in line or "]: teleop UI: open" in line or "[detections_adapter]: /" in line]


def answers(client: RosClient, base: str, transport: str = "raw", namespace: str = "",
            also=lambda: True, nonce: str = "", prompts_from_test: bool = True, expected: int = 1) -> bool:
    """A frame on the launched node's input and a prompt in its frame get an OK segmentation
    (frames keep coming until ``also()`` holds too); ``expected`` OK entries when the prompts
    come from elsewhere (a detector publishing in frame ``nonce``)."""
    from sensor_msgs.msg import CompressedImage, Image

    from picosam3_msgs.msg import RoiPrompt, RoiPromptArray, SegmentationArray
    from picosam3_ros.core.image_conversion import encode_compressed, fill_image

    nonce = nonce or f"cam-{uuid.uuid4().hex[:8]}"
    rgb = np.full((240, 320, 3), 30, np.uint8)
    rgb[80:160, 120:200] = (230, 40, 40)
    segs = client.collect(SegmentationArray, f"{namespace}/segmentations")
    if transport == "compressed":
        pub = client.node.create_publisher(CompressedImage, base + "/compressed", 10)
        frame = CompressedImage(format="png", data=encode_compressed(rgb, "png"))
    else:
        pub = client.node.create_publisher(Image, base, 10)
        frame = fill_image(Image(), rgb, "rgb8")
    frame.header.frame_id = nonce
    prompts = client.node.create_publisher(RoiPromptArray, f"{namespace}/prompts", 10)
    array = RoiPromptArray()
    array.header.frame_id = nonce
    prompt = RoiPrompt(id=1)
    prompt.roi.x_offset, prompt.roi.y_offset, prompt.roi.width, prompt.roi.height = 120, 80, 80, 80
    array.prompts = [prompt]

    def answered() -> bool:
        return any(m.header.frame_id == nonce
                   and [s.status for s in m.segmentations] == [Status.OK] * expected
                   for m in segs)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (answered() and also()):
        if prompts_from_test:
            prompts.publish(array)
        frame.header.stamp = client.node.get_clock().now().to_msg()
        pub.publish(frame)
        time.sleep(0.2)
    with client.lock:
        return answered()


def get_parameters(client: RosClient, node: str, names: list[str]) -> dict:
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    service = client.node.create_client(GetParameters, f"{node}/get_parameters")
    assert service.wait_for_service(timeout_sec=60), node
    future = service.call_async(GetParameters.Request(names=names))
    assert client.wait_for(future.done, timeout=30)
    client.node.destroy_client(service)
    return {n: parameter_value_to_python(v) for n, v in zip(names, future.result().values)}


def launch_arguments(command: str) -> list[str]:
    return shlex.split(command)[len(shlex.split("ros2 launch picosam3_ros sensor.launch.py")):]


def test_every_readme_launch_line_and_param_set_works(tmp_path):
    commands = readme_commands("ros2 launch picosam3_ros sensor.launch.py")
    param_sets = readme_commands("ros2 param set /")
    table = parameter_table()
    checked = []
    for command in commands:
        arguments = dict(a.split(":=", 1) for a in launch_arguments(command))
        if arguments.get("detections") == "true":
            continue  # needs vision_msgs: test_readme_detector_examples_work
        if arguments.get("camera") == "picamera2":
            continue  # the Raspberry Pi AI Camera itself (its arguments: test_launch_arguments_...)
        namespace = "/" + arguments["namespace"] if arguments.get("namespace") else ""
        topic = arguments.get("image_topic", "image_raw")
        base = topic if topic.startswith("/") else f"{namespace}/{topic}"
        teleop = arguments.get("teleop") == "true"
        with launched(tmp_path, launch_arguments(command), ready=2 if teleop else 1) as (proc, log):
            client = RosClient(DOMAIN)
            try:
                def page_shows_frames(port: int = int(arguments.get("teleop_port", 8088))) -> bool:
                    state = json.loads(http_get(port, "/api/state"))
                    return state["stream"]["width"] == 320

                also = page_shows_frames if teleop else (lambda: True)
                assert answers(client, base, arguments.get("image_transport", "raw"), namespace, also), \
                    (command, log.read_text())
                if arguments.get("use_sim_time") == "true":
                    assert get_parameters(client, f"{namespace}/picosam3_sensor", ["use_sim_time"]) \
                        == {"use_sim_time": True}
                if not arguments:  # the plain launch: the README's parameter changes go to this node
                    for line in param_sets:
                        node, name, value = shlex.split(line)[3:6]
                        result = set_parameter(client, node, name, yaml.safe_load(value))
                        assert result.successful, (line, result.reason)
                        assert get_parameters(client, node, [name])[name] == yaml.safe_load(value), line
                    for name, (_, values) in table.items():
                        for value in values if SENSOR_PARAMS.params[name].runtime else []:
                            result = set_parameter(client, "/picosam3_sensor", name, yaml.safe_load(value))
                            assert result.successful, (name, value, result.reason)
            finally:
                client.close()
        text = log.read_text()
        assert ESCAPE not in text, (command, text)  # the launch's output is a file: plain lines
        if arguments.get("log_level") == "debug":
            assert "[DEBUG]" in text, text
        checked.append(command)
    assert len(checked) >= 4, checked


def http_get(port: int, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    body = conn.getresponse().read()
    conn.close()
    return body.decode()


def test_readme_yaml_snippets_in_the_config_file_are_the_values_in_force(tmp_path):
    config = (REPO / "config" / "sensor.yaml").read_text()
    snippets = readme_yaml_snippets()
    batches: list[dict] = []
    for name, value in snippets:  # one launch per set of distinct names
        batch = next((b for b in batches if name not in b), None)
        if batch is None:
            batches.append(batch := {})
        batch[name] = value
    for batch in batches:
        text = config
        for name, value in batch.items():  # the line of config/sensor.yaml, edited as the README says
            key = name.split(".")[-1]
            text, count = re.subn(rf"^(\s+){re.escape(key)}: .*$", rf"\g<1>{key}: {value}", text, count=1,
                                  flags=re.M)
            assert count == 1, name
        path = tmp_path / f"sensor_{len(text)}.yaml"
        path.write_text(text)
        with launched(tmp_path, [f"config_file:={path}"]):
            client = RosClient(DOMAIN)
            try:
                got = get_parameters(client, "/picosam3_sensor", list(batch))
            finally:
                client.close()
        expected = {n: SENSOR_PARAMS.coerce(n, yaml.safe_load(v)) for n, v in batch.items()}
        assert got == expected and all(type(got[n]) is type(expected[n]) for n in got), (got, batch)


def test_readme_table_values_as_start_up_parameters(tmp_path):
    """`-p name:=value` for every special value of the table (the values as written)."""
    table = parameter_table()
    pairs = [(name, value) for name, (_, values) in table.items() for value in values]
    batches: list[dict] = []
    for name, value in pairs:
        batch = next((b for b in batches if name not in b), None)
        if batch is None:
            batches.append(batch := {})
        batch[name] = value
    for batch in batches:
        cmd = node_command("picosam3_ros.nodes.sensor_node", batch)
        with running(cmd, ros_env(DOMAIN), tmp_path / "node.log") as proc:
            client = RosClient(DOMAIN)
            try:
                got = get_parameters(client, "/picosam3_sensor", list(batch))
            finally:
                client.close()
            assert proc.poll() is None, (tmp_path / "node.log").read_text()
        assert got == {n: yaml.safe_load(v) for n, v in batch.items()}, (got, batch)


def test_a_node_that_exits_takes_the_launch_down_and_colours_are_alike(tmp_path):
    """The teleop page cannot start (its port is taken): the launch must not go on without it."""
    log = tmp_path / "launch.log"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = ros_env(DOMAIN, {"RCUTILS_COLORIZED_OUTPUT": "1"})  # the user asks for colours
        proc = start_process([*LAUNCH, "picosam3_ros", "sensor.launch.py", "teleop:=true",
                              f"teleop_port:={taken.getsockname()[1]}"], env, log)
        try:
            proc.wait(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    lines = text.splitlines()
    assert "cannot start" in text and "Address already in use" in text, text
    assert "process[teleop_ui-2] was required: shutting down launched system" in text, text
    assert any(line.startswith("[INFO] [sensor_node-1]: process has") for line in lines), text  # stopped
    # Every node's log lines coloured alike (emulated tty, RCUTILS_COLORIZED_OUTPUT=1); the
    # README runs (output into a file, no RCUTILS_COLORIZED_OUTPUT) have none at all.
    teleop = [line for line in lines if line.startswith("[teleop_ui-2] ") and "INFO" in line]
    sensor = [line for line in lines if line.startswith("[sensor_node-1] ") and "INFO" in line]
    assert teleop and all(ESCAPE in line for line in teleop + sensor), text


def test_launch_arguments_of_the_readme_are_declared():
    sys.path.insert(0, str(REPO / "test" / "launch_standins"))
    try:
        namespace: dict = {}
        source = (REPO / "launch" / "sensor.launch.py").read_text()
        exec(compile(source, "sensor.launch.py", "exec"), namespace)
        declared = {a.name for a in namespace["generate_launch_description"]().entities
                    if type(a).__name__ == "DeclareLaunchArgument"}
    finally:
        sys.path.remove(str(REPO / "test" / "launch_standins"))
    assert {"use_sim_time", "log_level"} <= declared
    for command in readme_commands("ros2 launch picosam3_ros sensor.launch.py"):
        for argument in launch_arguments(command):
            assert argument.split(":=")[0] in declared, command


def test_readme_detector_examples_work(tmp_path):
    """The launch line with detections:=true and the `ros2 run ... detections_adapter` line, with
    vision_msgs and yolo_msgs built from test/interfaces (no wheels): the detector's boxes become
    prompts of the classes asked for, and the sensor node answers them."""
    from picosam3_msgs.msg import RoiPromptArray

    install = build_interfaces({"vision_msgs": INTERFACES / "picosam3_test_vision_msgs",
                                "yolo_msgs": INTERFACES / "yolo_msgs"})
    env = with_prefix(ros_env(DOMAIN), install)
    peer = [sys.executable, str(REPO / "test" / "readme_detector_peer.py")]
    (launch_line,) = [c for c in readme_commands("ros2 launch picosam3_ros sensor.launch.py")
                      if "detections:=true" in c]
    arguments = dict(a.split(":=", 1) for a in launch_arguments(launch_line))
    nonce = f"cam-{uuid.uuid4().hex[:8]}"
    with launched(tmp_path, launch_arguments(launch_line), ready=2, env=env) as (_, log):
        detector = start_process([*peer, "vision", arguments["detections_topic"], nonce], env,
                                 tmp_path / "vision_peer.log")
        client = RosClient(DOMAIN)
        try:  # person, cup and dog: every class (the default), each answered
            ok = answers(client, "/image_raw", nonce=nonce, prompts_from_test=False, expected=3)
            assert ok, (log.read_text(), (tmp_path / "vision_peer.log").read_text())
        finally:
            client.close()
            stop_process(detector)

    (run_line,) = readme_commands("ros2 run picosam3_ros detections_adapter")
    package, executable, *args = shlex.split(run_line)[2:]
    from ament_index_python.packages import get_package_prefix

    cmd = [str(Path(get_package_prefix(package)) / "lib" / package / executable), *args]  # what ros2 run does
    topic = next(a.split(":=", 1)[1] for a in args if a.startswith("detections:="))
    with launched(tmp_path, [], env=env, cmd=cmd) as (_, log):
        detector = start_process([*peer, "yolo", topic, nonce], env, tmp_path / "yolo_peer.log")
        client = RosClient(DOMAIN)
        try:
            arrays = client.collect(RoiPromptArray, "/prompts")

            def prompted() -> bool:
                return any(a.header.frame_id == nonce for a in arrays)

            peer_log = tmp_path / "yolo_peer.log"
            assert client.wait_for(prompted, timeout=60), (log.read_text(), peer_log.read_text())
            with client.lock:
                latest = [a for a in arrays if a.header.frame_id == nonce][-1]
        finally:
            client.close()
            stop_process(detector)
    boxes = sorted((p.roi.x_offset, p.roi.y_offset, p.roi.width, p.roi.height) for p in latest.prompts)
    assert boxes == [(40, 40, 40, 40), (120, 80, 80, 80)], boxes  # person and cup; not the dog
