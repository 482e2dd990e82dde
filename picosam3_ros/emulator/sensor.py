"""The emulated IMX500 camera: sensor, ISP, on-sensor network and ROI control (no picamera2 import).

What the emulated picamera2 module (``picosam3_ros/emulator/picamera2``) drives:

* a 4056x3040 sensor on which each source frame covers the main stream's field of
  view, the ``ScalerCrop`` (:func:`scene_placement`): the frame is what the stream
  shows, and the sensor pixels of any stream rectangle see the same frame pixels;
* the ISP: cuts ``ScalerCrop`` out of the sensor image and scales it to the
  configured main stream size without keeping aspect (libcamera's default
  ScalerCrop, the largest centred crop of the stream's aspect, keeps pixels square);
* the on-sensor network: cuts the inference ROI (full-sensor pixels) out of the
  sensor image, scales it to the network input (96x96, no aspect), builds the ISP's
  input tensor from the network's registers (``emulator/isp.py``; the rpk's
  ``network_info.txt``, raw pixels for the project's network), runs the model card's
  INT8 ONNX (fp32 when there is no INT8 file) on the pixels that tensor encodes, and
  delivers the output dequantised like libcamera (``(q - shift) * scale`` from the
  ``dnnParams.xml`` in ``packerOut.zip``) and flattened with the first listed dimension
  fastest; ``output_transposed`` picks whether the maps' width (True: picamera2's
  Fortran-order reshape yields (C, W, H)) or height (False: (C, H, W)) varies fastest;
* ``CnnOutputTensorInfo`` is libcamera's ``CnnOutputTensorInfoExported``; libcamera 0.6
  added a trailing ``frameCount`` byte (712 bytes, what picamera2 0.3.38 parses and
  requires), ``tensor_info_layout="legacy"`` emits the 708-byte struct of older libcamera;
* network timing (raspberrypi/libcamera ``cam_helper_imx500.cpp``, ``parseInferenceData``):
  in realtime mode the network starts on a frame only when it is idle and is busy for
  ``dnn_runtime_ms + dsp_runtime_ms``; when that is longer than a frame, the frames it
  misses carry no output tensor and the result arrives with the frame during which it
  completes. ``CnnKpiInfo`` is ``[dnn_us, dsp_us]`` as libcamera exports it
  (picamera2's ``get_kpi_info`` reads items 0 and 1);
* frame timing: ``SensorTimestamp`` is the frame's start (monotonic clock). In
  "realtime" mode frame k starts at ``t0 + k * FrameDuration``: a thread exposes
  frames at the frame rate (skipping frames when the machine is too slow, as a
  real sensor drops them) and ``capture_request`` returns the newest frame not yet returned. In
  "step" mode every ``capture_request`` exposes the next frame of the source
  (never skipping one), so every source frame is seen exactly once, for offline
  evaluation: a frame starts one frame time after the previous one, or when it
  is asked for if that is later (the sensor waits for a slow consumer, so its
  timestamps never fall behind the clock the ROI writes are stamped with); the
  network keeps up with every frame in step mode (its runtime only counts in realtime).
  With a ``clock`` of its own (a replay's virtual clock, shared with the backend that stamps
  its ROI writes), step mode never sleeps: the caller moves the clock by a frame time before
  each capture, so the ROI lag is exact in frames however slow the host is;
* the ROI control (raspberrypi/linux ``drivers/media/i2c/imx500.c``,
  ``imx500_set_inference_window``) is four u32 in full-sensor pixels whatever the
  mode; V4L2 clamps each to the control's maximum (4032), the driver takes a width or
  height of 0 as the full 4056x3040 frame and bounds each field to the sensor, and the
  emulator clamps the window to the sensor (:func:`latch_roi_control`). The write is not
  synchronised to frames: it is latched at frame starts and takes ``roi_delay_frames``
  frames to reach the network: frame k uses the last ROI written before
  ``SensorTimestamp(k) - roi_delay_frames * FrameDuration``. A consumer that
  writes the next ROI within one frame time of capturing frame k therefore
  gets it on frame ``k + 1 + roi_delay_frames``. Unset, the delay follows the frame
  rate as in Sony's two-camera demo (a new ROI's result 3 frames later at 30 fps, 2 at
  20 fps or less: :func:`default_roi_delay_frames`).

Emulator-only metadata keys (a real camera has none; backends must not read
them, tests use them as ground truth): ``EmulatorSequence``, ``EmulatorInferenceRoi``
(the ROI of the output the frame carries, else of the frame) and ``EmulatorOutputOf`` (the
sequence of the frame whose output it carries).
"""

