"""The normalisation layers of the generators and the discriminator (--norm), and batch norm that
also runs on one value per channel (networks.py, resnet_unet.py)."""

from __future__ import annotations

import functools

import torch
from torch import nn

NORMS = {
    # batch: the paper's choice; with batch 1 at test time it acts as instance norm (section 3.3)
    "batch": functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True),
    "instance": functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False),
    "none": lambda channels: nn.Identity(),
}


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind not in NORMS:
        raise ValueError(f"unknown norm {kind!r}; choose one of {sorted(NORMS)}")
    return NORMS[kind](channels)


class OneValueBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d that also runs where a channel has a single value in the batch (the 1x1
    bottleneck at batch 1), as the paper's first version did: normalising one value gives 0, so
    the output is the layer's shift, whatever the input (the reason its errata removed this
    norm). PyTorch's BatchNorm2d refuses such a batch; the running mean follows the batch as
    usual, the running variance (undefined for one value) is left as it is. Same state dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.numel() // x.shape[1] > 1:
            return super().forward(x)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                self.running_mean.lerp_(x.detach().mean(dim=(0, 2, 3)), self.momentum)
        normalised = torch.zeros_like(x)  # (x - mean) / std of one value: 0, and no gradient to x
        if not self.affine:
            return normalised
        return normalised * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
