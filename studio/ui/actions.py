"""What the buttons do, as plain functions shared by the UI handlers and the HTTP API.

Each action takes the `AppContext`, the caller's owner token and plain values, calls the engine
and returns engine objects or plain dicts. They raise `StudioError` for anything the user can
fix; the tab handlers turn that into a warning next to the control, the API into `gr.Error`.
No gradio here, so the same code path is exercised by the browser, gradio_client and unit tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from pathlib import Path

from studio.config import DataSpec, RunConfig, TrainSpec
from studio.errors import ConfigError, DataError, JobError
from studio.ui.session import SAMPLES_DIR, AppContext, Session


# -- data ----------------------------------------------------------------------------------------
def save_upload(ctx: AppContext, owner: str, temp_path: str, original_name: str | None = None) -> Path:
    """Copy a file gradio received into the owner's uploads folder (runs re-read it later)."""
    from studio.data import safe_upload_name
    name = safe_upload_name(original_name or Path(temp_path).name)
    target = ctx.uploads_dir(owner) / name
    shutil.copyfile(temp_path, target)
    return target


def spec_path(path: Path) -> str:
    """How a data path is written into a config: bundled samples relative (portable YAML)."""
    try:
        return str(Path("assets/samples") / path.resolve().relative_to(SAMPLES_DIR.resolve()))
    except ValueError:
        return str(path)


@contextlib.contextmanager
def checking(sess: Session):
    """Around reading or checking data: until the block succeeds the session has no usable data,
    and when it fails the session keeps the reason (`data_problem`). So the Train tab, Start and
    the API never use a table the Data tab has just refused, nor an older one it no longer shows."""
    sess.data = sess.stats = sess.gen = None
    try:
        yield
    except Exception as exc:
        sess.data_problem = getattr(exc, "user_message", None) or f"{type(exc).__name__}: {exc}"
        raise
    sess.data_problem = None


def read_source(ctx: AppContext, owner: str, source: str):
    """Read a table for the preview and column pickers and remember it in the session (the
    columns are detected, and the split made, by `prepare_data`). Returns the DataFrame.
    A file that cannot be read leaves the session with no table at all (and the reason)."""
    from studio.data import read_table
    sess = ctx.session(owner)
    with checking(sess):
        sess.frame = sess.data_spec = None          # the old table is replaced, whatever happens
        path = ctx.data_path(owner, source)
        sess.frame = read_table(path)
        sess.data_spec = DataSpec(path=spec_path(path))
    return sess.frame


def prepare_data(ctx: AppContext, owner: str, *, text_column: str | None = None,
                 label_column: str | None = None, validation_source: str | None = None,
                 validation_split: float = 0.2, max_rows: int | None = None) -> Session:
    """Split and check the session's table with these settings; computes the statistics."""
    from studio.data import compute_stats, load_classification
    sess = ctx.session(owner)
    if sess.data_spec is None:
        raise JobError("no data is loaded yet.", hint="Upload a file or pick a sample first.")
    with checking(sess):
        val_path = spec_path(ctx.data_path(owner, validation_source)) if validation_source else None
        spec = DataSpec(path=sess.data_spec.path, validation_path=val_path, text_column=text_column or None,
                        label_column=label_column or None, validation_split=float(validation_split),
                        max_rows=int(max_rows) if max_rows else None)
        data = load_classification(spec, seed=TrainSpec().seed)
        # Pin the detected columns, so the run trains on exactly what the user saw here.
        spec = dataclasses.replace(spec, text_column=data.text_column, label_column=data.label_column)
        stats = compute_stats(data, count_tokens=token_counter(ctx, sess.model), max_length=sess.max_length)
        sess.data_spec, sess.data, sess.stats = spec, data, stats
    return sess


def load_data(ctx: AppContext, owner: str, source: str, **settings) -> Session:
    """read_source + prepare_data in one go (the API's `load_data`)."""
    read_source(ctx, owner, source)
    return prepare_data(ctx, owner, **settings)


def token_counter(ctx: AppContext, model: str):
    """A function texts -> token counts using the model's tokenizer, or None (word counts)."""
    def load():
        from transformers.utils import logging as hf_logging
        from studio import catalog
        from studio.tasks.classify import load_tokenizer
        hf_logging.set_verbosity_error()   # "sequence longer than max" is what we measure
        return load_tokenizer(catalog.resolve(model).load_target)

    try:
        tokenizer = ctx.tokenizer(model, load)
    except Exception:
        return None
    return lambda texts: [len(ids) for ids in tokenizer(list(texts), truncation=False)["input_ids"]]


