"""What the buttons do for the text-generation task, shared by the tabs and the HTTP API.

Like `actions.py`: plain functions over the `AppContext`, an owner token and plain values, raising
`StudioError` for anything the user can fix; no gradio. The engine pieces are
`studio.gendata.summarize` (what the Data tab shows), `studio.generation.load_pair` (base and
tuned answers, streamed), `batch_compare` and `forgetting_check`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator

from studio.config import DataSpec, GenerateSpec, TrainSpec
from studio.errors import JobError
from studio.ui import actions
from studio.ui.session import AppContext, Session

FORMAT_NAMES = {"prompt_response": "prompt / response columns", "alpaca": "alpaca (instruction, input, output)",
                "chat": "chat (a list of messages per line)"}


def tokenizer_for(ctx: AppContext, model: str):
    """The model's generation tokenizer (chat template and pad token set), shared per model."""
    def load():
        from studio import catalog
        from studio.tasks.generate import load_tokenizer
        return load_tokenizer(catalog.resolve(model).load_target)

    return ctx.tokenizer(f"generate:{model}", load)


def prepare(ctx: AppContext, owner: str, *, format: str = "auto", prompt_column: str | None = None,
            response_column: str | None = None, validation_source: str | None = None,
            validation_split: float = 0.2, max_rows: int | None = None) -> Session:
    """Read, check and split the session's generation file with these settings; render a preview
    through the session model's chat template. Stores the `summarize` dict in `sess.gen`."""
    from studio.gendata import summarize
    sess = ctx.session(owner)
    if sess.data_spec is None:
        raise JobError("no data is loaded yet.", hint="Upload a file or pick a sample first.")
    with actions.checking(sess):          # a failed check leaves no usable data, and says why
        val_path = actions.spec_path(ctx.data_path(owner, validation_source)) if validation_source else None
        spec = DataSpec(path=sess.data_spec.path, validation_path=val_path, format=format or "auto",
                        prompt_column=prompt_column or None, response_column=response_column or None,
                        validation_split=float(validation_split), max_rows=int(max_rows) if max_rows else None)
        result = summarize(spec, tokenizer_for(ctx, sess.model), sess.max_length, seed=TrainSpec().seed)
        cols = result["data"].columns
        # Pin what was detected, so the run trains on exactly what the user saw here.
        pinned = (cols.text, None) if cols.format == "chat" else (cols.prompt, cols.response)
        sess.data_spec = dataclasses.replace(spec, format=cols.format, prompt_column=pinned[0],
                                             response_column=pinned[1])
        sess.gen = result
    return sess


def load(ctx: AppContext, owner: str, source: str, **settings) -> Session:
    """read_source + prepare in one go (the API's `load_data` for the generation task)."""
    actions.read_source(ctx, owner, source)
    return prepare(ctx, owner, **settings)


def summary_dict(sess: Session) -> dict:
    """A JSON-able description of the session's generation data (what the API returns)."""
    gen, spec = sess.gen, sess.data_spec
    return {"task": "generate", "data_path": spec.path, "format": gen["format"],
            "columns": [str(c) for c in sess.frame.columns] if sess.frame is not None else [],
            "prompt_column": spec.prompt_column, "response_column": spec.response_column,
            "rows_train": gen["rows_train"], "rows_validation": gen["rows_validation"],
            "truncated_share": gen["stats"].truncated_share, "token_stats": gen["stats"].to_dict(),
            "warnings": gen["warnings"], "preview": gen["preview"]["rendered"].head(5).tolist()}


# -- compare -------------------------------------------------------------------------------------
def settings_from(max_new_tokens=None, temperature=None, top_p=None) -> GenerateSpec:
    """Decoding settings from UI values (empty ones keep their defaults; ConfigError if out of range)."""
    values = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}
    casts = {"max_new_tokens": lambda v: int(round(float(v))), "temperature": float, "top_p": float}
    return GenerateSpec(**{k: casts[k](v) for k, v in values.items() if v not in (None, "")})


def generation_run(ctx: AppContext, owner: str, run_id: str | None):
    """The run to compare (default: the newest finished one), checked to be a generation run."""
    if not run_id:
        runs = [r for r in actions.finished_runs(ctx, owner) if r.status().get("task") == "generate"]
        if not runs:
            raise JobError("there is no finished text generation run yet.", hint="Train one first.")
        return runs[0]
    run = ctx.get_run(owner, run_id)
    if run.config().task != "generate":
        raise JobError(f"run {run.id} is a classification run, not a text generation run.",
                       hint="Pick a run trained on prompts and answers.")
    return run


