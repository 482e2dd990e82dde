"""The teleop page in a real headless browser, against the real teleop_ui node over DDS.

Processes: the `teleop_ui` node (python -m picosam3_ros.nodes.teleop_ui_node), a stand-in sensor
(test/teleop_standin.py: grey frames on `image`, known masks and segmentations for the
prompts it receives, and a JSON line for every RoiPromptArray that reached it), and
Debian's Chromium driven by Selenium through chromium-driver. The test drags boxes with
real pointer input and checks what reached ROS, what the page shows (a pixel check of the
mask overlay in a screenshot, the results table), removal by click, that bad input never
reaches ROS as an invalid prompt, and coordinates across window sizes (the display size
differs from the 640x360 stream both ways).

Needs chromium + chromium-driver (installed here with apt-get when missing and running as
root) and selenium (requirements/test.txt); skips with the reason when they cannot be had.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from picosam3_ros.core.palette import prompt_color
from picosam3_ros.core.process_group import start_group, stop_group

REPO = Path(__file__).resolve().parent.parent
# This area's ROS domains are 60-79. The UI shows whatever frames arrive on its topic, so two
# runs of the suite on one machine (sharing a domain) would mix their streams: pick domains at
# random to make that unlikely; prompts still carry a per-run nonce so a clash cannot fake a pass.
DOMAIN_ID, REAL_NODE_DOMAIN_ID = random.Random(os.getpid() ^ time.time_ns()).sample(range(60, 80), 2)
STREAM_W, STREAM_H = 640, 360
MAX_PROMPTS = 4
MIN_BOX = 4
GREY = 128
ALPHA = 0.45
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic", "--disable-dev-shm-usage",
]
WAIT_S = 90.0  # generous: a loaded 2-core machine; never a timing assertion, only a give-up


def _apt_install(packages: list[str]) -> str:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    out = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *packages], env=env,
                         capture_output=True, text=True, timeout=1200)
    if out.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        out = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *packages], env=env,
                             capture_output=True, text=True, timeout=1200)
    return out.stdout[-2000:] + out.stderr[-2000:]


def _browser_paths() -> tuple[str, str]:
    """Chromium and chromedriver, installed with apt-get when missing (root only), else skip."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        if os.geteuid() == 0 and shutil.which("apt-get"):
            log = _apt_install(["chromium", "chromium-driver"])
            chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
            if not (chromium and driver):
                pytest.skip(f"chromium/chromium-driver could not be installed with apt-get: {log}")
        else:
            pytest.skip("chromium and chromium-driver are missing and cannot be installed here "
                        "(needs root and apt-get): `apt-get install chromium chromium-driver`")
    return chromium, driver


