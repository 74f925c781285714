"""Tab 2, Data: a bundled sample or an upload, a preview, the columns, the split, and checks.

The tab serves the session's task. Classification shows text and label pickers and the labels'
balance; text generation shows the detected format (with an override and prompt / response
pickers), a training example as the model will read it with the learned part highlighted, and the
conversations' token lengths (see `data_gen.py`). Every handler returns values for all outputs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from studio import plots
from studio.config import DataSpec
from studio.ui import actions, controls, data_gen, gen_actions
from studio.ui.session import AppContext, Session

SAMPLES = {"classify": [("Product reviews: positive / negative", "reviews.csv"),
                        ("Support messages: 6 intents", "intents.csv")],
           "generate": [("Identity: teach it its name, Pip (chat JSONL)", "identity.jsonl"),
                        ("Pirate talk: answers in pirate style (prompt / response CSV)", "pirate.csv")]}
FILE_TYPES = [".csv", ".tsv", ".json", ".jsonl", ".parquet", ".xlsx"]
PREVIEW_ROWS = 20


@dataclass
class DataTab:
    sample: gr.Dropdown
    use_sample: gr.Button
    upload: gr.File
    summary: gr.Markdown
    preview: gr.Dataframe
    text_column: gr.Dropdown
    label_column: gr.Dropdown
    split: gr.Slider
    max_rows: gr.Number
    label_plot: gr.Plot
    length_plot: gr.Plot
    stats: gr.Markdown
    warnings: gr.Markdown
    format: gr.Dropdown                 # generation: layout override and columns
    prompt_column: gr.Dropdown
    response_column: gr.Dropdown
    segments: gr.HighlightedText        # generation: the first example, learned part highlighted
    gen_preview: gr.Dataframe
    shown_task: gr.State                # the task this page's Data tab was last drawn for
    views: list                         # [classification-only components, generation-only ones]

    def table_outputs(self) -> list:
        return [self.summary, self.preview, self.text_column, self.label_column, self.format,
                self.prompt_column, self.response_column]

    def check_outputs(self) -> list:
        return [self.label_plot, self.length_plot, self.stats, self.warnings, self.segments, self.gen_preview]

    def task_outputs(self) -> list:
        return [self.sample, self.shown_task, *self.views]

    def all_outputs(self) -> list:
        return [*self.table_outputs(), *self.check_outputs()]


def table_values(sess: Session) -> list:
    """Summary, preview and column pickers for the session's table."""
    frame = sess.frame
    if frame is None:
        begin = ("**Nothing is loaded**: the last file could not be read (see the message). Pick a sample "
                 "or upload another file." if sess.data_problem else "Pick a sample or upload a file to begin.")
        return [begin, gr.update(value=None, visible=False),
                gr.update(choices=[], value=None), gr.update(choices=[], value=None),
                *data_gen.picker_values(sess)]
    source = frame.attrs.get("source") or Path(sess.data_spec.path).name
    cols = [str(c) for c in frame.columns]
    summary = f"**{source}** · {len(frame):,} rows · columns: {', '.join(f'`{c}`' for c in cols)}"
    from studio.data import preview
    shown = preview(frame, PREVIEW_ROWS).reset_index(names=frame.attrs.get("row_word", "row"))
    spec = sess.data_spec or DataSpec()
    return [summary, gr.update(value=shown, visible=True), gr.update(choices=cols, value=spec.text_column),
            gr.update(choices=cols, value=spec.label_column), *data_gen.picker_values(sess)]


def empty_checks(task: str = "classify") -> list:
    if task == "generate":
        return data_gen.empty_checks()
    return [plots.empty_figure("No labels yet.", title="Rows per label"),
            plots.empty_figure("No texts yet.", title="Text length in tokens"), "", "", None, None]


def check_values(sess: Session) -> list:
    """Charts, numbers and warnings for the session's prepared data."""
    if sess.task == "generate":
        return data_gen.check_values(sess)
    stats = sess.stats
    if stats is None:
        return empty_checks()
    labels = sess.data.labels.names
    numbers = (f"**{stats.rows_train:,}** rows to learn from · **{stats.rows_validation:,}** held out to "
               f"check on · **{len(labels)}** labels: {', '.join(f'`{n}`' for n in labels)}")
    warnings = "\n".join(f"- ⚠ {w}" for w in stats.warnings)
    warnings = f"#### Worth a look\n{warnings}" if warnings else "✓ No problems found in this data."
    return [plots.label_distribution_figure(stats.label_counts),
            plots.token_length_figure(stats.token_lengths, stats.max_length, stats.truncated_share),
            numbers, warnings, None, None]


