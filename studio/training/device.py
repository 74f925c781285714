"""Pick the device and number format that are fast on *this* machine, detected at run time.

On CPUs without native bf16 (no AMX / avx512_bf16), bf16 matmuls are hundreds of times slower
than fp32, so training stays in fp32. On a CUDA GPU, bf16 (or fp16 on older cards) is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Precision:
    device: str   # "cpu" | "cuda"
    dtype: str    # "fp32" | "bf16" | "fp16"
    reason: str


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@lru_cache(maxsize=1)
def training_precision() -> Precision:
    import torch
    if os.environ.get("STUDIO_FORCE_CPU") != "1" and torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return Precision("cuda", "bf16", "CUDA GPU with bf16 support")
        return Precision("cuda", "fp16", "CUDA GPU without bf16: fp16 mixed precision")
    flags = _cpu_flags()
    fast_bf16 = {"amx_bf16", "avx512_bf16"} & flags
    # Trainer's bf16 on CPU autocasts; worthwhile only with native bf16 instructions.
    if fast_bf16 and os.environ.get("STUDIO_CPU_BF16") == "1":
        return Precision("cpu", "bf16", f"CPU with {', '.join(sorted(fast_bf16))}")
    return Precision("cpu", "fp32", "CPU without fast bf16: fp32 is the fast path here")