def _import_selenium():
    try:
        import selenium  # noqa: F401
    except ImportError:
        pin = next((line.strip() for line in (REPO / "requirements/test.txt").read_text().splitlines()
                    if line.startswith("selenium")), "selenium")
        out = subprocess.run([sys.executable, "-m", "pip", "install", pin], capture_output=True, text=True,
                             timeout=600)
        if out.returncode != 0:
            pytest.skip(f"selenium is not installed and `pip install {pin}` failed: {out.stderr[-500:]}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    return webdriver, Service


class Proc:
    """A child process whose output lines are collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.proc = start_group(args, env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines[-60:])

    def stop(self) -> None:
        stop_group(self.proc, timeout=15)


def wait_for(predicate, what: str, timeout: float = WAIT_S, procs: tuple[Proc, ...] = ()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for proc in procs:
            if proc.proc.poll() is not None:
                pytest.fail(f"a process exited while waiting for {what}:\n{proc.output()}")
        time.sleep(0.1)
    logs = "\n---\n".join(p.output() for p in procs)
    pytest.fail(f"gave up waiting for {what} after {timeout:.0f} s\n{logs}")


class Rig:
    def __init__(self, ui: Proc, standin: Proc, url: str, procs: tuple[Proc, ...]) -> None:
        self.ui, self.standin, self.url, self.procs = ui, standin, url, procs

    def prompt_sets(self) -> list[list[list[int]]]:
        """Every RoiPromptArray that reached ROS, as [[id, x, y, w, h], ...], oldest first."""
        sets = []
        for line in list(self.standin.lines):
            if line.startswith("{"):
                record = json.loads(line)
                if "prompts" in record:
                    sets.append(record["prompts"])
        return sets

    def wait_set(self, predicate, what: str, since: int = 0):
        # Wrapped in a list: an empty set is a valid answer, and falsy.
        found = wait_for(lambda: next(([s] for s in self.prompt_sets()[since:] if predicate(s)), None), what,
                         procs=self.procs)
        return found[0]


@contextlib.contextmanager
def rig_running(tmp: Path, domain_id: int, sensor_model: Path | None = None, rate: float = 10.0,
                standin_args: tuple[str, ...] = ()):
    """The teleop_ui node and the stand-in (and, with a model, the real sensor node answering
    instead of the stand-in); every child is stopped on the way out."""
    nonce = f"teleop-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOG_DIR=str(tmp / "ros_log"), PYTHONUNBUFFERED="1")
    env.pop("ROS_LOCALHOST_ONLY", None)
    procs: list[Proc] = []
    try:
        standin_cmd = [sys.executable, "test/teleop_standin.py", nonce, "--width", str(STREAM_W),
                       "--height", str(STREAM_H), "--rate", str(rate), *standin_args]
        if sensor_model is not None:
            from node_helpers import node_command

            procs.append(Proc(node_command("picosam3_ros.nodes.sensor_node", {
                "model": str(sensor_model), "camera": "none", "backend": "onnx"},
                REPO / "config" / "sensor.yaml"), env))
            standin_cmd.append("--frames-only")
        standin = Proc(standin_cmd, env)
        ui = Proc([sys.executable, "-m", "picosam3_ros.nodes.teleop_ui_node", "--ros-args",
                   "-p", "port:=0", "-p", "bind_address:=127.0.0.1", "-p", "image_topic:=image",
                   "-p", f"max_prompts:={MAX_PROMPTS}", "-p", f"min_box_size:={MIN_BOX}",
                   "-p", "republish_period:=0.5", "-p", "max_prompt_rate:=5.0",
                   "-p", "prompt_burst:=10"], env)
        procs += [standin, ui]
        url = wait_for(lambda: next((m.group(0) for line in list(ui.lines)
                                     if (m := re.search(r"http://127\.0\.0\.1:\d+/", line))), None),
                       "the teleop_ui URL in its log", procs=tuple(procs))
        yield Rig(ui, standin, url, tuple(procs))
    finally:
        for proc in reversed(procs):
            proc.stop()


@contextlib.contextmanager
def browser_on(rig: Rig, tmp: Path, wait_for_stream: bool = True):
    """Headless Chromium (Selenium + chromium-driver) with the page loaded and the stream live."""
    chromium, chromedriver = _browser_paths()
    webdriver, Service = _import_selenium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tmp / "chromium-profile"
    profile.mkdir()
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1000,800"]:
        options.add_argument(flag)
    service = Service(executable_path=chromedriver, log_output=str(tmp / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(60)
        driver.get(rig.url)
        wait_for(lambda: not wait_for_stream or driver.execute_script(
            "const img = document.getElementById('stream');"
            "return img.complete && img.naturalWidth > 0 && window.getComputedStyle("
            "document.getElementById('waiting')).display === 'none';"),
            "the live stream in the page", procs=rig.procs)
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    with rig_running(tmp_path_factory.mktemp("teleop"), DOMAIN_ID) as running_rig:
        yield running_rig


@pytest.fixture(scope="module")
def browser(rig, tmp_path_factory):
    with browser_on(rig, tmp_path_factory.mktemp("browser")) as driver:
        yield driver


# ---- helpers that act like an operator ------------------------------------------------------
def stage_rect(driver) -> dict:
    return driver.execute_script(
        "const r = document.getElementById('overlay').getBoundingClientRect();"
        "return {left: r.left, top: r.top, width: r.width, height: r.height};")


def pointer_drag(driver, points: list[tuple[int, int]]) -> None:
    """Press at points[0], move through the rest, release at the last (viewport pixels)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    chain = ActionChains(driver)
    builder = ActionBuilder(driver)
    pointer = builder.pointer_action
    pointer.move_to_location(*points[0])
    pointer.pointer_down()
    for point in points[1:]:
        pointer.move_to_location(*point)
    pointer.pointer_up()
    builder.perform()
    chain.reset_actions()


def drag_fraction(driver, fx0: float, fy0: float, fx1: float, fy1: float) -> tuple[float, ...]:
    """Drag between two points given as fractions of the image; return the box expected in
    stream pixels (x, y, w, h) from where the pointer really went (whole viewport pixels)."""
    r = stage_rect(driver)
    p0 = (round(r["left"] + fx0 * r["width"]), round(r["top"] + fy0 * r["height"]))
    p1 = (round(r["left"] + fx1 * r["width"]), round(r["top"] + fy1 * r["height"]))
    mid = ((p0[0] + p1[0]) // 2, (p0[1] + p1[1]) // 2)
    pointer_drag(driver, [p0, mid, p1])
    sx, sy = STREAM_W / r["width"], STREAM_H / r["height"]
    x0, x1 = sorted(((p0[0] - r["left"]) * sx, (p1[0] - r["left"]) * sx))
    y0, y1 = sorted(((p0[1] - r["top"]) * sy, (p1[1] - r["top"]) * sy))
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, STREAM_W), min(y1, STREAM_H)
    return x0, y0, x1 - x0, y1 - y0


def assert_roi_close(roi: list[int], expected: tuple[float, ...], driver) -> None:
    r = stage_rect(driver)
    # One CSS pixel of pointer rounding, scaled to stream pixels, plus the outward pixel snap.
    tol = max(STREAM_W / r["width"], STREAM_H / r["height"]) + 1.5
    assert all(abs(a - b) <= tol for a, b in zip(roi, expected)), (roi, expected, tol)


def post_from_page(driver, body: dict) -> int:
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/prompts', {method: 'POST', headers: {'Content-Type': 'application/json'},"
        " body: JSON.stringify(arguments[0])}).then(r => done(r.status), e => done(-1));", body)


