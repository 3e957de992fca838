"""Multi-style neural style transfer (Gatys et al.), coarse to fine.

One cohesive algorithm, in the spirit of crowsonkb/style-transfer-pytorch:

* losses: content on relu4_2, style on the Gram matrices of relu1_1..relu5_1 (normalised by the
  number of positions, so they do not depend on resolution), each layer's error taken relative
  to its target's magnitude so that no layer dominates; several styles mix into one target Gram
  by their weights (for a squared error this is the same optimum as a weighted sum of losses);
  a small total-variation term against pixel noise.
* optimisation starts from the instant (feed-forward) result when the caller gives one (``start``:
  the refinement presets; its detail, not the photo's, is restored on upsampling), else from the
  content image (in the presets, half recoloured to the styles' palette), at the coarsest level of
  an image pyramid, runs L-BFGS one iteration at a time
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
import functools
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
from stylebot.ml.runtime import CancelToken, Progress, ProgressCallback, check_cancel

if TYPE_CHECKING:
    from stylebot.ml.backbones import VGGFeatures

log = logging.getLogger(__name__)

FAST_DEV_SIZE = 64
FAST_DEV_ITERATIONS = (3, 3)
MIN_LEVEL_SIDE = 64
MIN_SIDE = 16  # VGG pools four times before relu5_1


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
    detail_transfer: bool = False  # add the photo's own high frequencies when upsampling a level
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
    # Iterations per level when the run starts from the instant (feed-forward) result, coarse
    # first; empty: the same as ``iterations``.
    warm_iterations: tuple[int, ...] = ()


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
# Started from the instant result (the usual case), the coarsest level has nothing left to build:
# measured at 256 px (chelsea + brick, VGG16), 15 + 15 iterations at 1/2 and full size reach a total
# objective of 0.394 in 18.8 full-size evaluations where the cold `fast` run reaches 0.429 in 18.3
# (docs/benchmarks.md).
PRESETS: dict[str, Preset] = {
    "fast": dataclasses.replace(
        _BALANCED, iterations=(60, 25, 10), tolerance=0.02, warm_iterations=(0, 15, 15)
    ),
    "balanced": dataclasses.replace(_BALANCED, warm_iterations=(0, 10, 40)),
    "quality": dataclasses.replace(_BALANCED, iterations=(60, 30, 100), warm_iterations=(0, 20, 100)),
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
    style_layers: tuple[str, ...] = STYLE_LAYERS
    content_layer: str = CONTENT_LAYER
    # Override the preset: single scale, fixed iterations, no early stop (baselines).
    levels: Sequence[tuple[int, int]] | None = None  # (long side, max iterations) per level
    early_stop: bool = True

    def validate(self, n_styles: int) -> None:
        """Only what the method needs; the user-facing limits live in ``stylebot.jobs.spec``."""
        if self.size < MIN_SIDE:
            raise ValueError(f"size must be at least {MIN_SIDE} px")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}")
        if not (math.isfinite(self.strength) and self.strength > 0):
            raise ValueError("strength must be a positive number")
        if n_styles < 1:
            raise ValueError("at least one style image is needed")
        if self.style_weights is not None:
            if len(self.style_weights) != n_styles:
                raise ValueError(f"{len(self.style_weights)} style weights for {n_styles} style images")
            if any(not math.isfinite(w) or w < 0 for w in self.style_weights) or sum(self.style_weights) <= 0:
                raise ValueError("style weights must be non-negative numbers, not all zero")


@dataclass
class NSTResult:
    image: Image.Image
    losses: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    iterations: int = 0
    seconds: float = 0.0
    evaluations: int = 0  # objective evaluations (forward + backward passes), all levels
    work: float = 0.0  # evaluations weighted by pixels, in units of one full-size evaluation


def plan_levels(
    options: NSTOptions, aspect_size: tuple[int, int], *, warm: bool = False
) -> list[tuple[int, int]]:
    """(long side, max iterations) per pyramid level, coarse first; ``warm``: the budget for a
    start from the instant result. Levels with no iterations are left out."""
    if options.levels is not None:
        return [(int(s), int(n)) for s, n in options.levels]
    if options.fast_dev_run:
        size = min(options.size, FAST_DEV_SIZE)
        return [(max(MIN_SIDE, size // 2), FAST_DEV_ITERATIONS[0]), (size, FAST_DEV_ITERATIONS[1])]
    preset = PRESETS[options.preset]
    budget = preset.warm_iterations if warm and preset.warm_iterations else preset.iterations
    n = len(budget)
    sizes = [round(options.size / preset.factor ** (n - 1 - k)) for k in range(n)]
    levels = [(s, it) for s, it in zip(sizes, budget, strict=True) if s >= MIN_LEVEL_SIDE]
    if not levels:  # tiny outputs: one level at the final size
        levels = [(options.size, max(budget))]
    if levels[0][0] != sizes[0]:
        # Levels below the minimum side were dropped; give their work to the first level.
        dropped = sum(it for s, it in zip(sizes, budget, strict=True) if s < MIN_LEVEL_SIDE)
        # A level at half the side costs a quarter as much per iteration.
        levels[0] = (levels[0][0], levels[0][1] + dropped // 4)
    return [(s, it) for s, it in levels if it > 0] or [(options.size, 1)]


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
    ) -> None:
        self.backbone = backbone
        self.options = options
        self.layers = list(dict.fromkeys([*options.style_layers, options.content_layer]))
        with torch.no_grad():
            self.content_target = backbone(content, [options.content_layer])[options.content_layer]
        self.target_grams = target_grams

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        o = self.options
        feats = self.backbone(x, self.layers)
        content = relative_mse(feats[o.content_layer], self.content_target)
        style_losses = [relative_mse(gram(feats[k]), self.target_grams[k]) for k in o.style_layers]
        style = functools.reduce(torch.add, style_losses) / len(style_losses)
        tv = total_variation(x)
        total = o.content_weight * content + o.strength * o.style_weight * style + o.tv_weight * tv * 1e3
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
@dataclass(frozen=True)
class Level:
    """One pyramid level: the long side, its iteration budget, and its place in the plan."""

    number: int
    count: int
    side: int
    max_iterations: int
    pixels: int  # of the photo at this level

    @property
    def stage(self) -> str:
        return f"scale {self.number}/{self.count}"


@dataclass
class Plan:
    """What a run will do: its levels, the method's extras, its L-BFGS memory, whether levels
    stop early, and where it starts (the photo, or the instant result: ``warm``)."""

    levels: list[Level]
    extras: Preset
    history_size: int
    early_stop: bool
    warm: bool

    @classmethod
    def make(cls, options: NSTOptions, content_size: tuple[int, int], *, warm: bool) -> Plan:
        sides = plan_levels(options, content_size, warm=warm)
        levels = [
            Level(k, len(sides), side, n, _pixels_at(content_size, side))
            for k, (side, n) in enumerate(sides, start=1)
        ]
        # The baselines (explicit levels) and fast_dev_run run plain Gatys: no extras, no early stop.
        plain = options.fast_dev_run or options.levels is not None
        extras = PLAIN if plain else PRESETS[options.preset]
        # Explicit levels: the PyTorch tutorial's L-BFGS (memory 100); fast_dev_run keeps 20.
        history = 20 if options.fast_dev_run else 100 if options.levels is not None else extras.history_size
        return cls(levels, extras, history, options.early_stop and not plain, warm)

    @property
    def final_pixels(self) -> int:
        return self.levels[-1].pixels


class _CostModel:
    """Seconds per iteration as ``overhead + cost × pixels``, fitted by least squares to every
    iteration measured so far (all levels), not taken from one level's rate: small levels cost
    more per pixel than large ones, so a rate measured on the first level alone would swing the
    ETA when the next level starts. Until two level sizes have run, the overhead is taken as
    zero, which overestimates (the ETA then only falls)."""

    def __init__(self) -> None:
        self.by_size: dict[int, list[float]] = {}  # pixels -> [seconds, iterations]

    def record(self, seconds: float, pixels: int) -> None:
        entry = self.by_size.setdefault(pixels, [0.0, 0.0])
        entry[0] += max(0.0, seconds)
        entry[1] += 1

    def coefficients(self) -> tuple[float, float] | None:
        if not self.by_size:
            return None
        xs = np.array(list(self.by_size), dtype=np.float64)
        seconds, counts = np.array(list(self.by_size.values()), dtype=np.float64).T
        ys = seconds / counts
        if len(xs) == 1:
            return 0.0, float(ys[0] / xs[0])
        mean_x, mean_y = np.average(xs, weights=counts), np.average(ys, weights=counts)
        var = np.average((xs - mean_x) ** 2, weights=counts)
        slope = max(0.0, float(np.average((xs - mean_x) * (ys - mean_y), weights=counts) / var))
        return max(0.0, float(mean_y - slope * mean_x)), slope

    def eta(self, remaining: Sequence[tuple[int, int]]) -> float | None:
        """Seconds for ``remaining`` (pixels, iterations) pairs."""
        fit = self.coefficients()
        if fit is None:
            return None
        overhead, per_pixel = fit
        return sum(n * (overhead + per_pixel * px) for px, n in remaining)


class _LevelRun:
    """The optimisation at one level: L-BFGS over the image's parameterisation, one iteration per
    :meth:`step`, tracking the lowest-loss iterate for ``keep_best``."""

    def __init__(self, objective: _Objective, x: torch.Tensor, plan: Plan) -> None:
        self.objective = objective
        self.image = _parameterize(x, plan.extras)
        self.keep_best = plan.extras.keep_best
        self.optimizer = torch.optim.LBFGS(
            self.image.params, lr=1.0, max_iter=1, history_size=plan.history_size
        )
        self.evaluations = 0
        self.totals: list[float] = []
        self.last: dict[str, float] = {}
        self.best_total = math.inf
        self.best: torch.Tensor | None = None

    def _closure(self) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        x = self.image.image()
        loss, parts = self.objective(x)
        loss.backward()
        self.evaluations += 1
        self.last = parts
        if self.keep_best and parts["total"] < self.best_total:
            self.best_total, self.best = parts["total"], x.detach().clone()
        return loss

    def step(self) -> dict[str, float]:
        self.optimizer.step(self._closure)
        self.image.project()
        self.totals.append(self.last["total"])
        return dict(self.last)

    def result(self) -> torch.Tensor:
        """The level's image: its last iterate, or the best one when the loss rose at the end."""
        if self.keep_best and self.best is not None and self.best_total < self.last.get("total", math.inf):
            self.image.assign(self.best)
        with torch.no_grad():
            return self.image.image().detach()


