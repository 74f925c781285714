"""Dropout with masks drawn four times as fast on a CPU.

`nn.Dropout` draws its mask with `bernoulli_`, which on a CPU costs about 4.8 ns per element, on
one core. The same Bernoulli(1 - p) draw is "a uniform 32-bit integer at or above p * 2^32", and
numpy's PCG64 generator makes those integers in bulk (`random_raw`) at a fraction of the cost:
with the compare and the scale, 1.15 ns an element against 2.8 for `rand_like(x) >= p` and 4.7
for `bernoulli_` (a batch's six dropouts, 516K elements). For MiniLM, masks were 4-5% of a full
fine-tuning step with `rand_like`; a forward and backward through one dropout of 300 tokens went
from 1,010 to 736 µs (medians of 300 interleaved rounds).

Each mask's generator is seeded from torch's own generator, so `torch.manual_seed` (which the
Trainer calls) reproduces every mask, and each call is independent of other threads. The draw
resolves p to 2^-32, finer than a float32 uniform number (2^-24).

The kept mask is stored already scaled by 1 / (1 - p), so backward is one multiply. Only
training changes: in eval mode it is the identity, like `nn.Dropout`, and a saved model is the
ordinary one (dropout has no weights). `keep_mask` is also what the real-token blocks use for
the attention weights' dropout (`real_tokens.py`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

_ALL = 2 ** 32


def keep_mask(like: torch.Tensor, p: float) -> torch.Tensor:
    """A mask shaped like `like`: 1 / (1 - p) where an element is kept (probability 1 - p), else 0."""
    n = like.numel()
    seed = int(torch.randint(0, 2 ** 63 - 1, (1,)))          # torch's generator decides: reproducible
    bits = np.random.PCG64(seed).random_raw((n + 1) // 2).view(np.uint32)[:n]
    dropped_below = min(round(p * _ALL), _ALL - 1)
    mask = (bits >= np.uint32(dropped_below)).astype(np.float32)
    mask *= np.float32(_ALL / (_ALL - dropped_below))
    return torch.from_numpy(mask).view(like.shape).to(like.dtype)


class _ScaledMask(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        mask = keep_mask(x, p)
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


class FastDropout(nn.Dropout):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p >= 1.0 or x.device.type != "cpu":   # all dropped, or a device with fast masks
            return super().forward(x)
        return _ScaledMask.apply(x, self.p)


def use_fast_dropout(model: nn.Module) -> int:
    """Swap every plain `nn.Dropout` inside `model` for `FastDropout`. Returns how many."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p, child.inplace))
                swapped += 1
    return swapped
