"""CycleGAN generators, compatible with the official ``latest_net_G.pth`` checkpoints.

The network mirrors ``ResnetGenerator`` of junyanz/pytorch-CycleGAN-and-pix2pix (``resnet_9blocks``,
ngf 64, InstanceNorm without affine or running stats, reflection padding, Tanh), module for module,
so the official files load with ``strict=True`` once the stale InstanceNorm running-stat keys of
old checkpoints are dropped.

Large photos run in overlapping tiles with feathered seams. InstanceNorm normalises with the
statistics of whatever it sees, so per-tile statistics would give every tile its own tone; instead
the statistics of every norm layer are first gathered on a downscaled pass over the whole image
and then held fixed while the tiles run at full resolution.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from stylebot.ml.runtime import CancelToken, Progress, check_cancel

log = logging.getLogger(__name__)

N_BLOCKS = 9
NGF = 64
PARAM_COUNT = 11_378_179
STALE_NORM_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


class GlobalStatsInstanceNorm(nn.InstanceNorm2d):
    """``InstanceNorm2d(affine=False)`` that can record its statistics or reuse recorded ones.

    Adds no parameters or buffers, so checkpoints see a plain InstanceNorm2d.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features, affine=False, track_running_stats=False)
        self.mode = "instance"  # "instance" | "record" | "fixed"
        self.recorded: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "instance":
            return super().forward(x)
        if self.mode == "record":
            var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, unbiased=False)
            self.recorded = (mean, var)
        assert self.recorded is not None, "fixed-statistics mode without recorded statistics"
        mean, var = self.recorded
        return (x - mean) / torch.sqrt(var + self.eps)


class ResnetBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=True),
            GlobalStatsInstanceNorm(dim),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=True),
            GlobalStatsInstanceNorm(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """The official ``resnet_9blocks`` generator; state_dict keys ``model.N...`` (48 of them)."""

    def __init__(
        self, input_nc: int = 3, output_nc: int = 3, ngf: int = NGF, n_blocks: int = N_BLOCKS
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, 7, bias=True),
            GlobalStatsInstanceNorm(ngf),
            nn.ReLU(True),
        ]
        for i in range(2):
            mult = 2**i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=True),
                GlobalStatsInstanceNorm(ngf * mult * 2),
                nn.ReLU(True),
            ]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            layers += [
                nn.ConvTranspose2d(
                    ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=True
                ),
                GlobalStatsInstanceNorm(ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        # Shared generators serve several threads; norm modes are per-module state.
        self.lock = threading.RLock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def norms(self) -> list[GlobalStatsInstanceNorm]:
        return [m for m in self.modules() if isinstance(m, GlobalStatsInstanceNorm)]


def clean_state_dict(state: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Drop the InstanceNorm running stats of old checkpoints and any ``module.`` prefix."""
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"entry {key!r} is not a tensor")
        key = key.removeprefix("module.")
        if key.endswith(STALE_NORM_SUFFIXES):
            continue
        out[key] = value
    return out


def generator_from_state_dict(state: Mapping[str, object]) -> ResnetGenerator:
    """Build a generator and load ``state`` strictly (after dropping stale norm stats)."""
    net = ResnetGenerator()
    net.load_state_dict(clean_state_dict(state), strict=True)
    net.eval().requires_grad_(False)
    return net


def read_checkpoint(path: Path) -> ResnetGenerator:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise TypeError(f"expected a state_dict, found {type(state).__name__}")
    return generator_from_state_dict(state)


# --- image <-> tensor --------------------------------------------------------------------------
def _to_tensor(img: Image.Image, device: torch.device) -> torch.Tensor:
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).to(device)


def _to_array(t: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW (N=1) → float HWC in [0, 255]."""
    return (t[0].clamp(-1, 1).permute(1, 2, 0).float().cpu().numpy() + 1.0) * 127.5


def _to_image(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))


def _run_padded(generator: ResnetGenerator, x: torch.Tensor) -> torch.Tensor:
    """Reflect-pad H and W up to a multiple of 4, run, crop back."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % 4, (-w) % 4
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    with torch.inference_mode():
        y = generator(x)
    return y[..., :h, :w]


@contextmanager
def _norm_mode(generator: ResnetGenerator, mode: str) -> Iterator[None]:
    norms = generator.norms()
    for n in norms:
        n.mode = mode
    try:
        yield
    finally:
        for n in norms:
            n.mode = "instance"
            if mode == "fixed":
                n.recorded = None


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def _ramp(length: int, overlap: int, feather_start: bool, feather_end: bool) -> np.ndarray:
    w = np.ones(length, dtype=np.float32)
    n = min(overlap, length // 2)
    if n > 0:
        ramp = (np.arange(n, dtype=np.float32) + 0.5) / n
        if feather_start:
            w[:n] = ramp
        if feather_end:
            w[-n:] = ramp[::-1]
    return w


ProgressCallback = Callable[[Progress], None]


def translate(
    generator: ResnetGenerator,
    image: Image.Image,
    *,
    max_side: int | None = None,
    tile: int = 512,
    overlap: int = 64,
    stats_side: int = 1024,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Image.Image:
    """Restyle ``image``; the result has the input's size.

    ``max_side`` bounds the working resolution (the result is scaled back up). Images larger
    than ``tile`` run in overlapping tiles, with norm statistics from a whole-image pass at
    ``stats_side`` px on the long side (at most; smaller images use their own size).
    """
    if tile < 64 or tile % 4:
        raise ValueError("tile must be a multiple of 4 and at least 64")
    if not 0 <= overlap < tile // 2:
        raise ValueError("overlap must be in [0, tile/2)")
    image = image.convert("RGB")
    work = image
    if max_side is not None and max(image.size) > max_side:
        from stylebot.imaging import resize_long_side

        work = resize_long_side(image, max_side)
    device = next(generator.parameters()).device
    started = time.monotonic()
    w, h = work.size
    ys, xs = _tile_starts(h, tile, overlap), _tile_starts(w, tile, overlap)
    total = len(ys) * len(xs)

    def report(done: int) -> None:
        if on_progress is None:
            return
        elapsed = time.monotonic() - started
        eta = elapsed / done * (total - done) if done else None
        on_progress(Progress(done, total, {}, "tiles" if total > 1 else "translate", eta, None))

    with generator.lock:
        check_cancel(cancel)
        if total == 1:
            out = _to_image(_to_array(_run_padded(generator, _to_tensor(work, device))))
            report(1)
        else:
            out = _translate_tiled(generator, work, ys, xs, tile, overlap, stats_side, device, report, cancel)
    if out.size != image.size:
        out = out.resize(image.size, Image.Resampling.LANCZOS)
    return out


def _translate_tiled(
    generator: ResnetGenerator,
    work: Image.Image,
    ys: list[int],
    xs: list[int],
    tile: int,
    overlap: int,
    stats_side: int,
    device: torch.device,
    report: Callable[[int], None],
    cancel: CancelToken | None,
) -> Image.Image:
    from stylebot.imaging import resize_long_side

    w, h = work.size
    overview = resize_long_side(work, stats_side)  # no-op when the image is already smaller
    with _norm_mode(generator, "record"):
        _run_padded(generator, _to_tensor(overview, device))
    acc = np.zeros((h, w, 3), dtype=np.float32)
    weight = np.zeros((h, w, 1), dtype=np.float32)
    done = 0
    with _norm_mode(generator, "fixed"):
        for y in ys:
            for x in xs:
                check_cancel(cancel)
                box = (x, y, min(x + tile, w), min(y + tile, h))
                piece = _to_array(_run_padded(generator, _to_tensor(work.crop(box), device)))
                th, tw = piece.shape[:2]
                wy = _ramp(th, overlap, y > 0, box[3] < h)
                wx = _ramp(tw, overlap, x > 0, box[2] < w)
                mask = (wy[:, None] * wx[None, :])[..., None]
                acc[y : y + th, x : x + tw] += piece * mask
                weight[y : y + th, x : x + tw] += mask
                done += 1
                report(done)
    return _to_image(acc / np.maximum(weight, 1e-6))


def translate_batch(generator: ResnetGenerator, images: Sequence[Image.Image]) -> list[Image.Image]:
    """Restyle several images in as few forward passes as possible.

    Images are grouped by size (padding them to a common size would change their InstanceNorm
    statistics), and each group runs as one batch. Results come back in input order.
    """
    device = next(generator.parameters()).device
    groups: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(img.size, []).append(i)
    results: list[Image.Image | None] = [None] * len(images)
    with generator.lock:
        for indices in groups.values():
            batch = torch.cat([_to_tensor(images[i], device) for i in indices])
            out = _run_padded(generator, batch)
            for row, i in enumerate(indices):
                results[i] = _to_image(_to_array(out[row : row + 1]))
    return [r for r in results if r is not None]


def random_generator_state(seed: int = 0, *, with_stale_norm_stats: bool = False) -> dict[str, torch.Tensor]:
    """A deterministic random generator state in the official layout (tests, dry runs)."""
    torch.manual_seed(seed)
    net = ResnetGenerator()
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    if with_stale_norm_stats:
        # Checkpoints saved before PyTorch 0.4 carried running stats on every InstanceNorm.
        for name, module in net.named_modules():
            if isinstance(module, GlobalStatsInstanceNorm):
                state[f"{name}.running_mean"] = torch.zeros(module.num_features)
                state[f"{name}.running_var"] = torch.ones(module.num_features)
                state[f"{name}.num_batches_tracked"] = torch.tensor(0)
    return state
