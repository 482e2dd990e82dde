"""A training checkpoint from a shipped fp32 ONNX model, for fine-tuning from the shipped weights.

The fp32 export folds every BatchNorm into the convolution before it and turns ECA's 1-D
channel convolution into a banded 1x1 convolution. Both are undone here:

* each Conv node names the module it came from (``/down.0/.../down.0.0.0.0/Conv_output_0``),
  so its weight goes to that module; the folded bias goes to the BatchNorm beside it;
* the BatchNorm gets running statistics measured on real training crops, and an affine
  that cancels them (gamma = sqrt(var + eps), beta = mean + bias). In eval mode the layer is
  then exactly ``conv(x) + bias``, the exported function; in train mode it normalises with
  the batch's statistics, which are close to the measured ones, so fine-tuning starts from
  the shipped model instead of from a network whose normalisation is off by orders of
  magnitude;
* the ECA taps are read off the banded matrix's middle row.

``check`` compares the rebuilt torch model with ONNX Runtime on the crops and on noise.

CLI: ``picosam3_train import-onnx --onnx picosam3_ros/models/picosam3_fp32.onnx --out runs/shipped.pt``.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from picosam3_train.config import TrainConfig
from picosam3_train.model import EfficientChannelAttention, build_model


def _module_path(node_name: str) -> str:
    """The torch module a node was exported from. Each scope of the node name is a dotted
    name relative to the last module that is not a plain container: "/down.0/down.0.0/Conv"
    -> "down.0.0", "/bottleneck/bottleneck.0/dw/dw.0/Conv" -> "bottleneck.0.dw.0",
    "/attention/conv/Conv" -> "attention.conv"."""
    base = path = previous = ""
    for scope in node_name.split("/")[1:-1]:
        if not (previous and scope.startswith(previous + ".")):
            base = path
        path = f"{base}.{scope}" if base else scope
        previous = scope
    return path


def _conv_tensors(onnx_path: Path) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Module name -> (weight, bias) of every Conv node of the exported graph."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    convs = {}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        module = _module_path(node.name)
        weight = inits[node.input[1]]
        bias = inits[node.input[2]] if len(node.input) > 2 and node.input[2] else None
        convs[module] = (weight, bias)
    return convs


def _bn_after(model: nn.Module, conv_name: str) -> nn.BatchNorm2d | None:
    parent_name, _, index = conv_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, nn.Sequential) and index.isdigit() and int(index) + 1 < len(parent):
        following = parent[int(index) + 1]
        if isinstance(following, nn.BatchNorm2d):
            return following
    return None


def model_from_onnx(onnx_path: str | Path, crops: torch.Tensor, name: str = "picosam3",
                    width_mult: float = 1.0, stem_stride: int = 2) -> nn.Module:
    """The torch model of ``onnx_path``; ``crops`` (N,3,96,96, normalised) set the BN statistics."""
    convs = _conv_tensors(Path(onnx_path))
    model = build_model(name, width_mult=width_mult, stem_stride=stem_stride).eval()
    folded_bias: dict[nn.BatchNorm2d, torch.Tensor] = {}
    used = set()
    for module_name, module in model.named_modules():
        if isinstance(module, EfficientChannelAttention):
            weight, _ = convs[f"{module_name}.conv"]
            banded = weight.reshape(module.channels, module.channels)
            k, middle = module.kernel_size, module.channels // 2
            taps = banded[middle, middle - k // 2: middle + k // 2 + 1]
            module.conv.weight.data.copy_(torch.from_numpy(taps.copy()).reshape(module.conv.weight.shape))
            used.add(f"{module_name}.conv")
        elif isinstance(module, nn.Conv2d) and module_name in convs and module_name not in used:
            weight, bias = convs[module_name]
            if tuple(weight.shape) != tuple(module.weight.shape):
                raise ValueError(f"{module_name}: ONNX weight {weight.shape}, model {module.weight.shape}")
            module.weight.data.copy_(torch.from_numpy(np.array(weight)))
            bn = _bn_after(model, module_name)
            if bn is not None:
                bias = bias if bias is not None else np.zeros(weight.shape[0], np.float32)
                folded_bias[bn] = torch.from_numpy(np.array(bias))
            elif module.bias is not None:
                module.bias.data.copy_(torch.from_numpy(bias))
            used.add(module_name)
    missing = set(convs) - used
    if missing:
        raise ValueError(f"ONNX convolutions with no module in {name}: {sorted(missing)[:5]}")
    _set_batchnorm_statistics(model, folded_bias, crops)
    return model.eval()


@torch.no_grad()
def _set_batchnorm_statistics(model: nn.Module, folded_bias: dict, crops: torch.Tensor) -> None:
    # First every BN is the identity plus its folded bias (the exported function), then each
    # one's input statistics over the crops become its running statistics, cancelled by its affine.
    for bn, bias in folded_bias.items():
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
        bn.weight.fill_(1.0)
        bn.bias.copy_(bias)
    sums: dict[nn.BatchNorm2d, list] = {bn: [] for bn in folded_bias}
    hooks = [bn.register_forward_pre_hook(lambda m, inp: sums[m].append(inp[0].double()))
             for bn in folded_bias]
    for start in range(0, len(crops), 64):
        model(crops[start:start + 64])
    for hook in hooks:
        hook.remove()
    for bn, parts in sums.items():
        x = torch.cat(parts).transpose(0, 1).reshape(bn.num_features, -1)
        mean, var = x.mean(1), x.var(1)
        bn.running_mean.copy_(mean.float())
        bn.running_var.copy_(var.float())
        bn.weight.copy_(torch.sqrt(var + bn.eps).float())
        bn.bias.copy_((mean + folded_bias[bn].double()).float())


def check(model: nn.Module, onnx_path: str | Path, crops: torch.Tensor) -> float:
    """Max |torch - ONNX Runtime| of the logits on the crops and on a noise batch."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal((4, 3, 96, 96)).astype(np.float32))
    worst = 0.0
    for batch in (crops[:32], noise):
        with torch.no_grad():
            ours = model.eval()(batch).numpy()
        theirs = session.run(None, {session.get_inputs()[0].name: batch.numpy()})[0]
        worst = max(worst, float(np.abs(ours - theirs).max()))
    return worst


