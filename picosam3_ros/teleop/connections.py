"""Who holds the teleop server's connections, and which to close when a new one needs room.

ROS-free; the clock is passed in. One thread serves each connection, so their number is
capped (``max_connections``). A cap alone let 64 MJPEG viewers, or 64 clients sending a
byte every 5 s, answer every other request 503, prompt removal included. So:

* a connection still sending its request (or idle between two) for over ``evict_after_s``
  is closed to make room for a new one, the longest-waiting first; ``request_timeout_s``
  is a deadline for a whole request (line, headers, body), not per byte (:meth:`sweep`);
* MJPEG streams have their own cap (``max_streams``): a new viewer past it closes the
  stream that has gone longest without a frame (or the oldest);
* ``control_reserve`` places are kept for prompt edits and the state poll: at most
  ``max_connections - control_reserve`` other requests (pages, snapshots, streams) are
  served at once, the next one is refused (503).

A closed connection's socket is shut down for reading: its thread sees the end of the
request at once and answers 408 (or its stream write fails), then releases its place.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from typing import Iterable

READING, BUSY, STREAMING = "reading", "busy", "streaming"


@dataclass(eq=False)
class Connection:
    sock: socket.socket
    opened: float
    since: float  # when the current request (or the wait for it) began
    state: str = READING
    control: bool = False
    last_frame: float = 0.0  # streams: when the last frame went out
    cut: bool = False  # closed by the server (timeout or eviction): answer 408 if still possible


@dataclass
class ConnectionBook:
    max_connections: int = 64
    max_streams: int = 8
    control_reserve: int = 8
    evict_after_s: float = 1.0
    request_timeout_s: float = 10.0
    evicted: int = 0
    _connections: dict[socket.socket, Connection] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, sock: socket.socket, now: float) -> Connection | None:
        """Register a new connection; None when there is no room (answer 503)."""
        with self._lock:
            if len(self._connections) >= self.max_connections:
                victim = self._longest_waiting(now)
                if victim is None:
                    return None
                self._cut(victim)
            conn = Connection(sock, now, now)
            self._connections[sock] = conn
            return conn

    def get(self, sock: socket.socket) -> Connection | None:
        with self._lock:
            return self._connections.get(sock)

    def close(self, conn: Connection) -> None:
        with self._lock:
            if self._connections.get(conn.sock) is conn:
                del self._connections[conn.sock]

    def waiting(self, conn: Connection, now: float, new_request: bool) -> None:
        """The connection waits for a request (``new_request``) or for the rest of its body."""
        with self._lock:
            conn.state = READING
            if new_request:
                conn.since = now

    def admit(self, conn: Connection, control: bool, stream: bool, now: float) -> bool:
        """The request's line and headers are in: serve it (True) or refuse it with 503 (False)."""
        with self._lock:
            if conn.cut:
                return False
            conn.control = control
            if not control:  # pages, snapshots and streams never hold the places kept for prompt edits
                serving = sum(1 for c in self._connections.values()
                              if c is not conn and c.state != READING and not c.control)
                if serving >= self.max_connections - self.control_reserve:
                    return False
            if stream:
                streams = [c for c in self._connections.values() if c.state == STREAMING]
                if len(streams) >= self.max_streams:
                    self._cut(min(streams, key=lambda c: (c.last_frame, c.opened)))
                conn.state, conn.last_frame = STREAMING, now
            else:
                conn.state = BUSY
            return True

    def busy(self, conn: Connection) -> None:
        with self._lock:
            conn.state = BUSY

    def frame_sent(self, conn: Connection, now: float) -> None:
        conn.last_frame = now

    def sweep(self, now: float) -> int:
        """Close connections that have not delivered their request within the timeout."""
        with self._lock:
            late = [c for c in self._connections.values()
                    if c.state == READING and now - c.since > self.request_timeout_s]
            for conn in late:
                self._cut(conn)
            return len(late)

    def counts(self) -> dict[str, int]:
        with self._lock:
            states = [c.state for c in self._connections.values()]
        return {"open": len(states), "streams": states.count(STREAMING), "evicted": self.evicted}

    # ---- with the lock held ------------------------------------------------------------------
    def _longest_waiting(self, now: float) -> Connection | None:
        waiting: Iterable[Connection] = (
            c for c in self._connections.values() if c.state == READING and now - c.since > self.evict_after_s
        )
        return min(waiting, key=lambda c: c.since, default=None)

    def _cut(self, conn: Connection) -> None:
        del self._connections[conn.sock]
        conn.cut = True
        self.evicted += 1
        try:  # reading: the thread sees the end of the request; streaming: its next write fails
            conn.sock.shutdown(socket.SHUT_RD if conn.state != STREAMING else socket.SHUT_RDWR)
        except OSError:
            pass