from __future__ import annotations

import array
import ctypes
import json
import os
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from picosam3_ros.core.onnx_session import cpu_session
from picosam3_ros.core.rpk import IDENTITY_NORMALISATION, RpkError, read_rpk
from picosam3_ros.core.sensor_geometry import IMX500_ROI_CONTROL_MAX, roi_as_latched
from picosam3_ros.emulator.isp import (
    flatten_output,
    input_tensor_to_rgb,
    isp_input_tensor,
    output_quantization,
)
from picosam3_ros.emulator.sources import FrameSource, open_source

SENSOR_SIZE = (4056, 3040)
RAW_SIZE = (2028, 1520)
NETWORK_NAME_LEN = 64
MAX_NUM_TENSORS = 16
MAX_NUM_DIMENSIONS = 16
FW_NETWORK_STAGE = 2
ROI_CONTROL_MAX = IMX500_ROI_CONTROL_MAX
# On-sensor runtimes per frame: the PicoSAM3 paper's DNN time; the DSP (ISP tensor) time is ours.
DEFAULT_DNN_RUNTIME_MS = 11.82
DEFAULT_DSP_RUNTIME_MS = 1.0
TENSOR_INFO_LAYOUTS = ("frame_count", "legacy")


class EndOfStream(RuntimeError):
    """The source has no more frames (step mode with loop=False)."""


class OutputTensorInfo(ctypes.LittleEndianStructure):
    _fields_ = [
        ("tensor_data_num", ctypes.c_uint32),
        ("num_dimensions", ctypes.c_uint32),
        ("size", ctypes.c_uint16 * MAX_NUM_DIMENSIONS),
    ]


class CnnOutputTensorInfoLegacy(ctypes.LittleEndianStructure):
    """libcamera's CnnOutputTensorInfoExported before 0.6 (708 bytes)."""

    _fields_ = [
        ("network_name", ctypes.c_char * NETWORK_NAME_LEN),
        ("num_tensors", ctypes.c_uint32),
        ("info", OutputTensorInfo * MAX_NUM_TENSORS),
    ]


class CnnOutputTensorInfoExported(ctypes.LittleEndianStructure):
    """libcamera 0.6's CnnOutputTensorInfoExported: a trailing frameCount (712 bytes with padding)."""

    _fields_ = [
        ("network_name", ctypes.c_char * NETWORK_NAME_LEN),
        ("num_tensors", ctypes.c_uint32),
        ("info", OutputTensorInfo * MAX_NUM_TENSORS),
        ("frameCount", ctypes.c_uint8),
    ]


def default_roi_delay_frames(fps: float) -> int:
    """Frames before a new ROI reaches the network when none is set: 3 above 20 fps, else 2."""
    return 3 if fps > 20.0 else 2


def latch_roi_control(payload: bytes) -> tuple[int, int, int, int]:
    """The inference window the sensor uses for one ROI control write (4 little-endian u32)."""
    left, top, width, height = roi_as_latched(struct.unpack("<4I", payload))
    sensor_w, sensor_h = SENSOR_SIZE
    if width == 0 or height == 0:
        return (0, 0, sensor_w, sensor_h)
    left, top = min(left, sensor_w - 1), min(top, sensor_h - 1)
    right, bottom = min(left + min(width, sensor_w), sensor_w), min(top + min(height, sensor_h), sensor_h)
    return (left, top, right - left, bottom - top)


