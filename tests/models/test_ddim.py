"""The noise schedules against their formulas, the forward noising's moments, and the DDIM sampler and its
in-painting with the exact optimal noise predictor of known data distributions (no training)."""
from __future__ import annotations

import math

import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.models.ddim import ddim_sample
from deepfield.models.noise_schedule import NoiseSchedule


def test_cosine_alpha_bar_is_nichol_and_dhariwals_formula_until_beta_is_clipped():
    schedule = NoiseSchedule("cosine", 1000)
    f = [math.cos((u / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2 for u in range(1001)]
    formula = torch.tensor([f[t + 1] / f[0] for t in range(1000)], dtype=torch.float64)
    betas = 1 - formula[1:] / formula[:-1]
    unclipped = int((betas < 0.999).sum()) + 1  # steps before the first β above 0.999
    assert unclipped >= 998
    torch.testing.assert_close(schedule.alpha_bar[:unclipped], formula[:unclipped], rtol=1e-12, atol=1e-15)
    assert schedule.alpha_bar[-1] == pytest.approx(formula[unclipped - 1] * 0.001 ** (1000 - unclipped))
    assert bool((schedule.alpha_bar.diff() < 0).all())


def test_linear_alpha_bar_is_the_product_of_hos_betas_scaled_to_t():
    schedule = NoiseSchedule("linear", 500)
    betas = torch.linspace(2e-4, 0.04, 500, dtype=torch.float64)  # 1e-4 and 0.02 times 1000/500
    torch.testing.assert_close(schedule.alpha_bar, torch.cumprod(1 - betas, 0))


def test_forward_noising_has_the_schedules_mean_and_variance():
    schedule = NoiseSchedule("cosine", 1000)
    generator = torch.Generator().manual_seed(0)
    draws = 40_000
    for t in (0, 250, 600, 999):
        image = torch.tensor([2.0, -1.0, 0.5])
        x = schedule.add_noise(image.expand(draws, 3), torch.full((draws,), t),
                               torch.randn(draws, 3, generator=generator))
        alpha_bar = float(schedule.alpha_bar[t])
        std = math.sqrt(1 - alpha_bar)
        torch.testing.assert_close(x.mean(0), math.sqrt(alpha_bar) * image, atol=5 * std / math.sqrt(draws) + 1e-6,
                                   rtol=0)
        assert x.var(0).numpy() == pytest.approx([1 - alpha_bar] * 3, rel=0.05, abs=1e-9)


def test_sampling_steps_are_evenly_spaced_down_to_zero():
    schedule = NoiseSchedule("cosine", 1000)
    assert schedule.sampling_steps(10) == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    assert schedule.sampling_steps(1000) == list(range(999, -1, -1))
    steps = schedule.sampling_steps(37)
    assert len(steps) == 37 and steps[-1] == 0 and all(a > b for a, b in zip(steps, steps[1:]))


@pytest.mark.parametrize("kind", ["cosine", "linear"])
@pytest.mark.parametrize("steps, eta", [(1, 0.0), (10, 0.0), (50, 0.0), (10, 1.0), (25, 0.5)])
def test_ddim_with_the_optimal_predictor_of_one_image_returns_that_image(kind, steps, eta):
    schedule = NoiseSchedule(kind, 1000)
    target = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(1)) * 3

    def optimal(x: torch.Tensor, t: int) -> torch.Tensor:  # data = one image x*: ε = (x_t − √ᾱ x*) / √(1 − ᾱ)
        alpha_bar = schedule.level(t)
        return (x - math.sqrt(alpha_bar) * target) / math.sqrt(1 - alpha_bar)

    generator = torch.Generator().manual_seed(0)
    out = ddim_sample(optimal, torch.randn(5, 2, 8, 8, generator=generator), schedule, steps, eta=eta,
                      generator=generator)
    torch.testing.assert_close(out, target.expand(5, -1, -1, -1), atol=1e-4, rtol=0)


def test_ddim_with_the_optimal_predictor_of_gaussian_data_converges_to_its_moments():
    # x_0 ~ N(μ, s²) per pixel: E[ε | x_t] = √(1 − ᾱ) (x_t − √ᾱ μ) / (ᾱ s² + 1 − ᾱ); DDIM's deterministic flow maps
    # N(0, 1) onto the data; few steps start from ᾱ > 0 (a small shrinkage): it shrinks with the step count
    schedule, mu, s = NoiseSchedule("cosine", 1000), 2.0, 0.5

    def optimal(x: torch.Tensor, t: int) -> torch.Tensor:
        alpha_bar = schedule.level(t)
        return math.sqrt(1 - alpha_bar) * (x - math.sqrt(alpha_bar) * mu) / (alpha_bar * s**2 + 1 - alpha_bar)

    errors = []
    for steps in (10, 50, 200):
        generator = torch.Generator().manual_seed(0)
        out = ddim_sample(optimal, torch.randn(20_000, 1, 1, 1, generator=generator), schedule, steps, eta=0.0,
                          generator=generator)
        errors.append(abs(float(out.mean()) - mu) + abs(float(out.std()) - s))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.02 and errors[0] < 0.3


def test_inpainting_with_the_optimal_predictor_fills_the_image_and_keeps_the_rest_bit_for_bit():
    schedule = NoiseSchedule("cosine", 1000)
    target = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))

    def optimal(x: torch.Tensor, t: int) -> torch.Tensor:
        alpha_bar = schedule.level(t)
        return (x - math.sqrt(alpha_bar) * target) / math.sqrt(1 - alpha_bar)

    known = target.expand(3, -1, -1, -1) + torch.randn(3, 1, 8, 8) * 1e-3  # the known pixels, slightly off x*
    mask = torch.zeros(3, 1, 8, 8, dtype=torch.bool)
    mask[:, :, 2:5, 3:7] = True
    generator = torch.Generator().manual_seed(0)
    for resample in (1, 3):
        out = ddim_sample(optimal, torch.randn(3, 1, 8, 8, generator=generator), schedule, 10, eta=0.0,
                          generator=generator, known=known, mask=mask, resample=resample)
        assert torch.equal(out[~mask], known[~mask])
        torch.testing.assert_close(out[mask], target.expand(3, -1, -1, -1)[mask], atol=1e-4, rtol=0)


def test_progress_is_called_after_every_step():
    schedule, calls = NoiseSchedule("linear", 100), []
    ddim_sample(lambda x, t: torch.zeros_like(x), torch.zeros(1, 1, 2, 2), schedule, 7, eta=0.0,
                generator=torch.Generator(), progress=lambda done, total: calls.append((done, total)))
    assert calls == [(k, 7) for k in range(1, 8)]


def test_bad_schedules_are_one_line_each():
    with pytest.raises(DeepfieldError, match="schedule must be one of 'cosine', 'linear'; got 'quadratic'"):
        NoiseSchedule("quadratic")
    with pytest.raises(DeepfieldError, match="timesteps"):
        NoiseSchedule("cosine", 1)
    with pytest.raises(DeepfieldError, match="'linear' needs timesteps >= 20"):
        NoiseSchedule("linear", 10)
