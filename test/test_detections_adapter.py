"""The detections adapter: detector boxes -> RoiPromptArray, over DDS with a real process.

vision_msgs has no wheel here, so the adapter is tested with ``picosam3_test_vision_msgs``
(test/interfaces/): the vision_msgs 4.x Detection2DArray field layout under another package
name. It is built once with colcon into build/test_interfaces/<hash of its files>/ (about a
minute; later runs reuse it; node_helpers.build_interfaces) and never installed with the workspace.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace as NS

import pytest
from node_helpers import (
    INTERFACES,
    REPO,
    RosClient,
    build_interfaces,
    node_command,
    ros_env,
    set_parameter,
    start_process,
    status_mb,
    stop_process,
    with_prefix,
)

from picosam3_ros.core.detections import (
    Detection,
    DetectionFilter,
    TrackIds,
    read_detections,
    select,
    to_prompts,
)

DOMAIN = 90


# --- the ROS-free core -------------------------------------------------------------------------
def vision_detection(class_id, score, track, cx, cy, w, h):
    hypothesis = NS(hypothesis=NS(class_id=class_id, score=score))
    bbox = NS(center=NS(position=NS(x=cx, y=cy), theta=0.0), size_x=w, size_y=h)
    return NS(results=[hypothesis], bbox=bbox, id=track)


def yolo_detection(class_name, score, track, cx, cy, w, h):
    bbox = NS(center=NS(position=NS(x=cx, y=cy), theta=0.0), size=NS(x=w, y=h))
    return NS(class_id=0, class_name=class_name, score=score, id=track, bbox=bbox)


def test_read_filter_rank_and_stable_ids():
    msg = NS(detections=[
        vision_detection("person", 0.6, "", 100.0, 80.0, 40.0, 60.0),
        vision_detection("cup", 0.9, "", 300.5, 200.5, 21.0, 10.0),
        vision_detection("dog", 0.99, "", 10.0, 10.0, 4.0, 4.0),
        vision_detection("person", 0.2, "", 50.0, 50.0, 8.0, 8.0),
        vision_detection("person", 0.7, "", 1.0, 1.0, float("nan"), 3.0),  # malformed: left out
        vision_detection("person", 0.8, "", 1.0, 1.0, 0.0, 3.0),  # zero size: left out
    ])
    rule = DetectionFilter(("person", "cup"), 0.5, 0)
    kept = select(read_detections(msg, rule.classes), rule)
    assert [(d.class_id, d.score) for d in kept] == [("cup", 0.9), ("person", 0.6)]
    prompts = to_prompts(kept, TrackIds())
    # Ranks as ids (no tracking ids); boxes rounded outwards: 290..311 x 195..206.
    assert prompts == [(1, (290, 195, 21, 11)), (2, (80, 50, 40, 60))]
    assert len(select(read_detections(msg), DetectionFilter((), 0.0, 2))) == 2


def test_yolo_layout_and_track_ids():
    tracks = TrackIds()
    first = NS(detections=[yolo_detection("cup", 0.9, "7", 20.0, 20.0, 10.0, 10.0),
                           yolo_detection("person", 0.8, "3", 60.0, 60.0, 10.0, 10.0)])
    second = NS(detections=[yolo_detection("person", 0.95, "3", 62.0, 61.0, 10.0, 10.0),
                            yolo_detection("bottle", 0.5, "9", 5.0, 5.0, 4.0, 4.0),
                            yolo_detection("cup", 0.6, "7", 21.0, 20.0, 10.0, 10.0)])
    rule = DetectionFilter((), 0.0, 0)
    kept = select(read_detections(first), rule)
    ids_first = {d.track_id: pid for d, (pid, _) in zip(kept, to_prompts(kept, tracks))}
    kept = select(read_detections(second), rule)
    ids_second = {d.track_id: pid for d, (pid, _) in zip(kept, to_prompts(kept, tracks))}
    assert ids_second["7"] == ids_first["7"] and ids_second["3"] == ids_first["3"]
    assert ids_second["9"] not in (ids_first["7"], ids_first["3"])
    assert [d.class_id for d in select(read_detections(second, ("cup",)), rule)] == ["cup"]


# --- the node over DDS -------------------------------------------------------------------------
def _flat(prompt):
    roi = prompt.roi
    return NS(id=prompt.id, roi=NS(x=roi.x_offset, y=roi.y_offset, w=roi.width, h=roi.height))


@pytest.fixture(scope="module")
def interfaces() -> Path:
    return build_interfaces({"picosam3_test_vision_msgs": INTERFACES / "picosam3_test_vision_msgs"})


def test_adapter_turns_detections_into_prompts(tmp_path, interfaces):
    from picosam3_msgs.msg import RoiPromptArray

    nonce = f"cam-{uuid.uuid4().hex[:8]}"
    env = with_prefix(ros_env(DOMAIN), interfaces)
    params = {"detection_type": "picosam3_test_vision_msgs/msg/Detection2DArray", "classes": "person, cup",
              "min_score": 0.5, "top_k": 8}
    adapter = start_process(node_command("picosam3_ros.nodes.detections_adapter_node", params), env,
                            tmp_path / "adapter.log")
    peer = subprocess.Popen([sys.executable, str(REPO / "test" / "detections_peer.py"), nonce], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            text=True, cwd=REPO, start_new_session=True)
    client = RosClient(DOMAIN, "detections_test")
    try:
        arrays = client.collect(RoiPromptArray, "prompts")

        def latest():
            mine = [a for a in arrays if a.header.frame_id == nonce]
            if not mine:
                return None
            return {p.id: (p.roi.x, p.roi.y, p.roi.w, p.roi.h) for p in map(_flat, mine[-1].prompts)}

        def seen(expected_len):
            return lambda: latest() is not None and len(latest()) == expected_len

        assert client.wait_for(seen(2), proc=adapter), (tmp_path / "adapter.log").read_text()
        phase_a = latest()
        # person 0.9 (track-a) and cup 0.8 (track-b); the 0.3 person and the dog are filtered out.
        assert sorted(phase_a.values()) == [(80, 50, 40, 60), (290, 195, 21, 11)]
        id_a = next(k for k, v in phase_a.items() if v == (80, 50, 40, 60))
        id_b = next(k for k, v in phase_a.items() if v == (290, 195, 21, 11))

        peer.stdin.write("B\n")
        peer.stdin.flush()
        assert client.wait_for(seen(3), proc=adapter)
        phase_b = latest()
        assert phase_b[id_a] == (90, 60, 40, 60) and phase_b[id_b] == (300, 205, 20, 10)  # same ids, moved
        (new_id,) = set(phase_b) - {id_a, id_b}
        assert phase_b[new_id] == (485, 85, 30, 30)

        # Run time: top_k 1 keeps the best detection only; a bad value is refused with a reason.
        refused = set_parameter(client, "/detections_adapter", "top_k", 1000)
        assert not refused.successful and "top_k" in refused.reason
        assert set_parameter(client, "/detections_adapter", "top_k", 1).successful
        assert client.wait_for(seen(1), proc=adapter)
        assert latest() == {id_a: (90, 60, 40, 60)}

        peer.stdin.write("empty\n")
        peer.stdin.flush()
        assert client.wait_for(seen(0), proc=adapter)  # no detections: an empty set clears the prompts
    finally:
        client.close()
        peer.stdin.close()
        stop_process(peer)
        assert stop_process(adapter) == 0
    log = (tmp_path / "adapter.log").read_text()
    assert "Traceback" not in log, log


def test_adapter_without_the_message_package_says_what_to_install(tmp_path):
    cmd = node_command("picosam3_ros.nodes.detections_adapter_node",
                       {"detection_type": "no_such_vision_msgs/msg/Detection2DArray"})
    result = subprocess.run(cmd, env=ros_env(DOMAIN + 1), capture_output=True, text=True, timeout=60,
                            cwd=REPO)
    assert result.returncode == 2
    assert "no_such_vision_msgs" in result.stderr and "install" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


# --- issue 21: numbers, floods, ids --------------------------------------------------------------
HOSTILE_DOMAIN = 19


def test_numbers_ids_and_duplicates_in_the_core():
    from picosam3_ros.core.detections import TRACK_ID_BASE, Dropped

    nan, inf = float("nan"), float("inf")
    boxes = [(1e300, 80, 40, 60), (nan, 80, 40, 60), (100, inf, 40, 60), (2.0**40, 80, 40, 60),
             (100, 2.0**63, 40, 60), (100, 80, 2.0**32 + 40, 60), (100, 80, 1e10, 60), (100, 80, 0, 60),
             (100, 80, -40, 60), (-100, 80, 40, 60), (100, 80, 10**400, 60)]
    msg = NS(detections=[vision_detection("person", 0.9, "", *box) for box in boxes]
             + [vision_detection("person", nan, "", 100, 80, 40, 60),
                vision_detection("person", 0.5, "", 100.0, 80.0, 40.0, 60.0)])
    dropped = Dropped()
    kept = read_detections(msg, (), dropped)
    assert [d.box_xywh for d in kept] == [(80.0, 50.0, 40.0, 60.0)]
    assert dropped == {"not finite": 4, "beyond 16384 px": 5, "zero size": 2, "outside the frame": 1}
    # Track ids: stable, above the ranks, duplicates in one message dropped, long ids bounded.
    tracks = TrackIds(capacity=100)
    first = [Detection((0, 0, 10, 10), "a", 0.9, "1"), Detection((5, 5, 10, 10), "a", 0.95, ""),
             Detection((9, 9, 10, 10), "a", 0.8, "x" * 100_000), Detection((1, 1, 10, 10), "a", 0.7, "1")]
    dropped = Dropped()
    ids = to_prompts(select(first, DetectionFilter()), tracks, dropped)
    assert dropped == {"duplicate track id": 1} and len(ids) == 3
    again = to_prompts(select(list(reversed(first)), DetectionFilter()), tracks)
    assert ids == again and ids[0][0] == 1 and all(pid >= TRACK_ID_BASE for pid, _ in ids[1:])
    for i in range(5000):
        tracks.prompt_id(f"{i}-" + "y" * 100_000)
    assert len(tracks._ids) == 100 and max(len(k) for k in tracks._ids) <= 64 + 1
    # top_k is a heap of k: the same answer as the whole sort.
    many = [Detection((i, 0, 5, 5), "a", (i * 7919 % 1000) / 1000, "") for i in range(3000)]
    assert select(many, DetectionFilter((), 0.0, 8)) == sorted(many, key=lambda d: -d.score)[:8]


def test_hostile_detections_against_the_adapter_process(tmp_path, interfaces):
    from picosam3_msgs.msg import RoiPromptArray
    from picosam3_ros.core.detections import TRACK_ID_BASE

    nonce = f"cam-{uuid.uuid4().hex[:8]}"
    env = with_prefix(ros_env(HOSTILE_DOMAIN), interfaces)
    params = {"detection_type": "picosam3_test_vision_msgs/msg/Detection2DArray", "classes": "person",
              "min_score": 0.5, "top_k": 8}
    log_path = tmp_path / "adapter.log"
    adapter = start_process(node_command("picosam3_ros.nodes.detections_adapter_node", params), env, log_path)
    peer = subprocess.Popen([sys.executable, str(REPO / "test" / "detections_peer.py"), nonce], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            text=True, cwd=REPO, start_new_session=True)
    client = RosClient(HOSTILE_DOMAIN, "hostile_detections_test")

    def phase(name: str) -> int:
        with client.lock:
            seen = len(arrays)
        peer.stdin.write(name + "\n")
        peer.stdin.flush()
        return seen

    def boxes(array) -> dict:
        return {(p.roi.x, p.roi.y, p.roi.w, p.roi.h): p.id for p in map(_flat, array.prompts)}

    try:
        arrays = client.collect(RoiPromptArray, "prompts")
        mine = lambda since=0: [a for a in arrays[since:] if a.header.frame_id == nonce]  # noqa: E731
        assert client.wait_for(lambda: len(mine()) > 0, proc=adapter), log_path.read_text()
        # Every hostile number is dropped; the valid detection and the 100 kB-id one become prompts.
        since = phase("numbers")
        want = {(80, 50, 40, 60), (290, 195, 20, 10)}
        assert client.wait_for(lambda: any(set(boxes(a)) == want for a in mine(since)), proc=adapter)
        assert client.wait_for(lambda: "detections dropped" in log_path.read_text(), proc=adapter)
        # Two tracks and an untracked detection, reordered every message: the same ids each time.
        since = phase("swap")
        assert client.wait_for(lambda: len(mine(since)) >= 12, proc=adapter)
        with client.lock:
            swaps = [boxes(a) for a in mine(since)[4:]]
        assert all(s == swaps[0] for s in swaps), swaps
        assert set(swaps[0]) == {(80, 50, 40, 60), (280, 50, 40, 60), (480, 50, 40, 60)}
        assert swaps[0][(480, 50, 40, 60)] == 1 and min(swaps[0][(80, 50, 40, 60)],
                                                        swaps[0][(280, 50, 40, 60)]) >= TRACK_ID_BASE
        # One message of 10,000 detections, repeated: the first 1,000 read, the adapter keeps up.
        since = phase("flood")
        assert client.wait_for(lambda: any(len(a.prompts) == 8 for a in mine(since)), proc=adapter)
        since = phase("A")
        assert client.wait_for(lambda: any(len(a.prompts) == 1 for a in mine(since)), proc=adapter)
        # 5,000 unique 100 kB track ids: the adapter's memory stays bounded.
        rss_before = status_mb(adapter.pid)
        since = phase("ids")
        assert client.wait_for(lambda: len(mine(since)) >= 5000 // 30 + 5, timeout=240, proc=adapter)
        growth = status_mb(adapter.pid) - rss_before
        phase("empty")
        assert growth < 100.0, f"RSS grew by {growth:.0f} MB"
        assert adapter.poll() is None
    finally:
        client.close()
        peer.stdin.close()
        stop_process(peer)
        assert stop_process(adapter) == 0
    log = log_path.read_text()
    assert "Traceback" not in log and "cannot read" not in log, log[-3000:]
    for reason in ("not finite", "zero size", "beyond 16384 px", "outside the frame", "duplicate track id",
                   "past max_detections"):
        assert reason in log, (reason, log[-3000:])
