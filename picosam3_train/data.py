"""Training and evaluation data: COCO/LVIS-format instance datasets -> 96x96 crops.

CPU is the scarce resource, so every image is decoded and every polygon/RLE is
rasterised exactly once, into an on-disk cache under ``.cache/`` that is
memory-mapped afterwards. Instances come from the one COCO reader
(``picosam3_ros.core.coco_dataset``: its usability rule, order and size), one image
and one mask at a time, and the crops are streamed to disk (``npy_append``), so a
full COCO/LVIS file is cached without holding its crops or masks in memory:

* training: for each instance a *context crop*, the square of side 2x the padded
  box square (the standard crop's square) around the box centre, stored at
  ``context_size`` pixels (image and mask). Any jittered crop of the instance is
  then a single ``cv2.warpAffine`` from the context crop.
* evaluation: the exact standard crop (``picosam3_ros.core.crop``) of image and mask.

The crop rectangle always comes from ``picosam3_ros.core.crop.crop_rect_for_box``:
the jittered box goes through the one crop rule (padding, square, clipping to the
image), and only the resampling reads the cached context instead of the JPEG.

Teacher caches (written by ``picosam3_train cache-teacher``, read through
``teachers.cache.load_cache``) are directories with ``soft_masks.npy`` (uint8
[N,96,96], probability*255 in the standard crop frame of ``crop_rect_for_box(annotation
bbox)``), ``ann_ids.npy`` (int64 [N]), ``scores.npy`` (float32 [N], 0..1) and
``meta.json``, or shards of such directories joined by a ``manifest.json``. A cache is
matched to a dataset by the annotation file named in its meta (key ``dataset``, or a
list under ``datasets``/``dataset_files``; entries compared by file name).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from picosam3_ros.core.coco_dataset import CocoDataset, SkipCounts
from picosam3_ros.core.crop import (
    CROP_RULE_VERSION,
    MODEL_INPUT_SIZE,
    PAD_FRACTION,
    InvalidRoiError,
    crop_and_resize,
    crop_rect_for_box,
)
from picosam3_ros.core.metrics import objects_in_crop
from picosam3_ros.core.postprocess import box_keep_map
from picosam3_train.npy_append import NpyAppender

CROP_SIZE = MODEL_INPUT_SIZE  # the network input, defined once in the crop rule
CACHE_VERSION = 5  # 5: image ids (crowding); 4: instances, order and areas from core.coco_dataset
CONTEXT_FACTOR = 2.0  # context side / padded-square side


@dataclass
class LoadStats:
    images: int = 0
    instances: int = 0
    crowd_skipped: int = 0
    degenerate_skipped: int = 0
    missing_images: int = 0  # annotations of images that could not be read

    @classmethod
    def from_skips(cls, images: int, instances: int, skipped: SkipCounts) -> "LoadStats":
        return cls(images, instances, skipped.crowd, skipped.degenerate_box + skipped.empty_mask,
                   skipped.missing_image)

    def summary(self, name: str) -> str:
        return (f"{name}: {self.instances} instances from {self.images} images; skipped "
                f"{self.degenerate_skipped} degenerate boxes or empty masks, {self.crowd_skipped} crowd, "
                f"{self.missing_images} of missing images")


def _cache_key(*parts: object) -> str:
    text = "|".join(str(p) for p in parts) + f"|v{CACHE_VERSION}|crop{CROP_RULE_VERSION}"
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def context_square(box_xywh) -> tuple[int, int, int]:
    """Integer (x0, y0, side) of the context square around a box, in image pixels."""
    x, y, w, h = (float(v) for v in box_xywh)
    side = max(w, h) * (1.0 + 2.0 * PAD_FRACTION) * CONTEXT_FACTOR
    x0 = math.floor(x + w / 2 - side / 2)
    y0 = math.floor(y + h / 2 - side / 2)
    return x0, y0, max(2, math.ceil(side))


def _cut_square(array: np.ndarray, x0: int, y0: int, side: int, border: int) -> np.ndarray:
    """array[y0:y0+side, x0:x0+side] with parts outside the image filled by ``border``."""
    h, w = array.shape[:2]
    out = np.empty((side, side) + array.shape[2:], dtype=array.dtype)
    out[...] = border
    sx0, sy0 = max(0, x0), max(0, y0)
    sx1, sy1 = min(w, x0 + side), min(h, y0 + side)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = array[sy0:sy1, sx0:sx1]
    return out


class InstanceStore:
    """Memory-mapped per-instance arrays of one dataset (see module docstring)."""

    ARRAYS = ("images", "masks", "boxes", "image_sizes", "context", "ann_ids", "areas", "image_ids")

    @classmethod
    def open_prebuilt(cls, directory: str | Path) -> "InstanceStore | None":
        """A store directory given directly as a dataset spec (e.g. carried to a GPU machine by
        ``tools/gpu_train/pack_stores.py``); None when ``directory`` is not one."""
        directory = Path(directory)
        if not (directory / "stats.json").is_file():
            return None
        source = directory / "source.json"
        name = json.loads(source.read_text())["name"] if source.is_file() else directory.name
        return cls(directory, name)

    def __init__(self, directory: Path, name: str):
        self.directory = directory
        self.name = name
        for key in self.ARRAYS:
            path = directory / f"{key}.npy"
            if key == "image_ids" and not path.is_file():  # a store packed before v5: no crowding
                self.image_ids = -1 - np.arange(len(self.ann_ids))
                continue
            setattr(self, key, np.load(path, mmap_mode="r"))
        self.stats = LoadStats(**json.loads((directory / "stats.json").read_text()))

    def __len__(self) -> int:
        return len(self.ann_ids)

    @classmethod
    def build(cls, annotation_file: Path, image_dir: Path, cache_root: Path, kind: str = "context",
              context_size: int = 192, limit: int = 0, quiet: bool = False) -> "InstanceStore":
        """Decode the dataset once into ``cache_root`` (reused when present).

        kind="context": context crops at ``context_size`` for training;
        kind="standard": the exact standard 96x96 crop for evaluation."""
        annotation_file, image_dir = Path(annotation_file), Path(image_dir)
        if not annotation_file.is_file():
            raise FileNotFoundError(f"annotation file not found: {annotation_file}")
        stat = annotation_file.stat()
        key = _cache_key(annotation_file.resolve(), image_dir.resolve(), stat.st_size, stat.st_mtime_ns,
                         kind, context_size, limit)
        directory = Path(cache_root) / f"{annotation_file.stem}_{kind}_{key}"
        if (directory / "stats.json").is_file():
            store = cls(directory, annotation_file.name)
            if not quiet:
                print(store.stats.summary(f"{annotation_file.name} (cached)"))
            return store

        dataset = CocoDataset(annotation_file, image_dir)
        skipped = SkipCounts()
        side_out = context_size if kind == "context" else CROP_SIZE
        boxes, sizes, contexts, ann_ids, areas, image_ids = [], [], [], [], [], []
        # A unique scratch name: several processes (ranks, nodes sharing the cache) may build at once.
        tmp = directory.with_name(f"{directory.name}.tmp-{socket.gethostname()}-{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        images = NpyAppender(tmp / "images.npy", (side_out, side_out, 3), np.uint8)
        masks = NpyAppender(tmp / "masks.npy", (side_out, side_out), np.uint8)

        def bar(ids: list[int]):
            return tqdm(ids, desc=f"decode {annotation_file.name}", disable=quiet, leave=False)

        for rgb, instance in dataset.instances(limit, skipped, progress=bar):
            box = list(instance.bbox)
            mask = instance.mask.view(np.uint8)
            image_size = (rgb.shape[1], rgb.shape[0])
            if kind == "context":
                x0, y0, side = context_square(box)
                img_sq = _cut_square(rgb, x0, y0, side, border=0)
                mask_sq = _cut_square(mask * 255, x0, y0, side, border=0)
                images.append(cv2.resize(img_sq, (side_out, side_out), interpolation=cv2.INTER_LINEAR)[None])
                # nearest, as the evaluation's ground truth (crop_and_resize with INTER_NEAREST)
                masks.append(cv2.resize(mask_sq, (side_out, side_out), interpolation=cv2.INTER_NEAREST)[None])
                contexts.append((x0, y0, side))
            else:
                rect = crop_rect_for_box(box, image_size)
                images.append(crop_and_resize(rgb, rect)[None])
                masks.append((crop_and_resize(mask, rect, interpolation=cv2.INTER_NEAREST) * 255)[None])
                contexts.append(rect.as_xywh())
            boxes.append(box)
            sizes.append(image_size)
            ann_ids.append(instance.annotation_id)
            areas.append(float(instance.area))
            image_ids.append(instance.image_id)
        images.close()
        masks.close()
        stats = LoadStats.from_skips(len(set(image_ids)), len(ann_ids), skipped)
        if not ann_ids:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ValueError(f"{annotation_file} yielded no usable instances ({stats})")
        arrays = {
            "boxes": np.asarray(boxes, np.float32),
            "image_sizes": np.asarray(sizes, np.int32),
            "context": np.asarray(contexts, np.int64),
            "ann_ids": np.asarray(ann_ids, np.int64),
            "areas": np.asarray(areas, np.float32),
            "image_ids": np.asarray(image_ids, np.int64),
        }
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array)
        (tmp / "stats.json").write_text(json.dumps(stats.__dict__))
        if directory.exists() and not (directory / "stats.json").is_file():
            shutil.rmtree(directory, ignore_errors=True)  # left half-made by an older version
        try:
            tmp.rename(directory)
        except OSError:  # another process finished the same store first: use that one
            shutil.rmtree(tmp, ignore_errors=True)
        store = cls(directory, annotation_file.name)
        if not quiet:
            print(stats.summary(annotation_file.name))
        return store


@dataclass
class TeacherEntry:
    soft_masks: np.ndarray  # uint8 [N,96,96]
    scores: np.ndarray  # float32 [N]
    index: dict[int, int]  # ann id -> row


def load_teacher_caches(directories: list[str | Path], dataset_files: list[Path]) -> dict[str, TeacherEntry]:
    """Map annotation file name -> teacher cache entry, from cache directories (sharded or not)."""
    from picosam3_train.teachers.cache import load_cache

    result: dict[str, TeacherEntry] = {}
    names = {Path(f).name for f in dataset_files}
    for directory in directories:
        cache = load_cache(directory)
        meta = cache.meta
        listed = meta.get("dataset") or meta.get("datasets") or meta.get("dataset_files") or []
        listed = [listed] if isinstance(listed, str) else list(listed)
        if isinstance(meta.get("dataset"), dict):  # {"annotations": ..., "images": ...}
            listed = [meta["dataset"].get("annotations", "")]
        matched = {Path(str(item)).name for item in listed} & names if listed else names
        entry = TeacherEntry(cache.soft_masks, cache.scores, {int(a): i for i, a in enumerate(cache.ann_ids)})
        for name in matched:
            result[name] = entry
    return result


def _index_affine(src_origin, src_scale, dst_origin, dst_scale) -> np.ndarray:
    """2x3 matrix mapping source pixel indices to destination pixel indices, where
    image coordinate u = origin + (index + 0.5) * scale in each frame (per axis)."""
    sx, sy = src_scale
    dx, dy = dst_scale
    ax, ay = sx / dx, sy / dy
    bx = (src_origin[0] - dst_origin[0]) / dx + 0.5 * ax - 0.5
    by = (src_origin[1] - dst_origin[1]) / dy + 0.5 * ay - 0.5
    return np.array([[ax, 0.0, bx], [0.0, ay, by]], dtype=np.float64)


class CropDataset:
    """Training samples: augmented 96x96 crops from one or more InstanceStores.

    Each item is a dict of float32 arrays: ``image`` (3,96,96) normalised,
    ``mask`` (1,96,96) ground truth 0/1, ``teacher`` (1,96,96) teacher probability,
    ``teacher_valid`` (1,96,96) 1 where the teacher covers the crop, the scalar
    ``teacher_score`` (0 when this instance has no teacher) and ``keep`` (1,96,96), 1 where
    the box-aware post-processing lets the mask be (see ``box_margin``)."""

    def __init__(self, stores: list[InstanceStore], mean, std, scale: float, augment: bool = True,
                 hflip_prob: float = 0.5, box_jitter: float = 0.08, scale_jitter: float = 0.15,
                 color_jitter: float = 0.25, teachers: dict[str, TeacherEntry] | None = None, seed: int = 0,
                 box_margin: float = -1.0, box_jitter_max: float = 0.0, lag_prob: float = 0.0,
                 box_lag: float = 0.15, crowd_oversample: float = 1.0):
        self.stores = stores
        self.offsets = np.cumsum([0] + [len(s) for s in stores])
        self.box_jitter_max = box_jitter_max
        self.lag_prob = lag_prob
        self.box_lag = box_lag
        self.crowding = np.concatenate([crowding_counts(s) for s in stores]) if stores else np.zeros(0, int)
        repeats = sample_repeats(self.crowding, crowd_oversample)
        self.samples = np.repeat(np.arange(int(self.offsets[-1])), repeats)
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.scale = float(scale)
        self.augment = augment
        self.hflip_prob = hflip_prob
        self.box_jitter = box_jitter
        self.scale_jitter = scale_jitter
        self.color_jitter = color_jitter
        self.teachers = teachers or {}
        self.box_margin = box_margin
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.samples)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def _locate(self, index: int) -> tuple[InstanceStore, int]:
        index = int(self.samples[index])
        k = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return self.stores[k], index - int(self.offsets[k])

    def jitter_box(self, box: np.ndarray, image_size) -> np.ndarray:
        """Imitate a detector: independent edge noise (a fixed level, or with ``box_jitter_max``
        one drawn per sample, so tight and loose boxes are both common), a global log-normal
        scale, and with ``lag_prob`` the whole box displaced as by an object that moved."""
        x, y, w, h = (float(v) for v in box)
        rng = self.rng
        level = rng.uniform(0.0, self.box_jitter_max) if self.box_jitter_max > 0 else self.box_jitter
        x0 = x + rng.normal(0, level) * w
        x1 = x + w + rng.normal(0, level) * w
        y0 = y + rng.normal(0, level) * h
        y1 = y + h + rng.normal(0, level) * h
        s = float(np.exp(np.clip(rng.normal(0, self.scale_jitter), -0.4, 0.4)))
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        if self.lag_prob > 0 and rng.random() < self.lag_prob:
            cx += rng.normal(0, self.box_lag) * w
            cy += rng.normal(0, self.box_lag) * h
        nw, nh = max(1.0, (x1 - x0) * s), max(1.0, (y1 - y0) * s)
        # Stay within the cached context (2x the padded square) so no pixel is invented.
        nw, nh = min(nw, 1.5 * max(w, h)), min(nh, 1.5 * max(w, h))
        cx = float(np.clip(cx, x + 0.25 * w - 0.1 * w, x + 0.75 * w + 0.1 * w))
        cy = float(np.clip(cy, y + 0.25 * h - 0.1 * h, y + 0.75 * h + 0.1 * h))
        return np.array([cx - nw / 2, cy - nh / 2, nw, nh], np.float32)

    def _colour(self, img: np.ndarray) -> np.ndarray:
        s = self.color_jitter
        rng = self.rng
        img = img * np.float32(1 + rng.uniform(-s, s))  # brightness
        mean = img.mean()
        img = (img - mean) * np.float32(1 + rng.uniform(-s, s)) + mean  # contrast
        grey = img.mean(axis=2, keepdims=True)
        img = (img - grey) * np.float32(1 + rng.uniform(-s, s)) + grey  # saturation
        return np.clip(img, 0, 255)

    def __getitem__(self, index: int) -> dict:
        store, i = self._locate(index)
        box = np.asarray(store.boxes[i])
        image_size = tuple(int(v) for v in store.image_sizes[i])
        standard = crop_rect_for_box(box, image_size)
        rect, prompt_box = standard, box
        if self.augment:
            try:
                jittered = self.jitter_box(box, image_size)
                rect, prompt_box = crop_rect_for_box(jittered, image_size), jittered
            except InvalidRoiError:
                rect = standard
        # Where the node's post-processing lets a mask be (all ones when box_margin < 0).
        keep = (box_keep_map(prompt_box, rect, self.box_margin, (CROP_SIZE, CROP_SIZE)).astype(np.float32)
                if self.box_margin >= 0 else np.ones((CROP_SIZE, CROP_SIZE), np.float32))
        x0, y0, side = (int(v) for v in store.context[i])
        ctx_scale = side / store.images.shape[1]
        to_crop = _index_affine((x0, y0), (ctx_scale, ctx_scale), (rect.x, rect.y),
                                (rect.width / CROP_SIZE, rect.height / CROP_SIZE))
        size = (CROP_SIZE, CROP_SIZE)
        img = cv2.warpAffine(np.asarray(store.images[i]), to_crop, size, flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
        gt = cv2.warpAffine(np.asarray(store.masks[i]), to_crop, size, flags=cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0) >= 128

        teacher = np.zeros(size, np.float32)
        valid = np.zeros(size, np.float32)
        score = 0.0
        entry = self.teachers.get(store.name)
        row = entry.index.get(int(store.ann_ids[i])) if entry is not None else None
        if row is not None:
            score = float(entry.scores[row])
            soft = np.asarray(entry.soft_masks[row], np.float32) / 255.0
            if rect == standard:
                teacher, valid = soft, np.ones(size, np.float32)
            else:
                std_to_crop = _index_affine(
                    (standard.x, standard.y), (standard.width / CROP_SIZE, standard.height / CROP_SIZE),
                    (rect.x, rect.y), (rect.width / CROP_SIZE, rect.height / CROP_SIZE))
                teacher = cv2.warpAffine(soft, std_to_crop, size, flags=cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                valid = cv2.warpAffine(np.ones(size, np.float32), std_to_crop, size,
                                       flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

        img = img.astype(np.float32)
        if self.augment:
            if self.rng.random() < self.hflip_prob:
                img, gt, teacher, valid = img[:, ::-1], gt[:, ::-1], teacher[:, ::-1], valid[:, ::-1]
                keep = keep[:, ::-1]
            if self.color_jitter > 0:
                img = self._colour(img)
        x = (img * np.float32(self.scale) - self.mean) / self.std
        return {
            "image": np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32),
            "mask": np.ascontiguousarray(gt[None], dtype=np.float32),
            "teacher": np.ascontiguousarray(teacher[None], dtype=np.float32),
            "teacher_valid": np.ascontiguousarray(valid[None], dtype=np.float32),
            "teacher_score": np.float32(score),
            "keep": np.ascontiguousarray(keep[None], dtype=np.float32),
        }


def sample_repeats(crowding: np.ndarray, oversample: float) -> np.ndarray:
    """Draws per epoch of each instance: crowded crops (other objects inside) more often, up to
    ``oversample`` times for 3 or more others (the authors' hardest group), 1 for none."""
    extra = (max(1.0, oversample) - 1.0) * np.minimum(np.asarray(crowding), 3) / 3.0
    return (1 + np.rint(extra)).astype(np.int64)


def crowding_counts(store: InstanceStore) -> np.ndarray:
    """Per instance: the other instances of its image inside its standard crop
    (``picosam3_ros.core.metrics.objects_in_crop``)."""
    counts = np.zeros(len(store), np.int64)
    image_ids = np.asarray(store.image_ids)
    boxes = np.asarray(store.boxes, np.float64)
    order = np.argsort(image_ids, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(image_ids[order]) != 0])
    for group in np.split(order, starts[1:]):
        group_boxes = boxes[group]
        size = tuple(int(v) for v in store.image_sizes[group[0]])
        for own, i in enumerate(group):
            try:
                rect = crop_rect_for_box(boxes[i], size)
            except InvalidRoiError:
                continue
            counts[i] = objects_in_crop(rect, group_boxes, own)
    return counts


def collate(samples: list[dict]) -> dict:
    import torch

    return {key: torch.from_numpy(np.stack([s[key] for s in samples])) for key in samples[0]}
