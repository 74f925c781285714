"""A training job: one run of `transformers.Trainer` in a background thread.

The job owns its thread, its `ProgressLog`, its stop `Event` and its failure path. Whoever
started it (a browser tab, the CLI, a test) only reads snapshots and may ask it to stop; the
job never depends on anyone watching. Results and status are written to the run folder by the
thread itself, so they survive the page, the tab and (as "interrupted") the process.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import traceback
import weakref
from pathlib import Path

from studio.errors import StudioError
from studio.training.heap import keep_freed_memory
from studio.training.progress import ProgressLog, Snapshot
from studio.training.runs import Run, atomic_write_json

log = logging.getLogger(__name__)
_LIVE: "weakref.WeakValueDictionary[str, TrainingJob]" = weakref.WeakValueDictionary()


def live_run_ids() -> set[str]:
    """Run ids whose job is alive in this process (used to tell 'running' from 'interrupted')."""
    return {rid for rid, job in list(_LIVE.items()) if not job.snapshot().done}


class TrainingJob:
    def __init__(self, config, run: Run, *, owner: str | None = None, resume: bool = False,
                 extra_callbacks: list | None = None) -> None:
        self.config = config
        self.run = run
        self.owner = owner
        self.resume = resume
        self.extra_callbacks = list(extra_callbacks or [])
        self.progress = ProgressLog()
        self.stop_event = threading.Event()
        self.finished = threading.Event()   # set once the job reaches a final state
        self.thread: threading.Thread | None = None
        self.trainer = None      # available to the compare tab after training
        self.prepared = None
        self.final_metrics: dict | None = None
        _LIVE[run.id] = self
        if resume:
            self._reload_history()

    @property
    def id(self) -> str:
        return self.run.id

    def snapshot(self) -> Snapshot:
        return self.progress.snapshot()

    def start(self) -> "TrainingJob":
        self.thread = threading.Thread(target=self._main, name=f"train-{self.id}", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Ask the job to stop after the current step; it saves what it has and ends as 'stopped'."""
        if self.snapshot().done:
            return
        self.stop_event.set()
        if self.snapshot().state == "running":
            self.progress.update(state="stopping", message="Stopping after this step…")

    def wait(self, timeout: float | None = None) -> Snapshot:
        """Block until the job ends (queued jobs included) or `timeout` passes."""
        self.finished.wait(timeout)
        return self.snapshot()

    def mark_stopped_before_start(self, message: str) -> None:
        """A queued job that is removed never runs; it still ends, and says so."""
        self.progress.update(state="stopped", message=message, finished_at=time.time())
        self.run.write_status("stopped")
        self.finished.set()

    # -- the thread ------------------------------------------------------------------------------
    def _main(self) -> None:
        started = time.time()
        self.progress.update(state="running", started_at=started, message="Preparing…", queue_position=0)
        self.run.write_status("running", started_at=started, owner=self.owner)
        try:
            # Left only after _release, so the trim at its end hands the model's memory back too.
            with keep_freed_memory():
                self._train_and_release(started)
        finally:
            self.finished.set()

    def _train_and_release(self, started: float) -> None:
        try:
            self._train(started)
        except BaseException as exc:  # the thread owns its failure: record it, never lose it
            text = exc.user_message if isinstance(exc, StudioError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, StudioError):
                log.error("training job %s failed:\n%s", self.id, traceback.format_exc())
            self.progress.update(state="failed", error=text, finished_at=time.time(), message=text)
            self.run.write_status("failed", error=text, finished_at=time.time())
        finally:
            self._release()

    def _release(self) -> None:
        """Drop the model, optimizer and caches: the result is on disk; memory returns to baseline."""
        close = (self.prepared.extras.get("close") if self.prepared else None)
        if close:
            close()
        self.trainer = None
        self.prepared = None
        import gc
        gc.collect()

    def _report(self, message: str) -> None:
        self.progress.update(message=message)

    def _train(self, started: float) -> None:
        from studio.tasks import task_module
        from studio.training.device import training_precision
        from studio.training.kernel_shapes import fit_to_kernels
        from studio.training.owned_weights import own_trainable_weights
        from studio.training.trainer import build_trainer, quiet_library_progress_bars

        quiet_library_progress_bars()
        task = task_module(self.config.task)
        self.prepared = fit_to_kernels(task.prepare(self.config, report=self._report),
                                       training_precision(self.config.task))
        if self.stop_event.is_set():
            return self._finish("stopped", started, None)
        own_trainable_weights(self.prepared.model)   # no page-by-page copy in the first step
        self._estimate()
        self.trainer = build_trainer(self.config, self.run, self.prepared, self.progress, self.stop_event,
                                     extra_callbacks=self.extra_callbacks)
        self._report(f"Training in {training_precision(self.config.task).describe()}")
        checkpoint = self.run.last_checkpoint() if self.resume else None
        self.trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        stopped = self.stop_event.is_set()
        self._report("Saving the model")
        self._save_model()
        metrics = None
        if not stopped:
            metrics = self._final_eval()
        self._finish("stopped" if stopped else "completed", started, metrics)

    def _final_eval(self) -> dict:
        """The last evaluation if it was taken at the final step, else a fresh one."""
        step = self.trainer.state.global_step
        evals = [r for r in self.progress.snapshot().records if "eval_loss" in r]
        if evals and evals[-1]["step"] == step:
            return {k: v for k, v in evals[-1].items() if k.startswith("eval_")}
        self._report("Final evaluation")
        return self.trainer.evaluate()

    def _estimate(self) -> None:
        """Time a few real steps and publish the expected duration before training begins."""
        from studio.training.device import training_precision
        from studio.training.estimate import estimate_training
        self._report("Measuring speed")
        try:
            estimate = estimate_training(self.prepared, self.config.train,
                                         precision=training_precision(self.config.task))
        except Exception as exc:  # an estimate is a nicety; never fail a run over it
            log.warning("could not estimate training time: %s", exc)
            return
        self.progress.update(estimate_seconds=estimate.total_seconds,
                             message=f"Expected duration: {estimate.describe()}")
        self.run.write_status("running", estimate_seconds=round(estimate.total_seconds, 1))

    def _save_model(self) -> None:
        """Write the final model to model.tmp/, mark it complete, then swap it into model/."""
        final = self.run.model_dir
        tmp = final.with_name("model.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            self.prepared.save(self.trainer.model, tmp)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StudioError(f"could not save the model ({exc.strerror or exc}).",
                              hint="Free some disk space and resume the run.") from None
        (tmp / "COMPLETE").write_text("ok", encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)

    def _finish(self, state: str, started: float, metrics: dict | None) -> None:
        finished = time.time()
        summary = {"state": state, "wall_time_seconds": round(finished - started, 3),
                   "steps": self.progress.step, "epochs": self.progress.epoch}
        if metrics:
            summary["eval"] = {k.removeprefix("eval_"): v for k, v in metrics.items()
                               if isinstance(v, (int, float))}
        self.final_metrics = summary
        atomic_write_json(self.run.dir / "metrics.json", summary)
        message = "Stopped." if state == "stopped" else "Done."
        self.progress.update(state=state, finished_at=finished, message=message)
        self.run.write_status(state, finished_at=finished, wall_time_seconds=summary["wall_time_seconds"])

    def _reload_history(self) -> None:
        """On resume, keep the curve up to the checkpoint so the chart continues where it was."""
        checkpoint = self.run.last_checkpoint()
        upto = int(checkpoint.name.split("-")[-1]) if checkpoint else 0
        kept = [r for r in self.run.metrics_log() if r.get("step", 0) <= upto]
        lines = "".join(__import__("json").dumps(r) + "\n" for r in kept)
        from studio.training.runs import atomic_write_text
        atomic_write_text(self.run.dir / "metrics.jsonl", lines)
        for record in kept:
            self.progress.append(record)


def remove_partial(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
