"""The emulated IMX500 camera: sensor, ISP, on-sensor network and ROI control (no picamera2 import).

What the emulated picamera2 module (``picosam3_ros/emulator/picamera2``) drives:

* a 4056x3040 sensor on which each source frame covers the main stream's field of
  view, the ``ScalerCrop`` (:func:`scene_placement`): the frame is what the stream
  shows, and the sensor pixels of any stream rectangle see the same frame pixels;
* the ISP: cuts ``ScalerCrop`` out of the sensor image and scales it to the
  configured main stream size without keeping aspect (libcamera's default
  ScalerCrop, the largest centred crop of the stream's aspect, keeps pixels square);
* the on-sensor network: cuts the inference ROI (full-sensor pixels) out of the
  sensor image, scales it to the network input (96x96, no aspect), runs the
  model card's INT8 ONNX (fp32 when there is no INT8 file), and delivers the
  output flattened the way the sensor does (planar, row-major), with
  ``CnnOutputTensorInfo`` giving the dimensions innermost first (W, H, C), so
  picamera2's Fortran-order reshape yields a (W, H, C) array;
* frame timing: ``SensorTimestamp`` is the frame's start (monotonic clock). In
  "realtime" mode frame k starts at ``t0 + k * FrameDuration``: a thread exposes
  frames at the frame rate (skipping frames when the machine is too slow, as a
  real sensor drops them) and ``capture_request`` returns the newest frame not yet returned. In
  "step" mode every ``capture_request`` exposes the next frame of the source
  (never skipping one), so every source frame is seen exactly once, for offline
  evaluation: a frame starts one frame time after the previous one, or when it
  is asked for if that is later (the sensor waits for a slow consumer, so its
  timestamps never fall behind the clock the ROI writes are stamped with);
* the ROI control is latched at frame starts and takes ``roi_delay_frames``
  frames to reach the network: frame k uses the last ROI written before
  ``SensorTimestamp(k) - roi_delay_frames * FrameDuration``. A consumer that
  writes the next ROI within one frame time of capturing frame k therefore
  gets it on frame ``k + 1 + roi_delay_frames``.

Emulator-only metadata keys (a real camera has none; backends must not read
them, tests use them as ground truth): ``EmulatorSequence`` and
``EmulatorInferenceRoi``.
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
from picosam3_ros.emulator.sources import FrameSource, open_source

SENSOR_SIZE = (4056, 3040)
RAW_SIZE = (2028, 1520)
NETWORK_NAME_LEN = 64
MAX_NUM_TENSORS = 16
MAX_NUM_DIMENSIONS = 16
FW_NETWORK_STAGE = 2


class EndOfStream(RuntimeError):
    """The source has no more frames (step mode with loop=False)."""


class OutputTensorInfo(ctypes.LittleEndianStructure):
    _fields_ = [
        ("tensor_data_num", ctypes.c_uint32),
        ("num_dimensions", ctypes.c_uint32),
        ("size", ctypes.c_uint16 * MAX_NUM_DIMENSIONS),
    ]


class CnnOutputTensorInfoExported(ctypes.LittleEndianStructure):
    _fields_ = [
        ("network_name", ctypes.c_char * NETWORK_NAME_LEN),
        ("num_tensors", ctypes.c_uint32),
        ("info", OutputTensorInfo * MAX_NUM_TENSORS),
    ]


@dataclass
class EmulatorSettings:
    """How the emulated camera behaves (``picosam3_ros.emulator.configure`` sets these).

    source: frames (list of RGB arrays), an image folder/file, a video file, a rosbag, or '' (synthetic).
    fps: frame rate of the sensor (frames/s).
    roi_delay_frames: frames between an ROI write and the first frame using it.
    mode: "realtime" (a thread exposes frames at ``fps``) or "step" (one frame per capture_request).
    loop: start the source again at its end (else EndOfStream after the last frame).
    network_onnx: ONNX file run as the on-sensor network ('' = from the model card beside the network file).
    upload_seconds: simulated duration of the network firmware upload.
    fail_after_frames: the on-sensor network stops delivering tensors after this many frames (-1: never).
    ground_truth_log: JSON-lines file: one line per exposed frame with its sequence, timestamp and ROI.
    clock: the monotonic clock (ns) frames and ROI writes are stamped with; None = time.monotonic_ns.
        Step mode only (a replay's virtual clock, see the module docstring).
    """

    source: object = ""
    fps: float = 30.0
    roi_delay_frames: int = 2
    mode: str = "realtime"
    loop: bool = True
    network_onnx: str = ""
    upload_seconds: float = 0.0
    fail_after_frames: int = -1
    ground_truth_log: str = ""
    clock: Callable[[], int] | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ("realtime", "step"):
            raise ValueError(f"emulator mode must be 'realtime' or 'step', got {self.mode!r}")
        if not self.fps > 0:
            raise ValueError(f"emulator fps must be > 0, got {self.fps}")
        if self.roi_delay_frames < 0:
            raise ValueError("roi_delay_frames must be >= 0")
        if self.clock is not None and self.mode != "step":
            raise ValueError("an emulator clock of its own needs mode 'step'")


class _Network:
    """The model run as the on-sensor network (ONNX Runtime on the CPU, one thread)."""

    def __init__(self, network_file: Path, override: str):

        from picosam3_ros.core.model_card import ModelCardError, load_model_card

        card_dir = network_file if network_file.is_dir() else network_file.parent
        try:
            self.card = load_model_card(card_dir)
        except ModelCardError as exc:
            raise RuntimeError(f"emulated IMX500: no model card beside {network_file}: {exc}") from exc
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
        self.name = network_file.stem[: NETWORK_NAME_LEN - 1]

    def run(self, crop_rgb: np.ndarray) -> np.ndarray:
        x = self.card.input.preprocess(crop_rgb[None])
        out = self.session.run([self.card.output_name], {self.card.input.name: x})[0]
        return np.asarray(out[0], np.float32)  # (C, H, W) or (H, W)


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
        self._next_seq = 0
        self._next_step_ns = 0  # step mode: the earliest start of the next frame
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
        self._now = settings.clock or time.monotonic_ns

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
    def set_roi(self, roi: tuple[int, int, int, int]) -> None:
        """Write the ROI control now (monotonic clock, the clock of SensorTimestamp)."""
        with self._lock:
            now = self._now()
            self._roi_history.append((now, tuple(int(v) for v in roi)))
            # Forget entries that no future frame can use any more.
            horizon = now - (self.settings.roi_delay_frames + 2) * self.frame_duration_ns
            while len(self._roi_history) > 1 and self._roi_history[1][0] <= horizon:
                self._roi_history.pop(0)

    def roi_for(self, timestamp_ns: int) -> tuple[int, int, int, int]:
        """The ROI of the frame exposed at ``timestamp_ns``: the last one written before the start
        of the frame ``roi_delay_frames`` earlier (the control is latched at frame starts)."""
        latch = timestamp_ns - self.settings.roi_delay_frames * self.frame_duration_ns
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
        if self.network is not None and not failed:
            t_dsp = time.perf_counter()
            crop = _isp_crop(scene, placement, roi, (self.network.size, self.network.size))
            t_dnn = time.perf_counter()
            output = self.network.run(crop)
            t_end = time.perf_counter()
            if output.ndim == 2:
                output = output[None]
            channels, height, width = output.shape
            info = CnnOutputTensorInfoExported()
            info.network_name = self.network.name.encode()
            info.num_tensors = 1
            info.info[0].tensor_data_num = output.size
            info.info[0].num_dimensions = 3
            for i, dim in enumerate((width, height, channels)):  # innermost first
                info.info[0].size[i] = dim
            metadata["CnnOutputTensor"] = array.array("f", output.astype(np.float32).tobytes())
            metadata["CnnOutputTensorInfo"] = bytes(info)
            metadata["CnnKpiInfo"] = struct.pack("II", int((t_end - t_dnn) * 1e6), int((t_dnn - t_dsp) * 1e6))
        if self._log is not None:
            self._log.write(
                json.dumps(
                    {
                        "sequence": sequence,
                        "sensor_timestamp_ns": timestamp,
                        "roi": list(roi),
                        "scaler_crop": list(self.scaler_crop),
                        "tensor": "CnnOutputTensor" in metadata,
                    }
                )
                + "\n"
            )
            self._log.flush()
        return _Frame(sequence, timestamp, _to_format(stream, self.main_format), metadata)


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
