"""The `studio` command end to end, with every network route closed."""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, tiny_config, write_tiny_csv

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           # Any attempt to reach the network goes to a closed local port and fails at once.
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}


def studio(*args, workspace, timeout=600):
    env = {**os.environ, **OFFLINE}
    return subprocess.run([sys.executable, "-m", "studio.cli", "--workspace", str(workspace), *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def test_train_predict_eval_runs_offline(tmp_path, tiny_bert):
    data = write_tiny_csv(tmp_path / "d.csv", n=48)
    config = tiny_config(data, tiny_bert, epochs=8, learning_rate=3e-3)
    config.save(tmp_path / "run.yaml")
    done = studio("train", str(tmp_path / "run.yaml"), workspace=tmp_path / "ws")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Expected duration" in done.stderr
    # The bar starts at the step already reached: no rate counts steps done before it was drawn.
    # (A run over in a blink shows "?step/s": tqdm has not timed a step yet.)
    assert re.search(r"(\?|[0-9.]+)step/s", done.stderr), done.stderr[-2000:]
    rates = [float(r) for r in re.findall(r"([0-9.]+)step/s", done.stderr)]
    assert all(rate < 2000 for rate in rates), rates
    run_dir = next((tmp_path / "ws" / "runs").iterdir())
    assert f"run folder: {run_dir}" in done.stdout
    for name in ("config.yaml", "status.json", "metrics.jsonl", "metrics.json", "model/COMPLETE"):
        assert (run_dir / name).exists(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["wall_time_seconds"] > 0 and 0 <= metrics["eval"]["accuracy"] <= 1

    pred = studio("predict", run_dir.name, "--text", "good thing number 7", workspace=tmp_path / "ws")
    assert pred.returncode == 0, pred.stderr[-2000:]
    out = json.loads(pred.stdout)
    assert set(out["tuned"]) == {"bad", "good"} and abs(sum(out["tuned"].values()) - 1) < 1e-4
    assert out["tuned_label"] == "good"

    ev = studio("eval", str(run_dir), "--data", str(data), workspace=tmp_path / "ws")
    assert ev.returncode == 0, ev.stderr[-2000:]
    result = json.loads(ev.stdout)
    summary = {row["metric"]: row for row in result["summary"]}
    assert summary["accuracy"]["tuned"] > 0.9
    assert len(result["confusion_tuned"]) == 2

    listed = studio("runs", workspace=tmp_path / "ws")
    assert run_dir.name in listed.stdout and "completed" in listed.stdout


@pytest.mark.parametrize("args,message", [
    (["train", "missing.yaml"], "no config file"),
    (["predict", "no-such-run", "--text", "x"], "no run 'no-such-run'"),
    (["predict", "../etc", "--text", "x"], "not a run id"),
])
def test_cli_errors_are_one_readable_line(tmp_path, args, message):
    done = studio(*args, workspace=tmp_path / "ws", timeout=120)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_minilm_on_the_reviews_sample_beats_zero_shot(tmp_path):
    """The acceptance run: bundled sample + offline MiniLM, headless, tuned beats the zero-shot base."""
    (tmp_path / "run.yaml").write_text(
        "task: classify\nmodel: minilm\ndata:\n  path: assets/samples/reviews.csv\n"
        "train:\n  save_checkpoints: false\n", encoding="utf-8")
    done = studio("train", str(tmp_path / "run.yaml"), workspace=tmp_path / "ws", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = next((tmp_path / "ws" / "runs").iterdir())
    sys.path.insert(0, str(ROOT))
    from studio.compare import validation_comparison
    from studio.training.runs import Run
    result = validation_comparison(Run(run_dir))
    summary = result.summary.set_index("metric")
    assert summary.loc["accuracy", "tuned"] > summary.loc["accuracy", "base"] + 0.05, summary


def test_the_checkpoint_mtime_warning_is_dropped_and_other_warnings_kept():
    """Checkpoints written < 1 s apart make transformers warn that the filesystem's mtime is not
    reliable (it then orders them by step, which is right): noise, dropped; nothing else is."""
    import logging
    from studio.training.trainer import quiet_library_progress_bars
    quiet_library_progress_bars()
    quiet_library_progress_bars()   # idempotent: one filter, not two
    logger = logging.getLogger("transformers.trainer_utils")
    record = lambda msg: logger.makeRecord(logger.name, logging.WARNING, __file__, 0, msg, None, None)
    assert not logger.filter(record("mtime may not be reliable on this filesystem, falling back"))
    assert logger.filter(record("some other warning"))
    assert len(logger.filters) == 1
