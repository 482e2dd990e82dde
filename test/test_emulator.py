"""The emulated picamera2 + IMX500: the same calls as the real module, with the documented semantics."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
from node_helpers import write_red_model

from picosam3_ros import emulator


@pytest.fixture
def picamera2_modules(tmp_path):
    emulator.configure(source=[np.zeros((30, 40, 3), np.uint8)], mode="step", fps=100.0, roi_delay_frames=2)
    emulator.install()
    from picamera2 import Picamera2
    from picamera2.devices import IMX500

    yield Picamera2, IMX500, write_red_model(tmp_path / "model")
    emulator.configure()


def test_install_shadows_picamera2(picamera2_modules):
    import picamera2

    assert getattr(picamera2, "IS_PICOSAM3_EMULATOR", False)
    assert sys.path[0] == emulator.EMULATOR_PATH
    from picamera2.devices.imx500 import IMX500 as direct

    assert direct is picamera2_modules[1]


def test_network_upload_roi_delay_outputs_and_kpi(picamera2_modules):
    Picamera2, IMX500, model = picamera2_modules
    with pytest.raises(RuntimeError, match="does not exist"):
        IMX500(str(model / "missing.rpk"))
    imx500 = IMX500(str(model / "red.onnx"))
    assert imx500.get_fw_upload_progress(2)[0] == imx500.get_fw_upload_progress(2)[1] > 0
    assert imx500.get_input_size() == (96, 96)
    picam2 = Picamera2(imx500.camera_num)
    picam2.configure(picam2.create_preview_configuration(main={"size": (64, 48), "format": "RGB888"}))
    picam2.start()
    rois = []
    for k in range(6):
        request = picam2.capture_request()
        metadata = request.get_metadata()
        assert request.make_array("main").shape == (48, 64, 3)
        request.release()
        rois.append(tuple(metadata["EmulatorInferenceRoi"]))
        outputs = imx500.get_outputs(metadata, add_batch=True)
        assert outputs[0].shape == (1, 1, 96, 96)  # (C, W, H) after the Fortran-order reshape
        assert len(imx500.get_kpi_info(metadata)) == 2
        if k == 0:
            imx500.set_inference_roi_abs((100, 200, 4000, 5000))  # bounded to the sensor
    picam2.stop()
    # The power-on window (0 = the full frame), then picamera2's own full-sensor write of the
    # constructor (kept 4032 wide by the driver's control), then the ROI above.
    power_on, full = (0, 0, 4056, 3040), (0, 0, 4032, 3040)
    roi = (100, 200, 3956, 2840)
    assert rois == [power_on, power_on, full, roi, roi, roi]


def test_output_orientation_and_isp_without_aspect(picamera2_modules):
    Picamera2, IMX500, model = picamera2_modules
    scene = np.zeros((300, 400, 3), np.uint8)
    scene[:, :100, 0] = 255  # left quarter red
    emulator.configure(source=[scene], mode="step", fps=100.0)
    imx500 = IMX500(str(model / "red.onnx"))
    imx500.set_inference_roi_abs((0, 0, 2028, 3040))  # left half of the sensor, tall: stretched to 96x96
    picam2 = Picamera2(0)
    picam2.start(picam2.create_preview_configuration(main={"size": (400, 300), "format": "RGB888"}))
    for _ in range(4):
        request = picam2.capture_request()
        metadata = request.get_metadata()
        bgr = request.make_array("main")
        request.release()
    picam2.stop()
    assert (bgr[:, :90, 2] > 200).all() and (bgr[:, 110:, 2] < 50).all()  # RGB888 arrays are BGR
    tensor = imx500.get_outputs(metadata)[0][0].T  # back to (H, W)
    # Half the ROI width is red: the left 48 columns of the map are object, the rest not.
    assert (tensor[:, :46] > 0).all() and (tensor[:, 50:] < 0).all()


@pytest.mark.parametrize("kind", ["folder", "video", "bag"])
def test_sources(tmp_path, kind):
    frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(3)]
    if kind == "folder":
        for i, f in enumerate(frames):
            cv2.imwrite(str(tmp_path / f"{i:03d}.png"), f)
        source = emulator.open_source(tmp_path)
    elif kind == "video":
        path = tmp_path / "clip.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
        for f in frames:
            writer.write(f)
        writer.release()
        source = emulator.open_source(path)
    else:
        from rosbags.rosbag2 import Writer
        from rosbags.typesys import Stores, get_typestore

        store = get_typestore(Stores.LATEST)
        Image, Header, Time = (
            store.types[n]
            for n in ("sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time")
        )
        with Writer(tmp_path / "bag", version=9) as writer:
            conn = writer.add_connection("/camera/image", Image.__msgtype__, typestore=store)
            for i, f in enumerate(frames):
                msg = Image(Header(Time(i, 0), "cam"), 48, 64, "rgb8", 0, 64 * 3, f.reshape(-1))
                writer.write(conn, i, store.serialize_cdr(msg, Image.__msgtype__))
        source = emulator.open_source(tmp_path / "bag")
    assert len(source) == 3
    for i in (2, 0, 1):
        assert abs(int(source.frame(i).mean()) - 40 * i) <= 3
    with pytest.raises(emulator.SourceError):
        emulator.open_source(tmp_path / "nothing_here")


def test_end_of_stream_in_step_mode(picamera2_modules):
    Picamera2, _, _ = picamera2_modules
    emulator.configure(source=[np.zeros((30, 40, 3), np.uint8)] * 2, mode="step", fps=200.0, loop=False)
    picam2 = Picamera2(0)
    picam2.start()
    picam2.capture_request().release()
    picam2.capture_request().release()
    with pytest.raises(emulator.EndOfStream):
        picam2.capture_request()
    picam2.stop()


@pytest.mark.parametrize("size", [(375, 500), (640, 427), (320, 240)])
def test_the_stream_shows_the_source_frame_and_a_stream_roi_sees_its_pixels(picamera2_modules, size):
    """A frame of the stream's size comes out of the ISP unchanged, portrait or landscape, and the
    sensor ROI of a stream rectangle (core.sensor_geometry) feeds the network those very pixels."""
    from picosam3_ros.core.crop import CropRect, crop_and_resize
    from picosam3_ros.core.sensor_geometry import SensorGeometry

    Picamera2, IMX500, model = picamera2_modules
    width, height = size
    scene = np.random.default_rng(1).integers(0, 255, (height, width, 3), dtype=np.uint8)
    scene = cv2.GaussianBlur(scene, (0, 0), 3)  # smooth: sub-pixel ROI rounding must not matter
    emulator.configure(source=[scene], mode="step", fps=100.0, roi_delay_frames=0)
    imx500 = IMX500(str(model / "red.onnx"))
    picam2 = Picamera2(0)
    picam2.start(picam2.create_preview_configuration(main={"size": size, "format": "RGB888"}))
    rect = CropRect(width // 5, height // 3, width // 3, height // 2)
    request = picam2.capture_request()
    geometry = SensorGeometry(size, tuple(request.get_metadata()["ScalerCrop"]))
    stream = cv2.cvtColor(request.make_array("main"), cv2.COLOR_BGR2RGB)
    request.release()
    imx500.set_inference_roi_abs(geometry.stream_rect_to_sensor(rect))
    metadata = picam2.capture_metadata()
    picam2.stop()
    assert np.array_equal(stream, scene)
    assert geometry.sensor_rect_to_stream(tuple(metadata["EmulatorInferenceRoi"])) == rect
    # The red model's logits are the red channel: the network saw the CPU path's crop.
    tensor = imx500.get_outputs(metadata)[0][0].T
    expected = crop_and_resize(scene, rect)[..., 0].astype(np.float32) / 255.0 * 40.0 - 20.0
    assert np.abs(tensor - expected).mean() < 0.5


def test_step_mode_waits_for_a_slow_consumer(picamera2_modules):
    """Step mode: a late capture gets a frame that starts then (never one from the past), and the
    latch rule holds on those timestamps: an ROI written more than roi_delay_frames frame times
    before a frame's start is in effect on it."""
    import time

    Picamera2, IMX500, model = picamera2_modules
    emulator.configure(source=[np.zeros((30, 40, 3), np.uint8)], mode="step", fps=200.0, roi_delay_frames=2)
    imx500 = IMX500(str(model / "red.onnx"))
    picam2 = Picamera2(0)
    picam2.start()
    stamps, rois = [], []
    for k in range(8):
        metadata = picam2.capture_metadata()
        stamps.append(metadata["SensorTimestamp"])
        rois.append(tuple(metadata["EmulatorInferenceRoi"]))
        if k == 1:
            imx500.set_inference_roi_abs((8, 8, 800, 800))
        time.sleep(0.02)  # four frame times of work per frame
    picam2.stop()
    assert all(b - a >= 0.02e9 for a, b in zip(stamps, stamps[1:]))  # started late, not in the past
    assert time.monotonic_ns() - stamps[-1] < 1e9
    # Written just after frame 1, four frame times before frame 2 starts: in effect on frame 2.
    assert rois[1] == (0, 0, 4032, 3040) and rois[2] == (8, 8, 800, 800)
