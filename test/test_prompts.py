"""The prompt store and the ROI scheduler."""

from __future__ import annotations

import math

from picosam3_ros.backends.roi_scheduler import RoiScheduler
from picosam3_ros.core.pipeline import Prompt, Status
from picosam3_ros.core.prompts import MAX_LOGGED_PROBLEMS, MAX_MESSAGE_PROMPTS, MAX_REPORTS, PromptStore

S = 1_000_000_000


def test_set_all_replaces_dedups_and_caps():
    store = PromptStore(max_prompts=3)
    store.set_all([Prompt(1, (0, 0, 5, 5)), Prompt(2, (1, 1, 5, 5)), Prompt(1, (9, 9, 5, 5))])
    assert [(p.prompt_id, p.box_xywh[0]) for p in store.snapshot()] == [(2, 1), (1, 9)]
    change = store.set_all([Prompt(i, (i, 0, 5, 5)) for i in range(10)])
    assert [p.prompt_id for p in store.snapshot()] == [0, 1, 2] and "7 prompts" in change.lines[0]
    assert change.rejected == 7
    plan = store.plan(0)
    assert [r.status for r in plan.reports] == [Status.TOO_MANY_PROMPTS] * 7
    assert store.plan(0).reports == []  # reported once


def test_non_finite_and_negative_boxes_are_rejected_once():
    store = PromptStore()
    change = store.set_all(
        [Prompt(1, (math.nan, 0, 5, 5)), Prompt(2, (0, 0, -3, 5)), Prompt(3, (0, 0, 0, 0))]
    )
    assert len(change.lines) == 2 and change.rejected == 2
    plan = store.plan(0)
    assert {(r.prompt_id, r.status) for r in plan.reports} == {
        (1, Status.INVALID_ROI),
        (2, Status.INVALID_ROI),
    }
    assert [p.prompt_id for p in plan.prompts] == [3]  # zero size: decided per frame by the crop rule


def test_set_one_keeps_the_others():
    store = PromptStore(max_prompts=2)
    store.set_all([Prompt(5, (0, 0, 5, 5))])
    store.set_one(Prompt(0, (1, 1, 5, 5)))
    store.set_one(Prompt(0, (2, 2, 5, 5)))
    assert sorted((p.prompt_id, p.box_xywh[0]) for p in store.snapshot()) == [(0, 2), (5, 0)]
    assert store.set_one(Prompt(9, (0, 0, 1, 1))).lines  # over the cap: refused with a message


def test_a_huge_message_is_read_and_reported_in_bounded_work():
    store = PromptStore(max_prompts=16)
    bad = [Prompt(i, (math.inf, 0, 5, 5)) for i in range(100_000, 100_010)]
    change = store.set_all(bad + [Prompt(i, (i % 300, 0, 5, 5)) for i in range(50_000)], unread=7)
    assert [p.prompt_id for p in store.snapshot()] == list(range(16))
    # Everything is counted; only MAX_MESSAGE_PROMPTS entries were looked at.
    assert change.rejected == 10 + (50_000 - 16) + 7
    assert len(change.lines) <= MAX_LOGGED_PROBLEMS + 2 and sum(len(line) for line in change.lines) < 600
    assert f"{50_000 - 16 + 7} prompts over max_prompts=16" in change.lines[-1]
    reports = store.plan(0).reports
    assert len(reports) == MAX_REPORTS
    assert [r.status for r in reports[:10]] == [Status.INVALID_ROI] * 10  # malformed first
    assert [r.prompt_id for r in reports[10:]] == list(range(16, 16 + MAX_REPORTS - 10))
    assert store.plan(0).reports == []


def test_set_all_reads_at_most_max_message_prompts_entries():
    store = PromptStore(max_prompts=255)
    # Entry MAX_MESSAGE_PROMPTS would have replaced prompt 0 (duplicates: last wins) had it been read.
    prompts = [Prompt(i, (0, 0, 5, 5)) for i in range(MAX_MESSAGE_PROMPTS)] + [Prompt(0, (9, 9, 5, 5))]
    change = store.set_all(prompts)
    assert store.snapshot()[0].box_xywh == (0, 0, 5, 5)
    assert change.rejected == MAX_MESSAGE_PROMPTS - 255 + 1


def test_reports_queued_without_frames_stay_bounded():
    store = PromptStore(max_prompts=1)
    for i in range(10 * MAX_REPORTS):
        store.set_one(Prompt(i, (math.nan, 0, 1, 1)))
    assert len(store.plan(0).reports) == MAX_REPORTS


def test_timeout_reports_stale_once():
    store = PromptStore(timeout_s=1.0)
    store.set_all([Prompt(1, (0, 0, 5, 5), stamp_ns=0), Prompt(2, (0, 0, 5, 5), stamp_ns=S)])
    plan = store.plan(int(1.5 * S))
    assert [p.prompt_id for p in plan.prompts] == [2]
    assert [(r.prompt_id, r.status) for r in plan.reports] == [(1, Status.STALE_PROMPT)]
    assert [r.prompt_id for r in store.plan(int(1.6 * S)).reports] == []


def test_frame_id_mismatch_is_invalid_on_that_frame():
    store = PromptStore()
    store.set_all([Prompt(1, (0, 0, 5, 5), frame_id="left")])
    assert store.plan(0, "right").reports[0].status == Status.INVALID_ROI
    assert store.plan(0, "left").prompts


def test_frame_id_mismatch_is_counted_once_per_received_prompt_with_its_reason():
    store = PromptStore()
    store.set_all([Prompt(1, (0, 0, 5, 5), 10, "detector"), Prompt(2, (0, 0, 5, 5), 10, "camera")])
    first = store.plan(20, "camera")
    assert first.change.rejected == 1
    reason = "prompt 1: prompt frame_id 'detector' != image frame_id 'camera' (INVALID_ROI)"
    assert first.change.lines == [reason]
    again = store.plan(30, "camera")  # the same prompt on the next frame: reported, not counted again
    assert again.reports[0].status == Status.INVALID_ROI and again.change.rejected == 0
    store.set_all([Prompt(1, (0, 0, 5, 5), 40, "detector")])  # the detector sends it again: counted
    assert store.plan(50, "camera").change.rejected == 1
    store.set_all([Prompt(i, (0, 0, 5, 5), 60, "detector") for i in range(10)])
    many = store.plan(70, "camera")
    assert many.change.rejected == 10 and many.change.lines[-1] == "7 more prompts in another frame_id"


def test_round_robin_serves_in_turn_and_skips_invalid():
    scheduler = RoiScheduler("round_robin")
    prompts = [Prompt(1, (0, 0, 10, 10)), Prompt(2, (5000, 0, 10, 10)), Prompt(3, (20, 20, 10, 10))]
    order = [scheduler.choose(prompts, (640, 480))[0].prompt_id for _ in range(4)]
    assert order == [1, 3, 1, 3]


def test_staleness_is_fair_for_still_boxes_and_favours_moving_ones():
    scheduler = RoiScheduler("staleness")
    still = [Prompt(i, (50 * i, 10, 40, 40)) for i in range(1, 4)]
    order = [scheduler.choose(still, (640, 480))[0].prompt_id for _ in range(6)]
    assert sorted(order[:3]) == [1, 2, 3] and order[:3] == order[3:]
    # Prompt 2 jumps by a box width: it is served before the older still prompt.
    moved = [still[0], Prompt(2, (140, 10, 40, 40)), still[2]]
    assert scheduler.choose(moved, (640, 480))[0].prompt_id == 2
