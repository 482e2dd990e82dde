"""objects_3d over real DDS: real frames' ground-truth masks, synthetic aligned depth, real processes.

* ``test_objects_3d_node_*``: the node as a process; this test stands in for the sensor node
  (a SegmentationArray with the masks of the fixture image 471: its ground truth, the box as a
  mask, which leaks onto the background, and a NOT_SERVED entry) and for the RGB-D driver.
  Then a frame without depth, a camera_info for another image size, a depth image in an
  unknown encoding.
* ``test_sensor_and_objects_3d_*``: the bar's chain on a smaller scale: the real sensor node
  (CPU backend, the packaged model) and objects_3d as processes, real held-out frames (the
  demo clip, COCO val2017) with their GT boxes; bench/bench_objects_3d.py runs the same chain
  on the whole dev split.

vision_msgs outputs (Detection2DArray, Detection3DArray) are read by a peer process with the
test interface package (vision_msgs' layout under another name, node_helpers.build_interfaces).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import depth_scene
import numpy as np
import pytest
from depth_scene import camera_info_msg, depth_image_msg, gt_centroid, run_rgbd_frames
from node_helpers import (
    INTERFACES,
    REPO,
    RosClient,
    build_interfaces,
    node_command,
    ros_env,
    start_process,
    stop_process,
    with_prefix,
)

from picosam3_ros.core.coco_dataset import decode_segmentation
from picosam3_ros.core.crop import crop_rect_for_box
from picosam3_ros.core.image_conversion import fill_image

DOMAIN_OBJECTS, DOMAIN_CHAIN = 13, 14
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "train"
TEST_VISION = "picosam3_test_vision_msgs/msg/"
FRAME_ID = "camera_color_optical_frame"


@pytest.fixture(scope="module")
def interfaces() -> Path:
    return build_interfaces({"picosam3_test_vision_msgs": INTERFACES / "picosam3_test_vision_msgs"})


class Peer:
    """vision_msgs_peer.py on ``topic``: its JSON lines, collected in a thread."""

    def __init__(self, env, topic: str, type_name: str):
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "test" / "vision_msgs_peer.py"), topic, type_name], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO,
            start_new_session=True)
        self.messages: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.messages.append(json.loads(line))

    def close(self) -> None:
        self.proc.stdin.close()
        stop_process(self.proc)


def fixture_scene():
    """Image 471 (640x427): the bus (1.0 m) with the person in front of it (0.8 m), background 2.0 m."""
    data = json.loads((FIXTURES / "instances_fixture_val.json").read_text())
    info = data["images"][0]
    height, width = info["height"], info["width"]
    rgb = cv2.cvtColor(cv2.imread(str(FIXTURES / "images" / info["file_name"])), cv2.COLOR_BGR2RGB)
    bus, person = sorted(data["annotations"], key=lambda a: -a["area"])
    masks = {name: decode_segmentation(a["segmentation"], height, width) for name, a in
             (("bus", bus), ("person", person))}
    depth = np.full((height, width), 2000, np.uint16)
    depth[masks["bus"]] = 1000
    depth[masks["person"]] = 800
    depth[np.random.default_rng(0).random(depth.shape) < 0.02] = 0  # 2% holes
    truth = {"bus": gt_centroid(masks["bus"] & ~masks["person"]), "person": gt_centroid(masks["person"], 0.8)}
    boxes = {"bus": bus["bbox"], "person": person["bbox"]}
    return rgb, depth, masks, boxes, truth


def segmentation_array(stamp, masks, boxes):
    """What the sensor node would send for the frame: prompts 1 (bus GT), 2 (the bus box as its mask:
    a leak onto the background), 3 (person GT), 4 (NOT_SERVED, a carried mask: no object)."""
    from picosam3_msgs.msg import Segmentation, SegmentationArray

    height, width = masks["bus"].shape
    array = SegmentationArray()
    array.header.stamp, array.header.frame_id = stamp, FRAME_ID
    box_mask = np.zeros_like(masks["bus"])
    x, y, w, h = (int(round(v)) for v in boxes["bus"])
    box_mask[y:y + h, x:x + w] = True
    entries = [(1, masks["bus"], boxes["bus"], Segmentation.OK), (2, box_mask, boxes["bus"], Segmentation.OK),
               (3, masks["person"], boxes["person"], Segmentation.OK),
               (4, masks["bus"], boxes["bus"], Segmentation.NOT_SERVED)]
    for prompt_id, mask, box, status in entries:
        rect = crop_rect_for_box(box, (width, height))
        seg = Segmentation(prompt_id=prompt_id, status=status, score=0.5 + 0.1 * prompt_id, backend="onnx")
        seg.header = array.header
        crop = seg.crop
        crop.x_offset, crop.y_offset, crop.width, crop.height = rect.x, rect.y, rect.width, rect.height
        fill_image(seg.mask, (mask[rect.y:rect.y_end, rect.x:rect.x_end] * 255).astype(np.uint8), "mono8")
        array.segmentations.append(seg)
    return array


def test_objects_3d_node_leaking_masks_missing_depth_and_bad_camera_info(tmp_path, interfaces):
    from builtin_interfaces.msg import Time
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from picosam3_msgs.msg import Object3D, Object3DArray, SegmentationArray
    from picosam3_ros.core.objects_3d import read_cloud

    rgb, depth, masks, boxes, truth = fixture_scene()
    height, width = depth.shape
    env = with_prefix(ros_env(DOMAIN_OBJECTS), interfaces)
    params = {"detections_type": TEST_VISION + "Detection3DArray"}
    cmd = node_command("picosam3_ros.nodes.objects_3d_node", params, REPO / "config" / "objects_3d.yaml")
    log = tmp_path / "objects_3d.log"
    node = start_process(cmd, env, log)
    peer = Peer(env, "objects/detections", TEST_VISION + "Detection3DArray")
    client = RosClient(DOMAIN_OBJECTS, "objects_3d_test")
    try:
        qos = QoSProfile(depth=10)
        objects = client.collect(Object3DArray, "objects", qos)
        clouds = client.collect(PointCloud2, "objects/points", qos)
        seg_pub = client.node.create_publisher(SegmentationArray, "segmentations", qos)
        depth_pub = client.node.create_publisher(Image, "depth", qos)
        info_pub = client.node.create_publisher(CameraInfo, "depth/camera_info", qos)

        def frame(sec, depth_msg=None, info=None):
            """Publish one frame (info, depth, then its segmentations) until its objects arrive."""
            stamp = Time(sec=sec)
            for _ in range(60):
                if info is not None:
                    info_pub.publish(info)
                if depth_msg is not None:
                    depth_msg.header.stamp = stamp
                    depth_pub.publish(depth_msg)
                time.sleep(0.05)
                seg_pub.publish(segmentation_array(stamp, masks, boxes))
                if client.wait_for(lambda: any(a.frame_stamp.sec == sec for a in objects), 1.5, node):
                    break
            with client.lock:
                return next(a for a in objects if a.frame_stamp.sec == sec)

        # The peer's subscription seen (so by the node too, soon after): its messages are not replayed.
        assert client.wait_for(lambda: client.node.count_subscribers("objects/detections") >= 1, 60, node)
        time.sleep(1.0)
        good_info = camera_info_msg(width, height, Time(sec=0), FRAME_ID)
        array = frame(100, depth_image_msg(depth, Time(sec=100), FRAME_ID), good_info)
        assert array.header.frame_id == FRAME_ID and array.header.stamp.sec == 100  # the depth image's
        by_id = {o.prompt_id: o for o in array.objects}
        assert list(by_id) == [1, 2, 3], "one entry per OK segmentation, in order; NOT_SERVED has none"
        assert all(o.status == Object3D.OK for o in array.objects)
        centroid = {i: np.array([o.centroid.x, o.centroid.y, o.centroid.z]) for i, o in by_id.items()}
        assert np.linalg.norm(centroid[1] - truth["bus"]) < 0.01
        assert np.linalg.norm(centroid[2] - truth["bus"]) < 0.02  # the leaking box mask: still the bus
        assert np.linalg.norm(centroid[3] - truth["person"]) < 0.01
        assert by_id[2].valid_points > by_id[2].object_points  # the background was left out
        assert by_id[1].extent_max.z < 1.01 and by_id[3].front_depth == pytest.approx(0.8, abs=0.005)
        assert by_id[1].sample_stride > 1 and by_id[3].sample_stride == 1
        assert by_id[2].score == pytest.approx(0.7)

        assert client.wait_for(lambda: any(c.header.stamp.sec == 100 for c in clouds), 30, node)
        with client.lock:
            cloud = next(c for c in clouds if c.header.stamp.sec == 100)
        assert [f.name for f in cloud.fields] == ["x", "y", "z", "prompt_id"] and cloud.point_step == 16
        records = read_cloud(bytes(cloud.data))
        assert len(records) == cloud.width == sum(o.object_points for o in array.objects)
        mine = records[records["prompt_id"] == 3]
        assert np.allclose([mine["x"].mean(), mine["y"].mean(), mine["z"].mean()], centroid[3], atol=1e-4)

        def detections_for(sec):
            return next((m for m in peer.messages if m["header"]["stamp"]["sec"] == sec), None)

        assert client.wait_for(lambda: detections_for(100) is not None, 60, node), "no Detection3DArray"
        detections = {d["id"]: d for d in detections_for(100)["detections"]}
        assert sorted(detections) == ["1", "2", "3"]
        bus = detections["1"]
        low, high = by_id[1].extent_min, by_id[1].extent_max
        assert bus["bbox"]["center"]["position"]["x"] == pytest.approx((low.x + high.x) / 2, abs=1e-6)
        assert bus["bbox"]["size"]["y"] == pytest.approx(high.y - low.y, abs=1e-6)
        assert bus["results"][0]["hypothesis"]["score"] == pytest.approx(by_id[1].score, abs=1e-6)

        # A frame whose depth image never comes: answered after match_timeout, every entry NO_DEPTH_IMAGE.
        missing = frame(200)
        assert missing.header.frame_id == FRAME_ID and missing.header.stamp.sec == 200  # the segmentations'
        assert [o.status for o in missing.objects] == [Object3D.NO_DEPTH_IMAGE] * 3

        # camera_info for another image size (e.g. the unaligned depth camera's): refused, not guessed.
        small_info = camera_info_msg(320, 240, Time(sec=0), FRAME_ID)
        bad = frame(300, depth_image_msg(depth, Time(sec=300), FRAME_ID), small_info)
        assert [o.status for o in bad.objects] == [Object3D.BAD_CAMERA_INFO] * 3

        # A depth image in an encoding that is not depth.
        wrong = Image()
        wrong.header.frame_id = FRAME_ID
        fill_image(wrong, rgb, "rgb8")
        unusable = frame(400, wrong, good_info)
        assert [o.status for o in unusable.objects] == [Object3D.BAD_DEPTH_IMAGE] * 3

        again = frame(500, depth_image_msg(depth, Time(sec=500), FRAME_ID), good_info)  # and it recovers
        assert [o.status for o in again.objects] == [Object3D.OK] * 3
    finally:
        client.close()
        peer.close()
        code = stop_process(node)
    text = log.read_text()
    assert code == 0 and "Traceback" not in text, text
    assert "320x240" in text and "no depth image" in text  # each problem said once, with the fix


def test_sensor_and_objects_3d_on_real_frames_with_detections(tmp_path, interfaces):
    """Real sensor node + objects_3d; the clip's 30 held-out frames with the GT box of their largest
    object, 16UC1 depth (1.0 m / 2.0 m, 2% holes), camera_info: an object for every frame, where the
    core puts it for the mask the sensor sent, and near the ground truth's centroid."""
    from picosam3_ros.core.clip import Clip
    from picosam3_ros.core.image_conversion import image_array
    from picosam3_ros.core.objects_3d import DepthSettings, Intrinsics, locate_object

    frames = [(im.image_rgb, im.instances[0].box, im.instances[0].mask) for im in Clip().images]
    env = with_prefix(ros_env(DOMAIN_CHAIN), interfaces)
    params = {"backend": "onnx", "camera": "none", "detections_type": TEST_VISION + "Detection2DArray"}
    sensor_cmd = node_command("picosam3_ros.nodes.sensor_node", params, REPO / "config" / "sensor.yaml")
    objects_cmd = node_command("picosam3_ros.nodes.objects_3d_node", {"detections_type": "''"},
                               REPO / "config" / "objects_3d.yaml")
    sensor = start_process(sensor_cmd, env, tmp_path / "sensor.log")
    objects = start_process(objects_cmd, env, tmp_path / "objects_3d.log")
    peer = Peer(env, "detections", TEST_VISION + "Detection2DArray")
    client = RosClient(DOMAIN_CHAIN, "rgbd_client")
    try:
        assert client.wait_for(lambda: client.node.count_subscribers("detections") >= 1, 60, sensor)
        alive = lambda: sensor.poll() is None and objects.poll() is None  # noqa: E731
        outcomes = run_rgbd_frames(client, frames, alive, FRAME_ID)
        assert client.wait_for(lambda: len(peer.messages) >= len(frames), 30, sensor), outcomes
    finally:
        client.close()
        peer.close()
        codes = stop_process(sensor), stop_process(objects)
    logs = (tmp_path / "sensor.log").read_text() + (tmp_path / "objects_3d.log").read_text()
    assert codes == (0, 0) and "Traceback" not in logs, logs
    assert [o.status for o in outcomes] == [0] * len(frames), (outcomes, logs)  # an object for every frame
    intrinsics = Intrinsics(*depth_scene.intrinsics(640, 480), 640, 480)
    for index, ((_, _, mask), outcome) in enumerate(zip(frames, outcomes)):
        entry = outcome.segmentation
        origin = (entry.crop.x_offset, entry.crop.y_offset)
        expected = locate_object(entry.prompt_id, image_array(entry.mask), origin,
                                 depth_scene.depth_mm(mask, seed=index), 0.001, intrinsics, DepthSettings())
        assert outcome.centroid == pytest.approx(expected.centroid, abs=1e-5), index
    # Quality: the masks' own (the bench measures the dev split: bench/bench_objects_3d.py).
    errors = sorted(o.error_m for o in outcomes)
    assert errors[len(errors) // 2] < 0.02 and sum(e < 0.05 for e in errors) >= 0.8 * len(frames), errors
    # detections: the box each mask was made for (the GT box), the prompt id, the mask's score.
    by_stamp = {m["header"]["stamp"]["sec"]: m["detections"] for m in peer.messages}
    for index, (_, box, _) in enumerate(frames):
        (detection,) = by_stamp[1_000_000 + index]
        x, y, w, h = box
        assert detection["id"] == str(index + 1)
        assert detection["bbox"]["center"]["position"]["x"] == pytest.approx(x + w / 2)
        assert (detection["bbox"]["size_x"], detection["bbox"]["size_y"]) == (w, h)
        score = detection["results"][0]["hypothesis"]["score"]
        assert score == pytest.approx(outcomes[index].score, abs=1e-6)


def test_every_objects_3d_parameter_is_documented_and_in_the_config():
    from picosam3_ros.nodes.objects_3d_node import PARAMS

    doc = (REPO / "docs" / "objects_3d.md").read_text()
    table = doc.split("## Parameters", 1)[1].split("\n## ", 1)[0]
    yaml = (REPO / "config" / "objects_3d.yaml").read_text()
    for name, param in PARAMS.params.items():
        assert f"`{name}`" in table, name
        assert f"    {name}: " in yaml, name
        row = next(line for line in table.splitlines() if f"`{name}`" in line)
        assert ("| yes |" in row) == param.runtime, name
    assert "objects_3d.md" in (REPO / "README.md").read_text()
