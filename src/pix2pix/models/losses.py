"""The objective (section 3.1) as pure functions: each returns the loss and the scalars to log.

Discriminator logits are patch maps (B, 1, h, w); the losses average over patches, which is how
the PatchGAN "averages all responses to provide the ultimate output of D" (section 3.2.2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import Objective


def adversarial_loss(logits: torch.Tensor, real: bool, gan_mode: str) -> torch.Tensor:
    """-log D (vanilla, the paper's) or (D - 1)^2 / D^2 (least squares) against a real/fake label."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    if gan_mode == "vanilla":
        return F.binary_cross_entropy_with_logits(logits, target)
    if gan_mode == "lsgan":
        return F.mse_loss(logits, target)
    raise ValueError(f"unknown gan_mode {gan_mode!r}; choose vanilla or lsgan")


def discriminator_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, gan_mode: str = "vanilla"
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """D maximises log D(x, y) + log(1 - D(x, G(x))); "we divide the objective by 2 while
    optimizing D, which slows down the rate at which D learns relative to G" (section 3.3)."""
    loss_real = adversarial_loss(real_logits, True, gan_mode)
    loss_fake = adversarial_loss(fake_logits, False, gan_mode)
    loss = 0.5 * (loss_real + loss_fake)
    return loss, {"d_real": loss_real.detach(), "d_fake": loss_fake.detach()}


def generator_loss(
    fake_b: torch.Tensor,
    real_b: torch.Tensor,
    objective: Objective,
    fake_logits: torch.Tensor | None = None,
    lambda_l1: float = 100.0,
    gan_mode: str = "vanilla",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """G's loss: the non-saturating adversarial term -log D(x, G(x)) (section 3.3) plus
    lambda times the reconstruction term(s) ||y - G(x)||_1 (eq. 3) and/or squared L2.

    `fake_logits` is required exactly when the objective has an adversarial term.
    """
    stats: dict[str, torch.Tensor] = {}
    loss = fake_b.new_zeros(())
    if objective.adversarial is not None:
        if fake_logits is None:
            raise ValueError(f"objective with {objective.adversarial} needs the discriminator's logits")
        g_gan = adversarial_loss(fake_logits, True, gan_mode)
        stats["g_gan"] = g_gan.detach()
        loss = loss + g_gan
    if objective.l1:
        g_l1 = F.l1_loss(fake_b, real_b)
        stats["g_l1"] = g_l1.detach()
        loss = loss + lambda_l1 * g_l1
    if objective.l2:
        g_l2 = F.mse_loss(fake_b, real_b)
        stats["g_l2"] = g_l2.detach()
        loss = loss + lambda_l1 * g_l2
    return loss, stats
