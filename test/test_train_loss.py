"""The distillation loss on inputs whose values can be worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from picosam3_train.loss import distillation_loss, sharpen_probability, soft_dice_loss


def half_mask(n: int = 1) -> torch.Tensor:
    gt = torch.zeros(n, 1, 4, 4)
    gt[:, :, :, :2] = 1.0  # 8 of 16 pixels
    return gt


def test_perfect_prediction_costs_nothing():
    gt = half_mask()
    parts = distillation_loss(torch.where(gt > 0, 30.0, -30.0), gt)
    assert parts.ground_truth.item() == pytest.approx(0.0, abs=1e-6)
    assert parts.area.item() == 0.0
    assert parts.total.item() == pytest.approx(0.0, abs=1e-6)


def test_zero_logits_give_ln2_plus_dice():
    gt = half_mask()
    parts = distillation_loss(torch.zeros_like(gt), gt)
    # BCE = ln 2; Dice = 1 - (2 * 4 + 1) / (8 + 8 + 1) with p = 0.5 everywhere
    assert parts.ground_truth.item() == pytest.approx(math.log(2) + 1 - 9 / 17, rel=1e-5)
    assert parts.area.item() == 0.0  # predicted area 8 = GT area
    assert parts.teacher.item() == 0.0 and parts.teacher_weight.item() == 0.0


def test_area_term_stops_collapse():
    gt = half_mask()
    parts = distillation_loss(torch.full_like(gt, -30.0), gt)
    assert parts.area.item() == pytest.approx(0.4, abs=1e-6)  # relu(0.4 - 0/8)
    logits = torch.full_like(gt, -30.0)
    logits[..., 0, :2] = 30.0  # predicts 2 of 8 pixels: ratio 0.25
    assert distillation_loss(logits, gt).area.item() == pytest.approx(0.15, abs=1e-6)
    # Empty ground truth: no area term.
    assert distillation_loss(torch.full_like(gt, -30.0), torch.zeros_like(gt)).area.item() == 0.0


def test_dice_smooth_and_weights():
    p = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    q = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    assert soft_dice_loss(p, q).item() == pytest.approx(1 - 3 / 4)
    w = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])  # hide the disagreeing pixel
    assert soft_dice_loss(p, q, w).item() == pytest.approx(0.0)


def test_sharpening_is_sigmoid_of_five_logits():
    p = torch.tensor([0.5, 1 / (1 + math.exp(-1.0)), 0.1])
    expected = torch.tensor([0.5, 1 / (1 + math.exp(-5.0)), 1 / (1 + math.exp(5 * math.log(9)))])
    torch.testing.assert_close(sharpen_probability(p, 5.0), expected, rtol=1e-4, atol=1e-6)


def test_teacher_weight_is_per_sample():
    gt = half_mask(2)
    teacher = gt.clone()
    teacher[1] = 1 - gt[1]  # sample 1: the teacher contradicts the annotation
    score = torch.tensor([0.9, 0.9])
    logits = torch.zeros_like(gt)
    parts = distillation_loss(logits, gt, teacher, torch.ones_like(gt), score, teacher_weight_max=0.8)
    # sample 0: min(0.9 * IoU 1, 0.8) = 0.8; sample 1: 0.9 * IoU 0 = 0
    assert parts.teacher_weight.item() == pytest.approx(0.4)
    # The total is the per-sample mix, not a batch-mean weight.
    per0 = distillation_loss(logits[:1], gt[:1], teacher[:1], torch.ones_like(gt[:1]), score[:1])
    per1 = distillation_loss(logits[1:], gt[1:])
    assert parts.total.item() == pytest.approx((per0.total.item() + per1.total.item()) / 2, rel=1e-5)


def test_teacher_term_values_and_invalid_pixels():
    gt = half_mask()
    teacher = gt.clone()
    valid = torch.ones_like(gt)
    exact = distillation_loss(torch.where(gt > 0, 30.0, -30.0), gt, teacher, valid, torch.tensor([1.0]))
    assert exact.teacher.item() == pytest.approx(0.0, abs=1e-3)
    # Student at 0: sigmoid(5 * 0) = 0.5 vs a sharpened 0/1 teacher: MSE 0.25, Dice 1 - 9/17.
    half = distillation_loss(torch.zeros_like(gt), gt, teacher, valid, torch.tensor([1.0]))
    assert half.teacher.item() == pytest.approx(0.25 + 1 - 9 / 17, abs=2e-3)
    # Pixels the teacher does not cover are ignored: a wrong teacher there changes nothing.
    wrong = teacher.clone()
    wrong[..., 3, :] = 1 - wrong[..., 3, :]
    valid_part = valid.clone()
    valid_part[..., 3, :] = 0
    a = distillation_loss(torch.zeros_like(gt), gt, teacher, valid_part, torch.tensor([1.0]))
    b = distillation_loss(torch.zeros_like(gt), gt, wrong, valid_part, torch.tensor([1.0]))
    assert a.teacher.item() == pytest.approx(b.teacher.item())


def test_gradients_flow():
    gt = half_mask()
    logits = torch.zeros_like(gt, requires_grad=True)
    distillation_loss(logits, gt, gt, torch.ones_like(gt), torch.tensor([0.5])).total.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert (logits.grad[gt > 0] < 0).all()  # pushes object pixels up
