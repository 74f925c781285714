"""How long will training take? Measured on this machine, before the first real step.

We time a handful of forward+backward passes on a batch of typical length (the RNG state is saved
and restored, and gradients are cleared, so training is unaffected), then scale. A pass costs in
proportion to the positions it computes, padding included, so each timing becomes a cost per
padded position and is multiplied by the positions the real batches will have (the trainer's own
batching rule, run on the real lengths):

    total = first epoch's positions * c(first pass) + later epochs' positions * c(later pass)
            + steps * (t(optimizer step) + t(gradient clipping) + t(making a batch))
            + evaluations * validation positions * c(forward)

With frozen-prefix caching, the first epoch and the first evaluation also run the frozen bottom;
later ones read it from the cache, so they are timed separately.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import torch

from studio.training.device import Precision, autocast
from studio.training.kernel_shapes import length_multiple

FP32 = Precision("cpu", "fp32", "the estimate's default")


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
    """`size` examples of the length a typical *position* sits in (what length-grouped batches
    look like), collated, and the seconds that took (rows fetched and padded, as every step does).

    The estimate scales this batch's cost per position to the whole run, and the cost per position
    grows with the sequence (attention is quadratic; a long chat example is mostly answer, whose
    output layer is the dearest part). Most positions sit in the longer examples, so the length
    that represents them is the position-weighted mean, sum(L²) / sum(L), not the plain mean. On
    the alpaca sample in bf16 this moved the estimate from 33% / 15% under the real training time
    to 26% / 7% (SmolLM2 full / LoRA); classification, with its narrow spread of lengths, moved
    by a few percent."""
    lengths = [len(ids) for ids in dataset["input_ids"]]
    typical = sum(n * n for n in lengths) / max(1, sum(lengths))
    order = sorted(range(len(lengths)), key=lambda i: abs(lengths[i] - typical))[:size]
    start = time.perf_counter()
    batch = collator([dataset[i] for i in order])
    return batch, time.perf_counter() - start


def _clip_seconds(model) -> float:
    """Gradient clipping as the studio's Trainer does it after every backward pass: the total
    norm over every trainable tensor (the rescale itself rides inside the fused AdamW step, see
    trainer.py). Times the real gradients; the threshold does not change the cost."""
    from studio.training.trainer import total_grad_norm
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return 0.0
    start = time.perf_counter()
    total_grad_norm(grads)
    return time.perf_counter() - start


def _positions(batch) -> int:
    return int(batch["input_ids"].numel())


def train_positions_per_epoch(lengths: list[int], batch_size: int, *, length_buckets: bool, seed: int = 0,
                              multiple: int = 1) -> int:
    """Padded positions in one epoch's batches, batched the way the trainer will batch them."""
    from studio.training.sampling import bucketed_batches, padded_positions
    generator = torch.Generator()
    generator.manual_seed(seed)
    if length_buckets:
        batches = bucketed_batches(lengths, batch_size, generator)
    else:   # transformers' group_by_length
        from transformers.trainer_pt_utils import get_length_grouped_indices
        order = get_length_grouped_indices(lengths, batch_size, generator=generator)
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return padded_positions(lengths, batches, multiple)


def eval_positions(lengths: list[int], batch_size: int, multiple: int = 1) -> int:
    """Padded positions of one evaluation: batches in dataset order."""
    from studio.training.sampling import padded_positions
    return padded_positions(lengths, [range(i, min(i + batch_size, len(lengths)))
                                      for i in range(0, len(lengths), batch_size)], multiple)


def _model_loss(model, batch):
    return model(**batch).loss


def _timed_pass(model, batch, *, backward: bool, loss_fn=_model_loss, precision=FP32) -> float:
    """Seconds for one forward (+ backward) pass, computing the loss the way training does (in the
    number format training will use: autocast's bf16 on a CPU with AMX)."""
    start = time.perf_counter()
    if backward:
        with autocast(precision):
            loss = loss_fn(model, batch)
        loss.backward()
    else:
        with torch.no_grad(), autocast(precision):
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


