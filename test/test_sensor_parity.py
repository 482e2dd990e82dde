"""The sensor path gives the masks of the CPU path (issue 9).

The same real frames (COCO fixture images, one of them portrait, and demo-clip frames)
and prompts (tall, wide and border-touching boxes among them) go through the CPU
backend (INT8 file of the card) and through the emulated IMX500 served by the node's
frame server: several prompts per frame, round-robin ROIs, a ROI apply delay of 2
frames. The model's logits are the red channel minus a left-to-right ramp, so a
transposed, mirrored, shifted or misattributed output cannot pass for the right one.
"""

from __future__ import annotations

import numpy as np
import pytest
from node_helpers import REPO, write_red_model

from picosam3_ros.backends import BackendConfig, create_backend
from picosam3_ros.backends.frame_server import FrameServer
from picosam3_ros.core.coco_dataset import CocoDataset
from picosam3_ros.core.crop import crop_rect_for_box
from picosam3_ros.core.metrics import mask_iou
from picosam3_ros.core.pipeline import Prompt, PromptResult, Status
from picosam3_ros.evaluation.sensor_replay import HeldFrame

FIXTURES = REPO / "test" / "fixtures" / "train"
DEMO_CLIP = REPO / "picosam3_ros" / "demo" / "demo_clip"
DEMO_FRAMES = ("00_000000000785.jpg", "02_000000001000.jpg", "04_000000001993.jpg")
PROMPTS_PER_FRAME = 4
ROI_DELAY = 2
# Frames each scene is held for: every prompt is served a few times, round robin.
FRAMES_PER_SCENE = ROI_DELAY + 3 * PROMPTS_PER_FRAME


def _scenes():
    scenes = []
    for annotation_file, images, names in (
        (FIXTURES / "instances_fixture_val.json", FIXTURES / "images", None),
        (FIXTURES / "instances_fixture_train.json", FIXTURES / "images", None),
        (DEMO_CLIP / "annotations.json", DEMO_CLIP, DEMO_FRAMES),
    ):
        dataset = CocoDataset(annotation_file, images)
        for image_id in dataset.image_ids_with_instances():
            info = dataset.image_info(image_id)
            if names is None or info["file_name"] in names:
                scenes.append(dataset.load_frame(info, max_instances=PROMPTS_PER_FRAME))
    return scenes


def _kind(box, frame_size) -> set[str]:
    x, y, w, h = box
    width, height = frame_size
    kinds = {"tall"} if h > 1.5 * w else {"wide"} if w > 1.5 * h else set()
    if x <= 0 or y <= 0 or x + w >= width or y + h >= height:
        kinds.add("border")
    return kinds


def _full_mask(result: PromptResult, frame_size) -> np.ndarray:
    width, height = frame_size
    full = np.zeros((height, width), bool)
    rect = result.crop
    full[rect.y : rect.y_end, rect.x : rect.x_end] = result.crop_mask > 0
    return full


@pytest.fixture
def ramp_model(tmp_path):
    return write_red_model(tmp_path / "ramp", ramp=0.6)


def test_sensor_path_matches_cpu_int8_per_instance(ramp_model):
    scenes = _scenes()
    kinds = set().union(*(_kind(i.box, s.image_rgb.shape[1::-1]) for s in scenes for i in s.instances))
    assert {"tall", "wide", "border"} <= kinds
    assert any(s.image_rgb.shape[0] > s.image_rgb.shape[1] for s in scenes)  # a portrait frame

    cpu = FrameServer(create_backend("onnx", BackendConfig(model_dir=ramp_model, onnx_precision="int8")))
    held = HeldFrame()
    first_size = scenes[0].image_rgb.shape[1::-1]
    sensor = create_backend(
        "imx500",
        BackendConfig(
            model_dir=ramp_model,
            camera="emulator",
            stream_size=first_size,
            frame_rate=100.0,
            roi_apply_delay_frames=ROI_DELAY,
            emulator={"source": held, "mode": "step"},
        ),
    )
    server = FrameServer(None, sensor, roi_policy="round_robin")
    rows = []  # (scene, prompt id, cpu iou, sensor iou, agreement of the two masks)
    try:
        sensor.start()
        for scene in scenes:
            size = scene.image_rgb.shape[1::-1]
            held.image = scene.image_rgb
            sensor.set_stream_size(size)
            prompts = [Prompt(i.annotation_id, tuple(float(v) for v in i.box)) for i in scene.instances]
            truth = {i.annotation_id: i.mask for i in scene.instances}
            on_cpu = {r.prompt_id: r for r in cpu.serve_image(scene.image_rgb, prompts).results}
            on_sensor: dict[int, PromptResult] = {}
            for _ in range(FRAMES_PER_SCENE):
                frame = sensor.next_frame(timeout_s=5.0)
                assert frame is not None and not frame.error
                assert server.program_next_roi(prompts) == ""
                for result in server.serve_frame(frame, prompts).results:
                    if result.status == Status.OK and result.prompt_id not in on_sensor:
                        assert np.array_equal(frame.image_rgb, scene.image_rgb)
                        on_sensor[result.prompt_id] = result
            assert set(on_sensor) == set(truth), scene.file_name  # every prompt was served
            for prompt in prompts:
                got, want = on_sensor[prompt.prompt_id], on_cpu[prompt.prompt_id]
                assert got.crop == want.crop == crop_rect_for_box(prompt.box_xywh, size)
                sensor_mask, cpu_mask = _full_mask(got, size), _full_mask(want, size)
                rows.append(
                    (
                        scene.file_name,
                        prompt.prompt_id,
                        mask_iou(cpu_mask, truth[prompt.prompt_id]),
                        mask_iou(sensor_mask, truth[prompt.prompt_id]),
                        mask_iou(sensor_mask, cpu_mask),
                    )
                )
    finally:
        server.close()
        cpu.close()
    assert len(rows) >= 15
    cpu_miou = np.mean([r[2] for r in rows])
    sensor_miou = np.mean([r[3] for r in rows])
    assert cpu_miou > 0.05  # the ramp model finds something of the objects: the comparison means something
    assert abs(sensor_miou - cpu_miou) <= 0.01, (sensor_miou, cpu_miou)
    worst = min(rows, key=lambda r: r[3] - r[2])
    assert worst[3] >= worst[2] - 0.15, worst
    # Stronger than the bar: the two paths draw nearly the same pixels on every instance.
    least = min(rows, key=lambda r: r[4])
    assert least[4] >= 0.9, least


def test_a_transposed_output_would_be_caught(ramp_model):
    """The ramp model is not symmetric: its transposed map differs from it on real crops."""
    scene = _scenes()[0]
    cpu = create_backend("onnx", BackendConfig(model_dir=ramp_model))
    from picosam3_ros.core.crop import crop_and_resize

    box = scene.instances[0].box
    crop = crop_and_resize(scene.image_rgb, crop_rect_for_box(box, scene.image_rgb.shape[1::-1]))
    logits = cpu.infer(crop[None])[0]
    assert mask_iou(logits > 0, logits.T > 0) < 0.9
    assert mask_iou(logits > 0, logits[:, ::-1] > 0) < 0.9
