"""Freed memory kept for reuse while a job trains, and handed back when it ends (glibc only)."""

import ctypes

import pytest
import torch

from studio.training import heap

pytestmark = pytest.mark.skipif(heap.glibc() is None, reason="needs glibc's malloc")


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
