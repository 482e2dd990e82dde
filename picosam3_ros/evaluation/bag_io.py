"""Reading and writing rosbag2 recordings without ROS (the ``rosbags`` package).

rosbag2_py is not available everywhere (not on these machines, not on a plain
Python install), so evaluation bags are read and written with ``rosbags``, whose
CDR bytes are the same as rclpy's serializer. The ``picosam3_msgs`` types are
registered in the typestore from their ``.msg`` files.

Everything that can go wrong with a user's bag (missing, truncated, unknown
topic, unsupported type or encoding) raises :class:`BagError` with a one-line
message that the command-line tools print instead of a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

ROI_TYPE = "sensor_msgs/msg/RegionOfInterest"
PROMPT_ARRAY_TYPE = "picosam3_msgs/msg/RoiPromptArray"
PROMPT_TYPE = "picosam3_msgs/msg/RoiPrompt"
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
# What a frame topic may hold: the node's inputs (every Image encoding of core/image_conversion.py,
# and CompressedImage jpeg/png).
FRAME_TYPES = (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE)
SEGMENTATION_ARRAY_TYPE = "picosam3_msgs/msg/SegmentationArray"
PICOSAM3_MSG_NAMES = ("RoiPrompt", "RoiPromptArray", "Segmentation", "SegmentationArray")
STORAGE_FORMATS = ("mcap", "sqlite3")
# Frames are read by the node's own conversion (frame_to_rgb), label images by its own reader
# (label_array): bag evaluation has no image decoder of its own.


class BagError(RuntimeError):
    """A bag cannot be used; the message is one line meant for the user."""


# --------------------------------------------------------------------------- typestore


def _msg_dir_candidates() -> list[Path]:
    """Where the picosam3_msgs ``.msg`` files may be: installed share dirs, then the source tree."""
    candidates = []
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / "picosam3_msgs" / "msg")
    candidates.append(Path(__file__).resolve().parents[2] / "picosam3_msgs" / "msg")
    return candidates


def find_msg_dir() -> Path:
    for directory in _msg_dir_candidates():
        if all((directory / f"{name}.msg").is_file() for name in PICOSAM3_MSG_NAMES):
            return directory
    raise BagError(
        "cannot find the picosam3_msgs .msg files: source the workspace (install/setup.bash) "
        "or run from the source tree"
    )


_TYPESTORE = None


def typestore():
    """The ROS 2 Kilted typestore with the picosam3_msgs types registered (built once)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore

        store = get_typestore(Stores.ROS2_KILTED)
        msg_dir = find_msg_dir()
        types = {}
        for name in PICOSAM3_MSG_NAMES:
            types.update(
                get_types_from_msg((msg_dir / f"{name}.msg").read_text(), f"picosam3_msgs/msg/{name}")
            )
        store.register(types)
        _TYPESTORE = store
    return _TYPESTORE


def msg_class(msgtype: str):
    return typestore().types[msgtype]


# --------------------------------------------------------------------------- message helpers


def make_header(stamp_ns: int, frame_id: str = "camera"):
    store = typestore()
    Time = store.types["builtin_interfaces/msg/Time"]
    Header = store.types["std_msgs/msg/Header"]
    return Header(
        stamp=Time(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000)),
        frame_id=frame_id,
    )


def stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def make_image(array: np.ndarray, encoding: str, stamp: int, frame_id: str = "camera"):
    """A ``sensor_msgs/Image`` (rosbags class) from a uint8 HxW or HxWxC array."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    channels = 1 if array.ndim == 2 else array.shape[2]
    Image = msg_class(IMAGE_TYPE)
    return Image(
        header=make_header(stamp, frame_id),
        height=array.shape[0],
        width=array.shape[1],
        encoding=encoding,
        is_bigendian=0,
        step=array.shape[1] * channels,
        data=array.reshape(-1),
    )


def label_array(msg) -> np.ndarray:
    """A mono8 label image (ground truth, a recorded ``Segmentation.mask``) as (H, W) uint8, read by
    the node's own reader (``core/image_conversion.image_array``); BagError when it is not mono8 or
    its data does not match its size."""
    from picosam3_ros.core.image_conversion import ImageConversionError, image_array

    if str(msg.encoding) != "mono8":
        raise BagError(f"label images are mono8, got encoding '{msg.encoding}'")
    try:
        return np.asarray(image_array(msg))
    except ImageConversionError as exc:
        raise BagError(str(exc)) from None


def frame_to_rgb(msg) -> np.ndarray:
    """An RGB uint8 HxWx3 array from a frame, converted as the node converts it: an ``Image`` of
    any encoding of core/image_conversion.py, or a ``CompressedImage`` (jpeg/png)."""
    from picosam3_ros.core.image_conversion import ImageConversionError, compressed_to_rgb, image_to_rgb

    try:
        return compressed_to_rgb(msg) if hasattr(msg, "format") else image_to_rgb(msg)
    except ImageConversionError as exc:
        raise BagError(str(exc)) from None


def make_frame(rgb: np.ndarray, encoding: str, stamp: int, frame_id: str = "camera"):
    """A frame message from RGB pixels: a ``CompressedImage`` for "jpeg"/"png", else an ``Image``
    in ``encoding`` (any the node reads, written by core/image_conversion.rgb_to_encoding)."""
    from picosam3_ros.core.image_conversion import ImageConversionError, rgb_to_encoding

    if encoding in ("jpeg", "png"):
        return make_compressed_image(rgb, encoding, stamp, frame_id)
    try:
        rows = rgb_to_encoding(rgb, encoding)
    except ImageConversionError as exc:
        raise BagError(str(exc)) from None
    Image = msg_class(IMAGE_TYPE)
    return Image(header=make_header(stamp, frame_id), height=rows.shape[0], width=rgb.shape[1],
                 encoding=encoding, is_bigendian=0, step=rows.shape[1], data=rows.reshape(-1))


def make_compressed_image(array: np.ndarray, fmt: str, stamp: int, frame_id: str = "camera"):
    """A ``sensor_msgs/CompressedImage`` (rosbags class), jpeg or png, from an RGB uint8 array."""
    from picosam3_ros.core.image_conversion import encode_compressed

    CompressedImage = msg_class(COMPRESSED_IMAGE_TYPE)
    data = np.frombuffer(encode_compressed(array, fmt), np.uint8)
    return CompressedImage(header=make_header(stamp, frame_id), format=fmt, data=data)


def make_compressed_from_bytes(data: bytes, fmt: str, stamp: int, frame_id: str = "camera"):
    """A ``sensor_msgs/CompressedImage`` carrying already encoded bytes (e.g. a JPEG file as it is)."""
    CompressedImage = msg_class(COMPRESSED_IMAGE_TYPE)
    data = np.frombuffer(data, np.uint8)
    return CompressedImage(header=make_header(stamp, frame_id), format=fmt, data=data)


def make_roi(box_xywh: Sequence[int]):
    RegionOfInterest = msg_class(ROI_TYPE)
    x, y, w, h = (int(v) for v in box_xywh)
    return RegionOfInterest(x_offset=x, y_offset=y, height=h, width=w, do_rectify=False)


def make_prompt_array(prompts: Sequence[tuple], stamp: int, frame_id: str = "camera"):
    """A ``RoiPromptArray`` from (id, (x, y, w, h)) or (id, box, follow) tuples, in that order."""
    RoiPrompt = msg_class(PROMPT_TYPE)
    RoiPromptArray = msg_class(PROMPT_ARRAY_TYPE)
    header = make_header(stamp, frame_id)
    return RoiPromptArray(
        header=header,
        prompts=[
            RoiPrompt(header=header, id=int(p[0]), roi=make_roi(p[1]), follow=int(p[2]) if len(p) > 2 else 0)
            for p in prompts
        ],
    )


@dataclass(frozen=True)
class BagPrompt:
    """One prompt read from a bag: caller id, box (x, y, width, height) in frame pixels, and its
    RoiPrompt.follow (0 = the node's choice)."""

    id: int
    box: tuple[int, int, int, int]
    follow: int = 0


def prompts_from_msg(msg, msgtype: str) -> list[BagPrompt]:
    """The prompt set a ``RegionOfInterest`` (id 0) or ``RoiPromptArray`` message stands for."""

    def box(roi) -> tuple[int, int, int, int]:
        return (int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height))

    if msgtype == ROI_TYPE:
        return [BagPrompt(0, box(msg))]
    if msgtype == PROMPT_ARRAY_TYPE:
        return [BagPrompt(int(p.id), box(p.roi), int(getattr(p, "follow", 0))) for p in msg.prompts]
    raise BagError(f"unsupported prompt type {msgtype} (use {ROI_TYPE} or {PROMPT_ARRAY_TYPE})")


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    log_time_ns: int
    msg: Any