def page_state(driver) -> dict:
    return json.loads(driver.execute_script("return fetch('/api/state').then(r => r.text());"))


def clear_prompts(rig: Rig, driver) -> int:
    """Press 'Clear all' and wait for the empty set in ROS; return the count of sets seen so far."""
    since = len(rig.prompt_sets())
    if not page_state(driver)["prompts"]:
        return since  # nothing to clear: the page publishes nothing
    driver.find_element("id", "clear").click()
    rig.wait_set(lambda s: s == [], "an empty prompt set after 'Clear all'", since)
    return len(rig.prompt_sets())


def page_rows(driver) -> dict:
    return driver.execute_script(
        "const out = {};"
        "for (const tr of document.querySelectorAll('#prompt-rows tr')) {"
        "  out[tr.dataset.promptId] = {status: tr.querySelector('.status').textContent,"
        "    score: (tr.querySelector('.score') || {}).textContent || ''}; }"
        "return out;")


def stage_pixel(driver, fx: float, fy: float) -> np.ndarray:
    """RGB of the page at a point of the image, from a real screenshot of the stage."""
    png = driver.find_element("id", "stage").screenshot_as_png
    shot = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    h, w = shot.shape[:2]
    patch = shot[int(fy * h) - 2: int(fy * h) + 3, int(fx * w) - 2: int(fx * w) + 3]
    return patch.reshape(-1, 3).mean(axis=0)[::-1]


def tinted(prompt_id: int, under: float = GREY) -> np.ndarray:
    return np.array(prompt_color(prompt_id)) * ALPHA + under * (1 - ALPHA)


def all_sets_valid(rig: Rig) -> None:
    for prompt_set in rig.prompt_sets():
        assert len(prompt_set) <= MAX_PROMPTS, prompt_set
        assert len({p[0] for p in prompt_set}) == len(prompt_set), prompt_set
        for pid, x, y, w, h in prompt_set:
            assert pid > 0 and w >= MIN_BOX and h >= MIN_BOX, prompt_set
            assert x >= 0 and y >= 0 and x + w <= STREAM_W and y + h <= STREAM_H, prompt_set


