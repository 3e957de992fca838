"""NST on tiny images: losses, style weights, colour preservation, cancel, determinism."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylebot.assets import sample_path
from stylebot.ml import nst
from stylebot.ml.backbones import STYLE_LAYERS, VGGFeatures
from stylebot.ml.nst import Cancelled, CancelToken, NSTOptions, NSTProgress, stylize
from stylebot.ml.weights import WeightsError, load_backbone, load_feedforward


def _sample(name: str, side: int = 48) -> Image.Image:
    img = Image.open(sample_path(name)).convert("RGB")
    return nst._fit_long_side(img, side)


@pytest.fixture(scope="module")
def synthetic_backbone(synthetic_models_dir: Path) -> VGGFeatures:
    return load_backbone("vgg19", models_dir=synthetic_models_dir, device="cpu")


@pytest.fixture(scope="module")
def real_backbone(vgg16_models_dir: Path) -> VGGFeatures:
    return load_backbone("vgg16", models_dir=vgg16_models_dir, device="cpu")


def _style_gap(net: VGGFeatures, image: Image.Image, style: Image.Image) -> float:
    side = max(image.size)
    grams = nst.mixed_style_grams(net, [nst.to_tensor(nst._fit_long_side(style, side))], [1.0], STYLE_LAYERS)
    return nst.style_distance(net, nst.to_tensor(image), grams)


def test_total_loss_falls(synthetic_backbone: VGGFeatures) -> None:
    options = NSTOptions(size=40, levels=[(40, 8)], early_stop=False)
    result = stylize(
        _sample("chelsea.jpg"), [_sample("texture_brick.jpg")], options, backbone=synthetic_backbone
    )
    totals = [h["total"] for h in result.history]
    assert len(totals) == 8 == result.iterations
    assert totals[-1] < 0.8 * totals[0]
    assert result.image.size == (40, 27)


def test_progress_is_monotonic_and_reaches_the_end(synthetic_backbone: VGGFeatures) -> None:
    seen: list[NSTProgress] = []
    options = NSTOptions(size=48, fast_dev_run=True, preview_every=2)
    result = stylize(
        _sample("chelsea.jpg"),
        [_sample("texture_grass.jpg")],
        options,
        backbone=synthetic_backbone,
        on_progress=seen.append,
    )
    assert [p.iteration for p in seen] == list(range(1, len(seen) + 1))
    assert len(seen) == result.iterations <= 6
    assert seen[-1].fraction == 1.0
    assert all(0.0 <= p.fraction <= 1.0 for p in seen)
    assert {"total", "content", "style"} <= set(seen[-1].losses)
    assert [p.iteration for p in seen if p.preview is not None] == [2, 4, 6]
    assert all(p.eta_s is not None and p.eta_s >= 0 for p in seen)


def test_fast_dev_run_caps_size_and_iterations() -> None:
    levels = nst.plan_levels(NSTOptions(size=2048, fast_dev_run=True), (4000, 3000))
    assert max(s for s, _ in levels) == 64 and sum(n for _, n in levels) <= 6


def _full_res_work(preset: str) -> float:
    """Iterations of a 512-px run, each weighted by its level's area relative to 512 px."""
    levels = nst.plan_levels(NSTOptions(size=512, preset=preset), (640, 480))
    return sum(n * (s / 512) ** 2 for s, n in levels)


def test_default_pyramid_does_most_iterations_on_small_images() -> None:
    levels = nst.plan_levels(NSTOptions(size=512), (640, 480))
    assert [s for s, _ in levels] == [128, 256, 512]
    assert _full_res_work("balanced") <= 300 / 5  # at most a fifth of a 300-step single-scale run


def test_presets_share_the_method_and_differ_in_full_resolution_effort() -> None:
    assert _full_res_work("fast") < _full_res_work("balanced") < _full_res_work("quality")
    for name in ("fast", "quality"):
        extras = nst.Plan.make(NSTOptions(preset=name), (640, 480), warm=False).extras
        assert extras.parameterization == "laplacian" and extras.shift_layers and extras.detail_transfer


def test_baselines_and_fast_dev_run_keep_plain_lbfgs_without_the_preset_extras() -> None:
    def plan(options: NSTOptions) -> nst.Plan:
        return nst.Plan.make(options, (640, 480), warm=False)

    assert plan(NSTOptions(levels=[(64, 10)], early_stop=False)).history_size == 100
    assert plan(NSTOptions(fast_dev_run=True)).history_size == 20
    for plain in (NSTOptions(levels=[(64, 10)]), NSTOptions(fast_dev_run=True)):
        p = plan(plain)
        extras = p.extras
        assert not (extras.detail_transfer or extras.keep_best or extras.shift_layers or extras.init_colors)
        assert extras.parameterization == "pixels" and not p.early_stop
    assert plan(NSTOptions()).extras.detail_transfer and plan(NSTOptions()).history_size == 100


