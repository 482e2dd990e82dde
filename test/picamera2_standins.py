"""Load the real picamera2 ``devices/imx500/imx500.py`` (PyPI 0.3.38) on x86, against the emulator.

``requirements/vendor-picamera2.txt`` puts the released package in ``.vendor-picamera2/``
(``--no-deps``, on no sys.path). Its module imports, and what stands in for what cannot
exist on x86:

* real, from PyPI (requirements/test.txt): ``numpy``, ``jsonschema``, ``OpenEXR``/``Imath``,
  ``libarchive`` (libarchive-c over Debian's libarchive13), ``tqdm``, ``videodev2`` (the
  V4L2 ctypes structures and ioctl numbers), and the standard library;
* stand-in ``libcamera`` (a C++ library with Python bindings, Raspberry Pi OS only):
  ``Rectangle`` and ``Size`` with libcamera's documented geometry (``boundedTo`` is the
  intersection, ``to_tuple``, ``size``);
* stand-in ``picamera2`` package (its ``__init__`` imports libcamera and python-prctl): the
  project's emulated ``Picamera2`` / ``CompletedRequest``, whose frames carry the emulated
  sensor's metadata;
* the device node: ``IMX500.__init__`` finds ``/dev/v4l-subdevN`` through sysfs and the
  firmware progress through debugfs, which no x86 machine has. :func:`real_imx500` makes the
  object past that discovery and then runs the real private methods that load the firmware
  and parse ``network_info.txt``; the module's ``fcntl`` is :class:`DeviceNode`, which
  decodes the real V4L2 structures picamera2 passes to ``ioctl`` and hands the controls to
  the emulated sensor (ROI payload, firmware file descriptor).
"""

from __future__ import annotations

import ctypes
import errno
import importlib.util
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENDOR = REPO / ".vendor-picamera2"
REAL_IMX500_PY = VENDOR / "picamera2" / "devices" / "imx500" / "imx500.py"


@dataclass(frozen=True)
class Size:
    width: int
    height: int

    def to_tuple(self) -> tuple[int, int]:
        return (self.width, self.height)


@dataclass(frozen=True)
class Rectangle:
    x: int = 0
    y: int = 0
    width: int = 0
    height: int = 0

    @property
    def size(self) -> Size:
        return Size(self.width, self.height)

    def bounded_to(self, bound: Rectangle) -> Rectangle:
        """libcamera ``Rectangle::boundedTo``: the intersection (0-sized when they do not meet)."""
        left, top = max(self.x, bound.x), max(self.y, bound.y)
        right = min(self.x + self.width, bound.x + bound.width)
        bottom = min(self.y + self.height, bound.y + bound.height)
        return Rectangle(left, top, max(0, right - left), max(0, bottom - top))

    def to_tuple(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.width, self.height)


def libcamera_standin() -> types.ModuleType:
    module = types.ModuleType("libcamera")
    module.Rectangle = Rectangle
    module.Size = Size
    return module


class DeviceNode:
    """Stands in for ``fcntl`` in the real module: ``ioctl`` on the IMX500 subdevice node."""

    def __init__(self, videodev2, sensor, roi_ctrl_id: int, network_fd_ctrl_id: int):
        self.v4l2 = videodev2
        self.sensor = sensor
        self.roi_ctrl_id = roi_ctrl_id
        self.network_fd_ctrl_id = network_fd_ctrl_id
        self.roi_payloads: list[bytes] = []

    def ioctl(self, fd, request, arg, mutate_flag: bool = True):
        v4l2 = self.v4l2
        if request == v4l2.VIDIOC_S_EXT_CTRLS:
            for i in range(arg.count):
                control = arg.controls[i]
                if control.id != self.roi_ctrl_id:
                    raise OSError(errno.EINVAL, f"control 0x{control.id:08x} not emulated")
                payload = ctypes.string_at(control.p_u32, control.size)
                self.roi_payloads.append(payload)
                self.sensor.write_roi_control(payload)
            return 0
        if request == v4l2.VIDIOC_S_CTRL and arg.id == self.network_fd_ctrl_id:
            # The driver reads the whole file from the descriptor (kernel_read_file_from_fd).
            self.sensor.load_network(Path(os.readlink(f"/proc/self/fd/{arg.value}")))
            return 0
        raise OSError(errno.ENOTTY, "ioctl not emulated")


def load_real_module(monkeypatch):
    """The real imx500.py as a module, with the stand-ins above (the emulator must be installed)."""
    if not REAL_IMX500_PY.is_file():
        raise FileNotFoundError(
            f"{REAL_IMX500_PY} is missing: run `make bootstrap` (requirements/vendor-picamera2.txt)"
        )
    import picamera2  # the emulator's, installed first on sys.path

    assert getattr(picamera2, "IS_PICOSAM3_EMULATOR", False)
    monkeypatch.setitem(sys.modules, "libcamera", libcamera_standin())
    spec = importlib.util.spec_from_file_location("picamera2_0_3_38_imx500", REAL_IMX500_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def real_imx500(module, sensor, network_file: Path):
    """An ``IMX500`` of the real module on the emulated device node, with its network loaded.

    Runs what ``IMX500.__init__`` runs after finding the device: the firmware ioctl, the real
    ``network_info.txt`` parser (libarchive over the rpk's CPIO) and the full-sensor ROI write.
    """
    import videodev2

    node = DeviceNode(videodev2, sensor, module.ROI_CTRL_ID, module.NETWORK_FW_FD_CTRL_ID)
    module.fcntl = node
    imx = module.IMX500.__new__(module.IMX500)
    imx.device_fd = None
    imx._IMX500__cfg = {"network_file": str(network_file), "input_tensor": {}}
    imx._IMX500__camera_num = 0
    imx.fw_progress = module.IMX500.FwProgressType.NONE
    imx._IMX500__set_network_firmware(str(network_file))
    imx._IMX500__ni_from_network(str(network_file))
    imx.set_inference_roi_abs((0, 0, 4056, 3040))
    return imx, node
