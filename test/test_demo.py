"""The demo's pieces at a small size: the committed clip, frame recognition, the prompt
publisher over DDS, and the whole demo (sensor node on the emulated IMX500) on 2 images.

ROS domains used here: 46-48.
"""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from node_helpers import REPO, RosClient, disk_logits, node_command, ros_env, running, write_disk_model

from picosam3_ros.core.clip import ANNOTATIONS_NAME, DEFAULT_CLIP_DIR, Clip
from picosam3_ros.core.crop import crop_rect_for_box
from picosam3_ros.demo.demo import prepare_frames

FREE_LICENCES = {4: "by/2.0", 5: "by-sa/2.0"}


@pytest.fixture(scope="module")
def clip() -> Clip:
    return Clip(DEFAULT_CLIP_DIR)


def test_committed_clip_is_small_real_and_attributed(clip):
    data = json.loads((DEFAULT_CLIP_DIR / ANNOTATIONS_NAME).read_text())
    total = sum(p.stat().st_size for p in DEFAULT_CLIP_DIR.iterdir())
    assert total < 3_000_000
    assert 24 <= len(clip) == len(data["images"])
    attribution = (DEFAULT_CLIP_DIR / "ATTRIBUTION.md").read_text()
    licences = {lic["id"]: lic["url"] for lic in data["licenses"]}
    for image in data["images"]:
        assert image["license"] in FREE_LICENCES and licences[image["license"]].endswith(
            FREE_LICENCES[image["license"]] + "/"
        )
        assert image["file_name"] in attribution and image["flickr_url"] in attribution
        assert (image["width"], image["height"]) == (640, 480)
    for image in clip.images:
        assert 1 <= len(image.instances) <= 4
        assert image.ground_truth((640, 480)).max() == len(image.instances)


def test_frames_are_recognised_after_resizing(clip):
    """A stream frame (stretched, resized, re-encoded) is matched to its clip image."""
    for image in clip.images:
        frame = cv2.resize(image.image_rgb, (320, 200), interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 60])
        frame = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
        index, distance = clip.match(frame)
        assert index == image.index and distance < 10
    image = clip.images[0]
    (pid, box), *_ = image.prompts((320, 240))
    x, y, w, h = image.instances[0].box
    assert pid == image.instances[0].annotation_id
    assert box == (
        round(x / 2),
        round(y / 2),
        round((x + w) / 2) - round(x / 2),
        round((y + h) / 2) - round(y / 2),
    )
    assert image.ground_truth((320, 240)).shape == (240, 320)


def test_prepare_frames_holds_each_image(tmp_path, clip):
    small = Clip(DEFAULT_CLIP_DIR, max_images=3)
    count = len(prepare_frames(small, tmp_path / "frames", hold=4, lead_in=5))
    files = sorted((tmp_path / "frames").iterdir())
    assert count == len(files) == 3 * 4 + 5
    shown = [clip.match(cv2.imread(str(f))[:, :, ::-1])[0] for f in files]
    assert shown == [0] * 9 + [1] * 4 + [2] * 4


def test_prompt_publisher_publishes_the_shown_images_boxes(tmp_path, clip):
    from sensor_msgs.msg import Image

    from picosam3_msgs.msg import RoiPromptArray
    from picosam3_ros.core.image_conversion import fill_image

    env = ros_env(46)
    cmd = node_command("picosam3_ros.nodes.prompt_publisher_node", {"republish_period": 0.2})
    client = RosClient(46, "prompt_publisher_test")
    try:
        received = client.collect(RoiPromptArray, "prompts")
        publisher = client.node.create_publisher(Image, "image_raw", 10)
        with running(cmd, env, tmp_path / "publisher.log") as proc:
            image = clip.images[2]
            frame = cv2.resize(image.image_rgb, (320, 240), interpolation=cv2.INTER_AREA)
            msg = Image()
            msg.header.frame_id = "demo_cam"
            fill_image(msg, frame, "rgb8")

            def got_prompts() -> bool:
                publisher.publish(msg)
                return bool(received)

            assert client.wait_for(got_prompts, timeout=60.0, proc=proc), (
                tmp_path / "publisher.log"
            ).read_text()
        prompts = received[0]
        assert prompts.header.frame_id == "demo_cam"
        assert [
            (p.id, (p.roi.x_offset, p.roi.y_offset, p.roi.width, p.roi.height)) for p in prompts.prompts
        ] == [(pid, box) for pid, box in image.prompts((320, 240))]
    finally:
        client.close()


def test_demo_end_to_end_small(tmp_path):
    """Two clip images through the real sensor node on the emulated IMX500, with a disk model.

    The disk model's output is known, so each scored mask's crop-space IoU can be
    recomputed here from the clip alone: the demo's attribution and scoring are checked.
    """
    model = write_disk_model(tmp_path / "disk")
    out = tmp_path / "demo_output"
    env = ros_env(48)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "picosam3_ros.demo.demo",
            "--model",
            str(model),
            "--max-images",
            "2",
            "--hold-frames",
            "8",
            "--fps",
            "10",
            "--output-dir",
            str(out),
            "--domain-id",
            "48",
            "--timeout",
            "240",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=400,
    )
    assert proc.returncode == 0, (
        proc.stdout + proc.stderr + "".join(p.read_text() for p in (out / "logs").glob("*.log"))
    )
    assert "mIoU crop" in proc.stdout and "fps" in proc.stdout and "latency" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["instances"] >= 2
    assert report["status_counts"].get("OK", 0) >= report["instances"]
    video = out / "overlay.mp4"
    assert (video.is_file() and video.stat().st_size > 10_000) or len(
        list((out / "overlay_frames").iterdir())
    ) > 5
    grid = cv2.imread(str(out / "overlays.png"))
    assert grid is not None and grid.shape[1] == 4 * 320

    clip = Clip(DEFAULT_CLIP_DIR, max_images=2)
    instances = {inst.annotation_id: inst for image in clip.images for inst in image.instances}
    disk = disk_logits() > 0
    for row in report["per_instance"]:
        inst = instances[row["prompt_id"]]
        rect = crop_rect_for_box(inst.box, (640, 480))
        gt = cv2.resize(
            inst.mask[rect.y : rect.y_end, rect.x : rect.x_end].astype(np.uint8),
            (96, 96),
            interpolation=cv2.INTER_NEAREST,
        ).astype(bool)
        expected = (disk & gt).sum() / max(1, (disk | gt).sum())
        # The sensor's ROI comes back through sensor<->stream rounding: allow a few pixels.
        assert abs(row["iou_crop"] - expected) < 0.06, (row, expected)


def test_demo_without_a_model_says_what_to_do(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "picosam3_ros.demo.demo",
            "--model",
            str(tmp_path / "none"),
            "--output-dir",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "model card" in proc.stderr and "--model" in proc.stderr