def pair_for(ctx: AppContext, owner: str, run_id: str | None):
    from studio.generation import load_pair
    return load_pair(generation_run(ctx, owner, run_id))


def stream(ctx: AppContext, owner: str, run_id: str | None, prompt: str,
           settings: GenerateSpec | None = None) -> Iterator[tuple[str, str]]:
    """(base, tuned) answers to one prompt, growing together one token each per step."""
    if not (prompt or "").strip():
        raise JobError("there is no prompt.", hint="Type a question or an instruction first.")
    pair = pair_for(ctx, owner, run_id)
    yield "", ""
    yield from pair.stream_both(prompt[:5000], settings=settings)


def generate(ctx: AppContext, owner: str, run_id: str | None, prompt: str,
             settings: GenerateSpec | None = None) -> dict:
    """{"run_id", "base", "tuned"}: both complete answers (the API's `generate`)."""
    run = generation_run(ctx, owner, run_id)
    base = tuned = ""
    for base, tuned in stream(ctx, owner, run.id, prompt, settings):
        pass
    return {"run_id": run.id, "base": base, "tuned": tuned}


def chat_stream(ctx: AppContext, owner: str, run_id: str | None, message: str, base_history: list,
                tuned_history: list, settings: GenerateSpec | None = None) -> Iterator[tuple[list, list]]:
    """One chat turn for both sides: each side's history (a list of {"role", "content"}) gets the
    user's message and then its own growing answer. Yields (base_history, tuned_history)."""
    if not (message or "").strip():
        raise JobError("there is no message.", hint="Type something to say to both models.")
    pair = pair_for(ctx, owner, run_id)
    user = {"role": "user", "content": message[:5000]}
    base_msgs = [_plain(m) for m in base_history or []] + [user]
    tuned_msgs = [_plain(m) for m in tuned_history or []] + [user]
    base_out = base_msgs + [{"role": "assistant", "content": ""}]
    tuned_out = tuned_msgs + [{"role": "assistant", "content": ""}]
    yield base_out, tuned_out
    for base, tuned in pair.stream_both(base_msgs, tuned_msgs, settings):
        base_out[-1] = {"role": "assistant", "content": base}
        tuned_out[-1] = {"role": "assistant", "content": tuned}
        yield base_out, tuned_out


def _plain(message) -> dict:
    """A chatbot message (dict or gradio message object) as {"role", "content": text}."""
    get = message.get if isinstance(message, dict) else lambda k, d=None: getattr(message, k, d)
    content = get("content", "")
    if isinstance(content, list):   # gradio may hand back [{"type": "text", "text": ...}]
        content = " ".join(str(c.get("text", "")) if isinstance(c, dict) else str(c) for c in content)
    return {"role": get("role", "user"), "content": str(content)}


def batch(ctx: AppContext, owner: str, run_id: str | None, n: int | None = 8,
          settings: GenerateSpec | None = None, progress=None):
    """`studio.generation.batch_compare` on the run's validation prompts: (examples, summary)."""
    from studio.generation import batch_compare
    run = generation_run(ctx, owner, run_id)
    result = batch_compare(run, int(n) if n else None, settings=settings, progress=progress)
    return result.examples, result.summary


def forgetting(ctx: AppContext, owner: str, run_id: str | None):
    """`studio.generation.forgetting_check` of the run: base vs tuned perplexity on general text."""
    from studio.generation import forgetting_check
    return forgetting_check(generation_run(ctx, owner, run_id))


def percent(change: float, sign: bool = False) -> str:
    """A relative change as people read it: one decimal under 10% ("+0.5%"), whole above ("+20%").
    Every place that shows the forgetting change uses this, so one number reads one way."""
    digits = 1 if abs(round(change, 3)) < 0.1 else 0
    return f"{change:{'+' if sign else ''}.{digits}%}"


def forgetting_sentence(base_ppl: float, tuned_ppl: float) -> str:
    """One plain-language sentence about what a change in general-text perplexity means."""
    if not (math.isfinite(base_ppl) and math.isfinite(tuned_ppl)) or base_ppl <= 0:
        return "The check could not measure both models on the general text."
    change = tuned_ppl / base_ppl - 1.0
    if change <= 0.05:
        return (f"Ordinary English surprises the fine-tuned model about as much as the base model "
                f"({percent(change, sign=True)}): tuning did not make it forget general language.")
    if change <= 0.25:
        return (f"Ordinary English is {percent(change)} more surprising to the fine-tuned model: it forgot "
                "a little of its general language, which is normal for a focused task.")
    return (f"Ordinary English is {percent(change)} more surprising to the fine-tuned model: tuning overwrote "
            "part of what it knew. A lower learning rate, fewer epochs or LoRA usually help.")
