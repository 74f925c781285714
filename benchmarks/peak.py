"""This machine's fp32 matmul peak, measured the way the issue asks: square fp32 torch.matmul.

In:  matrix size, warmup and timed repetitions.  Out: a dict with `gflops` (the best repetition,
2*n^3 floating-point operations over its time), the threads torch used and every timing.
Run alone with `python -m benchmarks.peak` to print it.
"""

from __future__ import annotations

import json
import time


def measure_peak(size: int = 2048, repeats: int = 10, warmup: int = 3) -> dict:
    """Best-of-`repeats` GFLOP/s of an n x n fp32 matmul with torch's default thread count.

    The best (not the mean) is the peak: on a shared machine every slower repetition lost time to
    someone else, never gained it."""
    import torch

    torch.manual_seed(0)
    a = torch.randn(size, size, dtype=torch.float32)
    b = torch.randn(size, size, dtype=torch.float32)
    out = torch.empty(size, size, dtype=torch.float32)
    for _ in range(warmup):
        torch.matmul(a, b, out=out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        times.append(time.perf_counter() - start)
    flop = 2.0 * size ** 3
    best = min(times)
    return {"gflops": round(flop / best / 1e9, 2), "size": size, "threads": torch.get_num_threads(),
            "best_seconds": round(best, 5), "median_gflops": round(flop / sorted(times)[len(times) // 2] / 1e9, 2)}


if __name__ == "__main__":
    print(json.dumps(measure_peak()))