def test_dropped_levels_hand_on_their_work_not_their_iterations() -> None:
    # 128 px: the 32-px level is dropped; its 60 iterations cost 15 at 64 px.
    assert nst.plan_levels(NSTOptions(size=128), (640, 480)) == [(64, 30 + 15), (128, 40)]


def test_pyramid_with_all_extras_is_deterministic_and_counts_work(
    synthetic_backbone: VGGFeatures, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nst, "MIN_LEVEL_SIDE", 16)
    monkeypatch.setitem(
        nst.PRESETS,
        "tiny",
        # The shipped preset's extras, with a budget and pyramid small enough for 48 px.
        dataclasses.replace(nst.PRESETS["balanced"], iterations=(4, 3), history_size=50, bands=3),
    )

    def run() -> nst.NSTResult:
        options = NSTOptions(size=48, preset="tiny")
        return stylize(
            _sample("chelsea.jpg"), [_sample("texture_brick.jpg")], options, backbone=synthetic_backbone
        )

    first, second = run(), run()
    assert first.image.tobytes() == second.image.tobytes()
    assert first.image.size == (48, 32)
    assert first.iterations == first.evaluations == 7
    assert first.work == pytest.approx(3 + 4 * (24 * 16) / (48 * 32))


def test_cancel_stops_within_one_iteration(synthetic_backbone: VGGFeatures) -> None:
    token = CancelToken()
    calls: list[int] = []

    def on_progress(p: NSTProgress) -> None:
        calls.append(p.iteration)
        if p.iteration == 2:
            token.cancel()

    options = NSTOptions(size=48, levels=[(48, 50)], early_stop=False)
    with pytest.raises(Cancelled):
        stylize(
            _sample("chelsea.jpg"),
            [_sample("texture_brick.jpg")],
            options,
            backbone=synthetic_backbone,
            on_progress=on_progress,
            cancel=token,
        )
    assert calls == [1, 2]


def test_cancel_from_another_thread(synthetic_backbone: VGGFeatures) -> None:
    token = CancelToken()
    started = threading.Event()
    seen: list[int] = []

    def on_progress(p: NSTProgress) -> None:
        seen.append(p.iteration)
        started.set()

    threading.Thread(target=lambda: started.wait(30) and token.cancel(), daemon=True).start()
    options = NSTOptions(size=48, levels=[(48, 500)], early_stop=False)
    with pytest.raises(Cancelled):
        stylize(
            _sample("chelsea.jpg"),
            [_sample("texture_brick.jpg")],
            options,
            backbone=synthetic_backbone,
            on_progress=on_progress,
            cancel=token,
        )
    assert len(seen) < 500


def test_same_seed_same_output_different_seed_differs(synthetic_backbone: VGGFeatures) -> None:
    def run(seed: int) -> bytes:
        options = NSTOptions(size=40, levels=[(40, 4)], early_stop=False, seed=seed)
        return stylize(
            _sample("chelsea.jpg"), [_sample("texture_gravel.jpg")], options, backbone=synthetic_backbone
        ).image.tobytes()

    first = run(1)
    assert run(1) == first
    assert run(2) != first


def test_preserve_colors_keeps_the_content_colour_statistics(synthetic_backbone: VGGFeatures) -> None:
    content, style = _sample("chelsea.jpg"), _sample("texture_grass.jpg")

    def chroma_means(img: Image.Image) -> np.ndarray:
        return np.asarray(img.convert("YCbCr"), dtype=float)[..., 1:].reshape(-1, 2).mean(0)

    base = dict(size=48, levels=[(48, 12)], early_stop=False, strength=5.0)
    plain = stylize(content, [style], NSTOptions(**base), backbone=synthetic_backbone).image
    kept = stylize(
        content, [style], NSTOptions(**base, preserve_colors=True), backbone=synthetic_backbone
    ).image
    target = chroma_means(content)
    assert np.abs(chroma_means(kept) - target).max() < 1.5
    # Without the option the style's green moves the colours: the test would notice a no-op.
    assert np.abs(chroma_means(plain) - target).max() > 3 * np.abs(chroma_means(kept) - target).max()


