"""Which path serves a frame, when to fall back, and whose mask a sensor output is (ROS-free).

The sensor node drives one :class:`FrameServer` from two threads:

* the camera thread, right after each camera frame: :meth:`FrameServer.program_next_roi`
  (the sooner the next ROI is written, the sooner it is in effect);
* the worker thread: :meth:`FrameServer.serve_frame` for camera frames and
  :meth:`FrameServer.serve_image` for frames from the ``image`` topic.

Paths: a camera that runs the network (``SensorFrameSource.runs_network``, the IMX500)
serves its own frames, one ROI per frame; everything else (image topic, a plain
camera, or the sensor after a fallback) goes through the CPU segmenter, every prompt
on every frame. The first frame that carries a sensor-side error (no tensor for
several frames, an undecodable output, an ROI write that failed) switches the server
to the CPU for good: the frames keep coming, the network no longer runs on them.

Each prompt's crop is computed once per box and stream size (``core.crop``) and shared
by the two threads: the ROI the camera thread programs and the validity the worker
reports come from the same computation.

Following (``core.follow``): followed prompts are segmented on their followed box. On the CPU
path every followed prompt is moved to the frame by the optical flow, segmented, corrected from
its mask and (``FollowSettings.second_pass``) segmented again on the corrected box. On the sensor
path the camera thread writes each ROI for the box predicted on the frame where it takes effect
(``roi_apply_delay_frames + 1`` frames after the frame just captured); the worker moves every
follower on every frame and corrects the one the sensor served, with the box its ROI was
written for. A LOST prompt is not segmented and gets no ROI until it is given a new box.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from picosam3_ros.backends import AUTO, backend_spec, create_backend, resolve_auto
from picosam3_ros.backends.roi_scheduler import RoiScheduler
from picosam3_ros.core.backend_api import (
    BackendConfig,
    CropSegmenter,
    ModelLoadError,
    ModelMismatchError,
    SensorFrame,
    SensorFrameSource,
)
from picosam3_ros.core.crop import CropRect, InvalidRoiError
from picosam3_ros.core.follow import FollowedPrompt, Followers, FollowSettings
from picosam3_ros.core.pipeline import Prompt, PromptResult, Status, prompt_crop, sensor_frame_results
from picosam3_ros.core.postprocess import RAW_POSTPROCESS, Postprocess
from picosam3_ros.core.predictor import Predictor

# Crops remembered per (box, stream size); far above any prompt set, so a live set never
# misses, and bounded so that a stream of ever-new boxes cannot grow it.
CROP_CACHE_SIZE = 1024


@dataclass
class ServedFrame:
    """One frame's results and what happened on it (the node turns these into diagnostics).

    backend: the path that produced ``results`` ("imx500", "onnx" or "none").
    fell_back: the reason, on the frame that switched the server to the CPU (else "").
    ambiguous: the sensor output could not be attributed (an ROI write straddled its latch).
    sensor_dnn_ms: the on-sensor network time of this frame, when the sensor reports one.
    """

    results: list[PromptResult]
    backend: str
    fell_back: str = ""
    ambiguous: bool = False
    sensor_dnn_ms: float | None = None


@dataclass
class _CropCache:
    entries: dict[tuple, CropRect | InvalidRoiError] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FrameServer:
    """Serves frames from a sensor that runs the network, a CPU segmenter, or both (with fallback).

    The CPU path is a :class:`~picosam3_ros.core.predictor.Predictor` around ``segmenter``;
    both paths read masks with the one ``postprocess`` (:meth:`configure` changes it at run time).
    """

    def __init__(
        self,
        segmenter: CropSegmenter | None,
        sensor: SensorFrameSource | None = None,
        postprocess: Postprocess = RAW_POSTPROCESS,
        roi_policy: str = "staleness",
        follow: bool = False,
        follow_settings: FollowSettings | None = None,
    ):
        if segmenter is None and (sensor is None or not sensor.runs_network):
            raise ValueError("a frame server needs a CPU segmenter or a sensor that runs the network")
        self.predictor = None if segmenter is None else Predictor(backend=segmenter, postprocess=postprocess)
        self.sensor = sensor
        self.postprocess = postprocess
        self.scheduler = RoiScheduler(roi_policy)
        self.fallback_reason = ""
        self._crops = _CropCache()
        # `follow`: what prompts without their own RoiPrompt.follow choice do (the node's parameter).
        self.followers = Followers(follow_settings or FollowSettings(), default_follow=follow)

    def configure(
        self,
        postprocess: Postprocess | None = None,
        roi_policy: str | None = None,
        follow: bool | None = None,
    ) -> None:
        """Run-time changes (the node's parameters); None keeps a setting as it is."""
        if postprocess is not None:
            self.postprocess = postprocess
            if self.predictor is not None:
                self.predictor.postprocess = postprocess
        if roi_policy is not None:
            self.scheduler = RoiScheduler(roi_policy)
        if follow is not None:
            self.followers.default_follow = follow

    @property
    def segmenter(self) -> CropSegmenter | None:
        """The CPU segmenter (None: the sensor has no CPU fallback)."""
        return None if self.predictor is None else self.predictor.segmenter

    # --- state ---------------------------------------------------------------------------------
    @property
    def on_sensor(self) -> bool:
        """True while the sensor runs the network on its own frames."""
        return self.sensor is not None and self.sensor.runs_network and not self.fallback_reason

    @property
    def backend(self) -> str:
        if self.on_sensor:
            return self.sensor.name
        return self.segmenter.name if self.segmenter is not None else "none"

    def fall_back(self, reason: str) -> bool:
        """Stop using the sensor's network (idempotent); True on the call that switched."""
        if not self.on_sensor:
            return False
        self.fallback_reason = reason
        return True

    def crops(
        self, prompts: Sequence[Prompt], frame_size: tuple[int, int]
    ) -> list[CropRect | InvalidRoiError]:
        """Each prompt's crop in a frame of ``frame_size`` (or why it has none), computed once per box."""
        size = (int(frame_size[0]), int(frame_size[1]))
        out = []
        with self._crops.lock:
            entries = self._crops.entries
            for prompt in prompts:
                key = (tuple(prompt.box_xywh), size)
                crop = entries.get(key)
                if crop is None:
                    if len(entries) >= CROP_CACHE_SIZE:
                        entries.clear()
                    crop = entries[key] = prompt_crop(prompt, size)
                out.append(crop)
        return out

    # --- camera thread -------------------------------------------------------------------------
    def program_next_roi(
        self, prompts: Sequence[Prompt], frame_id: str = "", sequence: int | None = None
    ) -> str:
        """Write the ROI of the prompt to serve next (none: the full sensor); returns an error or "".

        Prompts drawn in another ``frame_id`` than the camera's are never served (the worker
        reports them INVALID_ROI), so they get no sensor frames either. ``sequence``: the frame
        just captured; followed prompts then get the box predicted on the frame the ROI takes
        effect on (LOST ones get none).
        """
        if not self.on_sensor:
            return ""
        if frame_id:
            prompts = [p for p in prompts if not p.frame_id or p.frame_id == frame_id]
        if sequence is not None and self.followers.any_followed(prompts):
            target = sequence + 1 + self.sensor.roi_apply_delay_frames
            boxes = self.followers.boxes_for(prompts, target)
            prompts = [replace(p, box_xywh=b) for p, b in zip(prompts, boxes) if b is not None]
        size = self.sensor.stream_size
        choice = self.scheduler.choose(prompts, size, self.crops(prompts, size))
        try:
            if choice is None:
                self.sensor.request_roi(None, None)
            else:
                prompt, crop = choice
                self.sensor.request_roi(crop, prompt.prompt_id, prompt.box_xywh)
        except Exception as exc:  # the driver refused the control: the sensor path cannot go on
            return f"cannot set the ROI: {exc}"
        return ""

    # --- worker thread -------------------------------------------------------------------------
    def serve_image(
        self, image_rgb: np.ndarray, prompts: Sequence[Prompt], arrival_ns: int | None = None
    ) -> ServedFrame:
        """A frame the node did not capture (``image`` topic): the CPU path."""
        return ServedFrame(self._on_cpu(image_rgb, prompts, arrival_ns, None), self.backend)

    def segment(self, image_rgb: np.ndarray, prompts: Sequence[Prompt]) -> list[PromptResult]:
        """:meth:`serve_image`'s results: the frame function of bag evaluation with following on."""
        return self.serve_image(image_rgb, prompts).results

    def serve_frame(
        self, frame: SensorFrame, prompts: Sequence[Prompt], arrival_ns: int | None = None
    ) -> ServedFrame:
        """A camera frame: the sensor's output for its ROI, or the CPU path (fallback, plain camera)."""
        fell_back = frame.error if frame.error and self.fall_back(frame.error) else ""
        if not self.on_sensor:
            results = self._on_cpu(frame.image_rgb, prompts, arrival_ns, frame.sequence)
            return ServedFrame(results, self.backend, fell_back)
        inference = frame.inference
        height, width = frame.image_rgb.shape[:2]
        plan = None
        if self.followers.any_followed(prompts):
            plan = self.followers.prepare(prompts, frame.image_rgb, frame.sequence)
            prompts = [self._as_sensor_served(p, f, inference) for p, f in zip(prompts, plan)]
        else:
            self.followers.retain(prompts)
        active = [i for i, p in enumerate(prompts) if p is not None]
        served = sensor_frame_results(
            frame,
            [prompts[i] for i in active],
            self.postprocess,
            self.sensor.name,
            arrival_ns,
            crops=self.crops([prompts[i] for i in active], (width, height)),
        )
        results = self._merge(plan, active, served, self.sensor.name)
        if plan is not None:
            for followed, result in zip(plan, results):
                if result.status == Status.OK:
                    self.followers.observe(followed, result.logits96, result.crop, result.box,
                                           self.postprocess.threshold)
                    self.followers.published(followed, result.crop, result.crop_mask)
        return ServedFrame(
            results,
            self.backend,
            ambiguous=inference is not None and inference.logits is None and inference.crop is None,
            sensor_dnn_ms=None if inference is None else inference.dnn_ms,
        )

    def _on_cpu(
        self, image_rgb: np.ndarray, prompts: Sequence[Prompt], arrival_ns: int | None, sequence: int | None
    ) -> list[PromptResult]:
        if self.predictor is None:
            why = self.fallback_reason or "no CPU model"
            return [
                PromptResult(p.prompt_id, Status.BACKEND_ERROR, backend="none", detail=why) for p in prompts
            ]
        if not self.followers.any_followed(prompts):
            self.followers.retain(prompts)
            return self.predictor.segment(image_rgb, prompts, arrival_ns)
        followers = self.followers
        if sequence is None:
            sequence = followers.next_sequence()
        plan = followers.prepare(prompts, image_rgb, sequence)
        active = [i for i, f in enumerate(plan) if not f.lost]
        first = self._segment(image_rgb, [replace(prompts[i], box_xywh=plan[i].box) for i in active])
        again = []
        for i, result in zip(active, first):
            if result.status == Status.OK:
                followers.observe(plan[i], result.logits96, result.crop, result.box,
                                  self.postprocess.threshold)
                if plan[i].second_pass:
                    again.append(i)
            else:
                followers.observe(plan[i], None, None, None, self.postprocess.threshold)  # no mask: a miss
        results = self._merge(plan, active, first, self.segmenter.name)
        if again:
            second = self._segment(image_rgb, [replace(prompts[i], box_xywh=followers.corrected_box(plan[i]))
                                               for i in again])
            for i, result in zip(again, second):
                if result.status == Status.OK:
                    results[i] = result
        for followed, result in zip(plan, results):
            if result.status == Status.OK:
                followers.published(followed, result.crop, result.crop_mask)
        latency = 0.0 if arrival_ns is None else (time.monotonic_ns() - arrival_ns) / 1e6
        for result in results:
            result.latency_ms = latency
        return results

    def _segment(self, image_rgb: np.ndarray, prompts: list[Prompt]) -> list[PromptResult]:
        return self.predictor.segment(image_rgb, prompts)

    def _as_sensor_served(self, prompt: Prompt, followed: FollowedPrompt, inference) -> Prompt | None:
        """The prompt with the box to attribute a sensor output by: its followed box, or the box of the
        ROI in effect when its follower wrote that ROI (the box moved since); None when LOST."""
        if followed.lost:
            return None
        box = followed.box
        if (
            followed.follower is not None
            and inference is not None
            and inference.prompt_id == prompt.prompt_id
            and self.followers.issued(prompt.prompt_id, inference.box_xywh)
        ):
            box = tuple(inference.box_xywh)
        return replace(prompt, box_xywh=box)

    @staticmethod
    def _merge(plan: list[FollowedPrompt] | None, active: list[int], results: list[PromptResult],
               backend: str) -> list[PromptResult]:
        """Results in prompt order: the active prompts' results, LOST for the others."""
        if plan is None:
            return list(results)
        merged: list[PromptResult | None] = [None] * len(plan)
        for i, result in zip(active, results):
            merged[i] = result
        return [
            result if result is not None else PromptResult(
                followed.prompt_id, Status.LOST, box=followed.box, backend=backend,
                detail="lost: no credible object for a while; give the prompt a new box")
            for followed, result in zip(plan, merged)
        ]

    def close(self) -> None:
        """Stop the camera and release the CPU model (idempotent)."""
        if self.sensor is not None:
            self.sensor.stop()
        if self.predictor is not None:
            self.predictor.close()


def build_frame_server(
    backend: str,
    camera: str,
    config: BackendConfig,
    postprocess: Postprocess = RAW_POSTPROCESS,
    roi_policy: str = "staleness",
    warn: Callable[[str], None] = lambda message: None,
    follow: bool = False,
) -> FrameServer:
    """The server for a node's ``backend`` (a registered name or "auto") and ``camera`` ("none", ...).

    The path follows the backend's capability (``BackendSpec.runs_network``): a sensor that runs
    the network gets its ``cpu_fallback`` ready (``warn`` says so when the card has no CPU model);
    a crop segmenter gets a plain camera unless ``camera`` is "none" (frames then come from the
    ``image`` topic). Raises BackendError / ModelLoadError.
    """
    spec = backend_spec(backend if backend != AUTO else resolve_auto(camera))
    if spec.runs_network:
        sensor = create_backend(spec.name, config)
        segmenter = None
        if spec.cpu_fallback:
            try:  # the CPU fallback, ready before it is needed
                segmenter = create_backend(spec.cpu_fallback, config)
            except ModelMismatchError:
                raise  # the card does not fit its graph: wrong for the sensor path too
            except ModelLoadError as exc:
                warn(f"no CPU fallback: {exc}")
        return FrameServer(segmenter, sensor, postprocess, roi_policy, follow)
    segmenter = create_backend(spec.name, config)
    sensor = None
    if camera != "none":
        from picosam3_ros.backends.camera import PlainCamera

        sensor = PlainCamera(config)
    return FrameServer(segmenter, sensor, postprocess, roi_policy, follow)
