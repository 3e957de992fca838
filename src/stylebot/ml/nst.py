"""Multi-style neural style transfer (Gatys et al.), coarse to fine.

One cohesive algorithm, in the spirit of crowsonkb/style-transfer-pytorch:

* losses: content on relu4_2, style on the Gram matrices of relu1_1..relu5_1 (normalised by the
  number of positions, so they do not depend on resolution), each layer's error taken relative
  to its target's magnitude so that no layer dominates; several styles mix into one target Gram
  by their weights (for a squared error this is the same optimum as a weighted sum of losses);
  a small total-variation term against pixel noise.
* optimisation starts from the content image (in the presets, half recoloured to the
  styles' palette) at the coarsest level of an image pyramid, runs L-BFGS one iteration at a time
  (so progress, previews and cancellation act per iteration), stops a level early once the loss
  stops improving, then upsamples and refines at the next level, so the broad structure is built on
  images a quarter or a sixteenth of the final area. The presets also: let L-BFGS see the image
  as a Laplacian pyramid (the same objective, better conditioned: broad corrections take as few
  steps as fine ones); have the coarse levels optimise the final level's loss an octave down (each
  VGG layer replaced by the one a pooling stage earlier, so coarse levels build what the final
  layers ask for, not structure twice that size); add back the photo's own high frequencies on
  upsampling; keep a 100-step L-BFGS memory; end a level on its lowest-loss iterate (fixed-step
  L-BFGS is not monotone). Tuning figures: docs/notes/nst-tuning.md.
* ``preserve_colors``: the style images' colour statistics are first matched to the content
  (mean and covariance), and the result keeps the content's chroma with the stylised luminance
  (the two colour-preserving variants of Gatys et al. 2017, combined).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from stylebot.ml.backbones import CONTENT_LAYER, STYLE_LAYERS
from stylebot.ml.color import color_stats, keep_chroma, match_color, recolor
from stylebot.ml.runtime import Cancelled as Cancelled  # re-exported: callers import it from here
from stylebot.ml.runtime import CancelToken, Progress, check_cancel

if TYPE_CHECKING:
    from stylebot.ml.backbones import VGGFeatures

log = logging.getLogger(__name__)

FAST_DEV_SIZE = 64
FAST_DEV_ITERATIONS = (3, 3)
MIN_LEVEL_SIDE = 64


NSTProgress = Progress  # the name callers used before runtime.py


# --- options ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    """A pyramid: ``levels`` sizes with ratio ``factor``; iterations per level, coarse first."""

    factor: float
    iterations: tuple[int, ...]
    tolerance: float  # stop a level when the loss improved less than this (relative) over `window`
    window: int = 10
    min_iterations: int = 10
    history_size: int = 20  # L-BFGS memory
    line_search: str | None = None  # None (fixed step) or "strong_wolfe"
    detail_transfer: bool = False  # add the photo's own high frequencies when upsampling a level
    clamp_each_step: bool = True  # False: clamp to [0, 1] only between levels and at the end
    range_weight: float = 0.0  # penalty on pixel values outside [0, 1] (used without clamping)
    keep_best: bool = False  # end a level on its lowest-loss iterate if the loss rose at the end
    # Image parameterisation the optimiser sees: "pixels", or "laplacian" (a Laplacian pyramid of
    # ``bands`` bands, band k scaled by ``band_scale ** k``: a better-conditioned problem for L-BFGS,
    # coarse structure moves as readily as fine detail).
    parameterization: str = "pixels"
    bands: int = 4
    band_scale: float = 0.5
    init_colors: float = 0.0  # start from the photo recoloured this far toward the styles' colours
    # Coarse levels optimise the final level's loss as seen an octave (or two) down: each VGG layer
    # replaced by the one a pooling stage earlier (relu4_2 -> relu3_2), so what they build is what
    # the final level's layers ask for, instead of structure twice the size.
    shift_layers: bool = False


# Tuned against the single-scale 300-step baseline (docs/notes/nst-tuning.md): a Laplacian-pyramid
# parameterisation, a start from the photo half recoloured to the styles' palette, coarse levels that
# optimise the final level's loss an octave down, the photo's detail restored on upsampling, a long
# L-BFGS memory. The presets differ only in budget: most of it goes to the final level, since the
# coarse levels cannot build the fine detail the deep VGG layers respond to.
_BALANCED = Preset(
    factor=2.0,
    iterations=(60, 30, 40),
    tolerance=0.001,
    history_size=100,
    detail_transfer=True,
    keep_best=True,
    parameterization="laplacian",
    init_colors=0.5,
    shift_layers=True,
)
PRESETS: dict[str, Preset] = {
    "fast": dataclasses.replace(_BALANCED, iterations=(60, 25, 10), tolerance=0.02),
    "balanced": _BALANCED,
    "quality": dataclasses.replace(_BALANCED, iterations=(60, 30, 100)),
}
PLAIN = Preset(factor=2.0, iterations=(1,), tolerance=0.0)  # no extras: plain Gatys


@dataclass
class NSTOptions:
    """``size`` is the long side of the result. ``fast_dev_run`` caps it at 64 px and ~6 iterations."""

    size: int = 512
    preset: str = "balanced"
    strength: float = 1.0
    style_weights: Sequence[float] | None = None
    preserve_colors: bool = False
    seed: int = 0
    fast_dev_run: bool = False
    preview_every: int = 0
    # Tuning knobs (not exposed to bot users).
    content_weight: float = 1.0
    style_weight: float = 1.0
    tv_weight: float = 2e-3
    init_noise: float = 0.01
    optimizer: str = "lbfgs"  # "lbfgs" | "adam"
    adam_lr: float = 0.02
    style_layers: tuple[str, ...] = STYLE_LAYERS
    content_layer: str = CONTENT_LAYER
    # Override the preset: single scale, fixed iterations, no early stop (baselines).
    levels: Sequence[tuple[int, int]] | None = None  # (long side, max iterations) per level
    early_stop: bool = True

    def validate(self, n_styles: int) -> None:
        if not 16 <= self.size <= 4096:
            raise ValueError("size must be between 16 and 4096 px")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}")
        if not 0.1 <= self.strength <= 10:
            raise ValueError("strength must be between 0.1 and 10")
        if n_styles < 1:
            raise ValueError("at least one style image is needed")
        if self.style_weights is not None:
            if len(self.style_weights) != n_styles:
                raise ValueError(f"{len(self.style_weights)} style weights for {n_styles} style images")
            if any(not math.isfinite(w) or w < 0 for w in self.style_weights) or sum(self.style_weights) <= 0:
                raise ValueError("style weights must be non-negative numbers, not all zero")
        if self.optimizer not in ("lbfgs", "adam"):
            raise ValueError("optimizer must be lbfgs or adam")


@dataclass
class NSTResult:
    image: Image.Image
    losses: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    iterations: int = 0
    seconds: float = 0.0
    evaluations: int = 0  # objective evaluations (forward + backward passes), all levels
    work: float = 0.0  # evaluations weighted by pixels, in units of one full-size evaluation


def plan_levels(options: NSTOptions, aspect_size: tuple[int, int]) -> list[tuple[int, int]]:
    """(long side, max iterations) per pyramid level, coarse first."""
    if options.levels is not None:
        return [(int(s), int(n)) for s, n in options.levels]
    if options.fast_dev_run:
        size = min(options.size, FAST_DEV_SIZE)
        return [(max(16, size // 2), FAST_DEV_ITERATIONS[0]), (size, FAST_DEV_ITERATIONS[1])]
    preset = PRESETS[options.preset]
    n = len(preset.iterations)
    sizes = [round(options.size / preset.factor ** (n - 1 - k)) for k in range(n)]
    levels = [(s, it) for s, it in zip(sizes, preset.iterations, strict=True) if s >= MIN_LEVEL_SIDE]
    if not levels:  # tiny outputs: one level at the final size
        levels = [(options.size, preset.iterations[0])]
    if levels[0][0] != sizes[0]:
        # Levels below the minimum side were dropped; give their work to the first level.
        dropped = sum(it for s, it in zip(sizes, preset.iterations, strict=True) if s < MIN_LEVEL_SIDE)
        # A level at half the side costs a quarter as much per iteration.
        levels[0] = (levels[0][0], levels[0][1] + dropped // 4)
    return levels


# --- image helpers -------------------------------------------------------------------------------
def _fit_long_side(img: Image.Image, size: int) -> Image.Image:
    scale = size / max(img.size)
    new = (max(8, round(img.width * scale)), max(8, round(img.height * scale)))
    return img.resize(new, Image.Resampling.LANCZOS) if new != img.size else img


def to_tensor(img: Image.Image, device: torch.device | None = None) -> torch.Tensor:
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous().to(device or "cpu")


def to_image(t: torch.Tensor) -> Image.Image:
    arr = t.detach()[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray((arr * 255.0 + 0.5).astype(np.uint8))


# --- losses --------------------------------------------------------------------------------------
def gram(features: torch.Tensor) -> torch.Tensor:
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (h * w)


def relative_mse(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (x - target).square().mean() / (target.square().mean() + 1e-8)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).square().mean() + (x[..., :, 1:] - x[..., :, :-1]).square().mean()


def style_distance(
    backbone: VGGFeatures,
    image: torch.Tensor,
    target_grams: dict[str, torch.Tensor],
    layers: Sequence[str] = STYLE_LAYERS,
) -> float:
    """Mean relative Gram error over ``layers`` (the style loss, as a plain number)."""
    with torch.no_grad():
        feats = backbone(image, layers)
        return float(sum(relative_mse(gram(feats[k]), target_grams[k]) for k in layers) / len(layers))


def content_distance(
    backbone: VGGFeatures, image: torch.Tensor, content: torch.Tensor, layer: str = CONTENT_LAYER
) -> float:
    with torch.no_grad():
        return float(relative_mse(backbone(image, [layer])[layer], backbone(content, [layer])[layer]))


def mixed_style_grams(
    backbone: VGGFeatures, styles: Sequence[torch.Tensor], weights: Sequence[float], layers: Sequence[str]
) -> dict[str, torch.Tensor]:
    total = float(sum(weights))
    mixed: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for style, w in zip(styles, weights, strict=True):
            if w == 0:
                continue
            feats = backbone(style, layers)
            for k in layers:
                g = gram(feats[k]) * (w / total)
                mixed[k] = mixed[k] + g if k in mixed else g
    return mixed


class _Objective:
    def __init__(
        self,
        backbone: VGGFeatures,
        content: torch.Tensor,
        target_grams: dict[str, torch.Tensor],
        options: NSTOptions,
        range_weight: float = 0.0,
    ) -> None:
        self.backbone = backbone
        self.options = options
        self.range_weight = range_weight
        self.layers = list(dict.fromkeys([*options.style_layers, options.content_layer]))
        with torch.no_grad():
            self.content_target = backbone(content, [options.content_layer])[options.content_layer]
        self.target_grams = target_grams

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        o = self.options
        feats = self.backbone(x, self.layers)
        content = relative_mse(feats[o.content_layer], self.content_target)
        style = sum(relative_mse(gram(feats[k]), self.target_grams[k]) for k in o.style_layers) / len(
            o.style_layers
        )
        tv = total_variation(x)
        total = o.content_weight * content + o.strength * o.style_weight * style + o.tv_weight * tv * 1e3
        if self.range_weight:
            total = total + self.range_weight * (F.relu(x - 1).square() + F.relu(-x).square()).mean()
        return total, {
            "total": float(total.detach()),
            "content": float(content.detach()),
            "style": float(style.detach()),
            "tv": float(tv.detach()),
        }


# --- image parameterisations ----------------------------------------------------------------------
class _Pixels:
    """The image itself is the parameter."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x.detach().clone().requires_grad_(True)
        self.params = [self.x]

    def image(self) -> torch.Tensor:
        return self.x

    @torch.no_grad()
    def project(self) -> None:
        self.x.clamp_(0, 1)

    @torch.no_grad()
    def assign(self, x: torch.Tensor) -> None:
        self.x.copy_(x)


