"""A plain camera frame source (picamera2 or the emulator, no network) for the CPU backend."""

from __future__ import annotations

import time

import cv2

from picosam3_ros.backends.picamera import PicameraSource, import_picamera2
from picosam3_ros.core.backend_api import BackendConfig, BackendError, SensorFrame
from picosam3_ros.core.crop import CropRect


class PlainCamera(PicameraSource):
    """Frames only; ``request_roi`` is a no-op (the CPU crops every prompt itself)."""

    name = "camera"
    runs_network = False

    def __init__(self, config: BackendConfig):
        emulator_settings = dict(config.emulator) if config.camera == "emulator" else None
        Picamera2, _ = import_picamera2(config.camera, emulator_settings)
        self._stream_size = (int(config.stream_size[0]), int(config.stream_size[1]))
        self.config = config
        try:
            self.picam2 = Picamera2(0)
            self.picam2.configure(self._camera_config(self._stream_size))
        except Exception as exc:
            raise BackendError(f"cannot open the camera: {exc}") from exc
        self._first: int | None = None
        self._started = False

    def request_roi(
        self,
        crop: CropRect | None,
        prompt_id: int | None,
        box_xywh: tuple[float, float, float, float] | None = None,
    ) -> None:
        pass

    def next_frame(self, timeout_s: float = 1.0) -> SensorFrame | None:
        captured = self.capture()
        if captured is None:
            return None
        metadata, image = captured
        timestamp = int(metadata.get("SensorTimestamp", time.monotonic_ns()))
        if self._first is None:
            self._first = timestamp
        duration = int(metadata.get("FrameDuration", 33333)) * 1000
        sequence = round((timestamp - self._first) / max(1, duration))
        return SensorFrame(sequence, timestamp, cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB))
