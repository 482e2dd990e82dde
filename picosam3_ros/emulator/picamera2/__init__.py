"""Emulated ``picamera2`` (PicoSAM3-ROS): the subset of Picamera2 the IMX500 backend uses.

Frames come from ``picosam3_ros.emulator.sensor()``; see ``picosam3_ros.emulator``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from picosam3_ros import emulator as _emulator

IS_PICOSAM3_EMULATOR = True


class CompletedRequest:
    """A captured frame: metadata and stream buffers, released back to the camera with release()."""

    def __init__(self, picam2: Picamera2, frame: Any):
        self.picam2 = picam2
        self._frame = frame
        self._released = False

    def get_metadata(self) -> dict:
        return dict(self._frame.metadata)

    def make_array(self, name: str = "main") -> np.ndarray:
        if self._released:
            raise RuntimeError("request already released")
        if name != "main":
            raise ValueError(f"emulated camera only has the 'main' stream, not {name!r}")
        return self._frame.image.copy()

    def release(self) -> None:
        self._released = True


class Picamera2:
    """Emulated camera ``camera_num`` (only camera 0, an IMX500, exists)."""

    def __init__(self, camera_num: int = 0, **_: Any):
        cameras = self.global_camera_info()
        if not 0 <= camera_num < len(cameras):
            raise IndexError(f"camera {camera_num} not found (emulator has {len(cameras)})")
        self.camera_num = camera_num
        self._sensor = _emulator.sensor()
        self._configuration: dict | None = None
        self.started = False

    @staticmethod
    def global_camera_info() -> list[dict]:
        return [{"Model": "imx500", "Location": 2, "Rotation": 0, "Id": "/base/emulator/imx500@1a", "Num": 0}]

    def create_preview_configuration(
        self, main: dict | None = None, controls: dict | None = None, buffer_count: int = 4, **_: Any
    ) -> dict:
        main = dict(main or {})
        main.setdefault("size", (640, 480))
        main.setdefault("format", "XBGR8888")
        return {
            "main": main,
            "raw": {"size": (2028, 1520)},
            "controls": dict(controls or {}),
            "buffer_count": buffer_count,
        }

    create_video_configuration = create_preview_configuration

    def configure(self, config: dict) -> None:
        self._configuration = config
        self._sensor.configure(tuple(config["main"]["size"]), config["main"]["format"])
        rate = config.get("controls", {}).get("FrameRate")
        if rate and float(rate) != self._sensor.settings.fps:
            self._sensor.settings.fps = float(rate)

    def camera_configuration(self) -> dict:
        if self._configuration is None:
            raise RuntimeError("camera not configured")
        return self._configuration

    def start(self, config: dict | None = None, show_preview: bool = False) -> None:
        if config is not None:
            self.configure(config)
        if self._configuration is None:
            self.configure(self.create_preview_configuration())
        self._sensor.start()
        self.started = True

    def capture_request(self, flush: Any = None, wait: float | None = None) -> CompletedRequest:
        return CompletedRequest(self, self._sensor.capture(timeout_s=wait))

    def capture_metadata(self, wait: float | None = None) -> dict:
        request = self.capture_request(wait=wait)
        try:
            return request.get_metadata()
        finally:
            request.release()

    def set_controls(self, controls: dict) -> None:
        if "FrameRate" in controls:
            self._sensor.settings.fps = float(controls["FrameRate"])
        if "CnnEnableInputTensor" in controls:
            self._sensor.settings.input_tensor = bool(controls["CnnEnableInputTensor"])

    def stop(self) -> None:
        self._sensor.stop()
        self.started = False

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> Picamera2:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["CompletedRequest", "Picamera2"]