def _level_start(
    level: Level,
    plan: Plan,
    options: NSTOptions,
    content: Image.Image,
    start: Image.Image | None,
    styles: Sequence[Image.Image],
    weights: Sequence[float],
    previous: tuple[torch.Tensor, torch.Tensor] | None,
    dev: torch.device,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(photo, detail source, start image) at this level's size.

    The first level starts from ``start`` (the instant result) when given, else from the photo
    (recoloured toward the styles by the preset's ``init_colors``) plus a little noise. Later
    levels upsample the previous result and add the detail the detail source has at this size
    and lacked at the previous one (the instant result's own strokes, or the photo's detail).
    """
    content_img = _fit_long_side(content, level.side)
    content_t = to_tensor(content_img, dev)
    detail_t = to_tensor(_fit_long_side(start, level.side), dev) if start is not None else content_t
    if previous is None:
        if start is not None:
            return content_t, detail_t, detail_t.clone()
        x = content_t
        if plan.extras.init_colors:
            recoloured = to_tensor(recolor(content_img, *color_stats(styles, weights)), dev)
            x = torch.lerp(content_t, recoloured, plan.extras.init_colors)
        noise = torch.randn(content_t.shape, generator=generator).to(dev) * options.init_noise
        return content_t, detail_t, (x + noise).clamp(0, 1)
    x_prev, detail_prev = previous
    size = content_t.shape[-2:]
    x = F.interpolate(x_prev, size=size, mode="bicubic", align_corners=False)
    if plan.extras.detail_transfer or start is not None:
        # The sum is the detail source plus exactly the change the coarser levels made, upsampled.
        x = x + (detail_t - F.interpolate(detail_prev, size=size, mode="bicubic", align_corners=False))
    return content_t, detail_t, x.clamp(0, 1)


def stylize(
    content: Image.Image,
    styles: Sequence[Image.Image],
    options: NSTOptions,
    *,
    backbone: VGGFeatures,
    start: Image.Image | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> NSTResult:
    """Restyle ``content`` with ``styles``; see the module docstring for the method.

    ``start``: begin from this image (the instant result) instead of the photo; the first
    progress event then carries it as the preview, before any optimisation. Raises
    :class:`Cancelled` when ``cancel`` fires (checked before every iteration), ``ValueError`` for
    bad options.
    """
    options.validate(len(styles))
    started = clock()
    net = backbone
    dev = next(net.parameters()).device
    content = content.convert("RGB")
    styles = [s.convert("RGB") for s in styles]
    if options.preserve_colors:
        styles = [match_color(s, content) for s in styles]
    weights = list(options.style_weights) if options.style_weights is not None else [1.0] * len(styles)
    plan = Plan.make(options, content.size, warm=start is not None)
    if start is not None:
        start = start.convert("RGB")
    generator = torch.Generator().manual_seed(options.seed)
    cost = _CostModel()
    total = sum(level.max_iterations for level in plan.levels)
    left = {level.number: level.max_iterations for level in plan.levels}  # iterations still to run
    done, evaluations, work = 0, 0, 0.0
    history: list[dict[str, float]] = []
    losses: dict[str, float] = {}
    previous: tuple[torch.Tensor, torch.Tensor] | None = None

    def emit(stage: str, preview: Image.Image | None) -> None:
        if on_progress is not None:
            eta = cost.eta([(level.pixels, left[level.number]) for level in plan.levels])
            on_progress(Progress(done, total, losses, stage, eta, preview))

    if start is not None:
        emit("instant", _fit_long_side(start, plan.levels[-1].side))
    for level in plan.levels:
        check_cancel(cancel)
        content_t, detail_t, x = _level_start(
            level, plan, options, content, start, styles, weights, previous, dev, generator
        )
        level_options = options
        if level.number < level.count and plan.extras.shift_layers:
            octaves = round(math.log2(plan.levels[-1].side / level.side))
            level_options = _shifted_layers(options, octaves, net)
        style_ts = [to_tensor(_fit_long_side(s, level.side), dev) for s in styles]
        grams = mixed_style_grams(net, style_ts, weights, level_options.style_layers)
        run = _LevelRun(_Objective(net, content_t, grams, level_options), x, plan)
        stage = f"{level.stage} ({content_t.shape[-1]}×{content_t.shape[-2]})"
        for it in range(1, level.max_iterations + 1):
            check_cancel(cancel)
            tick = clock()
            losses = run.step()
            cost.record(clock() - tick, level.pixels)
            history.append({**losses, "level": float(level.number)})
            done += 1
            left[level.number] -= 1
            stop = plan.early_stop and _converged(run.totals, plan.extras)
            if stop:  # the rest of this level's budget will not be spent
                total -= level.max_iterations - it
                left[level.number] = 0
            preview = None
            if options.preview_every and done % options.preview_every == 0:
                preview = to_image(run.image.image())
            emit(stage, preview)
            if stop:
                log.debug("level %d converged after %d iterations", level.number, it)
                break
        x = run.result()
        previous = (x, detail_t)
        work += run.evaluations * level.pixels / plan.final_pixels
        evaluations += run.evaluations
    assert previous is not None
    image = to_image(previous[0])  # clamps
    if options.preserve_colors:
        image = keep_chroma(image, _fit_long_side(content, max(image.size)))
    return NSTResult(
        image=image,
        losses=losses,
        history=history,
        iterations=done,
        seconds=clock() - started,
        evaluations=evaluations,
        work=work,
    )


def _pixels_at(size: tuple[int, int], side: int) -> int:
    scale = side / max(size)
    return max(1, round(size[0] * scale)) * max(1, round(size[1] * scale))


def _shifted_layers(options: NSTOptions, octaves: int, net: VGGFeatures) -> NSTOptions:
    """The same loss an octave down: each layer replaced by the one a pooling stage earlier."""

    def shift(name: str) -> str | None:
        block, conv = name.removeprefix("relu").split("_")
        shifted = f"relu{int(block) - octaves}_{conv}"
        return shifted if int(block) - octaves >= 1 and shifted in net.layer_index else None

    style = tuple(dict.fromkeys(n for n in map(shift, options.style_layers) if n))
    content = shift(options.content_layer) or options.content_layer
    return dataclasses.replace(options, style_layers=style or options.style_layers, content_layer=content)


def _converged(level_losses: list[float], preset: Preset) -> bool:
    n = len(level_losses)
    if n < max(preset.min_iterations, preset.window + 1):
        return False
    before, now = level_losses[-1 - preset.window], level_losses[-1]
    return before > 0 and (before - now) / before < preset.tolerance
