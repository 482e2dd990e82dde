"""Teachers (tiny random SAM / SAM2 from configs, ONNX, checkpoint) and the cache round trip."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from test_evaluate import make_coco_fixture  # noqa: E402

from picosam3_ros.core.crop import crop_rect_for_box  # noqa: E402
from picosam3_ros.core.metrics import box_mask_in_crop  # noqa: E402
from picosam3_train.teachers import build_teacher  # noqa: E402
from picosam3_train.teachers.base import run_on_context, sigmoid  # noqa: E402
from picosam3_train.teachers.cache import build_cache, load_cache  # noqa: E402
from picosam3_train.teachers.cache import main as cache_main  # noqa: E402


def _image(h: int = 100, w: int = 200) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    image[20:50, 50:90] = (250, 30, 30)
    return image


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory):
    """A randomly initialised SAM at 128 px, saved with save_pretrained (model + processor)."""
    path = tmp_path_factory.mktemp("tiny_sam")
    torch.manual_seed(0)
    t = transformers
    config = t.SamConfig(
        vision_config=t.SamVisionConfig(
            hidden_size=32,
            output_channels=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=128,
            patch_size=16,
            mlp_dim=64,
            global_attn_indexes=[1],
            window_size=4,
            num_pos_feats=16,
        ).to_dict(),
        prompt_encoder_config=t.SamPromptEncoderConfig(
            hidden_size=32, image_size=128, patch_size=16, mask_input_channels=4
        ).to_dict(),
        mask_decoder_config=t.SamMaskDecoderConfig(
            hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32
        ).to_dict(),
    )
    t.SamModel(config).save_pretrained(path)
    processor = t.SamProcessor(
        image_processor=t.SamImageProcessor(
            size={"longest_edge": 128}, pad_size={"height": 128, "width": 128}
        )
    )
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_sam2(tmp_path_factory):
    """A randomly initialised SAM2 (Hiera) at 128 px, saved with save_pretrained."""
    path = tmp_path_factory.mktemp("tiny_sam2")
    torch.manual_seed(0)
    t = transformers
    backbone = t.Sam2HieraDetConfig(
        hidden_size=16,
        num_attention_heads=1,
        image_size=[128, 128],
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[16, 32, 64, 128],
        num_attention_heads_per_stage=[1, 1, 1, 1],
        window_size_per_stage=[4, 4, 4, 2],
        global_attention_blocks=[3],
        window_positional_embedding_background_size=[2, 2],
    )
    config = t.Sam2Config(
        vision_config=t.Sam2VisionConfig(
            backbone_config=backbone,
            backbone_channel_list=[128, 64, 32, 16],
            backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]],
            fpn_hidden_size=32,
        ),
        prompt_encoder_config=t.Sam2PromptEncoderConfig(
            hidden_size=32, image_size=128, patch_size=16, mask_input_channels=4
        ),
        mask_decoder_config=t.Sam2MaskDecoderConfig(
            hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32
        ),
    )
    t.Sam2Model(config).save_pretrained(path)
    (path / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "Sam2ImageProcessor",
                "size": {"height": 128, "width": 128},
                "rescale_factor": 1 / 255,
                "image_mean": [0.485, 0.456, 0.406],
                "image_std": [0.229, 0.224, 0.225],
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def tiny_sam3(tmp_path_factory):
    """A randomly initialised SAM3 tracker (SAM3's box-promptable head) at 112 px."""
    path = tmp_path_factory.mktemp("tiny_sam3")
    torch.manual_seed(0)
    backbone = {
        "model_type": "sam3_vit_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 112,
        "patch_size": 14,
        "window_size": 4,
        "global_attn_indexes": [1],
        "pretrain_image_size": 56,
    }
    config = transformers.Sam3TrackerConfig(
        vision_config={
            "backbone_config": backbone,
            "fpn_hidden_size": 32,
            "backbone_feature_sizes": [[32, 32], [16, 16], [8, 8]],
        },
        prompt_encoder_config={
            "hidden_size": 32,
            "image_size": 112,
            "patch_size": 14,
            "mask_input_channels": 4,
        },
        mask_decoder_config={
            "hidden_size": 32,
            "mlp_dim": 64,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 32,
        },
    )
    transformers.Sam3TrackerModel(config).save_pretrained(path)
    (path / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "size": {"height": 112, "width": 112},
                "rescale_factor": 1 / 255,
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5],
            }
        )
    )
    return path


def test_context_teachers_land_in_the_standard_crop_frame():
    # A "teacher" that answers with its box prompt: in the standard frame this must be
    # exactly the box as the evaluator draws it (crop rect 46,11,48x48 -> 2x upsampling).
    image = _image()
    box = (50, 20, 40, 30)

    def segment(patch, box_xyxy):
        out = np.zeros(patch.shape[:2], np.float32)
        x0, y0, x1, y1 = (int(round(v)) for v in box_xyxy)
        out[y0:y1, x0:x1] = 1.0
        return out, 0.9

    result = run_on_context(image, box, segment)
    assert result.probability.shape == (96, 96) and result.score == pytest.approx(0.9)
    expected = box_mask_in_crop(box, crop_rect_for_box(box, (200, 100)))
    assert np.array_equal(result.probability > 0.5, expected)