def estimate_training(prepared, train_spec, *, repeats: int = 3, precision: Precision = FP32) -> Estimate:
    """Measure a few steps on the real model and data, in the number format training will use,
    and extrapolate to the whole run."""
    from studio.training.trainer import eval_batch_size
    model = prepared.model
    batch_size = min(train_spec.batch_size, len(prepared.train_dataset))
    batch, batching = _typical_batch(prepared.train_dataset, prepared.collator, batch_size)
    rng = torch.get_rng_state()
    was_training = model.training
    model.train()
    try:
        loss_fn = prepared.loss_fn or _model_loss
        first = _timed_pass(model, batch, backward=True, loss_fn=loss_fn, precision=precision)   # warm-up; fills the prefix cache
        if first > 1.0:   # a big model: steps are long enough that one more is a steady measurement
            repeats = 1
        else:
            # A second warm-up for small steps: the pass after the first (the first to read the
            # prefix cache and to reuse the first pass's memory) was the slowest of the timed
            # ones in two of three probes (MiniLM, freeze 2, bf16: 51-55 ms against 35-50), and
            # as one of three it moved the median.
            _timed_pass(model, batch, backward=True, loss_fn=loss_fn, precision=precision)
        # The median of a few passes: this machine's speed drifts by 10-20% within seconds, and
        # the fastest pass (the minimum) made the estimate come out 20-30% short.
        later = statistics.median(_timed_pass(model, batch, backward=True, loss_fn=loss_fn, precision=precision) for _ in range(repeats))
        clip = _clip_seconds(model)   # on the gradients the last pass left
        cached = getattr(model, "misses", None) is not None
        if cached:
            # A true first-epoch step includes the frozen bottom: time it on fresh copies of the batch.
            bottom = _bottom_seconds(model, batch, precision)
            first = later + bottom
        else:
            first = later
        model.eval()
        # Evaluation costs the same per example at any batch size: time a small batch, scale up.
        eval_batch, _ = _typical_batch(prepared.eval_dataset, prepared.collator,
                                       min(batch_size, len(prepared.eval_dataset)))
        eval_pass = _timed_pass(model, eval_batch, backward=False, loss_fn=loss_fn, precision=precision)
        # With caching only the first evaluation runs the frozen bottom (the pass above filled
        # the cache for this batch): later evaluations cost what a second pass costs.
        eval_later = _timed_pass(model, eval_batch, backward=False, loss_fn=loss_fn, precision=precision) if cached else eval_pass
        per_step = _optimizer_step_seconds(model) + clip + batching   # what every step adds to its pass
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        torch.set_rng_state(rng)
    n_train = len(prepared.train_dataset)
    per_epoch = max(1, math.ceil(n_train / train_spec.batch_size))
    steps = max(1, math.ceil(per_epoch * train_spec.epochs))
    first_epoch_steps = min(per_epoch, steps)
    # Per padded position: the first epoch's pass, a later epoch's pass, an evaluation pass.
    c_first, c_later = first / _positions(batch), later / _positions(batch)
    c_eval_first, c_eval_later = eval_pass / _positions(eval_batch), eval_later / _positions(eval_batch)
    train_lengths = [len(ids) for ids in prepared.train_dataset["input_ids"]]
    multiple = length_multiple(prepared.collator)   # widths padded further for bf16 kernels
    epoch_positions = train_positions_per_epoch(train_lengths, train_spec.batch_size,
                                                length_buckets=prepared.length_buckets, seed=train_spec.seed,
                                                multiple=multiple)
    first_positions = epoch_positions * first_epoch_steps / per_epoch
    later_positions = epoch_positions * (steps - first_epoch_steps) / per_epoch
    eval_lengths = [len(ids) for ids in prepared.eval_dataset["input_ids"]]
    # Checkpoints are written with each evaluation, except after the last step (nothing is left
    # to resume then; see callbacks.py).
    if train_spec.eval_strategy == "epoch":
        evaluations = max(1, math.ceil(train_spec.epochs))
        checkpoints = evaluations - 1
    else:
        evaluations = max(1, steps // train_spec.eval_steps)
        checkpoints = (steps - 1) // train_spec.eval_steps
    positions = eval_positions(eval_lengths, eval_batch_size(prepared, train_spec.batch_size), multiple)
    eval_seconds = positions * c_eval_later
    saves = _save_seconds(model, checkpoints=checkpoints if train_spec.save_checkpoints else 0)
    total = (first_positions * c_first + later_positions * c_later + steps * per_step
             + positions * c_eval_first + (evaluations - 1) * eval_seconds + saves)
    mean_step = epoch_positions / per_epoch
    return Estimate(total, mean_step * c_first + per_step, mean_step * c_later + per_step, eval_seconds, steps,
                    evaluations)


def _save_seconds(model, *, checkpoints: int) -> float:
    """Writing `checkpoints` checkpoints (the saved weights, only the adapters for LoRA, and AdamW's
    two moments per trainable weight) and the final model, at a write speed measured here with a
    16 MB safetensors file. A full SmolLM2 checkpoint is 1.6 GB; a LoRA one a few MB."""
    import os
    import tempfile
    from safetensors.torch import save_file
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    saved = trainable if hasattr(model, "peft_config") else sum(p.numel() for p in model.parameters())
    probe = torch.zeros(4 << 20)
    with tempfile.TemporaryDirectory(prefix="studio-write-probe-") as folder:
        start = time.perf_counter()
        save_file({"probe": probe}, os.path.join(folder, "probe.safetensors"))
        per_byte = (time.perf_counter() - start) / (probe.numel() * 4)
    return per_byte * 4 * (checkpoints * (saved + 2 * trainable) + saved)


def _bottom_seconds(model, batch, precision: Precision = FP32) -> float:
    """Time the frozen bottom alone (embeddings + frozen blocks, no grad)."""
    probe_keys = [-1 - i for i in range(len(batch["input_ids"]))]
    start = time.perf_counter()
    with autocast(precision):
        model._capture(batch["input_ids"], batch["attention_mask"], probe_keys)
    elapsed = time.perf_counter() - start
    for key in probe_keys:
        model.store.discard(key)
    return elapsed
