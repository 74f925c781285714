"""Counting the useful work of a training run, to turn seconds into achieved GFLOP/s.

The formula (stated in README.md): a matmul with P weights costs 2*P floating-point operations
per token going forward and 4*P going backward (2*P for the input's gradient, 2*P for the
weights' gradient). So, per real (non-pad) token:
- a block that trains:                          6 * P
- a frozen block below every trainable one:     2 * P  (forward only; nothing to backpropagate into)
- a frozen block under LoRA adapters:           4 * P  (forward + input gradients, no weight grads)
P counts a block's parameters (weights and biases). Embedding lookups cost nothing. A causal LM's
output projection (lm_head, tied to the embeddings in SmolLM2) is a real matmul on every token
and counts like a block above the frozen ones. Attention scores (QK^T, AV) and the classifier's
per-sentence pooler/head are left out: at these lengths they are a few percent. Padding counts
for nothing: a trainer that computes on pad tokens does the same useful work, slower.

The count is nominal: a trainer that caches the frozen bottom is credited with the forward pass it
skipped, so its "achieved GFLOP/s" is an effective rate and may exceed the matmul peak.
"""

from __future__ import annotations


def find_blocks(model):
    """(dotted name, ModuleList) of the transformer blocks: the shallowest ModuleList holding
    num_hidden_layers modules (BERT `encoder.layer`, Llama `model.layers`)."""
    from torch import nn
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    n_layers = getattr(base.config, "num_hidden_layers", None)
    best = None
    for name, module in base.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) and (n_layers is None or len(module) == n_layers):
            if best is None or name.count(".") < best[0].count("."):
                best = (name, module)
    if best is None:
        raise ValueError("no transformer block list found")
    return best


def block_params(model) -> list[int]:
    """Parameters of each transformer block, bottom to top. LoRA adapter weights are left out:
    only the base weights every token passes through are counted."""
    return [sum(p.numel() for n, p in block.named_parameters() if "lora_" not in n)
            for block in find_blocks(model)[1]]


def head_params(model) -> int:
    """Parameters of a per-token output projection (a causal LM's lm_head), else 0."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = getattr(base, "lm_head", None)
    return int(head.weight.numel()) if head is not None and hasattr(head, "weight") else 0


def flops_per_token(blocks: list[int], method: str, freeze_depth: int = 0, head: int = 0) -> float:
    """Nominal training FLOPs for one real token through the model (see the module docstring)."""
    if method == "full":
        return 6.0 * (sum(blocks) + head)
    if method == "lora":
        return 4.0 * (sum(blocks) + head)
    if method == "freeze":
        k = max(0, min(freeze_depth, len(blocks)))
        return 2.0 * sum(blocks[:k]) + 6.0 * (sum(blocks[k:]) + head)
    raise ValueError(f"unknown method {method!r}")


def count_tokens(tokenizer, texts: list[str], max_length: int, *, add_special_tokens: bool = True) -> int:
    """Real tokens the texts become after truncation to `max_length` (no padding)."""
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, add_special_tokens=add_special_tokens)
    return int(sum(len(ids) for ids in enc["input_ids"]))
