"""The objective of section 3.1 checked against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pix2pix.config import parse_objective
from pix2pix.models.losses import adversarial_loss, discriminator_loss, generator_loss

LOG2 = math.log(2.0)


def test_discriminator_loss_at_chance_is_log_2() -> None:
    # D(x, y) = sigmoid(0) = 1/2 everywhere: 0.5 * (-log 1/2 - log(1 - 1/2)) = log 2
    zeros = torch.zeros(2, 1, 30, 30)
    loss, stats = discriminator_loss(zeros, zeros, "vanilla")
    assert loss.item() == pytest.approx(LOG2)
    assert stats["d_real"].item() == pytest.approx(LOG2)
    assert stats["d_fake"].item() == pytest.approx(LOG2)


def test_discriminator_loss_is_halved() -> None:
    # real at chance (log 2); fake logit log 3 means D(fake) = 3/4: -log(1/4) = 2 log 2.
    # The sum is 3 log 2; the paper divides D's objective by 2 (section 3.3).
    real = torch.zeros(1, 1, 4, 4)
    fake = torch.full((1, 1, 4, 4), math.log(3.0))
    loss, stats = discriminator_loss(real, fake, "vanilla")
    assert stats["d_fake"].item() == pytest.approx(2 * LOG2)
    assert loss.item() == pytest.approx(1.5 * LOG2)


def test_discriminator_loss_averages_over_patches() -> None:
    # one confidently wrong patch out of four costs a quarter of what it would alone
    real = torch.full((1, 1, 2, 2), 20.0)
    real[0, 0, 0, 0] = -20.0
    fake = torch.full((1, 1, 2, 2), -20.0)
    loss, _ = discriminator_loss(real, fake, "vanilla")
    assert loss.item() == pytest.approx(0.5 * 20.0 / 4, rel=1e-3)


def test_lsgan_discriminator_loss() -> None:
    ones, zeros = torch.ones(1, 1, 3, 3), torch.zeros(1, 1, 3, 3)
    assert discriminator_loss(ones, zeros, "lsgan")[0].item() == 0.0  # perfect D
    assert discriminator_loss(zeros, ones, "lsgan")[0].item() == pytest.approx(1.0)  # 0.5 * (1 + 1)


def test_unknown_gan_mode_raises() -> None:
    with pytest.raises(ValueError, match="wgan"):
        adversarial_loss(torch.zeros(1, 1, 2, 2), True, "wgan")


def test_l1_only_generator_loss_is_lambda_times_mean_absolute_error() -> None:
    torch.manual_seed(0)
    fake_b, real_b = torch.rand(2, 2, 3, 8, 8) * 2 - 1
    loss, stats = generator_loss(fake_b, real_b, parse_objective("l1"), lambda_l1=100.0)
    expected = 100.0 * (real_b - fake_b).abs().mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(stats) == {"g_l1"}  # no discriminator, no adversarial term


def test_l1_plus_l2_generator_loss_has_both_terms() -> None:
    # |0 - 0.5| = 0.5 and (0 - 0.5)^2 = 0.25: 10 * (0.5 + 0.25)
    fake_b, real_b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    loss, stats = generator_loss(fake_b, real_b, parse_objective("l1+l2"), lambda_l1=10.0)
    assert loss.item() == pytest.approx(7.5)
    assert stats["g_l1"].item() == pytest.approx(0.5)
    assert stats["g_l2"].item() == pytest.approx(0.25)


@pytest.mark.parametrize("objective", ["cgan", "gan", "l1+cgan"])
def test_adversarial_objective_without_logits_raises(objective: str) -> None:
    fake_b = real_b = torch.zeros(1, 3, 4, 4)
    with pytest.raises(ValueError, match="logits"):
        generator_loss(fake_b, real_b, parse_objective(objective))


def test_generator_gan_term_is_non_saturating() -> None:
    # G minimises -log D(x, G(x)) = -log sigmoid(l) = softplus(-l), not log(1 - D) (section 3.3)
    torch.manual_seed(0)
    logits = (torch.randn(2, 1, 6, 6) * 3).requires_grad_()
    fake_b = real_b = torch.zeros(2, 3, 8, 8)
    loss, stats = generator_loss(fake_b, real_b, parse_objective("cgan"), logits)
    assert loss.item() == pytest.approx(F.softplus(-logits).mean().item(), rel=1e-6)
    assert stats["g_gan"].item() == pytest.approx(loss.item())
    loss.backward()
    # every patch's logit is pushed up, towards "real"; strongly where D is sure it is fake
    assert torch.all(logits.grad < 0)
    sure_fake, sure_real = logits.argmin(), logits.argmax()
    assert logits.grad.flatten()[sure_fake] < logits.grad.flatten()[sure_real]


def test_l1_plus_cgan_adds_lambda_weighted_l1() -> None:
    logits = torch.zeros(1, 1, 4, 4)  # g_gan = log 2
    fake_b, real_b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.25)
    loss, stats = generator_loss(fake_b, real_b, parse_objective("l1+cgan"), logits, lambda_l1=100.0)
    assert loss.item() == pytest.approx(LOG2 + 25.0)
    assert set(stats) == {"g_gan", "g_l1"}


def test_lsgan_generator_term() -> None:
    logits = torch.full((1, 1, 2, 2), 3.0)  # (3 - 1)^2
    fake_b = real_b = torch.zeros(1, 3, 4, 4)
    loss, _ = generator_loss(fake_b, real_b, parse_objective("gan"), logits, gan_mode="lsgan")
    assert loss.item() == pytest.approx(4.0)


def test_l1_gradient_reaches_the_generator_output() -> None:
    # d/dG lambda * mean|y - G| = lambda * sign(G - y) / N
    fake_b = torch.tensor([[[[0.5, -0.5]]]], requires_grad=True)
    real_b = torch.zeros(1, 1, 1, 2)
    loss, _ = generator_loss(fake_b, real_b, parse_objective("l1"), lambda_l1=100.0)
    loss.backward()
    assert fake_b.grad.flatten().tolist() == pytest.approx([50.0, -50.0])
