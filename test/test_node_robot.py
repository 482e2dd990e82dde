"""Robot-ready (issue 12): the sensor node next to a camera driver and a robot's tools, as
real processes over DDS.

* A reliable default-QoS driver of 640x480 rgb8 frames, neither process with the Fast DDS
  profile: the node's image_qos auto subscribes reliable and answers the frames.
* A best-effort driver without the profile: its frames are lost in transport; /diagnostics
  says WARN and the log names the fix once.
* Compressed input (image_transport:=compressed): png masks pixel-exact, jpeg answered.
* A namespaced start with the config file (`/**/picosam3_sensor` keys), then set_parameters at
  run time: a new threshold changes the next masks; bad values and start-up-only parameters
  are refused with a reason.
* The node owning the (emulated IMX500) camera: image_raw, camera_info and mask reach default
  reliable subscribers, NOT_SERVED entries carry the prompt's last mask with its own header,
  and Ctrl-C ends it with exit code 0 and no traceback.
"""

from __future__ import annotations

import sys
import time
import uuid

import cv2
import numpy as np
import pytest
from node_helpers import (
    REPO,
    RosClient,
    node_command,
    ros_env,
    running,
    set_parameter,
    start_process,
    stop_process,
    write_red_model,
)

from picosam3_ros.core.crop import crop_and_resize, crop_rect_for_box
from picosam3_ros.core.pipeline import Status
from picosam3_ros.core.postprocess import mask_from_logits
from picosam3_ros.nodes.fastdds_profile import USER_FASTDDS_SETTINGS

DOMAINS = {"reliable": 91, "best_effort": 92, "compressed": 93, "namespace": 94, "camera": 95}
PEER = REPO / "test" / "camera_driver_peer.py"
BOX = (100, 60, 120, 100)
STRONG, WEAK = 255, 140  # red levels: object probability ~1.0 and 0.88 with the red model


def scene(width: int, height: int) -> np.ndarray:
    image = np.full((height, width, 3), 30, np.uint8)
    cv2.rectangle(image, (120, 80), (160, 140), (STRONG, 10, 10), -1)
    cv2.rectangle(image, (161, 80), (200, 140), (WEAK, 10, 10), -1)
    return image


def without_profile(env: dict[str, str]) -> dict[str, str]:
    """A camera driver as users start it: Fast DDS defaults (512 KiB shared-memory segment)."""
    return {k: v for k, v in env.items() if k not in USER_FASTDDS_SETTINGS}


def sensor_node(tmp, params: dict, remap: tuple[str, ...] = ("image:=camera/image_raw",), params_file=None):
    model = write_red_model(tmp / "model")
    cmd = node_command("picosam3_ros.nodes.sensor_node", {"model": str(model), **params},
                       params_file or REPO / "config" / "sensor.yaml")
    for rule in remap:
        cmd += ["-r", rule]
    return cmd


def write_scene(tmp, width: int, height: int):
    path = tmp / f"scene_{width}x{height}.png"
    cv2.imwrite(str(path), cv2.cvtColor(scene(width, height), cv2.COLOR_RGB2BGR))
    return path


def driver(nonce, image, env, log, **options):
    cmd = [sys.executable, str(PEER), nonce, str(image)]
    for key, value in options.items():
        cmd += [f"--{key}", str(value)]
    return start_process(cmd, env, log)


def diagnostic_values(msg) -> dict[str, str]:
    status = msg.status[0]
    return {"level": status.level[0] if isinstance(status.level, bytes) else status.level,
            "message": status.message, **{kv.key: kv.value for kv in status.values}}


