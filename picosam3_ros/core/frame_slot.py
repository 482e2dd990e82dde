"""The one-slot buffer between a node's executor and its worker thread (ROS-free).

A callback on the executor thread only ``put``s; the worker ``get``s. A new item replaces
an unconsumed one (the oldest is dropped, and ``put`` says so), so a slow worker never
makes the executor wait and always works on the newest input.
"""

from __future__ import annotations

import threading
from typing import Any


class FrameSlot:
    """A one-slot buffer: put() replaces (drops) an unconsumed item; get() waits for one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._closed = False

    def put(self, item: Any) -> bool:
        """Store ``item``; True when an older, unprocessed item was dropped."""
        with self._cond:
            dropped = self._item is not None
            self._item = item
            self._cond.notify()
            return dropped

    def get(self, timeout: float = 0.5) -> Any:
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
