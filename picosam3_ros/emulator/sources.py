"""Frame sources for the emulated camera: frames, an image folder, a video, a rosbag, or a synthetic scene.

Every source yields uint8 RGB (H, W, 3) frames by index; ``len(source)`` is the
number of frames (None for an endless synthetic scene). The image stands for
what the main stream shows (``sensor.scene_placement``): give frames of the stream's
aspect ratio to see them unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")
BAG_SUFFIXES = (".mcap", ".db3")


class SourceError(RuntimeError):
    """The frame source cannot be opened or read."""


class FrameSource:
    def __len__(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (0 <= index < len) as uint8 RGB."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class ListSource(FrameSource):
    """Frames given as arrays (RGB uint8)."""

    def __init__(self, frames: Sequence[np.ndarray]):
        if len(frames) == 0:
            raise SourceError("the frame list is empty")
        self._frames = [np.ascontiguousarray(f, dtype=np.uint8) for f in frames]
        for f in self._frames:
            if f.ndim != 3 or f.shape[2] != 3:
                raise SourceError(f"frames must be (H, W, 3) RGB, got {f.shape}")

    def __len__(self) -> int:
        return len(self._frames)

    def frame(self, index: int) -> np.ndarray:
        return self._frames[index]


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SourceError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class FolderSource(FrameSource):
    """Images of a folder (or one image file), in name order, read on demand (last one cached)."""

    def __init__(self, path: Path):
        if path.is_file():
            self._paths = [path]
        else:
            self._paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._paths:
            raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {path}")
        self._cache: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self._paths)

    def frame(self, index: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != index:
            self._cache = (index, _read_rgb(self._paths[index]))
        return self._cache[1]


class VideoSource(FrameSource):
    """A video file read sequentially with OpenCV (seeking backwards reopens it)."""

    def __init__(self, path: Path):
        self._path = path
        self._open()
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if count <= 0:
            count = self._count_frames()
            self._open()
        self._count = count

    def _open(self) -> None:
        self._capture = cv2.VideoCapture(str(self._path))
        if not self._capture.isOpened():
            raise SourceError(f"cannot open video {self._path}")
        self._next = 0
        self._last: tuple[int, np.ndarray] | None = None

    def _count_frames(self) -> int:
        count = 0
        while self._capture.grab():
            count += 1
        if count == 0:
            raise SourceError(f"video {self._path} has no frames")
        return count

    def __len__(self) -> int:
        return self._count

    def frame(self, index: int) -> np.ndarray:
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        if index < self._next:
            self._capture.release()
            self._open()
        while self._next < index:
            self._capture.grab()
            self._next += 1
        ok, bgr = self._capture.read()
        self._next += 1
        if not ok:
            raise SourceError(f"cannot read frame {index} of {self._path}")
        self._last = (index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        return self._last[1]

    def close(self) -> None:
        self._capture.release()


class BagSource(FrameSource):
    """sensor_msgs/Image frames of one topic of a rosbag2 (mcap or sqlite3), loaded into memory."""

    def __init__(self, path: Path, topic: str = ""):
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        from picosam3_ros.core.image_conversion import image_to_rgb

        bag_dir = path if path.is_dir() else path.parent
        frames: list[np.ndarray] = []
        try:
            with AnyReader([bag_dir], default_typestore=get_typestore(Stores.LATEST)) as reader:
                connections = [
                    c
                    for c in reader.connections
                    if c.msgtype == "sensor_msgs/msg/Image" and (not topic or c.topic == topic)
                ]
                if not connections:
                    raise SourceError(f"bag {bag_dir} has no sensor_msgs/Image topic {topic!r}")
                chosen = [c for c in connections if c.topic == connections[0].topic]
                for connection, _, raw in reader.messages(connections=chosen):
                    frames.append(image_to_rgb(reader.deserialize(raw, connection.msgtype)))
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(f"cannot read bag {bag_dir}: {exc}") from exc
        if not frames:
            raise SourceError(f"bag {bag_dir} has no image messages")
        self._frames = frames

    def __len__(self) -> int:
        return len(self._frames)

    def frame(self, index: int) -> np.ndarray:
        return self._frames[index]


class SyntheticSource(FrameSource):
    """A deterministic scene: a textured background with a few moving shapes (no files needed)."""

    def __init__(self, size: tuple[int, int] = (1014, 760), frames: int = 300):
        self._size = size
        self._frames = frames
        width, height = size
        yy, xx = np.mgrid[0:height, 0:width]
        base = np.stack([(xx * 255 // width), (yy * 255 // height), ((xx + yy) % 64) * 2], axis=-1)
        self._background = (base * 0.5 + 40).astype(np.uint8)

    def __len__(self) -> int:
        return self._frames

    def frame(self, index: int) -> np.ndarray:
        width, height = self._size
        image = self._background.copy()
        t = index / max(1, self._frames)
        centre = (int(width * (0.3 + 0.2 * np.sin(2 * np.pi * t))), int(height * 0.45))
        cv2.circle(image, centre, height // 7, (230, 60, 40), -1)
        x0 = int(width * (0.6 + 0.1 * np.cos(2 * np.pi * t)))
        cv2.rectangle(
            image, (x0, height // 2), (x0 + width // 6, height // 2 + height // 4), (40, 200, 90), -1
        )
        return image


def open_source(spec: object) -> FrameSource:
    """A FrameSource from a spec: a FrameSource, a list of arrays, '' (synthetic), or a path."""
    if isinstance(spec, FrameSource):
        return spec
    if isinstance(spec, (list, tuple)):
        return ListSource(spec)
    if spec is None or spec == "":
        return SyntheticSource()
    path = Path(str(spec)).expanduser()
    if not path.exists():
        raise SourceError(f"emulator source {path} does not exist")
    if path.is_dir():
        if (path / "metadata.yaml").exists() or any(p.suffix in BAG_SUFFIXES for p in path.iterdir()):
            return BagSource(path)
        return FolderSource(path)
    if path.suffix.lower() in BAG_SUFFIXES:
        return BagSource(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return FolderSource(path)
    return VideoSource(path)
