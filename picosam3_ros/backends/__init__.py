"""The backend registry: every backend name anywhere in the project comes from :data:`BACKENDS`.

A backend is registered once, here, as a :class:`BackendSpec`: its name, how to build it,
and what it can do. Everything else reads the registry:

* the node's ``backend`` parameter and ``bag_eval --backend`` offer :func:`backend_names`;
* ``auto`` is :func:`resolve_auto`: the first registered backend whose ``available(camera)``
  says yes (the IMX500 when the camera is there), else the CPU one;
* ``frame_server.build_frame_server`` chooses the path by capability: a backend that
  ``runs_network`` on its own camera frames (a :class:`SensorFrameSource`, the IMX500) is the
  sensor path, with its ``cpu_fallback`` ready; any other is a
  :class:`~picosam3_ros.core.backend_api.CropSegmenter` (the CPU path, ``onnx``);
* :class:`~picosam3_ros.backends.predictor.Predictor` runs any crop segmenter by name.

Adding a backend is one :func:`register_backend` call in this file (see docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass
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
AUTO = "auto"


@dataclass(frozen=True)
class BackendSpec:
    """One registered backend.

    runs_network: True for a camera that runs the network on one ROI per frame (the sensor
        path); False for a crop segmenter (the CPU path).
    needs_camera: the node must own a camera (``camera`` not "none") to use it.
    available: for ``auto``, whether it can serve with this ``camera`` setting (None: never chosen
        by ``auto`` unless it is the last resort, see :func:`resolve_auto`).
    cpu_fallback: the crop segmenter a sensor backend falls back to ('' = none).
    summary: a few words for the parameter's description.
    """

    name: str
    factory: Callable[[BackendConfig], Backend]
    runs_network: bool = False
    needs_camera: bool = False
    available: Callable[[str], bool] | None = None
    cpu_fallback: str = ""
    summary: str = ""

    def __call__(self, config: BackendConfig) -> Backend:
        return self.factory(config)


BACKENDS: dict[str, BackendSpec] = {}


def register_backend(spec: BackendSpec) -> BackendSpec:
    """Add (or replace) a backend; registration order is ``auto``'s order of preference."""
    if spec.name == AUTO:
        raise ValueError(f"'{AUTO}' is not a backend name")
    BACKENDS[spec.name] = spec
    return spec


def unregister_backend(name: str) -> None:
    BACKENDS.pop(name, None)


def backend_names(auto: bool = False) -> tuple[str, ...]:
    """The registered names (with ``auto`` first when asked: the node's choices)."""
    return ((AUTO,) if auto else ()) + tuple(BACKENDS)


def backend_spec(name: str) -> BackendSpec:
    try:
        return BACKENDS[name]
    except KeyError:
        raise BackendError(f"unknown backend '{name}' (known: {sorted(BACKENDS)})") from None


def create_backend(name: str, config: BackendConfig) -> Backend:
    """Build the backend registered as ``name``; raises BackendError / ModelLoadError."""
    return backend_spec(name).factory(config)


def resolve_auto(camera: str) -> str:
    """``auto``: the first backend whose ``available(camera)`` says yes, else the first crop
    segmenter (the CPU path runs on any machine)."""
    for spec in BACKENDS.values():
        if spec.available is not None and spec.available(camera):
            return spec.name
    return next(spec.name for spec in BACKENDS.values() if not spec.runs_network)


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
