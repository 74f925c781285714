"""Few distinct matmul shapes when a CPU runs them in bf16: every new shape is compiled and kept.

On a CPU, torch runs fp32 matmuls through MKL's sgemm, which serves any shape from the same code.
bf16 (and fp16) matmuls go through oneDNN instead, which compiles kernels for each new shape it
meets, just in time, and keeps them in two caches (torch's ideep layer and oneDNN's own) of up to
1,024 entries each. Measured on a Zen 5 (avx512_bf16), torch 2.13:
- a new shape costs about 0.8 ms to compile (a MiniLM projection of 208 tokens runs in 0.4 ms);
- each cached shape holds about 0.6-3 MB, so the caches grow to about 1 GB and stay there.

Dynamic padding makes nearly every batch a new shape: its longest sentence sets its width, and the
real-token blocks (real_tokens.py) and the answer-only output layer (answer_loss.py) work on a row
count that changes with every batch. In a MiniLM classroom run in bf16 that made the process
700 MB larger than in fp32 and spent the time bf16 saved on compiling; SmolLM2's bf16 runs paid it
too. So when matmuls run in a 16-bit format on a CPU:
- batches are padded to a multiple of LENGTH_MULTIPLE positions (`PadToMultiple`);
- a row count that varies from batch to batch is rounded up to a multiple of ROW_MULTIPLE with rows
  whose results are never read (`round_rows`).
A run then meets a few dozen shapes instead of a new one per step. fp32 runs are left as they are:
sgemm has no compile step, and every padded position would be paid for in arithmetic.

The caches' own bound is left at its default. Capped at 256 entries (ONEDNN_PRIMITIVE_CACHE_CAPACITY
and LRU_CACHE_CAPACITY), a SmolLM2 run, whose dozen widths times fifteen kinds of matmul need about
260 entries, evicted and recompiled kernels every step and trained slower.
"""

from __future__ import annotations

import dataclasses

LENGTH_MULTIPLE = 8    # positions per sentence: TREC's 8-40 tokens fall into 5 widths
ROW_MULTIPLE = 32      # rows of a matmul: 150-450 real tokens a batch fall into 10 sizes


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def compiles_per_shape(precision) -> bool:
    """True when a training run in `precision` runs its matmuls through oneDNN's compiled kernels."""
    return precision.device == "cpu" and precision.dtype in ("bf16", "fp16")


def rounds_rows(tensor) -> bool:
    """True when a matmul on `tensor` right now would compile per shape: a 16-bit CPU matmul,
    through autocast or because the tensor itself is 16-bit."""
    import torch
    return tensor.device.type == "cpu" and (torch.is_autocast_enabled("cpu")
                                            or tensor.dtype in (torch.bfloat16, torch.float16))


def round_rows(rows: int) -> int:
    return round_up(rows, ROW_MULTIPLE)


class PadToMultiple:
    """A collator whose batches are padded a little further, to a multiple of `multiple` positions.

    Every per-position tensor (batch x width) gets the padding its kind uses: the pad token for
    input ids, -100 (ignored by the loss) for per-token labels, 0 for masks and type ids. Per-example
    tensors (a sentence's label, its id) are left alone. The extra positions are masked out like
    any padding, so the model's results on the real tokens are the same.
    """

    def __init__(self, collator, multiple: int, pad_id: int | None) -> None:
        self.collator = collator
        self.multiple = multiple
        self.pad_id = pad_id or 0

    def __call__(self, features: list[dict]) -> dict:
        import torch
        import torch.nn.functional as F
        batch = self.collator(features)
        ids = batch["input_ids"]
        width = ids.shape[1]
        extra = round_up(width, self.multiple) - width
        if extra == 0:
            return batch
        padded = dict(batch)
        for key, value in batch.items():
            if torch.is_tensor(value) and value.dim() == 2 and value.shape == ids.shape:
                fill = self.pad_id if key == "input_ids" else -100 if key == "labels" else 0
                padded[key] = F.pad(value, (0, extra), value=fill)
        return padded


def fit_to_kernels(prepared, precision):
    """`prepared` with its collator padding to LENGTH_MULTIPLE when `precision` compiles per shape."""
    if not compiles_per_shape(precision) or isinstance(prepared.collator, PadToMultiple):
        return prepared
    pad_id = getattr(prepared.tokenizer, "pad_token_id", None)
    return dataclasses.replace(prepared, collator=PadToMultiple(prepared.collator, LENGTH_MULTIPLE, pad_id))


def length_multiple(collator) -> int:
    """The multiple a collator pads widths to (1: none)."""
    return collator.multiple if isinstance(collator, PadToMultiple) else 1
