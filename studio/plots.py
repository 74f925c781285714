"""Pure functions from data to plotly figures: the studio's charts, with no gradio in sight.

Each function takes plain data (progress records, counts, lengths, layer groups, a confusion
matrix) and returns a `plotly.graph_objects.Figure`. Nothing here reads files, holds state or
knows about sessions, so every chart can be tested by building it from a list and looking at
its traces. Empty inputs give a figure with a short message instead of an empty frame.
"""

from __future__ import annotations

import math

from typing import Iterable, Mapping, Sequence

import plotly.graph_objects as go

# One palette for the whole studio: training in indigo, validation in orange, frozen in slate.
TRAIN = "#4f46e5"
EVAL = "#ea580c"
METRIC_2 = "#0d9488"
FROZEN = "#cbd5e1"
TRAINABLE = "#6366f1"
GRID = "#e5e7eb"
HEIGHT = 320


def _layout(fig: go.Figure, *, title: str = "", height: int = HEIGHT, x: str = "", y: str = "") -> go.Figure:
    """The shared look: white background, light grid, legend above the plot, tight margins."""
    fig.update_layout(
        template="plotly_white", height=height, title={"text": title, "x": 0.01, "font": {"size": 15}},
        margin={"l": 56, "r": 20, "t": 56 if title else 24, "b": 48},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
        font={"family": "ui-sans-serif, system-ui, sans-serif", "size": 12}, hovermode="x unified")
    fig.update_xaxes(title_text=x, gridcolor=GRID, zeroline=False)
    fig.update_yaxes(title_text=y, gridcolor=GRID, zeroline=False)
    return fig


def empty_figure(message: str, *, title: str = "", height: int = HEIGHT) -> go.Figure:
    """A blank chart that says why it is blank ("No training yet", ...)."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 14, "color": "#64748b"})
    _layout(fig, title=title, height=height)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def series(records: Iterable[Mapping], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of every record that has a number under `key`."""
    xs, ys = [], []
    for r in records:
        value = r.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            xs.append(int(r.get("step", 0)))
            ys.append(float(value))
    return xs, ys


def epoch_boundaries(records: Iterable[Mapping]) -> list[tuple[int, float]]:
    """(step, epoch) of every epoch_end record, in order, without repeats."""
    seen, out = set(), []
    for r in records:
        if r.get("event") == "epoch_end" and r.get("step") not in seen:
            seen.add(r.get("step"))
            out.append((int(r["step"]), float(r.get("epoch") or 0.0)))
    return out


MAX_EPOCH_LABELS = 10   # more "epoch N" labels than this overlap on a chart of the page's width


def _mark_epochs(fig: go.Figure, records: Sequence[Mapping]) -> None:
    """A dotted line at every epoch's end; on long runs only every k-th one (and the last) is
    labelled, so the labels never run into each other."""
    boundaries = epoch_boundaries(records)
    every = math.ceil(len(boundaries) / MAX_EPOCH_LABELS) or 1
    for i, (step, epoch) in enumerate(boundaries):
        labelled = (i + 1) % every == 0 or i == len(boundaries) - 1
        fig.add_vline(x=step, line={"color": "#94a3b8", "dash": "dot", "width": 1},
                      annotation_text=f"epoch {round(epoch):g}" if labelled else None,
                      annotation_position="top left", annotation_font={"size": 10, "color": "#64748b"})


def _x_range(fig: go.Figure, max_steps: int | None) -> None:
    if max_steps:  # a fixed axis makes the curve visibly grow towards the end
        fig.update_xaxes(range=[0, max_steps * 1.02])


# What an empty chart says once its run has ended: nothing more is coming, so not "waiting".
ENDED_EMPTY = "The run ended before this was logged."


