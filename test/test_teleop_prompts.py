"""ROS-free tests of the teleop page's core: prompt validation, the prompt set, rate limiting,
the overlay, and the HTTP server's handling of bad requests (in-process, no ROS, no browser)."""

from __future__ import annotations

import http.client
import json
import math
import random
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from picosam3_ros.core.palette import prompt_color
from picosam3_ros.teleop.frames import FrameHub, PromptResult, frame_problem, overlay_mask, to_bgr
from picosam3_ros.teleop.prompt_book import (
    Box,
    InvalidPromptError,
    PromptBook,
    RateLimiter,
    box_fits,
    display_box_to_stream,
    parse_prompt_id,
)
from picosam3_ros.teleop.server import ServerConfig, TeleopServer


def drag(x0, y0, x1, y1, dw, dh):
    return {"x0": x0, "y0": y0, "x1": x1, "y1": y1, "display_width": dw, "display_height": dh}


# ---- display -> stream conversion --------------------------------------------------------
def test_scales_display_pixels_to_stream_pixels():
    # Shown at half size: every display pixel is two stream pixels.
    assert display_box_to_stream(drag(50, 25, 150, 100, 320, 180), 640, 360) == Box(100, 50, 200, 150)
    # Shown larger than the stream.
    assert display_box_to_stream(drag(200, 100, 600, 400, 1280, 720), 640, 360) == Box(100, 50, 200, 150)


def test_axes_scale_independently_on_a_stretched_display():
    assert display_box_to_stream(drag(100, 100, 200, 300, 400, 400), 800, 200) == Box(200, 50, 200, 100)


def test_corner_order_does_not_matter():
    a = display_box_to_stream(drag(10, 20, 110, 90, 640, 360), 640, 360)
    b = display_box_to_stream(drag(110, 90, 10, 20, 640, 360), 640, 360)
    assert a == b == Box(10, 20, 100, 70)


def test_fractional_pixels_snap_outwards():
    assert display_box_to_stream(drag(10.6, 20.2, 30.4, 40.9, 640, 360), 640, 360) == Box(10, 20, 21, 21)


def test_drag_partly_outside_is_clipped_to_the_frame():
    assert display_box_to_stream(drag(-50, -20, 100, 80, 640, 360), 640, 360) == Box(0, 0, 100, 80)
    assert display_box_to_stream(drag(600, 300, 900, 500, 640, 360), 640, 360) == Box(600, 300, 40, 60)


@pytest.mark.parametrize(
    "payload",
    [
        drag(700, 10, 900, 100, 640, 360),  # right of the image
        drag(-300, -200, -10, -5, 640, 360),  # above-left
        drag(10, 400, 100, 500, 640, 360),  # below
        drag(640, 0, 700, 100, 640, 360),  # touches the right edge only
    ],
)
def test_drag_outside_the_image_is_rejected(payload):
    with pytest.raises(InvalidPromptError, match="outside"):
        display_box_to_stream(payload, 640, 360)


@pytest.mark.parametrize(
    "payload",
    [
        drag(100, 100, 100, 100, 640, 360),  # a click
        drag(100, 100, 300, 101, 640, 360),  # a line
        drag(100, 100, 102, 300, 640, 360),
        drag(-100, 10, 2, 100, 640, 360),  # 2 px wide after clipping
    ],
)
def test_zero_size_and_thin_drags_are_rejected(payload):
    with pytest.raises(InvalidPromptError, match="at least"):
        display_box_to_stream(payload, 640, 360, min_size=4)


@pytest.mark.parametrize(
    "payload",
    [
        {**drag(1, 1, 100, 100, 640, 360), "x0": math.nan},
        {**drag(1, 1, 100, 100, 640, 360), "y1": math.inf},
        {**drag(1, 1, 100, 100, 640, 360), "x1": "100"},
        {**drag(1, 1, 100, 100, 640, 360), "y0": True},
        {**drag(1, 1, 100, 100, 640, 360), "x0": None},
        {k: v for k, v in drag(1, 1, 100, 100, 640, 360).items() if k != "y1"},
        drag(1, 1, 100, 100, 0, 360),
        drag(1, 1, 100, 100, 640, -5),
        {**drag(1, 1, 100, 100, 640, 360), "x0": 10**400},  # valid JSON, no float
        {**drag(1, 1, 100, 100, 640, 360), "display_width": -(10**400)},
    ],
)
def test_malformed_drags_are_rejected(payload):
    with pytest.raises(InvalidPromptError):
        display_box_to_stream(payload, 640, 360)


def test_no_frame_yet_means_no_prompt():
    with pytest.raises(InvalidPromptError, match="no camera frame"):
        display_box_to_stream(drag(1, 1, 100, 100, 640, 360), 0, 0)