def test_sam_teacher_matches_processor_and_model_run_directly(tiny_sam):
    teacher = build_teacher("sam", tiny_sam)
    image = _image()
    box = (50, 20, 40, 30)
    out = teacher.predict(image, box)
    assert out.probability.shape == (96, 96) and out.probability.dtype == np.float32
    assert 0.0 <= out.probability.min() <= out.probability.max() <= 1.0 and 0.0 <= out.score <= 1.0
    # Reference: the same local model and processor, driven by hand on the padded square crop.
    rect = crop_rect_for_box(box, (200, 100))
    patch = image[rect.y : rect.y_end, rect.x : rect.x_end]
    processor = transformers.SamProcessor.from_pretrained(tiny_sam)
    model = transformers.SamModel.from_pretrained(tiny_sam).eval()
    inputs = processor(images=patch, input_boxes=[[[4.0, 9.0, 44.0, 39.0]]], return_tensors="pt")
    with torch.inference_mode():
        res = model(
            pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"], multimask_output=True
        )
    masks = processor.post_process_masks(
        res.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"], binarize=False
    )
    k = int(res.iou_scores[0, 0].argmax())
    expected = cv2.resize(sigmoid(masks[0][0, k].numpy()), (96, 96), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(out.probability, expected, atol=1e-5)
    assert out.score == pytest.approx(float(res.iou_scores[0, 0, k]), abs=1e-5)
    assert teacher.provenance()["weights"] == str(tiny_sam.resolve())


@pytest.mark.parametrize(
    ("kind", "folder", "model_class"),
    [("sam2", "tiny_sam2", "Sam2Model"), ("sam3", "tiny_sam3", "Sam3TrackerModel")],
)
def test_sam2_and_sam3_teachers_run_from_a_local_folder(kind, folder, model_class, request):
    path = request.getfixturevalue(folder)
    teacher = build_teacher(kind, path)
    image = _image()
    a = teacher.predict(image, (50, 20, 40, 30))
    b = teacher.predict(image, (50, 20, 40, 30))
    c = teacher.predict(image, (10, 10, 60, 70))
    assert a.probability.shape == (96, 96) and 0.0 <= a.score <= 1.0
    assert np.array_equal(a.probability, b.probability)  # deterministic
    assert not np.allclose(a.probability, c.probability)  # the prompt matters
    provenance = teacher.provenance()
    assert provenance["model_class"] == model_class and provenance["weights"] == str(path.resolve())


def test_missing_weights_give_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        build_teacher("sam2", tmp_path)
    with pytest.raises(ValueError, match="unknown teacher"):
        build_teacher("sam4", tmp_path)


def _tiny_model():
    torch.manual_seed(1)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1)
    ).eval()


def test_checkpoint_and_onnx_teachers_agree_and_cache_round_trips(tmp_path):
    from picosam3_train.checkpoint import save_checkpoint
    from picosam3_train.config import TrainConfig
    from picosam3_train.data import load_teacher_caches
    from picosam3_train.export import export_onnx
    from picosam3_train.model import build_model

    ann, images = make_coco_fixture(tmp_path / "coco")
    torch.manual_seed(1)
    model = build_model("picosam2", width_mult=0.25).eval()
    ckpt = save_checkpoint(tmp_path / "teacher.pt", model, TrainConfig(model="picosam2", width_mult=0.25))
    onnx_path = export_onnx(model, tmp_path / "teacher.onnx", verbose=False).path
    ckpt_teacher, onnx_teacher = build_teacher("checkpoint", ckpt), build_teacher("onnx", onnx_path)

    cache = build_cache(onnx_teacher, ann, images, tmp_path / "cache", command="test")
    coco = json.loads(ann.read_text())
    usable = [a for a in coco["annotations"] if not a["iscrowd"] and a["bbox"][2] >= 1]
    assert list(cache.ann_ids) == [a["id"] for a in usable]
    assert cache.soft_masks.dtype == np.uint8 and cache.soft_masks.shape == (len(usable), 96, 96)
    assert cache.meta["skipped"]["crowd"] == 3 and cache.meta["skipped"]["degenerate_box"] == 3
    assert cache.meta["provenance"]["weights"] == str(onnx_path.resolve())

    reloaded = load_cache(tmp_path / "cache")
    by_image = {im["id"]: im for im in coco["images"]}
    for a in usable:
        rgb = cv2.cvtColor(cv2.imread(str(images / by_image[a["image_id"]]["file_name"])), cv2.COLOR_BGR2RGB)
        from_ckpt = ckpt_teacher.predict(rgb, a["bbox"])
        assert np.abs(reloaded.probability(a["id"]) - from_ckpt.probability).max() <= 0.5 / 255 + 1e-4
        assert reloaded.score(a["id"]) == pytest.approx(from_ckpt.score, abs=1e-4)
    # The trainer reads the same directory.
    entries = load_teacher_caches([tmp_path / "cache"], [ann])
    assert entries[ann.name].soft_masks.shape == reloaded.soft_masks.shape


def test_cache_cli_with_tiny_sam(tiny_sam, tmp_path):
    ann, images = make_coco_fixture(tmp_path / "coco", n_images=2)
    out = tmp_path / "sam_cache"
    assert (
        cache_main(
            [
                "--teacher",
                "sam",
                "--weights",
                str(tiny_sam),
                "--dataset",
                f"{ann}:{images}",
                "--out",
                str(out),
                "--limit",
                "3",
            ]
        )
        == 0
    )
    cache = load_cache(out)
    assert len(cache) == 3 and cache.meta["teacher"].startswith("sam:")
    assert cache.meta["dataset"] == str(ann.resolve()) and "cache-teacher" in cache.meta["command"]
