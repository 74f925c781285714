"""Keep freed memory in the process while a job trains, so big tensors are not re-mapped every step.

PyTorch on a CPU takes its tensors from the C library's `malloc`. glibc serves a request above a
threshold (128 KB, rising with use to at most 32 MB) with a fresh `mmap` and gives it back to the
kernel when it is freed. A training step allocates the same large tensors every time (one SmolLM2
batch's answer scores alone are 118 MB), so every step pays again for the kernel to map and zero
each 4 KB page. In a profile that, not arithmetic, was most of the time of the big elementwise ops.
Intel's PyTorch CPU tuning guide swaps in jemalloc or tcmalloc for this reason; glibc does the same
with two `mallopt` settings: serve everything from the heap (`M_MMAP_MAX` = 0) and keep freed heap
memory for reuse (`M_TRIM_THRESHOLD` = 1 GB). The second step then reuses the first step's pages.
(The trainer thread allocates from a per-thread arena, whose heaps hold at most 64 MB each, so a
block above that is still mapped fresh; the gain comes from the many 1-60 MB activations.)

Measured (one trainer thread, 8 alternating steps each way): SmolLM2-135M LoRA 5.34 -> 4.67 s per
step (1.14x). MiniLM's tensors are small (16 questions of ~15 tokens), and it gains nothing there.

The settings hold while any job is inside `keep_freed_memory()`. When the last one leaves,
`malloc_trim` hands the freed memory back, so an idle hosted demo shrinks back to its baseline,
and the settings become what glibc's adaptive ones settle at after big blocks have been freed
(blocks up to 32 MB from the heap, trimming above 64 MB): any `mallopt` switches the adaptation off
for good, and its starting point (128 KB) would map every mid-sized tensor of later inference.
The trim is a gain of its own: after a SmolLM2 LoRA job run inside one process the resident size
went back to 525-582 MiB (380 before the job, peak 4.4-4.5 GB); with glibc's defaults it stayed at
1.9-2.9 GB, freed but never returned. Without glibc (macOS, Windows, musl) this does
nothing, and so it does when the operator has tuned malloc (`MALLOC_*_` or `GLIBC_TUNABLES` in the
environment); `STUDIO_KEEP_FREED_MEMORY=0` turns it off.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from contextlib import contextmanager
from functools import lru_cache

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4   # mallopt parameters, <malloc.h>
_KEEP_UP_TO = 1 << 30
# After a job: where glibc's adaptive thresholds end up once big blocks have been freed.
_AFTER_MMAP_THRESHOLD, _AFTER_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 32 << 20, 64 << 20, 65536

_lock = threading.Lock()
_holders = 0


@lru_cache(maxsize=1)
def glibc():
    """The running glibc (None elsewhere: only glibc has these knobs and malloc_trim)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version   # glibc's own symbol: musl and others lack it
        libc.malloc_trim
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


def operator_tuned_malloc() -> bool:
    """Whoever started the process set malloc up through the environment: leave it as they chose."""
    return "GLIBC_TUNABLES" in os.environ or any(k.startswith("MALLOC_") for k in os.environ)


def _enabled():
    if operator_tuned_malloc() or os.environ.get("STUDIO_KEEP_FREED_MEMORY", "1") == "0":
        return None
    return glibc()


@contextmanager
def keep_freed_memory():
    """While inside (from any number of threads at once), freed memory stays for reuse."""
    global _holders
    libc = _enabled()
    if libc is None:
        yield
        return
    with _lock:
        if _holders == 0:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_UP_TO)
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_MMAP_THRESHOLD, _AFTER_MMAP_THRESHOLD)
                libc.mallopt(_M_TRIM_THRESHOLD, _AFTER_TRIM_THRESHOLD)
                libc.malloc_trim(0)