@dataclass
class EmulatorSettings:
    """How the emulated camera behaves (``picosam3_ros.emulator.configure`` sets these).

    source: frames (list of RGB arrays), an image folder/file, a video file, a rosbag, or '' (synthetic).
    fps: frame rate of the sensor (frames/s).
    roi_delay_frames: frames between an ROI write and the first frame using it (None or -1:
        :func:`default_roi_delay_frames` of the frame rate in force).
    mode: "realtime" (a thread exposes frames at ``fps``) or "step" (one frame per capture_request).
    loop: start the source again at its end (else EndOfStream after the last frame).
    network_onnx: ONNX file run as the on-sensor network ('' = from the model card beside the network file).
    upload_seconds: simulated duration of the network firmware upload.
    fail_after_frames: the on-sensor network stops delivering tensors after this many frames (-1: never).
    ground_truth_log: JSON-lines file: one line per exposed frame with its sequence, timestamp and ROI.
    output_transposed: the output maps arrive width-fastest (True) or height-fastest (False).
    tensor_info_layout: "frame_count" (libcamera 0.6+) or "legacy" CnnOutputTensorInfo.
    dnn_runtime_ms, dsp_runtime_ms: on-sensor runtimes per inference (KPI; a network slower than
        the frame leaves frames without output).
    input_tensor: also attach ``CnnInputTensor`` (the ISP tensor) to frames with an output
        (picamera2: the ``CnnEnableInputTensor`` control).
    clock: the monotonic clock (ns) frames and ROI writes are stamped with; None = time.monotonic_ns.
        Step mode only (a replay's virtual clock, see the module docstring).
    """

    source: object = ""
    fps: float = 30.0
    roi_delay_frames: int | None = None
    mode: str = "realtime"
    loop: bool = True
    network_onnx: str = ""
    upload_seconds: float = 0.0
    fail_after_frames: int = -1
    ground_truth_log: str = ""
    output_transposed: bool = True
    tensor_info_layout: str = "frame_count"
    dnn_runtime_ms: float = DEFAULT_DNN_RUNTIME_MS
    dsp_runtime_ms: float = DEFAULT_DSP_RUNTIME_MS
    input_tensor: bool = False
    clock: Callable[[], int] | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ("realtime", "step"):
            raise ValueError(f"emulator mode must be 'realtime' or 'step', got {self.mode!r}")
        if not self.fps > 0:
            raise ValueError(f"emulator fps must be > 0, got {self.fps}")
        if self.roi_delay_frames is not None and self.roi_delay_frames < 0:
            self.roi_delay_frames = None  # -1: follow the frame rate
        if self.tensor_info_layout not in TENSOR_INFO_LAYOUTS:
            raise ValueError(
                f"tensor_info_layout must be one of {TENSOR_INFO_LAYOUTS}, got {self.tensor_info_layout!r}"
            )
        if not (self.dnn_runtime_ms >= 0 and self.dsp_runtime_ms >= 0):
            raise ValueError("dnn_runtime_ms and dsp_runtime_ms must be >= 0")
        if self.clock is not None and self.mode != "step":
            raise ValueError("an emulator clock of its own needs mode 'step'")

    @property
    def roi_delay(self) -> int:
        """The ROI apply delay in force (frames)."""
        if self.roi_delay_frames is None:
            return default_roi_delay_frames(self.fps)
        return int(self.roi_delay_frames)


