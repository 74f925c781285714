"""The Data tab's view of instruction-tuning data: format, columns, and what the model will read.

Pure value builders (no event wiring): they turn the session's `gen` summary (from
`studio.gendata.summarize`, see `gen_actions.prepare`) into component values. The tab module
decides which of these to show: the generation view or the classification one.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from studio import plots
from studio.config import DATA_FORMATS
from studio.ui.gen_actions import FORMAT_NAMES
from studio.ui.session import Session

# (shown, value) for the format override: "auto" plus the three generation layouts. Short, so a
# third of the row shows them whole; the summary line spells the chosen one out (FORMAT_NAMES).
SHORT_FORMAT_NAMES = {"auto": "auto-detect", "prompt_response": "prompt / response",
                      "alpaca": "alpaca columns", "chat": "chat messages"}
FORMAT_CHOICES = [(SHORT_FORMAT_NAMES[f], f) for f in DATA_FORMATS if f in SHORT_FORMAT_NAMES]
LEARNED_COLOR = {"learned": "#c7d2fe"}
PREVIEW_COLUMNS = {"rendered": "what the model reads (chat template applied)",
                   "learned": "the part it learns to write", "tokens": "tokens"}


def picker_values(sess: Session) -> list:
    """Format dropdown, prompt and response column pickers, from the session's pinned spec."""
    frame, spec = sess.frame, sess.data_spec
    cols = [str(c) for c in frame.columns] if frame is not None else []
    if spec is None:
        return ["auto", gr.update(choices=cols, value=None), gr.update(choices=cols, value=None)]
    return [spec.format if spec.format in dict(FORMAT_CHOICES).values() else "auto",
            gr.update(choices=cols, value=spec.prompt_column),
            gr.update(choices=cols, value=spec.response_column, interactive=spec.format != "chat")]


def empty_checks() -> list:
    """Values for `check_outputs` when there is nothing (yet) to show."""
    return [gr.skip(), plots.empty_figure("No examples yet.", title="Length in tokens"), "", "",
            None, None]


def check_values(sess: Session) -> list:
    """Length histogram, numbers, warnings, the first training example highlighted and the rendered preview."""
    gen = sess.gen
    if gen is None:
        return empty_checks()
    stats = gen["stats"]
    numbers = (f"**{gen['rows_train']:,}** conversations to learn from · **{gen['rows_validation']:,}** "
               f"held out to check on · format **{FORMAT_NAMES.get(gen['format'], gen['format'])}** · "
               f"median **{stats.median_tokens:.0f}** tokens, longest **{stats.max_tokens:,}** · "
               f"**{stats.trained_tokens:,}** answer tokens to learn from (max length {stats.max_length})")
    warnings = "\n".join(f"- ⚠ {w}" for w in gen["warnings"])
    warnings = f"#### Worth a look\n{warnings}" if warnings else "✓ No problems found in this data."
    shown = gen["preview"].rename(columns=PREVIEW_COLUMNS)
    return [gr.skip(), plots.token_length_figure(stats.lengths, stats.max_length, stats.truncated_share,
                                                 noun="conversations"),
            numbers, warnings, [(text, tag) for text, tag in gen["segments"]],
            gr.update(value=shown if isinstance(shown, pd.DataFrame) else None)]
