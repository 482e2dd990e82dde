"""Stream pixels <-> full-sensor pixels through the ISP's ScalerCrop (ROS-free).

The IMX500 is 4056x3040. The ISP cuts ``ScalerCrop`` (x, y, w, h, full-sensor
pixels) out of the sensor image and scales it to the stream size *without*
keeping aspect, so one stream pixel is ``w / stream_width`` sensor pixels wide
and ``h / stream_height`` high. ``set_inference_roi_abs`` takes full-sensor pixels.

Rounding is chosen so that stream -> sensor -> stream is exact for integer
rectangles whenever the scale is >= 2 (always true for the IMX500 at stream
sizes up to 2028x1520): the sensor rectangle is rounded outwards, the way back
is rounded to the nearest pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from picosam3_ros.core.crop import CropRect

IMX500_SENSOR_SIZE = (4056, 3040)
# The driver's inference-window control declares at most 4032 per element (raspberrypi/linux
# drivers/media/i2c/imx500.c); V4L2 clamps each written value to it.
IMX500_ROI_CONTROL_MAX = 4032


def roi_as_latched(roi: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """A sensor ROI as the control keeps it: each of left, top, width, height at most 4032."""
    return tuple(min(int(v), IMX500_ROI_CONTROL_MAX) for v in roi)  # type: ignore[return-value]


@dataclass(frozen=True)
class SensorGeometry:
    """One stream's view of the sensor: stream (width, height) and the ScalerCrop in effect."""

    stream_size: tuple[int, int]
    scaler_crop: tuple[int, int, int, int] = (0, 0, *IMX500_SENSOR_SIZE)
    sensor_size: tuple[int, int] = IMX500_SENSOR_SIZE

    @property
    def scale_x(self) -> float:
        """Sensor pixels per stream pixel, horizontally."""
        return self.scaler_crop[2] / self.stream_size[0]

    @property
    def scale_y(self) -> float:
        return self.scaler_crop[3] / self.stream_size[1]

    def stream_point_to_sensor(self, x: float, y: float) -> tuple[float, float]:
        return (self.scaler_crop[0] + x * self.scale_x, self.scaler_crop[1] + y * self.scale_y)

    def sensor_point_to_stream(self, x: float, y: float) -> tuple[float, float]:
        return ((x - self.scaler_crop[0]) / self.scale_x, (y - self.scaler_crop[1]) / self.scale_y)

    def stream_rect_to_sensor(self, rect: CropRect) -> tuple[int, int, int, int]:
        """A stream rectangle -> the smallest sensor rectangle covering it, clipped to the ScalerCrop."""
        x0, y0 = self.stream_point_to_sensor(rect.x, rect.y)
        x1, y1 = self.stream_point_to_sensor(rect.x_end, rect.y_end)
        cx, cy, cw, ch = self.scaler_crop
        left = max(cx, math.floor(x0 + 1e-9))
        top = max(cy, math.floor(y0 + 1e-9))
        right = min(cx + cw, math.ceil(x1 - 1e-9))
        bottom = min(cy + ch, math.ceil(y1 - 1e-9))
        return (left, top, max(0, right - left), max(0, bottom - top))

    def sensor_rect_to_stream(self, roi: tuple[int, int, int, int]) -> CropRect | None:
        """A sensor rectangle -> stream pixels (nearest), clipped to the stream; None if outside."""
        x, y, w, h = roi
        x0, y0 = self.sensor_point_to_stream(x, y)
        x1, y1 = self.sensor_point_to_stream(x + w, y + h)
        width, height = self.stream_size
        left = min(max(0, round(x0)), width)
        top = min(max(0, round(y0)), height)
        right = min(max(0, round(x1)), width)
        bottom = min(max(0, round(y1)), height)
        if right <= left or bottom <= top:
            return None
        return CropRect(left, top, right - left, bottom - top)


def default_scaler_crop(
    stream_size: tuple[int, int], sensor_size: tuple[int, int] = IMX500_SENSOR_SIZE
) -> tuple[int, int, int, int]:
    """The largest centred sensor crop with the stream's aspect ratio (libcamera's default)."""
    sw, sh = sensor_size
    width, height = stream_size
    if sw * height > sh * width:  # sensor wider than the stream: crop the sides
        crop_w, crop_h = round(sh * width / height), sh
    else:
        crop_w, crop_h = sw, round(sw * height / width)
    crop_w -= crop_w % 2
    crop_h -= crop_h % 2
    return ((sw - crop_w) // 2, (sh - crop_h) // 2, crop_w, crop_h)
