"""The emulator against the real picamera2 (PyPI 0.3.38) ``devices/imx500/imx500.py``.

The real module (stand-ins only for what cannot exist on x86: test/picamera2_standins.py)
writes the ROI control and parses the emulated sensor's metadata. The contract: its
``set_inference_roi_abs`` payload is what the emulator latches, in full-sensor pixels,
and its ``get_outputs`` array, decoded as the backend decodes it, is the CPU model's
output on the CPU path's crop of that ROI. Two mutated emulators (the output flatten
order flipped, the ROI read in binned-mode units) must break it.
"""

from __future__ import annotations

import importlib
import struct

import cv2
import numpy as np
import pytest
from node_helpers import write_red_model
from picamera2_standins import load_real_module, real_imx500
from rpk_builder import network_info_text, write_rpk

from picosam3_ros import emulator
from picosam3_ros.backends import BackendConfig, create_backend
from picosam3_ros.backends.imx500_backend import logits_from_outputs
from picosam3_ros.core.crop import CropRect, crop_and_resize
from picosam3_ros.core.sensor_geometry import SensorGeometry, default_scaler_crop
from picosam3_ros.emulator import isp

# The module (``picosam3_ros.emulator.sensor`` the name is the package's sensor() function).
emulated_sensor = importlib.import_module("picosam3_ros.emulator.sensor")

STREAM = (640, 480)
RECT = CropRect(90, 70, 260, 180)  # not square, off centre: any wrong mapping shows
DELAY = 2


@pytest.fixture
def setup(tmp_path, monkeypatch):
    model = write_red_model(tmp_path / "model", ramp=0.6)  # a column ramp: a transposed map shows
    rpk = write_rpk(model / "network.rpk", network_info_text(96, 96), intrinsics={"inference_rate": 15.0})
    scene = np.random.default_rng(3).integers(0, 255, (STREAM[1], STREAM[0], 3), dtype=np.uint8)
    scene = cv2.GaussianBlur(scene, (0, 0), 4)
    yield model, rpk, scene
    emulator.configure()


def contract_problems(monkeypatch, model, rpk, scene, **settings) -> list[str]:
    """What breaks the contract between the real picamera2 module and the emulator ([] = none)."""
    emulator.configure(source=[scene], mode="step", fps=30.0, roi_delay_frames=DELAY, **settings)
    emulator.install()
    module = load_real_module(monkeypatch)
    from picamera2 import Picamera2
    from picamera2.devices import IMX500 as EmulatedIMX500

    imx, node = real_imx500(module, emulator.sensor(), rpk)
    problems = []
    if imx.get_input_size() != (96, 96):
        problems.append(f"input size from network_info.txt: {imx.get_input_size()}")
    picam2 = Picamera2(0)
    picam2.configure(picam2.create_preview_configuration(main={"size": STREAM, "format": "RGB888"}))
    picam2.start()
    try:
        geometry = SensorGeometry(STREAM, default_scaler_crop(STREAM))
        roi = geometry.stream_rect_to_sensor(RECT)
        imx.set_inference_roi_abs(roi)
        if node.roi_payloads[-1] != struct.pack("<4I", *roi):
            problems.append(f"payload {node.roi_payloads[-1]!r} is not the ROI {roi} as 4 u32")
        for _ in range(DELAY + 2):
            metadata = picam2.capture_metadata()
    finally:
        picam2.stop()
    if tuple(metadata["EmulatorInferenceRoi"]) != roi:
        problems.append(f"the emulator latched {metadata['EmulatorInferenceRoi']} for the ROI {roi}")
    real = imx.get_outputs(metadata, add_batch=True)
    ours = EmulatedIMX500.get_outputs(EmulatedIMX500.__new__(EmulatedIMX500), metadata, add_batch=True)
    if [o.shape for o in real] != [o.shape for o in ours] or not all(map(np.array_equal, real, ours)):
        problems.append("picamera2 and the emulated IMX500 parse the tensors differently")
    logits = logits_from_outputs(real, transpose=True)  # the node's imx500_output_transpose default
    cpu = create_backend("onnx", BackendConfig(model_dir=model))
    expected = cpu.infer(crop_and_resize(scene, RECT)[None])[0]
    error = float(np.abs(logits - expected).mean())
    if error > 0.5:  # logits span +-20; the same crop differs by interpolation only
        problems.append(f"the sensor output is not the CPU model's on the crop (mean |diff| {error:.2f})")
    return problems


def test_picamera2_real_module_agrees_with_the_emulator(monkeypatch, setup):
    assert contract_problems(monkeypatch, *setup) == []


def test_picamera2_contract_fails_on_a_flipped_output_order(monkeypatch, setup):
    monkeypatch.setattr(emulated_sensor, "flatten_output", lambda out, t: isp.flatten_output(out, not t))
    problems = contract_problems(monkeypatch, *setup)
    assert any("not the CPU model's" in p for p in problems), problems


def test_picamera2_contract_fails_on_wrong_roi_units(monkeypatch, setup):
    latch = emulated_sensor.latch_roi_control

    def binned(payload: bytes):  # read as 2028x1520 raw-mode pixels instead of full-sensor ones
        return latch(struct.pack("<4I", *(min(2 * v, 4032) for v in struct.unpack("<4I", payload))))

    monkeypatch.setattr(emulated_sensor, "latch_roi_control", binned)
    problems = contract_problems(monkeypatch, *setup)
    assert any("latched" in p for p in problems), problems
    assert any("not the CPU model's" in p for p in problems), problems


def test_picamera2_reads_kpi_intrinsics_and_refuses_the_legacy_tensor_info(monkeypatch, setup):
    model, rpk, scene = setup
    emulator.configure(source=[scene], mode="step", fps=30.0, dnn_runtime_ms=11.82, dsp_runtime_ms=0.9)
    emulator.install()
    module = load_real_module(monkeypatch)
    imx, node = real_imx500(module, emulator.sensor(), rpk)
    assert imx.network_intrinsics.inference_rate == 15.0  # from the rpk's network_intrinsics
    from picamera2 import Picamera2

    picam2 = Picamera2(0)
    picam2.start()
    metadata = picam2.capture_metadata()
    assert imx.get_kpi_info(metadata) == (11.82, 0.9)
    # Outside the sensor: libcamera's boundedTo makes it 0-sized, the driver then uses the full frame.
    imx.set_inference_roi_abs((5000, 4000, 100, 100))
    assert emulated_sensor.latch_roi_control(node.roi_payloads[-1]) == (0, 0, 4056, 3040)
    picam2.stop()
    emulator.configure(source=[scene], mode="step", tensor_info_layout="legacy")
    imx, _ = real_imx500(module, emulator.sensor(), rpk)
    picam2 = Picamera2(0)
    picam2.start()
    metadata = picam2.capture_metadata()
    picam2.stop()
    with pytest.raises(ValueError, match="tensor info length 708 does not match expected size 712"):
        imx.get_outputs(metadata)
