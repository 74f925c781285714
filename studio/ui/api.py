"""Named HTTP endpoints for scripts and `gradio_client`, over the same actions the UI uses.

    client.predict("reviews.csv", api_name="/load_data")        -> data summary
    client.predict("train: {epochs: 1}", api_name="/start")     -> status of the new job
    client.predict(api_name="/status")                          -> state, step, loss points, ...
    client.predict(api_name="/stop")                            -> status after asking it to stop
    client.predict("Great value!", api_name="/predict")         -> base and tuned probabilities
    client.predict(run_id, "What is your name?", api_name="/generate") -> {"base": ..., "tuned": ...}
    client.predict(api_name="/runs")                            -> the runs you can see

Every endpoint takes an `owner` token (default "api"): the same token a browser keeps in its
local storage, so a script can share a session with a page or keep its own. In hosted mode the
token is what separates people, and data sources are limited to samples and the owner's uploads.
Problems the caller can fix come back as `gradio.Error` with the studio's readable message.
"""

from __future__ import annotations

import functools

import gradio as gr

from studio.ui import actions, gen_actions
from studio.ui.monitor_view import run_label
from studio.ui.session import AppContext

DEFAULT_OWNER = "api"


def _readable(fn):
    """Turn a StudioError into gr.Error (sent to the client as its message, no traceback)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from studio.errors import StudioError
        try:
            return fn(*args, **kwargs)
        except StudioError as exc:
            raise gr.Error(exc.user_message, print_exception=False) from None
    return wrapper


def register(ctx: AppContext) -> None:
    """Add the endpoints to the Blocks being built (call inside `with gr.Blocks()`)."""

    @_readable
    def load_data(source: str, text_column: str = "", label_column: str = "", validation_split: float = 0.2,
                  max_rows: int = 0, owner: str = DEFAULT_OWNER, task: str = "", model: str = "",
                  format: str = "auto", prompt_column: str = "", response_column: str = "") -> dict:
        """Read and check a table: a bundled sample name ("reviews.csv"), an uploaded file or (local
        mode) a path. Returns the rows per split, labels, columns, warnings and a short preview.
        `model` (optional) sets this owner's base model, and with it the task; `task` "generate"
        reads prompts and answers (format auto|prompt_response|alpaca|chat, prompt_column and
        response_column optional) and returns the format, token statistics and rendered examples."""
        sess = ctx.session(owner)
        if model.strip():
            sess.use(model.strip(), ctx.skeletons.info(model.strip()).task)
        if task.strip() not in ("", "classify", "generate"):
            raise actions.ConfigError(f"must be classify or generate, not {task!r}.", where="task")
        sess.use(task=task.strip() or None)
        if sess.task == "generate":
            sess = gen_actions.load(ctx, owner, source, format=format, prompt_column=prompt_column or None,
                                    response_column=response_column or None,
                                    validation_split=validation_split, max_rows=max_rows or None)
            return gen_actions.summary_dict(sess)
        sess = actions.load_data(ctx, owner, source, text_column=text_column or None,
                                 label_column=label_column or None, validation_split=validation_split,
                                 max_rows=max_rows or None)
        stats, frame = sess.stats, sess.frame
        # (no key may be called "path": gradio_client would take the dict for a file to download)
        return {"data_path": sess.data_spec.path, "columns": [str(c) for c in frame.columns],
                "text_column": sess.data.text_column, "label_column": sess.data.label_column,
                "labels": sess.data.labels.names, "rows_train": stats.rows_train,
                "rows_validation": stats.rows_validation, "label_counts": stats.label_counts,
                "truncated_share": stats.truncated_share, "warnings": stats.warnings,
                "preview": frame.head(5).astype(str).values.tolist()}

    @_readable
    def start(config_yaml: str = "", owner: str = DEFAULT_OWNER) -> dict:
        """Start (or queue) a training. `config_yaml` is the YAML "Export config" writes; parts may be
        left out: the model and data then come from this owner's session (see load_data)."""
        config = actions.config_from_yaml(ctx, owner, config_yaml)
        job = actions.start(ctx, owner, config)
        return actions.status(ctx, owner, job.id)

    @_readable
    def status(job_id: str = "", owner: str = DEFAULT_OWNER) -> dict:
        """State, step, epoch, elapsed time, ETA, queue position, loss and eval points of a job
        (default: the one this owner follows)."""
        return actions.status(ctx, owner, job_id or None)

    @_readable
    def stop(job_id: str = "", owner: str = DEFAULT_OWNER) -> dict:
        """Ask a job to stop after its current step (default: the one this owner follows)."""
        job = actions.stop(ctx, owner, job_id or None)
        return actions.status(ctx, owner, job.id)

    @_readable
    def predict(text: str, run_id: str = "", owner: str = DEFAULT_OWNER) -> dict:
        """Base and fine-tuned prediction for one text (default run: the newest finished one)."""
        return actions.predict(ctx, owner, text, run_id or None)

    @_readable
    def generate(run_id: str = "", prompt: str = "", max_new_tokens: int = 64, temperature: float = 0.0,
                 top_p: float = 1.0, owner: str = DEFAULT_OWNER) -> dict:
        """Base and fine-tuned answers to one prompt from a text-generation run (default: the newest
        finished one). Greedy at temperature 0. Returns {"run_id", "base", "tuned"}."""
        settings = gen_actions.settings_from(max_new_tokens, temperature, top_p)
        return gen_actions.generate(ctx, owner, run_id or None, prompt, settings)

    @_readable
    def runs(owner: str = DEFAULT_OWNER) -> list:
        """The runs this owner can see, newest first."""
        out = []
        for run in ctx.visible_runs(owner):
            s = run.status()
            out.append({"run_id": run.id, "label": run_label(run), "state": s.get("state"), "task": s.get("task"),
                        "name": s.get("name"), "model": s.get("model"), "has_model": run.has_model()})
        return out

    for fn in (load_data, start, status, stop, predict, generate, runs):
        gr.api(fn, api_name=fn.__name__, concurrency_limit=2 if fn in (predict, generate) else None)
