"""LoRA trained through the merged weight: one big matmul per layer instead of three thin ones.

peft computes a LoRA layer as written in the paper:

    y = x Wᵀ + s · (x Aᵀ) Bᵀ        W: (out, in) frozen, A: (r, in), B: (out, r), r = 8

On a CPU the second term is slow out of all proportion to its FLOPs. `(x Aᵀ) Bᵀ` is a matmul with
an inner size of 8, which runs at a few GFLOP/s, and it is followed by a scale and an add, each a
full pass over a fresh (tokens, out) tensor. The backward pass repeats the pattern. On
SmolLM2-135M with adapters on every linear layer that is about a fifth of a training step, for
under 2% of its FLOPs.

The same function, regrouped: y = x (W + s·B A)ᵀ. Forming the merged weight costs one pass over W
(B A is (out, r) x (r, in): tiny), and then the layer is a single well-shaped matmul, forward and
for the input's gradient (g (W + s·B A)). Only the adapters' own gradients still need thin
products, and those are arranged so MKL runs them in its fast layout:

    dA = s · (g B)ᵀ x          dB = s · ((x Aᵀ)ᵀ g)ᵀ

The merged weight is rebuilt in the backward pass rather than kept, so memory stays as it was. The
result equals peft's to float rounding (tests check values and every gradient). Layers this does
not cover (dropout on the adapter path, DoRA, several active adapters, trainable biases, half
precision) keep peft's own forward, and so does every call with the adapters switched off or
with too few tokens to pay for the merge (generating one token at a time).
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn


class MergedLoraLinear(torch.autograd.Function):
    """y = x (W + s·B A)ᵀ + bias, with gradients for x, A and B (W and bias are frozen)."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scale: float):
        ctx.save_for_backward(x, weight, lora_a, lora_b)
        ctx.scale = scale
        return F.linear(x, torch.addmm(weight, lora_b, lora_a, alpha=scale), bias)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, lora_a, lora_b = ctx.saved_tensors
        s = ctx.scale
        g = grad_out.reshape(-1, grad_out.shape[-1])
        x2 = x.reshape(-1, x.shape[-1])
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (g @ torch.addmm(weight, lora_b, lora_a, alpha=s)).view(x.shape)
        # The adapters' gradients, computed as (r, tokens) products: MKL runs a product whose
        # small dimension is the *rows* of the result several times faster than one whose small
        # dimension is the columns (g @ B itself is the slow layout).
        if ctx.needs_input_grad[3]:
            grad_a = (lora_b.t() @ g.t()) @ x2          # (g B)ᵀ x: (r, in)
            grad_a.mul_(s)
        if ctx.needs_input_grad[4]:
            grad_b = ((lora_a @ x2.t()) @ g).t().contiguous()   # ((x Aᵀ)ᵀ g)ᵀ: (out, r)
            grad_b.mul_(s)
        return grad_x, None, None, grad_a, grad_b, None


def lora_parts(layer: nn.Module) -> tuple | None:
    """(weight, bias, A, B, scale) of a peft LoRA Linear whose output is exactly x (W + s·B A)ᵀ + b
    with only A and B training, else None (adapters off or merged, several adapters, DoRA, dropout
    on the adapter path, a bias in B or a trainable base, half precision)."""
    if layer.disable_adapters or layer.merged:
        return None
    active = [name for name in layer.active_adapters if name in layer.lora_A]
    if len(active) != 1 or active[0] in getattr(layer, "lora_variant", {}):
        return None
    name = active[0]
    base, lora_a, lora_b = layer.base_layer, layer.lora_A[name], layer.lora_B[name]
    if not isinstance(layer.lora_dropout[name], nn.Identity) or getattr(lora_b, "bias", None) is not None:
        return None
    if not isinstance(base, nn.Linear) or base.weight.requires_grad or \
            (base.bias is not None and base.bias.requires_grad):
        return None
    if base.weight.dtype != torch.float32 or lora_a.weight.dtype != torch.float32:
        return None
    return base.weight, base.bias, lora_a.weight, lora_b.weight, float(layer.scaling[name])


def pays_to_merge(tokens: int, fan_in: int, fan_out: int) -> bool:
    """Merging costs a pass over the (out, in) weight; the thin path costs passes over the
    (tokens, in) and (tokens, out) activations. Measured here, the two break even near
    tokens = in·out / (in + out) (about 420 for SmolLM2's 576 -> 1536): a training batch is well
    above, while generating one token at a time is far below and keeps peft's path."""
    return tokens * (fan_in + fan_out) >= fan_in * fan_out


def _merged_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """The forward of a LoRA Linear switched by `train_through_merged_weights` (bound to it)."""
    parts = None if args or kwargs else lora_parts(self)
    if parts is None or x.dtype != torch.float32 or torch.is_autocast_enabled(x.device.type) or \
            not pays_to_merge(x.numel() // x.shape[-1], x.shape[-1], parts[0].shape[0]):
        return type(self).forward(self, x, *args, **kwargs)    # peft's own
    return MergedLoraLinear.apply(x, *parts)


def train_through_merged_weights(model: nn.Module) -> int:
    """Route every peft LoRA Linear layer of `model` through `MergedLoraLinear` where it pays.

    The new forward is an instance attribute, so nothing of it is saved with the adapter. Calls
    that it does not cover, or where merging would cost more than it saves (a few tokens at a
    time, as in generation), go to peft's own forward. Returns how many layers were switched.
    """
    from peft.tuners.lora.layer import Linear as LoraLinear
    switched = 0
    for module in model.modules():
        if type(module) is LoraLinear and "forward" not in vars(module):
            # A bound method, not a closure: a deep copy of the model then calls its own layers.
            module.forward = types.MethodType(_merged_forward, module)
            switched += 1
    return switched