def test_random_drags_give_valid_boxes_or_clear_errors():
    rng = random.Random(6)
    accepted = 0
    for _ in range(3000):
        sw, sh = rng.choice([(640, 480), (320, 240), (4056, 3040), (17, 9)])
        dw, dh = rng.uniform(0.5, 2000), rng.uniform(0.5, 2000)
        coords = [rng.uniform(-0.5, 1.5) * d for d in (dw, dh, dw, dh)]
        try:
            box = display_box_to_stream(drag(*coords, dw, dh), sw, sh, min_size=4)
        except InvalidPromptError as exc:
            assert str(exc)
            continue
        accepted += 1
        assert box_fits(box, sw, sh) and box.width >= 4 and box.height >= 4
    assert accepted > 500


# ---- the prompt set and the rate limiter -------------------------------------------------
def test_prompt_book_ids_limit_and_removal():
    book = PromptBook(max_prompts=2)
    assert book.add(Box(0, 0, 10, 10)) == 1
    assert book.add(Box(5, 5, 10, 10)) == 2
    with pytest.raises(InvalidPromptError, match="already 2"):
        book.add(Box(1, 1, 10, 10))
    book.remove(1)
    assert book.add(Box(2, 2, 10, 10)) == 3  # ids are never reused
    assert [pid for pid, _ in book.snapshot()] == [2, 3]
    with pytest.raises(InvalidPromptError, match="no prompt"):
        book.remove(1)
    book.clear()
    assert book.snapshot() == []


def test_prompts_stay_with_the_stream_they_were_drawn_on():
    book = PromptBook()
    camera = (640, 480, "camera")
    book.add(Box(0, 0, 100, 100), camera)
    book.add(Box(500, 300, 100, 100), camera)
    # Another size or frame_id: nothing is removed, new prompts are refused with the reason.
    for other in ((32, 32, "camera"), (640, 480, "other")):
        with pytest.raises(InvalidPromptError, match="clear them"):
            book.add(Box(1, 1, 10, 10), other)
    assert book.view() == (camera, [(1, Box(0, 0, 100, 100)), (2, Box(500, 300, 100, 100))])
    book.remove(1)
    book.remove(2)  # empty: the next prompt belongs to the stream it is drawn on
    assert book.stream is None
    assert book.add(Box(1, 1, 10, 10), (32, 32, "other")) == 3 and book.stream == (32, 32, "other")
    book.clear()
    assert book.view() == (None, [])


def test_compressed_frames_are_judged_by_the_payload_guard():
    from payloads import encode, jpeg_bomb, picture

    hub = FrameHub()
    header = SimpleNamespace(frame_id="cam")
    good = SimpleNamespace(header=header, format="jpeg", data=encode(".jpg", picture(64, 48)))
    assert hub.put_frame(1, good) and hub.stream_key() == (64, 48, "cam")
    assert to_bgr(good).shape == (48, 64, 3)
    for bad, text in ((jpeg_bomb(), "32000x32000"), (encode(".bmp", picture(8, 8)), "BMP")):
        frame = SimpleNamespace(header=SimpleNamespace(frame_id="evil"), format="jpeg", data=bad)
        assert not hub.put_frame(2, frame)
        assert text in hub.last_error
    assert hub.stream_key() == (64, 48, "cam") and hub.frames_rejected == 2


@pytest.mark.parametrize("value", [0, -1, 2**32, 1.5, "3", True, None])
def test_bad_prompt_ids_are_rejected(value):
    with pytest.raises(InvalidPromptError):
        parse_prompt_id({"id": value})


def test_rate_limiter_allows_a_burst_then_the_average_rate():
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.allow(10.0) for _ in range(5)] == [True, True, True, False, False]
    assert limiter.allow(10.4) is False  # 0.8 tokens refilled
    assert limiter.allow(10.6) is True  # 1.2 tokens
    assert limiter.allow(100.0) and limiter.allow(100.0) and limiter.allow(100.0)
    assert not limiter.allow(100.0)  # refill is capped at the burst
    assert limiter.rejected == 4


# ---- images and the overlay ---------------------------------------------------------------
def fake_image(width, height, encoding, data, step=None, frame_id="cam"):
    """An object with sensor_msgs/Image's fields (the teleop core is ROS-free)."""
    channels = {"rgb8": 3, "bgr8": 3, "mono8": 1}.get(encoding, 3)
    return SimpleNamespace(header=SimpleNamespace(frame_id=frame_id), width=width, height=height,
                           encoding=encoding, step=step or width * channels, data=data, is_bigendian=0)


