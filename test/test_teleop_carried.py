"""The teleop page shows a carried result (issue 12 item 6): the real teleop_ui process gets a
SegmentationArray over DDS where one prompt is OK and the other NOT_SERVED with its last mask
from an older frame; /api/state reports that mask's age, and the picture shows it dimmed."""

from __future__ import annotations

import http.client
import json
import re
import time
import uuid

import cv2
import numpy as np
from node_helpers import RosClient, node_command, ros_env, running

DOMAIN = 96
W, H = 320, 240
BOXES = {1: (20, 20, 100, 100), 2: (180, 100, 100, 100)}  # prompt id (the page's order) -> box
AGE_NS = 400_000_000


def request(port: int, method: str, path: str, body=None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                 headers={"Content-Type": "application/json"} if body is not None else {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def test_carried_mask_is_shown_dimmed_with_its_age(tmp_path):
    from sensor_msgs.msg import Image

    from picosam3_msgs.msg import Segmentation, SegmentationArray
    from picosam3_ros.core.image_conversion import fill_image

    nonce = f"cam-{uuid.uuid4().hex[:8]}"
    cmd = node_command("picosam3_ros.nodes.teleop_ui_node",
                       {"port": 0, "image_topic": "image", "max_fps": 30.0, "republish_period": 0.0})
    with running(cmd, ros_env(DOMAIN), tmp_path / "teleop.log") as proc:
        client = RosClient(DOMAIN)
        try:
            deadline = time.monotonic() + 60
            port = None
            while port is None and time.monotonic() < deadline and proc.poll() is None:
                found = re.search(r"http://127\.0\.0\.1:(\d+)/", (tmp_path / "teleop.log").read_text())
                port = int(found.group(1)) if found else time.sleep(0.1)
            assert port, (tmp_path / "teleop.log").read_text()
            images = client.node.create_publisher(Image, "image", 10)
            masks = client.node.create_publisher(Image, "mask", 10)
            segs = client.node.create_publisher(SegmentationArray, "segmentations", 10)
            frame = fill_image(Image(), np.full((H, W, 3), 90, np.uint8), "rgb8")
            frame.header.frame_id = nonce

            def publish(stamp_ns: int) -> None:
                header = frame.header
                header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
                label = np.zeros((H, W), np.uint8)
                x, y, w, h = BOXES[1]
                label[y:y + h, x:x + w] = 1  # prompt 1: OK on this frame
                array = SegmentationArray(header=header)
                ok = Segmentation(header=header, prompt_id=1, status=Segmentation.OK, score=0.9)
                carried = Segmentation(prompt_id=2, status=Segmentation.NOT_SERVED, score=0.8)
                carried.header.frame_id = nonce  # its own, older frame
                older = carried.header.stamp
                older.sec, older.nanosec = divmod(stamp_ns - AGE_NS, 1_000_000_000)
                x, y, w, h = BOXES[2]
                crop = carried.crop
                crop.x_offset, crop.y_offset, crop.width, crop.height = x, y, w, h
                fill_image(carried.mask, np.full((h, w), 255, np.uint8), "mono8")
                array.segmentations = [ok, carried]
                images.publish(frame)
                mask_msg = fill_image(Image(header=header), label, "mono8")
                masks.publish(mask_msg)
                segs.publish(array)

            stamp = 1_700_000_000 * 1_000_000_000
            stream_known = b'"width": 320'
            while stream_known not in request(port, "GET", "/api/state")[1] and time.monotonic() < deadline:
                publish(stamp)  # until the page knows the stream size (drags need it)
                time.sleep(0.1)
            for x, y, w, h in BOXES.values():
                status, body = request(port, "POST", "/api/prompts", {
                    "action": "add", "x0": x, "y0": y, "x1": x + w, "y1": y + h, "display_width": W,
                    "display_height": H})
                assert status == 200, body

            def carried_state():
                prompts = json.loads(request(port, "GET", "/api/state")[1])["prompts"]
                return {p["id"]: p.get("result") for p in prompts}

            state = {}
            while time.monotonic() < deadline and not (state.get(2) or {}).get("age_ms"):
                stamp += 100_000_000
                publish(stamp)
                time.sleep(0.1)
                state = carried_state()
            assert state[2]["status"] == "NOT_SERVED" and state[2]["age_ms"] == AGE_NS / 1e6, state
            assert state[1]["status"] == "OK" and state[1]["age_ms"] is None, state
            status, jpeg = request(port, "GET", "/frame.jpg")
            assert status == 200
            picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(int)
            tint = {pid: np.abs(picture[y + 30:y + 70, x + 30:x + 70] - 90).mean()
                    for pid, (x, y, w, h) in BOXES.items()}
            background = np.abs(picture[5:15, 200:300] - 90).mean()
            assert background < 3 < tint[2] < tint[1], (background, tint)  # dimmed, but there
        finally:
            client.close()
