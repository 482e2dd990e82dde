"""Emulated ``picamera2.devices.imx500.IMX500``: same method names and semantics as picamera2's.

The network file may be an ``.rpk`` or ``packerOut.zip`` next to a PicoSAM3
model card (the emulator then runs the card's INT8 ONNX, fp32 if there is
none), or an ONNX file beside its model card.

What it follows in the real module (raspberrypi/picamera2,
``picamera2/devices/imx500/imx500.py``):

* ``set_inference_roi_abs(roi)``: (left, top, width, height) in full-sensor pixels
  (``get_full_sensor_resolution()`` = 4056x3040), bounded to the sensor with libcamera's
  ``Rectangle.boundedTo`` (an ROI outside the sensor becomes 0-sized, which the driver
  takes as the full frame), written as one V4L2 control of four u32 to the sensor
  (``EmulatedSensor.write_roi_control``; it reaches the network at a later frame);
* the network file: an ``.rpk``'s ``network_info.txt`` gives the input size, and its
  ``network_intrinsics`` (``inference_rate``, ...) become ``network_intrinsics``;
* ``get_roi_scaled`` / ``convert_inference_coords``: ``ScalerCrop`` (metadata) is in
  full-sensor pixels too, and a sensor rectangle maps to the stream as
  ``(rect - ScalerCrop.topLeft) * stream_size / ScalerCrop.size`` after bounding it to
  the ScalerCrop (picamera2 goes through the raw mode's binned grid; we do not round there);
* ``get_outputs``: the flat ``CnnOutputTensor`` is cut per ``CnnOutputTensorInfo`` tensor
  and reshaped with ``order='F'`` to the sizes listed there, innermost dimension first;
  the info struct is the 712-byte one with ``frameCount`` (picamera2 0.3.38 raises
  ``ValueError`` on any other length, as here);
* ``get_kpi_info``: items 0 and 1 of ``CnnKpiInfo`` (microseconds) as (dnn, dsp) milliseconds.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from picosam3_ros import emulator as _emulator
from picosam3_ros.core.rpk import RpkError, read_rpk
from picosam3_ros.emulator.sensor import (
    FW_NETWORK_STAGE,
    SENSOR_SIZE,
    CnnOutputTensorInfoExported,
)


@dataclass
class Rectangle:
    """Stand-in for libcamera.Rectangle (x, y, width, height)."""

    x: int
    y: int
    width: int
    height: int

    def __iter__(self):
        return iter((self.x, self.y, self.width, self.height))


class NetworkIntrinsics:
    """The part of picamera2's NetworkIntrinsics the node reads (the rpk's ``network_intrinsics``)."""

    def __init__(self, val: dict | None = None):
        self.intrinsics = dict(val) if val else None

    @property
    def task(self) -> str | None:
        return (self.intrinsics or {}).get("task")

    @property
    def inference_rate(self) -> float | None:
        return (self.intrinsics or {}).get("inference_rate")

    def update_with_defaults(self) -> None:
        self.intrinsics = {"inference_rate": 30.0} | (self.intrinsics or {})


def _bounded(roi: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """libcamera's Rectangle.boundedTo(full sensor): the intersection (0-sized when outside)."""
    x, y, w, h = (int(v) for v in roi)
    left, top = max(x, 0), max(y, 0)
    right, bottom = min(x + w, SENSOR_SIZE[0]), min(y + h, SENSOR_SIZE[1])
    return (left, top, max(0, right - left), max(0, bottom - top))


