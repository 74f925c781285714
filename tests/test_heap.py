"""Freed memory kept for reuse while a job trains, and handed back when it ends (glibc only).

Each check runs in a fresh interpreter: whether a big block is mapped from the kernel depends on
what the heap already holds, and the rest of the suite leaves it full of freed, trimmed space."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from studio.training import heap

pytestmark = [pytest.mark.skipif(heap.glibc() is None, reason="needs glibc's malloc"),
              pytest.mark.skipif(heap.operator_tuned_malloc(), reason="malloc tuned through the environment")]

_PRELUDE = textwrap.dedent('''
    import ctypes, json, torch
    from studio.training import heap

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                    "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
    heap.glibc().mallinfo2.restype = MallInfo2

    def mapped(megabytes):
        """Whether a tensor of this size was mapped from the kernel (glibc >= 2.33's mallinfo2)."""
        before = heap.glibc().mallinfo2().hblkhd
        block = torch.empty(megabytes << 18)
        result = heap.glibc().mallinfo2().hblkhd - before >= megabytes << 20
        del block
        return result
''')


def _run(body: str, **env) -> list:
    """Run `body` (which sets `seen`, a list) after the prelude in a fresh interpreter."""
    code = _PRELUDE + textwrap.dedent(body) + "\nprint(json.dumps(seen))\n"
    environ = {k: v for k, v in os.environ.items() if k != "STUDIO_KEEP_FREED_MEMORY"} | env
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_big_tensors_come_from_the_reused_heap_only_inside():
    seen = _run('''
        seen = [mapped(64)]
        with heap.keep_freed_memory():
            with heap.keep_freed_memory():   # a second job at the same time
                seen.append(mapped(64))
            seen.append(mapped(64))          # the first job still trains
        seen.append(mapped(64))              # no job: blocks this big are the kernel's again
    ''')
    assert seen == [True, False, False, True]


def test_after_a_job_mid_sized_tensors_still_come_from_the_heap():
    """Any mallopt ends glibc's adaptive threshold; the exit must not leave it at 128 KB."""
    seen = _run('''
        with heap.keep_freed_memory():
            pass
        seen = [mapped(16) for _ in range(3)]
    ''')
    assert seen == [False, False, False]


@pytest.mark.parametrize("env", [{"STUDIO_KEEP_FREED_MEMORY": "0"}, {"MALLOC_ARENA_MAX": "2"}])
def test_left_alone_when_switched_off_or_the_operator_tuned_malloc(env):
    seen = _run('''
        with heap.keep_freed_memory():
            seen = [mapped(64)]
    ''', **env)
    assert seen == [True]
