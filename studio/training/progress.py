"""An append-only progress log that the trainer thread writes and anyone may read.

The trainer thread appends records (dicts: step, epoch, loss, learning_rate, eval_loss, ...);
readers take a `Snapshot`, an immutable copy with a version number. A poller that sees the same
version as last time knows nothing changed and can skip redrawing. Nothing is ever removed or
edited, so a reader can never see a half-updated record.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Snapshot:
    version: int
    records: tuple[dict, ...]
    state: str                 # queued | running | stopping | completed | stopped | failed | interrupted
    step: int = 0
    max_steps: int = 0
    epoch: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    message: str = ""
    queue_position: int = 0
    estimate_seconds: float | None = None

    @property
    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.finished_at or time.time()) - self.started_at

    @property
    def eta_seconds(self) -> float | None:
        """Remaining time at the recent pace (the last few logged steps), so a fast cached
        second epoch is not judged by a slower first one."""
        if not self.step or not self.max_steps or self.state not in ("running", "stopping"):
            return None
        timed = [(r["step"], r["time"]) for r in self.records if r.get("loss") is not None and "time" in r]
        if len(timed) >= 3:
            (s0, t0), (s1, t1) = timed[-3], timed[-1]
            if s1 > s0:
                return (t1 - t0) / (s1 - s0) * (self.max_steps - self.step)
        return self.elapsed / self.step * (self.max_steps - self.step)

    @property
    def done(self) -> bool:
        return self.state in ("completed", "stopped", "failed", "interrupted")

    def series(self, key: str) -> list[tuple[int, float]]:
        return [(r["step"], r[key]) for r in self.records if r.get(key) is not None]


@dataclass
class ProgressLog:
    """Lock-guarded, append-only; every change bumps `version`."""

    records: list[dict] = field(default_factory=list)
    state: str = "queued"
    step: int = 0
    max_steps: int = 0
    epoch: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    message: str = ""
    queue_position: int = 0
    estimate_seconds: float | None = None
    version: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def append(self, record: dict) -> None:
        with self._lock:
            self.records.append(dict(record))
            self.step = max(self.step, int(record.get("step", 0)))
            self.epoch = max(self.epoch, float(record.get("epoch") or 0.0))
            self.version += 1

    def update(self, **fields) -> None:
        """Change status fields (state, step, max_steps, error, message, ...)."""
        with self._lock:
            for key, value in fields.items():
                if key.startswith("_") or key in ("records", "version"):
                    raise KeyError(key)
                setattr(self, key, value)
            self.version += 1

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(self.version, tuple(self.records), self.state, self.step, self.max_steps,
                            self.epoch, self.started_at, self.finished_at, self.error, self.message,
                            self.queue_position, self.estimate_seconds)
