"""The training job: progress grows, stop is prompt, failures are recorded, runs survive crashes."""

import json
import os
import time

import pytest
from transformers import TrainerCallback

from conftest import tiny_config, write_tiny_csv
from studio.training.manager import JobManager
from studio.training.runs import RunStore


@pytest.fixture
def manager(tmp_path):
    m = JobManager(RunStore(tmp_path / "runs"))
    yield m
    m.shutdown()


def test_job_completes_and_writes_a_complete_run(tmp_path, tiny_bert, manager):
    config = tiny_config(write_tiny_csv(tmp_path / "d.csv"), tiny_bert, save_checkpoints=True)
    job = manager.submit(config, owner="alice")
    snap = job.wait(120)
    assert snap.state == "completed", snap.error
    run = job.run
    assert run.status()["state"] == "completed"
    assert run.has_model() and (run.model_dir / "model.safetensors").exists()
    assert not list(run.model_dir.glob("*.bin")), "only safetensors are written"
    metrics = json.loads((run.dir / "metrics.json").read_text())
    assert metrics["wall_time_seconds"] > 0 and "accuracy" in metrics["eval"]
    losses = [r for r in run.metrics_log() if "loss" in r]
    evals = [r for r in run.metrics_log() if "eval_loss" in r]
    assert losses and len(evals) == 2, "one evaluation per epoch"
    assert run.last_checkpoint() is not None
    checkpoints = sorted(int(c.name.split("-")[1]) for c in run.checkpoints_dir.glob("checkpoint-*"))
    assert checkpoints and checkpoints[-1] < snap.step, \
        "epoch 1 is checkpointed; after the last step nothing is left to resume (the model is saved)"
    from studio.config import RunConfig
    assert RunConfig.load(run.config_path) == config


class _SlowSteps(TrainerCallback):
    """Makes each step take a while, so a test can act mid-training."""
    def __init__(self, delay=0.15):
        self.delay = delay

    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(self.delay)


def _wait_for(predicate, timeout=60.0):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_progress_log_grows_while_running(tmp_path, tiny_bert, manager):
    config = tiny_config(write_tiny_csv(tmp_path / "d.csv", n=96), tiny_bert, epochs=3, batch_size=4)
    job = manager.submit(config, extra_callbacks=[_SlowSteps(0.05)])
    assert _wait_for(lambda: len(job.snapshot().records) >= 2)
    first = job.snapshot()
    assert first.state in ("running", "stopping")
    assert _wait_for(lambda: len(job.snapshot().records) > len(first.records))
    later = job.snapshot()
    assert later.version > first.version
    assert later.records[: len(first.records)] == first.records, "append-only"
    job.stop()
    job.wait(60)


def test_stop_ends_training_within_one_step(tmp_path, tiny_bert, manager):
    config = tiny_config(write_tiny_csv(tmp_path / "d.csv", n=200), tiny_bert, epochs=5, batch_size=4)
    job = manager.submit(config, extra_callbacks=[_SlowSteps(0.1)])
    assert _wait_for(lambda: job.snapshot().step >= 3)
    step_at_stop = job.snapshot().step
    job.stop()
    snap = job.wait(60)
    assert snap.state == "stopped"
    assert snap.step <= step_at_stop + 1
    assert not [r for r in snap.records if r.get("event") == "epoch_end"], \
        "a stop part-way through epoch 1 is not an epoch boundary (the chart would mark one)"
    assert job.run.status()["state"] == "stopped"
    assert job.run.has_model(), "a stopped run keeps what it learned"


