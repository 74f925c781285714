"""How long will training take? Measured on this machine, before the first real step.

We time a handful of forward+backward passes on a batch of typical length (the RNG state is saved
and restored, and gradients are cleared, so training is unaffected), then scale:

    total = steps_first_epoch * t(step, first pass) + later_steps * t(step, later pass)
            + evaluations * t(one pass over the validation set)

"first pass" and "later pass" differ only with frozen-prefix caching, where the first epoch
also runs the frozen bottom and later epochs do not.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Estimate:
    total_seconds: float
    first_step_seconds: float
    later_step_seconds: float
    eval_seconds: float
    steps: int
    evaluations: int

    def describe(self) -> str:
        return f"about {format_duration(self.total_seconds)} ({self.steps} steps, {self.evaluations} evaluations)"


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 90:
        return f"{seconds} s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 90:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _typical_batch(dataset, collator, size: int):
    """`size` examples whose lengths are closest to the mean length (what group_by_length batches look like)."""
    lengths = [len(ids) for ids in dataset["input_ids"]]
    mean = sum(lengths) / max(1, len(lengths))
    order = sorted(range(len(lengths)), key=lambda i: abs(lengths[i] - mean))[:size]
    return collator([dataset[i] for i in order])


def _model_loss(model, batch):
    return model(**batch).loss


def _timed_pass(model, batch, *, backward: bool, loss_fn=_model_loss) -> float:
    """Seconds for one forward (+ backward) pass, computing the loss the way training does."""
    start = time.perf_counter()
    if backward:
        loss_fn(model, batch).backward()
    else:
        with torch.no_grad():
            loss_fn(model, batch)
    return time.perf_counter() - start


def _optimizer_step_seconds(model, sample: int = 2_000_000) -> float:
    """One AdamW step, timed on a throwaway `sample` of parameters and scaled to the trainable
    count (the step is a few streaming passes over memory: linear in the parameter count)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    size = max(1, min(trainable, sample))
    copy = torch.nn.Parameter(torch.zeros(size))
    copy.grad = torch.full_like(copy, 1e-3)
    try:   # the Trainer's default optimizer (adamw_torch_fused) is ~10x faster than the loop one
        opt = torch.optim.AdamW([copy], lr=1e-4, fused=True)
    except (RuntimeError, TypeError):
        opt = torch.optim.AdamW([copy], lr=1e-4)
    opt.step()  # the first step allocates the moment buffers
    start = time.perf_counter()
    opt.step()
    return (time.perf_counter() - start) * trainable / size


def estimate_training(prepared, train_spec, *, repeats: int = 2) -> Estimate:
    """Measure a few steps on the real model and data and extrapolate to the whole run."""
    model = prepared.model
    batch_size = min(train_spec.batch_size, len(prepared.train_dataset))
    batch = _typical_batch(prepared.train_dataset, prepared.collator, batch_size)
    rng = torch.get_rng_state()
    was_training = model.training
    model.train()
    try:
        loss_fn = prepared.loss_fn or _model_loss
        first = _timed_pass(model, batch, backward=True, loss_fn=loss_fn)   # warm-up; fills the prefix cache
        if first > 1.0:   # a big model: steps are long enough that one more is a steady measurement
            repeats = 1
        later = min(_timed_pass(model, batch, backward=True, loss_fn=loss_fn) for _ in range(repeats))
        cached = getattr(model, "misses", None) is not None
        if cached:
            # A true first-epoch step includes the frozen bottom: time it on fresh copies of the batch.
            bottom = _bottom_seconds(model, batch)
            first = later + bottom
        else:
            first = later
        model.eval()
        # Evaluation costs the same per example at any batch size: time a small batch, scale up.
        eval_batch = _typical_batch(prepared.eval_dataset, prepared.collator,
                                    min(batch_size, len(prepared.eval_dataset)))
        eval_pass = _timed_pass(model, eval_batch, backward=False, loss_fn=loss_fn)
        opt = _optimizer_step_seconds(model)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        torch.set_rng_state(rng)
    n_train = len(prepared.train_dataset)
    per_epoch = max(1, math.ceil(n_train / train_spec.batch_size))
    steps = max(1, math.ceil(per_epoch * train_spec.epochs))
    first_epoch_steps = min(per_epoch, steps)
    eval_batches = len(prepared.eval_dataset) / max(1, len(eval_batch["input_ids"]))
    if train_spec.eval_strategy == "epoch":
        evaluations = max(1, math.ceil(train_spec.epochs))
    else:
        evaluations = max(1, steps // train_spec.eval_steps)
    # With caching, the first evaluation also runs the frozen bottom on the validation set.
    eval_seconds = eval_batches * eval_pass
    first_eval_extra = (first - later) / batch_size * len(prepared.eval_dataset)  # bottom on val set, once
    total = (first_epoch_steps * (first + opt) + (steps - first_epoch_steps) * (later + opt)
             + evaluations * eval_seconds + first_eval_extra)
    return Estimate(total, first + opt, later + opt, eval_seconds, steps, evaluations)


def _bottom_seconds(model, batch) -> float:
    """Time the frozen bottom alone (embeddings + frozen blocks, no grad)."""
    probe_keys = [-1 - i for i in range(len(batch["input_ids"]))]
    start = time.perf_counter()
    model._capture(batch["input_ids"], batch["attention_mask"], probe_keys)
    elapsed = time.perf_counter() - start
    for key in probe_keys:
        model.store.discard(key)
    return elapsed