# ---- the tests ---------------------------------------------------------------------------------
def test_drag_publishes_a_prompt_and_the_mask_appears(rig, browser):
    since = clear_prompts(rig, browser)
    expected = drag_fraction(browser, 0.20, 0.25, 0.45, 0.75)
    published = rig.wait_set(lambda s: len(s) == 1, "one prompt published on `prompts`", since)
    pid, *roi = published[0]
    assert_roi_close(roi, expected, browser)

    # The page shows the result for it: status, score, backend and latency.
    wait_for(lambda: page_rows(browser).get(str(pid), {}).get("status") == "OK", "status OK in the table",
             procs=rig.procs)
    assert page_rows(browser)[str(pid)]["score"] == "0.900"
    status_line = browser.find_element("id", "status").text
    assert "standin" in status_line and "7.5 ms" in status_line

    # The mask overlay is drawn on the picture: the middle of the box turns the prompt's colour,
    # the picture away from it stays grey.
    centre = (0.325, 0.50)
    wait_for(lambda: np.abs(stage_pixel(browser, *centre) - tinted(pid)).max() < 25,
             "the mask overlay in the prompt's colour at the box centre", procs=rig.procs)
    assert np.abs(stage_pixel(browser, 0.85, 0.85) - GREY).max() < 12

    state = page_state(browser)
    print(f"\nframe rate served to the browser: {state['stream']['sent_fps']:.1f} fps "
          f"(encoded {state['stream']['encoded_fps']:.1f} fps; stand-in publishes 10 fps)")
    all_sets_valid(rig)


def test_several_prompts_and_click_to_remove(rig, browser):
    since = clear_prompts(rig, browser)
    drag_fraction(browser, 0.05, 0.10, 0.30, 0.45)
    first = rig.wait_set(lambda s: len(s) == 1, "the first prompt", since)[0][0]
    drag_fraction(browser, 0.55, 0.50, 0.90, 0.90)
    both = rig.wait_set(lambda s: len(s) == 2, "two prompts", since)
    second = [p[0] for p in both if p[0] != first][0]
    wait_for(lambda: len(browser.find_elements("css selector", ".prompt-box")) == 2, "two boxes on the page")

    # Both masks are drawn, each in its own colour.
    wait_for(lambda: np.abs(stage_pixel(browser, 0.175, 0.275) - tinted(first)).max() < 25
             and np.abs(stage_pixel(browser, 0.725, 0.70) - tinted(second)).max() < 25,
             "both masks in their colours", procs=rig.procs)

    # A click on the first box removes it (and only it).
    since = len(rig.prompt_sets())
    browser.find_element("css selector", f".prompt-box[data-prompt-id='{first}']").click()
    remaining = rig.wait_set(lambda s: [p[0] for p in s] == [second], "the set without the clicked prompt",
                             since)
    assert remaining[0][0] == second
    wait_for(lambda: not browser.find_elements("css selector", f".prompt-box[data-prompt-id='{first}']"),
             "the removed box gone from the page")
    # Every set published in between was either both prompts or the second alone.
    assert all([p[0] for p in s] in ([first, second], [second]) for s in rig.prompt_sets()[since:])
    all_sets_valid(rig)


