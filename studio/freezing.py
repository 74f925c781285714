"""Which parameters learn: full fine-tuning, freeze depth k, or LoRA.

A transformer is a stack: embeddings at the bottom, N identical blocks, and a head on top.
- full:   everything learns.
- freeze: the embeddings and the lowest k blocks keep their pretrained values; blocks k..N-1 and the
          head learn. k = N means only the head learns (a "linear probe" plus pooler).
- lora:   every original weight is frozen; small low-rank adapters (and a new classification head)
          learn. Fewest trainable parameters, and the base model is recovered by switching adapters off.

`layer_report` tells, per group, how many parameters train and how many are frozen: the UI draws
the stack from it, and tests assert exactly which parameters changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from studio.errors import ConfigError


@dataclass(frozen=True)
class LayerGroup:
    name: str        # "embeddings", "block 0", ..., "head"
    kind: str        # "embeddings" | "block" | "head"
    index: int       # block number, -1 for embeddings, N for head
    trainable: int   # parameter counts
    frozen: int


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The ModuleList holding the transformer blocks (BERT `encoder.layer`, Llama `model.layers`)."""
    n_layers = getattr(model.config, "num_hidden_layers", None)
    best = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and (n_layers is None or len(module) == n_layers):
            if best is None or name.count(".") < best[0].count("."):
                best = (name, module)
    if best is None:
        raise ConfigError("could not find the transformer blocks of this model, so freeze depth "
                          "cannot be applied.", hint="Use full fine-tuning or LoRA.")
    return best


def _group_of(param_name: str, blocks_prefix: str, n_blocks: int, head_names: tuple[str, ...]) -> tuple[str, int]:
    if param_name.startswith(blocks_prefix + "."):
        return "block", int(param_name[len(blocks_prefix) + 1:].split(".")[0])
    if any(part in head_names for part in param_name.split(".")):
        return "head", n_blocks
    if "embed" in param_name:
        return "embeddings", -1
    # Anything else after the stack (final norm, pooler) belongs to the head; before it, to embeddings.
    return ("head", n_blocks) if any(k in param_name for k in ("norm", "pooler", "ln_f")) else ("embeddings", -1)


HEAD_NAMES = ("classifier", "score", "pooler", "lm_head", "norm", "ln_f")


def _base(model: nn.Module) -> nn.Module:
    """The underlying transformers model when wrapped by peft."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def groups_by_param(model: nn.Module) -> dict[str, tuple[str, int]]:
    base = _base(model)
    prefix, blocks = find_blocks(base)
    result = {}
    for name, _ in base.named_parameters():
        result[name] = _group_of(name, prefix, len(blocks), HEAD_NAMES)
    return result


def frozen_modules(model: nn.Module, depth: int) -> list[nn.Module]:
    """The modules below block `depth`: embedding modules and blocks 0..depth-1."""
    prefix, blocks = find_blocks(model)
    embeddings = [m for name, m in model.named_modules()
                  if "embed" in name.split(".")[-1] and not name.startswith(prefix)]
    return embeddings + list(blocks)[:depth]


def apply_freeze_depth(model: nn.Module, depth: int) -> nn.Module:
    """Freeze embeddings and blocks [0, depth); everything above learns. Returns the same model.

    Frozen modules also stay in eval mode during training (no dropout where nothing learns), so
    the frozen bottom is deterministic and its output can be cached (see prefix_cache.py).
    """
    _, blocks = find_blocks(model)
    n = len(blocks)
    if not 0 <= depth <= n:
        raise ConfigError(f"must be between 0 and {n} for this model, not {depth}.",
                          where="train.freeze_depth")
    groups = groups_by_param(model)
    for name, param in model.named_parameters():
        kind, index = groups[name]
        frozen = kind == "embeddings" or (kind == "block" and index < depth)
        if depth == 0 and kind == "embeddings":
            frozen = False  # depth 0 is full fine-tuning
        param.requires_grad = not frozen
    if depth > 0:
        from studio.training.prefix_cache import keep_frozen_in_eval
        keep_frozen_in_eval(model, frozen_modules(model, depth))
    return model


def lora_targets(spec_targets) -> str | list[str]:
    if spec_targets in (None, "auto", "all-linear"):
        return "all-linear"
    if isinstance(spec_targets, str):
        return [t.strip() for t in spec_targets.split(",") if t.strip()]
    return list(spec_targets)


def apply_lora(model: nn.Module, train_spec, task: str) -> nn.Module:
    """Wrap the model with LoRA adapters; the new classification head (if any) trains fully."""
    from peft import LoraConfig, TaskType, get_peft_model
    task_type = TaskType.SEQ_CLS if task == "classify" else TaskType.CAUSAL_LM
    config = LoraConfig(task_type=task_type, r=train_spec.lora_r, lora_alpha=train_spec.lora_alpha,
                        lora_dropout=train_spec.lora_dropout, target_modules=lora_targets(train_spec.lora_targets))
    try:
        model = get_peft_model(model, config)
    except ValueError as exc:
        raise ConfigError(f"LoRA cannot be applied: {exc}", where="train.lora_targets") from None
    from studio.training.merged_lora import train_through_merged_weights
    train_through_merged_weights(model)   # same results, faster on a CPU (see merged_lora.py)
    return model


def apply_method(model: nn.Module, train_spec, task: str) -> nn.Module:
    """Set requires_grad (or add adapters) according to the run's training method."""
    if train_spec.method == "full":
        for p in model.parameters():
            p.requires_grad = True
        return model
    if train_spec.method == "freeze":
        return apply_freeze_depth(model, train_spec.freeze_depth)
    return apply_lora(model, train_spec, task)


def layer_report(model: nn.Module) -> list[LayerGroup]:
    """Trainable and frozen parameter counts for embeddings, each block and the head, bottom to top.

    Works on plain and peft-wrapped models: adapter weights count towards the block they sit in.
    """
    base = _base(model)
    prefix, blocks = find_blocks(base)
    n = len(blocks)
    counts: dict[tuple[str, int], list[int]] = {("embeddings", -1): [0, 0]}
    counts.update({("block", i): [0, 0] for i in range(n)})
    counts[("head", n)] = [0, 0]
    for name, param in base.named_parameters():
        clean = name.replace("base_model.model.", "")
        key = _group_of(clean, prefix, n, HEAD_NAMES + ("modules_to_save",))
        counts[key][0 if param.requires_grad else 1] += param.numel()
    return [LayerGroup("embeddings" if kind == "embeddings" else "head" if kind == "head" else f"block {i}",
                       kind, i, c[0], c[1]) for (kind, i), c in counts.items()]


def trainable_summary(model: nn.Module) -> dict:
    groups = layer_report(model)
    trainable = sum(g.trainable for g in groups)
    total = trainable + sum(g.frozen for g in groups)
    return {"trainable": trainable, "total": total, "share": trainable / total if total else 0.0}