def task_values(sess: Session) -> list:
    """Sample choices and which view (classification or generation) shows, for the session's task."""
    generate = sess.task == "generate"
    samples = SAMPLES[sess.task]
    return [gr.update(choices=samples, value=samples[0][1]), sess.task,
            *[gr.update(visible=not generate)] * 3, *[gr.update(visible=generate)] * 3]


def build_data_tab(ctx: AppContext, shared: controls.Shared, page: gr.Tab) -> DataTab:
    owner = shared.owner
    intro = gr.Markdown(controls.text("data"), elem_classes=["tab-intro"])
    gen_intro = gr.Markdown(controls.text("data_generate"), elem_classes=["tab-intro"], visible=False)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            with gr.Group():
                sample = gr.Dropdown(SAMPLES["classify"], value="reviews.csv", label="Bundled sample",
                                     elem_id="data-sample", allow_custom_value=True)
                use_sample = gr.Button("Use this sample", variant="primary", elem_id="data-use-sample")
            upload = gr.File(label="…or upload your own table", file_types=FILE_TYPES, height=120,
                             elem_id="data-upload")
            message = controls.message_box(elem_id="data-message")
        with gr.Column(scale=3, min_width=360):
            summary = gr.Markdown("Pick a sample or upload a file to begin.", elem_id="data-summary")
            with gr.Row() as class_row:
                text_column = gr.Dropdown([], label="Text column", info="What the model reads.",
                                          elem_id="data-text-column")
                label_column = gr.Dropdown([], label="Label column", info="What it should answer.",
                                           elem_id="data-label-column")
            with gr.Row(visible=False) as gen_row:
                fmt = gr.Dropdown(data_gen.FORMAT_CHOICES, value="auto", label="Format", elem_id="data-format",
                                  info="Detected from the columns; change it if the guess is wrong.")
                prompt_column = gr.Dropdown([], label="Prompt column", elem_id="data-prompt-column",
                                            info="What the user asks (chat: the messages column).")
                response_column = gr.Dropdown([], label="Response column", elem_id="data-response-column",
                                              info="The answer the model learns to write.")
            with gr.Row():
                split = controls.control(DataSpec, "validation_split", label="Held out for validation")
                max_rows = gr.Number(None, label="Use at most this many rows", precision=0, minimum=4,
                                     info="Empty: all rows. A few hundred are enough for a first try.",
                                     elem_id="data-max-rows")
            with gr.Accordion("Separate validation file (optional)", open=False):
                validation = gr.File(label="Validation table with the same columns", file_types=FILE_TYPES,
                                     height=100)
    stats = gr.Markdown(elem_id="data-stats")
    preview = gr.Dataframe(label=f"First {PREVIEW_ROWS} rows", interactive=False, wrap=True,
                           max_height=360, elem_id="data-preview",
                           visible=False)
    with gr.Column(visible=False) as gen_view:
        segments = gr.HighlightedText(label="A training example as the model reads it (highlighted: what "
                                      "it learns to write; the rest is context)", color_map=data_gen.LEARNED_COLOR,
                                      show_legend=True, combine_adjacent=True, elem_id="data-segments")
        gen_preview = gr.Dataframe(label="More examples through the chat template", interactive=False,
                                   wrap=True, max_height=320, elem_id="data-gen-preview")
    with gr.Row():
        label_plot = gr.Plot(empty_checks()[0], show_label=False, elem_id="data-label-plot")
        length_plot = gr.Plot(empty_checks()[1], show_label=False, elem_id="data-length-plot")
    warnings = gr.Markdown(elem_id="data-warnings")
    tab = DataTab(sample, use_sample, upload, summary, preview, text_column, label_column, split,
                  max_rows, label_plot, length_plot, stats, warnings, fmt, prompt_column, response_column,
                  segments, gen_preview, gr.State("classify"), [intro, class_row, label_plot, gen_intro, gen_row, gen_view])
    n_table = len(tab.table_outputs())

    def prepare(owner_token, settings: dict):
        """Check the loaded table for the session's task (classification or generation)."""
        sess = ctx.session(owner_token)
        val = settings.pop("validation")
        common = dict(validation_split=settings.pop("share"), max_rows=settings.pop("rows"),
                      validation_source=actions.save_upload(ctx, owner_token, val) if val else None)
        if sess.task == "generate":
            return gen_actions.prepare(ctx, owner_token, format=settings.get("fmt") or "auto",
                                       prompt_column=settings.get("prompt"),
                                       response_column=settings.get("response"), **common)
        return actions.prepare_data(ctx, owner_token, text_column=settings.get("text"),
                                    label_column=settings.get("label"), **common)

    def check(owner_token, text_col, label_col, fmt_, prompt_col, response_col, share, rows, val_file):
        task = ctx.peek(owner_token).task
        if ctx.peek(owner_token).data_spec is None:     # a setting changed before any data: keep it quiet
            return [gr.skip()] * len(outputs)
        try:
            sess = prepare(owner_token, dict(text=text_col, label=label_col, fmt=fmt_, prompt=prompt_col,
                                             response=response_col, share=share, rows=rows, validation=val_file))
            pickers = table_values(sess)[-3:] if task == "generate" else [gr.skip()] * 3
            return [*[gr.skip()] * (n_table - 3), *pickers, *check_values(sess), ""]
        except Exception as exc:
            return [*[gr.skip()] * n_table, *empty_checks(task), controls.warn(exc)]

    def load(owner_token, source, share, rows, val_file):
        """Read a table, fill the pickers from detection, then check it with those columns."""
        sess = ctx.session(owner_token)
        task = sess.task
        try:
            actions.read_source(ctx, owner_token, source)
        except Exception as exc:     # the old table is gone from the session: show that, not it
            return [*table_values(sess), *empty_checks(task), controls.warn(exc)]
        try:
            prepare(owner_token, dict(share=share, rows=rows, validation=val_file))
            return [*table_values(sess), *check_values(sess), ""]
        except Exception as exc:
            return [*table_values(sess), *empty_checks(task), controls.warn(exc)]

    def load_upload(owner_token, file, share, rows, val_file):
        if not file:
            return [gr.skip()] * (len(outputs))
        try:
            path = actions.save_upload(ctx, owner_token, file, Path(file).name)
        except Exception as exc:
            return [*[gr.skip()] * (len(outputs) - 1), controls.warn(exc)]
        return load(owner_token, str(path), share, rows, val_file)

    def on_select(owner_token, shown):
        """Opening the tab after the task changed (Model tab): redraw everything for the new task."""
        sess = ctx.peek(owner_token)
        if sess.task == shown:
            return [gr.skip()] * (len(tab.task_outputs()) + len(tab.all_outputs()))
        return [*task_values(sess), *table_values(sess), *check_values(sess)]

    outputs = [*tab.all_outputs(), message]
    check_inputs = [owner, text_column, label_column, fmt, prompt_column, response_column, split, max_rows,
                    validation]
    quiet = dict(api_visibility="private", show_progress="minimal")
    own = functools.partial(controls.owned, ctx)
    use_sample.click(own(load), [owner, sample, split, max_rows, validation], outputs, **quiet).then(
        lambda: None, None, upload, **quiet)              # the table shown is the sample now
    upload.upload(own(load_upload), [owner, upload, split, max_rows, validation], outputs, **quiet)
    gr.on([text_column.input, label_column.input, fmt.input, prompt_column.input, response_column.input,
           split.release, max_rows.submit, validation.upload], own(check), check_inputs, outputs, **quiet)
    page.select(own(on_select), [owner, tab.shown_task], [*tab.task_outputs(), *tab.all_outputs()],
                api_visibility="private", show_progress="hidden")
    return tab


def restore(tab: DataTab, sess: Session) -> list:
    """Values for `restore_outputs` after a refresh: the task's view, tables, checks, split, rows."""
    spec = sess.data_spec or DataSpec()
    return [*task_values(sess), *table_values(sess), *check_values(sess), spec.validation_split, spec.max_rows]


def restore_outputs(tab: DataTab) -> list:
    return [*tab.task_outputs(), *tab.all_outputs(), tab.split, tab.max_rows]

