"""This machine's fp32 matmul peak, measured the way the issue asks: square fp32 torch.matmul.

In:  matrix size, warmup and timed repetitions.  Out: a dict with `gflops` (the best repetition,
2*n^3 floating-point operations over its time), the threads torch used and every timing.
Run alone with `python -m benchmarks.peak` to print it.
"""

from __future__ import annotations

import json
import time


def measure_peak(size: int = 2048, repeats: int = 10, warmup: int = 3, dtype: str = "fp32") -> dict:
    """Best-of-`repeats` GFLOP/s of an n x n matmul (fp32, or "bf16") with torch's default
    thread count. Measure bf16 only where the CPU has it (`has_fast_bf16`): elsewhere it is
    emulated, hundreds of times slower, and a 2048² matmul takes minutes.

    The best (not the mean) is the peak: on a shared machine every slower repetition lost time to
    someone else, never gained it."""
    import torch

    torch.manual_seed(0)
    kind = torch.bfloat16 if dtype == "bf16" else torch.float32
    a = torch.randn(size, size, dtype=kind)
    b = torch.randn(size, size, dtype=kind)
    out = torch.empty(size, size, dtype=kind)
    for _ in range(warmup):
        torch.matmul(a, b, out=out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        times.append(time.perf_counter() - start)
    flop = 2.0 * size ** 3
    best = min(times)
    return {"gflops": round(flop / best / 1e9, 2), "dtype": dtype, "size": size, "threads": torch.get_num_threads(),
            "best_seconds": round(best, 5), "median_gflops": round(flop / sorted(times)[len(times) // 2] / 1e9, 2)}


def has_fast_bf16() -> bool:
    """AMX or avx512_bf16 in /proc/cpuinfo: bf16 matmuls run in hardware."""
    from studio.training.device import BF16_FLAGS, _cpu_flags
    return bool(BF16_FLAGS & _cpu_flags())


if __name__ == "__main__":
    print(json.dumps(measure_peak()))
