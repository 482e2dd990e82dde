"""The frame server without DDS: path choice, fallback and attribution on the emulated IMX500 (real
ONNX Runtime sessions, the emulated picamera2 in step mode, a real demo-clip frame)."""

from __future__ import annotations

import cv2
import pytest
from node_helpers import REPO, write_red_model

from picosam3_ros.backends import BackendConfig, create_backend
from picosam3_ros.backends.camera import PlainCamera
from picosam3_ros.backends.frame_server import FrameServer
from picosam3_ros.core.crop import CropRect, InvalidRoiError
from picosam3_ros.core.pipeline import Prompt, Status

ROI_DELAY = 2
FRAME = REPO / "picosam3_ros" / "demo" / "demo_clip" / "00_000000000785.jpg"


@pytest.fixture
def scene():
    return cv2.cvtColor(cv2.imread(str(FRAME)), cv2.COLOR_BGR2RGB)


def _config(model, scene, **emulator) -> BackendConfig:
    return BackendConfig(
        model_dir=model,
        camera="emulator",
        stream_size=scene.shape[1::-1],
        frame_rate=100.0,
        roi_apply_delay_frames=ROI_DELAY,
        emulator={"source": [scene], "mode": "step", **emulator},
    )


def _step(server: FrameServer, prompts, program=None):
    """One camera frame as the node handles it: program the next ROI, then serve the frame."""
    frame = server.sensor.next_frame(timeout_s=5.0)
    error = server.program_next_roi(prompts if program is None else program)
    frame.error = frame.error or error or None
    return frame, server.serve_frame(frame, prompts)


def test_path_choice(tmp_path, scene):
    model = write_red_model(tmp_path / "m", ramp=0.6)
    cpu = create_backend("onnx", BackendConfig(model_dir=model))
    prompts = [Prompt(1, (200.0, 100.0, 120.0, 200.0)), Prompt(2, (400.0, 300.0, 80.0, 60.0))]

    plain = FrameServer(cpu, PlainCamera(_config(model, scene)))
    plain.sensor.start()
    try:
        assert not plain.on_sensor and plain.backend == "onnx"
        frame, served = _step(plain, prompts)
        assert served.backend == "onnx" and [r.status for r in served.results] == [Status.OK, Status.OK]
    finally:
        plain.sensor.stop()

    image_only = FrameServer(cpu)
    served = image_only.serve_image(scene, prompts)
    assert [r.status for r in served.results] == [Status.OK, Status.OK]
    with pytest.raises(ValueError, match="needs a CPU segmenter"):
        FrameServer(None)

    sensor = FrameServer(cpu, create_backend("imx500", _config(model, scene)))
    sensor.sensor.start()
    try:
        assert sensor.on_sensor and sensor.backend == "imx500"
        statuses = set()
        for _ in range(ROI_DELAY + 4):
            _, served = _step(sensor, prompts)
            assert served.backend == "imx500"
            statuses.update(r.status for r in served.results)
        # One ROI per frame: some prompts wait for their turn, each is served in turn.
        assert statuses == {Status.OK, Status.NOT_SERVED}
    finally:
        sensor.close()


def test_sensor_failure_falls_back_once_and_keeps_serving(tmp_path, scene):
    model = write_red_model(tmp_path / "m")
    server = FrameServer(
        create_backend("onnx", BackendConfig(model_dir=model)),
        create_backend("imx500", _config(model, scene, fail_after_frames=3)),
    )
    prompts = [Prompt(7, (100.0, 100.0, 150.0, 150.0))]
    server.sensor.start()
    try:
        reasons = []
        backends = []
        for _ in range(20):
            _, served = _step(server, prompts)
            backends.append(served.backend)
            if served.fell_back:
                reasons.append(served.fell_back)
        assert len(reasons) == 1 and "no output tensor" in reasons[0]
        assert server.fallback_reason == reasons[0] and not server.on_sensor
        # Before the failure the sensor served, after it every frame is on the CPU, every prompt OK.
        assert backends[0] == "imx500" and backends[-1] == "onnx"
        assert backends == sorted(backends, key=lambda b: b == "onnx")
        assert [r.status for r in served.results] == [Status.OK]
        assert server.program_next_roi(prompts) == ""  # no ROI writes once on the CPU
    finally:
        server.close()


