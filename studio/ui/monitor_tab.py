"""Tab 4, Monitor: live curves of the owner's training, polled from the job's snapshot.

A `gr.Timer` ticks about once a second while a job is being followed. Each tick takes the job's
immutable snapshot; if its version is the one this page already drew, every output is skipped
(no redraw, nothing sent). When the job ends the timer switches itself off. The page only reads:
closing it or refreshing never touches the job, and a refreshed page re-attaches through the
owner token (see `actions.watched`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import gradio as gr

from studio import plots
from studio.ui import actions, controls
from studio.ui.monitor_view import (final_markdown, overfitting_note, progress_markdown, run_label,
                                    snapshot_from_run, status_markdown)

LOSS_HEIGHT, SMALL_HEIGHT = 340, 280
from studio.ui.session import AppContext

IDLE = "No training yet. Set things up on the **Train** tab and press **Start**."


@dataclass
class MonitorTab:
    status: gr.Markdown
    overfit: gr.Markdown
    stop: gr.Button
    loss: gr.Plot
    metric: gr.Plot
    lr: gr.Plot
    runs: gr.Dropdown

    def outputs(self, shared: controls.Shared) -> list:
        """What a tick updates, in the order `render` returns values."""
        return [self.status, self.overfit, self.stop, self.loss, self.metric, self.lr, self.runs,
                shared.shown, shared.timer]


def run_choices(ctx: AppContext, owner: str) -> list[tuple[str, str]]:
    return [(run_label(r), r.id) for r in ctx.visible_runs(owner)[:50]]


def render(ctx: AppContext, owner: str, shown: int | None, *, force: bool = False) -> list:
    """Values for `MonitorTab.outputs`: skips everything when the snapshot did not change."""
    n = 9
    try:
        job, run = actions.watched(ctx, owner)
    except Exception as exc:
        return [controls.warn(exc), *[gr.skip()] * (n - 2), gr.Timer(active=False)]
    if run is None:
        return [IDLE, "", gr.update(interactive=False), *empty_figures(),
                gr.update(choices=run_choices(ctx, owner)), -1, gr.Timer(active=False)]
    snap = job.snapshot() if job is not None else snapshot_from_run(run)
    if job is not None and snap.version == shown and not force:
        return [gr.skip()] * n
    records, max_steps = snap.records, snap.max_steps or None
    status = run.status()
    # The run list is re-read when the shown run changes state (queued -> running after Resume, or
    # ended), not on every tick: it reads every run's status file.
    sess = ctx.session(owner)
    if snap.done or force or sess.listed != (run.id, snap.state):
        sess.listed = (run.id, snap.state)
        runs = gr.update(choices=run_choices(ctx, owner), value=run.id)
    else:
        runs = gr.skip()
    lines = [status_markdown(snap, run.id, status.get("name"))]
    if snap.state != "queued":
        lines.append(progress_markdown(snap))
    if snap.done:
        lines.append(final_markdown(run.final_metrics()))
    return ["\n\n".join(line for line in lines if line), overfitting_note(records) or "",
            gr.update(interactive=job is not None and not snap.done),
            plots.loss_figure(records, max_steps, height=LOSS_HEIGHT, ended=snap.done),
            plots.metric_figure(records, max_steps, height=SMALL_HEIGHT, ended=snap.done)
            if status.get("task") != "generate"
            else plots.empty_figure("Text generation is scored by its validation loss (above).",
                                    title="Validation scores", height=SMALL_HEIGHT),
            plots.lr_figure(records, max_steps, height=SMALL_HEIGHT, ended=snap.done), runs, snap.version,
            gr.Timer(active=not snap.done) if (snap.done or force) else gr.skip()]


def empty_figures() -> list:
    return [plots.empty_figure("No training yet.", title=title, height=height) for title, height in
            (("Loss", LOSS_HEIGHT), ("Validation scores", SMALL_HEIGHT), ("Learning rate", SMALL_HEIGHT))]


def build_monitor_tab(ctx: AppContext, shared: controls.Shared, page: gr.Tab) -> MonitorTab:
    owner = shared.owner
    with gr.Row(equal_height=False):
        with gr.Column(scale=4):
            status = gr.Markdown(IDLE, elem_id="monitor-status", elem_classes=["card"])
        with gr.Column(scale=1, min_width=170):
            stop = gr.Button("■ Stop training", variant="stop", elem_id="monitor-stop", interactive=False)
            message = controls.message_box(elem_id="monitor-message")
    overfit = gr.Markdown(elem_id="monitor-overfit")
    empty = empty_figures()
    loss = gr.Plot(empty[0], show_label=False, elem_id="monitor-loss")
    with gr.Row():
        metric = gr.Plot(empty[1], show_label=False, elem_id="monitor-metric")
        lr = gr.Plot(empty[2], show_label=False, elem_id="monitor-lr")
    with gr.Accordion("Your runs", open=True):
        with gr.Row(equal_height=False):
            runs = gr.Dropdown([], label="Open a run", scale=4, elem_id="monitor-runs",
                               info="Finished, stopped and interrupted runs stay on disk.")
            with gr.Column(scale=1, min_width=170):
                resume = gr.Button("Resume run", elem_id="monitor-resume")
        gr.Markdown(controls.text("monitor"), elem_classes=["tab-intro"])
    tab = MonitorTab(status, overfit, stop, loss, metric, lr, runs)
    outputs = tab.outputs(shared)

    def tick(owner_token, shown):
        return render(ctx, owner_token, shown)

    def open_run(owner_token, run_id):
        """Another run opened: its view, and the note about the last one ("Stopping run X…") gone."""
        if run_id:
            try:
                ctx.get_run(owner_token, run_id)          # hosted: only the owner's runs
            except Exception as exc:
                return [controls.warn(exc), *[gr.skip()] * len(outputs)]
            ctx.session(owner_token).watching = run_id
        return ["", *render(ctx, owner_token, None, force=True)]

    def on_resume(owner_token, run_id):
        try:
            if not run_id:
                raise actions.JobError("no run is selected.", hint="Pick a run in the list first.")
            ctx.get_run(owner_token, run_id)
            job = ctx.manager.resume(run_id, owner=owner_token)
            ctx.session(owner_token).watching = job.id
            return [controls.note(f"Resuming run <code>{job.id}</code>."),
                    *render(ctx, owner_token, None, force=True)]
        except Exception as exc:
            return [controls.warn(exc), *[gr.skip()] * len(outputs)]

    private = dict(api_visibility="private")
    own = functools.partial(controls.owned, ctx)
    shared.timer.tick(own(tick), [owner, shared.shown], outputs, show_progress="hidden",
                      concurrency_limit=None, **private)
    runs.input(own(open_run), [owner, runs], [message, *outputs], **private)
    stop.click(own(functools.partial(controls.stop_job, ctx)), owner, message, **private)
    resume.click(own(on_resume), [owner, runs], [message, *outputs], **private)
    page.select(own(lambda o: gr.update(choices=run_choices(ctx, o))), owner, runs, **private)
    return tab
