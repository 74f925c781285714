"""A TrainerCallback that timestamps a run from the inside, the same way for every trainer.

Wall clock and this process's CPU time are recorded at train begin/end and at each epoch's begin
and end. transformers fires `on_epoch_end` BEFORE the epoch's evaluation and checkpoint, so the
sum of epoch spans is pure training compute (forward, backward, optimizer, data collation),
while evaluation and saving show up as the gap between train time and that sum.
CPU seconds help read a run on a shared machine: contention stretches wall time far more than it
stretches the CPU time the process itself used.
"""

from __future__ import annotations

import resource
import time

from transformers import TrainerCallback


def cpu_seconds() -> float:
    """User + system CPU time this process has used so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class TimingCallback(TrainerCallback):
    def __init__(self) -> None:
        self.train_begin: float | None = None
        self.train_end: float | None = None
        self.epochs: list[dict] = []          # {"begin", "end", "cpu_begin", "cpu_end"}
        self.eval_seconds: list[float] = []   # eval_runtime of each evaluation inside train()
        self.saves = 0
        self.steps = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.train_begin = time.time()

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epochs.append({"begin": time.time(), "cpu_begin": cpu_seconds(), "end": None, "cpu_end": None})

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.epochs:
            self.epochs[-1].update(end=time.time(), cpu_end=cpu_seconds())

    def on_step_end(self, args, state, control, **kwargs):
        self.steps = state.global_step

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        runtime = (metrics or {}).get("eval_runtime")
        if isinstance(runtime, (int, float)):
            self.eval_seconds.append(float(runtime))

    def on_save(self, args, state, control, **kwargs):
        self.saves += 1

    def on_train_end(self, args, state, control, **kwargs):
        self.train_end = time.time()

    def summary(self, t0: float) -> dict:
        """Durations relative to `t0` (when the trainer's job started): setup before train(),
        per-epoch compute (wall and CPU), train() total, evaluation seconds, checkpoints saved."""
        done = [e for e in self.epochs if e["end"] is not None]
        return {
            "setup_s": round(self.train_begin - t0, 3) if self.train_begin else None,
            "train_s": round(self.train_end - self.train_begin, 3) if self.train_end and self.train_begin else None,
            "epoch_s": [round(e["end"] - e["begin"], 3) for e in done],
            "epoch_cpu_s": [round(e["cpu_end"] - e["cpu_begin"], 3) for e in done],
            "eval_in_train_s": round(sum(self.eval_seconds), 3),
            "checkpoints": self.saves,
            "steps": self.steps,
            "timing_source": "callback",
        }
