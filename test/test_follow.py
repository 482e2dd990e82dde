"""Following (core/follow.py) on real video: DAVIS 2016 frames through the node's own frame server.

The fixture (test/fixtures/davis, ATTRIBUTION.md) is the first 16 frames of `scooter-black` at
427x240: the scooter moves left and grows. A box held where it was given loses it; the follower
keeps it, on the CPU path and through the emulated IMX500's ROI lag. The thresholds leave room
for another model (the masks are not what is tested, the following is).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from picosam3_ros.backends import BackendConfig, create_backend
from picosam3_ros.backends.frame_server import FrameServer
from picosam3_ros.core.crop import CropRect, crop_rect_for_box
from picosam3_ros.core.follow import (
    FIXED,
    FOLLOW,
    BoxFollower,
    Followers,
    FollowSettings,
    MotionFrame,
    measure,
    track_points,
)
from picosam3_ros.core.metrics import mask_iou
from picosam3_ros.core.model_card import postprocess_in_use
from picosam3_ros.core.pipeline import Prompt, PromptResult, Status, frame_box

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "davis"
FRAMES = 16


def load(k: int) -> tuple[np.ndarray, np.ndarray]:
    rgb = cv2.cvtColor(cv2.imread(str(FIXTURES / f"scooter-black_{k:05d}.jpg")), cv2.COLOR_BGR2RGB)
    gt = cv2.imread(str(FIXTURES / f"scooter-black_{k:05d}.png"), cv2.IMREAD_GRAYSCALE) > 0
    return rgb, gt


def tight_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    rows, cols = np.nonzero(mask)
    return (float(cols.min()), float(rows.min()), float(cols.max() - cols.min() + 1),
            float(rows.max() - rows.min() + 1))


@pytest.fixture(scope="module")
def video():
    return [load(k) for k in range(FRAMES)]


@pytest.fixture(scope="module")
def post():
    return postprocess_in_use(None)


@pytest.fixture(scope="module")
def segmenter():
    return create_backend("onnx", BackendConfig(threads=1))


def full_mask(result: PromptResult, shape) -> np.ndarray:
    mask = np.zeros(shape, bool)
    if result.crop is not None and result.crop_mask is not None:
        rect = result.crop
        mask[rect.y : rect.y_end, rect.x : rect.x_end] = result.crop_mask > 0
    return mask


def cpu_server(segmenter, post, follow: bool) -> FrameServer:
    return FrameServer(segmenter, None, post, follow=follow)


def run_cpu(server: FrameServer, video, prompts) -> list[list[PromptResult]]:
    return [server.serve_image(rgb, prompts).results for rgb, _ in video]


def test_follow_keeps_a_moving_object_that_a_held_box_loses(video, segmenter, post):
    given = tight_box(video[0][1])
    prompt = [Prompt(5, given)]  # the same prompt every frame: a keep-alive never resets the follower
    held = [r[0] for r in run_cpu(cpu_server(segmenter, post, False), video, prompt)]
    followed = [r[0] for r in run_cpu(cpu_server(segmenter, post, True), video, prompt)]
    held_iou = [mask_iou(full_mask(r, gt.shape), gt) for r, (_, gt) in zip(held, video)]
    follow_iou = [mask_iou(full_mask(r, gt.shape), gt) for r, (_, gt) in zip(followed, video)]
    assert all(r.status == Status.OK for r in followed)
    assert held_iou[-1] < 0.35, held_iou  # the scooter has left the held box
    assert follow_iou[-1] >= 0.5 and np.mean(follow_iou) >= np.mean(held_iou) + 0.2, (follow_iou, held_iou)
    # Each result says which box its mask was made for: the followed box, and its crop is that box's.
    assert held[-1].box == given and followed[0].box == given
    last = followed[-1]
    assert last.box != given and last.crop == crop_rect_for_box(last.box, (427, 240))
    centre_x = last.box[0] + last.box[2] / 2
    gt_box = tight_box(video[-1][1])
    assert abs(centre_x - (gt_box[0] + gt_box[2] / 2)) < 0.3 * gt_box[2]  # on the object, not where given


def test_follow_works_through_the_sensor_paths_roi_lag(video, post):
    """The emulated IMX500, frames in order, each once: an ROI takes effect delay + 1 frames late."""
    from picosam3_ros.evaluation.sensor_replay import FollowReplay

    delay = 2
    given = tight_box(video[0][1])
    ious, statuses, boxes = [], [], []
    replay = FollowReplay(None, "", post, delay, 30.0)
    try:
        for rgb, gt in video:
            result = replay.segment(rgb, [Prompt(9, given)])[0]
            statuses.append(result.status)
            boxes.append(result.box)
            ious.append(mask_iou(full_mask(result, gt.shape), gt))
    finally:
        replay.close()
    # The first ROI is written after frame 0 and reaches the network on frame delay + 1.
    assert statuses[: delay + 1] == [Status.NOT_SERVED] * (delay + 1) and statuses[delay + 1] == Status.OK
    assert all(s == Status.OK for s in statuses[delay + 1 :])
    # Later ROIs are written for the box predicted on the frame they take effect on, not the given one.
    assert boxes[-1] != given
    held_last = mask_iou(np.zeros_like(video[-1][1]), video[-1][1])
    assert ious[-1] >= 0.45 and np.mean(ious[delay + 1 :]) >= 0.5, ious
    assert ious[-1] > held_last + 0.3


def test_lost_after_frames_without_an_object_then_a_new_box_restarts(video, segmenter, post):
    """The camera covered (flat frames): the network still outputs a blob, but an unsure one; after
    lost_after such frames the prompt is LOST (no mask, no network work) until a new box arrives."""
    settings = FollowSettings(lost_after=5)
    server = FrameServer(segmenter, None, post, follow=True, follow_settings=settings)
    given = tight_box(video[0][1])
    for rgb, _ in video[:4]:
        assert server.serve_image(rgb, [Prompt(2, given)]).results[0].status == Status.OK
    covered = np.full_like(video[0][0], 128)
    statuses = [server.serve_image(covered, [Prompt(2, given)]).results[0] for _ in range(8)]
    kinds = [r.status for r in statuses]
    assert Status.LOST in kinds, kinds
    first_lost = kinds.index(Status.LOST)
    assert first_lost >= settings.lost_after - 1 and all(k == Status.LOST for k in kinds[first_lost:])
    lost = statuses[-1]
    assert lost.crop is None and lost.crop_mask is None and lost.box is not None
    # The object is back but the box is still the old one (a keep-alive): still LOST.
    rgb, gt = video[8]
    assert server.serve_image(rgb, [Prompt(2, given)]).results[0].status == Status.LOST
    # A new box for the same id re-acquires.
    new_box = tight_box(gt)
    result = server.serve_image(rgb, [Prompt(2, new_box)]).results[0]
    assert result.status == Status.OK and result.box == new_box
    assert mask_iou(full_mask(result, gt.shape), gt) >= 0.5
    rgb, gt = video[9]
    assert server.serve_image(rgb, [Prompt(2, new_box)]).results[0].status == Status.OK


def test_per_prompt_override_of_the_node_default(video, segmenter, post):
    given = tight_box(video[0][1])
    # follow on by default: a FIXED prompt keeps its box, the others follow.
    server = cpu_server(segmenter, post, True)
    results = run_cpu(server, video, [Prompt(1, given, follow=FIXED), Prompt(2, given)])
    assert all(r[0].box == given for r in results)
    assert results[-1][1].box != given
    # follow off by default: only a FOLLOW prompt follows.
    server = cpu_server(segmenter, post, False)
    results = run_cpu(server, video, [Prompt(1, given, follow=FOLLOW), Prompt(2, given)])
    assert results[-1][0].box != given
    assert all(r[1].box == given for r in results)
    # The node's parameter changes at run time: the next frames follow.
    server.followers.default_follow = True
    assert server.serve_image(video[1][0], [Prompt(3, given)]).results[0].box == given  # a new follower
    assert server.serve_image(video[2][0], [Prompt(3, given)]).results[0].box != given


def test_a_changed_box_restarts_the_follower_and_an_unchanged_one_does_not(video, segmenter, post):
    server = cpu_server(segmenter, post, True)
    given = tight_box(video[0][1])
    for rgb, _ in video[:6]:
        followed = server.serve_image(rgb, [Prompt(4, given)]).results[0]
    assert followed.box != given  # keep-alives all along: still following
    new_box = tight_box(video[6][1])
    restarted = server.serve_image(video[6][0], [Prompt(4, new_box)]).results[0]
    assert restarted.box == new_box  # the first mask is made on the box as given (no second pass)
    moved = server.serve_image(video[7][0], [Prompt(4, new_box)]).results[0]
    assert moved.box != new_box
    # Prompts that are gone are forgotten.
    server.serve_image(video[8][0], [])
    assert len(server.followers) == 0


# --- the parts, on synthetic data -------------------------------------------------------------------
def textured(shift: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(3)
    scene = (rng.random((240, 320)) * 255).astype(np.uint8)
    scene = cv2.GaussianBlur(scene, (5, 5), 1.0)
    rgb = np.repeat(np.full((240, 320), 90, np.uint8)[..., None], 3, axis=2)
    x, y = 100 + shift[0], 80 + shift[1]
    patch = scene[80:160, 100:180]
    rgb[y : y + 80, x : x + 80] = patch[..., None]
    return rgb


def test_optical_flow_recovers_a_known_shift():
    settings = FollowSettings()
    before, after = MotionFrame(textured((0, 0)), 0), MotionFrame(textured((7, -4)), 1)
    rect = CropRect(100, 80, 80, 80)
    motion = track_points(before, after, np.ones((80, 80), np.uint8), rect, settings)
    assert motion is not None and motion.points >= 10
    assert abs(motion.shift[0] - 7) < 0.7 and abs(motion.shift[1] + 4) < 0.7
    assert abs(motion.scale - 1.0) < 0.03
    # A region that left the frame gives no motion instead of an error.
    outside = CropRect(400, 80, 80, 80)
    assert track_points(before, after, np.ones((80, 80), np.uint8), outside, settings) is None


def test_follower_moves_with_the_flow_and_predicts_ahead():
    follower = BoxFollower((100, 80, 80, 80), 0)
    rect = CropRect(100, 80, 80, 80)
    follower.keep_region(rect, np.full((80, 80), 255, np.uint8))
    follower.fresh = False
    frames = [MotionFrame(textured((3 * k, 0)), k) for k in range(4)]
    for previous, current in zip(frames, frames[1:]):
        follower.advance(previous, current)
    x, _, w, _ = follower.box()
    assert abs(x - 109) < 1.5 and abs(w - 80) < 3
    ahead = follower.box_for(follower.sequence + 3)  # three frames ahead: the sensor's ROI
    assert abs(ahead[0] - (x + 9)) < 2.0


def test_measure_reads_the_unclipped_mask():
    logits = np.full((96, 96), -8.0, np.float32)
    logits[10:40, 50:90] = 8.0  # partly outside any box in the middle of the crop
    found = measure(logits, CropRect(0, 0, 192, 96), threshold=0.5)
    assert found.area == pytest.approx(30 * 40 * 2.0)
    assert found.centroid == pytest.approx((2.0 * 70.0, 25.0))
    assert found.score > 0.99
    assert measure(np.full((96, 96), -8.0, np.float32), CropRect(0, 0, 96, 96), 0.5) is None


def test_followers_forget_removed_prompts_and_give_lost_ones_no_roi():
    followers = Followers(FollowSettings(lost_after=2))
    frame = textured((0, 0))
    prompts = [Prompt(1, (100, 80, 80, 80)), Prompt(2, (10, 10, 20, 20), follow=FIXED)]
    plan = followers.prepare(prompts, frame, 1)
    assert plan[0].follower is not None and plan[1].follower is None and len(followers) == 1
    for _ in range(2):
        followers.observe(plan[0], None, None, None, 0.5)
    assert plan[0].follower.lost
    assert followers.boxes_for([Prompt(1, (100, 80, 80, 80))], 5) == [None]
    assert followers.boxes_for([Prompt(1, (0, 0, 50, 50))], 5) == [(0.0, 0.0, 50.0, 50.0)]  # a new box
    followers.prepare([], frame, 2)
    assert len(followers) == 0


def test_frame_box_is_whole_pixels_inside_the_frame():
    assert frame_box((10.4, 20.6, 30.2, 40.0), (640, 480)) == (10, 21, 31, 40)
    assert frame_box((-20, -5, 50, 30), (640, 480)) == (0, 0, 30, 25)
    assert frame_box((700, 10, 20, 20), (640, 480)) is None
    assert frame_box(None, (640, 480)) is None
    assert frame_box((float("nan"), 0, 1, 1), (640, 480)) is None
