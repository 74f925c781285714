"""The seam between transformers' Trainer and everyone watching it.

`ProgressCallback` turns Trainer events into records in the job's `ProgressLog` (for the UI) and
lines in the run's `metrics.jsonl` (for after a restart). It also carries the two controls a
callback may exercise: a cooperative stop (a `threading.Event` checked after every step) and early
stopping (patience on the evaluation metric). It never touches the model or the optimizer.
"""

from __future__ import annotations

import math
import threading
import time

from transformers import TrainerCallback

from studio.training.progress import ProgressLog
from studio.training.runs import Run


class ProgressCallback(TrainerCallback):
    def __init__(self, log: ProgressLog, run: Run | None, stop_event: threading.Event, *,
                 samples_per_step: int, metric: str | None = None, greater_is_better: bool = True,
                 patience: int = 0, tokens_per_sample: float | None = None) -> None:
        self.log = log
        self.run = run
        self.stop_event = stop_event
        self.samples_per_step = samples_per_step
        self.metric = metric
        self.greater_is_better = greater_is_better
        self.patience = patience
        self.tokens_per_sample = tokens_per_sample
        self._best: float | None = None
        self._bad_evals = 0
        self._last_time = None
        self._last_step = 0
        self.epoch_boundaries: list[int] = []

    def _emit(self, record: dict) -> None:
        record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        record["time"] = time.time()
        self.log.append(record)
        if self.run is not None:
            self.run.append_metric(record)

    # -- lifecycle ---------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        self._last_time = time.time()
        self._last_step = state.global_step
        self.log.update(max_steps=state.max_steps, step=state.global_step, state="running")

    def on_step_end(self, args, state, control, **kwargs):
        self.log.update(step=state.global_step, epoch=state.epoch or 0.0)
        if self.stop_event.is_set():
            control.should_training_stop = True
            control.should_save = False  # stop now; the final model is saved by the job
        self._no_checkpoint_at_the_end(state, control)
        return control

    @staticmethod
    def _no_checkpoint_at_the_end(state, control) -> None:
        """A checkpoint exists to resume from; after the last step there is nothing left to
        resume, and the job saves the final model itself. Skipping it saves a whole write of the
        weights and AdamW's two moments: 1.6 GB for full SmolLM2 fine-tuning. (This callback runs
        after transformers' own, which asks for that save at the end of every epoch.)"""
        if state.max_steps and state.global_step >= state.max_steps:
            control.should_save = False

    def on_substep_end(self, args, state, control, **kwargs):
        if self.stop_event.is_set():
            control.should_training_stop = True
        return control

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._epoch_started = time.time()

    def on_epoch_end(self, args, state, control, **kwargs):
        self._no_checkpoint_at_the_end(state, control)
        # The Trainer also calls this when a run stops part-way through an epoch (Stop, early
        # stopping between evaluations). That is not an epoch boundary: marking it would draw a
        # second "epoch 1" line on the chart. Whole epochs and a run's planned end are marked.
        epoch = state.epoch or 0.0
        if abs(epoch - round(epoch)) > 1e-3 and epoch < args.num_train_epochs - 1e-3:
            return control
        # Training time of this epoch alone (evaluation and checkpointing come after this event).
        seconds = time.time() - getattr(self, "_epoch_started", time.time())
        self._emit({"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "event": "epoch_end",
                    "epoch_seconds": round(seconds, 3)})
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs:
            return
        now = time.time()
        steps = state.global_step - self._last_step
        dt = max(now - (self._last_time or now), 1e-9)
        samples_per_s = steps * self.samples_per_step / dt if steps > 0 else None
        self._last_time, self._last_step = now, state.global_step
        record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4),
                  "loss": float(logs["loss"]), "learning_rate": float(logs.get("learning_rate", 0.0)),
                  "samples_per_second": samples_per_s}
        if samples_per_s and self.tokens_per_sample:
            record["tokens_per_second"] = samples_per_s * self.tokens_per_sample
        self._emit(record)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics = metrics or {}
        record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not key.endswith(("_runtime", "_per_second")):
                record[key] = float(value)
        self._emit(record)
        # Evaluation time should not count against training throughput.
        self._last_time = time.time()
        self._early_stopping(metrics, control)

    def _early_stopping(self, metrics: dict, control) -> None:
        if not self.patience or not self.metric:
            return
        value = metrics.get(f"eval_{self.metric}")
        if value is None:
            return
        better = self._best is None or (value > self._best if self.greater_is_better else value < self._best)
        if better:
            self._best, self._bad_evals = value, 0
            return
        self._bad_evals += 1
        if self._bad_evals >= self.patience:
            note = f"Early stopping: {self.metric} has not improved for {self.patience} evaluation(s)."
            self._emit({"step": self.log.step, "event": "early_stop", "note": note})
            control.should_training_stop = True
