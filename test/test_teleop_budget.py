"""Teleop lockout and prompt wipes (issue 21, item 4), on the real teleop_ui process.

* 64 MJPEG viewers and 64 clients that send a byte every 2 s are open at once: adding,
  removing and clearing prompts still work; the streams are capped (the oldest closed), and
  the slow clients are answered 408 within the request deadline.
* A valid 32x32 frame and a frame with another frame_id on the image topic delete no prompt,
  publish no empty set, and the republished set keeps the frame_id the prompts were drawn in;
  a new prompt is refused (with the reason) while the stream differs, and works again after.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import numpy as np
import pytest
from test_teleop_hardening import Page, drag, ended, frames_flowing, teleop_process, wait_until

from picosam3_ros.core.image_conversion import fill_image
from picosam3_ros.teleop.server import ServerConfig

DOMAIN = 20
WIDTH, HEIGHT = 64, 48
VIEWERS = SLOW_CLIENTS = 64


def frame(frame_id: str, width: int = WIDTH, height: int = HEIGHT):
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header.frame_id = frame_id
    fill_image(msg, np.full((height, width, 3), 90, np.uint8), "rgb8")
    return msg


@pytest.fixture(scope="module")
def teleop(tmp_path_factory):
    with teleop_process(tmp_path_factory.mktemp("teleop_budget"), DOMAIN, republish_period=0.3) as rig:
        yield rig


def edit(page: Page, body: dict) -> tuple[int, dict]:
    return page.request("POST", "/api/prompts", json.dumps(body).encode())


def ready(page: Page, image_pub, proc, frame_id: str) -> None:
    def stream_is_ours():
        image_pub.publish(frame(frame_id))
        stream = page.state()["stream"]
        return (stream["width"], stream["height"], stream["frame_id"]) == (WIDTH, HEIGHT, frame_id)

    wait_until(stream_is_ours, "the stream from valid frames", proc)


def test_viewers_and_slow_clients_cannot_lock_out_prompt_edits(teleop):
    page, proc, client, image_pub, prompt_sets, _ = teleop
    nonce = f"budget_{uuid.uuid4().hex[:8]}"
    ready(page, image_pub, proc, nonce)
    viewers: list[socket.socket] = []
    slow: list[socket.socket] = []
    request = b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with frames_flowing(image_pub, nonce) as stop:
        try:
            for _ in range(VIEWERS):
                sock = socket.create_connection(("127.0.0.1", page.port), timeout=30)
                sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                viewers.append(sock)
            for _ in range(SLOW_CLIENTS):
                sock = socket.create_connection(("127.0.0.1", page.port), timeout=30)
                sock.sendall(request[:1])
                slow.append(sock)

            def trickle():  # one byte every 2 s: each recv is within any per-read timeout
                for i in range(1, len(request)):
                    if stop.wait(2.0):
                        return
                    for sock in slow:
                        try:
                            sock.sendall(request[i:i + 1])
                        except OSError:
                            pass

            threading.Thread(target=trickle, daemon=True).start()
            time.sleep(2.5)
            # Every prompt edit is answered, with all of them open.
            status, added = edit(page, {"action": "add", **json.loads(drag(8, 8, 40, 30))})
            assert status == 200 and added["ok"], added
            status, second = edit(page, {"action": "add", **json.loads(drag(2, 2, 20, 20))})
            assert status == 200 and second["ok"], second
            assert edit(page, {"action": "remove", "id": added["id"]})[0] == 200
            status, reply = edit(page, {"action": "clear"})
            assert status == 200 and reply["state"]["prompts"] == []
            connections = reply["state"]["connections"]
            assert connections["streams"] <= ServerConfig.max_streams and connections["evicted"] > 0
            # The viewers past the stream cap were closed by the server, the newest ones still stream.
            assert ended(viewers, seconds=3.0) >= VIEWERS - ServerConfig.max_streams
            # The slow clients are answered 408 and closed within the deadline, not served forever.
            assert ended(slow, ServerConfig.request_timeout_s + 30) == len(slow)
        finally:
            for sock in viewers + slow:
                sock.close()
    assert proc.poll() is None


def test_odd_frames_never_delete_the_prompts(teleop):
    page, proc, client, image_pub, prompt_sets, log_path = teleop
    nonce = f"wipe_{uuid.uuid4().hex[:8]}"
    ready(page, image_pub, proc, nonce)
    status, reply = edit(page, {"action": "add", **json.loads(drag(8, 8, 40, 30))})
    assert status == 200, reply
    prompt = [reply["id"], 8, 8, 32, 22]

    def ours():
        with client.lock:
            return [[[p.id, p.roi.x_offset, p.roi.y_offset, p.roi.width, p.roi.height] for p in m.prompts]
                    for m in prompt_sets if m.header.frame_id == nonce]

    wait_until(lambda: [prompt] in ours(), "the prompt published", proc)
    with client.lock:
        seen = len(prompt_sets)
    # One valid 32x32 frame and frames in another frame_id, between the real ones.
    other = f"other_{uuid.uuid4().hex[:8]}"
    for _ in range(20):
        image_pub.publish(frame(nonce, 32, 32))
        time.sleep(0.05)
        image_pub.publish(frame(other))
        time.sleep(0.05)
    wait_until(lambda: page.state()["stream"]["frame_id"] == other, "the other stream shown", proc)
    state = page.state()
    assert [p["id"] for p in state["prompts"]] == [prompt[0]]
    assert state["prompts_stream"] == {"width": WIDTH, "height": HEIGHT, "frame_id": nonce}
    assert "clear them" in state["prompts_note"]
    status, refused = edit(page, {"action": "add", **json.loads(drag(1, 1, 30, 30))})
    assert status == 400 and "clear them" in refused["error"]
    time.sleep(1.0)  # a few republish periods
    with client.lock:
        later = prompt_sets[seen:]
        assert later, "the set was not republished"
        assert all(m.header.frame_id == nonce and len(m.prompts) == 1 for m in later), \
            [(m.header.frame_id, len(m.prompts)) for m in later]
    # Back on the real stream: the note goes, a new prompt works.
    ready(page, image_pub, proc, nonce)
    assert page.state()["prompts_note"] == ""
    status, reply = edit(page, {"action": "add", **json.loads(drag(2, 2, 20, 20))})
    assert status == 200, reply
    assert "stay as they are" in log_path.read_text()
    assert edit(page, {"action": "clear"})[0] == 200
