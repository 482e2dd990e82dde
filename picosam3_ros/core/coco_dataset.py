"""The one reader of COCO/LVIS-format instance annotations (ROS-free, no torch).

Every consumer -- training's crop store, evaluation, INT8 calibration, teacher
caching, ``coco_to_bag`` and the demo clip -- takes its instances from
``CocoDataset``, so all of them see the same instances. An instance is *usable* when
(``CocoDataset.image_instances``, the only place that decides):

* it is not a crowd annotation;
* its box is finite, at least 1x1 px, the crop rule (``crop_rect_for_box``) accepts
  it, and its whole-pixel prompt box (``integer_box``) is not empty;
* its decoded mask is not empty.

Everything else is counted in ``SkipCounts``. Size classes (``metrics.size_bucket``)
always come from ``Instance.area``, the pixel count of the decoded full-image mask:
the one size that bag evaluation (which only has decoded masks) can also compute.

Masks are decoded per instance, from polygons or RLE (pycocotools, imported only when
a mask is decoded), while one image is in memory: a full COCO/LVIS file is read
without holding every decoded mask. ``instances()`` walks image ids in ascending order
and each image's annotations by id (the order of training stores, evaluation sets and
teacher caches); ``shard_images`` splits that walk into contiguous, balanced parts.

``frames()`` serves whole evaluation frames (``coco_to_bag``, the clip). A video set (every
image carries ``davis_sequence`` and ``frame``, as DAVIS 2016 here) is served in sequence
order (``is_video``), each frame naming its sequence.

Prompt order, which is also the ground-truth encoding order (value k = k-th
prompt), is by decreasing mask area, so that where instances overlap the
smaller one (usually the one in front) keeps its pixels.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from picosam3_ros.core.crop import InvalidRoiError, crop_rect_for_box

# A mono8 ground-truth image can tell 255 instances apart.
MAX_INSTANCES_PER_FRAME = 255
# The image fields of a video set: its sequence and the frame's number in it (DAVIS 2016 here).
VIDEO_KEYS = ("davis_sequence", "frame")


class DatasetError(ValueError):
    """The dataset cannot be read; one line for the user."""


def read_rgb(path: Path | str) -> np.ndarray | None:
    """uint8 HxWx3 RGB image, or None when it cannot be read."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else np.ascontiguousarray(bgr[:, :, ::-1])


@dataclass
class SkipCounts:
    """Annotations that are not usable instances, by reason."""

    crowd: int = 0
    degenerate_box: int = 0  # non-finite, under 1 px, or rejected by the crop rule
    empty_mask: int = 0  # no segmentation, or it decodes to no pixel
    missing_image: int = 0  # annotations of an image that cannot be read

    def add(self, other: "SkipCounts") -> None:
        for key, value in other.as_dict().items():
            setattr(self, key, getattr(self, key) + value)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Instance:
    annotation_id: int
    category_id: int
    bbox: tuple[float, float, float, float]  # COCO float (x, y, w, h)
    box: tuple[int, int, int, int]  # integer prompt box (x, y, w, h) in image pixels
    mask: np.ndarray  # bool HxW
    image_id: int = 0

    @property
    def area(self) -> int:
        """Pixels of the full-image mask: the one size behind every size class."""
        return int(self.mask.sum())


@dataclass
class EvalFrame:
    image_id: int
    file_name: str
    image_rgb: np.ndarray  # uint8 HxWx3
    instances: list[Instance]
    sequence: str | None = None  # the video it belongs to (video sets), else None
    source_path: Path | None = None  # the image file the pixels were decoded from

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