class IMX500:
    """The AI camera's sensor-side controls: network upload, inference ROI, output tensors."""

    def __init__(self, network_file: str, camera_id: str = ""):
        self._sensor = _emulator.sensor()
        self.__cfg: dict[str, Any] = {"network_file": network_file, "input_tensor": {}}
        if network_file != "":
            path = Path(os.path.abspath(network_file))
            if not path.is_file():
                raise RuntimeError(f"Firmware file {path} does not exist.")
            print(
                "NOTE: Loading network firmware onto the IMX500 can take several minutes, "
                "please do not close down the application.",
                file=sys.stderr,
            )
            if path.suffix == ".rpk":
                try:
                    info = read_rpk(path)
                except RpkError as exc:
                    raise RuntimeError(f"IMX500: {exc}") from exc
                if info.intrinsics is not None:
                    self.__cfg["intrinsics"] = NetworkIntrinsics(info.intrinsics)
            self._sensor.load_network(path)
            self.__cfg["input_tensor_size"] = tuple(self._sensor.network.input_size)
        full = self.get_full_sensor_resolution()
        self.set_inference_roi_abs((0, 0, full.width, full.height))

    @property
    def camera_num(self) -> int:
        return 0

    @property
    def config(self) -> dict:
        return self.__cfg

    @property
    def network_intrinsics(self) -> NetworkIntrinsics | None:
        return self.__cfg.get("intrinsics")

    @staticmethod
    def get_full_sensor_resolution() -> Rectangle:
        return Rectangle(0, 0, *SENSOR_SIZE)

    def get_input_size(self) -> tuple[int, int]:
        """The network input tensor size as (width, height)."""
        return self.__cfg["input_tensor_size"]

    def get_fw_upload_progress(self, stage_req: int) -> tuple[int, int]:
        stage, current, total = self._sensor.fw_progress
        return (min(current, total), total) if stage == stage_req else (0, 0)

    def show_network_fw_progress_bar(self) -> None:
        def report() -> None:
            while True:
                current, total = self.get_fw_upload_progress(FW_NETWORK_STAGE)
                if total:
                    print(f"Network Firmware Upload: {current}/{total} bytes", file=sys.stderr)
                    if current >= total:
                        return
                time.sleep(0.5)

        threading.Thread(target=report, daemon=True).start()

    def set_inference_roi_abs(self, roi: tuple) -> None:
        """Set the inference crop (left, top, width, height) in full-sensor pixels (bounded to the sensor)."""
        bounded = _bounded(tuple(roi))
        self._sensor.write_roi_control(struct.pack("<4I", *bounded))
        self.__cfg["roi"] = Rectangle(*bounded)

    def set_inference_aspect_ratio(self, aspect_ratio: tuple) -> None:
        sw, sh = SENSOR_SIZE
        aw, ah = aspect_ratio
        if sw * ah > sh * aw:
            w, h = sh * aw // ah, sh
        else:
            w, h = sw, sw * ah // aw
        self.set_inference_roi_abs(((sw - w) // 2, (sh - h) // 2, w, h))

    def get_roi_scaled(self, request: Any, stream: str = "main") -> Rectangle:
        """The last ROI written (not necessarily the one in effect!) in stream pixels, as picamera2 does."""
        width, height = request.picam2.camera_configuration()[stream]["size"]
        cx, cy, cw, ch = request.get_metadata()["ScalerCrop"]
        x, y, w, h = self.__cfg["roi"]
        left, top = max(x, cx), max(y, cy)
        right, bottom = min(x + w, cx + cw), min(y + h, cy + ch)
        sx, sy = width / cw, height / ch
        return Rectangle(
            int((left - cx) * sx),
            int((top - cy) * sy),
            int(max(0, right - left) * sx),
            int(max(0, bottom - top) * sy),
        )

    def get_output_shapes(self, metadata: dict) -> list[list[int]]:
        info = metadata.get("CnnOutputTensorInfo")
        if not info:
            return []
        parsed = CnnOutputTensorInfoExported()
        raw = bytes(info)
        if len(raw) != ctypes.sizeof(parsed):
            raise ValueError(
                f"tensor info length {len(raw)} does not match expected size {ctypes.sizeof(parsed)}"
            )
        ctypes.memmove(ctypes.addressof(parsed), raw, len(raw))
        return [list(t.size)[: t.num_dimensions] for t in parsed.info[: parsed.num_tensors]]

    def get_outputs(self, metadata: dict, add_batch: bool = False) -> list[np.ndarray] | None:
        """The output tensors, reshaped from the flat sensor buffer in Fortran order (as picamera2 does)."""
        output_tensor = metadata.get("CnnOutputTensor")
        if not output_tensor:
            return None
        flat = np.fromiter(output_tensor, dtype=np.float32)
        outputs, offset = [], 0
        for shape in self.get_output_shapes(metadata):
            size = int(np.prod(shape))
            tensor = flat[offset : offset + size].reshape(shape, order="F")
            outputs.append(np.expand_dims(tensor, 0) if add_batch else tensor)
            offset += size
        return outputs

    @staticmethod
    def get_kpi_info(metadata: dict) -> tuple[float, float] | None:
        """(dnn_runtime, dsp_runtime) in milliseconds."""
        kpi = metadata.get("CnnKpiInfo")
        if kpi is None:
            return None
        return kpi[0] / 1000, kpi[1] / 1000