class _Network:
    """The model run as the on-sensor network (ONNX Runtime on the CPU, one thread).

    An ``.rpk`` brings its ISP registers and input format (``network_info.txt``); the output
    encoding comes from the ``dnnParams.xml`` of the card's ``packerOut.zip`` when there is one.
    """

    def __init__(self, network_file: Path, override: str):

        from picosam3_ros.core.model_card import ModelCardError, load_model_card

        card_dir = network_file if network_file.is_dir() else network_file.parent
        try:
            self.card = load_model_card(card_dir)
        except ModelCardError as exc:
            raise RuntimeError(f"emulated IMX500: no model card beside {network_file}: {exc}") from exc
        self.normalisation, self.input_format, self.rpk = IDENTITY_NORMALISATION, "RGB", None
        if network_file.suffix == ".rpk":
            try:
                self.rpk = read_rpk(network_file)
            except RpkError as exc:
                raise RuntimeError(f"emulated IMX500: {exc}") from exc
            self.normalisation, self.input_format = self.rpk.normalisation, self.rpk.input_format
        if override:
            onnx_path = Path(override)
        elif network_file.suffix == ".onnx":
            onnx_path = network_file
        else:
            role = "int8" if "int8" in self.card.files else "fp32"
            onnx_path = self.card.path(role)
        if not onnx_path.is_file():
            raise RuntimeError(f"emulated IMX500: network ONNX {onnx_path} does not exist")
        self.session = cpu_session(onnx_path, threads=1)  # one core, like the sensor's single DSP
        self.onnx_path = onnx_path
        self.size = self.card.input.size
        self.input_size = self.rpk.input_size if self.rpk is not None else (self.size, self.size)
        packer = self.card.path("imx500") if "imx500" in self.card.files else None
        self.output_encoding = output_quantization(packer) if packer is not None else None
        self.name = network_file.stem[: NETWORK_NAME_LEN - 1]

    def input_tensor(self, crop_rgb: np.ndarray) -> np.ndarray:
        """The ISP's input tensor for a crop already stretched to the input size."""
        return isp_input_tensor(crop_rgb, self.normalisation, self.input_format)

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """The network on an ISP tensor -> the (C, H, W) float output the sensor delivers."""
        pixels = input_tensor_to_rgb(tensor, self.input_size, self.normalisation, self.input_format)
        x = self.card.input.preprocess(pixels[None])
        out = self.session.run([self.card.output_name], {self.card.input.name: x})[0][0]
        out = np.asarray(out, np.float32)
        if out.ndim == 2:
            out = out[None]
        return out if self.output_encoding is None else self.output_encoding.apply(out)


@dataclass
class _Result:
    """One inference: its output, the ROI and sequence of the frame it ran on, when it completes."""

    output: np.ndarray
    input_tensor: np.ndarray
    roi: tuple[int, int, int, int]
    sequence: int
    done_ns: int


@dataclass
class _Frame:
    sequence: int
    timestamp_ns: int
    image: np.ndarray  # main stream, in the configured format's byte order
    metadata: dict