def test_bad_input_from_the_page_never_reaches_ros(rig, browser):
    since = clear_prompts(rig, browser)
    r = stage_rect(browser)
    inside = (round(r["left"] + 0.5 * r["width"]), round(r["top"] + 0.5 * r["height"]))
    # A click (zero-size drag) on the picture, and a drag that starts outside the image.
    pointer_drag(browser, [inside, inside])
    outside = (round(r["left"] + r["width"] + 40), round(r["top"] + 0.3 * r["height"]))
    pointer_drag(browser, [outside, inside])
    # A drag that runs off the bottom-right corner: clipped to the frame.
    expected = drag_fraction(browser, 0.70, 0.60, 1.30, 1.40)
    clipped = rig.wait_set(lambda s: len(s) == 1, "the clipped prompt", since)[0]
    assert_roi_close(clipped[1:], expected, browser)
    assert clipped[1] + clipped[3] == STREAM_W and clipped[2] + clipped[4] == STREAM_H
    # Neither the click nor the outside drag made a prompt (every set since has just this one).
    assert all(s in ([], [clipped]) for s in rig.prompt_sets()[since:])

    # Crafted requests from the page: zero size, outside, NaN-like, unknown prompt id.
    size = {"display_width": 100, "display_height": 100}
    bad = [
        {"action": "add", "x0": 10, "y0": 10, "x1": 10, "y1": 10, **size},
        {"action": "add", "x0": 200, "y0": 10, "x1": 300, "y1": 50, **size},
        {"action": "add", "x0": None, "y0": 10, "x1": 30, "y1": 50, **size},
        {"action": "remove", "id": 999999},
    ]
    assert [post_from_page(browser, body) for body in bad] == [400, 400, 400, 400]

    # A flood of clicks: 40 adds at once. The rate limit and max_prompts hold.
    statuses = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const reqs = [];"
        "for (let i = 0; i < 40; i++) reqs.push(fetch('/api/prompts', {method: 'POST',"
        " headers: {'Content-Type': 'application/json'}, body: JSON.stringify({action: 'add',"
        " x0: 5 + i, y0: 5, x1: 40 + i, y1: 40, display_width: 320, display_height: 180})})"
        ".then(r => r.status));"
        "Promise.all(reqs).then(done, () => done(null));")
    assert statuses is not None and statuses.count(429) > 0 and statuses.count(200) <= MAX_PROMPTS - 1
    rig.wait_set(lambda s: len(s) == MAX_PROMPTS, "the prompt set filled up to max_prompts", since)
    state = page_state(browser)
    assert len(state["prompts"]) == MAX_PROMPTS and state["rejected"].get("rate_limited", 0) > 0
    all_sets_valid(rig)


@pytest.mark.parametrize("window", [(620, 900), (1600, 1000)], ids=["narrow", "wide"])
def test_coordinates_follow_window_size_and_stream_resolution(rig, browser, window):
    browser.set_window_size(*window)
    wait_for(lambda: abs(stage_rect(browser)["width"] / stage_rect(browser)["height"] - STREAM_W / STREAM_H)
             < 0.01, "the stage at the stream's aspect ratio")
    r = stage_rect(browser)
    assert abs(r["width"] - STREAM_W) > 20  # the display size really differs from the stream size
    since = clear_prompts(rig, browser)
    expected = drag_fraction(browser, 0.30, 0.20, 0.60, 0.80)
    pid, *roi = rig.wait_set(lambda s: len(s) == 1, "the prompt drawn after resizing", since)[0]
    # Same fractions of the image, same stream pixels, whatever the window size.
    assert_roi_close(roi, (0.30 * STREAM_W, 0.20 * STREAM_H, 0.30 * STREAM_W, 0.60 * STREAM_H), browser)
    assert_roi_close(roi, expected, browser)
    # The box drawn on the page sits where the operator dragged it.
    wait_for(lambda: browser.find_elements("css selector", f".prompt-box[data-prompt-id='{pid}']"),
             "the new box on the page")
    box = browser.execute_script(
        "const b = document.querySelector(`.prompt-box[data-prompt-id='${arguments[0]}']`)"
        ".getBoundingClientRect(); return {left: b.left, top: b.top, width: b.width, height: b.height};", pid)
    assert abs(box["left"] - (r["left"] + 0.30 * r["width"])) <= 3
    assert abs(box["width"] - 0.30 * r["width"]) <= 4
    wait_for(lambda: np.abs(stage_pixel(browser, 0.45, 0.50) - tinted(pid)).max() < 25,
             "the mask under the box after resizing", procs=rig.procs)
    all_sets_valid(rig)


def test_with_the_real_sensor_node(tmp_path):
    """The same page against the real sensor node (CPU backend) and a known-output model: a centred
    disk in every crop, so the mask sits in the middle of the dragged box."""
    from node_helpers import write_disk_model

    model = write_disk_model(tmp_path / "model")
    with rig_running(tmp_path, REAL_NODE_DOMAIN_ID, sensor_model=model) as real, \
            browser_on(real, tmp_path) as driver:
        expected = drag_fraction(driver, 0.30, 0.30, 0.70, 0.70)
        pid, *roi = real.wait_set(lambda s: len(s) == 1, "the prompt published to the sensor node")[0]
        assert_roi_close(roi, expected, driver)
        wait_for(lambda: page_rows(driver).get(str(pid), {}).get("status") == "OK",
                 "status OK from the sensor node in the table", procs=real.procs)
        assert float(page_rows(driver)[str(pid)]["score"]) > 0.9  # sigmoid(8) inside the disk
        assert "backend: onnx" in driver.find_element("id", "status").text
        # The frame is white in the middle: the mask tints white there, the grey border stays grey.
        wait_for(lambda: np.abs(stage_pixel(driver, 0.5, 0.5) - tinted(pid, under=255)).max() < 25,
                 "the sensor node's mask drawn at the box centre", procs=real.procs)
        assert np.abs(stage_pixel(driver, 0.1, 0.1) - GREY).max() < 12
        all_sets_valid(real)


