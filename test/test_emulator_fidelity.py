"""The emulated IMX500 models what the real stack does (each test names its source).

Sources: raspberrypi/linux drivers/media/i2c/imx500.c (ROI control), raspberrypi/libcamera
src/ipa/rpi/cam_helper/cam_helper_imx500.cpp and imx500_tensor_parser.cpp (tensors, KPI,
frames without output), raspberrypi/picamera2 picamera2/devices/imx500/imx500.py
(tensor-info struct, network intrinsics), Sony modlib modlib/devices/imx500/isp.py (ISP).
"""

from __future__ import annotations

import ctypes
import importlib

import cv2
import numpy as np
import pytest
from node_helpers import write_red_model
from rpk_builder import NORMALISING_REGISTERS, network_info_text, write_rpk

from picosam3_ros import emulator
from picosam3_ros.backends import BackendConfig, create_backend
from picosam3_ros.backends.imx500_backend import TENSOR_INFO_HINT
from picosam3_ros.core.crop import CropRect
from picosam3_ros.core.rpk import read_rpk
from picosam3_ros.core.sensor_geometry import SensorGeometry, default_scaler_crop
from picosam3_ros.emulator.isp import isp_input_tensor

sensor_module = importlib.import_module("picosam3_ros.emulator.sensor")
latch = sensor_module.latch_roi_control
VENDOR_MODLIB = sensor_module.Path(__file__).resolve().parent.parent / ".vendor-modlib"


@pytest.fixture
def model(tmp_path):
    yield write_red_model(tmp_path / "model", ramp=0.6)
    emulator.configure()


def _emulated(**settings):
    emulator.configure(**settings)
    emulator.install()
    from picamera2 import Picamera2
    from picamera2.devices import IMX500

    return Picamera2, IMX500


def _frames(picam2, count):
    out = []
    for _ in range(count):
        out.append(picam2.capture_metadata())
    return out


def test_roi_delay_follows_the_frame_rate_unless_set(model):
    settings = sensor_module.EmulatorSettings
    assert settings(fps=30.0).roi_delay == 3 and settings(fps=25.0).roi_delay == 3
    assert settings(fps=20.0).roi_delay == 2 and settings(fps=10.0).roi_delay == 2
    assert settings(fps=30.0, roi_delay_frames=1).roi_delay == 1
    assert settings(fps=30.0, roi_delay_frames=-1).roi_delay == 3
    for fps, delay in ((30.0, 3), (20.0, 2)):
        Picamera2, IMX500 = _emulated(source=[np.zeros((48, 64, 3), np.uint8)], mode="step", fps=fps)
        imx500 = IMX500(str(model / "red.onnx"))
        picam2 = Picamera2(0)
        picam2.start()
        picam2.capture_metadata()  # frame 0, then the write: in effect on frame 1 + delay
        imx500.set_inference_roi_abs((8, 8, 800, 600))
        rois = [tuple(m["EmulatorInferenceRoi"]) for m in _frames(picam2, delay + 1)]
        picam2.stop()
        assert rois[-1] == (8, 8, 800, 600) and (8, 8, 800, 600) not in rois[:-1], (fps, rois)


def test_roi_control_is_clamped_and_zero_means_the_full_frame(model):
    import struct

    def write(*roi):
        return latch(struct.pack("<4I", *roi))

    assert write(0, 0, 4056, 3040) == (0, 0, 4032, 3040)  # the control's 4032 per element
    assert write(100, 100, 0, 50) == (0, 0, 4056, 3040) == write(7, 7, 30, 0)
    assert write(10, 10, 5000, 5000) == (10, 10, 4032, 3030)  # then bounded to the sensor
    assert write(4050, 3000, 500, 500) == (4032, 3000, 24, 40)
    Picamera2, IMX500 = _emulated(source=[np.zeros((48, 64, 3), np.uint8)], mode="step", fps=50.0,
                                  roi_delay_frames=0)
    imx500 = IMX500(str(model / "red.onnx"))
    picam2 = Picamera2(0)
    picam2.start()
    imx500.set_inference_roi_abs((5000, 4000, 64, 64))  # outside: 0-sized after boundedTo -> full frame
    roi = tuple(picam2.capture_metadata()["EmulatorInferenceRoi"])
    picam2.stop()
    assert roi == (0, 0, 4056, 3040)


def test_frames_without_output_when_the_network_is_slower_than_the_frame(model):
    """Realtime: a 50 ms network at 30 fps runs on every other frame; each result arrives with the
    frame during which it completes (later than the frame it ran on), the frames between carry none."""
    for runtime, fraction in ((50.0, 0.5), (11.82, 1.0)):
        Picamera2, IMX500 = _emulated(source=[np.zeros((48, 64, 3), np.uint8)], mode="realtime", fps=30.0,
                                      dnn_runtime_ms=runtime, dsp_runtime_ms=0.0)
        imx500 = IMX500(str(model / "red.onnx"))
        picam2 = Picamera2(0)
        picam2.start()
        frames = _frames(picam2, 16)
        picam2.stop()
        with_output = [m for m in frames if "CnnOutputTensor" in m]
        assert all(imx500.get_outputs(m) for m in with_output)
        assert all(imx500.get_outputs(m) is None for m in frames if "CnnOutputTensor" not in m)
        if fraction == 1.0:
            assert len(with_output) == len(frames)
            assert all(m["EmulatorOutputOf"] == m["EmulatorSequence"] for m in frames)
        else:
            # Skipped frames (a loaded host) change the count, never the rule.
            assert 0 < len(with_output) < len(frames)
            assert all(m["EmulatorOutputOf"] < m["EmulatorSequence"] for m in with_output)


