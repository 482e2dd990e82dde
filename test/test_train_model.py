"""PicoSAM3/PicoSAM2 models: shapes, parameter count, ECA, export form, allowed operators."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from picosam3_train.model import (
    BandedChannelAttention,
    EfficientChannelAttention,
    build_model,
    count_macs,
    count_parameters,
    eca_kernel_size,
    prepare_for_export,
)

PUBLISHED_PARAMS = 1.37e6
ALLOWED = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Upsample, nn.AdaptiveAvgPool2d, nn.Sigmoid, nn.Identity,
           nn.Sequential, nn.ModuleList)

torch.set_num_threads(1)


@pytest.mark.parametrize("name", ["picosam3", "picosam2"])
def test_output_is_one_96x96_logit_map(name):
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 96, 96))
    assert out.shape == (2, 1, 96, 96)
    assert out.dtype == torch.float32


def test_picosam3_has_the_published_parameter_count():
    params = count_parameters(build_model("picosam3"))
    assert abs(params - PUBLISHED_PARAMS) / PUBLISHED_PARAMS < 0.03, params


def test_picosam2_drops_the_picosam3_blocks():
    p3, p2 = build_model("picosam3"), build_model("picosam2")
    assert any(isinstance(m, EfficientChannelAttention) for m in p3.modules())
    assert not any(isinstance(m, EfficientChannelAttention) for m in p2.modules())
    assert any(isinstance(m, nn.Conv2d) and m.dilation == (2, 2) for m in p3.modules())
    assert not any(isinstance(m, nn.Conv2d) and m.dilation != (1, 1) for m in p2.modules())
    assert count_parameters(p2) < count_parameters(p3)


def test_width_mult_builds_the_wider_teacher():
    teacher = build_model("picosam3", width_mult=2.0)
    assert count_parameters(teacher) > 3 * count_parameters(build_model("picosam3"))
    assert teacher(torch.zeros(1, 3, 96, 96)).shape == (1, 1, 96, 96)


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("picosam9")


@pytest.mark.parametrize("channels, k", [(48, 3), (64, 3), (256, 5), (320, 5), (1024, 5), (16, 3), (4, 1)])
def test_eca_kernel_size_rule(channels, k):
    # k = |log2(C)/2 + 1/2| truncated, then made odd (ECA-Net): 48 -> 3.29 -> 3; 256 -> 4.5 -> 4 -> 5
    assert eca_kernel_size(channels) == k


def test_eca_is_a_real_channel_convolution_and_its_banded_form_is_identical():
    torch.manual_seed(0)
    eca = EfficientChannelAttention(48)
    assert eca.conv.weight.numel() == 3  # k taps shared across channels, no reduction MLP
    x = torch.randn(4, 48, 6, 6)
    banded = eca.to_banded()
    assert isinstance(banded, BandedChannelAttention)
    torch.testing.assert_close(banded(x), eca(x), rtol=1e-5, atol=1e-6)
    # Gate of channel c depends only on channels c-1..c+1: perturbing channel 10 moves gates 9-11 only.
    pooled = x.mean((2, 3))
    y = x.clone()
    y[:, 10] += 1.0
    gate_x = eca(x).mean((2, 3)) / pooled
    gate_y = eca(y).mean((2, 3)) / y.mean((2, 3))
    changed = (gate_x - gate_y).abs().amax(0) > 1e-6
    assert changed.nonzero().flatten().tolist() == [9, 10, 11]


def test_prepare_for_export_keeps_the_function_and_removes_reshapes():
    model = build_model("picosam3").eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        before = model(x)
        prepare_for_export(model)
        after = model(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    assert not any(isinstance(m, EfficientChannelAttention) for m in model.modules())


@pytest.mark.parametrize("name", ["picosam3", "picosam2"])
def test_only_int8_friendly_operators(name):
    model = prepare_for_export(build_model(name))
    for module in model.modules():
        if list(module.children()):
            continue  # containers are checked through their leaves
        assert isinstance(module, ALLOWED), type(module)
        if isinstance(module, nn.Upsample):
            assert module.mode == "nearest"


def test_macs_are_counted():
    macs = count_macs(build_model("picosam3"))
    assert 50e6 < macs < 500e6
    assert count_macs(build_model("picosam3", width_mult=2.0)) > 3 * macs
