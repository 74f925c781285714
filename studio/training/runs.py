"""Runs on disk: every run is a folder that survives the process.

    runs/<run-id>/
        config.yaml      the RunConfig (the same YAML `studio train` takes)
        status.json      state, times, error, pid; rewritten atomically on every change
        metrics.jsonl    one progress record per line, appended and flushed as they happen
        metrics.json     final eval metrics and wall time (written at the end)
        checkpoints/     transformers checkpoints (checkpoint-<step>/), each complete before it counts
        model/           the final model; `model/COMPLETE` is written last

Every whole-file write goes to a temporary file in the same folder and is renamed into place, so a
crash leaves either the old file or the new one, never half of one. A run whose status says
"running" but whose owning process is gone is reported as "interrupted" and can be resumed.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from studio.errors import JobError

ACTIVE_STATES = ("queued", "running", "stopping")


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str))


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_run_id(name: str | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in (name or "run"))[:32].strip("-") or "run"
    return f"{stamp}-{slug}-{secrets.token_hex(2)}"


@dataclass
class Run:
    """One run folder. Cheap to construct; reads from disk on demand."""

    dir: Path

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def config_path(self) -> Path:
        return self.dir / "config.yaml"

    @property
    def model_dir(self) -> Path:
        return self.dir / "model"

    @property
    def checkpoints_dir(self) -> Path:
        return self.dir / "checkpoints"

    def status(self) -> dict:
        try:
            status = json.loads((self.dir / "status.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"state": "broken", "run_id": self.id}
        if status.get("state") in ACTIVE_STATES and not self._owned_by_live_process(status):
            status = {**status, "state": "interrupted"}
        return status

    def _owned_by_live_process(self, status: dict) -> bool:
        from studio.training.job import live_run_ids  # runs owned by jobs of this process
        if status.get("pid") == os.getpid():
            return self.id in live_run_ids()
        return _pid_alive(status.get("pid"))

    def write_status(self, state: str, **extra) -> dict:
        previous = {}
        try:
            previous = json.loads((self.dir / "status.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
        status = {**previous, **extra, "state": state, "run_id": self.id, "pid": os.getpid(),
                  "updated_at": time.time()}
        atomic_write_json(self.dir / "status.json", status)
        return status

    def append_metric(self, record: dict) -> None:
        with open(self.dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=float) + "\n")
            fh.flush()

    def metrics_log(self) -> list[dict]:
        """All complete lines of metrics.jsonl (a torn last line from a crash is skipped)."""
        path = self.dir / "metrics.jsonl"
        if not path.exists():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def final_metrics(self) -> dict | None:
        try:
            return json.loads((self.dir / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def config(self):
        from studio.config import RunConfig
        return RunConfig.load(self.config_path)

    def has_model(self) -> bool:
        return (self.model_dir / "COMPLETE").exists()

    def model_meta(self) -> dict:
        """The finished model's studio.json (task, labels, base model, ...); a clear error if
        the run has no finished model yet."""
        if not self.has_model():
            raise JobError(f"run {self.id} has no finished model to compare.",
                           hint="Wait for it to finish, or pick another run.")
        return json.loads((self.model_dir / "studio.json").read_text(encoding="utf-8"))

    def last_checkpoint(self) -> Path | None:
        """The newest checkpoint that finished saving (transformers writes trainer_state.json last)."""
        if not self.checkpoints_dir.is_dir():
            return None
        done = [p for p in self.checkpoints_dir.glob("checkpoint-*")
                if (p / "trainer_state.json").is_file() and p.name.split("-")[-1].isdigit()]
        return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


class RunStore:
    """All runs under one folder, optionally split by owner (hosted mode)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def create(self, config, owner: str | None = None) -> Run:
        run_dir = self.root / new_run_id(config.name)
        run_dir.mkdir(parents=True)
        run = Run(run_dir)
        config.save(run.config_path)
        run.write_status("queued", owner=owner, created_at=time.time(), name=config.name,
                         task=config.task, model=config.model)
        return run

    def get(self, run_id: str) -> Run:
        if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
            raise JobError(f"'{run_id}' is not a run id.")
        run = Run(self.root / run_id)
        if not (run.dir / "status.json").exists():
            raise JobError(f"there is no run '{run_id}' in {self.root}.")
        return run

    def list(self, owner: str | None = None) -> list[Run]:
        """Runs newest first; with an owner, only that owner's runs."""
        runs = [Run(p) for p in self.root.iterdir() if (p / "status.json").exists()]
        if owner is not None:
            runs = [r for r in runs if r.status().get("owner") == owner]
        return sorted(runs, key=lambda r: r.id, reverse=True)
