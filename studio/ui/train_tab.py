"""Tab 3, Train: method, freeze depth with a live layer diagram, the settings, presets, Start/Stop.

Presets depend on the task: text generation starts from LoRA ("Teach it fast" is the engine's
`studio.tasks.generate.RECOMMENDED`). Opening the tab after the task changed on the Model tab
switches the preset list and applies the task's first preset.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from studio import plots
from studio.config import TrainSpec
from studio.ui import actions, controls
from studio.ui.layers import human, summarize
from studio.ui.presets import (CUSTOM, DEFAULT_PRESET, PRESETS, preset_holds, preset_values,
                                presets)
from studio.ui.session import AppContext, Session

MAIN = ("method", "freeze_depth", "learning_rate", "epochs", "batch_size", "max_length")
# The "Advanced settings" accordion, one tuple per row.
ADVANCED = (("warmup_ratio", "weight_decay"), ("scheduler", "eval_strategy"),
            ("eval_steps", "early_stopping_patience", "seed"), ("cache_frozen", "save_checkpoints"))
LORA = (("lora_r", "lora_alpha", "lora_dropout"), ("lora_targets",))
DIAGRAM = ("method", "freeze_depth", "lora_r")

@dataclass
class TrainTab:
    settings: dict            # TrainSpec field name -> component
    preset: gr.Radio
    name: gr.Textbox
    diagram: gr.Plot
    trainable: gr.Markdown
    data_note: gr.Markdown
    shown_task: gr.State
    start: gr.Button
    stop: gr.Button
    message: gr.HTML

    def restore_outputs(self) -> list:
        return [self.preset, *self.settings.values(), self.name, self.shown_task]


def restore(tab: TrainTab, sess: Session) -> list:
    """Values for `tab.restore_outputs()` after a refresh: the form as the owner last left it."""
    form = sess.train_form
    if not form:
        return [gr.skip()] * len(tab.restore_outputs())
    choices, choice = presets(form["task"]), form["preset"]
    radio = gr.update(choices=list(choices), value=choice,
                      info=choices[choice][0] if choice in choices else CUSTOM)
    values = [form["values"].get(n, gr.skip()) for n in tab.settings]
    depth = form["values"].get("freeze_depth")
    if depth is not None:      # a deep model's depth may exceed the slider's first maximum
        values[list(tab.settings).index("freeze_depth")] = gr.update(value=depth, maximum=max(12, int(depth)))
    return [radio, *values, form["name"] or "", form["task"]]


def diagram_values(ctx: AppContext, owner: str, values: dict) -> list:
    """The layer-stack figure and the 'N of M parameters learn' line for these settings."""
    try:
        sess = ctx.peek(owner)
        spec = actions.coerce_train(values)
        groups = ctx.skeletons.groups(sess.model, spec, sess.num_labels, sess.task)
    except Exception as exc:
        return [plots.empty_figure("Load a model to see its layers.", title="Which layers learn"),
                controls.note(getattr(exc, "user_message", str(exc)))]
    s = summarize(groups)
    frozen = [g.name for g in groups if g.frozen and not g.trainable]
    what = (f"Frozen: {frozen[0]} … {frozen[-1]}." if len(frozen) > 1 else f"Frozen: {frozen[0]}."
            if frozen else "Nothing is frozen.")
    if spec.method == "lora":
        what = f"Every original weight is frozen; rank-{spec.lora_r} adapters and the head learn."
        if sess.task == "generate":
            what = f"Every original weight is frozen; only the rank-{spec.lora_r} adapters learn."
        # With LoRA every original weight is frozen and all that learns is new (the adapters, and
        # peft's trainable copy of a classifier's head), so the total is above the Model tab's: say so.
        added = "the adapters" if sess.task == "generate" else "the adapters and a trainable copy of the head"
        what += (f" The total is the model's {human(s['total'] - s['trainable'])} plus "
                 f"{human(s['trainable'])} new weights ({added}).")
    line = (f"**{human(s['trainable'])} of {human(s['total'])} parameters learn "
            f"({s['share']:.1%}).** {what}")
    return [plots.layer_stack_figure(groups), line]


def data_note(ctx: AppContext, owner: str | None) -> str:
    sess = ctx.peek(owner)
    model = f"**Model:** {sess.model}" + (" · text generation" if sess.task == "generate" else "")
    return f"**Data:** {_data_line(sess)}  \n{model}"


def _data_line(sess) -> str:
    problem = actions.data_problem(sess)
    if problem:        # the same check Start makes, so the line and the button always agree
        return f"⚠ not usable yet. {problem} Fix it on the **Data** tab before starting."
    if sess.task == "generate":
        if sess.gen is None:
            return "the bundled identity sample (pick other data on the **Data** tab)."
        gen = sess.gen
        return (f"{Path(sess.data_spec.path).name} · {gen['format']} format · {gen['rows_train']:,} "
                f"training and {gen['rows_validation']:,} validation conversations.")
    if sess.data is None:
        return "the bundled reviews sample (pick other data on the **Data** tab)."
    return (f"{Path(sess.data_spec.path).name} · {len(sess.data.train):,} training and "
            f"{len(sess.data.validation):,} validation rows · {len(sess.data.labels.names)} labels.")


def build_train_tab(ctx: AppContext, shared: controls.Shared, page: gr.Tab) -> TrainTab:
    owner = shared.owner
    gr.Markdown(controls.text("train"), elem_classes=["tab-intro"])
    settings: dict = {}
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=380):
            preset = gr.Radio(list(PRESETS), value="Balanced", label="Presets", elem_id="train-preset",
                              info=PRESETS["Balanced"][0])
            settings["method"] = controls.control(TrainSpec, "method")
            settings["freeze_depth"] = controls.control(TrainSpec, "freeze_depth", maximum=12)
            with gr.Row():
                settings["learning_rate"] = controls.control(TrainSpec, "learning_rate", kind="number")
                settings["epochs"] = controls.control(TrainSpec, "epochs", kind="number")
            with gr.Row():
                settings["batch_size"] = controls.control(TrainSpec, "batch_size", kind="number")
                settings["max_length"] = controls.control(TrainSpec, "max_length", maximum=512)
            with gr.Accordion("Advanced settings", open=False):
                for row in ADVANCED:
                    with gr.Row():
                        for name in row:
                            settings[name] = controls.control(TrainSpec, name, min_width=180)
                with gr.Group(visible=False) as lora_group:    # only meaningful for method "lora"
                    for row in LORA:
                        with gr.Row():
                            for name in row:
                                settings[name] = controls.control(TrainSpec, name, min_width=180)
            with gr.Accordion("What do these settings mean?", open=False):
                gr.Markdown(controls.text("train_help"))
        with gr.Column(scale=2, min_width=340):
            diagram = gr.Plot(plots.layer_stack_figure([]), show_label=False, elem_id="train-diagram")
            trainable = gr.Markdown(elem_id="train-trainable")
            note = gr.Markdown(data_note(ctx, "-"), elem_id="train-data-note", elem_classes=["card"])
            name = gr.Textbox(label="Run name", placeholder="optional: shown in the run list", max_lines=1,
                              elem_id="train-run-name")
            with gr.Row():
                start = gr.Button("▶ Start training", variant="primary", elem_id="train-start", scale=2)
                stop = gr.Button("■ Stop", variant="stop", elem_id="train-stop", scale=1)
            message = controls.message_box(elem_id="train-message")
            with gr.Accordion("Export config (YAML for `studio train`)", open=False):
                export = gr.Button("Export config", size="sm", elem_id="train-export")
                export_file = gr.File(label="config.yaml", visible=False, interactive=False)
                export_text = gr.Code(language="yaml", visible=False, interactive=False)
    shown_task = gr.State("classify")
    tab = TrainTab(settings, preset, name, diagram, trainable, note, shown_task, start, stop, message)
    names = list(settings)
    labels = {n: c.label for n, c in settings.items()}     # errors name a field as the page does

    def values_of(data: dict) -> dict:
        return {n: data[settings[n]] for n in names}

    def blocks_now(sess) -> int:
        info = ctx.skeletons.cached_info(sess.model)
        return info.blocks if info else 6

    def redraw(data: dict):
        return diagram_values(ctx, data[owner], values_of(data))

    def apply_preset(owner_token, choice):
        sess = ctx.peek(owner_token)
        if choice not in presets(sess.task):
            return [gr.skip()] * (1 + len(names))
        values = preset_values(sess.task, choice, blocks_now(sess))
        return [gr.update(info=presets(sess.task)[choice][0]), *[values.get(n, gr.skip()) for n in names]]

    def match_preset(data: dict):
        """A setting was edited by hand: the preset stays while its settings still hold; after
        that no preset is selected and its text says the settings are custom."""
        sess, choice = ctx.peek(data[owner]), data[preset]
        if not choice or preset_holds(sess.task, choice, blocks_now(sess), values_of(data)):
            return gr.skip()
        return gr.update(value=None, info=CUSTOM)

    def on_select(data: dict):
        """Opening the tab: fit the freeze slider to the model, redraw, describe the data. After
        the task changed, offer that task's presets and apply its first one."""
        sess = ctx.peek(data[owner])
        try:
            blocks = ctx.skeletons.info(sess.model).blocks
        except Exception:
            blocks = 12
        current = int(data[settings["freeze_depth"]])
        changed = sess.task != data[shown_task]
        fresh = preset_values(sess.task, DEFAULT_PRESET[sess.task], blocks) if changed else {}
        depth = min(int(fresh.get("freeze_depth", current)), blocks)
        values = {**values_of(data), **fresh, "freeze_depth": depth}
        # Only send a value when it must change: sending the old value could undo a fresh edit.
        slider = gr.update(maximum=blocks, value=depth) if depth != current else gr.update(maximum=blocks)
        out = [slider, *[fresh.get(n, gr.skip()) for n in names if n != "freeze_depth"]]
        if changed:
            choice = DEFAULT_PRESET[sess.task]
            radio = gr.update(choices=list(presets(sess.task)), value=choice, info=presets(sess.task)[choice][0])
        else:
            radio = gr.skip()
        return [*out, radio, sess.task, *diagram_values(ctx, data[owner], values), data_note(ctx, data[owner])]

    def on_start(data: dict):
        try:
            config = actions.build_config(ctx, data[owner], values_of(data), data[name])
            job = actions.start(ctx, data[owner], config)
        except Exception as exc:
            return controls.warn(exc, labels), gr.skip(), gr.skip(), gr.skip()
        text = controls.note(f"Started run <code>{job.id}</code>. Follow it on the Monitor tab.")
        return text, gr.Timer(active=True), -1, gr.Tabs(selected="monitor")

    def on_export(data: dict):
        try:
            config = actions.build_config(ctx, data[owner], values_of(data), data[name])
        except Exception as exc:
            controls.warn(exc, labels)
            return gr.skip(), gr.skip()
        folder = Path(tempfile.mkdtemp(prefix="studio-export-"))
        path = folder / f"{config.name or 'run'}.yaml"
        path.write_text(config.to_yaml(), encoding="utf-8")
        return gr.File(value=str(path), visible=True), gr.Code(value=config.to_yaml(), visible=True)

    def clear_message():
        """Start's first step, with no inputs so nothing can fail before it: the old note goes,
        and an error gradio raises next (a number out of range) does not sit on top of it."""
        return ""

    def forget_export():
        """The settings changed: the exported YAML no longer describes this run, so it goes."""
        return gr.update(value=None, visible=False), gr.update(value=None, visible=False)

    def remember(data: dict):
        """Keep the form in the session, so a refreshed page shows what was set (`restore`), and
        the max length, which the Data tab's length charts are drawn against."""
        sess, values = ctx.session(data[owner]), values_of(data)
        sess.train_form = {"values": values, "preset": data[preset], "name": data[name], "task": data[shown_task]}
        sess.max_length = int(values["max_length"])

    def show_for_method(method):
        return gr.update(visible=method == "freeze"), gr.update(visible=method == "lora")

    everything = {owner, name, shown_task, *settings.values()}
    others = [settings[n] for n in names if n != "freeze_depth"]
    private = dict(api_visibility="private")
    own = functools.partial(controls.owned, ctx)
    preset.change(own(apply_preset), [owner, preset], [preset, *settings.values()], **private)
    settings["method"].change(show_for_method, settings["method"], [settings["freeze_depth"], lora_group],
                              **private)
    gr.on([settings[n].change for n in DIAGRAM], own(redraw, owner=owner), everything, [diagram, trainable],
          show_progress="hidden", **private)
    # Hand edits only (.input, not .change: applying a preset changes the values too). Number boxes
    # report when left: an "input" per keystroke would flag a half-typed "0" as out of range.
    edits = [c.blur if isinstance(c, gr.Number) else c.input for c in settings.values()]
    gr.on(edits, own(match_preset, owner=owner), {owner, preset, *settings.values()}, preset,
          show_progress="hidden", trigger_mode="always_last", **private)
    start.click(clear_message, None, message, show_progress="hidden", queue=False, **private).then(
        own(on_start, owner=owner), everything, [message, shared.timer, shared.shown, shared.tabs],
        concurrency_limit=None, **private)
    stop.click(own(functools.partial(controls.stop_job, ctx)), owner, message, **private)
    export.click(own(on_export, owner=owner), everything, [export_file, export_text], **private)
    # Opening the tab counts too: the data may have changed on the Data tab meanwhile.
    gr.on([*(settings[n].change for n in names), name.change, page.select], forget_export, None,
          [export_file, export_text], show_progress="hidden", queue=False, **private)
    gr.on([*(c.change for c in settings.values()), preset.change, name.change], own(remember, owner=owner),
          {owner, preset, name, shown_task, *settings.values()}, None, show_progress="hidden",
          trigger_mode="always_last", **private)
    page.select(own(on_select, owner=owner), everything,
                [settings["freeze_depth"], *others, preset, shown_task, diagram, trainable, note], **private)
    return tab
