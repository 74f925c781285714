"""The app's named API endpoints, driven through gradio_client against an in-process server.

A tiny random BERT (conftest) trains in a few seconds, so the whole start -> status -> predict
loop runs for real. Also: the app module imports without torch, owners are kept apart in hosted
mode, and a double Start makes one job while a second config waits in line.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, write_tiny_csv

pytest.importorskip("gradio_client")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_studio(workspace: Path):
    """Launch a fresh studio on a free port (no background warm-up); yield (url, demo); close it."""
    from studio.ui.layout import build_app, configure, launch
    demo = build_app()
    configure(demo, workspace=workspace)
    port = free_port()
    launch(demo, port=port, block=False, quiet=True, warm_up=False)
    yield f"http://127.0.0.1:{port}/", demo
    demo.studio.manager.shutdown(timeout=30)
    demo.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_bert):
    yield from serve_studio(tmp_path_factory.mktemp("workspace"))


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory) -> Path:
    return write_tiny_csv(tmp_path_factory.mktemp("data") / "tiny.csv")


def tiny_yaml(model: Path, **train) -> str:
    settings = {"method": "full", "epochs": 2, "batch_size": 8, "max_length": 32, "learning_rate": 1e-3,
                "save_checkpoints": False, **train}
    inner = ", ".join(f"{k}: {v}" for k, v in settings.items())
    return f"model: {model}\nname: tiny\ntrain: {{{inner}}}\n"


def wait_for(client, owner, job_id, states, timeout=90.0) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        status = client.predict(job_id, owner, api_name="/status")
        if status["state"] in states:
            return status
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} never reached {states}; last: {status}")


def test_named_endpoints_are_published(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/load_data", "/start", "/status", "/stop", "/predict", "/runs"} <= names


def test_load_data_detects_columns_and_splits(client, tiny_csv):
    info = client.predict(str(tiny_csv), "", "", 0.25, 0, "alice", api_name="/load_data")
    assert (info["text_column"], info["label_column"]) == ("text", "label")
    assert info["labels"] == ["bad", "good"]
    assert info["rows_train"] + info["rows_validation"] == 48
    assert info["rows_validation"] == 12 and info["preview"][0][1] in ("good", "bad")


@pytest.mark.parametrize("source, words", [
    ("/no/such/file.csv", "there is no file"),
    ("", "no data file"),
])
def test_load_data_errors_are_readable_messages(client, source, words):
    with pytest.raises(Exception) as info:
        client.predict(source, owner="alice", api_name="/load_data")
    assert words in str(info.value) and "Traceback" not in str(info.value)


def test_start_status_predict_end_to_end(client, tiny_csv, tiny_bert):
    client.predict(str(tiny_csv), owner="bob", api_name="/load_data")
    started = client.predict(tiny_yaml(tiny_bert), "bob", api_name="/start")
    assert started["state"] in ("queued", "running") and started["job_id"]
    done = wait_for(client, "bob", started["job_id"], ("completed", "failed"))
    assert done["state"] == "completed", done["error"]
    assert done["losses"] and done["evals"] and done["has_model"]
    assert done["step"] == done["max_steps"] > 0
    assert done["final"]["eval"]["accuracy"] >= 0
    assert any(r["run_id"] == started["job_id"] for r in client.predict("bob", api_name="/runs"))
    result = client.predict("good thing number 7", started["job_id"], "bob", api_name="/predict")
    assert result["labels"] == ["bad", "good"]
    for side in ("base", "tuned"):
        assert abs(sum(result[side].values()) - 1.0) < 1e-4
        assert result[f"{side}_label"] in result["labels"]


def test_double_start_makes_one_job_and_a_second_config_queues(client, tiny_csv, tiny_bert):
    client.predict(str(tiny_csv), owner="carol", api_name="/load_data")
    slow = tiny_yaml(tiny_bert, epochs=60)
    first = client.predict(slow, "carol", api_name="/start")
    again = client.predict(slow, "carol", api_name="/start")
    assert again["job_id"] == first["job_id"], "a double click must not start a second job"
    other = client.predict(tiny_yaml(tiny_bert, epochs=1), "carol", api_name="/start")
    assert other["job_id"] != first["job_id"]
    assert other["state"] == "queued" and other["queue_position"] == 1
    stopped = client.predict(other["job_id"], "carol", api_name="/stop")
    assert stopped["state"] == "stopped"
    client.predict(first["job_id"], "carol", api_name="/stop")
    assert wait_for(client, "carol", first["job_id"], ("stopped", "completed"))["state"] == "stopped"


def test_the_app_answers_other_requests_while_a_job_trains(client, tiny_csv, tiny_bert):
    """Training runs in its own thread and torch releases the GIL in its kernels, so previewing
    data, listing runs and polling stay quick while a job trains (a functional check with a
    generous bound, not a speed target)."""
    client.predict(str(tiny_csv), owner="dave", api_name="/load_data")
    job = client.predict(tiny_yaml(tiny_bert, epochs=100), "dave", api_name="/start")
    try:
        wait_for(client, "dave", job["job_id"], ("running",))
        slowest = 0.0
        for _ in range(3):
            for call in (lambda: client.predict(str(tiny_csv), owner="dave", api_name="/load_data"),
                         lambda: client.predict("dave", api_name="/runs"),
                         lambda: client.predict(job["job_id"], "dave", api_name="/status")):
                started = time.time()
                call()
                slowest = max(slowest, time.time() - started)
        status = client.predict(job["job_id"], "dave", api_name="/status")
        assert status["state"] == "running" and status["step"] > 0, "the job kept training meanwhile"
        assert slowest < 10, f"a request took {slowest:.1f} s while training"
    finally:
        client.predict(job["job_id"], "dave", api_name="/stop")
        wait_for(client, "dave", job["job_id"], ("stopped", "completed"))


def test_status_with_no_job_says_so(client):
    assert client.predict(owner="nobody-yet", api_name="/status")["state"] == "none"
    with pytest.raises(Exception, match="nothing to stop|no training to stop"):
        client.predict(owner="nobody-yet", api_name="/stop")


def test_hosted_mode_keeps_owners_apart(tmp_path, tiny_csv):
    from studio.errors import DataError, JobError
    from studio.ui.session import AppContext
    ctx = AppContext(workspace=tmp_path / "ws", hosted=True)
    with pytest.raises(DataError, match="not one of your uploads"):
        ctx.data_path("alice", str(tiny_csv))               # the server's disk is off limits
    assert ctx.data_path("alice", "reviews.csv").name == "reviews.csv"   # samples are fine
    from studio.config import RunConfig
    run = ctx.store.create(RunConfig(name="mine"), owner="alice")
    assert [r.id for r in ctx.visible_runs("alice")] == [run.id]
    assert ctx.visible_runs("bob") == []
    with pytest.raises(JobError):
        ctx.get_run("bob", run.id)
    local = AppContext(workspace=tmp_path / "ws")
    assert [r.id for r in local.visible_runs("bob")] == [run.id], "local mode: one user sees all"


def test_hosted_mode_jobs_answer_only_their_owner(tmp_path, tiny_bert):
    from conftest import tiny_config
    from studio.errors import JobError
    from studio.ui import actions
    from studio.ui.session import AppContext
    ctx = AppContext(workspace=tmp_path / "ws", hosted=True)
    job = actions.start(ctx, "alice", tiny_config(Path("assets/samples/reviews.csv"), tiny_bert, epochs=50))
    try:
        for peek in (actions.status, actions.stop):
            with pytest.raises(JobError):
                peek(ctx, "bob", job.id)
        assert actions.status(ctx, "alice", job.id)["job_id"] == job.id
        assert actions.status(ctx, "bob")["state"] == "none", "bob's page does not re-attach to alice's job"
    finally:
        ctx.manager.shutdown(timeout=60)


def test_apps_share_no_sessions():
    from studio.ui.session import AppContext
    a, b = AppContext(), AppContext()
    a.session("owner-1").model = "something-else"
    assert b.session("owner-1").model == "minilm"


def test_app_module_imports_without_torch():
    code = ("import sys, app; heavy = [m for m in ('torch', 'transformers', 'studio.training.job', "
            "'studio.freezing', 'studio.compare') if m in sys.modules]; print(heavy); "
            "assert not heavy, heavy; assert app.demo is not None")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_monitor_redraws_only_when_the_snapshot_changes(tmp_path, tiny_bert):
    import gradio as gr
    from conftest import tiny_config
    from studio.ui import actions, monitor_tab
    from studio.ui.session import AppContext
    ctx = AppContext(workspace=tmp_path / "ws")
    job = actions.start(ctx, "dora-the-owner", tiny_config(write_tiny_csv(tmp_path / "d.csv"), tiny_bert))
    try:
        assert job.wait(120).state == "completed"
        first = monitor_tab.render(ctx, "dora-the-owner", None, force=True)
        version = first[-2]
        assert version == job.snapshot().version and "Finished" in first[0]
        assert first[-1].active is False, "a finished job switches the timer off"
        again = monitor_tab.render(ctx, "dora-the-owner", version)
        assert all(value == gr.skip() for value in again), "same version: nothing is sent"
    finally:
        ctx.manager.shutdown(timeout=30)


def test_ui_modules_keep_no_per_user_state_at_module_level():
    """Per-owner state lives in the AppContext a build_app() call creates; UI modules may hold
    constants (UPPER_CASE) but no mutable containers or sessions of their own."""
    import importlib
    import pkgutil

    import studio.ui
    from studio.ui.session import AppContext, Session
    found = []
    for info in pkgutil.iter_modules(studio.ui.__path__, "studio.ui."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if name.startswith("__") or name.isupper():
                continue
            if isinstance(value, (dict, list, set, AppContext, Session)):
                found.append(f"{info.name}.{name}")
    assert not found, f"module-level state in UI modules: {found}"
    first, second = AppContext(), AppContext()
    assert first.session(first.new_owner()) is not second.session(second.new_owner())


def test_a_model_picked_but_not_loaded_is_marked_not_in_use(tmp_path):
    """Picking another catalog model changes nothing until Load model: the card says so and names
    the model still in use (it used to show the old model's card as if the pick had applied)."""
    from studio.ui.model_tab import card_markdown
    from studio.ui.session import AppContext
    ctx = AppContext(workspace=tmp_path / "ws")
    ctx.skeletons.info("minilm")
    loaded = card_markdown(ctx, "minilm", in_use="minilm")
    assert "✓ Loaded" in loaded and "Not in use" not in loaded
    picked = card_markdown(ctx, "smollm2-135m-instruct", in_use="minilm")
    assert "Not in use yet" in picked and "✓ Loaded" not in picked
    assert "all-MiniLM-L6-v2" in picked and "Load model" in picked
