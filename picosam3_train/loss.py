"""The PicoSAM3 distillation loss, per sample, with each part logged.

For a student logit map s, ground truth g (0/1) and cached teacher probability p:

* teacher term  T = MSE(sigmoid(k s), sigmoid(k t)) + Dice(sigmoid(k s), sigmoid(k t)), k = 5 (the
  published sharpening). The cache holds probabilities, so the teacher logit is t = logit(p)
  (p clipped to [1e-4, 1 - 1e-4]) and sigmoid(k t) = p^k / (p^k + (1-p)^k): the same sharpening
  applied to both sides. Only pixels where the teacher covers the (jittered) crop count.
* ground-truth term  G = BCE(s, g) + Dice(sigmoid(s), g).
* area term  A = relu(0.4 - sum(sigmoid(s)) / sum(g)): stops the mask collapsing below 40% of
  the ground-truth area.

Per-sample weighting (the published code uses one batch mean; here each sample has its own):
``w = clip(score * agreement, 0, w_max)`` where ``score`` is the teacher's own confidence and
``agreement`` the soft IoU of the teacher's mask with the ground truth on the valid pixels.
A confident teacher that agrees with the annotation is trusted (it refines polygon edges); a
teacher that disagrees, or a sample without a teacher (score 0), falls back to ground truth.
Loss per sample = w T + (1 - w) G + lambda_area A; the batch loss is the mean over samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

EPS = 1e-6


def soft_dice_loss(prob: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                   smooth: float = 1.0) -> torch.Tensor:
    """Per-sample 1 - (2 sum(pq) + smooth) / (sum(p) + sum(q) + smooth) over (C,H,W)."""
    if weight is not None:
        prob, target = prob * weight, target * weight
    dims = tuple(range(1, prob.dim()))
    inter = (prob * target).sum(dims)
    total = prob.sum(dims) + target.sum(dims)
    return 1.0 - (2.0 * inter + smooth) / (total + smooth)


def sharpen_probability(p: torch.Tensor, k: float) -> torch.Tensor:
    """sigmoid(k * logit(p)) computed stably."""
    p = p.clamp(1e-4, 1 - 1e-4)
    return torch.sigmoid(k * torch.log(p / (1 - p)))


@dataclass
class LossParts:
    total: torch.Tensor
    teacher: torch.Tensor
    ground_truth: torch.Tensor
    area: torch.Tensor
    teacher_weight: torch.Tensor  # mean of the per-sample weights

    def as_floats(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in self.__dict__.items()}


def distillation_loss(logits: torch.Tensor, gt: torch.Tensor, teacher_prob: torch.Tensor | None = None,
                      teacher_valid: torch.Tensor | None = None, teacher_score: torch.Tensor | None = None,
                      sharpen: float = 5.0, teacher_weight_max: float = 0.8, area_weight: float = 1.0,
                      area_min_ratio: float = 0.4) -> LossParts:
    """See the module docstring. Shapes: (N,1,H,W) maps, (N,) scores."""
    n = logits.shape[0]
    dims = (1, 2, 3)
    bce = F.binary_cross_entropy_with_logits(logits, gt, reduction="none").mean(dims)
    prob = torch.sigmoid(logits)
    gt_term = bce + soft_dice_loss(prob, gt)

    area_pred = prob.sum(dims)
    area_gt = gt.sum(dims)
    has_area = area_gt > 0
    ratio = area_pred / area_gt.clamp_min(1.0)
    area_term = torch.where(has_area, F.relu(area_min_ratio - ratio), torch.zeros_like(ratio))

    if teacher_prob is None or teacher_score is None:
        teacher_term = torch.zeros(n, device=logits.device)
        weight = torch.zeros(n, device=logits.device)
    else:
        valid = torch.ones_like(gt) if teacher_valid is None else teacher_valid
        student_sharp = torch.sigmoid(sharpen * logits)
        teacher_sharp = sharpen_probability(teacher_prob, sharpen)
        n_valid = valid.sum(dims).clamp_min(1.0)
        mse = (((student_sharp - teacher_sharp) ** 2) * valid).sum(dims) / n_valid
        teacher_term = mse + soft_dice_loss(student_sharp, teacher_sharp, valid)
        with torch.no_grad():
            inter = (teacher_prob * gt * valid).sum(dims)
            union = ((teacher_prob + gt - teacher_prob * gt) * valid).sum(dims)
            agreement = torch.where(union > 0, inter / union.clamp_min(EPS), torch.ones_like(union))
            weight = (teacher_score * agreement).clamp(0.0, teacher_weight_max)
            weight = torch.where(valid.sum(dims) > 0, weight, torch.zeros_like(weight))
    per_sample = weight * teacher_term + (1 - weight) * gt_term + area_weight * area_term
    return LossParts(
        total=per_sample.mean(),
        teacher=teacher_term.mean(),
        ground_truth=gt_term.mean(),
        area=area_term.mean(),
        teacher_weight=weight.mean(),
    )
