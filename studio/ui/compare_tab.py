"""Tab 5, Compare: the base model and the fine-tuned one, side by side, on any finished run.

Picking a classification run shows labels and scores; picking a text-generation run shows the
generation panel (`compare_gen.py`): streamed answers, a two-column chat, the validation prompts
and the forgetting check.

Which run is shown: opening the tab shows a run that finished since the page last looked (the one
just trained is what people come here for); otherwise the run on screen stays, so a run picked by
hand is kept. A change of run blanks the previous run's answers: they would read as this run's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from studio import plots
from studio.ui import actions, compare_gen, controls
from studio.ui.monitor_view import run_label
from studio.ui.session import AppContext

FILTERS = {
    "Where they disagree": lambda e: e[~e["agree"]],
    "Tuned right, base wrong": lambda e: e[e["tuned_correct"] & ~e["base_correct"]],
    "Base right, tuned wrong": lambda e: e[e["base_correct"] & ~e["tuned_correct"]],
    "Both wrong": lambda e: e[~e["base_correct"] & ~e["tuned_correct"]],
    "All examples": lambda e: e,
}
SHOWN_COLUMNS = {"text": "text", "label": "true label", "base": "base says", "tuned": "fine-tuned says",
                 "base_confidence": "base sure", "tuned_confidence": "fine-tuned sure"}
METRICS = {"accuracy": "Accuracy", "macro_f1": "Macro-F1"}
PER_CLASS = {"label": "label", "support": "rows", "base_precision": "base precision",
             "base_recall": "base recall", "base_f1": "base F1", "tuned_precision": "fine-tuned precision",
             "tuned_recall": "fine-tuned recall", "tuned_f1": "fine-tuned F1"}


@dataclass
class CompareTab:
    run: gr.Dropdown
    text: gr.Textbox
    predict: gr.Button
    random: gr.Button
    base: gr.Label
    tuned: gr.Label
    verdict: gr.Markdown
    score: gr.Button
    summary: gr.Dataframe
    examples: gr.Dataframe
    classify_panel: gr.Column
    generate: compare_gen.GenerationPanel


def run_choices(ctx: AppContext, owner: str) -> list[tuple[str, str]]:
    return [(run_label(r), r.id) for r in actions.finished_runs(ctx, owner)[:50]]


def pick_run(ids: list[str], current: str | None, seen: list[str] | None) -> str | None:
    """The run to show, from the finished run ids (newest first), the one on screen and the ids
    the page knew at its last look (None: never looked). A newly finished run wins."""
    fresh = [i for i in ids if seen is not None and i not in seen]
    if fresh:
        return fresh[0]
    return current if current in ids else (ids[0] if ids else None)


def verdict(result: dict, gold: str | None = None) -> str:
    base, tuned = result["base_label"], result["tuned_label"]
    head = (f"Both say **{tuned}**." if base == tuned else
            f"They disagree: the base model says **{base}**, the fine-tuned one **{tuned}**.")
    if gold:
        marks = {True: "✓", False: "✗"}
        head += f" The true label is **{gold}** (base {marks[base == gold]}, fine-tuned {marks[tuned == gold]})."
    return head


def filter_examples(examples: pd.DataFrame | None, choice: str, search: str) -> pd.DataFrame:
    """The examples table after the filter radio and the text search."""
    if examples is None or examples.empty:
        return pd.DataFrame(columns=list(SHOWN_COLUMNS.values()))
    shown = FILTERS.get(choice, FILTERS["Where they disagree"])(examples)
    if search and search.strip():
        shown = shown[shown["text"].str.contains(search.strip(), case=False, regex=False)]
    shown = shown[list(SHOWN_COLUMNS)].copy()
    for col in ("base_confidence", "tuned_confidence"):
        shown[col] = shown[col].map(lambda v: f"{v:.0%}")
    return shown.rename(columns=SHOWN_COLUMNS)


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """metric | base | fine-tuned | change, as percentages people read at a glance."""
    return pd.DataFrame({"metric": summary["metric"].map(lambda m: METRICS.get(m, m)),
                         "base": summary["base"].map("{:.1%}".format),
                         "fine-tuned": summary["tuned"].map("{:.1%}".format),
                         "change": summary["delta"].map(lambda v: f"{v * 100:+.1f} points")})


def build_compare_tab(ctx: AppContext, shared: controls.Shared, page: gr.Tab) -> CompareTab:
    owner = shared.owner
    run = gr.Dropdown([], label="Run to compare", elem_id="compare-run",
                      info="Any finished run with a saved model.")
    with gr.Column() as classify_panel:
        gr.Markdown(controls.text("compare"), elem_classes=["tab-intro"])
    with classify_panel, gr.Row(equal_height=True):
        text = gr.Textbox(label="Try a sentence", lines=2, scale=4, elem_id="compare-text",
                          placeholder="Type a text the models have never seen…")
        with gr.Column(scale=1, min_width=180):
            predict = gr.Button("Compare", variant="primary", elem_id="compare-predict")
            random = gr.Button("Random validation example", elem_id="compare-random")
    gold = gr.State(None)
    with classify_panel, gr.Row():
        base = gr.Label(label="Base model (before fine-tuning, zero-shot)", num_top_classes=6,
                        elem_id="compare-base")
        tuned = gr.Label(label="Fine-tuned model", num_top_classes=6, elem_id="compare-tuned")
    with classify_panel:
        verdict_md = gr.Markdown(elem_id="compare-verdict")
        message = controls.message_box()
        gr.Markdown("### The whole validation set")
        score = gr.Button("Score both models on the validation set", elem_id="compare-score")
    with classify_panel, gr.Column(visible=False) as results:
        summary = gr.Dataframe(label="Scores on the held-out rows", interactive=False,
                               elem_id="compare-summary")
        with gr.Row():
            confusion_base = gr.Plot(show_label=False, elem_id="compare-confusion-base")
            confusion_tuned = gr.Plot(show_label=False, elem_id="compare-confusion-tuned")
        per_class = gr.Dataframe(label="Per class", interactive=False)
        with gr.Row():
            which = gr.Radio(list(FILTERS), value="Where they disagree", label="Show", scale=3)
            search = gr.Textbox(label="Search the texts", scale=1, max_lines=1)
        examples = gr.Dataframe(interactive=False, wrap=True, max_height=420, elem_id="compare-examples",
                                column_widths=["46%", "11%", "11%", "11%", "10%", "11%"])
    panel = compare_gen.build_generation_panel(ctx, owner, run)
    seen = gr.State(None)                # the finished run ids at the page's last look
    answers = [base, tuned, verdict_md, message, gold, results, *panel.answers()]
    blank = [None, None, "", "", None, gr.update(visible=False), *panel.blank()]
    tab = CompareTab(run, text, predict, random, base, tuned, verdict_md, score, summary, examples,
                     classify_panel, panel)

    def refresh(owner_token, current, known):
        """Opening the tab: the run list, the run to show (`pick_run`), its panel, and the
        previous run's answers blanked when the run changes."""
        choices = run_choices(ctx, owner_token)
        ids = [c[1] for c in choices]
        value = pick_run(ids, current, known)
        cleared = blank if value != current else [gr.skip()] * len(blank)
        return [gr.update(choices=choices, value=value), *panels(owner_token, value), ids, *cleared]

    def on_pick(owner_token, run_id):
        """A run picked by hand: its panel, with nothing left from the run before."""
        return [*panels(owner_token, run_id), *blank]

    def panels(owner_token, run_id) -> list:
        """Show the panel that fits the run's task (classification when none is picked)."""
        try:
            task = ctx.get_run(owner_token, run_id).status().get("task") if run_id else "classify"
        except Exception:
            task = "classify"
        return [gr.update(visible=task != "generate"), gr.update(visible=task == "generate")]

    def on_predict(owner_token, run_id, sentence, gold_label):
        try:
            result = actions.predict(ctx, owner_token, sentence, run_id)
        except Exception as exc:
            return gr.skip(), gr.skip(), gr.skip(), controls.warn(exc)
        return result["base"], result["tuned"], verdict(result, gold_label), ""

    def on_random(owner_token, run_id):
        try:
            sentence, label = actions.random_example(ctx, owner_token, run_id)
        except Exception as exc:
            return gr.skip(), gr.skip(), controls.warn(exc)
        return sentence, label, ""

    def on_score(owner_token, run_id, choice, query):
        try:
            _, result = actions.comparison(ctx, owner_token, run_id)
        except Exception as exc:
            return [gr.skip()] * 6 + [controls.warn(exc)]
        return [summary_table(result.summary),
                plots.confusion_figure(result.confusion_base, result.labels, "Base model", "Oranges"),
                plots.confusion_figure(result.confusion_tuned, result.labels, "Fine-tuned model"),
                result.per_class.round(3).rename(columns=PER_CLASS), filter_examples(result.examples, choice, query),
                gr.Column(visible=True), ""]

    def on_filter(owner_token, run_id, choice, query):
        result = ctx.comparisons.get(run_id) if run_id else None   # only once scored
        return filter_examples(result.examples if result is not None else None, choice, query)

    private = dict(api_visibility="private")
    own = functools.partial(controls.owned, ctx)
    page.select(own(refresh), [owner, run, seen], [run, classify_panel, panel.column, seen, *answers],
                **private)
    run.input(own(on_pick), [owner, run], [classify_panel, panel.column, *answers], **private)
    predict.click(own(on_predict), [owner, run, text, gold], [base, tuned, verdict_md, message], **private)
    text.submit(own(on_predict), [owner, run, text, gold], [base, tuned, verdict_md, message], **private)
    text.input(lambda: None, None, gold, **private)        # typed text has no known true label
    random.click(own(on_random), [owner, run], [text, gold, message], **private).then(
        own(on_predict), [owner, run, text, gold], [base, tuned, verdict_md, message], **private)
    # Show the results first, so the scoring's progress has a visible place to draw on.
    score.click(lambda: gr.Column(visible=True), None, results, **private).then(
        own(on_score), [owner, run, which, search],
        [summary, confusion_base, confusion_tuned, per_class, examples, results, message],
        concurrency_limit=2, **private)
    gr.on([which.change, search.submit], own(on_filter), [owner, run, which, search], examples, **private)
    return tab