def test_bad_options_are_rejected(synthetic_backbone: VGGFeatures) -> None:
    content, style = _sample("chelsea.jpg"), _sample("texture_grass.jpg")
    with pytest.raises(ValueError, match="style weights"):
        stylize(content, [style], NSTOptions(style_weights=[1, 2]), backbone=synthetic_backbone)
    with pytest.raises(ValueError, match="not all zero"):
        stylize(content, [style], NSTOptions(style_weights=[0]), backbone=synthetic_backbone)
    with pytest.raises(ValueError, match="strength"):
        stylize(content, [style], NSTOptions(strength=-1), backbone=synthetic_backbone)
    with pytest.raises(ValueError, match="at least one style"):
        stylize(content, [], NSTOptions(), backbone=synthetic_backbone)


def test_missing_backbone_is_a_weights_error_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="models pull"):
        load_backbone("auto", models_dir=tmp_path / "nothing", device="cpu")


@pytest.mark.realweights
def test_style_weights_shift_the_result_toward_the_heavier_style(real_backbone: VGGFeatures) -> None:
    content = _sample("chelsea.jpg", 56)
    brick, grass = _sample("texture_brick.jpg", 56), _sample("texture_grass.jpg", 56)

    def run(weights: list[float]) -> Image.Image:
        options = NSTOptions(
            size=56, levels=[(56, 25)], early_stop=False, style_weights=weights, strength=3.0
        )
        return stylize(content, [brick, grass], options, backbone=real_backbone).image

    brick_heavy, grass_heavy = run([4, 1]), run([1, 4])
    assert _style_gap(real_backbone, brick_heavy, brick) < _style_gap(real_backbone, grass_heavy, brick)
    assert _style_gap(real_backbone, grass_heavy, grass) < _style_gap(real_backbone, brick_heavy, grass)


@pytest.mark.realweights
def test_real_vgg16_moves_gram_statistics_toward_the_style(real_backbone: VGGFeatures) -> None:
    """Stated margin: the output's style distance is at least 30% below the content photo's."""
    content, style = _sample("chelsea.jpg", 64), _sample("texture_brick.jpg", 64)
    result = stylize(content, [style], NSTOptions(size=64, preset="fast"), backbone=real_backbone)
    before = _style_gap(real_backbone, nst._fit_long_side(content, 64), style)
    after = _style_gap(real_backbone, result.image, style)
    assert after < 0.7 * before, (before, after)


def test_laplacian_parameterisation_is_exact_and_projects_into_range() -> None:
    x = torch.rand(1, 3, 70, 100, generator=torch.Generator().manual_seed(1)) * 1.4 - 0.2
    pyramid = nst._LaplacianPyramid(x, bands=4, band_scale=0.5)
    assert [tuple(p.shape[-2:]) for p in pyramid.params] == [(70, 100), (35, 50), (18, 25), (9, 13)]
    assert torch.allclose(pyramid.image(), x, atol=1e-5)
    pyramid.project()
    assert torch.allclose(pyramid.image(), x.clamp(0, 1), atol=1e-5)
    # A smooth change of the image reaches the coarse band with a gradient ~4x per octave larger
    # than the finest band's per pixel: the preconditioning that L-BFGS benefits from.
    (pyramid.image().sum()).backward()
    assert pyramid.params[2].grad.abs().mean() > 3 * pyramid.params[0].grad.abs().mean()


def test_coarse_levels_use_the_final_loss_an_octave_down(synthetic_backbone: VGGFeatures) -> None:
    one = nst._shifted_layers(NSTOptions(), 1, synthetic_backbone)
    assert one.content_layer == "relu3_2"
    assert one.style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    two = nst._shifted_layers(NSTOptions(), 2, synthetic_backbone)
    assert two.content_layer == "relu2_2" and two.style_layers == ("relu1_1", "relu2_1", "relu3_1")


def test_color_stats_mix_styles_by_weight() -> None:
    red = Image.new("RGB", (4, 4), (255, 0, 0))
    blue = Image.new("RGB", (4, 4), (0, 0, 255))
    mean, cov = nst.color_stats([red, blue], [3.0, 1.0])
    assert mean == pytest.approx([0.75, 0.0, 0.25])
    assert cov[0, 0] == pytest.approx(0.75 * 0.25) and cov[0, 2] == pytest.approx(-0.75 * 0.25)
    grey = Image.new("RGB", (8, 8), (128, 128, 128))
    recoloured = np.asarray(nst.recolor(grey, mean, cov), dtype=float) / 255
    assert recoloured.reshape(-1, 3).mean(0) == pytest.approx(mean, abs=0.01)


