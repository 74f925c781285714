"""Pick the device and number format that are fast on *this* machine, detected at run time.

Mixed precision keeps the weights, the optimizer and the loss in float32 and runs the matmuls
in a 16-bit format. Whether that pays depends on the hardware and on the model:
- CUDA GPUs: bf16 where supported, else fp16, for every task.
- CPUs with AMX (Intel Sapphire Rapids and later: the `amx_bf16` flag) run bf16 matmuls on the
  tile unit: on a 2-core one, 2.6 TFLOP/s against 0.39 for fp32 (2048², benchmark run 7). There,
  SmolLM2-135M trained 1.45x faster with full fine-tuning and 1.11x with LoRA, at the same eval
  loss; MiniLM gained 1.15x with full fine-tuning, nothing with freeze depth 4, and took 20-40%
  more memory. That was before bf16 shapes were rounded (kernel_shapes.py): each new batch shape
  compiled a kernel and kept it, which is what cost the time and the memory. Not measured again
  on AMX since, so there classification stays in fp32.
- CPUs with avx512_bf16 but no AMX (AMD Zen 4 and 5) differ. Zen 5 ran 2048² bf16 matmuls at
  767-820 GFLOP/s against 178-200 in fp32 (4.2x, benchmark run 9), and there SmolLM2 trained 1.84x
  faster with full fine-tuning and 1.49x with LoRA at the same eval loss. MiniLM, with its shapes
  rounded, trained 1.8x faster with full fine-tuning and 1.6x with freeze depth 4 (benchmark run
  12), in about the same memory and, over 5-10 seeds on held-out questions, at the same accuracy.
  Zen 4 executes its 512-bit instructions in two halves, about 2x on paper, unmeasured. So on such
  a CPU a run first times bf16 against fp32 matmuls (about 0.1 s, once per process) and uses bf16
  when bf16 is at least `FAST_BF16_SPEEDUP` times faster.
- Other CPUs: fp32. Without AMX or avx512_bf16 a bf16 matmul is emulated, hundreds of times slower
  (measured on an AMD EPYC without them).

`STUDIO_CPU_BF16=1` turns bf16 on for every task on any CPU with bf16 instructions;
`STUDIO_CPU_BF16=0` keeps every CPU run in fp32. `STUDIO_FORCE_CPU=1` ignores a GPU.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Precision:
    device: str   # "cpu" | "cuda"
    dtype: str    # "fp32" | "bf16" | "fp16"
    reason: str

    def describe(self) -> str:
        """One line for the progress message: "bf16 mixed precision (CPU with AMX)"."""
        kind = "fp32" if self.dtype == "fp32" else f"{self.dtype} mixed precision"
        return f"{kind} ({self.reason})"


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# Tasks whose models gained from bf16 on an AMX CPU in the benchmark (see above).
AMX_BF16_TASKS = frozenset({"generate"})
# CPU flags of bf16 in hardware: AMX tiles, or AVX-512 bf16 dot products.
BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
# Without AMX, bf16 is used when its matmuls are at least this much faster than fp32 ones. Zen 5
# measures 4.2-4.8x and gains 1.5-1.8x end to end; the casts around each matmul and the fp32 work
# in between (norms, softmax, AdamW) eat into the gain, so 2x on paper is left to the opt-in.
FAST_BF16_SPEEDUP = 3.0


def cpu_precision(flags: set[str], choice: str | None, task: str, bf16_speedup=lambda: 0.0) -> Precision:
    """The CPU's format for `task` from its feature flags and STUDIO_CPU_BF16 (None, "0", "1").
    `bf16_speedup()` times bf16 against fp32 matmuls; it is called only where it decides."""
    if choice == "0":
        return Precision("cpu", "fp32", "fp32 asked for with STUDIO_CPU_BF16=0")
    if choice == "1" and BF16_FLAGS & flags:
        return Precision("cpu", "bf16", "CPU with bf16 instructions, asked for with STUDIO_CPU_BF16=1")
    if not BF16_FLAGS & flags:
        return Precision("cpu", "fp32", "CPU without fast bf16: fp32 is the fast path here")
    if "amx_bf16" in flags:
        if task not in AMX_BF16_TASKS:
            return Precision("cpu", "fp32", "bf16 has not been measured to pay for this task on an AMX CPU")
        return Precision("cpu", "bf16", "CPU with AMX bf16 tiles")
    speedup = bf16_speedup()
    if speedup >= FAST_BF16_SPEEDUP:
        return Precision("cpu", "bf16", f"CPU whose bf16 matmuls run {speedup:.1f}x its fp32 ones")
    return Precision("cpu", "fp32", f"this CPU's bf16 matmuls run only {speedup:.1f}x its fp32 ones")


def measured_bf16_speedup(size: int = 768, repeats: int = 3, rounds: int = 3) -> float:
    """fp32 seconds / bf16 seconds for one size x size matmul, fastest of each (about 0.1 s in all).

    Each round times a block of `repeats` fp32 matmuls, then a block of bf16 ones; `rounds` rounds
    take turns, so a slow moment of a shared machine (they last a fraction of a second here) cannot
    spoil one format's every timing. One round, as before, once measured a Zen 5 below 3x and the
    run trained in fp32, 2x slower. (Alternating single matmuls instead measured 15-25% less
    speedup (3.6-4.3x against 4.3-5.0x): each format then starts with the other's data in its cache.)"""
    import time
    import torch

    def fastest(a, b) -> float:
        torch.mm(a, b)   # warm-up: the first call picks and prepares the kernel, and fills the cache
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - start)
        return min(times)

    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator) for _ in range(2))
    a16, b16 = a.bfloat16(), b.bfloat16()
    fp32 = bf16 = float("inf")
    try:
        for _ in range(rounds):
            fp32 = min(fp32, fastest(a, b))
            bf16 = min(bf16, fastest(a16, b16))
    except RuntimeError:   # no bf16 matmul at all
        return 0.0
    return fp32 / bf16


@lru_cache(maxsize=1)
def this_cpus_bf16_speedup() -> float:
    """`measured_bf16_speedup()`, timed once per process: every task's choice rests on one timing,
    so a classification and a generation run on the same machine cannot disagree about it."""
    return measured_bf16_speedup()


@lru_cache(maxsize=None)
def training_precision(task: str) -> Precision:
    """The format a training run of `task` ("classify" | "generate") uses on this machine."""
    import torch
    if os.environ.get("STUDIO_FORCE_CPU") != "1" and torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return Precision("cuda", "bf16", "CUDA GPU with bf16 support")
        return Precision("cuda", "fp16", "CUDA GPU without bf16")
    return cpu_precision(_cpu_flags(), os.environ.get("STUDIO_CPU_BF16"), task, this_cpus_bf16_speedup)


def autocast(precision: Precision):
    """The context the Trainer trains under for `precision`: torch's autocast for a 16-bit format,
    nothing for fp32. For code that runs the model outside the Trainer's own forward (the time
    estimate), so it measures what training will do."""
    import torch
    if precision.dtype == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision.dtype == "bf16" else torch.float16
    return torch.autocast(device_type=precision.device, dtype=dtype)
