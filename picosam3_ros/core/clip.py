"""The demo clip: a few dozen real, annotated images shipped in ``picosam3_ros/demo/demo_clip`` (ROS-free).

The clip is a small COCO-format dataset (``annotations.json`` + JPEGs, all
640x480) with its attribution in ``ATTRIBUTION.md``. The demo plays it through
the emulated IMX500, each image held for several frames; the prompt publisher
(standing in for a detector) and the demo's scorer recognise which clip image a
received frame shows by comparing small grey thumbnails, and scale the clip's
boxes and masks to the stream size (the emulated ISP stretches without keeping
aspect, so each axis scales on its own).

``python -m picosam3_ros.demo.build_clip ANNOTATIONS IMAGE_DIR OUT_DIR`` rebuilds the
clip from COCO val2017 (how the committed one was made; needs pycocotools).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from picosam3_ros.core.coco_dataset import CocoDataset, Instance

DEFAULT_CLIP_DIR = Path(__file__).resolve().parents[1] / "demo" / "demo_clip"
ANNOTATIONS_NAME = "annotations.json"
CLIP_SIZE = (640, 480)
THUMB_SIZE = (32, 24)


@dataclass
class ClipImage:
    index: int
    image_id: int
    file_name: str
    image_rgb: np.ndarray  # CLIP_SIZE
    instances: list[Instance]  # largest first (the ground-truth encoding order)
    thumbnail: np.ndarray

    def prompts(self, frame_size: tuple[int, int]) -> list[tuple[int, tuple[int, int, int, int]]]:
        """(annotation id, box) in pixels of a frame of ``frame_size`` (width, height)."""
        sx = frame_size[0] / self.image_rgb.shape[1]
        sy = frame_size[1] / self.image_rgb.shape[0]
        out = []
        for inst in self.instances:
            x, y, w, h = inst.box
            x0, y0 = int(round(x * sx)), int(round(y * sy))
            x1, y1 = int(round((x + w) * sx)), int(round((y + h) * sy))
            out.append((inst.annotation_id, (x0, y0, max(1, x1 - x0), max(1, y1 - y0))))
        return out

    def ground_truth(self, frame_size: tuple[int, int]) -> np.ndarray:
        """mono8 label image at ``frame_size``: k = the k-th prompt (1-based), later ones win."""
        gt = np.zeros(self.image_rgb.shape[:2], np.uint8)
        for k, inst in enumerate(self.instances, start=1):
            gt[inst.mask] = k
        if (gt.shape[1], gt.shape[0]) != tuple(frame_size):
            gt = cv2.resize(gt, tuple(frame_size), interpolation=cv2.INTER_NEAREST)
        return gt


def thumbnail(image_rgb: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, THUMB_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)


class Clip:
    """The clip's images and instances, and recognition of a frame that shows one of them."""

    def __init__(self, directory: Path | str = DEFAULT_CLIP_DIR, max_images: int | None = None):
        self.directory = Path(directory)
        dataset = CocoDataset(self.directory / ANNOTATIONS_NAME, self.directory)
        self.images: list[ClipImage] = []
        for frame in dataset.frames(max_images):
            self.images.append(
                ClipImage(
                    len(self.images),
                    frame.image_id,
                    frame.file_name,
                    frame.image_rgb,
                    frame.instances,
                    thumbnail(frame.image_rgb),
                )
            )
        if not self.images:
            raise ValueError(f"the clip in {self.directory} has no annotated images")
        self._thumbs = np.stack([img.thumbnail for img in self.images])

    def __len__(self) -> int:
        return len(self.images)

    def match(self, frame_rgb: np.ndarray) -> tuple[int, float]:
        """(index of the clip image the frame shows, mean absolute grey difference of the thumbnails)."""
        diff = np.abs(self._thumbs - thumbnail(frame_rgb)[None]).mean(axis=(1, 2))
        index = int(np.argmin(diff))
        return index, float(diff[index])
