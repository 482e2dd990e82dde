"""The backend registry (ROS-free): every backend name anywhere in the project comes from :data:`BACKENDS`.

The registry lives in ``core`` so that everything may read it (the node's parameter choices,
``bag_eval``, the frame server, :class:`~picosam3_ros.core.predictor.Predictor`, the trainer);
the backends themselves register in ``picosam3_ros/backends/__init__.py``, which the package
imports first (``picosam3_ros/__init__.py``), so the built-in ones are always there.

* the node's ``backend`` parameter and ``bag_eval --backend`` offer :func:`backend_names`;
* ``auto`` is :func:`resolve_auto`: the first registered backend whose ``available(camera)``
  says yes (the IMX500 when the camera is there), else the first crop segmenter (the CPU);
* ``backends.frame_server.build_frame_server`` chooses the path by capability: a backend that
  ``runs_network`` on its own camera frames (a :class:`SensorFrameSource`, the IMX500) is the
  sensor path, with its ``cpu_fallback`` ready; any other is a :class:`CropSegmenter` (``onnx``);
* :class:`~picosam3_ros.core.predictor.Predictor` runs any crop segmenter by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

from picosam3_ros.core.backend_api import BackendConfig, BackendError, CropSegmenter, SensorFrameSource

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
