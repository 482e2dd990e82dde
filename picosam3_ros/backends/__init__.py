"""Backends by name (like yolo_ros's model map).

``BACKENDS["onnx"]`` is a :class:`~picosam3_ros.core.backend_api.CropSegmenter` (CPU);
``BACKENDS["imx500"]`` is a :class:`~picosam3_ros.core.backend_api.SensorFrameSource`
(the camera runs the network). ``create_backend(name, config)`` builds one.
"auto" is resolved by :func:`resolve_auto`. Which of them serves a frame, the fallback
from the sensor to the CPU and the attribution of sensor outputs live in
:mod:`picosam3_ros.backends.frame_server`, which the node drives.
"""

from __future__ import annotations

from typing import Callable, Union

from picosam3_ros.core.backend_api import (
    BackendConfig,
    BackendError,
    CropSegmenter,
    ModelLoadError,
    ModelMismatchError,
    SensorFrame,
    SensorFrameSource,
    SensorInference,
)

Backend = Union[CropSegmenter, SensorFrameSource]


def _onnx(config: BackendConfig) -> CropSegmenter:
    from picosam3_ros.backends.onnx_backend import OnnxBackend

    return OnnxBackend(config)


def _imx500(config: BackendConfig) -> SensorFrameSource:
    from picosam3_ros.backends.imx500_backend import Imx500Backend

    return Imx500Backend(config)


BACKENDS: dict[str, Callable[[BackendConfig], Backend]] = {"onnx": _onnx, "imx500": _imx500}


def create_backend(name: str, config: BackendConfig) -> Backend:
    """Build the backend registered as ``name``; raises BackendError / ModelLoadError."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise BackendError(f"unknown backend '{name}' (known: {sorted(BACKENDS)})") from None
    return factory(config)


def resolve_auto(camera: str) -> str:
    """``auto``: imx500 when an IMX500 camera is available (or emulated), else onnx."""
    if camera == "emulator":
        return "imx500"
    if camera == "picamera2":
        from picosam3_ros.backends.imx500_backend import imx500_present

        return "imx500" if imx500_present() else "onnx"
    return "onnx"


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendConfig",
    "BackendError",
    "CropSegmenter",
    "ModelLoadError",
    "ModelMismatchError",
    "SensorFrame",
    "SensorFrameSource",
    "SensorInference",
    "create_backend",
    "resolve_auto",
]
