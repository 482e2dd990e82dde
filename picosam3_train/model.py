"""PicoSAM3 and PicoSAM2 networks: depthwise-separable U-Nets for 96x96 box crops.

Public contract (used by export, quantize, package and the teachers):

* ``build_model(name, **kwargs) -> nn.Module`` with ``name`` in ``MODEL_NAMES``.
  Input: float32 (N, 3, 96, 96), normalised as the model card says. Output: one
  logit map (N, 1, 96, 96); > 0 means object.
* ``prepare_for_export(model)`` swaps every ECA block for its numerically
  identical banded 1x1-conv form (no reshape), the form to hand to MCT/ONNX.
* ``count_parameters(model)``, ``count_macs(model, size)`` and ``describe(model)``.

Only operators that INT8 post-training quantisation and the IMX500 converter
accept are used: Conv2d (regular, depthwise, dilated), BatchNorm2d (folded at
export), ReLU, add, concat, nearest 2x upsampling, global average pooling, and a
sigmoid *only* as the ECA gate. No softmax, no layernorm.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from picosam3_ros.core.crop import MODEL_INPUT_SIZE

MODEL_NAMES = ("picosam3", "picosam2")
ENCODER_CHANNELS = (48, 96, 160, 256, 320)
# Depthwise-separable blocks per encoder stage (after the strided one) and per decoder
# stage (deepest first). Extra depth sits at 12x12 and 6x6 where it is cheap in MACs;
# with these the PicoSAM3 variant has the published ~1.37M parameters.
ENCODER_DEPTHS = (1, 1, 2, 2, 2)
DECODER_DEPTHS = (3, 3, 2, 2)
BOTTLENECK_BLOCKS = 3
STAGE_STRIDES = (2, 2, 2, 2, 1)  # stem, then stages 1-4
INPUT_SIZE = MODEL_INPUT_SIZE  # defined once in the crop rule


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA-Net's adaptive kernel size: k = |log2(C)/gamma + b/gamma|, made odd (upwards)."""
    k = int(abs(math.log2(channels) / gamma + b / gamma))
    return k if k % 2 == 1 else k + 1


def _round_channels(channels: float) -> int:
    return max(8, int(round(channels / 8.0)) * 8)


class ConvBNReLU(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 dilation: int = 1, relu: bool = True):
        padding = dilation * (kernel - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class DepthwiseSeparable(nn.Sequential):
    """Depthwise 3x3 (optionally strided or dilated) then pointwise 1x1, each with BN + ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, dilation: int = 1):
        super().__init__(
            ConvBNReLU(c_in, c_in, 3, stride, groups=c_in, dilation=dilation),
            ConvBNReLU(c_in, c_out, 1),
        )


class DilatedBottleneck(nn.Module):
    """Residual dilated (d=2) depthwise-separable block: widens the receptive field at 6x6."""

    def __init__(self, channels: int, dilation: int = 2):
        super().__init__()
        self.dw = ConvBNReLU(channels, channels, 3, groups=channels, dilation=dilation)
        self.pw = ConvBNReLU(channels, channels, 1, relu=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.pw(self.dw(x)))


class EfficientChannelAttention(nn.Module):
    """ECA (Wang et al., CVPR 2020): global average pool, a 1-D convolution of size k
    across channels (no dimensionality reduction), sigmoid gate, channel-wise scale.

    The 1-D convolution is a Conv2d with a (k, 1) kernel over the pooled vector
    viewed as a (N, 1, C, 1) image. ``to_banded()`` returns the same function as a
    C x C 1x1 convolution whose weight is the banded (Toeplitz) matrix of the k
    taps, which needs no reshape: that is the form exported to ONNX and the IMX500.
    """

    def __init__(self, channels: int, gamma: int = 2, b: int = 1):
        super().__init__()
        self.channels = channels
        self.kernel_size = eca_kernel_size(channels, gamma, b)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(1, 1, (self.kernel_size, 1), padding=(self.kernel_size // 2, 0), bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(x).reshape(-1, 1, self.channels, 1)
        y = self.conv(y).reshape(-1, self.channels, 1, 1)
        return x * self.gate(y)

    def to_banded(self) -> "BandedChannelAttention":
        taps = self.conv.weight.detach().reshape(-1)
        k, c = self.kernel_size, self.channels
        weight = torch.zeros(c, c, dtype=taps.dtype)
        for out_ch in range(c):
            for j in range(k):
                in_ch = out_ch + j - k // 2
                if 0 <= in_ch < c:  # zero padding at both ends, as the 1-D conv
                    weight[out_ch, in_ch] = taps[j]
        banded = BandedChannelAttention(c)
        banded.conv.weight.data.copy_(weight.reshape(c, c, 1, 1))
        return banded


class BandedChannelAttention(nn.Module):
    """ECA with its 1-D channel convolution expressed as a fixed banded 1x1 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.conv(self.pool(x)))