# -- configs -------------------------------------------------------------------------------------
def default_data(task: str) -> DataSpec:
    """The bundled sample a run uses when no data was loaded: reviews, or the identity chats."""
    return DataSpec(path="assets/samples/identity.jsonl") if task == "generate" else DataSpec()


def data_problem(sess: Session) -> str | None:
    """Why the session's data cannot be trained on (None: it can). Nothing chosen is fine: the
    run then uses the bundled sample."""
    if sess.data_problem:
        return sess.data_problem
    if sess.data_spec is not None and not sess.has_data:
        return f"{Path(sess.data_spec.path).name} has not been checked yet."
    return None


def training_data(sess: Session, task: str | None = None) -> DataSpec:
    """The data a run from this session trains on: what the Data tab checked, else the bundled
    sample of `task` (default: the session's). Refused while the Data tab shows a problem."""
    problem = data_problem(sess)
    if problem:
        raise DataError(f"the data cannot be used yet: {problem}",
                        hint="Fix it on the Data tab, then start again.")
    return sess.data_spec or default_data(task or sess.task)


def coerce_train(values: dict) -> TrainSpec:
    """Build a TrainSpec from UI values: sliders send floats, so each value is cast to its field's
    declared type. Unknown keys are ignored, missing or empty ones keep their defaults."""
    fields = {f.name: f for f in dataclasses.fields(TrainSpec)}
    casts = {"int": lambda v: int(round(float(v))), "float": float, "bool": bool}
    clean = {}
    for name, value in values.items():
        if name not in fields or value is None or value == "":
            continue
        cast = casts.get(str(fields[name].type))
        try:
            clean[name] = cast(value) if cast else value
        except (TypeError, ValueError):
            raise ConfigError(f"must be a number, not {value!r}.", where=f"train.{name}") from None
    return TrainSpec(**clean)


def build_config(ctx: AppContext, owner: str, train: dict, name: str | None = None) -> RunConfig:
    """The run the Train tab describes: session model and data, these training settings."""
    sess = ctx.session(owner)
    data = training_data(sess)
    spec = coerce_train(train)
    info = ctx.skeletons.cached_info(sess.model)
    if spec.method == "freeze" and info is not None and spec.freeze_depth > info.blocks:
        raise ConfigError(f"must be at most {info.blocks} for this model (it has {info.blocks} blocks), "
                          f"not {spec.freeze_depth}.", where="train.freeze_depth")
    run_name = (name or "").strip() or Path(data.path).stem
    return RunConfig(task=sess.task, model=sess.model, name=run_name[:40], data=data, train=spec)


def config_from_yaml(ctx: AppContext, owner: str, text: str) -> RunConfig:
    """A config from (possibly partial) YAML; missing model and data come from the session."""
    import yaml
    sess = ctx.session(owner)
    try:
        raw = yaml.safe_load(text or "") or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"is not valid YAML ({exc}).", where="config") from None
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping of settings.", where="config")
    raw.setdefault("task", sess.task)
    raw.setdefault("model", sess.model)
    if "data" not in raw:
        raw["data"] = dataclasses.asdict(training_data(sess, raw["task"]))
    if not raw.get("name"):          # runs are listed by name: default to the data file's
        data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
        raw["name"] = Path(str(data.get("path") or DataSpec().path)).stem
    return RunConfig.from_dict(raw)


# -- jobs ----------------------------------------------------------------------------------------
def start(ctx: AppContext, owner: str, config: RunConfig):
    """Queue a training for this owner; the Monitor follows it. Double submits return one job."""
    sess = ctx.session(owner)
    ctx.data_path(owner, config.data.path)                 # hosted: only samples and own uploads
    if config.data.validation_path:
        ctx.data_path(owner, config.data.validation_path)
    job = ctx.manager.submit(config, owner=owner)
    sess.watching = job.id
    return job


def stop(ctx: AppContext, owner: str, job_id: str | None = None):
    sess = ctx.session(owner)
    job_id = job_id or sess.watching or getattr(ctx.active_job(owner), "id", None)
    if not job_id:
        raise JobError("there is no training to stop.")
    if ctx.manager.get(job_id) is None:
        raise JobError(f"run {job_id} is not training in this studio, so there is nothing to stop.")
    ctx.manager.stop(job_id, owner=ctx.job_owner(owner))
    return ctx.manager.get(job_id)