def test_to_bgr_handles_encodings_and_row_padding():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = 200  # red
    padded = np.zeros((2, 12), np.uint8)
    padded[:, :9] = rgb.reshape(2, 9)
    out = to_bgr(fake_image(3, 2, "rgb8", padded.tobytes(), step=12))
    assert out.shape == (2, 3, 3) and (out[..., 2] == 200).all() and (out[..., 0] == 0).all()
    assert (to_bgr(fake_image(3, 2, "mono8", bytes([7] * 6))) == 7).all()
    with pytest.raises(ValueError, match="unsupported encoding"):
        to_bgr(fake_image(3, 2, "32FC1", bytes(24)))
    with pytest.raises(ValueError, match="expected step"):
        to_bgr(fake_image(3, 2, "rgb8", bytes(5)))


@pytest.mark.parametrize(
    "frame, text",
    [
        (fake_image(0, 0, "rgb8", b""), "no pixels"),
        (fake_image(60000, 60000, "rgb8", b"", frame_id="evil"), "larger than 8192"),
        (fake_image(640, 480, "rgb8", b"", frame_id="evil"), "expected step"),
        (fake_image(9000, 10, "mono8", bytes(90000)), "larger than 8192"),
        (fake_image(5, 4, "yuv422", bytes(40), step=10), "even width"),
        (fake_image(4, 4, "rgb8", bytes(48), frame_id="a b"), "not a frame name"),
        (fake_image(4, 4, "rgb8", bytes(48), frame_id="x" * 300), "not a frame name"),
        (fake_image(4, 4, "rgb8", bytes(48), frame_id="cam\n"), "not a frame name"),
    ],
)
def test_invalid_frames_change_nothing_in_the_hub(frame, text):
    hub = FrameHub()
    assert hub.put_frame(1, fake_image(64, 48, "rgb8", bytes(64 * 48 * 3)))
    assert frame_problem(frame) is not None and text in frame_problem(frame)
    assert not hub.put_frame(2, frame)
    assert (hub.stream_size, hub.frame_id, hub.frames_rejected) == ((64, 48), "cam", 1)
    assert text in hub.last_error


def test_overlay_tints_each_prompt_in_its_colour_and_leaves_background_alone():
    frame = np.full((40, 60, 3), 100, np.uint8)
    mask = np.zeros((40, 60), np.uint8)
    mask[5:20, 5:20] = 1
    mask[25:35, 30:50] = 2
    out = overlay_mask(frame, mask, prompt_ids=[7, 3], alpha=0.5)
    for (y, x), pid in (((12, 12), 7), ((30, 40), 3)):
        expected = (np.array(prompt_color(pid)[::-1]) * 0.5 + 50).astype(int)
        assert np.abs(out[y, x].astype(int) - expected).max() <= 1
    assert (out[0, 59] == 100).all()
    # Outline pixels carry the full colour.
    assert tuple(out[5, 12]) == prompt_color(7)[::-1]


# ---- the HTTP server, in-process ------------------------------------------------------------
@pytest.fixture
def server():
    hub = FrameHub(max_fps=30)
    hub.start()
    book = PromptBook(max_prompts=3)
    changes: list[list] = []
    srv = TeleopServer(ServerConfig(port=0), hub, book, RateLimiter(rate=0.5, burst=6),
                       on_change=lambda: changes.append(book.snapshot()), log=lambda _: None)
    srv.start()
    frame = np.full((360, 640, 3), 90, np.uint8)
    hub.put_frame(1, fake_image(640, 360, "rgb8", frame.tobytes()))
    srv.changes = changes
    yield srv
    srv.stop()
    hub.stop()


