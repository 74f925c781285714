"""Per-app and per-owner state: the one place the UI keeps anything between events.

`AppContext` is created by `build_app()` (never at import), so two apps in one process share
nothing. It holds the run store, the job manager, the weightless model skeletons and a registry
of `Session`s keyed by owner token. The owner token lives in the browser (`gr.BrowserState`):
a refresh, or closing and reopening the tab, brings the same token back, and with it the same
session, running job and run history. Sessions idle for longer than `SESSION_TTL` are dropped;
jobs never depend on them (they belong to the manager and write everything to disk).

Nothing here imports gradio; handlers in the tab modules translate.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from studio.errors import DataError, JobError
from studio.ui.layers import SkeletonCache

log = logging.getLogger(__name__)
SESSION_TTL = 6 * 3600      # seconds without any event before an owner's session is forgotten
SAMPLES_DIR = Path(__file__).resolve().parents[2] / "assets" / "samples"


@dataclass
class Session:
    """What one owner has chosen so far. Data objects are rebuilt from files, never pickled."""
    owner: str
    task: str = "classify"
    model: str = "minilm"
    max_length: int = 128
    data_spec: object | None = None      # studio.config.DataSpec of the loaded data
    frame: object | None = None          # the raw table (pandas DataFrame) for the preview
    data: object | None = None           # studio.data.ClassificationData
    stats: object | None = None          # studio.data.DataStats
    gen: dict | None = None              # generation data: studio.gendata.summarize(...) result
    # Why the file last chosen on the Data tab cannot be used (read or check failed). While set,
    # the Train tab says so and Start refuses, rather than training on older or bundled data.
    data_problem: str | None = None
    watching: str | None = None          # job / run id the Monitor follows
    listed: tuple | None = None          # (run id, state) the Monitor's run list last showed for it
    # The Train tab as last set (values, preset, run name, task), put back after a page refresh.
    train_form: dict | None = None
    last_seen: float = field(default_factory=time.time)

    @property
    def num_labels(self) -> int:
        return len(self.data.labels.names) if self.data is not None else 2

    @property
    def has_data(self) -> bool:
        """Data is loaded and checked for the session's task."""
        return (self.gen if self.task == "generate" else self.data) is not None

    def clear_data(self) -> None:
        """Forget the loaded data (a new task needs data of another shape) and any problem with it."""
        self.data_spec = self.frame = self.data = self.stats = self.gen = self.data_problem = None

    def use(self, model: str | None = None, task: str | None = None) -> None:
        """Switch to `model` and/or `task`; data loaded for the other task is forgotten."""
        if task and task != self.task:
            self.clear_data()
            self.task = task
        if model:
            self.model = model


