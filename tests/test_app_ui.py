"""The tabs' own handlers, called the way gradio calls them, on a built (not served) studio.

`Page` finds a handler by name among the app's events and fills its inputs with each component's
default value, the page's owner token and the values a test names by `elem_id`. It returns the
outputs keyed by `elem_id`, so a test reads what one browser page would show next. No server,
no browser, no training: these cover what the user reads after each click.
"""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pytest



class Page:
    """One browser page of `demo`: call(handler name, elem_id=value, ...) -> {elem_id: output}."""

    def __init__(self, demo, owner: str = "page-owner-0001") -> None:
        self.demo, self.ctx, self.owner = demo, demo.studio, owner
        self.request = SimpleNamespace(session_hash="page-1")

    def event(self, name: str, trigger: str | None = None):
        """The event handler called `name` (the first one; or the one `trigger` fires: "id.click")."""
        for fn in self.demo.fns.values():
            if fn.name != name:
                continue
            fired = {f"{getattr(block, 'elem_id', None)}.{event}" for block, event in
                     ((self.demo.blocks.get(t[0]), t[1]) for t in fn.targets)}
            if trigger is None or trigger in fired:
                return fn
        raise LookupError(f"no event handler {name} ({trigger})")

    def call(self, name: str, trigger: str | None = None, **values) -> dict:
        fn = self.event(name, trigger)

        def value(component):
            if component is self.demo.owner_state:
                return self.owner
            key = (getattr(component, "elem_id", None) or "").replace("-", "_")
            return values.get(key, getattr(component, "value", None))

        args = [{c: value(c) for c in fn.inputs}] if fn.inputs_as_dict else [value(c) for c in fn.inputs]
        out = fn.fn(self.request, *args)
        out = out if isinstance(out, (list, tuple)) else [out]
        return {getattr(c, "elem_id", None) or f"#{i}": v for i, (c, v) in enumerate(zip(fn.outputs, out))}

    def upload(self, path) -> dict:
        return self.call("load_upload", data_upload=str(path))


def shown(value):
    """What an output sets: the value of a gr.update(...) / component, or the value itself."""
    if isinstance(value, dict):
        return value.get("value")
    return getattr(value, "value", value)


@pytest.fixture
def page(tmp_path):
    from studio.ui.layout import build_app
    demo = build_app(workspace=tmp_path / "ws")
    yield Page(demo)
    if demo.studio._manager is not None:
        demo.studio.manager.shutdown(timeout=10)


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def many_classes(path):
    """60 rows, each with its own label: the engine refuses it as a label column."""
    return write(path, "text,label\n" + "".join(f"row number {i} says hello,tag{i}\n" for i in range(60)))


# -- bug: a refused file, then Start ---------------------------------------------------------------
def test_after_a_refused_file_the_train_tab_and_start_agree_and_no_run_is_made(page, tmp_path):
    from studio.ui import train_tab
    page.call("load", data_sample="reviews.csv")
    assert page.ctx.session(page.owner).has_data
    out = page.upload(many_classes(tmp_path / "manyclasses.csv"))
    assert "different values" in out["data-message"]
    note = train_tab.data_note(page.ctx, page.owner)
    assert "manyclasses.csv" in note and "reviews" not in note and "Data** tab" in note
    started = page.call("on_start")["train-message"]
    assert "Data tab" in started and "Started run" not in started
    assert page.ctx.store.list() == [], "no run folder for a run that cannot work"
    page.call("load", data_sample="reviews.csv")           # good data again: Start may go
    assert "reviews.csv" in train_tab.data_note(page.ctx, page.owner)


@pytest.mark.parametrize("name, content, words", [
    ("headeronly.csv", "text,label\n", "no rows"),
    ("empty.csv", "", "empty"),
    ("ragged.csv", "text,label\na,b\nc,d,e,f\n", "4 values"),
    ("binary.csv", bytes(range(256)) * 8, "binary"),
])
def test_a_file_that_cannot_be_read_clears_the_summary_and_preview(page, tmp_path, name, content, words):
    from studio.ui import train_tab
    page.call("load", data_sample="reviews.csv")
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = page.upload(path)
    assert words in out["data-message"]
    assert "reviews.csv" not in out["data-summary"] and "Nothing is loaded" in out["data-summary"]
    assert shown(out["data-preview"]) is None and out["data-preview"]["visible"] is False
    assert name in train_tab.data_note(page.ctx, page.owner)
    assert "Data tab" in page.call("on_start")["train-message"]
    assert page.ctx.store.list() == []


def test_the_api_refuses_to_start_on_refused_data_too(page, tmp_path):
    from studio.errors import DataError
    from studio.ui import actions
    with pytest.raises(Exception):
        actions.load_data(page.ctx, page.owner, str(many_classes(tmp_path / "manyclasses.csv")))
    with pytest.raises(DataError, match="Data tab"):
        actions.config_from_yaml(page.ctx, page.owner, "train: {epochs: 1}")
    assert actions.config_from_yaml(page.ctx, page.owner, "data: {path: assets/samples/reviews.csv}")


# -- bug: Start with a bad setting ------------------------------------------------------------------
def test_start_clears_the_old_note_before_anything_can_fail(page):
    """Gradio checks number ranges before the handler runs; the step before it empties the box."""
    first = page.event("clear_message", "train-start.click")
    assert first.inputs == [] and [c.elem_id for c in first.outputs] == ["train-message"]
    assert first.fn() == ""