def test_reliable_driver_without_profile_gets_its_frames_answered(tmp_path):
    from picosam3_msgs.msg import SegmentationArray

    nonce, frames = f"cam-{uuid.uuid4().hex[:8]}", 50
    env = without_profile(ros_env(DOMAINS["reliable"]))
    with running(sensor_node(tmp_path, {"camera": "none"}), env, tmp_path / "node.log") as node:
        client = RosClient(DOMAINS["reliable"])
        try:
            segs = client.collect(SegmentationArray, "segmentations")
            peer = driver(nonce, write_scene(tmp_path, 640, 480), env, tmp_path / "driver.log",
                          qos="reliable", frames=frames, rate=10)
            assert peer.wait(timeout=120) == 0, (tmp_path / "driver.log").read_text()
            stop_process(peer)
            time.sleep(1.0)
            with client.lock:
                answered = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in segs
                            if m.header.frame_id == nonce}
        finally:
            client.close()
        assert node.poll() is None, (tmp_path / "node.log").read_text()
    log = (tmp_path / "node.log").read_text()
    assert "camera/image_raw (reliable, image_qos=auto)" in log, log
    # Best effort (the old SensorDataQoS input) answered 1 of 60 such frames (bench_transport --matrix).
    assert len(answered) >= 0.8 * frames, f"{len(answered)}/{frames} frames answered\n{log}"