class PicoSegNet(nn.Module):
    """The PicoSAM U-Net. ``variant`` "picosam3" adds the dilated bottleneck, ECA and the
    depthwise refinement head to the PicoSAM2 layout."""

    def __init__(self, variant: str = "picosam3", width_mult: float = 1.0, in_channels: int = 3,
                 stem_stride: int = 2):
        super().__init__()
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}")
        if variant not in MODEL_NAMES:
            raise ValueError(f"unknown model variant {variant!r}; choose from {MODEL_NAMES}")
        self.variant = variant
        self.width_mult = float(width_mult)
        self.stem_stride = int(stem_stride)
        c = [_round_channels(ch * width_mult) for ch in ENCODER_CHANNELS]
        self.channels = tuple(c)
        pico3 = variant == "picosam3"

        # Encoder: a stride-2 stem (96 -> 48) then 48 -> 24 -> 12 -> 6 -> 6; the last stage
        # widens to c4 without downsampling, so the dilated (d=2) bottleneck works on a 6x6
        # map where a dilation of 2 still sees real neighbours. Working at 48x48 instead of
        # 96x96 cuts the MACs ~4x (CPU training and IMX500 latency); the full-resolution
        # detail comes back through the depthwise refinement head after the last upsample.
        # stem_stride=1 keeps the whole U-Net at full resolution (96 -> 48 -> 24 -> 12 -> 12; ~4x MACs).
        self.stem = nn.Sequential(ConvBNReLU(in_channels, c[0], 3, stride=stem_stride),
                                  DepthwiseSeparable(c[0], c[0]))
        self.down = nn.ModuleList()
        for i in range(1, 5):
            blocks = [DepthwiseSeparable(c[i - 1], c[i], stride=STAGE_STRIDES[i])]
            blocks += [DepthwiseSeparable(c[i], c[i]) for _ in range(ENCODER_DEPTHS[i])]
            self.down.append(nn.Sequential(*blocks))
        self.bottleneck = (
            nn.Sequential(*[DilatedBottleneck(c[4], 2) for _ in range(BOTTLENECK_BLOCKS)])
            if pico3 else nn.Identity()
        )

        # Decoder: nearest 2x upsample (where the encoder downsampled), concat the skip,
        # depthwise-separable blocks.
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.decode = nn.ModuleList()
        for i, depth in zip(range(4, 0, -1), DECODER_DEPTHS):
            blocks = [DepthwiseSeparable(c[i] + c[i - 1], c[i - 1])]
            blocks += [DepthwiseSeparable(c[i - 1], c[i - 1]) for _ in range(depth - 1)]
            self.decode.append(nn.Sequential(*blocks))
        self.attention = EfficientChannelAttention(c[0]) if pico3 else nn.Identity()
        if pico3:
            # Depthwise refinement head at full resolution: a 5x5 depthwise pass over the
            # upsampled features smooths the 2x nearest blocks into edges, then 1x1 -> 1 logit.
            self.head = nn.Sequential(
                *([nn.Upsample(scale_factor=2, mode="nearest")] if stem_stride == 2 else []),
                ConvBNReLU(c[0], c[0], 5, groups=c[0]),
                nn.Conv2d(c[0], 1, 1),
            )
        else:
            self.head = nn.Sequential(
                nn.Conv2d(c[0], 1, 1),
                *([nn.Upsample(scale_factor=2, mode="nearest")] if stem_stride == 2 else []),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for stage in self.down:
            skips.append(stage(skips[-1]))
        y = self.bottleneck(skips.pop())
        for stage, stride in zip(self.decode, STAGE_STRIDES[4:0:-1]):
            if stride == 2:
                y = self.up(y)
            y = stage(torch.cat([y, skips.pop()], dim=1))
        return self.head(self.attention(y))


def build_model(name: str = "picosam3", **kwargs) -> nn.Module:
    """Build a model by name ("picosam3" or "picosam2"); kwargs: ``width_mult`` (float,
    default 1.0; the ground-truth CNN teacher is the same family at 2x)."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose from {MODEL_NAMES}")
    return PicoSegNet(variant=name, **kwargs)


def prepare_for_export(model: nn.Module) -> nn.Module:
    """Replace ECA blocks in place by their banded 1x1-conv equivalents; returns the model."""
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, EfficientChannelAttention):
                setattr(parent, child_name, child.to_banded().to(child.conv.weight.device))
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, size: int = INPUT_SIZE) -> int:
    """Multiply-accumulates of one forward pass at size x size (convolutions only;
    BN folds away, elementwise ops are negligible)."""
    macs = 0
    hooks = []

    def conv_hook(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal macs
        k = module.kernel_size[0] * module.kernel_size[1]
        macs += output[0].numel() * (module.in_channels // module.groups) * k

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(conv_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return macs


def describe(model: nn.Module, size: int = INPUT_SIZE, printer: Callable[[str], None] = print) -> dict:
    """Print and return parameters and MACs at size x size."""
    params = count_parameters(model)
    macs = count_macs(model, size)
    name = getattr(model, "variant", type(model).__name__)
    printer(f"{name}: {params / 1e6:.3f} M parameters, {macs / 1e6:.1f} M MACs at {size}x{size}")
    return {"parameters": params, "macs": macs, "input_size": size}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="picosam3_train model", description="Print params and MACs.")
    parser.add_argument("--name", default="picosam3", choices=MODEL_NAMES)
    parser.add_argument("--width-mult", type=float, default=1.0)
    args = parser.parse_args(argv)
    describe(build_model(args.name, width_mult=args.width_mult))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
