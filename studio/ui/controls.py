"""Gradio controls built from the config's field metadata: one source of truth for ranges and help.

`control(TrainSpec, "learning_rate")` reads the field's default, range, step, choices and help
text from `studio.config` and returns the matching component (dropdown for choices, checkbox for
flags, slider for a bounded range with a step, number otherwise). Overrides exist for what only
the UI knows, such as the freeze-depth maximum of the chosen model.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from studio.config import field_meta

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "ui"
_TEXTS: dict[str, str] = {}


@dataclass
class Shared:
    """Components every tab may read or update: the owner token, the tab strip, the Monitor's
    timer and the progress version the page last drew."""
    owner: gr.BrowserState
    tabs: gr.Tabs
    timer: gr.Timer
    shown: gr.State


def owned(ctx, fn, owner: gr.BrowserState | None = None):
    """Wrap a handler so its owner token is always there. Its first input is the token, or (with
    `owner`) it takes a dict of inputs that holds the token under that component. Events fired
    before the page-load event minted the token wait for it (`AppContext.owner_for`)."""
    def handler(request: gr.Request, *args):
        from studio.errors import StudioError
        page = getattr(request, "session_hash", None)
        try:
            if owner is None:
                return fn(ctx.owner_for(args[0], page), *args[1:])
            data = dict(args[0])
            data[owner] = ctx.owner_for(data.get(owner), page)
            return fn(data)
        except StudioError as exc:
            raise gr.Error(exc.user_message, print_exception=False) from None
    handler.__name__ = getattr(fn, "__name__", "handler")
    return handler


def owned_stream(ctx, fn):
    """`owned` for a generator handler (first input: the owner token): gradio streams each value
    it yields. The wrapper must itself be a generator function, or gradio would not stream."""
    def handler(request: gr.Request, *args):
        from studio.errors import StudioError
        try:
            token = ctx.owner_for(args[0], getattr(request, "session_hash", None))
            yield from fn(token, *args[1:])
        except StudioError as exc:
            raise gr.Error(exc.user_message, print_exception=False) from None
    handler.__name__ = getattr(fn, "__name__", "handler")
    return handler


def field_type(cls, name: str) -> str:
    """The declared type of a config field as written ("int", "float", "str | None", ...)."""
    return str(next(f.type for f in dataclasses.fields(cls) if f.name == name))


def label_of(meta: dict) -> str:
    """'learning_rate' -> 'Learning rate' unless the field names its own label."""
    words = meta["name"].replace("_", " ").capitalize()
    return meta.get("label") or words.replace("Lora r", "LoRA rank").replace("Lora ", "LoRA ")


def control(cls, name: str, *, kind: str | None = None, label: str | None = None,
            value=None, **overrides):
    """The component for one config field. `kind` forces "slider", "number", "dropdown",
    "radio" or "checkbox"; `overrides` replace metadata (minimum=, maximum=, step=, info=, ...)."""
    meta = field_meta(cls, name)
    default = meta["default"] if value is None else value
    common = dict(label=label or label_of(meta), info=overrides.pop("info", meta["help"]),
                  elem_id=overrides.pop("elem_id", f"{cls.__name__.lower()}-{name}".replace("_", "-")))
    common.update({k: v for k, v in overrides.items() if k in ("visible", "interactive", "scale", "min_width")})
    choices = overrides.get("choices", meta.get("choices"))
    if kind is None:
        if choices:
            kind = "radio" if len(choices) <= 4 else "dropdown"
        elif isinstance(meta["default"], bool):
            kind = "checkbox"
        elif meta.get("step") is not None and meta.get("max") is not None:
            kind = "slider"
        elif meta.get("min") is not None or meta.get("max") is not None:
            kind = "number"
        else:
            kind = "text"
    if kind == "radio":
        return gr.Radio(choices=list(choices), value=default, **common)
    if kind == "dropdown":
        return gr.Dropdown(choices=list(choices), value=default, **common)
    if kind == "checkbox":
        return gr.Checkbox(value=bool(default), **common)
    if kind == "text":
        return gr.Textbox(value=str(default), max_lines=1, **common)
    lo = overrides.get("minimum", meta.get("min"))
    hi = overrides.get("maximum", meta.get("max"))
    step = overrides.get("step", meta.get("step"))
    if kind == "slider":
        return gr.Slider(minimum=lo, maximum=hi, step=step or 1, value=default, **common)
    precision = 0 if field_type(cls, name) == "int" else None
    return gr.Number(value=default, minimum=lo, maximum=hi, step=step, precision=precision, **common)


def text(name: str) -> str:
    """An explanation from assets/ui/<name>.md, read once per process (static files)."""
    if name not in _TEXTS:
        path = ASSETS / f"{name}.md"
        _TEXTS[name] = path.read_text(encoding="utf-8") if path.is_file() else ""
    return _TEXTS[name]


def readable(exc, labels: dict | None = None) -> str:
    """A StudioError's message with its place ("train.learning_rate") said the way the page
    says it ("Learning rate"), when `labels` (field name -> label) knows the field."""
    label = (labels or {}).get(exc.where.rsplit(".", 1)[-1]) if exc.where else None
    return f"{label}: {exc.message} {exc.hint}".strip() if label else exc.user_message


def warn(exc: Exception, labels: dict | None = None) -> str:
    """Show a StudioError as a toast and return it as markdown for the message box next to the
    control (fields named by their `labels`, see `readable`). Anything else is a bug: shown
    without a traceback, logged in full by gradio."""
    from studio.errors import StudioError
    if isinstance(exc, StudioError):
        message = readable(exc, labels)
    else:
        logging.getLogger("studio.ui").error("unexpected error in a handler", exc_info=exc)
        message = f"Something went wrong inside the studio ({type(exc).__name__}: {exc})."
    gr.Warning(message)
    return f"<div class='studio-error'>⚠ {message}</div>"


def message_box(**kwargs) -> gr.HTML:
    """The place next to a control where its errors and notes appear; takes no room when empty."""
    return gr.HTML(min_height=0, padding=False, elem_classes=["studio-message"], **kwargs)


def stop_job(ctx, owner_token) -> str:
    """The Stop button (Train and Monitor tabs): ask the owner's job to stop after this step."""
    from studio.ui import actions
    try:
        job = actions.stop(ctx, owner_token)
        return note(f"Stopping run <code>{job.id}</code> after the current step…")
    except Exception as exc:
        return warn(exc)


def note(message: str) -> str:
    return f"<div class='studio-note'>{message}</div>" if message else ""