class EmulatedSensor:
    """One emulated camera (one per process, like the hardware)."""

    def __init__(self, settings: EmulatorSettings):
        self.settings = settings
        self.source: FrameSource = open_source(settings.source)
        self.network: _Network | None = None
        self.fw_progress = (0, 0, 0)  # (stage, current, total)
        self._lock = threading.Condition()
        self._roi_history: list[tuple[int, tuple[int, int, int, int]]] = [(-(2**62), (0, 0, *SENSOR_SIZE))]
        self._busy_until_ns = -(2**62)  # the network is idle at frame starts from this time on
        self._pending: _Result | None = None  # an inference that completes during a later frame
        self._next_seq = 0
        self._next_step_ns = 0  # step mode: the earliest start of the next frame
        self._now = settings.clock or time.monotonic_ns
        self._t0_ns = 0
        self._latest: _Frame | None = None
        self._returned_seq = -1
        self._running = False
        self._thread: threading.Thread | None = None
        self._stop_error: Exception | None = None
        self.main_size = (640, 480)
        self.main_format = "RGB888"
        self.scaler_crop = (0, 0, *SENSOR_SIZE)
        self._log = open(settings.ground_truth_log, "a") if settings.ground_truth_log else None  # noqa: SIM115

    # --- network -------------------------------------------------------------------------------
    def load_network(self, network_file: Path) -> None:
        """'Upload' the network firmware: read it in chunks, updating the progress, then build the network."""
        total = network_file.stat().st_size if network_file.is_file() else 1
        chunk = max(1, total // 20)
        done = 0
        with open(network_file, "rb") if network_file.is_file() else open(os.devnull, "rb") as handle:
            while handle.read(chunk):
                done = min(total, done + chunk)
                self.fw_progress = (FW_NETWORK_STAGE, done, total)
                if self.settings.upload_seconds > 0:
                    time.sleep(self.settings.upload_seconds / 20)
        self.network = _Network(network_file, self.settings.network_onnx)
        self.fw_progress = (FW_NETWORK_STAGE, total, total)

    # --- ROI control ---------------------------------------------------------------------------
    def write_roi_control(self, payload: bytes) -> tuple[int, int, int, int]:
        """Write the ROI control (the V4L2 payload, 4 little-endian u32) now; returns what is latched.

        The clock is the monotonic clock of SensorTimestamp; see :func:`latch_roi_control`.
        """
        roi = latch_roi_control(bytes(payload))
        with self._lock:
            now = self._now()
            self._roi_history.append((now, roi))
            # Forget entries that no future frame can use any more.
            horizon = now - (self.settings.roi_delay + 2) * self.frame_duration_ns
            while len(self._roi_history) > 1 and self._roi_history[1][0] <= horizon:
                self._roi_history.pop(0)
        return roi

    def set_roi(self, roi: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """Write (left, top, width, height) as the driver receives it (negative values become 0)."""
        return self.write_roi_control(struct.pack("<4I", *(max(0, int(v)) & 0xFFFFFFFF for v in roi)))

    def roi_for(self, timestamp_ns: int) -> tuple[int, int, int, int]:
        """The ROI of the frame exposed at ``timestamp_ns``: the last one written before the start
        of the frame ``roi_delay`` earlier (the control is latched at frame starts)."""
        latch = timestamp_ns - self.settings.roi_delay * self.frame_duration_ns
        roi = self._roi_history[0][1]
        for written, value in self._roi_history:
            if written <= latch:
                roi = value
        return roi

    # --- streaming -----------------------------------------------------------------------------
    @property
    def frame_duration_ns(self) -> int:
        return round(1e9 / self.settings.fps)

    def configure(self, main_size: tuple[int, int], main_format: str) -> None:
        from picosam3_ros.core.sensor_geometry import default_scaler_crop

        self.main_size = (int(main_size[0]), int(main_size[1]))
        self.main_format = main_format
        self.scaler_crop = default_scaler_crop(self.main_size, SENSOR_SIZE)

    def start(self) -> None:
        with self._lock:
            if self._running:
                return
            self._running = True
            self._stop_error = None
            self._t0_ns = self._now()
            self._next_step_ns = self._t0_ns
            self._latest, self._returned_seq = None, -1  # a restarted camera streams from its new t0
            self._busy_until_ns, self._pending = -(2**62), None
        if self.settings.mode == "realtime":
            self._thread = threading.Thread(target=self._run, name="imx500-emulator", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._running = False
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def close(self) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _run(self) -> None:
        duration = self.frame_duration_ns
        sequence = 0
        while True:
            wake = self._t0_ns + sequence * duration
            delay = (wake - time.monotonic_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)
            with self._lock:
                if not self._running:
                    return
            try:
                frame = self._expose(sequence, wake)
            except Exception as exc:  # e.g. EndOfStream: captures see it
                with self._lock:
                    self._stop_error = exc
                    self._running = False
                    self._lock.notify_all()
                return
            with self._lock:
                self._latest = frame
                self._lock.notify_all()
            # A sensor does not wait: when we are late, the frames we missed are never exposed.
            behind = (time.monotonic_ns() - self._t0_ns) // duration
            sequence = max(sequence + 1, int(behind))

    def capture(self, timeout_s: float | None = None) -> _Frame:
        """The next frame (see module doc); raises EndOfStream, RuntimeError when stopped or on timeout."""
        if self.settings.mode == "step":
            with self._lock:
                if not self._running:
                    raise RuntimeError("camera is not started")
                sequence, start = self._next_seq, self._next_step_ns
            now = self._now()
            if start > now and self.settings.clock is None:
                # Never expose a frame before its time: the ROI latch of a frame must lie in the past.
                time.sleep((start - now) / 1e9)
            else:
                # A consumer slower than the frame rate gets a frame that starts now, not one from
                # the past: the sensor waits for it (as a triggered sensor would) instead of dropping.
                start = now
            with self._lock:
                self._next_step_ns = start + self.frame_duration_ns
            return self._expose(sequence, start)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._lock:
            while True:
                if self._latest is not None and self._latest.sequence > self._returned_seq:
                    self._returned_seq = self._latest.sequence
                    return self._latest
                if not self._running:
                    raise self._stop_error or RuntimeError("camera is not started")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("no frame from the emulated camera")
                self._lock.wait(timeout=remaining if remaining is not None else 1.0)

    def _source_frame(self, sequence: int) -> np.ndarray:
        count = len(self.source)
        if sequence >= count and not self.settings.loop:
            raise EndOfStream(f"source exhausted after {count} frames")
        return self.source.frame(sequence % count)

    def _expose(self, sequence: int, timestamp: int) -> _Frame:
        with self._lock:
            roi = self.roi_for(timestamp)
            self._next_seq = sequence + 1
        scene = self._source_frame(sequence)
        placement = scene_placement((scene.shape[1], scene.shape[0]), self.scaler_crop)
        stream = _isp_crop(scene, placement, self.scaler_crop, self.main_size)
        metadata: dict = {
            "SensorTimestamp": timestamp,
            "FrameDuration": self.frame_duration_ns // 1000,
            "ScalerCrop": self.scaler_crop,
            "EmulatorSequence": sequence,
            "EmulatorInferenceRoi": roi,
        }
        failed = 0 <= self.settings.fail_after_frames <= sequence
        result = None
        if self.network is not None and not failed:
            result = self._network_step(scene, placement, roi, sequence, timestamp)
        if result is not None:
            metadata.update(self._output_metadata(result, sequence))
            metadata["EmulatorInferenceRoi"] = result.roi
            metadata["EmulatorOutputOf"] = result.sequence
        if self._log is not None:
            self._log.write(
                json.dumps(
                    {
                        "sequence": sequence,
                        "sensor_timestamp_ns": timestamp,
                        "roi": list(roi),
                        "scaler_crop": list(self.scaler_crop),
                        "tensor": "CnnOutputTensor" in metadata,
                        "output_of": None if result is None else result.sequence,
                    }
                )
                + "\n"
            )
            self._log.flush()
        return _Frame(sequence, timestamp, _to_format(stream, self.main_format), metadata)

    def _network_step(self, scene, placement, roi, sequence: int, timestamp: int) -> _Result | None:
        """Run the network when it is idle at this frame's start; the result this frame carries."""
        frame_ns = self.frame_duration_ns
        realtime = self.settings.mode == "realtime"
        if self._pending is not None:
            if self._pending.done_ns > timestamp + frame_ns:
                return None  # still computing: a frame without output
            result, self._pending = self._pending, None
            return result
        if realtime and self._busy_until_ns > timestamp:
            return None
        width, height = self.network.input_size
        crop = _isp_crop(scene, placement, roi, (width, height))
        tensor = self.network.input_tensor(crop)
        runtime_ns = round((self.settings.dnn_runtime_ms + self.settings.dsp_runtime_ms) * 1e6)
        result = _Result(self.network.run(tensor), tensor, roi, sequence, timestamp + runtime_ns)
        self._busy_until_ns = result.done_ns
        if realtime and result.done_ns > timestamp + frame_ns:
            self._pending = result
            return None
        return result

    def _output_metadata(self, result: _Result, sequence: int) -> dict:
        """The frame's CnnOutputTensor / CnnOutputTensorInfo / CnnKpiInfo (and CnnInputTensor)."""
        flat, sizes = flatten_output(result.output, self.settings.output_transposed)
        legacy = self.settings.tensor_info_layout == "legacy"
        info = CnnOutputTensorInfoLegacy() if legacy else CnnOutputTensorInfoExported()
        info.network_name = self.network.name.encode()
        info.num_tensors = 1
        info.info[0].tensor_data_num = flat.size
        info.info[0].num_dimensions = len(sizes)
        for i, dim in enumerate(sizes):
            info.info[0].size[i] = dim
        if not legacy:
            info.frameCount = sequence & 0xFF
        settings = self.settings
        metadata = {
            "CnnOutputTensor": array.array("f", flat.tobytes()),
            "CnnOutputTensorInfo": bytes(info),
            "CnnKpiInfo": [round(settings.dnn_runtime_ms * 1e3), round(settings.dsp_runtime_ms * 1e3)],
        }
        if self.settings.input_tensor:
            metadata["CnnInputTensor"] = result.input_tensor.ravel().tobytes()
        return metadata


# Frames whose aspect ratio is within this of the stream's are stretched onto it exactly
# (the ScalerCrop is rounded to even sensor pixels, so the two never agree exactly).
SAME_ASPECT_TOLERANCE = 0.01


def scene_placement(
    scene_size: tuple[int, int], scaler_crop: tuple[int, int, int, int]
) -> tuple[float, float, float, float]:
    """Where a source frame lies on the sensor: (left, top, sensor pixels per frame pixel in x, in y).

    The frame is what the main stream shows: it covers the ScalerCrop (the stream's field
    of view), so a frame of the stream's size comes out of the ISP unchanged, and a stream
    rectangle mapped to the sensor (``core.sensor_geometry``) covers the same frame pixels
    the CPU path crops. A frame of another shape fills the view keeping its aspect, centred.
    """
    width, height = scene_size
    cx, cy, cw, ch = scaler_crop
    sx, sy = cw / width, ch / height
    if abs(sx / sy - 1.0) > SAME_ASPECT_TOLERANCE:
        sx = sy = max(sx, sy)
    return (cx + (cw - width * sx) / 2.0, cy + (ch - height * sy) / 2.0, sx, sy)


def _isp_crop(
    scene: np.ndarray,
    placement: tuple[float, float, float, float],
    rect_sensor: tuple[int, int, int, int],
    size: tuple[int, int],
) -> np.ndarray:
    """Cut a full-sensor rectangle out of the scene laid at ``placement`` and scale it to ``size``
    (per axis, no aspect kept: what the ISP does with the ScalerCrop and the sensor with the ROI)."""
    left, top, sx, sy = placement
    x, y, w, h = rect_sensor
    out_w, out_h = size
    # Output pixel centre u + 0.5 lies at sensor x + (u + 0.5) * w / out_w; frame pixel i covers
    # sensor [left + i * sx, left + (i + 1) * sx), so its centre is at frame coordinate i.
    ax, ay = w / out_w / sx, h / out_h / sy
    matrix = np.array(
        [[ax, 0.0, (x - left) / sx + 0.5 * ax - 0.5], [0.0, ay, (y - top) / sy + 0.5 * ay - 0.5]],
        np.float64,
    )
    return cv2.warpAffine(
        scene,
        matrix,
        (out_w, out_h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def _to_format(rgb: np.ndarray, fmt: str) -> np.ndarray:
    """picamera2 format names give the byte order from the top: RGB888 arrays are [B, G, R]."""
    if fmt == "RGB888":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if fmt == "BGR888":
        return rgb.copy()
    if fmt == "XBGR8888":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
    if fmt == "XRGB8888":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    raise ValueError(f"emulated camera does not support format {fmt!r}")