def prompt_box(
    bbox, image_size: tuple[int, int]
) -> tuple[tuple[float, float, float, float], tuple[int, int, int, int]] | None:
    """(float box, whole-pixel box) of a usable annotation box in an image of (width, height), or None."""
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w < 1.0 or h < 1.0:
        return None
    try:
        crop_rect_for_box((x, y, w, h), image_size)
    except InvalidRoiError:
        return None
    box = integer_box((x, y, w, h), image_size[0], image_size[1])
    return None if box is None else ((x, y, w, h), box)


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
        self.images_by_id = {int(img["id"]): img for img in self.images}
        # Non-crowd annotations by image, sorted by id; crowd ones are only counted.
        self.annotations_by_image: dict[int, list[dict]] = {}
        self.crowd_by_image: dict[int, int] = {}
        for ann in annotations:
            image_id = int(ann["image_id"])
            if ann.get("iscrowd", 0):
                self.crowd_by_image[image_id] = self.crowd_by_image.get(image_id, 0) + 1
            else:
                self.annotations_by_image.setdefault(image_id, []).append(ann)
        for anns in self.annotations_by_image.values():
            anns.sort(key=lambda a: int(a["id"]))

    def image_ids_with_instances(self) -> list[int]:
        return [int(img["id"]) for img in self.images if int(img["id"]) in self.annotations_by_image]

    def image_info(self, image_id: int) -> dict:
        try:
            return self.images_by_id[int(image_id)]
        except KeyError:
            raise DatasetError(f"no image with id {image_id}") from None

    def annotated_image_ids(self) -> list[int]:
        """Ids of images with any annotation (crowd included, so that skips are counted), ascending."""
        ids = set(self.annotations_by_image) | set(self.crowd_by_image)
        return sorted(i for i in ids if i in self.images_by_id)

    @staticmethod
    def file_name(image_info: dict) -> str:
        return str(image_info.get("file_name") or Path(str(image_info.get("coco_url", ""))).name)

    def image_path(self, image_info: dict) -> Path:
        return self.image_dir / self.file_name(image_info)

    def image_instances(
        self,
        image_info: dict,
        image_rgb: np.ndarray,
        skipped: SkipCounts | None = None,
        annotation_ids: set[int] | None = None,
    ) -> Iterator[Instance]:
        """The usable instances of one image (see the module docstring), by annotation id;
        each mask is decoded when its instance is reached. ``annotation_ids``: only these."""
        skipped = skipped if skipped is not None else SkipCounts()
        image_id = int(image_info["id"])
        height, width = image_rgb.shape[:2]
        if annotation_ids is None:
            skipped.crowd += self.crowd_by_image.get(image_id, 0)
        for ann in self.annotations_by_image.get(image_id, []):
            if annotation_ids is not None and int(ann["id"]) not in annotation_ids:
                continue
            boxes = prompt_box(ann.get("bbox"), (width, height))
            if boxes is None:
                skipped.degenerate_box += 1
                continue
            segmentation = ann.get("segmentation")
            mask = decode_segmentation(segmentation, height, width) if segmentation else None
            if mask is None or mask.shape != (height, width) or not mask.any():
                skipped.empty_mask += 1
                continue
            yield Instance(int(ann["id"]), int(ann.get("category_id", 0)), boxes[0], boxes[1], mask, image_id)

    def instances(
        self,
        limit: int = 0,
        skipped: SkipCounts | None = None,
        image_ids: Iterable[int] | None = None,
        annotation_ids: set[int] | None = None,
        progress: Callable[[list[int]], Iterable[int]] | None = None,
    ) -> Iterator[tuple[np.ndarray, Instance]]:
        """(image RGB, instance) for every usable instance, image ids ascending, annotations by id.

        ``limit`` > 0: the first ``limit`` only. ``image_ids``: walk these images (e.g. one
        shard) instead of all. ``annotation_ids``: only these annotations. Unusable ones are
        counted in ``skipped``. ``progress`` may wrap the list of image ids (a progress bar)."""
        skipped = skipped if skipped is not None else SkipCounts()
        ids = self.annotated_image_ids() if image_ids is None else [int(i) for i in image_ids]
        count = 0
        for image_id in progress(ids) if progress else ids:
            if limit and count >= limit:
                return
            anns = self.annotations_by_image.get(image_id, [])
            if annotation_ids is not None and not any(int(a["id"]) in annotation_ids for a in anns):
                continue
            info = self.image_info(image_id)
            rgb = read_rgb(self.image_path(info))
            if rgb is None:
                if annotation_ids is None:
                    skipped.missing_image += len(anns) + self.crowd_by_image.get(image_id, 0)
                else:
                    skipped.missing_image += sum(int(a["id"]) in annotation_ids for a in anns)
                continue
            for instance in self.image_instances(info, rgb, skipped, annotation_ids):
                yield rgb, instance
                count += 1
                if limit and count >= limit:
                    return

    def image_groups(
        self,
        limit: int = 0,
        skipped: SkipCounts | None = None,
        image_ids: Iterable[int] | None = None,
        progress: Callable[[list[int]], Iterable[int]] | None = None,
    ) -> Iterator[tuple[int, np.ndarray, list[Instance]]]:
        """``instances()`` grouped by image: (image id, RGB, its usable instances), for
        consumers that work image by image (evaluation on whole frames, teacher caching)."""
        current: tuple[int, np.ndarray, list[Instance]] | None = None
        for rgb, instance in self.instances(limit, skipped, image_ids, progress=progress):
            if current is not None and current[0] != instance.image_id:
                yield current
                current = None
            if current is None:
                current = (instance.image_id, rgb, [])
            current[2].append(instance)
        if current is not None:
            yield current

    def shard_images(self, shard: int, num_shards: int) -> list[int]:
        """Shard ``shard`` of ``num_shards`` of ``annotated_image_ids()``: contiguous runs of images
        with about equal numbers of annotations, so the shards in order walk exactly what one
        process walks."""
        if not 0 <= shard < num_shards:
            raise ValueError(f"shard {shard} is not in 0..{num_shards - 1}")
        ids = self.annotated_image_ids()
        weights = np.array(
            [len(self.annotations_by_image.get(i, [])) + self.crowd_by_image.get(i, 0) for i in ids], np.int64
        )
        ends = np.cumsum(weights)
        total = int(ends[-1]) if len(ends) else 0
        # image k belongs to the shard whose share of the annotations its last one falls in
        owner = np.minimum((ends - 1) * num_shards // max(total, 1), num_shards - 1) if total else ends
        return [i for i, o in zip(ids, owner) if int(o) == shard]

    def load_frame(self, image_info: dict, max_instances: int = MAX_INSTANCES_PER_FRAME) -> EvalFrame:
        path = self.image_path(image_info)
        rgb = read_rgb(path)
        if rgb is None:
            raise DatasetError(f"cannot read image {path}")
        height, width = rgb.shape[:2]
        if (int(image_info.get("height", height)), int(image_info.get("width", width))) != (height, width):
            raise DatasetError(
                f"{path} is {width}x{height}, the JSON says {image_info['width']}x{image_info['height']}"
            )
        instances = list(self.image_instances(image_info, rgb))
        # Larger first, so smaller (usually occluding) instances win overlapping pixels.
        instances.sort(key=lambda inst: (-inst.area, inst.annotation_id))
        sequence = image_info.get(VIDEO_KEYS[0])
        return EvalFrame(int(image_info["id"]), self.file_name(image_info), rgb, instances[:max_instances],
                         None if sequence is None else str(sequence), path)

    def is_video(self) -> bool:
        """True for a video set: every image with instances names its sequence and frame number."""
        images = [i for i in self.images if int(i["id"]) in self.annotations_by_image]
        return bool(images) and all(all(key in i for key in VIDEO_KEYS) for i in images)

    def frames(
        self, max_images: int | None = None, max_instances: int = MAX_INSTANCES_PER_FRAME
    ) -> Iterator[EvalFrame]:
        """Frames of the images that have instances: in the JSON's order, or for a video set
        (:meth:`is_video`) sequence by sequence, each in frame order."""
        count = 0
        images = self.images
        if self.is_video():
            images = sorted(images, key=lambda i: (str(i[VIDEO_KEYS[0]]), int(i[VIDEO_KEYS[1]])))
        for info in images:
            if int(info["id"]) not in self.annotations_by_image:
                continue
            if max_images is not None and count >= max_images:
                return
            frame = self.load_frame(info, max_instances)
            if frame.instances:
                count += 1
                yield frame
