"""An emulated picamera2 + IMX500 for machines without the AI Camera (x86 CI, laptops).

Usage::

    from picosam3_ros import emulator
    emulator.configure(source="clip.mp4", fps=30, roi_delay_frames=2)   # or frames=[...], mode="step"
    emulator.install()            # put the emulated ``picamera2`` first on sys.path
    from picamera2 import Picamera2
    from picamera2.devices import IMX500   # the same imports as on a Raspberry Pi

The package ``picosam3_ros/emulator/picamera2`` shadows the real module. It
implements the part of picamera2 the IMX500 backend uses, with the same names
and semantics (see ``sensor.py`` for the camera model). The backends install it
when their ``camera`` is "emulator".
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from picosam3_ros.emulator.sensor import EmulatedSensor, EmulatorSettings, EndOfStream
from picosam3_ros.emulator.sources import FrameSource, SourceError, open_source

EMULATOR_PATH = str(Path(__file__).resolve().parent)

_lock = threading.Lock()
_sensor: EmulatedSensor | None = None
_settings = EmulatorSettings()


def configure(**settings) -> EmulatorSettings:
    """Set how the emulated camera behaves (see EmulatorSettings); replaces the current camera."""
    global _settings, _sensor
    with _lock:
        if _sensor is not None:
            _sensor.close()
            _sensor = None
        _settings = EmulatorSettings(**settings)
        return _settings


def sensor() -> EmulatedSensor:
    """The process's emulated camera (created on first use from the configured settings)."""
    global _sensor
    with _lock:
        if _sensor is None:
            _sensor = EmulatedSensor(_settings)
        return _sensor


def install() -> None:
    """Make ``import picamera2`` load the emulator (idempotent; drops an already imported picamera2)."""
    if sys.path[:1] != [EMULATOR_PATH]:
        if EMULATOR_PATH in sys.path:
            sys.path.remove(EMULATOR_PATH)
        sys.path.insert(0, EMULATOR_PATH)
    loaded = sys.modules.get("picamera2")
    if loaded is not None and not getattr(loaded, "IS_PICOSAM3_EMULATOR", False):
        for name in [n for n in sys.modules if n == "picamera2" or n.startswith("picamera2.")]:
            del sys.modules[name]


__all__ = [
    "EMULATOR_PATH",
    "EmulatedSensor",
    "EmulatorSettings",
    "EndOfStream",
    "FrameSource",
    "SourceError",
    "configure",
    "install",
    "open_source",
    "sensor",
]
