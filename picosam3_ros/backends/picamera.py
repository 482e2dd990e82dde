"""picamera2 under both camera backends: the import (real or emulated) and the shared life cycle.

The plain camera (``backends/camera.py``) and the IMX500 (``backends/imx500_backend.py``) both
stand on :class:`PicameraSource`; neither imports the other.
"""

from __future__ import annotations

import numpy as np

from picosam3_ros.core.backend_api import BackendConfig, BackendError, SensorFrameSource


def import_picamera2(camera: str, emulator_settings: dict | None = None):
    """Import (Picamera2, IMX500), from the emulator when ``camera == "emulator"``."""
    if camera == "emulator":
        from picosam3_ros import emulator

        if emulator_settings is not None:
            emulator.configure(**emulator_settings)
        emulator.install()
    try:
        from picamera2 import Picamera2
        from picamera2.devices import IMX500
    except ImportError as exc:
        raise BackendError(
            f"picamera2 is not available ({exc}); on a Raspberry Pi install python3-picamera2, "
            "elsewhere use camera:=emulator or backend:=onnx"
        ) from exc
    return Picamera2, IMX500


class PicameraSource(SensorFrameSource):
    """A frame source around an open, configured ``Picamera2`` (``self.picam2``).

    Subclasses open the camera in ``__init__`` and set ``_stream_size``; this class
    owns the start/stop life cycle shared by the IMX500 and the plain camera.
    """

    picam2: object
    config: BackendConfig
    _stream_size: tuple[int, int]
    _started: bool = False
    _closed: bool = False

    @property
    def stream_size(self) -> tuple[int, int]:
        return self._stream_size

    def start(self) -> None:
        if not self._started:
            self.picam2.start()
            self._started = True

    def _camera_config(self, stream_size: tuple[int, int]) -> dict:
        """The picamera2 configuration of a main stream of ``stream_size`` (subclasses add to it)."""
        return self.picam2.create_preview_configuration(
            main={"size": stream_size, "format": "RGB888"},
            controls={"FrameRate": float(self.config.frame_rate)},
        )

    def set_stream_size(self, stream_size: tuple[int, int]) -> None:
        """Reconfigure the main stream (camera stopped and restarted; the IMX500 keeps its network)."""
        stream_size = (int(stream_size[0]), int(stream_size[1]))
        if stream_size == self._stream_size:
            return
        was_started = self._started
        try:
            if was_started:
                self.picam2.stop()
                self._started = False
            self.picam2.configure(self._camera_config(stream_size))
        except Exception as exc:
            raise BackendError(f"cannot reconfigure the camera to {stream_size}: {exc}") from exc
        self._stream_size = stream_size
        if was_started:
            self.start()

    def pause(self) -> None:
        if self._started:
            self._started = False
            try:
                self.picam2.stop()
            except Exception as exc:
                raise BackendError(f"cannot stop the camera: {exc}") from exc

    def stop(self) -> None:
        # A paused camera (lifecycle deactivate) is still open: close it too, once.
        was_started, self._started = self._started, False
        if was_started or not self._closed:
            self._closed = True
            try:
                if was_started:
                    self.picam2.stop()
                self.picam2.close()
            except Exception:
                pass  # shutting down: a camera that fails to close has nothing left to lose

    def capture(self) -> tuple[dict, np.ndarray] | None:
        """One request's (metadata, "main" array), the request released; None on a capture timeout."""
        try:
            request = self.picam2.capture_request()
        except TimeoutError:
            return None
        except Exception as exc:
            raise BackendError(f"camera capture failed: {exc}") from exc
        try:
            return request.get_metadata(), request.make_array("main")
        finally:
            request.release()
