"""Emulated ``picamera2.devices``."""

from .imx500 import IMX500

__all__ = ["IMX500"]
