"""COCO/LVIS-format instance annotations as evaluation frames (ROS-free).

One ``EvalFrame`` per image: the RGB image, its non-crowd instances as integer
box prompts (ids = annotation ids) and their full-image masks. Shared by
``coco_to_bag`` (which streams them into a bag) and the demo clip.

Prompt order, which is also the ground-truth encoding order (value k = k-th
prompt), is by decreasing mask area, so that where instances overlap the
smaller one (usually the one in front) keeps its pixels.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from picosam3_ros.core.crop import InvalidRoiError, crop_rect_for_box

# A mono8 ground-truth image can tell 255 instances apart.
MAX_INSTANCES_PER_FRAME = 255


class DatasetError(ValueError):
    """The dataset cannot be read; one line for the user."""


@dataclass
class Instance:
    annotation_id: int
    category_id: int
    bbox: tuple[float, float, float, float]  # COCO float (x, y, w, h)
    box: tuple[int, int, int, int]  # integer prompt box (x, y, w, h) in image pixels
    mask: np.ndarray  # bool HxW

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass
class EvalFrame:
    image_id: int
    file_name: str
    image_rgb: np.ndarray  # uint8 HxWx3
    instances: list[Instance]

    def ground_truth(self) -> np.ndarray:
        """mono8 HxW: 0 background, k = the k-th instance (1-based); later instances win."""
        gt = np.zeros(self.image_rgb.shape[:2], dtype=np.uint8)
        for k, instance in enumerate(self.instances, start=1):
            gt[instance.mask] = k
        return gt


def integer_box(
    bbox: tuple[float, float, float, float], width: int, height: int
) -> tuple[int, int, int, int] | None:
    """Round a COCO float box to the nearest integer pixel box inside the image (None if empty).

    Rounding each edge to the nearest pixel keeps the box centre and size within
    half a pixel of the float box, so the crop matches the float-box crop closely.
    """
    x, y, w, h = bbox
    x0 = min(max(int(math.floor(x + 0.5)), 0), width)
    y0 = min(max(int(math.floor(y + 0.5)), 0), height)
    x1 = min(max(int(math.floor(x + w + 0.5)), 0), width)
    y1 = min(max(int(math.floor(y + h + 0.5)), 0), height)
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def decode_segmentation(segmentation, height: int, width: int) -> np.ndarray:
    """bool HxW mask from a COCO polygon list, uncompressed RLE or compressed RLE."""
    try:
        from pycocotools import mask as mask_utils
    except ImportError as exc:  # pragma: no cover - pycocotools is in requirements/runtime.txt
        raise DatasetError("pycocotools is needed to decode COCO masks: pip install pycocotools") from exc
    if isinstance(segmentation, list):
        rles = mask_utils.frPyObjects(segmentation, height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation, dict):
        rle = dict(segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    else:
        raise DatasetError(f"unsupported segmentation format: {type(segmentation).__name__}")
    return mask_utils.decode(rle).astype(bool)


class CocoDataset:
    """Index of a COCO/LVIS-format JSON: images and their non-crowd instance annotations."""

    def __init__(self, annotation_file: Path | str, image_dir: Path | str):
        self.annotation_file = Path(annotation_file)
        self.image_dir = Path(image_dir)
        if not self.annotation_file.is_file():
            raise DatasetError(f"no annotation file at {self.annotation_file}")
        if not self.image_dir.is_dir():
            raise DatasetError(f"no image directory at {self.image_dir}")
        try:
            data = json.loads(self.annotation_file.read_text())
            self.images = list(data["images"])
            annotations = list(data["annotations"])
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{self.annotation_file} is not a COCO-format JSON: {exc}") from None
        self.licenses = {int(lic["id"]): lic for lic in data.get("licenses", []) if "id" in lic}
        self.annotations_by_image: dict[int, list[dict]] = {}
        for ann in annotations:
            if ann.get("iscrowd", 0) or "segmentation" not in ann or "bbox" not in ann:
                continue
            self.annotations_by_image.setdefault(int(ann["image_id"]), []).append(ann)

    def image_ids_with_instances(self) -> list[int]:
        return [int(img["id"]) for img in self.images if int(img["id"]) in self.annotations_by_image]

    def image_info(self, image_id: int) -> dict:
        for img in self.images:
            if int(img["id"]) == image_id:
                return img
        raise DatasetError(f"no image with id {image_id}")

    def load_frame(self, image_info: dict, max_instances: int = MAX_INSTANCES_PER_FRAME) -> EvalFrame:
        file_name = str(image_info.get("file_name") or Path(str(image_info.get("coco_url", ""))).name)
        path = self.image_dir / file_name
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"cannot read image {path}")
        height, width = bgr.shape[:2]
        if (int(image_info.get("height", height)), int(image_info.get("width", width))) != (height, width):
            raise DatasetError(
                f"{path} is {width}x{height}, the JSON says {image_info['width']}x{image_info['height']}"
            )
        instances = []
        for ann in self.annotations_by_image.get(int(image_info["id"]), []):
            # The instances picosam3_train evaluates: a finite box of at least 1x1 px
            # whose crop the crop rule accepts, and a non-empty mask.
            bbox = tuple(float(v) for v in ann["bbox"])
            if not all(math.isfinite(v) for v in bbox) or bbox[2] < 1.0 or bbox[3] < 1.0:
                continue
            box = integer_box(bbox, width, height)
            if box is None:
                continue
            try:
                crop_rect_for_box(box, (width, height))
            except InvalidRoiError:
                continue
            mask = decode_segmentation(ann["segmentation"], height, width)
            if mask.shape != (height, width) or not mask.any():
                continue
            instances.append(
                Instance(
                    int(ann["id"]),
                    int(ann.get("category_id", 0)),
                    tuple(float(v) for v in ann["bbox"]),
                    box,
                    mask,
                )
            )
        # Larger first, so smaller (usually occluding) instances win overlapping pixels.
        instances.sort(key=lambda inst: (-inst.area, inst.annotation_id))
        return EvalFrame(
            int(image_info["id"]), file_name, np.ascontiguousarray(bgr[:, :, ::-1]), instances[:max_instances]
        )

    def frames(
        self, max_images: int | None = None, max_instances: int = MAX_INSTANCES_PER_FRAME
    ) -> Iterator[EvalFrame]:
        """Frames of the images that have instances, in the JSON's order."""
        count = 0
        for info in self.images:
            if int(info["id"]) not in self.annotations_by_image:
                continue
            if max_images is not None and count >= max_images:
                return
            frame = self.load_frame(info, max_instances)
            if frame.instances:
                count += 1
                yield frame