# --- refinement from the instant result -------------------------------------------------------------
def _objective(net: VGGFeatures, image: Image.Image, content: Image.Image, style: Image.Image) -> float:
    side = max(image.size)
    options = NSTOptions(size=side)
    grams = nst.mixed_style_grams(net, [nst.to_tensor(nst._fit_long_side(style, side))], [1.0], STYLE_LAYERS)
    objective = nst._Objective(net, nst.to_tensor(nst._fit_long_side(content, side)), grams, options)
    with torch.no_grad():
        return objective(nst.to_tensor(image))[1]["total"]


@pytest.mark.realweights
def test_refinement_from_the_instant_result_lowers_its_objective(
    real_backbone: VGGFeatures, feedforward_models_dir: Path
) -> None:
    from stylebot.ml import feedforward as ff
    from stylebot.ml.names import ARBITRARY_PREDICT, ARBITRARY_TRANSFORM

    content, style = _sample("chelsea.jpg", 64), _sample("texture_brick.jpg", 64)
    predictor, transformer = (
        load_feedforward(n, models_dir=feedforward_models_dir)
        for n in (ARBITRARY_PREDICT, ARBITRARY_TRANSFORM)
    )
    start = ff.instant(predictor, transformer, content, [style])
    seen: list[NSTProgress] = []
    result = stylize(
        content,
        [style],
        NSTOptions(size=64, preset="fast"),
        backbone=real_backbone,
        start=start,
        on_progress=seen.append,
    )
    # The first event is the instant result itself, before any iteration.
    assert seen[0].iteration == 0 and seen[0].stage == "instant"
    assert seen[0].preview is not None and seen[0].preview.tobytes() == start.tobytes()
    assert _objective(real_backbone, result.image, content, style) < 0.9 * _objective(
        real_backbone, start, content, style
    )


def test_a_warm_start_cancels_within_one_iteration(synthetic_backbone: VGGFeatures) -> None:
    token = CancelToken()
    calls: list[int] = []

    def on_progress(p: NSTProgress) -> None:
        calls.append(p.iteration)
        if p.iteration == 1:
            token.cancel()

    content = _sample("chelsea.jpg")
    with pytest.raises(Cancelled):
        stylize(
            content,
            [_sample("texture_brick.jpg")],
            NSTOptions(size=48, preset="balanced"),
            backbone=synthetic_backbone,
            start=content.rotate(180),
            on_progress=on_progress,
            cancel=token,
        )
    assert calls == [0, 1]


def test_warm_budgets_leave_out_empty_levels_and_are_smaller() -> None:
    for name in ("fast", "balanced", "quality"):
        cold = nst.plan_levels(NSTOptions(size=512, preset=name), (640, 480))
        warm = nst.plan_levels(NSTOptions(size=512, preset=name), (640, 480), warm=True)
        assert warm[-1][0] == 512 and all(n > 0 for _, n in warm)
        assert sum(n * (s / 512) ** 2 for s, n in warm) <= sum(n * (s / 512) ** 2 for s, n in cold)


def test_eta_comes_from_a_measured_cost_per_pixel_iteration_and_is_steady(
    synthetic_backbone: VGGFeatures, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fake clock: each iteration costs a fixed overhead plus a cost per pixel, as on a real
    machine (small levels cost more per pixel). The ETA must never rise, and must be right once
    the last level runs."""
    now = [0.0]

    def clock() -> float:
        return now[0]

    real_step = nst._LevelRun.step

    def step(self: nst._LevelRun) -> dict[str, float]:
        out = real_step(self)
        h, w = self.image.image().shape[-2:]
        now[0] += 0.05 + h * w * 1e-4
        return out

    monkeypatch.setattr(nst._LevelRun, "step", step)
    seen: list[NSTProgress] = []
    options = NSTOptions(size=96, levels=[(24, 6), (48, 6), (96, 6)], early_stop=False)
    stylize(
        _sample("chelsea.jpg", 96),
        [_sample("texture_brick.jpg")],
        options,
        backbone=synthetic_backbone,
        on_progress=seen.append,
        clock=clock,
    )
    etas = [p.eta_s for p in seen]
    assert all(e is not None for e in etas)
    assert all(b <= a * 1.001 for a, b in itertools.pairwise(etas)), etas
    # From the second level on, the fitted cost is right: the ETA is the time actually left.
    for p, eta in zip(seen, etas, strict=True):
        if p.stage.startswith("scale 3/3"):
            assert eta == pytest.approx((18 - p.iteration) * (0.05 + 96 * 64 * 1e-4), rel=0.01)
        elif p.stage.startswith("scale 2/3"):
            assert eta == pytest.approx(
                (12 - p.iteration) * (0.05 + 48 * 32 * 1e-4) + 6 * (0.05 + 96 * 64 * 1e-4), rel=0.01
            )
