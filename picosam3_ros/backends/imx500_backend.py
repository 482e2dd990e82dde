"""The IMX500 backend: the AI Camera crops the ROI in hardware and runs the network on the sensor.

Uses picamera2's real API (``IMX500``, ``Picamera2``); on machines without the
camera, ``camera="emulator"`` swaps in ``picosam3_ros.emulator`` (same calls).

Attribution: the sensor serves one ROI per frame and a newly written ROI
reaches the network ``roi_apply_delay_frames`` frames later (the control is
latched at frame starts). Every write is recorded with the monotonic times
just before and after it; frame k (``SensorTimestamp`` t_k, same clock) used
the last ROI written before ``t_k - delay * FrameDuration``. When a write
straddles that instant and changed the ROI, the frame's output is ambiguous
and is not attributed to any prompt (never to the wrong one). ``clock`` is that
monotonic clock; an offline replay shares a virtual one with the emulator.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from picosam3_ros.backends.onnx_backend import TRAIN_HINT, load_card
from picosam3_ros.backends.picamera import PicameraSource, import_picamera2
from picosam3_ros.core.backend_api import (
    BackendConfig,
    BackendError,
    ModelLoadError,
    ModelMismatchError,
    SensorFrame,
    SensorInference,
)
from picosam3_ros.core.crop import CropRect
from picosam3_ros.core.rpk import RpkError, check_against_card, package_command, read_rpk
from picosam3_ros.core.sensor_geometry import (
    IMX500_SENSOR_SIZE,
    SensorGeometry,
    default_scaler_crop,
    roi_as_latched,
)

FULL_SENSOR_ROI = roi_as_latched((0, 0, *IMX500_SENSOR_SIZE))  # (0, 0, 4032, 3040): what the sensor keeps
RPK_NAME = "network.rpk"
# picamera2 0.3.38 raises this when libcamera's CnnOutputTensorInfo has another length.
TENSOR_INFO_HINT = (
    "picamera2 and libcamera disagree on CnnOutputTensorInfo (libcamera 0.6 added frameCount): "
    "upgrade both together (sudo apt update && sudo apt full-upgrade)"
)


def imx500_present() -> bool:
    """True when picamera2 imports and lists an IMX500 camera."""
    try:
        from picamera2 import Picamera2

        return any("imx500" in str(c.get("Model", "")).lower() for c in Picamera2.global_camera_info())
    except Exception:
        return False


def resolve_network_file(config: BackendConfig) -> Path:
    """The network to load, checked before any camera is opened.

    The explicit ``network_file``, else the card's "rpk" file or ``network.rpk`` next to the
    card; on the emulator, else the card's packerOut.zip / INT8 / fp32 ONNX. On a real camera a
    card with only packerOut.zip is an error that gives the exact ``imx500-package`` command.
    An .rpk whose ``network_info.txt`` contradicts the card (input size, output count) is refused.
    """
    card = load_card(config.model_dir)
    if config.network_file:
        path = Path(config.network_file)
    else:
        rpks = [card.path("rpk")] if "rpk" in card.files else []
        rpks.append(card.directory / RPK_NAME)
        roles = [] if config.camera == "picamera2" else ["imx500", "int8", "fp32"]
        found = [p for p in rpks if p.is_file()] + [
            card.path(r) for r in roles if r in card.files and card.path(r).is_file()
        ]
        if not found:
            if "imx500" in card.files and card.path("imx500").is_file():
                raise ModelMismatchError(
                    f"no {RPK_NAME} beside the model card in {card.directory}; make it on the Pi from "
                    f"the card's packerOut.zip: {package_command(card.path('imx500'), card.directory)}"
                )
            raise ModelLoadError(
                f"the model card in {card.directory} lists no IMX500 network ({RPK_NAME} or "
                f"{'/'.join(roles or ['packerOut.zip'])}); set network_file or use backend:=onnx; "
                f"{TRAIN_HINT}"
            )
        path = found[0]
    if not path.is_file():
        raise ModelLoadError(f"IMX500 network {path} does not exist; set network_file or {TRAIN_HINT}")
    if path.suffix == ".rpk":
        try:
            check_against_card(read_rpk(path), card.input.size)
        except RpkError as exc:
            raise ModelMismatchError(str(exc)) from None
    return path


def logits_from_outputs(outputs: list, transpose: bool) -> np.ndarray:
    """picamera2's ``get_outputs`` -> the (H, W) logit map: the one output, squeezed, transposed
    when the sensor's map arrives width-fastest (picamera2's Fortran-order reshape gives (W, H))."""
    logits = np.squeeze(np.asarray(outputs[0], np.float32))
    if logits.ndim != 2:
        raise BackendError(f"expected one 2-D output map, got shape {np.shape(outputs[0])}")
    return np.ascontiguousarray(logits.T if transpose else logits)


@dataclass
class _RoiWrite:
    t_before_ns: int
    t_after_ns: int
    roi_sensor: tuple[int, int, int, int]
    prompt_id: int | None
    requested_crop: CropRect | None = None
    box_xywh: tuple[float, float, float, float] | None = None


class Imx500Backend(PicameraSource):
    """A camera-owning backend: frames with the sensor's output for the ROI in effect."""

    name = "imx500"

    def __init__(self, config: BackendConfig):
        self.config = config
        emulator_settings = None
        if config.camera == "emulator":
            emulator_settings = dict(config.emulator)
            emulator_settings.setdefault("fps", config.frame_rate)
            emulator_settings.setdefault("roi_delay_frames", config.roi_apply_delay_frames)
        network = resolve_network_file(config)  # before the camera: a wrong file is one clear line
        Picamera2, IMX500 = import_picamera2(config.camera, emulator_settings)
        try:
            self.imx500 = IMX500(str(network))
        except Exception as exc:  # the device raises RuntimeError/OSError; the emulator also ORT errors
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelLoadError(f"cannot load IMX500 network {network}: {reason}") from exc
        self.input_size = int(self.imx500.get_input_size()[0])
        intrinsics = getattr(self.imx500, "network_intrinsics", None)
        rate = getattr(intrinsics, "inference_rate", None)
        if rate and 0 < float(rate) < config.frame_rate:
            # picamera2's IMX500 examples run the camera at the network's inference rate: a
            # faster camera would give frames without output tensors.
            config = replace(config, frame_rate=float(rate))
            self.config = config
        self._stream_size = (int(config.stream_size[0]), int(config.stream_size[1]))
        try:
            self.picam2 = Picamera2(self.imx500.camera_num)
            self.picam2.configure(self._camera_config(self._stream_size))
        except Exception as exc:
            raise BackendError(f"cannot open the IMX500 camera: {exc}") from exc
        self.geometry = SensorGeometry(self._stream_size, default_scaler_crop(self._stream_size))
        self._writes: deque[_RoiWrite] = deque([_RoiWrite(-(2**62), -(2**62), FULL_SENSOR_ROI, None)])
        self._last_written = FULL_SENSOR_ROI
        self._first_timestamp: int | None = None
        self._missing_tensors = 0
        self._started = False
        # The clock of SensorTimestamp that ROI writes are stamped with (a replay's virtual one).
        self.clock = config.emulator.get("clock") or time.monotonic_ns

    def _camera_config(self, stream_size: tuple[int, int]) -> dict:
        config = super()._camera_config(stream_size)
        config["buffer_count"] = 12  # as picamera2's IMX500 examples: tensors arrive with the frames
        return config

    def set_stream_size(self, stream_size: tuple[int, int]) -> None:
        super().set_stream_size(stream_size)
        # libcamera picks the ScalerCrop for the new size; frames' metadata will confirm it.
        self.geometry = SensorGeometry(self._stream_size, default_scaler_crop(self._stream_size))

    # --- SensorFrameSource -------------------------------------------------------------------
    @property
    def roi_apply_delay_frames(self) -> int:
        return int(self.config.roi_apply_delay_frames)

    def request_roi(
        self,
        crop: CropRect | None,
        prompt_id: int | None,
        box_xywh: tuple[float, float, float, float] | None = None,
    ) -> None:
        # Recorded as the control keeps it, so the mask is pasted where the sensor looked.
        roi = FULL_SENSOR_ROI if crop is None else roi_as_latched(self.geometry.stream_rect_to_sensor(crop))
        if roi[2] <= 0 or roi[3] <= 0:
            roi, prompt_id, crop, box_xywh = FULL_SENSOR_ROI, None, None, None
        t_before = self.clock()
        if roi != self._last_written:
            self.imx500.set_inference_roi_abs(roi)
            self._last_written = roi
        box = None if box_xywh is None else tuple(float(v) for v in box_xywh)
        self._writes.append(_RoiWrite(t_before, self.clock(), roi, prompt_id, crop, box))

    def next_frame(self, timeout_s: float = 1.0) -> SensorFrame | None:
        captured = self.capture()
        if captured is None:
            return None
        metadata, image = captured
        # picamera2's "RGB888" arrays are [B, G, R] per pixel.
        image_rgb = cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB)
        timestamp = int(metadata.get("SensorTimestamp", self.clock()))
        duration_ns = int(metadata.get("FrameDuration", round(1e6 / self.config.frame_rate))) * 1000
        if "ScalerCrop" in metadata:
            crop = tuple(int(v) for v in metadata["ScalerCrop"])
            if crop != self.geometry.scaler_crop:
                self.geometry = SensorGeometry(self._stream_size, crop)
        if self._first_timestamp is None:
            self._first_timestamp = timestamp
        sequence = round((timestamp - self._first_timestamp) / max(1, duration_ns))
        frame = SensorFrame(sequence, timestamp, image_rgb)
        try:
            frame.inference = self._inference(metadata, timestamp, duration_ns)
        except Exception as exc:
            hint = f"; {TENSOR_INFO_HINT}" if "tensor info length" in str(exc) else ""
            frame.error = f"cannot decode the sensor output: {exc}{hint}"
            return frame
        if frame.inference is None:
            self._missing_tensors += 1
            limit = max(5, 2 * self.roi_apply_delay_frames + 3)
            if self._missing_tensors >= limit:
                frame.error = f"no output tensor from the sensor for {self._missing_tensors} frames"
        else:
            self._missing_tensors = 0
        return frame

    # --- internals ---------------------------------------------------------------------------
    def _inference(self, metadata: dict, timestamp: int, duration_ns: int) -> SensorInference | None:
        outputs = self.imx500.get_outputs(metadata, add_batch=True)
        if not outputs:
            return None
        logits = logits_from_outputs(outputs, self.config.output_transpose)
        kpi = self.imx500.get_kpi_info(metadata)
        write = self._roi_in_effect(timestamp - self.roi_apply_delay_frames * duration_ns)
        if write is None:  # ambiguous: a write straddled the latch instant
            return SensorInference(FULL_SENSOR_ROI, None, None, None, *(kpi or (None, None)))
        crop = self.geometry.sensor_rect_to_stream(write.roi_sensor)
        return SensorInference(
            write.roi_sensor,
            crop,
            write.prompt_id,
            logits,
            *(kpi or (None, None)),
            requested_crop=write.requested_crop,
            box_xywh=write.box_xywh,
        )

    def _roi_in_effect(self, latch_ns: int) -> _RoiWrite | None:
        current = self._writes[0]
        index = 0
        for i, write in enumerate(self._writes):
            if write.t_after_ns <= latch_ns:
                current, index = write, i
        for write in list(self._writes)[index + 1 :]:
            if write.t_before_ns <= latch_ns and write.roi_sensor != current.roi_sensor:
                return None
        # Writes before the one in effect can no longer matter (latch times only grow).
        for _ in range(index):
            self._writes.popleft()
        return current
