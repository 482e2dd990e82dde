"""The backends, registered by name (like yolo_ros's model map): ``onnx`` and ``imx500``.

``onnx`` is a :class:`~picosam3_ros.core.backend_api.CropSegmenter` (ONNX Runtime on the CPU);
``imx500`` is a :class:`~picosam3_ros.core.backend_api.SensorFrameSource` (the AI Camera runs the
network on one ROI per frame). The registry itself is :mod:`picosam3_ros.core.backend_registry`;
this file fills it, and is the one place to add a backend: one :func:`register_backend` call
(docs/architecture.md). Which of them serves a frame, the fallback from the sensor to the CPU and
the attribution of sensor outputs live in :mod:`picosam3_ros.backends.frame_server`.
"""

from __future__ import annotations

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
from picosam3_ros.core.backend_registry import (
    AUTO,
    BACKENDS,
    Backend,
    BackendSpec,
    backend_names,
    backend_spec,
    create_backend,
    register_backend,
    resolve_auto,
    unregister_backend,
)


def _onnx(config: BackendConfig) -> CropSegmenter:
    from picosam3_ros.backends.onnx_backend import OnnxBackend

    return OnnxBackend(config)


def _imx500(config: BackendConfig) -> SensorFrameSource:
    from picosam3_ros.backends.imx500_backend import Imx500Backend

    return Imx500Backend(config)


def _imx500_available(camera: str) -> bool:
    """The emulator always has one; a real camera when picamera2 lists an IMX500."""
    if camera == "emulator":
        return True
    if camera == "picamera2":
        from picosam3_ros.backends.imx500_backend import imx500_present

        return imx500_present()
    return False


register_backend(BackendSpec("imx500", _imx500, runs_network=True, needs_camera=True,
                             available=_imx500_available, cpu_fallback="onnx",
                             summary="the network on the AI Camera's sensor"))
register_backend(BackendSpec("onnx", _onnx, summary="ONNX Runtime on the CPU"))


__all__ = [
    "AUTO",
    "BACKENDS",
    "Backend",
    "BackendConfig",
    "BackendError",
    "BackendSpec",
    "CropSegmenter",
    "ModelLoadError",
    "ModelMismatchError",
    "SensorFrame",
    "SensorFrameSource",
    "SensorInference",
    "backend_names",
    "backend_spec",
    "create_backend",
    "register_backend",
    "resolve_auto",
    "unregister_backend",
]
