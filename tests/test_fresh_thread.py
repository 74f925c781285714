"""Inference outside the trainer leaves no OpenMP team in the thread that asked (fresh_thread.py).

A long-lived thread that once ran a parallel torch kernel keeps an OpenMP worker thread for the
rest of its life, and while it does, libgomp makes the trainer thread's workers sleep between
kernels (training measured 1.3-2x slower). These tests play the long-lived thread (a gradio worker)
and check what stays behind.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time

import pytest
import torch

from conftest import tiny_config, write_tiny_csv
from studio.fresh_thread import in_fresh_thread

needs_linux_threads = pytest.mark.skipif(not os.path.isdir("/proc/self/task") or torch.get_num_threads() < 2,
                                         reason="counts OpenMP workers in /proc with 2+ torch threads")


def os_threads() -> set[str]:
    return set(os.listdir("/proc/self/task"))


def settled(expected: set[str], timeout: float = 3.0) -> set[str]:
    """This process's threads once they match `expected` (exiting workers take a moment), or
    whatever they are at the timeout."""
    deadline = time.monotonic() + timeout
    while os_threads() != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return os_threads()


def parallel_kernel() -> float:
    a = torch.randn(512, 512)
    return float((a @ a).sum())     # big enough for torch to split over its threads


def in_long_lived_thread(fn):
    """Run fn() in a helper thread and return what it returns, like a gradio worker would."""
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("value", fn()))
    thread.start()
    thread.join()
    return out["value"]


def test_returns_the_value_raises_the_error_and_keeps_context_variables():
    assert in_fresh_thread(sum, [1, 2, 3]) == 6
    with pytest.raises(KeyError, match="missing"):
        in_fresh_thread({}.__getitem__, "missing")
    request = contextvars.ContextVar("request")
    request.set("page-1")
    assert in_fresh_thread(request.get) == "page-1"
    assert in_fresh_thread(threading.get_ident) != threading.get_ident()


@needs_linux_threads
def test_work_in_a_fresh_thread_leaves_no_worker_behind_and_direct_work_does():
    def probe():
        before = os_threads()
        in_fresh_thread(parallel_kernel)
        after_fresh = settled(before)
        parallel_kernel()                  # the same kernel run here: this thread gains a team
        return before, after_fresh, os_threads()

    before, after_fresh, after_direct = in_long_lived_thread(probe)
    assert after_fresh == before
    assert len(after_direct - before) >= 1, "the kernel did not run in parallel: the check proves nothing"


def test_a_classifier_pair_loads_and_predicts_outside_the_calling_thread(tmp_path, tiny_bert):
    from studio.compare import load_pair
    from studio.training.manager import JobManager
    from studio.training.runs import RunStore
    manager = JobManager(RunStore(tmp_path / "runs"))
    try:
        job = manager.submit(tiny_config(write_tiny_csv(tmp_path / "d.csv"), tiny_bert, epochs=1))
        assert job.wait(120).state == "completed"
    finally:
        manager.shutdown()

    def probe():
        pair = load_pair(job.run)
        seen = []
        for model in (pair.base, pair.tuned):
            model.register_forward_pre_hook(lambda module, args: seen.append(threading.get_ident()))
        result = pair.predict_one("good thing")
        return threading.get_ident(), seen, result

    caller, seen, result = in_long_lived_thread(probe)
    assert seen and caller not in seen
    assert set(result["tuned"]) == {"bad", "good"}