def request(srv, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    hdrs = {"Content-Type": "application/json"} if body is not None else {}
    hdrs.update(headers or {})
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    conn.request(method, path, body=data, headers=hdrs)
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    return resp.status, payload


def test_server_adds_and_removes_prompts_and_rejects_bad_requests(server):
    add = {"action": "add", **drag(50, 25, 150, 100, 320, 180)}
    status, body = request(server, "POST", "/api/prompts", add)
    assert status == 200 and json.loads(body)["box"] == {"x": 100, "y": 50, "width": 200, "height": 150}
    assert server.changes == [[(1, Box(100, 50, 200, 150))]]
    bad = [
        {"action": "add", **drag(10, 10, 10, 10, 320, 180)},  # zero size
        {"action": "add", **drag(400, 10, 500, 100, 320, 180)},  # outside
        {"action": "explode"},
    ]
    for payload in bad:
        status, body = request(server, "POST", "/api/prompts", payload)
        assert status == 400 and json.loads(body)["ok"] is False
    # NaN is not JSON, but Python's and some browsers' encoders emit it: still rejected.
    nan_body = b'{"action": "add", "x0": NaN, "y0": 1, "x1": 50, "y1": 50, "display_width": 640, ' \
               b'"display_height": 360}'
    status, _ = request(server, "POST", "/api/prompts", nan_body)
    assert status == 400
    assert len(server.changes) == 1  # nothing invalid was ever handed on


def test_server_refuses_non_json_foreign_hosts_and_large_bodies(server):
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert request(server, "POST", "/api/prompts", b"x=1", form)[0] == 415
    assert request(server, "POST", "/api/prompts", b"{not json")[0] == 400
    assert request(server, "POST", "/api/prompts", b"[" + b"1," * 5000 + b"1]")[0] == 400
    assert request(server, "GET", "/api/state", headers={"Host": "evil.example:80"})[0] == 403
    assert request(server, "GET", "/nope")[0] == 404
    assert server.changes == []


def test_server_rate_limits_floods_and_caps_the_prompt_count(server):
    statuses = [request(server, "POST", "/api/prompts",
                        {"action": "add", **drag(10 + i, 10, 60 + i, 60, 640, 360)})[0] for i in range(20)]
    assert statuses.count(429) >= 13  # burst of 6, refilled at 0.5/s
    assert statuses.count(200) == 3  # max_prompts
    assert all(len(change) <= 3 for change in server.changes)
    # Removing is never rate limited, and only a real change is published.
    assert request(server, "POST", "/api/prompts", {"action": "remove", "id": 2})[0] == 200
    assert request(server, "POST", "/api/prompts", {"action": "clear"})[0] == 200
    published = len(server.changes)
    for _ in range(10):
        assert request(server, "POST", "/api/prompts", {"action": "clear"})[0] == 200
        assert request(server, "POST", "/api/prompts", {"action": "remove", "id": 1})[0] == 400
    assert len(server.changes) == published and server.changes[-1] == []


def test_server_serves_the_page_state_and_a_live_mjpeg_stream(server):
    status, page = request(server, "GET", "/")
    assert status == 200 and b"/app.js" in page and b"http" not in page.replace(b"http-equiv", b"")
    for path in ("/app.js", "/style.css"):
        assert request(server, "GET", path)[0] == 200
    state = json.loads(request(server, "GET", "/api/state")[1])
    assert state["stream"]["width"] == 640 and state["stream"]["frame_id"] == "cam"

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", "/stream.mjpg")
    resp = conn.getresponse()
    assert resp.getheader("Content-Type").startswith("multipart/x-mixed-replace")
    buf = b""
    while buf.count(b"\xff\xd9") < 1:
        buf += resp.read1(65536)
    start = buf.index(b"\xff\xd8")
    image = cv2.imdecode(np.frombuffer(buf[start: buf.index(b"\xff\xd9") + 2], np.uint8), cv2.IMREAD_COLOR)
    conn.close()
    assert image.shape == (360, 640, 3) and abs(int(image[10, 10, 0]) - 90) <= 3


def test_hub_shows_masks_on_their_own_frame(server):
    hub = server.hub
    grey = np.full((360, 640, 3), 90, np.uint8).tobytes()
    hub.put_frame(5, fake_image(640, 360, "rgb8", grey))
    hub.put_frame(6, fake_image(640, 360, "rgb8", np.full((360, 640, 3), 200, np.uint8).tobytes()))
    mask = np.zeros((360, 640), np.uint8)
    mask[100:200, 100:300] = 1
    hub.put_results(5, [PromptResult(4, "OK", 0.8, "onnx", 3.0)])
    hub.put_mask(5, mask)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jpeg = hub.snapshot(timeout=0.5)
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) if jpeg else None
        expected_red = int(prompt_color(4)[0] * 0.45 + 90 * 0.55)
        if image is not None and abs(int(image[150, 200, 2]) - expected_red) <= 4:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the mask never appeared")
    # The mask was drawn on frame 5 (grey 90), not on the newer frame 6 (200).
    assert abs(int(image[10, 10, 1]) - 90) <= 3


def test_hub_encodes_nothing_while_nobody_watches():
    hub = FrameHub(max_fps=60)
    hub.start()
    try:
        for stamp in range(5):
            hub.put_frame(stamp, fake_image(64, 48, "rgb8", bytes(64 * 48 * 3)))
            time.sleep(0.05)
        assert hub.latest_jpeg() is None and hub.stats()["encoded_fps"] == 0.0
        jpeg = hub.snapshot(timeout=60)  # a one-off request turns the encoder on
        assert jpeg is not None
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
    finally:
        hub.stop()