def loss_figure(records: Sequence[Mapping], max_steps: int | None = None, *, height: int = HEIGHT,
                ended: bool = False) -> go.Figure:
    """Training loss (line) and validation loss (markers + line) against step, epochs marked."""
    train_x, train_y = series(records, "loss")
    eval_x, eval_y = series(records, "eval_loss")
    if not train_x and not eval_x:
        return empty_figure(ENDED_EMPTY if ended else "Waiting for the first loss value…", title="Loss",
                            height=height)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=train_x, y=train_y, name="training loss", mode="lines+markers",
                             line={"color": TRAIN, "width": 2}, marker={"size": 4}))
    fig.add_trace(go.Scatter(x=eval_x, y=eval_y, name="validation loss", mode="lines+markers",
                             line={"color": EVAL, "width": 2, "dash": "dash"}, marker={"size": 8}))
    _mark_epochs(fig, records)
    _x_range(fig, max_steps)
    return _layout(fig, title="Loss (lower is better)", x="step", y="loss", height=height)


METRIC_NAMES = {"eval_accuracy": "accuracy", "eval_macro_f1": "macro-F1"}


def metric_figure(records: Sequence[Mapping], max_steps: int | None = None,
                  keys: Mapping[str, str] = METRIC_NAMES, *, height: int = HEIGHT,
                  ended: bool = False) -> go.Figure:
    """Validation metrics (accuracy, macro-F1) against step, on a 0..1 axis. Later lines are
    dotted and drawn thinner, so one that equals another (balanced classes often give the same
    accuracy and macro-F1) still shows under it."""
    fig = go.Figure()
    for i, ((key, name), color) in enumerate(zip(keys.items(), (EVAL, METRIC_2, TRAIN))):
        xs, ys = series(records, key)
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, name=name, mode="lines+markers",
                                     line={"color": color, "width": 3 if i == 0 else 2,
                                           "dash": "solid" if i == 0 else "dot"},
                                     marker={"size": 9 if i == 0 else 6}))
    if not fig.data:
        return empty_figure(ENDED_EMPTY if ended else "Scores appear after the first evaluation.",
                            title="Validation scores", height=height)
    _mark_epochs(fig, records)
    _x_range(fig, max_steps)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    return _layout(fig, title="Validation scores (higher is better)", x="step", y="score", height=height)


def lr_figure(records: Sequence[Mapping], max_steps: int | None = None, *, height: int = HEIGHT,
              ended: bool = False) -> go.Figure:
    """The learning rate the optimizer used at each logged step (warmup ramp, then decay)."""
    xs, ys = series(records, "learning_rate")
    if not xs:
        return empty_figure(ENDED_EMPTY if ended else "The learning-rate schedule appears with the first step.",
                            title="Learning rate", height=height)
    fig = go.Figure(go.Scatter(x=xs, y=ys, name="learning rate", mode="lines",
                               line={"color": METRIC_2, "width": 2}, fill="tozeroy",
                               fillcolor="rgba(13,148,136,0.08)"))
    _x_range(fig, max_steps)
    fig.update_yaxes(exponentformat="e")
    return _layout(fig, title="Learning rate", x="step", y="learning rate", height=height)


def label_distribution_figure(label_counts: Mapping[str, Mapping[str, int]]) -> go.Figure:
    """Rows per label, one bar group per label and one colour per split (train, validation)."""
    if not any(label_counts.values()):
        return empty_figure("No labels yet.", title="Labels")
    fig = go.Figure()
    for (split, counts), color in zip(label_counts.items(), (TRAIN, EVAL, METRIC_2)):
        labels = list(counts)
        fig.add_trace(go.Bar(x=labels, y=[counts[k] for k in labels], name=split, marker_color=color,
                             text=[counts[k] for k in labels], textposition="outside", cliponaxis=False))
    fig.update_layout(barmode="group", hovermode="closest")
    fig.update_xaxes(type="category")
    top = max((n for counts in label_counts.values() for n in counts.values()), default=1)
    fig.update_yaxes(range=[0, top * 1.15])   # room for the numbers above the bars
    return _layout(fig, title="Rows per label", x="label", y="rows")