def test_the_box_is_drawn_where_the_node_followed_it(tmp_path):
    """Drag once: the page draws the prompt's box where the node followed it (Segmentation.box), keeps
    republishing the dragged box unchanged (a keep-alive), and a drag that starts on the box gives
    that prompt a new box (same id)."""
    shift = 96  # stream px: the stand-in answers like a node that followed the object 96 px right
    with rig_running(tmp_path, REAL_NODE_DOMAIN_ID, standin_args=("--follow-shift", str(shift))) as moved, \
            browser_on(moved, tmp_path) as driver:
        expected = drag_fraction(driver, 0.10, 0.30, 0.30, 0.60)
        pid, *roi = moved.wait_set(lambda s: len(s) == 1, "the dragged prompt")[0]
        assert_roi_close(roi, expected, driver)
        r = stage_rect(driver)

        def drawn_left() -> float:
            return driver.execute_script(
                "const b = document.querySelector(`.prompt-box[data-prompt-id='${arguments[0]}']`);"
                "return b ? b.getBoundingClientRect().left : -1;", pid)

        followed_left = r["left"] + (roi[0] + shift) * r["width"] / STREAM_W
        wait_for(lambda: abs(drawn_left() - followed_left) <= 3, "the box drawn at the followed place",
                 procs=moved.procs)
        assert "(followed)" in driver.execute_script(
            "return document.querySelector(`#prompt-rows tr[data-prompt-id='${arguments[0]}'] .box`)"
            ".textContent;", pid)
        # The mask is where the object went, not under the dragged box.
        fx = (roi[0] + shift + roi[2] / 2) / STREAM_W
        wait_for(lambda: np.abs(stage_pixel(driver, fx, 0.45) - tinted(pid)).max() < 25,
                 "the mask at the followed box", procs=moved.procs)
        # Republished sets are the dragged box, unchanged: keep-alives that do not reset a follower.
        since = len(moved.prompt_sets())
        moved.wait_set(lambda s: len(s) == 1, "a republished set", since)
        assert all(s == [[pid, *roi]] for s in moved.prompt_sets()[since:])
        # A drag that starts on the (followed) box gives the same prompt a new box.
        start = (roi[0] + shift + roi[2] / 2) / STREAM_W
        since = len(moved.prompt_sets())
        drag_fraction(driver, start, 0.40, start + 0.15, 0.80)
        replaced = moved.wait_set(lambda s: len(s) == 1 and s[0][1:] != roi, "the prompt's new box", since)
        assert replaced[0][0] == pid
        all_sets_valid(moved)


def test_page_before_any_frame(tmp_path):
    """No camera yet: the page loads, says it is waiting, and a drag publishes nothing."""
    with rig_running(tmp_path, REAL_NODE_DOMAIN_ID, rate=0) as idle, \
            browser_on(idle, tmp_path, wait_for_stream=False) as driver:
        waiting = driver.find_element("id", "waiting")
        wait_for(lambda: "Waiting for camera frames on /image" in waiting.text, "the waiting notice")
        r = stage_rect(driver)
        pointer_drag(driver, [(round(r["left"] + 0.2 * r["width"]), round(r["top"] + 0.2 * r["height"])),
                              (round(r["left"] + 0.6 * r["width"]), round(r["top"] + 0.7 * r["height"]))])
        message = driver.find_element("id", "message")
        wait_for(lambda: "no camera frame yet" in message.text, "the page explaining why nothing was added")
        state = page_state(driver)
        assert state["prompts"] == [] and state["rejected"] == {"invalid": 1}  # refused by the node
        assert idle.prompt_sets() == []  # nothing reached ROS
