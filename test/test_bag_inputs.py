"""The bag tools read what the node reads: every Image encoding of core/image_conversion.py,
CompressedImage (jpeg/png), and a bare .mcap file without its metadata.yaml."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from node_helpers import write_red_model

from picosam3_ros.core.clip import ANNOTATIONS_NAME, DEFAULT_CLIP_DIR
from picosam3_ros.core.image_conversion import SUPPORTED_ENCODINGS
from picosam3_ros.evaluation.bag_eval import main as bag_eval_main
from picosam3_ros.evaluation.bag_io import BagReader, frame_to_rgb
from picosam3_ros.evaluation.coco_to_bag import main as coco_to_bag_main

N_IMAGES = 2


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The first clip images and their instances (widths are even: yuv422 needs that)."""
    root = tmp_path_factory.mktemp("coco")
    clip = json.loads((DEFAULT_CLIP_DIR / ANNOTATIONS_NAME).read_text())
    images = clip["images"][:N_IMAGES]
    ids = {img["id"] for img in images}
    assert all(img["width"] % 2 == 0 for img in images)
    annotations = [a for a in clip["annotations"] if a["image_id"] in ids]
    (root / "instances.json").write_text(json.dumps(dict(clip, images=images, annotations=annotations)))
    image_dir = root / "images"
    image_dir.mkdir()
    for img in images:
        shutil.copy(DEFAULT_CLIP_DIR / img["file_name"], image_dir / img["file_name"])
    model = write_red_model(root / "model")
    return root / "instances.json", image_dir, model


def evaluate(bag, model, tmp_path) -> dict:
    out = tmp_path / f"{bag.name}.json"
    assert bag_eval_main([str(bag), "--image-topic", "/image", "--prompt-topic", "/prompts", "--gt-topic",
                          "/ground_truth", "--model", str(model), "--json", str(out), "--quiet"]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("encoding", ["png", "jpeg", "bgra8", "mono16", "yuv422", "yuv422_yuy2"])
def test_every_input_encoding_round_trips_through_the_bag_tools(tmp_path, dataset, encoding):
    annotations, image_dir, model = dataset
    reference = tmp_path / "rgb8"
    assert coco_to_bag_main([str(annotations), str(image_dir), str(reference)]) == 0
    bag = tmp_path / encoding
    assert coco_to_bag_main([str(annotations), str(image_dir), str(bag), "--encoding", encoding]) == 0
    with BagReader(reference) as ref, BagReader(bag) as other:
        expected = [frame_to_rgb(m.msg) for m in ref.messages(["/image"])]
        got = [frame_to_rgb(m.msg) for m in other.messages(["/image"])]
        kind = "CompressedImage" if encoding in ("png", "jpeg") else "/Image"
        assert other.topics()["/image"].endswith(kind)
    assert len(got) == len(expected) == N_IMAGES
    for a, b in zip(expected, got):
        error = np.abs(a.astype(int) - b.astype(int))
        if encoding in ("png", "bgra8"):
            assert error.max() == 0
        elif encoding == "mono16":  # grey: each channel the frame's luma
            assert np.array_equal(b[..., 0], b[..., 1])
        else:  # lossy: jpeg, and yuv422's shared chroma of two pixels
            assert error.mean() < 6, error.mean()
    report, base = evaluate(bag, model, tmp_path), evaluate(reference, model, tmp_path)
    assert report["frames"] == base["frames"] and report["prompts"] == base["prompts"]
    if encoding in ("png", "bgra8"):
        assert report["miou_crop"] == base["miou_crop"]


def test_every_encoding_the_node_reads_is_written_by_coco_to_bag():
    from picosam3_ros.evaluation.coco_to_bag import FRAME_ENCODINGS

    assert set(SUPPORTED_ENCODINGS) <= set(FRAME_ENCODINGS)


def test_bare_mcap_without_metadata(tmp_path, dataset):
    annotations, image_dir, model = dataset
    bag = tmp_path / "bag"
    assert coco_to_bag_main([str(annotations), str(image_dir), str(bag), "--encoding", "png"]) == 0
    base = evaluate(bag, model, tmp_path)
    (mcap,) = bag.glob("*.mcap")
    bare = tmp_path / "recorded.mcap"
    shutil.move(mcap, bare)  # what a recorder that died before writing metadata.yaml leaves
    report = evaluate(bare, model, tmp_path)
    assert report["frames"] == base["frames"] == N_IMAGES and report["miou_crop"] == base["miou_crop"]


def test_bombs_in_a_bag_are_skipped_and_counted(tmp_path, dataset):
    """bag_eval reads frames through the node's payload guard: a decompression bomb is a bad
    frame, skipped and counted, and the rest of the bag scores as without it."""
    from payloads import jpeg_bomb, png_bomb

    from picosam3_ros.evaluation.bag_io import COMPRESSED_IMAGE_TYPE, BagWriter, make_header, msg_class

    annotations, image_dir, model = dataset
    bag = tmp_path / "png"
    assert coco_to_bag_main([str(annotations), str(image_dir), str(bag), "--encoding", "png"]) == 0
    base = evaluate(bag, model, tmp_path)
    CompressedImage = msg_class(COMPRESSED_IMAGE_TYPE)
    bombed = tmp_path / "bombed"
    with BagReader(bag) as reader, BagWriter(bombed) as writer:
        for topic, msgtype in reader.topics().items():
            writer.add_topic(topic, msgtype)
        items = list(reader.messages(list(reader.topics())))
        first_frame = next(i for i, m in enumerate(items) if m.topic == "/image")
        for index, item in enumerate(items):
            if index == first_frame + 1:  # after the first frame, with its prompts in force
                for stamp, (fmt, data) in enumerate((("jpeg", jpeg_bomb()), ("png", png_bomb())), 1):
                    bomb = CompressedImage(header=make_header(stamp), format=fmt,
                                           data=np.frombuffer(data, np.uint8))
                    writer.write("/image", item.log_time_ns - 1, bomb)
            writer.write(item.topic, item.log_time_ns, item.msg)
    report = evaluate(bombed, model, tmp_path)
    assert report["bad_frames"] == 2 and "32000x32000" in report["bad_frame_reason"]
    assert report["frames"] == base["frames"] + 2
    assert report["instances"] == base["instances"] and report["miou_crop"] == base["miou_crop"]