def token_length_figure(lengths: Sequence[int], max_length: int, truncated_share: float,
                        noun: str = "texts") -> go.Figure:
    """Histogram of training text lengths in tokens, the max-length cut-off as a red line.
    `noun` names what is counted ("texts", or "conversations" for instruction tuning)."""
    if not lengths:
        return empty_figure(f"No {noun} yet.", title="Length in tokens")
    fig = go.Figure(go.Histogram(x=list(lengths), marker_color=TRAIN, opacity=0.85, name=noun,
                                 nbinsx=min(60, max(10, len(set(lengths))))))
    fig.add_vline(x=max_length, line={"color": "#dc2626", "width": 2},
                  annotation_text=f"max length {max_length}", annotation_position="top right",
                  annotation_font={"color": "#dc2626", "size": 11})
    cut = f"{truncated_share:.0%} of {noun} are cut" if truncated_share else f"no {noun.rstrip('s')} is cut"
    fig.update_layout(hovermode="closest", bargap=0.05, showlegend=False)
    title = "Text length" if noun == "texts" else f"{noun.capitalize()} length"
    return _layout(fig, title=f"{title} in tokens ({cut})", x="tokens", y=noun)


def short_count(n: float) -> str:
    """22.7M, 338.7K, 912: parameter counts as people say them."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= size:
            return f"{n / size:.1f}{suffix}"
    return f"{int(n)}"


def layer_stack_figure(groups: Sequence, *, height: int | None = None) -> go.Figure:
    """The model as a stack, embeddings at the bottom and the head on top. Each row is one layer
    group at full width, split into the share that learns (colour) and the share that stays
    frozen (grey), so a small head reads as clearly as the big embeddings. `groups` are objects
    with .name, .trainable, .frozen (e.g. `studio.freezing.LayerGroup`)."""
    if not groups:
        return empty_figure("Load a model to see its layers.", title="Which layers learn")
    names = [f"{g.name} · {short_count(g.trainable + g.frozen)}" for g in groups]
    totals = [max(1, g.trainable + g.frozen) for g in groups]
    learn = [g.trainable / t for g, t in zip(groups, totals)]
    fig = go.Figure()
    fig.add_trace(go.Bar(y=names, x=learn, orientation="h", name="learns", marker_color=TRAINABLE,
                         customdata=[g.trainable for g in groups],
                         text=[short_count(g.trainable) if g.trainable else "" for g in groups],
                         textposition="inside", insidetextanchor="middle",
                         hovertemplate="%{y}: %{customdata:,} parameters learn<extra></extra>"))
    fig.add_trace(go.Bar(y=names, x=[1 - v for v in learn], orientation="h", name="frozen",
                         marker_color=FROZEN, customdata=[g.frozen for g in groups],
                         hovertemplate="%{y}: %{customdata:,} parameters frozen<extra></extra>"))
    fig.update_layout(barmode="stack", hovermode="closest", bargap=0.18)
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    fig.update_yaxes(categoryorder="array", categoryarray=names, type="category")
    return _layout(fig, title="Which layers learn", height=height or max(240, 30 * len(groups) + 100),
                   x="share of each layer's parameters that learns", y="")


def confusion_figure(matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str,
                     colorscale: str = "Blues") -> go.Figure:
    """A confusion matrix as a heatmap: rows are the true label, columns the predicted one."""
    if not len(labels):
        return empty_figure("Nothing to show yet.", title=title)
    z = [[int(v) for v in row] for row in matrix]
    fig = go.Figure(go.Heatmap(z=z, x=list(labels), y=list(labels), colorscale=colorscale, showscale=False,
                               text=z, texttemplate="%{text}",
                               hovertemplate="true %{y} · predicted %{x}: %{z}<extra></extra>"))
    fig.update_xaxes(type="category", side="bottom")
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_layout(hovermode="closest")
    side = max(300, 60 * len(labels) + 140)
    return _layout(fig, title=title, height=min(side, 560), x="predicted", y="true label")
