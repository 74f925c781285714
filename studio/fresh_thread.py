"""Run torch work in a thread that ends with it, so that training keeps both cores.

PyTorch's CPU kernels run on OpenMP (GNU libgomp in the PyPI wheels). The first parallel kernel a
thread runs gives that thread a team of OpenMP worker threads, and the team stays until the thread
exits. libgomp counts every team's workers, and while there are more of them than CPUs it stops
letting a worker spin between kernels: after about 100 spins it sleeps in the kernel, and every one
of the thousands of small kernels in a training step then pays a wake-up. Measured on a 2-core
machine: a trainer thread's matmul + GELU + backward loop ran 1.3-2x slower as soon as another
thread had run one 2-thread matmul, and a whole MiniLM fine-tuning run took 2x as long (its
threads used 1.0-1.3 cores instead of 2).

The threads that would leave a team behind are the long-lived ones: gradio's worker threads, which
answer the Compare tab and are reused for every later event (its 1 s progress poll included), and a
program's main thread. So model loading and inference outside the trainer run through
`in_fresh_thread`: a new thread per call, gone when the call returns, and its team with it. The
extra thread costs well under a millisecond, against tens of milliseconds for the work it carries.
"""

from __future__ import annotations

import contextvars
import threading
from typing import Callable, TypeVar

T = TypeVar("T")


def in_fresh_thread(fn: Callable[..., T], *args, **kwargs) -> T:
    """`fn(*args, **kwargs)`, run in a new thread that ends when it returns; its result is
    returned and its exception raised here. The caller's context variables go with it (gradio
    keeps a request's progress tracker in one); thread-local torch state such as
    `torch.inference_mode()` does not, so `fn` must enter that itself."""
    outcome: dict = {}
    context = contextvars.copy_context()

    def run() -> None:
        try:
            outcome["value"] = context.run(fn, *args, **kwargs)
        except BaseException as exc:  # handed to the caller, who raises it
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"studio-{getattr(fn, '__name__', 'work')}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome.pop("error")
    return outcome["value"]