def test_the_apps_own_setting_errors_use_the_ui_label(page):
    message = page.call("on_start", trainspec_learning_rate=0)["train-message"]
    assert "Learning rate: must be between" in message and "trainspec." not in message


# -- bug: the preset label goes stale --------------------------------------------------------------
@pytest.mark.parametrize("changes, custom", [
    ({"trainspec_freeze_depth": 0}, True),
    ({"trainspec_method": "lora"}, True),
    ({"trainspec_batch_size": 32}, False),          # Balanced does not set the batch size
    ({}, False),
])
def test_the_preset_shows_custom_once_settings_leave_it(page, changes, custom):
    out = page.call("apply_preset", train_preset="Balanced")       # depth = blocks - 4 = 2 (6 assumed)
    values = {"trainspec_freeze_depth": shown(out["trainspec-freeze-depth"]), **changes}
    radio = page.call("match_preset", train_preset="Balanced", **values)["train-preset"]
    if custom:
        assert radio["value"] is None and "Custom" in radio["info"]
    else:
        assert radio == gr.skip()


# -- bug: the exported YAML goes stale -------------------------------------------------------------
def test_changing_any_setting_hides_the_exported_yaml(page):
    fn = page.event("forget_export")
    triggers = {page.demo.blocks[t[0]].elem_id for t in fn.targets}
    assert {"trainspec-learning-rate", "trainspec-method", "train-run-name"} <= triggers
    assert all(o["visible"] is False and o["value"] is None for o in fn.fn())


def test_a_column_choice_the_check_refuses_also_stops_start(page):
    """Before, the old columns stayed in the session and Start trained on them unseen."""
    from studio.ui import train_tab
    page.call("load", data_sample="reviews.csv")
    out = page.call("check", data_text_column="text", data_label_column="text")
    assert "studio-error" in out["data-message"]
    assert "not usable yet" in train_tab.data_note(page.ctx, page.owner)
    assert "cannot be used yet" in page.call("on_start")["train-message"]
    page.call("check", data_text_column="text", data_label_column="label")
    assert "not usable" not in train_tab.data_note(page.ctx, page.owner)


# -- bug: the Monitor's note about one run stayed next to another ---------------------------------
def test_opening_another_run_clears_the_note_about_the_last_one(page):
    import json
    folder = page.ctx.workspace / "runs" / "20250101-100000-other-aaaa"
    folder.mkdir(parents=True)
    json.dump({"state": "stopped", "task": "classify", "name": "other"}, (folder / "status.json").open("w"))
    out = page.call("open_run", monitor_runs=folder.name)
    assert out["monitor-message"] == "", "'Stopping run X…' must not stay next to run Y"
    assert "other" in shown(out["monitor-status"]) and "Stopped" in shown(out["monitor-status"])


def test_the_run_list_follows_a_resumed_run_from_queued_to_running(page, monkeypatch):
    """After Resume the list said "queued" until the run ended, under a status line saying Training."""
    import json
    import os
    from studio.training.progress import Snapshot
    from studio.ui import monitor_tab
    folder = page.ctx.workspace / "runs" / "20250101-100000-again-aaaa"
    folder.mkdir(parents=True)
    status = {"state": "queued", "task": "classify", "name": "again", "pid": os.getpid()}
    json.dump(status, (folder / "status.json").open("w"))
    run = page.ctx.get_run(page.owner, folder.name)
    class FakeJob:   # what the Monitor reads of a job
        pass
    job = FakeJob()
    job.snapshot, job.run, job.id = (lambda: Snapshot(1, (), "queued")), run, run.id
    monkeypatch.setattr(monitor_tab.actions, "watched", lambda ctx, owner: (job, run))
    from studio.training import job as job_module
    monkeypatch.setitem(job_module._LIVE, run.id, job)   # a live job: its status is not "interrupted"

    def listed(shown_version, **kw):
        runs = monitor_tab.render(page.ctx, page.owner, shown_version, **kw)[6]
        return None if runs is gr.skip() or runs == gr.skip() else [label for label, _ in runs["choices"]]

    assert "queued" in listed(None, force=True)[0]
    assert listed(0) is None, "the same state: the list is not re-read on every tick"
    json.dump({**status, "state": "running"}, (folder / "status.json").open("w"))
    job.snapshot = lambda: Snapshot(2, (), "running", step=1, max_steps=10)
    assert "running" in listed(1)[0]
    job.snapshot = lambda: Snapshot(3, (), "running", step=2, max_steps=10)
    assert listed(2) is None


# -- the layer diagram's parameter line ------------------------------------------------------------
@pytest.mark.parametrize("method, says_adapters", [("lora", True), ("full", False), ("freeze", False)])
def test_the_parameter_line_explains_a_total_above_the_model_cards(page, method, says_adapters):
    """LoRA adds weights, so "N of M parameters learn" has an M above the Model tab's count: the
    line names the two parts. Without adapters M is the model's own count and nothing is added."""
    from studio.ui.train_tab import diagram_values
    _, line = diagram_values(page.ctx, page.owner, {"method": method})
    assert "parameters learn" in line
    assert ("new weights (the adapters" in line) is says_adapters, line
    if says_adapters:
        model = page.ctx.skeletons.info(page.ctx.peek(page.owner).model).summary["params_m"]
        assert f"model's {model:g}M plus" in line, line