def test_best_effort_driver_without_profile_is_reported_with_the_fix(tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray

    nonce = f"cam-{uuid.uuid4().hex[:8]}"
    env = without_profile(ros_env(DOMAINS["best_effort"]))
    with running(sensor_node(tmp_path, {"camera": "none"}), env, tmp_path / "node.log") as node:
        client = RosClient(DOMAINS["best_effort"])
        try:
            diags = client.collect(DiagnosticArray, "/diagnostics")
            peer = driver(nonce, write_scene(tmp_path, 640, 480), env, tmp_path / "driver.log",
                          qos="best_effort", frames=120, rate=15, settle=0)

            def warned():
                return any(diagnostic_values(m)["level"] == 1 and "FASTDDS_DEFAULT_PROFILES_FILE"
                           in diagnostic_values(m)["message"] for m in diags)

            ok = client.wait_for(warned, timeout=60, proc=node)
            with client.lock:
                last = [diagnostic_values(m) for m in diags][-3:]
            stop_process(peer)
        finally:
            client.close()
    log = (tmp_path / "node.log").read_text()
    assert ok, f"no WARN naming the fix; last diagnostics: {last}\n{log}"
    assert log.count("Fix: export FASTDDS_DEFAULT_PROFILES_FILE") == 1, log  # one log line, not a flood


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_compressed_input(tmp_path, fmt):
    from picosam3_msgs.msg import RoiPrompt, RoiPromptArray, SegmentationArray

    nonce = f"cam-{uuid.uuid4().hex[:8]}"
    env = ros_env(DOMAINS["compressed"])
    cmd = sensor_node(tmp_path, {"camera": "none", "image_transport": "compressed"})
    with running(cmd, env, tmp_path / "node.log") as node:
        client = RosClient(DOMAINS["compressed"])
        try:
            segs = client.collect(SegmentationArray, "segmentations")
            prompts = client.node.create_publisher(RoiPromptArray, "prompts", 10)
            array = RoiPromptArray(prompts=[RoiPrompt(id=3)])
            roi = array.prompts[0].roi
            roi.x_offset, roi.y_offset, roi.width, roi.height = BOX
            peer = driver(nonce, write_scene(tmp_path, 320, 240), env, tmp_path / "driver.log",
                          qos="best_effort", frames=400, rate=10, settle=0, format=fmt)

            def answered():
                return [m for m in segs if m.header.frame_id == nonce and m.segmentations
                        and m.segmentations[0].status == Status.OK]

            while peer.poll() is None and not client.wait_for(answered, timeout=0.5, proc=node):
                prompts.publish(array)
            stop_process(peer)
            with client.lock:
                got = answered()
        finally:
            client.close()
    log = (tmp_path / "node.log").read_text()
    assert got, log
    assert "camera/image_raw/compressed" in log
    seg = got[0].segmentations[0]
    mask = np.frombuffer(bytes(seg.mask.data), np.uint8).reshape(seg.mask.height, seg.mask.width)
    if fmt == "png":  # lossless: exactly what the raw frame gives
        rgb = scene(320, 240)
        crop = crop_rect_for_box(BOX, (320, 240))
        logits = (crop_and_resize(rgb, crop)[..., 0].astype(np.float32) / 255.0 - 0.5) * 40.0
        expected, _ = mask_from_logits(logits, crop, 0.5)
        np.testing.assert_array_equal(mask, expected)
    else:
        assert mask.sum() > 0


def get_parameters(client, node: str, names: list[str]) -> dict:
    from rcl_interfaces.srv import GetParameters

    service = client.node.create_client(GetParameters, f"{node}/get_parameters")
    assert service.wait_for_service(timeout_sec=30), f"no {node}/get_parameters"
    future = service.call_async(GetParameters.Request(names=names))
    assert client.wait_for(future.done, timeout=30)
    values = {}
    for name, value in zip(names, future.result().values):
        values[name] = {2: value.integer_value, 3: value.double_value, 4: value.string_value,
                        1: value.bool_value}.get(value.type)
    return values


def test_namespaced_config_file_and_run_time_parameters(tmp_path):
    from sensor_msgs.msg import Image

    from picosam3_msgs.msg import RoiPrompt, RoiPromptArray
    from picosam3_ros.core.image_conversion import fill_image

    text = (REPO / "config" / "sensor.yaml").read_text()
    text = text.replace("threshold: 0.0 ", "threshold: 0.7 ").replace("max_prompts: 16 ", "max_prompts: 5 ")
    config = tmp_path / "sensor.yaml"
    config.write_text(text)
    nonce = f"cam-{uuid.uuid4().hex[:8]}"
    env = ros_env(DOMAINS["namespace"])
    cmd = sensor_node(tmp_path, {"camera": "none"}, ("__ns:=/robot1",), params_file=config)
    with running(cmd, env, tmp_path / "node.log") as node:
        client = RosClient(DOMAINS["namespace"])
        try:
            name = "/robot1/picosam3_sensor"
            assert get_parameters(client, name, ["threshold", "max_prompts"]) == {
                "threshold": 0.7, "max_prompts": 5}, (tmp_path / "node.log").read_text()
            masks = client.collect(Image, "/robot1/mask")  # a default (reliable) subscriber
            images = client.node.create_publisher(Image, "/robot1/image", 10)
            prompts = client.node.create_publisher(RoiPromptArray, "/robot1/prompts", 10)
            array = RoiPromptArray(prompts=[RoiPrompt(id=1)])
            roi = array.prompts[0].roi
            roi.x_offset, roi.y_offset, roi.width, roi.height = BOX
            frame = fill_image(Image(), scene(320, 240), "rgb8")
            frame.header.frame_id = nonce

            def mask_pixels(stamp: int):
                def done():
                    return any(m.header.stamp.sec == stamp and m.header.frame_id == nonce for m in masks)
                while not client.wait_for(done, timeout=0.3, proc=node):
                    assert node.poll() is None, (tmp_path / "node.log").read_text()
                    prompts.publish(array)
                    frame.header.stamp.sec = stamp
                    images.publish(frame)
                with client.lock:
                    msg = next(m for m in masks if m.header.stamp.sec == stamp and m.header.frame_id == nonce)
                return int(np.count_nonzero(np.frombuffer(bytes(msg.data), np.uint8)))

            both = mask_pixels(100)
            assert set_parameter(client, name, "threshold", 0.95).successful
            strong_only = mask_pixels(200)
            # The weak half (p = 0.88) is in at 0.7 and out at 0.95: the next masks follow the new value.
            assert 0 < strong_only < 0.7 * both, (both, strong_only)

            refused = set_parameter(client, name, "threshold", 1.5)
            assert not refused.successful and "threshold" in refused.reason
            refused = set_parameter(client, name, "backend", "onnx")
            assert not refused.successful and "read-only" in refused.reason
            assert get_parameters(client, name, ["threshold"]) == {"threshold": 0.95}
            assert mask_pixels(300) == strong_only
        finally:
            client.close()


def test_owned_camera_outputs_carried_results_and_clean_ctrl_c(tmp_path):
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import CameraInfo, Image

    from picosam3_msgs.msg import RoiPrompt, RoiPromptArray, SegmentationArray

    source = tmp_path / "frames"
    source.mkdir()
    cv2.imwrite(str(source / "scene.png"), cv2.cvtColor(scene(640, 480), cv2.COLOR_RGB2BGR))
    params = {"camera": "emulator", "backend": "imx500", "frame_rate": 10.0, "emulator.source": str(source),
              "roi_policy": "round_robin"}
    env = ros_env(DOMAINS["camera"])
    cmd = sensor_node(tmp_path, params, ())
    node = start_process(cmd, env, tmp_path / "node.log")
    client = RosClient(DOMAINS["camera"])
    try:
        default_qos = QoSProfile(depth=10)  # what rviz / ros2 topic echo / a recorder ask for: reliable
        raw = client.collect(Image, "image_raw", default_qos)
        info = client.collect(CameraInfo, "camera_info", default_qos)
        masks = client.collect(Image, "mask", default_qos)
        segs = client.collect(SegmentationArray, "segmentations", default_qos)
        prompts = client.node.create_publisher(RoiPromptArray, "prompts", 10)
        array = RoiPromptArray()
        for prompt_id, box in ((1, BOX), (2, (300, 200, 120, 100))):
            prompt = RoiPrompt(id=prompt_id)
            prompt.roi.x_offset, prompt.roi.y_offset, prompt.roi.width, prompt.roi.height = box
            array.prompts.append(prompt)

        def carried():
            for m in segs:
                for s in m.segmentations:
                    older = (s.header.stamp.sec, s.header.stamp.nanosec) < (m.header.stamp.sec,
                                                                           m.header.stamp.nanosec)
                    if s.status == Status.NOT_SERVED and s.mask.data and older:
                        return True
            return False

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not client.wait_for(carried, timeout=0.5, proc=node):
            prompts.publish(array)
        with client.lock:
            assert carried(), (tmp_path / "node.log").read_text()
            assert raw and masks and info, (len(raw), len(masks), len(info))
            assert (info[-1].width, info[-1].height) == (640, 480)
            # A NOT_SERVED entry's carried mask is the prompt's last OK mask, with that frame's header.
            last_ok = {}
            for m in segs:
                for s in m.segmentations:
                    if s.status == Status.OK:
                        last_ok[s.prompt_id] = (s.header.stamp.sec, s.header.stamp.nanosec)
                    elif s.status == Status.NOT_SERVED and s.mask.data:
                        assert (s.header.stamp.sec, s.header.stamp.nanosec) == last_ok[s.prompt_id]
    finally:
        client.close()
        code = stop_process(node)
    log = (tmp_path / "node.log").read_text()
    assert code == 0 and "Traceback" not in log and "RCLError" not in log, log


def test_ctrl_c_with_the_camera_owned_is_clean_every_time(tmp_path):
    source = tmp_path / "frames"
    source.mkdir()
    cv2.imwrite(str(source / "scene.png"), cv2.cvtColor(scene(640, 480), cv2.COLOR_RGB2BGR))
    params = {"camera": "emulator", "frame_rate": 30.0, "emulator.source": str(source)}
    cmd = sensor_node(tmp_path, params, ())
    for run in range(3):
        log_path = tmp_path / f"node{run}.log"
        proc = start_process(cmd, ros_env(DOMAINS["camera"]), log_path)
        deadline = time.monotonic() + 60
        while "ready:" not in log_path.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        time.sleep(0.5 + 0.4 * run)  # the camera thread publishing at 30 fps when the signal comes
        code = stop_process(proc)
        log = log_path.read_text()
        assert code == 0 and "Traceback" not in log and "Exception in thread" not in log, log


def test_launch_file_arguments_are_declared_and_documented():
    """launch/launch_ros do not install here: check the file statically (it runs on robots)."""
    import ast

    tree = ast.parse((REPO / "launch" / "sensor.launch.py").read_text())
    (table,) = [n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "ARGUMENTS"]
    declared = {ast.literal_eval(key) for key in table.keys} | {"config_file", "fastdds_profile"}
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    used = {c.args[0].value for c in calls if getattr(c.func, "id", "") == "LaunchConfiguration"
            and isinstance(c.args[0], ast.Constant)}
    used |= {"backend", "camera", "model", "image_transport", "image_qos"}  # the overrides' loop
    assert used <= declared, used - declared
    page = (REPO / "docs" / "parameters.md").read_text()
    section = page.split("## Launch arguments", 1)[1].split("\n## ", 1)[0]
    for name in declared:
        assert f"`{name}`" in section, f"launch argument {name} is not in docs/parameters.md"
    executables = {k.value.value for c in calls for k in c.keywords if k.arg == "executable"}
    setup = (REPO / "setup.py").read_text()
    assert executables and all(f'"{e} = ' in setup for e in executables), executables