class BagReader:
    """A rosbag2 directory opened for reading; use as a context manager.

    Errors from ``rosbags`` (and from a damaged file underneath it) become BagError.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"no bag at {self.path}")
        if self.path.is_file():
            # Users often pass the .mcap/.db3 file; rosbag2 bags are the directory. A bare .mcap
            # (a recorder's file without its metadata.yaml) holds its own index: read it as is.
            if (self.path.parent / "metadata.yaml").is_file():
                self.path = self.path.parent
            elif self.path.suffix != ".mcap":
                raise BagError(f"{self.path} is not a rosbag2 directory (no metadata.yaml beside it)")
        elif not (self.path / "metadata.yaml").is_file():
            raise BagError(f"{self.path} is not a rosbag2 directory (no metadata.yaml)")
        from rosbags.rosbag2 import Reader

        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except Exception as exc:  # rosbags raises several types for damaged bags
            raise BagError(
                f"cannot open bag {self.path}, it is damaged or truncated: {_one_line(exc)}"
            ) from None
        self._store = typestore()

    def close(self) -> None:
        try:
            self._reader.close()
        except Exception:  # closing a damaged bag must not hide the first error
            pass

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def topics(self) -> dict[str, str]:
        """topic -> message type, e.g. {'/image': 'sensor_msgs/msg/Image'}."""
        return {c.topic: c.msgtype for c in self._reader.connections}

    def message_count(self, topic: str) -> int:
        return sum(c.msgcount for c in self._reader.connections if c.topic == topic)

    def resolve_topic(self, topic: str, allowed_types: Sequence[str], role: str) -> str:
        """The bag's name for ``topic`` (a leading '/' is optional), checked against the allowed types."""
        topics = self.topics()
        name = (
            topic
            if topic in topics
            else ("/" + topic.lstrip("/") if "/" + topic.lstrip("/") in topics else None)
        )
        if name is None:
            listing = ", ".join(f"{t} ({m})" for t, m in sorted(topics.items())) or "none"
            raise BagError(f"{role} topic '{topic}' is not in the bag; topics: {listing}")
        if topics[name] not in allowed_types:
            raise BagError(
                f"{role} topic '{name}' has type {topics[name]}; supported: {', '.join(allowed_types)}"
            )
        return name

    def messages(self, topics: Sequence[str]) -> Iterator[BagMessage]:
        """Deserialized messages of ``topics`` in log-time order."""
        connections = [c for c in self._reader.connections if c.topic in set(topics)]
        try:
            for connection, timestamp, raw in self._reader.messages(connections=connections):
                try:
                    msg = self._store.deserialize_cdr(raw, connection.msgtype)
                except Exception as exc:
                    raise BagError(
                        f"bag {self.path}: cannot decode a {connection.msgtype} message on "
                        f"{connection.topic} (truncated or corrupt?): {_one_line(exc)}"
                    ) from None
                yield BagMessage(connection.topic, connection.msgtype, int(timestamp), msg)
        except BagError:
            raise
        except Exception as exc:
            raise BagError(f"bag {self.path} is damaged or truncated: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."


# --------------------------------------------------------------------------- writing


class BagWriter:
    """A new rosbag2 directory (mcap or sqlite3) written with ``rosbags``; use as a context manager."""

    def __init__(self, path: Path | str, storage: str = "mcap"):
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGE_FORMATS:
            raise BagError(f"unknown storage '{storage}' (use {' or '.join(STORAGE_FORMATS)})")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} already exists; rosbag2 writes a new directory")
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._store = typestore()
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._writer.open()
        self._connections: dict[str, Any] = {}

    def add_topic(self, topic: str, msgtype: str) -> None:
        self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self._store)

    def write(self, topic: str, log_time_ns: int, msg) -> None:
        connection = self._connections[topic]
        self._writer.write(connection, int(log_time_ns), self._store.serialize_cdr(msg, connection.msgtype))

    def write_raw(self, topic: str, log_time_ns: int, data: bytes) -> None:
        """CDR bytes as they come from rclpy.serialization.serialize_message."""
        self._writer.write(self._connections[topic], int(log_time_ns), data)

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
