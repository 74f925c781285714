"""Model structure for the Model and Train tabs, without loading any weights.

The freeze-depth diagram needs parameter counts per layer, not weights. So a model is built
from its config on PyTorch's "meta" device: every tensor has a shape but no storage, which takes
no memory and no time to "initialise". The built skeleton is kept in a small process-wide LRU
keyed by model (shared by everyone: it is the model's structure, not anyone's state), and
`studio.freezing` is applied to it to count what each method would train.

A model's task follows from what it is: a catalog entry says it, otherwise a config whose
architecture ends in "ForCausalLM" (Llama, Gemma, ...) is a text generator and anything else a
classifier base. Generators get a causal-LM skeleton (embeddings, blocks, lm_head); classifiers
a sequence-classification one (with a fresh head sized to the labels).
"""

from __future__ import annotations

import copy
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass

from studio import catalog


@dataclass(frozen=True)
class ModelInfo:
    """What the Model tab shows: the resolved reference, its config summary, exact param count."""
    spec: str
    folder: str | None
    summary: dict
    params: int
    blocks: int
    task: str = "classify"


def task_of(spec: str, config) -> str:
    """"generate" for a causal language model (catalog entry or architecture), else "classify"."""
    entry = catalog.CATALOG.get(spec)
    if entry is not None:
        return entry.task
    archs = getattr(config, "architectures", None) or []
    return "generate" if any(str(a).endswith("ForCausalLM") for a in archs) else "classify"


class SkeletonCache:
    """LRU of weightless model skeletons, one per (model, number of labels or "lm")."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._items: OrderedDict[tuple[str, int], object] = OrderedDict()
        self._info: dict[str, ModelInfo] = {}
        self._lock = threading.RLock()    # freezing mutates requires_grad: one caller at a time

    def is_loaded(self, spec: str) -> bool:
        return spec in self._info

    def cached_info(self, spec: str) -> ModelInfo | None:
        return self._info.get(spec)

    def skeleton(self, spec: str, num_labels: int = 2, task: str = "classify", progress=None):
        """The skeleton of `spec` for `task` (built on the meta device on first use): a causal LM
        for "generate", a classifier with `num_labels` outputs otherwise. `progress(fraction,
        message)` hears a catalog model's one-time conversion (see `catalog.resolve`)."""
        key = (spec, "lm" if task == "generate" else max(2, int(num_labels)))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
        config = catalog.read_config(catalog.resolve(spec, progress=progress))
        if task == "generate":
            auto = AutoModelForCausalLM
        else:
            auto, config.num_labels = AutoModelForSequenceClassification, key[1]
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            try:
                model = auto.from_config(config)
            except ValueError as exc:   # e.g. an encoder-only model asked to generate text
                from studio.errors import ModelError
                kind = "text generator" if task == "generate" else "text classifier"
                raise ModelError(f"'{spec}' cannot be used as a {kind}: {str(exc).splitlines()[0]}") from None
        with self._lock:
            self._items[key] = model
            while len(self._items) > self.keep:
                self._items.popitem(last=False)
        return model

    def info(self, spec: str, progress=None) -> ModelInfo:
        """Resolve the model, read its config and count its parameters (raises ModelError).
        `progress(fraction, message)` hears a GGUF catalog model's first-use conversion."""
        if spec in self._info:
            return self._info[spec]
        resolved = catalog.resolve(spec, progress=progress)
        config = catalog.read_config(resolved)
        from studio.freezing import find_blocks
        task = task_of(spec, config)
        model = self.skeleton(spec, task=task)
        params = sum(p.numel() for p in model.parameters())
        summary = catalog.model_summary(config)
        summary["params_m"] = round(params / 1e6, 1)
        info = ModelInfo(spec, str(resolved.folder) if resolved.folder else None, summary, params,
                         len(find_blocks(model)[1]), task)
        self._info[spec] = info
        return info

    def groups(self, spec: str, train_spec, num_labels: int = 2, task: str = "classify") -> list:
        """`studio.freezing.layer_report` of `spec` with `train_spec`'s method applied for `task`."""
        from studio.freezing import apply_method, layer_report
        base = self.skeleton(spec, num_labels, task)
        with self._lock, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # LoRA wraps the model in place, so it works on a copy (cheap: meta tensors are empty).
            model = copy.deepcopy(base) if train_spec.method == "lora" else base
            model = apply_method(model, train_spec, task)
            return layer_report(model)


def summarize(groups) -> dict:
    """Trainable / total parameters and the share that learns."""
    trainable = sum(g.trainable for g in groups)
    total = trainable + sum(g.frozen for g in groups)
    return {"trainable": trainable, "total": total, "share": trainable / total if total else 0.0}


def human(n: int) -> str:
    """22.7M, 338.7K, 912."""
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}K"
    return str(n)
