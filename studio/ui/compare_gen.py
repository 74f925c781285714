"""The Compare tab's panel for a text-generation run: base and tuned answers side by side.

Four parts, all over `gen_actions` (no model code here):
- one prompt, both answers streamed as they grow (a generator handler over `stream_both`);
- a two-column chat: one input, both models reply, each keeps its own history (one turn at a
  time: the box is cleared once when a message is taken, and a message sent while both still
  answer stays in the box with a note, instead of vanishing);
- the validation prompts answered by both, next to the reference, with loss and perplexity;
- the forgetting check: perplexity of both on general English text, in one plain sentence.
The Compare tab shows this panel when the picked run is a generation run.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from studio.config import GenerateSpec
from studio.ui import controls, gen_actions
from studio.ui.session import AppContext

METRICS = {"eval_loss": "validation loss", "perplexity": "perplexity"}
EXAMPLE_COLUMNS = {"prompt": "prompt", "reference": "reference answer", "base": "base model says",
                   "tuned": "fine-tuned says"}
WAIT = "Both models are still answering. Your message stays in the box: send it when they are done."


@dataclass
class GenerationPanel:
    column: gr.Column
    prompt: gr.Textbox
    go: gr.Button
    base: gr.Textbox
    tuned: gr.Textbox
    chat_base: gr.Chatbot
    chat_tuned: gr.Chatbot
    batch: gr.Button
    summary: gr.Dataframe
    examples: gr.Dataframe
    forget: gr.Button
    forget_text: gr.Markdown
    message: gr.HTML

    def answers(self) -> list:
        """What shows one run's answers: blanked (`blank()`) when another run is picked."""
        return [self.base, self.tuned, self.chat_base, self.chat_tuned, self.summary, self.examples,
                self.forget_text, self.message]

    @staticmethod
    def blank() -> list:
        hidden = gr.update(value=None, visible=False)
        return ["", "", [], [], hidden, hidden, "", ""]


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """metric | base | fine-tuned | change, rounded for reading (lower is better for both)."""
    return pd.DataFrame({"metric (lower is better)": summary["metric"].map(lambda m: METRICS.get(m, m)),
                         "base": summary["base"].map("{:.3f}".format),
                         "fine-tuned": summary["tuned"].map("{:.3f}".format),
                         "change": summary["delta"].map("{:+.3f}".format)})


def forgetting_markdown(report) -> str:
    return (f"**Perplexity on general English text** (how surprised a model is by ordinary text; lower is "
            f"better): base **{report.base_perplexity:.2f}**, fine-tuned **{report.tuned_perplexity:.2f}** "
            f"({gen_actions.percent(report.change, sign=True)}).\n\n"
            + gen_actions.forgetting_sentence(report.base_perplexity, report.tuned_perplexity))