def own_job(ctx: AppContext, owner: str, job_id: str):
    """The live job with this id, or None; in hosted mode only the owner's own."""
    job = ctx.manager.get(job_id)
    if job is not None and ctx.hosted and job.owner != owner:
        raise JobError(f"there is no run '{job_id}' for you.")
    return job


def watched(ctx: AppContext, owner: str, job_id: str | None = None):
    """(job or None, run or None) the owner's Monitor shows: an explicit id, what the session
    follows, or the owner's active job (a refreshed page re-attaches here)."""
    sess = ctx.session(owner)
    if job_id:
        job = own_job(ctx, owner, job_id)
        return job, job.run if job else ctx.get_run(owner, job_id)
    if sess.watching:
        job = own_job(ctx, owner, sess.watching)
        if job is not None and (not job.snapshot().done or ctx.active_job(owner) is None):
            return job, job.run
    job = ctx.active_job(owner)
    if job is not None:
        sess.watching = job.id
        return job, job.run
    if sess.watching:
        try:
            return None, ctx.get_run(owner, sess.watching)
        except JobError:
            sess.watching = None
    return None, None


def status(ctx: AppContext, owner: str, job_id: str | None = None) -> dict:
    """A JSON-able summary of a job or run: state, progress, the curves' points, final scores."""
    from studio.ui.monitor_view import snapshot_from_run
    job, run = watched(ctx, owner, job_id)
    if run is None:
        return {"job_id": None, "state": "none", "message": "No training yet."}
    snap = job.snapshot() if job is not None else snapshot_from_run(run)
    losses = [[r["step"], r["loss"]] for r in snap.records if r.get("loss") is not None]
    evals = [{k: v for k, v in r.items() if k == "step" or k.startswith("eval_")}
             for r in snap.records if r.get("eval_loss") is not None]
    return {"job_id": run.id, "name": run.status().get("name"), "state": snap.state, "step": snap.step,
            "max_steps": snap.max_steps, "epoch": snap.epoch, "elapsed": round(snap.elapsed, 2),
            "eta_seconds": snap.eta_seconds, "queue_position": snap.queue_position,
            "message": snap.message, "error": snap.error, "version": snap.version, "losses": losses,
            "evals": evals, "final": run.final_metrics(), "has_model": run.has_model()}


# -- compare -------------------------------------------------------------------------------------
def finished_runs(ctx: AppContext, owner: str) -> list:
    """Visible runs with a complete saved model, newest first."""
    return [r for r in ctx.visible_runs(owner) if r.has_model()]


def pick_run(ctx: AppContext, owner: str, run_id: str | None):
    if run_id:
        return ctx.get_run(owner, run_id)
    runs = finished_runs(ctx, owner)
    if not runs:
        raise JobError("there is no finished run to compare yet.", hint="Train a model first.")
    return runs[0]


def predict(ctx: AppContext, owner: str, text: str, run_id: str | None = None) -> dict:
    """Base and tuned prediction for one text (the Compare tab's free-text box)."""
    from studio.compare import load_pair
    if not (text or "").strip():
        raise JobError("there is no text to classify.", hint="Type a sentence first.")
    run = pick_run(ctx, owner, run_id)
    if run.config().task != "classify":
        raise JobError(f"run {run.id} is not a classification run.")
    return {"run_id": run.id, **load_pair(run).predict_one(text[:5000])}


def random_example(ctx: AppContext, owner: str, run_id: str | None, seed: int | None = None) -> tuple[str, str]:
    """(text, true label) of a random validation example of the run (same split as training)."""
    import random
    from studio.data import load_classification
    run = pick_run(ctx, owner, run_id)
    config = run.config()
    data = load_classification(config.data, seed=config.train.seed)
    row = data.validation.iloc[random.Random(seed).randrange(len(data.validation))]
    return str(row["text"]), data.labels.names[int(row["label"])]


def comparison(ctx: AppContext, owner: str, run_id: str | None = None):
    """Base vs tuned on the run's validation split, cached per run (it is the run's, not a user's)."""
    from studio.compare import validation_comparison
    run = pick_run(ctx, owner, run_id)
    with ctx._lock:
        cached = ctx.comparisons.get(run.id)
    if cached is None:
        cached = validation_comparison(run)
        with ctx._lock:
            ctx.comparisons[run.id] = cached
            while len(ctx.comparisons) > 4:
                ctx.comparisons.popitem(last=False)
    return run, cached
