"""The real sensor node over DDS following an object on real frames (CPU path, packaged model).

A prompt given once and then republished unchanged (a keep-alive, as the teleop page does every
second) follows the scooter of the DAVIS fixture: `Segmentation.box` moves with it and the mask
stays on it; a FIXED prompt on the same box keeps its box; `follow` changes at run time. Frames
go out one at a time, each after the previous one was answered (the node's one-slot buffer would
otherwise drop some, which following tolerates but the test would not see).
"""

from __future__ import annotations

import uuid

import numpy as np
from node_helpers import prompt_array, sensor_node_and_client, set_parameter
from test_follow import FRAMES, load, tight_box

from picosam3_ros.core.metrics import mask_iou

DOMAIN = 50


def test_node_follows_a_prompt_given_once_and_kept_alive(tmp_path):
    from sensor_msgs.msg import Image

    from picosam3_msgs.msg import RoiPrompt, RoiPromptArray, SegmentationArray
    from picosam3_ros.core.image_conversion import fill_image

    frame_id = f"camera_{uuid.uuid4().hex[:8]}"
    video = [load(k) for k in range(FRAMES)]
    given = tuple(int(v) for v in tight_box(video[0][1]))
    params = {"camera": "none", "backend": "onnx", "threads": 1}
    with sensor_node_and_client(DOMAIN, params, tmp_path / "node.log") as (proc, client):
        segs = client.collect(SegmentationArray, "segmentations")
        image_pub = client.node.create_publisher(Image, "image", 10)
        prompt_pub = client.node.create_publisher(RoiPromptArray, "prompts", 10)
        array = prompt_array({1: given, 2: given}, frame_id, follow={2: RoiPrompt.FIXED})

        def frame(k: int, stamp: int):
            msg = Image()
            msg.header.frame_id = frame_id
            msg.header.stamp.sec = stamp
            fill_image(msg, video[k][0], "rgb8")
            return msg

        def answer(stamp: int):
            found = [m for m in segs if m.header.frame_id == frame_id and m.header.stamp.sec == stamp
                     and len(m.segmentations) == 2]
            return found[0] if found else None

        # Discovery on a loaded machine: repeat frame 0 (stamp 1) until the node answers it.
        for _ in range(300):
            prompt_pub.publish(array)
            image_pub.publish(frame(0, 1))
            if client.wait_for(lambda: answer(1) is not None, timeout=0.2, proc=proc) or proc.poll():
                break
        assert answer(1) is not None, (tmp_path / "node.log").read_text()[-2000:]
        answers = [answer(1)]
        def send(k: int, stamp: int):
            for _ in range(50):
                image_pub.publish(frame(k, stamp))
                if client.wait_for(lambda: answer(stamp) is not None, timeout=0.5, proc=proc):
                    break
            got = answer(stamp)
            assert got is not None, f"frame {k}: " + (tmp_path / "node.log").read_text()[-2000:]
            return got

        for k in range(1, FRAMES):
            if k % 4 == 0:
                prompt_pub.publish(array)  # the same set again: a keep-alive
            answers.append(send(k, k + 1))

        # follow can be switched off at run time: the followed prompt goes back to its given box.
        result = set_parameter(client, "/picosam3_sensor", "follow", False)
        assert result.successful, result.reason
        after_switch = send(FRAMES - 1, FRAMES + 1)

    def box(seg):
        return (seg.box.x_offset, seg.box.y_offset, seg.box.width, seg.box.height)

    def frame_mask(seg, shape):
        mask = np.zeros(shape, bool)
        crop = seg.crop
        data = np.frombuffer(bytes(seg.mask.data), np.uint8).reshape(seg.mask.height, seg.mask.width)
        x, y = crop.x_offset, crop.y_offset
        mask[y : y + crop.height, x : x + crop.width] = data > 0
        return mask

    by_id = [{s.prompt_id: s for s in a.segmentations} for a in answers]
    assert all(s.status == 0 for entry in by_id for s in entry.values())
    assert all(box(entry[2]) == given for entry in by_id)  # FIXED
    followed = [box(entry[1]) for entry in by_id]
    assert followed[0] == given and all(b != given for b in followed[2:]), followed  # never reset
    gt = video[-1][1]
    iou_followed = mask_iou(frame_mask(by_id[-1][1], gt.shape), gt)
    iou_fixed = mask_iou(frame_mask(by_id[-1][2], gt.shape), gt)
    assert iou_followed >= 0.45 and iou_followed > iou_fixed + 0.3, (iou_followed, iou_fixed)
    assert all(box(s) == given for s in after_switch.segmentations)