class _LaplacianPyramid:
    """The image as a sum of upsampled bands, finest first: x = z0 + up(c·z1 + up(c²·z2 + ...)).

    A linear change of variables, so the objective and its minimum are unchanged; what changes is
    the geometry L-BFGS works in: a gradient that is smooth over a 2^k-pixel block adds up in
    band k, so broad corrections take as few steps as fine ones.
    """

    def __init__(self, x: torch.Tensor, bands: int, band_scale: float) -> None:
        x = x.detach()
        self.sizes = [tuple(x.shape[-2:])]
        while len(self.sizes) < bands and min(self.sizes[-1]) >= 16:
            h, w = self.sizes[-1]
            self.sizes.append(((h + 1) // 2, (w + 1) // 2))
        self.scales = [band_scale**k for k in range(len(self.sizes))]
        self.params = [torch.zeros(x.shape[:2] + size, dtype=x.dtype, device=x.device) for size in self.sizes]
        for p in self.params:
            p.requires_grad_(True)
        self.assign(x)

    @staticmethod
    def _up(t: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        return F.interpolate(t, size=size, mode="bilinear", align_corners=False)

    def image(self) -> torch.Tensor:
        x = self.params[-1] * self.scales[-1]
        for k in range(len(self.params) - 2, -1, -1):
            x = self.params[k] * self.scales[k] + self._up(x, self.sizes[k])
        return x

    @torch.no_grad()
    def assign(self, x: torch.Tensor) -> None:
        gaussians = [x]
        for size in self.sizes[1:]:
            gaussians.append(F.interpolate(gaussians[-1], size=size, mode="area"))
        self.params[-1].copy_(gaussians[-1] / self.scales[-1])
        for k in range(len(self.sizes) - 1):
            self.params[k].copy_((gaussians[k] - self._up(gaussians[k + 1], self.sizes[k])) / self.scales[k])

    @torch.no_grad()
    def project(self) -> None:
        x = self.image()
        self.params[0].add_((x.clamp(0, 1) - x) / self.scales[0])


def _parameterize(x: torch.Tensor, preset: Preset) -> _Pixels | _LaplacianPyramid:
    if preset.parameterization == "laplacian":
        return _LaplacianPyramid(x, preset.bands, preset.band_scale)
    return _Pixels(x)


# --- the run --------------------------------------------------------------------------------------
def _resolve_backbone(backbone: VGGFeatures | str | None, device: torch.device | str | None) -> VGGFeatures:
    from stylebot.ml.backbones import VGGFeatures
    from stylebot.ml.weights import load_backbone

    if isinstance(backbone, VGGFeatures):
        return backbone.to(device) if device is not None else backbone
    if backbone is None:
        from stylebot.config import get_settings

        backbone = get_settings().backbone
    return load_backbone(backbone, device=device)


def stylize(
    content: Image.Image,
    styles: Sequence[Image.Image],
    options: NSTOptions,
    *,
    backbone: VGGFeatures | str | None = None,
    device: torch.device | str | None = None,
    on_progress: Callable[[NSTProgress], None] | None = None,
    cancel: CancelToken | None = None,
) -> NSTResult:
    """Restyle ``content`` with ``styles``; see the module docstring for the method.

    Raises :class:`~stylebot.ml.weights.WeightsError` when no backbone is installed,
    :class:`Cancelled` when ``cancel`` fires, ``ValueError`` for bad options.
    """
    options.validate(len(styles))
    started = time.monotonic()
    net = _resolve_backbone(backbone, device)
    dev = next(net.parameters()).device
    content = content.convert("RGB")
    styles = [s.convert("RGB") for s in styles]
    if options.preserve_colors:
        styles = [match_color(s, content) for s in styles]
    weights = list(options.style_weights) if options.style_weights is not None else [1.0] * len(styles)
    levels = plan_levels(options, content.size)
    generator = torch.Generator().manual_seed(options.seed)
    total = sum(n for _, n in levels)
    done = 0
    history: list[dict[str, float]] = []
    losses: dict[str, float] = {}
    rate: float | None = None  # seconds per (iteration x pixel), measured as we go
    x: torch.Tensor | None = None
    prev_content: torch.Tensor | None = None  # the previous level's photo
    extras = _extras(options)
    counter = [0]  # objective evaluations at this level
    evaluations, work = 0, 0.0
    final_pixels = _pixels_at(content.size, levels[-1][0])

    for level_no, (side, max_iters) in enumerate(levels, start=1):
        check_cancel(cancel)
        content_img = _fit_long_side(content, side)
        content_t = to_tensor(content_img, dev)
        style_ts = [to_tensor(_fit_long_side(s, side), dev) for s in styles]
        level_options = options
        if level_no < len(levels) and extras.shift_layers:
            level_options = _shifted_layers(options, round(math.log2(levels[-1][0] / side)), net)
        grams = mixed_style_grams(net, style_ts, weights, level_options.style_layers)
        objective = _Objective(
            net, content_t, grams, level_options, 0.0 if extras.clamp_each_step else extras.range_weight
        )
        if x is None:
            noise = torch.randn(content_t.shape, generator=generator).to(dev) * options.init_noise
            start = content_t
            if extras.init_colors:
                recoloured = to_tensor(recolor(content_img, *color_stats(styles, weights)), dev)
                start = torch.lerp(content_t, recoloured, extras.init_colors)
            x = (start + noise).clamp(0, 1)
        else:
            x = F.interpolate(x, size=content_t.shape[-2:], mode="bicubic", align_corners=False)
            if extras.detail_transfer:
                # The upsampled result lacks the detail a level up; take the photo's: the photo
                # minus the previous level's photo, upsampled alike. (The sum is the photo plus
                # exactly the change the coarser levels made, upsampled.)
                low = F.interpolate(
                    prev_content, size=content_t.shape[-2:], mode="bicubic", align_corners=False
                )
                x = x + (content_t - low)
            x = x.clamp(0, 1)
        prev_content = content_t
        image = _parameterize(x, extras)
        if options.optimizer == "lbfgs":
            history_size, line_search = _lbfgs_settings(options)
            opt: torch.optim.Optimizer = torch.optim.LBFGS(
                image.params, lr=1.0, max_iter=1, history_size=history_size, line_search_fn=line_search
            )
        else:
            opt = torch.optim.Adam(image.params, lr=options.adam_lr)
        stage = f"scale {level_no}/{len(levels)} ({content_t.shape[-1]}×{content_t.shape[-2]})"
        pixels = content_t.shape[-1] * content_t.shape[-2]
        level_losses: list[float] = []
        best: list = [math.inf, None]
        level_start = time.monotonic()

        def closure(
            objective: _Objective = objective,
            image: _Pixels | _LaplacianPyramid = image,
            opt: torch.optim.Optimizer = opt,
            keep_best: bool = extras.keep_best,
            best: list = best,
        ) -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            x = image.image()
            loss, parts = objective(x)
            loss.backward()
            closure.parts = parts  # type: ignore[attr-defined]
            counter[0] += 1
            if keep_best and parts["total"] < best[0]:
                best[0], best[1] = parts["total"], x.detach().clone()
            return loss

        for it in range(1, max_iters + 1):
            check_cancel(cancel)
            opt.step(closure)
            if extras.clamp_each_step:
                image.project()
            losses = dict(closure.parts)  # type: ignore[attr-defined]
            history.append({**losses, "level": float(level_no)})
            level_losses.append(losses["total"])
            done += 1
            rate = (time.monotonic() - level_start) / (it * pixels)
            stop = options.early_stop and _converged(level_losses, options)
            if stop:
                total -= max_iters - it
            if on_progress is not None:
                remaining = (max_iters - it) * pixels * (not stop) + sum(
                    n * _pixels_at(content.size, s) for s, n in levels[level_no:]
                )
                preview = None
                if options.preview_every and (done % options.preview_every == 0):
                    preview = to_image(image.image())
                on_progress(
                    NSTProgress(done, total, losses, stage, rate * remaining if rate else None, preview)
                )
            if stop:
                log.debug("level %d converged after %d iterations", level_no, it)
                break
        if extras.keep_best and best[1] is not None and best[0] < closure.parts["total"]:  # type: ignore[attr-defined]
            image.assign(best[1])
        with torch.no_grad():
            x = image.image().detach()
        work += counter[0] * pixels / final_pixels
        evaluations += counter[0]
        counter[0] = 0
    assert x is not None
    image = to_image(x)  # clamps
    if options.preserve_colors:
        image = keep_chroma(
            image, _fit_long_side(content, image.width if image.width >= image.height else image.height)
        )
    return NSTResult(
        image=image,
        losses=losses,
        history=history,
        iterations=done,
        seconds=time.monotonic() - started,
        evaluations=evaluations,
        work=work,
    )


def _pixels_at(size: tuple[int, int], side: int) -> int:
    scale = side / max(size)
    return max(1, round(size[0] * scale)) * max(1, round(size[1] * scale))


def _lbfgs_settings(options: NSTOptions) -> tuple[int, str | None]:
    """(history size, line search): the preset's; explicit ``levels`` (the single-scale baseline) get
    torch's defaults (memory 100, no line search), as in the PyTorch tutorial; fast_dev_run keeps 20."""
    if options.fast_dev_run:
        return 20, None
    if options.levels is not None:
        return 100, None
    preset = PRESETS[options.preset]
    return preset.history_size, preset.line_search


def _shifted_layers(options: NSTOptions, octaves: int, net: VGGFeatures) -> NSTOptions:
    """The same loss an octave down: each layer replaced by the one a pooling stage earlier."""

    def shift(name: str) -> str | None:
        block, conv = name.removeprefix("relu").split("_")
        shifted = f"relu{int(block) - octaves}_{conv}"
        return shifted if int(block) - octaves >= 1 and shifted in net.layer_index else None

    style = tuple(dict.fromkeys(n for n in map(shift, options.style_layers) if n))
    content = shift(options.content_layer) or options.content_layer
    return dataclasses.replace(options, style_layers=style or options.style_layers, content_layer=content)


def _extras(options: NSTOptions) -> Preset:
    """The preset whose extras (parameterisation, colour start, detail transfer, keep-best, layer
    shift) apply: none for fast_dev_run and for explicit ``levels`` (the baselines run plain Gatys)."""
    if options.fast_dev_run or options.levels is not None:
        return PLAIN
    return PRESETS[options.preset]


def _converged(level_losses: list[float], options: NSTOptions) -> bool:
    if options.fast_dev_run or options.levels is not None:
        return False
    preset = PRESETS[options.preset]
    n = len(level_losses)
    if n < max(preset.min_iterations, preset.window + 1):
        return False
    before, now = level_losses[-1 - preset.window], level_losses[-1]
    return before > 0 and (before - now) / before < preset.tolerance
