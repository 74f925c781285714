"""`build_app()`: the five tabs, the owner token, the Monitor timer and the page-load wiring.

Building is cheap and imports nothing heavy: torch and transformers are imported by handlers
when first needed, or by `AppContext.warm_up()` in the background once the page is served.
Every per-person value lives in the `AppContext` created here (sessions keyed by the owner
token in the browser's local storage), so two apps in one process share nothing.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")   # offline: no calls home

import gradio as gr  # noqa: E402

from studio.ui import api, compare_tab, controls, data_tab, model_tab, monitor_tab, train_tab  # noqa: E402
from studio.ui.session import AppContext  # noqa: E402

CSS_FILE = controls.ASSETS / "studio.css"
OWNER_KEY = "fine-tune-studio-owner"
HEADER = """<div class="studio-header">
  <div class="studio-title"><span class="studio-logo">FT</span> Fine-Tune Studio</div>
  <div class="studio-subtitle">Teach a small pretrained model your own task — on this computer, offline.
  <b>Model</b> → <b>Data</b> → <b>Train</b> → <b>Monitor</b> → <b>Compare</b>.</div>
</div>"""


def build_app(ctx: AppContext | None = None, **options) -> gr.Blocks:
    """The studio as a gradio Blocks. `options` go to `AppContext` (workspace, hosted,
    max_concurrent); the context is reachable as `demo.studio`."""
    ctx = ctx or AppContext(**options)
    with gr.Blocks(title="Fine-Tune Studio", fill_width=False) as demo:
        owner = gr.BrowserState(None, storage_key=OWNER_KEY)
        shown = gr.State(-1)              # progress version this page drew last
        timer = gr.Timer(1.0, active=False)
        gr.HTML(HEADER)
        with gr.Tabs(elem_id="studio-tabs") as tabs:
            shared = controls.Shared(owner, tabs, timer, shown)
            with gr.Tab("① Model", id="model", elem_id="tab-model") as page:
                model = model_tab.build_model_tab(ctx, shared, page)
            with gr.Tab("② Data", id="data", elem_id="tab-data") as page:
                data = data_tab.build_data_tab(ctx, shared, page)
            with gr.Tab("③ Train", id="train", elem_id="tab-train") as page:
                train = train_tab.build_train_tab(ctx, shared, page)
            with gr.Tab("④ Monitor", id="monitor", elem_id="tab-monitor") as page:
                monitor = monitor_tab.build_monitor_tab(ctx, shared, page)
            with gr.Tab("⑤ Compare", id="compare", elem_id="tab-compare") as page:
                compare_tab.build_compare_tab(ctx, shared, page)
        footer = gr.Markdown(elem_classes=["studio-footer"])
        api.register(ctx)

        def on_load(token, request: gr.Request):
            """First visit: mint an owner token. Every visit: bring the owner's session back,
            re-attach the Monitor to a running job and draw its whole curve so far (and open the
            Monitor tab then: that is what a page refreshed mid-run was showing)."""
            if not ctx.valid_token(token):
                token = ctx.new_owner()
            ctx.remember_page(getattr(request, "session_hash", None), token)
            sess = ctx.session(token)
            where = "hosted mode: your runs are private to this browser" if ctx.hosted else \
                f"runs are kept in `{ctx.workspace / 'runs'}`"
            monitor = monitor_tab.render(ctx, token, None, force=True)   # sets what it re-attached to
            return [token, *model_tab.restore(ctx, model, sess), *data_tab.restore(data, sess),
                    *train_tab.restore(train, sess), *monitor,
                    f"Fine-Tune Studio · {where} · one training at a time, others wait in line.",
                    gr.Tabs(selected="monitor") if live(sess.watching) else gr.skip()]

        def live(job_id: str | None) -> bool:
            """The job the Monitor re-attached to is training or waiting: the page opens on it."""
            job = ctx.manager.get(job_id) if job_id else None
            return job is not None and not job.snapshot().done

        demo.load(on_load, owner, [owner, *model.restore_outputs(), *data_tab.restore_outputs(data),
                                   *train.restore_outputs(), *monitor.outputs(shared), footer, tabs],
                  api_visibility="private", show_progress="hidden")
    demo.studio = ctx
    demo.owner_state = owner
    return demo


def theme() -> gr.themes.Base:
    """Indigo and slate, with system fonts (no web-font downloads: the studio runs offline)."""
    system = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
    mono = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
    return gr.themes.Soft(primary_hue="indigo", secondary_hue="orange", neutral_hue="slate",
                          font=system, font_mono=mono, radius_size="md")


def configure(demo: gr.Blocks, *, workspace=None, hosted: bool | None = None,
              max_concurrent: int | None = None) -> AppContext:
    """Apply command-line settings before launch. The owner tokens in browsers are encrypted
    with a secret kept in the workspace, so they (and each person's runs) survive restarts."""
    ctx: AppContext = demo.studio
    ctx.configure(workspace=workspace, hosted=hosted, max_concurrent=max_concurrent)
    demo.owner_state.secret = ctx.browser_secret()
    return ctx


def launch(demo: gr.Blocks, *, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           block: bool = True, quiet: bool = False, warm_up: bool = True):
    """Start serving, then warm up the heavy imports in the background (the page is already up)."""
    ctx: AppContext = demo.studio
    demo.queue(default_concurrency_limit=4)
    result = demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=True,
                         theme=theme(), css=CSS_FILE.read_text(encoding="utf-8"), ssr_mode=False,
                         quiet=quiet, max_file_size="200mb", footer_links=["api"])
    if warm_up:
        ctx.warm_up()
    if block:
        demo.block_thread()
    return result