class _Boom(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise RuntimeError("injected failure at step 3")


def test_exception_mid_training_marks_failed_and_next_run_works(tmp_path, tiny_bert, manager):
    data = write_tiny_csv(tmp_path / "d.csv")
    job = manager.submit(tiny_config(data, tiny_bert), extra_callbacks=[_Boom()])
    snap = job.wait(60)
    assert snap.state == "failed"
    assert "injected failure at step 3" in snap.error
    assert "injected failure" in job.run.status()["error"]
    again = manager.submit(tiny_config(data, tiny_bert, epochs=1))
    assert again.wait(60).state == "completed"


def test_bad_input_fails_the_job_with_a_readable_message(tmp_path, tiny_bert, manager):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nonly one class,a\nanother,a\n", encoding="utf-8")
    snap = manager.submit(tiny_config(bad, tiny_bert)).wait(60)
    assert snap.state == "failed" and "class" in snap.error.lower()
    assert "Traceback" not in snap.error


def test_queue_runs_one_at_a_time_and_double_submit_is_one_job(tmp_path, tiny_bert, manager):
    data = write_tiny_csv(tmp_path / "d.csv", n=64)
    first = manager.submit(tiny_config(data, tiny_bert, epochs=2), owner="a", extra_callbacks=[_SlowSteps(0.05)])
    again = manager.submit(tiny_config(data, tiny_bert, epochs=2), owner="a")
    assert again is first, "a double-click makes one job"
    second = manager.submit(tiny_config(data, tiny_bert, epochs=1), owner="b")
    assert second.snapshot().state == "queued" and second.snapshot().queue_position == 1
    assert first.wait(120).state == "completed"
    assert second.wait(120).state == "completed"
    assert second.snapshot().started_at >= first.snapshot().finished_at - 0.5


def test_crashed_run_is_listed_as_interrupted_and_resumes(tmp_path, tiny_bert):
    store = RunStore(tmp_path / "runs")
    config = tiny_config(write_tiny_csv(tmp_path / "d.csv"), tiny_bert, epochs=2, save_checkpoints=True)
    manager = JobManager(store)
    job = manager.submit(config)
    assert job.wait(120).state == "completed"
    # Simulate a crash mid-run: status says running, owned by a process that no longer exists,
    # a half-written checkpoint (no trainer_state.json) and a torn last metrics line.
    run = job.run
    run.write_status("running")
    status = json.loads((run.dir / "status.json").read_text())
    status["pid"] = 999_999_999
    (run.dir / "status.json").write_text(json.dumps(status))
    first_ckpt = sorted(run.checkpoints_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[0]
    for ckpt in run.checkpoints_dir.glob("checkpoint-*"):
        if ckpt != first_ckpt:
            (ckpt / "trainer_state.json").unlink()
    with open(run.dir / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 99, "loss": 0.')

    reopened = RunStore(tmp_path / "runs")
    listed = reopened.list()
    assert [r.id for r in listed] == [run.id]
    assert listed[0].status()["state"] == "interrupted"
    assert listed[0].last_checkpoint() == first_ckpt
    assert all("step" in r for r in listed[0].metrics_log()), "torn line skipped"

    resumed = JobManager(reopened).resume(run.id)
    assert resumed.snapshot().records, "the curve up to the checkpoint is kept"
    assert resumed.wait(120).state == "completed"
    assert reopened.get(run.id).status()["state"] == "completed"
    assert os.getpid() == reopened.get(run.id).status()["pid"]


def test_early_stopping_ends_when_the_metric_stalls(tmp_path, tiny_bert, manager):
    # lr 0 -> the metric never improves; patience 1 stops after the second evaluation.
    config = tiny_config(write_tiny_csv(tmp_path / "d.csv"), tiny_bert, epochs=6, learning_rate=1e-7,
                         early_stopping_patience=1)
    snap = manager.submit(config).wait(120)
    assert snap.state == "completed"
    evals = [r for r in snap.records if "eval_loss" in r]
    assert len(evals) == 2, "stopped after the first evaluation without improvement"
    assert any(r.get("event") == "early_stop" for r in snap.records)
    assert snap.step < snap.max_steps


def test_evaluation_every_n_steps(tmp_path, tiny_bert, manager):
    config = tiny_config(write_tiny_csv(tmp_path / "d.csv", n=64), tiny_bert, epochs=1, batch_size=4,
                         eval_strategy="steps", eval_steps=4)
    snap = manager.submit(config).wait(120)
    assert snap.state == "completed"
    steps = [r["step"] for r in snap.records if "eval_loss" in r]
    assert steps[:3] == [4, 8, 12]


def test_stopping_a_queued_job_removes_it_without_running(tmp_path, tiny_bert, manager):
    data = write_tiny_csv(tmp_path / "d.csv", n=64)
    first = manager.submit(tiny_config(data, tiny_bert, epochs=2), owner="a", extra_callbacks=[_SlowSteps(0.05)])
    second = manager.submit(tiny_config(data, tiny_bert, epochs=1), owner="b")
    manager.stop(second.id, owner="b")
    snap = second.wait(5)
    assert snap.state == "stopped" and snap.started_at is None
    assert second.run.status()["state"] == "stopped"
    assert first.wait(120).state == "completed"
