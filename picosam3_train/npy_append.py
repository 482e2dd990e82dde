"""Grow a ``.npy`` file row by row on disk, so a dataset larger than memory never sits in it.

The crop store of a full COCO/LVIS file (hundreds of thousands of 192x192 crops) and a
teacher cache shard are written through ``NpyAppender``: rows go straight to the file, and
``commit()`` rewrites the fixed-size header with the committed row count, so after every
commit the file is a valid ``.npy`` that ``np.load(mmap_mode="r")`` opens. Reopening with
``resume_rows`` cuts off whatever a killed writer appended after its last commit.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

MAGIC = b"\x93NUMPY\x01\x00"
HEADER_BYTES = 128  # magic (8) + length (2) + the dict padded with spaces and a newline


def _header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
    body_len = HEADER_BYTES - len(MAGIC) - 2
    if len(text) + 1 > body_len:
        raise ValueError(f"array header too long for {shape}")
    return MAGIC + body_len.to_bytes(2, "little") + (text.ljust(body_len - 1) + "\n").encode("latin1")


class NpyAppender:
    """Append rows of one shape and dtype to ``path``; see the module docstring."""

    def __init__(self, path: str | Path, row_shape: tuple[int, ...], dtype, resume_rows: int | None = None):
        self.path = Path(path)
        self.row_shape = tuple(int(v) for v in row_shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        if resume_rows is None:
            self.rows = 0
            self._file = self.path.open("wb")
            self._file.write(_header(self.dtype, (0,) + self.row_shape))
        else:
            self.rows = int(resume_rows)
            self._file = self.path.open("r+b")
            self._file.truncate(HEADER_BYTES + self.rows * self.row_bytes)
            self._file.seek(0, os.SEEK_END)

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path.name}: rows of {rows.shape[1:]}, expected {self.row_shape}")
        self._file.write(rows.tobytes())
        self.rows += len(rows)

    def commit(self) -> int:
        """Make the rows so far durable and the file a valid .npy of them; returns the row count."""
        self._file.flush()
        self._file.seek(0)
        self._file.write(_header(self.dtype, (self.rows,) + self.row_shape))
        self._file.seek(0, os.SEEK_END)
        self._file.flush()
        os.fsync(self._file.fileno())
        return self.rows

    def close(self) -> int:
        rows = self.commit()
        self._file.close()
        return rows

    def __enter__(self) -> "NpyAppender":
        return self

    def __exit__(self, *exc) -> None:
        if not self._file.closed:
            self._file.close()