def build_generation_panel(ctx: AppContext, owner: gr.BrowserState, run: gr.Dropdown) -> GenerationPanel:
    """The panel (hidden until a generation run is picked) and its event wiring."""
    with gr.Column(visible=False) as column:
        gr.Markdown(controls.text("compare_generate"), elem_classes=["tab-intro"])
        with gr.Row(equal_height=True):
            prompt = gr.Textbox(label="Prompt", lines=2, scale=4, elem_id="compare-gen-prompt",
                                placeholder="Ask both models something, e.g. What is your name?")
            go = gr.Button("Generate", variant="primary", scale=1, elem_id="compare-gen-go")
        with gr.Row():
            max_new = controls.control(GenerateSpec, "max_new_tokens", kind="slider", step=1, maximum=256,
                                       elem_id="compare-gen-max-new-tokens")
            temperature = controls.control(GenerateSpec, "temperature", elem_id="compare-gen-temperature")
            top_p = controls.control(GenerateSpec, "top_p", elem_id="compare-gen-top-p")
        with gr.Row(equal_height=True):
            base = gr.Textbox(label="Base model (before fine-tuning)", lines=6, interactive=False,
                              elem_id="compare-gen-base")
            tuned = gr.Textbox(label="Fine-tuned model", lines=6, interactive=False, elem_id="compare-gen-tuned")
        message = controls.message_box(elem_id="compare-gen-message")

        gr.Markdown("### Chat with both\nEach model keeps its own side of the conversation.")
        # A copy button on each message, and no share or copy-all buttons in the corner: share
        # posts to Hugging Face discussions (nothing to share offline), and the row of them sat
        # on top of the first message. (gradio always adds its trash can, which clears one side.)
        chat = dict(height=320, buttons=["copy"])
        with gr.Row():
            chat_base = gr.Chatbot(label="Base model", elem_id="compare-chat-base", **chat)
            chat_tuned = gr.Chatbot(label="Fine-tuned model", elem_id="compare-chat-tuned", **chat)
        with gr.Row(equal_height=True):
            say = gr.Textbox(show_label=False, placeholder="Say something to both…", scale=5,
                             elem_id="compare-chat-input")
            send = gr.Button("Send", variant="primary", scale=1, elem_id="compare-chat-send")
            answering = gr.State(False)
            clear = gr.Button("Clear", scale=1, elem_id="compare-chat-clear")

        gr.Markdown("### The validation prompts")
        with gr.Row(equal_height=True):
            how_many = gr.Number(8, label="How many prompts to answer", precision=0, minimum=1, maximum=200,
                                 scale=1, info="Loss and perplexity always use all of them.")
            batch = gr.Button("Run on the validation prompts", scale=2, elem_id="compare-gen-batch")
        summary = gr.Dataframe(label="Both models on the held-out answers", interactive=False,
                               elem_id="compare-gen-summary", visible=False)
        examples = gr.Dataframe(interactive=False, wrap=True, max_height=420, elem_id="compare-gen-examples",
                                visible=False)

        gr.Markdown("### Did it forget general language?")
        forget = gr.Button("Forgetting check", elem_id="compare-gen-forget")
        forget_text = gr.Markdown(elem_id="compare-gen-forget-text")

    def settings(n, t, p) -> GenerateSpec:
        return gen_actions.settings_from(n, t, p)

    def on_generate(owner_token, run_id, text, n, t, p):
        try:
            for b, f in gen_actions.stream(ctx, owner_token, run_id, text, settings(n, t, p)):
                yield b, f, ""
        except Exception as exc:
            yield gr.skip(), gr.skip(), controls.warn(exc)

    def on_chat(owner_token, run_id, text, base_hist, tuned_hist, answering, n, t, p):
        """Yields (chat_base, chat_tuned, say, send, answering, message). `answering` (a State)
        is True from the moment a message is taken until both answers are done."""
        keep = gr.skip()
        if answering:       # one turn at a time: the new message waits in the box, in plain sight
            yield keep, keep, keep, keep, keep, controls.note(WAIT)
            return
        free = (gr.update(interactive=True), False)
        try:
            turns = gen_actions.chat_stream(ctx, owner_token, run_id, text, base_hist, tuned_hist,
                                            settings(n, t, p))
            b, f = next(turns)      # checks the message and loads both models; the box keeps it on error
            yield b, f, "", gr.update(interactive=False), True, ""        # taken: clear the box, once
            for b, f in turns:
                yield b, f, keep, keep, keep, keep    # tokens only: what is typed meanwhile stays
            yield keep, keep, keep, *free, keep
        except Exception as exc:
            yield keep, keep, keep, *free, controls.warn(exc)

    def on_batch(request: gr.Request, owner_token, run_id, n_prompts, n, t, p, progress=gr.Progress()):
        try:
            token = ctx.owner_for(owner_token, getattr(request, "session_hash", None))
            progress(0.0, desc="Loading both models")
            found, scores = gen_actions.batch(ctx, token, run_id, n_prompts, settings(n, t, p),
                                              progress=lambda f, msg: progress(f, desc=msg))
        except Exception as exc:
            return gr.skip(), gr.skip(), controls.warn(exc)
        return (gr.update(value=summary_table(scores), visible=True),
                gr.update(value=found.rename(columns=EXAMPLE_COLUMNS), visible=True), "")

    def on_forget(owner_token, run_id):
        try:
            return forgetting_markdown(gen_actions.forgetting(ctx, owner_token, run_id)), ""
        except Exception as exc:
            return gr.skip(), controls.warn(exc)

    private = dict(api_visibility="private")
    stream = functools.partial(controls.owned_stream, ctx)
    decoding = [max_new, temperature, top_p]
    gr.on([go.click, prompt.submit], stream(on_generate), [owner, run, prompt, *decoding],
          [base, tuned, message], concurrency_limit=2, **private)
    # "multiple": a send during an answer reaches on_chat (which says why it waits) instead of
    # being dropped by the page, which by default ignores a trigger while its event is pending.
    gr.on([send.click, say.submit], stream(on_chat), [owner, run, say, chat_base, chat_tuned, answering,
          *decoding], [chat_base, chat_tuned, say, send, answering, message], concurrency_limit=2,
          trigger_mode="multiple", **private)
    clear.click(lambda: ([], [], ""), None, [chat_base, chat_tuned, say], **private)
    # Show the tables first: gradio draws progress over an event's outputs, and hidden ones
    # would leave the first (and slowest: both models load) run without any.
    batch.click(lambda: (gr.update(visible=True),) * 2, None, [summary, examples], **private).then(
        on_batch, [owner, run, how_many, *decoding], [summary, examples, message], concurrency_limit=1,
        **private)
    forget.click(controls.owned(ctx, on_forget), [owner, run], [forget_text, message], concurrency_limit=1,
                 **private)
    return GenerationPanel(column, prompt, go, base, tuned, chat_base, chat_tuned, batch, summary, examples,
                           forget, forget_text, message)