def test_inference_rate_sets_the_frame_rate_and_kpi_reach_the_backend(model):
    write_rpk(model / "network.rpk", network_info_text(96, 96), intrinsics={"inference_rate": 15.0})
    config = BackendConfig(model_dir=model, camera="emulator", frame_rate=30.0, roi_apply_delay_frames=2,
                           emulator={"source": [np.zeros((48, 64, 3), np.uint8)], "mode": "step"})
    backend = create_backend("imx500", config)
    try:
        assert backend.config.frame_rate == 15.0 and emulator.sensor().settings.fps == 15.0
        backend.start()
        frames = [backend.next_frame() for _ in range(3)]
    finally:
        backend.stop()
    assert all(b.sensor_timestamp_ns - a.sensor_timestamp_ns >= 66e6 for a, b in zip(frames, frames[1:]))
    inference = frames[-1].inference
    assert (inference.dnn_ms, inference.dsp_ms) == (11.82, 1.0)  # CnnKpiInfo [11820, 1000] us


@pytest.mark.parametrize("layout", ["frame_count", "legacy"])
def test_tensor_info_struct_of_libcamera_0_6_and_before(model, layout):
    config = BackendConfig(model_dir=model, camera="emulator", frame_rate=50.0, roi_apply_delay_frames=1,
                           emulator={"source": [np.zeros((48, 64, 3), np.uint8)], "mode": "step",
                                     "tensor_info_layout": layout})
    backend = create_backend("imx500", config)
    try:
        backend.start()
        frame = backend.next_frame()
        metadata = backend.picam2.capture_metadata()
    finally:
        backend.stop()
    raw = metadata["CnnOutputTensorInfo"]
    if layout == "frame_count":
        assert len(raw) == 712 == ctypes.sizeof(sensor_module.CnnOutputTensorInfoExported)
        info = sensor_module.CnnOutputTensorInfoExported.from_buffer_copy(raw)
        assert info.frameCount == metadata["EmulatorSequence"] & 0xFF
        assert frame.error is None and frame.inference.logits.shape == (96, 96)
    else:  # picamera2 0.3.38 expects 712 bytes: the node says what to upgrade
        assert len(raw) == 708
        assert "tensor info length 708" in frame.error and TENSOR_INFO_HINT in frame.error


def _modlib(monkeypatch, rpk):
    if not (VENDOR_MODLIB / "modlib").is_dir():
        pytest.fail(f"{VENDOR_MODLIB} is missing: run `make bootstrap` (requirements/vendor-modlib.txt)")
    monkeypatch.syspath_prepend(str(VENDOR_MODLIB))
    from modlib.devices.imx500 import isp
    from modlib.models import COLOR_FORMAT, MODEL_TYPE, Model

    class Network(Model):
        def post_process(self, output_tensors):
            return output_tensors

    network = Network(str(rpk), MODEL_TYPE.RPK_PACKAGED, COLOR_FORMAT.RGB, preserve_aspect_ratio=False)
    network._get_network_info()  # modlib's own rpk reader: the registers from our builder's file
    return isp, network, COLOR_FORMAT


@pytest.mark.parametrize("size", [(96, 96), (100, 75)])
def test_isp_tensor_matches_modlib_on_the_same_pixels(tmp_path, monkeypatch, size):
    rpk = write_rpk(tmp_path / "network.rpk", network_info_text(*size, registers=NORMALISING_REGISTERS))
    isp, network, color = _modlib(monkeypatch, rpk)
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    reference, _ = isp.prepare_tensor_like_isp(pixels, network, src_color_format=color.RGB)
    ours = isp_input_tensor(pixels, read_rpk(rpk).normalisation, "RGB")
    assert ours.shape == (3, (size[1] + 1) // 2 * 2, (size[0] + 31) // 32 * 32)  # padded like the ISP
    assert np.array_equal(ours.ravel(), reference)


def test_emulator_network_input_matches_modlib_on_the_same_frame_and_roi(model, monkeypatch):
    """The emulator's CnnInputTensor for an ROI is modlib's ISP on the CPU path's crop of that ROI."""
    rpk = write_rpk(model / "network.rpk", network_info_text(96, 96, registers=NORMALISING_REGISTERS))
    isp, network, color = _modlib(monkeypatch, rpk)
    stream = (640, 480)
    noise = np.random.default_rng(5).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    scene = cv2.GaussianBlur(noise, (0, 0), 3)
    Picamera2, IMX500 = _emulated(source=[scene], mode="step", fps=50.0, roi_delay_frames=0,
                                  input_tensor=True)
    imx500 = IMX500(str(rpk))
    picam2 = Picamera2(0)
    picam2.start(picam2.create_preview_configuration(main={"size": stream, "format": "RGB888"}))
    rect = CropRect(64, 48, 192, 144)
    geometry = SensorGeometry(stream, default_scaler_crop(stream))
    imx500.set_inference_roi_abs(geometry.stream_rect_to_sensor(rect))
    metadata = picam2.capture_metadata()
    picam2.stop()
    ours = np.frombuffer(metadata["CnnInputTensor"], np.int8).astype(int)
    crop = scene[rect.y : rect.y_end, rect.x : rect.x_end]
    reference, _ = isp.prepare_tensor_like_isp(crop, network, src_color_format=color.RGB)
    diff = np.abs(ours - reference.astype(int))
    # Bilinear from the sensor vs cv2.resize of the crop: at most a rounding step apart.
    assert ours.shape == reference.shape
    assert diff.mean() < 0.3 and diff.max() <= 2, (diff.mean(), diff.max())
