"""Freed memory kept for reuse while a job trains, and handed back when it ends (glibc only)."""

import ctypes
import os

import pytest
import torch

from studio.training import heap

_TUNED_AT_START = "GLIBC_TUNABLES" in os.environ or any(k.startswith("MALLOC_") for k in os.environ)
pytestmark = [pytest.mark.skipif(heap.glibc() is None, reason="needs glibc's malloc"),
              pytest.mark.skipif(_TUNED_AT_START, reason="malloc tuned through the environment")]


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]


def _mapped_bytes() -> int:
    """Bytes malloc currently holds as separate mmaps (glibc >= 2.33)."""
    libc = heap.glibc()
    libc.mallinfo2.restype = _MallInfo2
    return libc.mallinfo2().hblkhd


def _maps_a_big_tensor() -> bool:
    before = _mapped_bytes()
    block = torch.empty(16 << 20)   # 64 MB: always a separate mmap under glibc's defaults
    mapped = _mapped_bytes() - before >= 64 << 20
    del block
    return mapped


def test_big_tensors_come_from_the_reused_heap_only_inside(monkeypatch):
    monkeypatch.delenv("STUDIO_KEEP_FREED_MEMORY", raising=False)
    assert _maps_a_big_tensor()
    with heap.keep_freed_memory():
        with heap.keep_freed_memory():   # a second job at the same time
            assert not _maps_a_big_tensor()
        assert not _maps_a_big_tensor(), "the first job still trains: the settings must hold"
    assert _maps_a_big_tensor(), "the defaults are back once no job trains"


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("STUDIO_KEEP_FREED_MEMORY", "0")
    with heap.keep_freed_memory():
        assert _maps_a_big_tensor()


def test_left_alone_when_the_operator_tuned_malloc(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    with heap.keep_freed_memory():
        assert _maps_a_big_tensor()


def test_after_a_job_mid_sized_tensors_still_come_from_the_heap():
    """Any mallopt ends glibc's adaptive threshold; the exit must not leave it at 128 KB."""
    with heap.keep_freed_memory():
        pass
    before = _mapped_bytes()
    block = torch.empty(4 << 20)   # 16 MB
    assert _mapped_bytes() - before < 16 << 20
    del block
