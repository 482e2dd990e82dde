"""The teleop page against hostile input (issue 13, items 2-6), on the real teleop_ui process.

Malformed frames on its image topic change neither the stream nor the prompt set; hostile
HTTP (huge numbers, deep nesting, clients that hang up early, slowloris connections, short
bodies) always gets an answer or a closed connection, costs a bounded number of threads
and leaves no traceback in the log. Loopback only; every client is bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import struct
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from node_helpers import RosClient, node_command, ros_env, running

from picosam3_ros.core.image_conversion import fill_image
from picosam3_ros.teleop.server import ServerConfig

DOMAIN = 85
WIDTH, HEIGHT = 64, 48
SLOW_CLIENTS = 300
WAIT_S = 60.0
TIMEOUT_S = ServerConfig.request_timeout_s
MAX_CONNECTIONS = ServerConfig.max_connections


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def wait_until(predicate, what: str, proc, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert proc.poll() is None, f"teleop_ui exited while waiting for {what}"
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


class Page:
    """HTTP to the page (one fresh connection per request, as the browser's fetch does)."""

    def __init__(self, port: int):
        self.port = port

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict | bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            if response.getheader("Content-Type", "").startswith("application/json"):
                return response.status, json.loads(data)
            return response.status, data
        finally:
            conn.close()

    def state(self) -> dict:
        status, state = self.request("GET", "/api/state")
        assert status == 200
        return state

    def raw(self, data: bytes, timeout: float = 30.0) -> bytes:
        """Send raw bytes, return everything the server sends until it closes (or timeout)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(data)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                    return b"".join(chunks)


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"Content-Length: (\d+)", head)
    return match is not None and len(body) >= int(match.group(1))


def post(body: bytes, length: int | None = None) -> bytes:
    length = len(body) if length is None else length
    return (
        b"POST /api/prompts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {length}\r\n\r\n".encode()
        + body
    )


def drag(x0, y0, x1, y1, width=WIDTH, height=HEIGHT) -> bytes:
    return json.dumps({"action": "add", "x0": x0, "y0": y0, "x1": x1, "y1": y1,
                       "display_width": width, "display_height": height}).encode()


@contextlib.contextmanager
def teleop_process(tmp: Path, domain: int, **params):
    """A teleop_ui process (port 0, frames from `image`, fast prompt limits) and a client:
    yields (page, process, client, image publisher, received prompt sets, log path)."""
    from sensor_msgs.msg import Image

    from picosam3_msgs.msg import RoiPromptArray

    params = {"port": 0, "image_topic": "image", "max_prompt_rate": 100.0, "prompt_burst": 100, **params}
    log_path = tmp / "teleop.log"
    cmd = node_command("picosam3_ros.nodes.teleop_ui_node", params)
    with running(cmd, ros_env(domain), log_path) as proc:
        client = RosClient(domain, f"teleop_client_{domain}")
        try:
            url = wait_until(lambda: re.search(r"http://127\.0\.0\.1:(\d+)/", log_path.read_text()),
                             "the page's URL in the log", proc)
            prompt_sets = client.collect(RoiPromptArray, "prompts")
            image_pub = client.node.create_publisher(Image, "image", 10)
            yield Page(int(url.group(1))), proc, client, image_pub, prompt_sets, log_path
        finally:
            client.close()


@pytest.fixture(scope="module")
def teleop(tmp_path_factory):
    with teleop_process(tmp_path_factory.mktemp("teleop_hardening"), DOMAIN, republish_period=0.0) as rig:
        page, proc, client, image_pub, prompt_sets, log_path = rig
        yield page, proc, client, image_pub, prompt_sets, f"hard_{uuid.uuid4().hex[:8]}", log_path


def frame(nonce: str, width: int = WIDTH, height: int = HEIGHT):
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header.frame_id = nonce
    fill_image(msg, np.full((height, width, 3), 90, np.uint8), "rgb8")
    return msg


@contextlib.contextmanager
def frames_flowing(image_pub, nonce: str, period_s: float = 0.05):
    """Valid frames published in a thread for the duration of the block (yields its stop event)."""
    stop = threading.Event()

    def publish_frames():
        while not stop.is_set():
            image_pub.publish(frame(nonce))
            time.sleep(period_s)

    publisher = threading.Thread(target=publish_frames, daemon=True)
    publisher.start()
    try:
        yield stop
    finally:
        stop.set()
        publisher.join(timeout=5)


def ended(socks: list[socket.socket], seconds: float) -> int:
    """How many of ``socks`` the server closed (EOF or reset), reading all of them for ``seconds``."""
    import selectors

    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    closed = 0
    deadline = time.monotonic() + seconds
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.1):
            try:
                data = key.fileobj.recv(1 << 16)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                closed += 1
                selector.unregister(key.fileobj)
    selector.close()
    return closed


def ours(client, prompt_sets, nonce) -> list[list[tuple[int, int, int, int, int]]]:
    with client.lock:
        return [[(p.id, p.roi.x_offset, p.roi.y_offset, p.roi.width, p.roi.height) for p in m.prompts]
                for m in prompt_sets if m.header.frame_id == nonce]


def test_malformed_frames_change_neither_the_stream_nor_the_prompts(teleop):
    from sensor_msgs.msg import Image

    page, proc, client, image_pub, prompt_sets, nonce, log_path = teleop

    def stream_ready():
        image_pub.publish(frame(nonce))
        stream = page.state()["stream"]
        return stream["frame_id"] == nonce and (stream["width"], stream["height"]) == (WIDTH, HEIGHT)

    wait_until(stream_ready, "the stream size from valid frames", proc)
    status, reply = page.request("POST", "/api/prompts", drag(8, 8, 40, 30))
    assert status == 200, reply
    box = (reply["id"], 8, 8, 32, 22)
    wait_until(lambda: [box] in ours(client, prompt_sets, nonce), "the prompt published", proc)
    published = len(ours(client, prompt_sets, nonce))

    zero = Image(encoding="rgb8")
    zero.header.frame_id = nonce
    giant = Image(encoding="rgb8", width=60000, height=60000, step=180000)
    giant.header.frame_id = "evil"
    odd_yuv = Image(encoding="yuv422", width=5, height=4, step=10, data=bytes(40))
    odd_yuv.header.frame_id = nonce
    spaced = frame("evil frame")
    short = frame(nonce)
    short.data = bytes(10)
    bad = [zero, giant, odd_yuv, spaced, short]
    rejected_before = page.state()["stream"]["frames_rejected"]

    def all_rejected() -> bool:  # best effort: repeat until each kind has arrived a few times
        for msg in bad:
            image_pub.publish(msg)
        return page.state()["stream"]["frames_rejected"] >= rejected_before + 3 * len(bad)

    wait_until(all_rejected, "the malformed frames rejected", proc)
    stream = page.state()["stream"]
    assert (stream["width"], stream["height"], stream["frame_id"]) == (WIDTH, HEIGHT, nonce)
    assert [p["id"] for p in page.state()["prompts"]] == [box[0]]
    assert len(ours(client, prompt_sets, nonce)) == published  # no empty set went out
    with client.lock:
        assert not any(m.header.frame_id == "evil" for m in prompt_sets)
    # A drag now maps onto the real 64x48 stream, in the real frame_id.
    status, reply = page.request("POST", "/api/prompts", drag(0, 0, 32, 24))
    assert status == 200 and reply["box"] == {"x": 0, "y": 0, "width": 32, "height": 24}, reply
    wait_until(lambda: any(len(s) == 2 for s in ours(client, prompt_sets, nonce)), "two prompts", proc)
    status, _ = page.request("POST", "/api/prompts", json.dumps({"action": "clear"}).encode())
    assert status == 200


@pytest.mark.parametrize(
    "body, why",
    [
        (b'{"action": "add", "x0": 1' + b"0" * 400 + b', "y0": 1, "x1": 9, "y1": 9, '
         b'"display_width": 64, "display_height": 48}', "an integer of 10^400"),
        (b"[" * 2000 + b"]" * 2000, "2,000 nested arrays"),
        (b'{"action": "remove", "id": 1' + b"0" * 5000 + b"}", "an integer too long to parse"),
        (b'{"action": "add", "x0": "\xff\xfe"}', "bytes that are not UTF-8"),
        (b'{"action": "add", "x0": 1e999, "y0": 0, "x1": 9, "y1": 9}', "a float overflowing to inf"),
    ],
)
def test_every_hostile_json_body_gets_a_400(teleop, body, why):
    page, proc, *_ = teleop
    answer = page.raw(post(body))
    assert answer.startswith(b"HTTP/1.1 400"), (why, answer[:200])
    assert proc.poll() is None


def test_clients_that_hang_up_early_leave_no_traceback(teleop):
    page, proc, client, image_pub, _, nonce, log_path = teleop
    with frames_flowing(image_pub, nonce):
        for _ in range(60):
            with socket.create_connection(("127.0.0.1", page.port), timeout=30) as sock:
                sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                sock.recv(1024)  # the stream has started: the server is writing
                # Reset instead of a clean close: the server's next write fails at once.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        for _ in range(60):
            with socket.create_connection(("127.0.0.1", page.port), timeout=30) as sock:
                sock.sendall(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        assert page.state()["stream"]["frame_id"] == nonce  # still serving
    time.sleep(1.0)  # let the handler threads finish and (formerly) print their tracebacks
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log and "BrokenPipeError" not in log and "ConnectionResetError" not in log


def test_slow_and_stalled_clients_are_capped_and_timed_out(teleop):
    page, proc, *_ = teleop
    base_threads = threads_of(proc.pid)
    slow: list[socket.socket] = []
    try:
        for _ in range(SLOW_CLIENTS):
            sock = socket.create_connection(("127.0.0.1", page.port), timeout=30)
            sock.sendall(b"GET /api/state HTTP/1.1\r\nHost: 127.0")  # and never the rest
            slow.append(sock)
        time.sleep(1.0)  # let the server accept what it will
        # One thread per served connection, and no more than the cap (plus the node's own threads).
        assert threads_of(proc.pid) <= base_threads + MAX_CONNECTIONS + 4
        # Past the cap, a new client is served: the slow client that has waited longest made room
        # (test_teleop_budget.py: prompt edits too; test_teleop_connections.py: when 503 is left).
        answer = page.raw(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        head, _, body = answer.partition(b"\r\n\r\n")
        assert f"Content-Length: {len(body)}".encode() in head
        assert json.loads(body)["connections"]["evicted"] > 0
        # The stalled connections are closed (answered 408) within the request deadline.
        closed = ended(slow, TIMEOUT_S + WAIT_S)
        assert closed == len(slow), f"{len(slow) - closed} stalled connections were never closed"
    finally:
        for sock in slow:
            sock.close()
    wait_until(lambda: threads_of(proc.pid) <= base_threads + 2, "the handler threads to end", proc)
    assert page.request("GET", "/api/state")[0] == 200
    # A body that stops short is answered 408 once the timeout passes, never left hanging.
    answer = page.raw(post(b"{}", length=100), timeout=TIMEOUT_S + WAIT_S)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert proc.poll() is None