def test_no_cpu_model_after_a_fallback_reports_errors(tmp_path, scene):
    model = write_red_model(tmp_path / "m")
    server = FrameServer(None, create_backend("imx500", _config(model, scene, fail_after_frames=0)))
    server.sensor.start()
    try:
        for _ in range(12):
            _, served = _step(server, [Prompt(1, (10.0, 10.0, 50.0, 50.0))])
        assert server.backend == "none"
        assert served.results[0].status == Status.BACKEND_ERROR
        assert "no output tensor" in served.results[0].detail
    finally:
        server.close()


def test_attribution_by_the_box_the_roi_was_requested_for(tmp_path, scene):
    """One prompt id moving a little (a tracker) keeps its masks, on the crop the sensor used;
    the same id given to another object gets none until its own ROI is in effect."""
    model = write_red_model(tmp_path / "m", ramp=0.6)
    server = FrameServer(None, create_backend("imx500", _config(model, scene)))
    server.sensor.start()
    try:
        first = Prompt(0, (200.0, 120.0, 120.0, 160.0))
        for _ in range(ROI_DELAY + 2):
            frame, served = _step(server, [first])
        assert served.results[0].status == Status.OK
        first_crop = served.results[0].crop

        moved = Prompt(0, (206.0, 124.0, 120.0, 160.0))  # IoU about 0.87 with the first box
        frame, served = _step(server, [moved])
        result = served.results[0]
        assert result.status == Status.OK and result.crop == first_crop  # what the sensor saw
        assert frame.inference.box_xywh == first.box_xywh

        other = Prompt(0, (450.0, 300.0, 100.0, 100.0))  # the same id, another object
        statuses = []
        for _ in range(ROI_DELAY + 2):
            frame, served = _step(server, [other])
            statuses.append(served.results[0].status)
            if served.results[0].status == Status.OK:
                assert served.results[0].crop == server.crops([other], frame.image_rgb.shape[1::-1])[0]
        # The frames still carrying the old object's ROI are not given to the new one.
        assert statuses[0] == Status.NOT_SERVED and statuses[-1] == Status.OK

        # A prompt drawn in another camera's frame gets no ROI (the worker reports it INVALID_ROI).
        elsewhere = Prompt(5, (100.0, 100.0, 80.0, 80.0), frame_id="other_camera")
        for _ in range(ROI_DELAY + 2):
            frame = server.sensor.next_frame(timeout_s=5.0)
            assert server.program_next_roi([elsewhere], "camera") == ""
        assert frame.inference.prompt_id is None  # the full-sensor default ROI
    finally:
        server.close()


def test_crops_are_computed_once_per_box_and_shared(tmp_path, scene):
    model = write_red_model(tmp_path / "m")
    server = FrameServer(create_backend("onnx", BackendConfig(model_dir=model)))
    prompts = [Prompt(1, (10.0, 20.0, 30.0, 40.0)), Prompt(2, (900.0, 900.0, 5.0, 5.0))]
    first = server.crops(prompts, (640, 480))
    again = server.crops(list(reversed(prompts)), (640, 480))
    assert isinstance(first[0], CropRect) and isinstance(first[1], InvalidRoiError)
    assert again[1] is first[0] and again[0] is first[1]
    assert server.crops(prompts[:1], (320, 240))[0] is not first[0]  # another frame size, another crop
    served = server.serve_image(scene, prompts)
    assert [r.status for r in served.results] == [Status.OK, Status.INVALID_ROI]


def test_build_frame_server_picks_the_paths(tmp_path, scene):
    from picosam3_ros.backends.frame_server import build_frame_server

    model = write_red_model(tmp_path / "m")
    image_topic = build_frame_server("onnx", "none", BackendConfig(model_dir=model))
    assert image_topic.sensor is None and image_topic.backend == "onnx"
    plain = build_frame_server("onnx", "emulator", _config(model, scene))
    assert not plain.sensor.runs_network and plain.backend == "onnx"
    auto = build_frame_server("auto", "emulator", _config(model, scene))
    assert auto.on_sensor and auto.segmenter is not None  # the CPU fallback is ready
    auto.close()
    # A card whose CPU file is missing: the sensor still runs, without a fallback, and says so.
    card = model / "model_card.json"
    card.write_text(card.read_text().replace('"fp32": "red.onnx"', '"fp32": "missing.onnx"'))
    warnings = []
    no_fallback = build_frame_server("imx500", "emulator", _config(model, scene), warn=warnings.append)
    assert no_fallback.on_sensor and no_fallback.segmenter is None
    assert len(warnings) == 1 and "no CPU fallback" in warnings[0]
    no_fallback.close()
