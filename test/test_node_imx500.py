"""The emulated IMX500 path through the real node process: one ROI per frame, several prompts,
an ROI apply delay, attribution checked against the emulator's ground truth, and the runtime
fallback to the CPU backend."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
from node_helpers import REPO, RosClient, node_command, ros_env, running, write_red_model

from picosam3_ros.core.crop import crop_and_resize, crop_rect_for_box
from picosam3_ros.core.pipeline import Status
from picosam3_ros.core.postprocess import mask_from_logits
from picosam3_ros.core.sensor_geometry import SensorGeometry

DOMAIN = 23
WIDTH, HEIGHT = 640, 480
FPS = 10.0
DELAY = 2
PROMPTS = {4: (60, 60, 160, 120), 5: (380, 80, 120, 160), 6: (250, 300, 140, 100)}


def scene() -> np.ndarray:
    """Red, asymmetric objects (a transposed mask would not match)."""
    image = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
    cv2.rectangle(image, (70, 100), (210, 140), (230, 20, 20), -1)  # wide bar in prompt 4
    cv2.rectangle(image, (420, 90), (450, 230), (230, 20, 20), -1)  # tall bar in prompt 5
    cv2.fillPoly(image, [np.array([[260, 390], [380, 390], [260, 310]])], (230, 20, 20))  # triangle in 6
    return image


def red_logits(crop_rgb: np.ndarray) -> np.ndarray:
    return (crop_rgb[..., 0].astype(np.float32) / 255.0 - 0.5) * 40.0


def prompt_array():
    from picosam3_msgs.msg import RoiPrompt, RoiPromptArray

    array = RoiPromptArray()
    for prompt_id, (x, y, w, h) in PROMPTS.items():
        prompt = RoiPrompt(id=prompt_id)
        prompt.roi.x_offset, prompt.roi.y_offset, prompt.roi.width, prompt.roi.height = x, y, w, h
        array.prompts.append(prompt)
    return array


def run_node(tmp, extra_params):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from picosam3_msgs.msg import RoiPromptArray, SegmentationArray

    model = write_red_model(tmp / "model")
    source = tmp / "frames"
    source.mkdir()
    cv2.imwrite(str(source / "scene.png"), cv2.cvtColor(scene(), cv2.COLOR_RGB2BGR))
    params = {
        "model": str(model),
        "camera": "emulator",
        "backend": "auto",
        "frame_rate": FPS,
        "roi_apply_delay_frames": DELAY,
        "emulator.source": str(source),
        "emulator.ground_truth_log": str(tmp / "truth.jsonl"),
        "roi_policy": "round_robin",
    }
    params.update(extra_params)
    cmd = node_command("picosam3_ros.nodes.sensor_node", params, REPO / "config" / "sensor.yaml")
    return (
        cmd,
        {
            "segs": (SegmentationArray, "segmentations", 10),
            "raw": (Image, "image_raw", qos_profile_sensor_data),
            "diag": (DiagnosticArray, "/diagnostics", 10),
        },
        RoiPromptArray,
    )


def collect_run(tmp, extra_params, done, timeout=90.0):
    cmd, topics, prompt_type = run_node(tmp, extra_params)
    with running(cmd, ros_env(DOMAIN), tmp / "node.log") as proc:
        client = RosClient(DOMAIN)
        try:
            got = {k: client.collect(*v) for k, v in topics.items()}
            pub = client.node.create_publisher(prompt_type, "prompts", 10)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None:
                pub.publish(prompt_array())  # until the node has them (discovery is slow when loaded)
                if client.wait_for(lambda: done(got), timeout=0.5, proc=proc):
                    break
            with client.lock:
                return {k: list(v) for k, v in got.items()}, proc.poll()
        finally:
            client.close()


def served(msg):
    return [s for s in msg.segmentations if s.status == Status.OK]


def test_attribution_follows_the_roi_in_effect(tmp_path):
    def done(got):
        ok = [s for m in got["segs"] for s in served(m)]
        raw_stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in got["raw"]}
        with_frame = [
            m for m in got["segs"] if served(m) and (m.header.stamp.sec, m.header.stamp.nanosec) in raw_stamps
        ]
        return {s.prompt_id for s in ok} == set(PROMPTS) and len(ok) >= 9 and len(with_frame) >= 1

    got, exited = collect_run(tmp_path, {}, done)
    log_text = (tmp_path / "node.log").read_text()
    assert exited is None, log_text
    ok_msgs = [m for m in got["segs"] if served(m)]
    statuses = [(s.prompt_id, s.status) for m in got["segs"] for s in m.segmentations]
    assert done(got), f"not every prompt was served: {statuses}"
    truth = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    offset = time.time_ns() - time.monotonic_ns()  # the node stamps SensorTimestamp + this offset
    duration = round(1e9 / FPS)
    geometry = SensorGeometry((WIDTH, HEIGHT), tuple(truth[0]["scaler_crop"]))
    raw = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in got["raw"]}
    checked_content = 0
    for msg in ok_msgs:
        # One ROI per frame: exactly one prompt is served, the others wait.
        assert len(served(msg)) == 1
        assert all(s.status in (Status.OK, Status.NOT_SERVED) for s in msg.segmentations)
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        frame = min(truth, key=lambda t: abs(t["sensor_timestamp_ns"] + offset - stamp))
        assert abs(frame["sensor_timestamp_ns"] + offset - stamp) < duration / 4
        seg = served(msg)[0]
        crop = geometry.sensor_rect_to_stream(tuple(frame["roi"]))
        # The mask is pasted into the ROI that was in effect for this frame ...
        assert (seg.crop.x_offset, seg.crop.y_offset, seg.crop.width, seg.crop.height) == crop.as_xywh()
        # ... and that ROI is the one requested for this prompt.
        wanted = geometry.stream_rect_to_sensor(crop_rect_for_box(PROMPTS[seg.prompt_id], (WIDTH, HEIGHT)))
        assert tuple(frame["roi"]) == wanted, (seg.prompt_id, frame)
        # Content and orientation: compare with the model run on the published frame's crop.
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        if key in raw:
            image = np.frombuffer(bytes(raw[key].data), np.uint8).reshape(HEIGHT, WIDTH, 3)
            expected, _ = mask_from_logits(red_logits(crop_and_resize(image, crop)), crop, 0.5)
            got_mask = np.frombuffer(bytes(seg.mask.data), np.uint8).reshape(seg.mask.height, seg.mask.width)
            inter = np.logical_and(expected > 0, got_mask > 0).sum()
            union = np.logical_or(expected > 0, got_mask > 0).sum()
            assert union > 0 and inter / union > 0.85, (seg.prompt_id, inter / union)
            checked_content += 1
    assert checked_content >= 1


def test_sensor_failure_falls_back_to_cpu(tmp_path):
    def done(got):
        cpu = [
            m for m in got["segs"] if m.segmentations and all(s.backend == "onnx" for s in m.segmentations)
        ]
        return len(cpu) >= 2 and any(
            kv.key == "fallbacks" and kv.value == "1"
            for d in got["diag"]
            for st in d.status
            for kv in st.values
        )

    got, exited = collect_run(tmp_path, {"emulator.fail_after_frames": 12}, done)
    assert exited is None, (tmp_path / "node.log").read_text()
    assert done(got), (tmp_path / "node.log").read_text()[-2000:]
    before = [m for m in got["segs"] if any(s.backend == "imx500" for s in m.segmentations)]
    after = [m for m in got["segs"] if m.segmentations and all(s.backend == "onnx" for s in m.segmentations)]
    assert after
    # On the CPU every prompt is served on every frame.
    assert all(all(s.status == Status.OK for s in m.segmentations) for m in after[-2:])
    assert not before or before[-1].header.stamp.sec <= after[0].header.stamp.sec + 1
