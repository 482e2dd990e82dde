"""The teleop page's HTTP server (standard library only; ROS-free).

Routes:
    GET  /                  the page (index.html, app.js, style.css from picosam3_ros/teleop/page/)
    GET  /stream.mjpg       live frames with masks drawn in (multipart/x-mixed-replace JPEG)
    GET  /frame.jpg         the latest such frame, once
    GET  /api/state         JSON: stream size and rates, prompts with their latest results, backend
    POST /api/prompts       JSON {"action": "add", x0, y0, x1, y1, display_width, display_height}
                            | {"action": "replace", "id": n, x0, y0, ...} (a new box for prompt n)
                            | {"action": "remove", "id": n} | {"action": "clear"}

Every change to the prompt set goes through ``teleop_prompts`` (validation, clipping, the
prompt limit, a rate limit) before ``on_change`` is called to publish it, so nothing the
page sends can reach ROS as an invalid prompt.

Hostile or broken clients cost bounded resources and no log flood: every request gets
an answer (400 for bodies that are not sane JSON, however deep or large their numbers),
a request not complete within ``request_timeout_s`` is answered 408 and closed, at most
``max_connections`` are served at once, and neither viewers nor slow clients can lock out
prompt edits (teleop/connections.py: the longest-waiting connection makes room, streams
have their own cap, a reserve is kept for prompt edits; 503 only when every place is busy
serving), the listen backlog is ``LISTEN_BACKLOG``, and a client that hangs up early is
not an error.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from picosam3_ros.core.palette import prompt_color
from picosam3_ros.teleop.connections import Connection, ConnectionBook
from picosam3_ros.teleop.frames import FrameHub
from picosam3_ros.teleop.prompt_book import (
    InvalidPromptError,
    PromptBook,
    RateLimiter,
    describe_stream,
    display_box_to_stream,
    parse_prompt_id,
)

STATIC_DIR = Path(__file__).resolve().parent / "page"
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
MAX_BODY_BYTES = 4096
LISTEN_BACKLOG = 64
_BUSY_BODY = b'{"ok": false, "error": "too many open connections"}'
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(_BUSY_BODY)}\r\nConnection: close\r\n\r\n".encode()
    + _BUSY_BODY
)
_LATE_BODY = b'{"ok": false, "error": "the request did not arrive in time"}'
LATE_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(_LATE_BODY)}\r\nConnection: close\r\n\r\n".encode()
    + _LATE_BODY
)
# What a client that goes away (or stalls) makes the handler raise: not the server's fault, not logged.
CLIENT_GONE = (ConnectionError, TimeoutError, socket.timeout)
BOUNDARY = "picosam3frame"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass
class ServerConfig:
    bind_address: str = "127.0.0.1"
    port: int = 8088
    min_box_size: int = 4
    image_topic: str = "image_raw"
    request_timeout_s: float = 10.0  # a request (or the wait for one) not complete by then is closed
    max_connections: int = 64  # served at once, MJPEG viewers included; one thread each
    max_streams: int = 8  # MJPEG viewers at once; a new one closes the one longest without a frame
    control_reserve: int = 8  # places kept for prompt edits and the state poll


class TeleopServer:
    """Owns the HTTP server thread; the node owns the FrameHub, the PromptBook and publishing."""

    def __init__(self, config: ServerConfig, hub: FrameHub, book: PromptBook, limiter: RateLimiter,
                 on_change: Callable[[], None], log: Callable[[str], None] = print) -> None:
        self.config = config
        self.hub = hub
        self.book = book
        self.limiter = limiter
        self.on_change = on_change
        self.log = log
        self._limiter_lock = threading.Lock()
        self.connections = ConnectionBook(config.max_connections, config.max_streams, config.control_reserve,
                                          request_timeout_s=config.request_timeout_s)
        self._httpd = _Httpd((config.bind_address, config.port), _Handler)
        self._httpd.app = self
        self._thread: threading.Thread | None = None
        self.rejected: dict[str, int] = {}
        self._logged_errors: set[str] = set()

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        host = self.config.bind_address
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="teleop-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # ---- request logic (no HTTP here, so it is easy to read and test) ---------------------
    def state(self) -> dict:
        results = {r.prompt_id: r for r in self.hub.latest_results}
        last = self.hub.latest_results_time
        results_age = time.monotonic() - last if last else None
        prompts = []
        book_stream, book_prompts = self.book.view()
        for pid, box in book_prompts:
            entry = {"id": pid, "box": box.as_dict(), "color": list(prompt_color(pid))}
            res = results.get(pid)
            if res is not None:
                entry["result"] = {"status": res.status, "score": round(res.score, 4), "backend": res.backend,
                                   "latency_ms": round(res.latency_ms, 2),
                                   # a carried mask (NOT_SERVED): how old its frame is
                                   "age_ms": round(res.age_ms, 1) if res.age_ms >= 0 else None,
                                   # where the sensor node followed the box to (the object now)
                                   "box": None if res.box is None else dict(zip(("x", "y", "width", "height"),
                                                                                res.box))}
            prompts.append(entry)
        latest = self.hub.latest_results
        backends = sorted({r.backend for r in latest if r.backend})
        latencies = [r.latency_ms for r in latest if r.status == "OK"]
        return {
            "image_topic": self.config.image_topic,
            "stream": self.hub.stats(),
            "prompts": prompts,
            # The stream the prompts were drawn on (their boxes are in its pixels), and a note when
            # the frames now differ: the prompts stay until the operator clears them.
            "prompts_stream": None if book_stream is None else dict(zip(("width", "height", "frame_id"),
                                                                        book_stream)),
            "prompts_note": "" if book_stream in (None, self.hub.stream_key()) else (
                f"prompts kept for {describe_stream(book_stream)}; the stream is now "
                f"{describe_stream(self.hub.stream_key())}: clear them to draw on it"),
            "max_prompts": self.book.max_prompts,
            "min_box_size": self.config.min_box_size,
            "backend": ", ".join(backends),
            "latency_ms": round(max(latencies), 2) if latencies else None,
            "results_age_s": round(results_age, 3) if results_age is not None else None,
            "rejected": dict(self.rejected),
            "connections": self.connections.counts(),
        }

    def handle_prompt_request(self, payload: object) -> tuple[HTTPStatus, dict]:
        if not isinstance(payload, dict):
            return self._reject(HTTPStatus.BAD_REQUEST, "invalid", "the request body must be a JSON object")
        action = payload.get("action")
        # Only additions are rate limited: removing must always work (the operator may be
        # stopping the robot from following something), and a remove or clear publishes only
        # when it changes the set, so publishes stay bounded by the additions let through.
        if action in ("add", "replace"):
            with self._limiter_lock:
                allowed = self.limiter.allow(time.monotonic())
            if not allowed:
                return self._reject(HTTPStatus.TOO_MANY_REQUESTS, "rate_limited",
                                    "too many new prompts at once: slow down")
        try:
            if action == "add":
                stream = self.hub.stream_key()
                box = display_box_to_stream(payload, stream[0], stream[1], self.config.min_box_size)
                prompt_id = self.book.add(box, stream)
                reply = {"ok": True, "id": prompt_id, "box": box.as_dict()}
            elif action == "replace":
                prompt_id = parse_prompt_id(payload)
                width, height = self.hub.stream_size
                box = display_box_to_stream(payload, width, height, self.config.min_box_size)
                self.book.replace(prompt_id, box)
                reply = {"ok": True, "id": prompt_id, "box": box.as_dict()}
            elif action == "remove":
                self.book.remove(parse_prompt_id(payload))
                reply = {"ok": True}
            elif action == "clear":
                if not self.book.snapshot():
                    return HTTPStatus.OK, {"ok": True}  # nothing to change, nothing to publish
                self.book.clear()
                reply = {"ok": True}
            else:
                raise InvalidPromptError(f"unknown action {action!r} (add, replace, remove or clear)")
        except InvalidPromptError as exc:
            return self._reject(HTTPStatus.BAD_REQUEST, "invalid", str(exc))
        self.on_change()
        return HTTPStatus.OK, reply

    def _reject(self, status: HTTPStatus, kind: str, message: str) -> tuple[HTTPStatus, dict]:
        self.count_rejected(kind)
        return status, {"ok": False, "error": message}

    def count_rejected(self, kind: str) -> None:
        self.rejected[kind] = self.rejected.get(kind, 0) + 1

    def log_error_once(self, kind: str, message: str) -> None:
        """Log an unexpected server-side error once per kind (a hostile client cannot flood the log)."""
        if kind not in self._logged_errors:
            self._logged_errors.add(kind)
            self.log(f"teleop HTTP: {message} (logged once)")


class _Httpd(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG
    app: TeleopServer

    def process_request(self, request: socket.socket, client_address: object) -> None:
        # One thread per connection, so the connections are capped: past the cap, the one that has
        # waited longest for its request makes room; when every place is busy serving, 503 at once.
        conn = self.app.connections.open(request, time.monotonic())
        if conn is None:
            self.app.count_rejected("busy")
            try:
                request.sendall(BUSY_RESPONSE)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.app.connections.close(conn)  # no thread was started to release it
            raise

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:
        conn = self.app.connections.get(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            if conn is not None:
                self.app.connections.close(conn)

    def service_actions(self) -> None:
        # serve_forever's loop, every poll interval: a request's deadline is for all of it.
        self.app.connections.sweep(time.monotonic())

    def handle_error(self, request: socket.socket, client_address: object) -> None:
        # The default prints a traceback per connection: a client hanging up early made 49,144 lines.
        exc = sys.exc_info()[1]
        if isinstance(exc, CLIENT_GONE):
            return
        self.app.log_error_once(type(exc).__name__, f"{type(exc).__name__}: {exc}")


class _Handler(BaseHTTPRequestHandler):
    server: _Httpd
    protocol_version = "HTTP/1.1"
    server_version = "picosam3-teleop"

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would drown the node's log

    def setup(self) -> None:
        self.timeout = self.server.app.config.request_timeout_s  # applied to the socket by setup()
        self.conn: Connection | None = self.server.app.connections.get(self.request)
        super().setup()

    def handle_one_request(self) -> None:
        if self.conn is not None:
            self.app.connections.waiting(self.conn, time.monotonic(), new_request=True)
        super().handle_one_request()

    def parse_request(self) -> bool:
        """The request line and headers, then its place: 408 when it came too slowly, 503 when a
        page or stream request would take a place kept for prompt edits."""
        conn = self.conn
        if conn is not None and conn.cut:
            return self._refuse(LATE_RESPONSE)
        if not super().parse_request():
            return False
        if conn is None:
            return True
        path = self.path.split("?", 1)[0]
        control = (self.command, path) in (("POST", "/api/prompts"), ("GET", "/api/state"))
        stream = (self.command, path) == ("GET", "/stream.mjpg")
        if conn.cut:
            return self._refuse(LATE_RESPONSE)
        if not self.app.connections.admit(conn, control, stream, time.monotonic()):
            self.app.count_rejected("busy")
            return self._refuse(LATE_RESPONSE if conn.cut else BUSY_RESPONSE)
        return True

    def _refuse(self, response: bytes) -> bool:
        self.close_connection = True
        try:
            self.wfile.write(response)
        except OSError:
            pass
        return False

    @property
    def app(self) -> TeleopServer:
        return self.server.app

    def _host_allowed(self) -> bool:
        # On a loopback bind, refuse other Host names: a web page elsewhere cannot then
        # drive the robot through the operator's browser (DNS rebinding).
        if self.app.config.bind_address not in ("127.0.0.1", "localhost", "::1"):
            return True
        try:
            host = urlsplit("//" + (self.headers.get("Host") or "")).hostname
        except ValueError:
            return False
        return host in LOOPBACK_HOSTS

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: HTTPStatus, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _answer(self, handle) -> None:
        """Run a route; whatever it raises, the client gets an answer (or was already gone)."""
        try:
            handle()
        except CLIENT_GONE:
            self.close_connection = True
        except Exception as exc:  # a bug must cost one 500, not the connection's silence
            self.close_connection = True
            self.server.app.log_error_once(type(exc).__name__, f"{self.command} {self.path[:100]!r}: "
                                           f"{type(exc).__name__}: {exc}")
            try:
                self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"ok": False, "error": "internal error"})
            except (OSError, ValueError):
                pass  # headers were already sent, or the client is gone

    def _get(self) -> None:
        if not self._host_allowed():
            self._send_json(HTTPStatus.FORBIDDEN, {"ok": False, "error": "unexpected Host header"})
            return
        path = self.path.split("?", 1)[0]
        if path in STATIC_FILES:
            name, content_type = STATIC_FILES[path]
            self._send(HTTPStatus.OK, (STATIC_DIR / name).read_bytes(), content_type)
        elif path == "/api/state":
            self._send_json(HTTPStatus.OK, self.app.state())
        elif path == "/frame.jpg":
            jpeg = self.app.hub.snapshot()
            if jpeg is None:
                self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"ok": False, "error": "no frame yet"})
            else:
                self._send(HTTPStatus.OK, jpeg, "image/jpeg")
        elif path == "/stream.mjpg":
            self._stream()
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"ok": False, "error": f"no such page: {path}"})

    def _post(self) -> None:
        if not self._host_allowed():
            self._send_json(HTTPStatus.FORBIDDEN, {"ok": False, "error": "unexpected Host header"})
            return
        if self.path.split("?", 1)[0] != "/api/prompts":
            self._send_json(HTTPStatus.NOT_FOUND, {"ok": False, "error": "POST only to /api/prompts"})
            return
        # JSON only: a cross-site form cannot send it without a CORS preflight, which we never allow.
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            self._send_json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                            {"ok": False, "error": "send application/json"})
            return
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY_BYTES:
            self.close_connection = True
            self._send_json(HTTPStatus.BAD_REQUEST, {"ok": False, "error": "body missing or too large"})
            return
        if self.conn is not None:  # the body is part of the request's deadline
            self.app.connections.waiting(self.conn, time.monotonic(), new_request=False)
        try:
            body = self.rfile.read(length)
        except CLIENT_GONE:
            body = b""
        if self.conn is not None:
            self.app.connections.busy(self.conn)
        if len(body) < length:  # the client stopped sending (or hung up) before Content-Length bytes
            self.close_connection = True
            self._send_json(HTTPStatus.REQUEST_TIMEOUT, {"ok": False, "error": "the body did not arrive"})
            return
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # ValueError covers bad UTF-8 and over-long integers
            self._send_json(HTTPStatus.BAD_REQUEST, {"ok": False, "error": "the body is not valid JSON"})
            return
        status, reply = self.app.handle_prompt_request(payload)
        reply["state"] = self.app.state()
        self._send_json(status, reply)

    def _stream(self) -> None:
        self.close_connection = True
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        hub = self.app.hub
        try:
            with hub.viewer():
                self._stream_loop(hub)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            return  # the viewer went away

    def _stream_loop(self, hub: FrameHub) -> None:
        seq = 0
        self.wfile.write(f"--{BOUNDARY}\r\n".encode())
        while not hub.stopped and not (self.conn is not None and self.conn.cut):
            got = hub.wait_jpeg(seq, timeout=1.0)
            if got is None:
                continue
            seq, jpeg = got
            # The boundary goes right after each picture: browsers show a part when the
            # next boundary arrives, so this avoids a one-frame lag.
            head = f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
            self.wfile.write(head + jpeg + f"\r\n--{BOUNDARY}\r\n".encode())
            self.wfile.flush()
            hub.record_sent()
            if self.conn is not None:
                self.app.connections.frame_sent(self.conn, time.monotonic())
