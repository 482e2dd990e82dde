"""Backends by name: the ONNX CPU backend (real ORT sessions) and the IMX500 backend on the emulator."""

from __future__ import annotations

import numpy as np
import pytest
from node_helpers import disk_logits, write_disk_model, write_red_model

from picosam3_ros.backends import BACKENDS, BackendConfig, BackendError, ModelLoadError, create_backend
from picosam3_ros.core.crop import crop_rect_for_box
from picosam3_ros.core.pipeline import Prompt, Status, segment_frame, sensor_frame_results


def test_registry_names():
    assert set(BACKENDS) == {"onnx", "imx500"}
    with pytest.raises(BackendError, match="unknown backend"):
        create_backend("tpu", BackendConfig())


def test_onnx_batches_and_returns_logits(tmp_path):
    backend = create_backend("onnx", BackendConfig(model_dir=write_disk_model(tmp_path)))
    crops = np.random.default_rng(0).integers(0, 255, (5, 96, 96, 3), dtype=np.uint8)
    logits = backend.infer(crops)
    assert logits.shape == (5, 96, 96) and logits.dtype == np.float32
    np.testing.assert_allclose(logits[3], disk_logits(), atol=1e-5)
    assert backend.infer(crops[:0]).shape == (0, 96, 96)


def test_red_model_follows_the_input(tmp_path):
    backend = create_backend("onnx", BackendConfig(model_dir=write_red_model(tmp_path)))
    crops = np.zeros((1, 96, 96, 3), np.uint8)
    crops[0, :, :30, 0] = 255
    logits = backend.infer(crops)[0]
    assert (logits[:, :30] > 0).all() and (logits[:, 30:] < 0).all()


@pytest.mark.parametrize("problem", ["no card", "missing file", "corrupt file"])
def test_model_problems_say_what_to_do(tmp_path, problem):
    if problem != "no card":
        write_disk_model(tmp_path)
        if problem == "missing file":
            (tmp_path / "disk.onnx").unlink()
        else:
            (tmp_path / "disk.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(ModelLoadError) as info:
        create_backend("onnx", BackendConfig(model_dir=tmp_path))
    assert "model" in str(info.value) and ("train" in str(info.value) or "re-export" in str(info.value))


def test_imx500_on_emulator_matches_cpu_and_attributes_with_delay(tmp_path):
    model = write_red_model(tmp_path)
    frame = np.full((480, 640, 3), 20, np.uint8)
    frame[100:140, 100:260, 0] = 250  # a wide red bar: orientation matters
    config = BackendConfig(
        model_dir=model,
        camera="emulator",
        frame_rate=2.5,  # slow: each frame is handled well within one frame time, even on a loaded CI box
        roi_apply_delay_frames=2,
        emulator={"source": [frame], "mode": "step"},
    )
    sensor = create_backend("imx500", config)
    cpu = create_backend("onnx", BackendConfig(model_dir=model))
    boxes = {1: (90, 90, 180, 60), 2: (300, 300, 50, 50)}
    sensor.start()
    try:
        requested = {}
        checked = 0
        for index in range(12):
            frame_out = sensor.next_frame()
            prompt_id = 1 + index % 2
            crop = crop_rect_for_box(boxes[prompt_id], sensor.stream_size)
            sensor.request_roi(crop, prompt_id)
            requested[index] = prompt_id
            inference = frame_out.inference
            expected_id = requested.get(index - 1 - 2)  # written after frame k, used on frame k + 1 + delay
            assert inference.prompt_id == expected_id, index
            if expected_id is None:
                continue
            prompts = [Prompt(i, b) for i, b in boxes.items()]
            on_sensor = sensor_frame_results(frame_out, prompts)
            on_cpu = segment_frame(cpu, frame_out.image_rgb, prompts)
            got = next(r for r in on_sensor if r.prompt_id == expected_id)
            want = next(r for r in on_cpu if r.prompt_id == expected_id)
            assert got.status == Status.OK and got.crop == want.crop
            assert [r.status for r in on_sensor if r.prompt_id != expected_id] == [Status.NOT_SERVED]
            union = np.logical_or(got.crop_mask, want.crop_mask).sum()
            iou = np.logical_and(got.crop_mask, want.crop_mask).sum() / union if union else 1.0
            assert iou > 0.9, (index, iou)
            checked += expected_id == 1 and union > 0
        assert checked >= 3  # the red bar was compared, not only empty masks
    finally:
        sensor.stop()