def training_crops(config: TrainConfig, count: int = 512) -> torch.Tensor:
    """``count`` un-augmented training crops, normalised as the model expects."""
    from picosam3_train.train import build_train_dataset

    dataset = build_train_dataset(config, quiet=True)
    dataset.augment = False
    picks = np.random.default_rng(0).choice(len(dataset), size=min(count, len(dataset)), replace=False)
    return torch.from_numpy(np.stack([dataset[int(i)]["image"] for i in picks]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="picosam3_train import-onnx", description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", default="picosam3_ros/models/picosam3_fp32.onnx")
    parser.add_argument("--out", required=True, help="checkpoint (.pt) to write")
    parser.add_argument("--config", default="picosam3_train/configs/picosam3.yaml",
                        help="training config whose datasets give the BN statistics")
    parser.add_argument("--crops", type=int, default=512)
    args = parser.parse_args(argv)
    from picosam3_train.checkpoint import save_checkpoint
    from picosam3_train.config import load_config

    config = load_config(args.config)
    crops = training_crops(config, args.crops)
    model = model_from_onnx(args.onnx, crops, config.model, config.width_mult, config.stem_stride)
    diff = check(model, args.onnx, crops)
    print(f"imported {args.onnx}: torch vs ONNX Runtime max abs logit diff {diff:.3g}")
    if diff > 1e-3:
        raise SystemExit(f"the rebuilt model differs from {args.onnx} by {diff:.3g}")
    digest = hashlib.sha256(Path(args.onnx).read_bytes()).hexdigest()[:16]
    save_checkpoint(args.out, model, config, {"imported_from": str(args.onnx), "onnx_sha256_16": digest,
                                              "ort_vs_torch_max_abs_diff": diff})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
