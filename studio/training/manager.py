"""One job manager per process: a bounded number of trainings at once, the rest wait in line.

On a 2-core CPU two trainings at once are each slower than one after the other, so the default
is one. `submit` is idempotent per owner: the same owner submitting the same config while an
earlier submission is still queued or running (a double-click on Start) gets that job back.
"""

from __future__ import annotations

import threading
from collections import deque

from studio.errors import JobError
from studio.training.job import TrainingJob
from studio.training.runs import RunStore


class JobManager:
    def __init__(self, store: RunStore, *, max_concurrent: int = 1, max_queue: int = 20) -> None:
        self.store = store
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self._lock = threading.RLock()
        self._queue: deque[TrainingJob] = deque()
        self._running: list[TrainingJob] = []
        self._jobs: dict[str, TrainingJob] = {}

    # -- submitting ------------------------------------------------------------------------------
    def submit(self, config, owner: str | None = None, *, extra_callbacks=None) -> TrainingJob:
        with self._lock:
            same = self._active_duplicate(config, owner)
            if same is not None:
                return same
            if len(self._queue) >= self.max_queue:
                raise JobError(f"{len(self._queue)} trainings are already waiting.",
                               hint="Try again when one has finished.")
            run = self.store.create(config, owner=owner)
            job = TrainingJob(config, run, owner=owner, extra_callbacks=extra_callbacks)
            return self._enqueue(job)

    def resume(self, run_id: str, owner: str | None = None) -> TrainingJob:
        """Continue an interrupted (or stopped/failed) run from its last complete checkpoint."""
        with self._lock:
            run = self.store.get(run_id)
            if run_id in self._jobs and not self._jobs[run_id].snapshot().done:
                return self._jobs[run_id]
            state = run.status().get("state")
            if state not in ("interrupted", "stopped", "failed"):
                raise JobError(f"run {run_id} is {state}; only interrupted, stopped or failed runs resume.")
            if run.last_checkpoint() is None:
                raise JobError(f"run {run_id} has no complete checkpoint to resume from.",
                               hint="Start it again instead.")
            run.write_status("queued", owner=owner if owner is not None else run.status().get("owner"))
            job = TrainingJob(run.config(), run, owner=owner, resume=True)
            return self._enqueue(job)

    def _enqueue(self, job: TrainingJob) -> TrainingJob:
        self._jobs[job.id] = job
        self._queue.append(job)
        self._dispatch()
        return job

    def _active_duplicate(self, config, owner):
        wanted = config.to_yaml()
        for job in list(self._queue) + self._running:
            if job.owner == owner and job.config.to_yaml() == wanted and not job.snapshot().done:
                return job
        return None

    # -- scheduling ------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        with self._lock:
            self._running = [j for j in self._running if not j.snapshot().done]
            while self._queue and len(self._running) < self.max_concurrent:
                job = self._queue.popleft()
                if job.stop_event.is_set():  # stopped while waiting: never started
                    job.mark_stopped_before_start("Stopped before it started.")
                    continue
                self._running.append(job)
                self._start(job)
            for position, job in enumerate(self._queue, start=1):
                job.progress.update(queue_position=position,
                                    message=f"Waiting: {position} in line before this one starts.")

    def _start(self, job: TrainingJob) -> None:
        job.start()
        watcher = threading.Thread(target=self._after, args=(job,), daemon=True, name=f"watch-{job.id}")
        watcher.start()

    def _after(self, job: TrainingJob) -> None:
        job.wait()
        self._dispatch()

    # -- reading ---------------------------------------------------------------------------------
    def get(self, job_id: str) -> TrainingJob | None:
        return self._jobs.get(job_id)

    def active_for(self, owner: str | None) -> TrainingJob | None:
        """The owner's newest job that is queued or running (what a refreshed page re-attaches to)."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.owner == owner and not j.snapshot().done]
        return jobs[-1] if jobs else None

    def latest_for(self, owner: str | None) -> TrainingJob | None:
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.owner == owner]
        return jobs[-1] if jobs else None

    def stop(self, job_id: str, owner: str | None = None) -> None:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobError(f"there is no job '{job_id}'.")
        if owner is not None and job.owner != owner:
            raise JobError("this job belongs to someone else.")
        job.stop()
        with self._lock:
            if job in self._queue:
                self._queue.remove(job)
                job.mark_stopped_before_start("Removed from the queue.")
                self._dispatch()

    def shutdown(self, timeout: float = 30.0) -> None:
        with self._lock:
            jobs = list(self._running) + list(self._queue)
        for job in jobs:
            job.stop()
        for job in jobs:
            job.wait(timeout)