class AppContext:
    """Everything one running studio shares. Configure before the first event, then use."""

    def __init__(self, *, workspace: str | Path | None = None, hosted: bool = False,
                 max_concurrent: int = 1) -> None:
        self.hosted = hosted
        self.max_concurrent = max_concurrent
        self._workspace = Path(workspace) if workspace else None
        self._lock = threading.RLock()
        self._sessions: dict[str, Session] = {}
        self._store = None
        self._manager = None
        self.skeletons = SkeletonCache()
        self.comparisons: OrderedDict[str, object] = OrderedDict()   # run id -> DatasetComparison
        self.tokenizers: OrderedDict[str, object] = OrderedDict()    # model -> tokenizer (shared)
        self.warmed = threading.Event()
        self._pages: OrderedDict[str, str] = OrderedDict()   # gradio session hash -> owner token

    def configure(self, *, workspace: str | Path | None = None, hosted: bool | None = None,
                  max_concurrent: int | None = None) -> None:
        """Command-line settings, applied before the app serves anyone."""
        if self._manager is not None:
            raise RuntimeError("configure() must run before the first training job")
        if workspace:
            self._workspace = Path(workspace)
        if hosted is not None:
            self.hosted = hosted
        if max_concurrent:
            self.max_concurrent = max_concurrent

    def tokenizer(self, key: str, load, keep: int = 4):
        """The tokenizer cached under `key`, built by `load()` the first time; the `keep` most
        recently added are kept (tokenizers are read-only, so every owner shares them)."""
        tokenizer = self.tokenizers.get(key)
        if tokenizer is None:
            tokenizer = load()
            with self._lock:
                self.tokenizers[key] = tokenizer
                while len(self.tokenizers) > keep:
                    self.tokenizers.popitem(last=False)
        return tokenizer

    # -- places -----------------------------------------------------------------------------------
    @property
    def workspace(self) -> Path:
        if self._workspace is None:
            from studio.workspace import workspace_root
            self._workspace = workspace_root()
        self._workspace.mkdir(parents=True, exist_ok=True)
        # The engine finds models/ and runs/ through this variable; keep them in agreement.
        os.environ["STUDIO_WORKSPACE"] = str(self._workspace.resolve())
        return self._workspace.resolve()

    @property
    def store(self):
        with self._lock:
            if self._store is None:
                from studio.training.runs import RunStore
                self._store = RunStore(self.workspace / "runs")
            return self._store

    @property
    def manager(self):
        with self._lock:
            if self._manager is None:
                from studio.training.manager import JobManager
                self._manager = JobManager(self.store, max_concurrent=self.max_concurrent)
            return self._manager

    def browser_secret(self) -> str:
        """The key that encrypts owner tokens in the browser; kept in the workspace so tokens
        (and with them each person's runs) survive a restart of the studio."""
        path = self.workspace / ".browser_secret"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(24), encoding="utf-8")
            path.chmod(0o600)
        return path.read_text(encoding="utf-8").strip()

    def uploads_dir(self, owner: str) -> Path:
        """Where an owner's uploaded files are kept (runs re-read them to compare later)."""
        digest = hashlib.sha256(owner.encode()).hexdigest()[:16]
        folder = self.workspace / "uploads" / digest
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- sessions ---------------------------------------------------------------------------------
    @staticmethod
    def new_owner() -> str:
        return secrets.token_urlsafe(18)

    @staticmethod
    def valid_token(token) -> bool:
        return isinstance(token, str) and 8 <= len(token) <= 128

    def remember_page(self, page: str | None, owner: str) -> None:
        """The page-load event minted or brought back `owner` for this page (gradio session)."""
        if page:
            with self._lock:
                self._pages[page] = owner
                while len(self._pages) > 10_000:
                    self._pages.popitem(last=False)

    def owner_for(self, token, page: str | None, *, wait: float = 10.0) -> str:
        """The owner behind an event. A click that beats the page-load event arrives without a
        token; it waits (briefly) for the load event to mint this page's token, then uses it."""
        if self.valid_token(token):
            return token
        deadline = time.monotonic() + wait
        while True:
            owner = self._pages.get(page) if page else None
            if owner:
                return owner
            if time.monotonic() >= deadline:
                raise JobError("this page has no owner token yet.", hint="Reload the page.")
            time.sleep(0.05)

    def session(self, owner: str | None) -> Session:
        """The owner's session, created on first use. Also forgets sessions idle past the TTL."""
        if not owner or not isinstance(owner, str) or len(owner) > 128:
            raise JobError("this page has no owner token yet.", hint="Reload the page.")
        now = time.time()
        with self._lock:
            for key in [k for k, s in self._sessions.items() if now - s.last_seen > SESSION_TTL]:
                del self._sessions[key]
            sess = self._sessions.get(owner)
            if sess is None:
                sess = self._sessions[owner] = Session(owner)
            sess.last_seen = now
            return sess

    def peek(self, owner: str | None) -> Session:
        """The owner's session for display only; a blank default one (not stored) when the page
        has no token yet (an event that fires before the page-load event has minted it)."""
        with self._lock:
            sess = self._sessions.get(owner) if isinstance(owner, str) else None
        return sess or Session("-")

    def session_count(self) -> int:
        return len(self._sessions)

    # -- ownership rules --------------------------------------------------------------------------
    def visible_runs(self, owner: str) -> list:
        """Hosted: the owner's runs. Local: every run in the workspace (one user owns them all)."""
        if self.hosted and not owner:
            return []          # no token yet: nothing, never everybody's
        return self.store.list(owner=owner if self.hosted else None)

    def job_owner(self, owner: str) -> str | None:
        """Whose permission `stop` checks: the owner when hosted, nobody's locally."""
        return owner if self.hosted else None

    def active_job(self, owner: str):
        """The job a page should follow: one of the owner's queued or running jobs (a running
        one first: it has a curve to show), else, in local mode only, any active job of this
        studio, so a second browser window shows the training that is going on."""
        mine, others = [], []
        for run in self.store.list():
            job = self.manager.get(run.id)
            if job is not None and not job.snapshot().done:
                (mine if job.owner == owner else others).append(job)
        pool = mine or ([] if self.hosted else others)
        running = [j for j in pool if j.snapshot().state != "queued"]
        return (running or pool or [None])[0]

    def get_run(self, owner: str, run_id: str):
        run = self.store.get(run_id)
        if self.hosted and run.status().get("owner") != owner:
            raise JobError(f"there is no run '{run_id}' for you.")
        return run

    def data_path(self, owner: str, source: str) -> Path:
        """Check a data file reference: a bundled sample name, an upload of this owner or
        (local mode only) any readable file. Hosted users cannot read the server's disk."""
        source = (source or "").strip()
        if not source:
            raise DataError("no data file was given.", hint="Upload a file or pick a sample.")
        sample = SAMPLES_DIR / Path(source).name
        if Path(source).name == source and sample.is_file():
            return sample
        path = Path(source).expanduser()
        if not path.is_absolute():
            from studio.data import resolve_path
            path = resolve_path(path)
        path = path.resolve()
        allowed = [SAMPLES_DIR.resolve(), self.uploads_dir(owner)]
        if self.hosted and not any(path == r or r in path.parents for r in allowed):
            raise DataError(f"'{Path(source).name}' is not one of your uploads or a bundled sample.",
                            hint="Upload the file first.")
        if not path.is_file():
            raise DataError(f"there is no file '{source}'.", hint="Upload the file or pick a sample.")
        return path

    # -- background warm-up ------------------------------------------------------------------------
    def warm_up(self, model: str = "minilm") -> threading.Thread:
        """Import torch/transformers and build the default model's skeleton in the background,
        after the page is up, so the first click does not wait for them."""
        def work():
            started = time.time()
            try:
                import studio.compare  # noqa: F401  (imports torch, transformers, sklearn)
                import studio.training.trainer  # noqa: F401
                self.skeletons.info(model)
            except Exception as exc:  # warm-up is an optimisation; the handlers retry and report
                log.warning("warm-up skipped: %s", exc)
            finally:
                log.info("warm-up took %.1f s", time.time() - started)
                self.warmed.set()
        thread = threading.Thread(target=work, name="studio-warm-up", daemon=True)
        thread.start()
        return thread
