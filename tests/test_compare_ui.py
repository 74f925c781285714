"""The Compare tab's handlers, called the way gradio calls them (no server, no model).

Runs are fake folders (a status.json and a COMPLETE marker: all the run picker reads); the chat's
model is a stand-in generator. Covers: which run the picker shows as runs finish, what a run change
clears, that the chat input is cleared once per message (and a message sent while both models
still answer is kept, not dropped), that the validation-prompt progress has a visible place to
draw on the first run, and that the forgetting text rounds one change one way.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import gradio as gr
import pytest

OWNER = "compare-ui-owner"
PAGE = SimpleNamespace(session_hash=None)      # what a gr.Request looks like to the handlers


def add_run(workspace, run_id: str, task: str = "classify") -> str:
    folder = workspace / "runs" / run_id
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "COMPLETE").write_text("", encoding="utf-8")
    status = {"state": "completed", "task": task, "name": task, "run_id": run_id}
    (folder / "status.json").write_text(json.dumps(status), encoding="utf-8")
    return run_id


@pytest.fixture
def app(tmp_path):
    from studio.ui.layout import build_app
    from studio.ui.session import AppContext
    demo = build_app(AppContext(workspace=tmp_path / "ws"))
    demo.workspace = tmp_path / "ws"
    return demo


def handler(demo, name: str, trigger: str | None = None):
    """The registered function called `name` (optionally: the one fired by that event)."""
    found = [f for f in demo.fns.values() if f.name == name
             and (trigger is None or any(t[1] == trigger for t in f.targets))]
    assert len(found) == 1, [f.name for f in demo.fns.values()]
    return found[0]


def outputs(fn, values) -> dict:
    """A handler's return values by the elem_id of their component; its first gr.State as "state"."""
    named = {}
    for block, value in zip(fn.outputs, values):
        key = "state" if isinstance(block, gr.State) else block.elem_id
        if key is not None and key not in named:
            named[key] = value
    return named


def is_skip(value) -> bool:
    return value == gr.skip()


def test_compare_follows_newly_finished_runs_but_keeps_a_hand_picked_one(app):
    ws = app.workspace
    refresh = handler(app, "refresh")
    classify = add_run(ws, "20250101-100000-reviews-aaaa")
    first = outputs(refresh, refresh.fn(PAGE, OWNER, None, None))
    assert first["compare-run"]["value"] == classify
    seen = first["state"]

    generate = add_run(ws, "20250101-110000-ux-gen-bbbb", task="generate")   # a newer run finishes
    second = outputs(refresh, refresh.fn(PAGE, OWNER, classify, seen))
    assert second["compare-run"]["value"] == generate, "a newly finished run is shown"
    seen = second["state"]
    assert set(seen) == {classify, generate}

    third = outputs(refresh, refresh.fn(PAGE, OWNER, classify, seen))   # the user picked the old one
    assert third["compare-run"]["value"] == classify, "a choice made by hand after the run finished stays"


def test_a_run_change_clears_the_previous_runs_answers(app):
    ws = app.workspace
    refresh, pick = handler(app, "refresh"), handler(app, "on_pick")
    old = add_run(ws, "20250101-100000-reviews-aaaa")
    new = add_run(ws, "20250101-110000-ux-gen-bbbb", task="generate")
    switched = outputs(refresh, refresh.fn(PAGE, OWNER, old, [old]))
    assert switched["compare-run"]["value"] == new
    for elem in ("compare-base", "compare-tuned", "compare-verdict", "compare-gen-base", "compare-gen-tuned",
                 "compare-chat-base", "compare-chat-tuned", "compare-gen-forget-text"):
        assert switched[elem] in (None, "", []), (elem, switched[elem])
    for elem in ("compare-gen-summary", "compare-gen-examples"):
        assert switched[elem]["visible"] is False
    kept = outputs(refresh, refresh.fn(PAGE, OWNER, new, [old, new]))
    assert is_skip(kept["compare-base"]) and is_skip(kept["compare-chat-base"]), "same run: answers stay"
    by_hand = outputs(pick, pick.fn(PAGE, OWNER, old))
    assert by_hand["compare-verdict"] == "" and by_hand["compare-chat-tuned"] == []


def fake_chat(ctx, owner, run_id, message, base_history, tuned_history, settings=None):
    from studio.errors import JobError
    if not message.strip():
        raise JobError("there is no message.")
    turn = [{"role": "user", "content": message}]
    for answer in ("", "My", "My name", "My name is Pip."):
        yield turn + [{"role": "assistant", "content": answer}], turn + [{"role": "assistant", "content": answer}]


def test_chat_clears_the_input_once_and_keeps_a_message_sent_while_answering(app, monkeypatch):
    from studio.ui import gen_actions
    monkeypatch.setattr(gen_actions, "chat_stream", fake_chat)
    chat = handler(app, "on_chat")
    assert chat.trigger_mode == "multiple", "a second send must reach the handler, not vanish in the page"
    steps = [outputs(chat, v) for v in chat.fn(PAGE, OWNER, "run", "What is your name?", [], [], False, 8, 0, 1)]
    says = [s["compare-chat-input"] for s in steps]
    assert says[0] == "" and all(is_skip(v) for v in says[1:]), "cleared once, not on every token"
    answers = [s["compare-chat-tuned"] for s in steps if not is_skip(s["compare-chat-tuned"])]
    assert answers[-1][-1] == {"role": "assistant", "content": "My name is Pip."}
    answering = [s["state"] for s in steps if not is_skip(s["state"])]
    assert answering == [True, False], "answering from the taken message until both are done"
    assert steps[0]["compare-chat-send"]["interactive"] is False
    assert steps[-1]["compare-chat-send"]["interactive"] is True

    blocked = [outputs(chat, v) for v in chat.fn(PAGE, OWNER, "run", "And again?", [], [], True, 8, 0, 1)]
    assert len(blocked) == 1 and is_skip(blocked[0]["compare-chat-input"]), "the text stays in the box"
    assert is_skip(blocked[0]["compare-chat-base"]) and "still answering" in blocked[0]["compare-gen-message"]

    empty = [outputs(chat, v) for v in chat.fn(PAGE, OWNER, "run", "  ", [], [], False, 8, 0, 1)]
    assert "no message" in empty[-1]["compare-gen-message"]
    assert [s["state"] for s in empty] == [False] and is_skip(empty[0]["compare-chat-input"])


def test_validation_prompt_progress_has_a_visible_place_on_the_first_run(app):
    batch = handler(app, "on_batch")
    tables = {b.elem_id for b in batch.outputs} & {"compare-gen-summary", "compare-gen-examples"}
    assert tables, "the batch fills the two tables"
    assert batch.trigger_after is not None, "the tables are shown by a step before the batch"
    before = app.fns[batch.trigger_after]
    assert [(app.blocks[t[0]].elem_id, t[1]) for t in before.targets] == [("compare-gen-batch", "click")]
    shown = outputs(before, before.fn())
    assert {k for k, v in shown.items() if v.get("visible") is True} >= tables


def test_forgetting_text_rounds_the_change_one_way():
    from studio.generation import ForgettingReport
    from studio.ui import compare_gen
    text = compare_gen.forgetting_markdown(ForgettingReport(10.0, 10.054, 100, "general.txt"))
    assert text.count("+0.5%") == 2 and "+1%" not in text, text
    text = compare_gen.forgetting_markdown(ForgettingReport(10.0, 12.0, 100, "general.txt"))
    assert "+20%" in text and "20% more surprising" in text, text
