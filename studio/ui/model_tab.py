"""Tab 1, Model: pick the task and the base model (catalog, hub id or local folder), see what it is.

The task follows the model: loading a text generator (a catalog entry of task "generate", or any
"...ForCausalLM" architecture) switches the owner's session to instruction tuning, a classifier
base back to classification. Data of the other task is forgotten then (it has another shape).
A GGUF-bundled catalog model is converted to safetensors on first use; the load button shows
that conversion's progress.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from studio.catalog import CATALOG, default_model
from studio.errors import ModelError
from studio.ui import controls
from studio.ui.layers import human
from studio.ui.session import AppContext, Session

SOURCES = ("Catalog", "Hub id", "Local folder")
TASKS = [("Classify text (text → label)", "classify"), ("Generate text (prompt → answer)", "generate")]
TASK_WORDS = {"classify": "text classification", "generate": "text generation (instruction tuning)"}


@dataclass
class ModelTab:
    task: gr.Radio
    source: gr.Radio
    catalog: gr.Dropdown
    hub_id: gr.Textbox
    folder: gr.Textbox
    load: gr.Button
    card: gr.Markdown

    def restore_outputs(self) -> list:
        return [self.task, self.source, self.catalog, self.hub_id, self.folder, self.card]


def catalog_table(task: str | None = None) -> pd.DataFrame:
    rows = [{"name": e.name, "model": e.title, "task": e.task, "parameters": f"{e.params_m:g}M",
             "works offline": "✓ offline" if e.offline else "needs network", "comes from": e.source}
            for e in CATALOG.values() if task is None or e.task == task]
    return pd.DataFrame(rows)


def catalog_choices(task: str) -> list[tuple[str, str]]:
    return [(e.describe(), e.name) for e in CATALOG.values() if e.task == task]


def card_markdown(ctx: AppContext, spec: str, *, in_use: str | None = None) -> str:
    """The model card: what it is, and whether it is the model the studio uses. `in_use` is the
    session's current model when `spec` is only picked in the form, not loaded: the card then
    says so (without this, picking another model looked as if it had been applied)."""
    info = ctx.skeletons.cached_info(spec)
    entry = CATALOG.get(spec)
    title = entry.title if entry else spec
    pending = in_use is not None and in_use != spec
    if pending:
        current = CATALOG[in_use].title if in_use in CATALOG else in_use
        status = (f"<span class='pill pill-idle'>Not in use yet</span> Press **Load model** to use it; "
                  f"until then the studio uses **{current}**.")
    elif info is None:
        status = "<span class='pill pill-idle'>Not loaded yet</span>\n\nPress **Load model** to read its configuration."
    else:
        status = "<span class='pill pill-ok'>✓ Loaded</span> structure read; the weights load when training starts."
    if info is None:
        return f"### {title}\n\n{status}"
    s = info.summary
    source = entry.source + (" (offline)" if entry.offline else "") if entry else (info.folder or "Hugging Face hub")
    rows = [("Architecture", s.get("architecture")), ("Parameters", human(info.params)),
            ("Transformer blocks", s.get("layers")), ("Hidden size", s.get("hidden_size")),
            ("Vocabulary", f"{s['vocab_size']:,} tokens" if s.get("vocab_size") else "?"),
            ("Longest input", f"{s['max_length']:,} tokens" if s.get("max_length") else "?"),
            ("Task", TASK_WORDS.get(info.task, info.task)), ("Comes from", source)]
    table = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows)
    return f"### {title}\n\n{status}\n\n<table class='kv'>{table}</table>"


def spec_from(source: str, catalog_name: str, hub_id: str, folder: str) -> str:
    if source == "Hub id":
        return (hub_id or "").strip()
    if source == "Local folder":
        return (folder or "").strip()
    return catalog_name or ""


def build_model_tab(ctx: AppContext, shared: controls.Shared, page: gr.Tab) -> ModelTab:
    owner = shared.owner
    gr.Markdown(controls.text("model"), elem_classes=["tab-intro"])
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            task = gr.Radio(TASKS, value="classify", label="What should the model learn to do?",
                            elem_id="model-task", info="Classify: pick a label for a text. Generate: "
                            "answer prompts in the style and with the facts of your examples.")
            source = gr.Radio(list(SOURCES), value="Catalog", label="Where the model comes from",
                              info="The catalog models are bundled and work offline.")
            catalog = gr.Dropdown(catalog_choices("classify"), value="minilm", label="Catalog model",
                                  elem_id="model-catalog")
            hub_id = gr.Textbox(label="Hugging Face hub id", placeholder="org/name (needs a network)",
                                visible=False)
            folder = gr.Textbox(label="Local model folder", visible=False,
                                placeholder="a folder with config.json and .safetensors weights, "
                                            "inside the workspace's models/ folder")
            load = gr.Button("Load model", variant="primary", elem_id="model-load")
            message = controls.message_box()
            with gr.Accordion("All models in the catalog", open=True):
                gr.Dataframe(catalog_table(), interactive=False, wrap=True, show_label=False)
        with gr.Column(scale=2):
            card = gr.Markdown(card_markdown(ctx, "minilm"), elem_id="model-card", elem_classes=["card"])

    def switch(choice):
        return gr.update(visible=choice == "Catalog"), gr.update(visible=choice == "Hub id"), \
            gr.update(visible=choice == "Local folder")

    def pick_task(choice):
        """Offer the catalog models of this task; the first one is the task's default."""
        return gr.update(choices=catalog_choices(choice), value=default_model(choice))

    def load_model(request: gr.Request, owner_token, choice, name, hub, path, progress=gr.Progress()):
        try:
            token = ctx.owner_for(owner_token, getattr(request, "session_hash", None))
            spec = spec_from(choice, name, hub, path)
            if not spec:
                raise ModelError("no model was chosen.", hint="Pick one from the catalog or type an id.")
            progress(0.0, desc="Reading the model")
            # A GGUF catalog model is converted once (about 20-60 s); the bar follows each phase.
            info = ctx.skeletons.info(spec, progress=lambda f, msg: progress(f, desc=f"Preparing the model: {msg}"))
            ctx.session(token).use(spec, info.task)
            note = controls.note(f"The task is now <b>{TASK_WORDS[info.task]}</b>: pick matching data on "
                                 "the Data tab.") if info.task == "generate" else ""
            return card_markdown(ctx, spec), info.task, note
        except Exception as exc:
            return gr.skip(), gr.skip(), controls.warn(exc)

    def picked(request: gr.Request, owner_token, choice, name):
        """A catalog model picked in the form (or offered by the task switch): show its card,
        marked as not in use until Load model applies it."""
        try:
            token = ctx.owner_for(owner_token, getattr(request, "session_hash", None))
            spec = spec_from(choice, name, "", "")
            return card_markdown(ctx, spec, in_use=ctx.session(token).model) if spec else gr.skip()
        except Exception:   # the card is a courtesy; Load model reports real problems
            return gr.skip()

    task.input(pick_task, task, catalog, api_visibility="private")
    catalog.change(picked, [owner, source, catalog], card, api_visibility="private")
    source.change(switch, source, [catalog, hub_id, folder], api_visibility="private")
    load.click(load_model, [owner, source, catalog, hub_id, folder], [card, task, message],
               api_visibility="private")
    return ModelTab(task, source, catalog, hub_id, folder, load, card)


def restore(ctx: AppContext, tab: ModelTab, sess: Session) -> list:
    """Values for `tab.restore_outputs()` after a refresh: the session's model."""
    spec = sess.model
    if spec in CATALOG:
        values = ["Catalog", gr.update(choices=catalog_choices(sess.task), value=spec, visible=True),
                  gr.update(visible=False), gr.update(visible=False)]
    elif spec.startswith(("/", ".", "~")):
        values = ["Local folder", gr.update(visible=False), gr.update(visible=False),
                  gr.update(value=spec, visible=True)]
    else:
        values = ["Hub id", gr.update(visible=False), gr.update(value=spec, visible=True),
                  gr.update(visible=False)]
    return [sess.task] + values + [card_markdown(ctx, spec)]
