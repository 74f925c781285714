"""The same job through the studio engine, with the engine's own defaults.

Only what the case is about is set: the task, the model, the data files (text/label columns or
the alpaca format, and the held-out file as the validation set), the method, the freeze depth and
the epochs. For generation the batch size (4) and max_length (1024, so no example is cut) follow
the baseline setting as well, so tokens/s compare like for like. Everything else (learning rate,
batching, padding, evaluation and checkpoint schedule, threads, caching) is the engine's choice.

The run goes through `JobManager.submit` / the job thread exactly as the UI and CLI start it, with
one extra `TimingCallback` so its epochs are timed the same way as the baselines'. If the engine
stops calling Trainer callbacks (a custom loop), epoch times fall back to its progress records.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from benchmarks.flops import block_params, count_tokens, flops_per_token, head_params
from benchmarks.timing import TimingCallback


class StudioProbe(TimingCallback):
    """The timing callback, plus a hold on the model and training dataset the engine really used
    (the job drops its own references when it finishes, to give the memory back)."""

    def __init__(self) -> None:
        super().__init__()
        self.model = None
        self.dataset = None

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        self.model = model
        self.dataset = getattr(train_dataloader, "dataset", None)


def build_config(spec: dict):
    from studio.config import DataSpec, RunConfig, TrainSpec
    case = spec["case"]
    train = {"method": case["method"], "epochs": case["epochs"], "seed": spec["seed"]}
    if case["method"] == "freeze":
        train["freeze_depth"] = case["freeze_depth"]
    if case["task"] == "classify":
        data = DataSpec(path=spec["train_path"], validation_path=spec["test_path"], format="text_label",
                        text_column="text", label_column="label")
    else:
        data = DataSpec(path=spec["train_path"], validation_path=spec["test_path"], format="alpaca")
        train.update(batch_size=case["batch_size"], max_length=case["max_length"])
    return RunConfig(task=case["task"], model=spec["model"], name=f"bench {case['name']}",
                     data=data, train=TrainSpec(**train))


def _epochs_from_records(records, train_begin: float | None, started: float) -> list[float]:
    """Fallback epoch durations from the engine's epoch_end records (these include evaluation)."""
    ends = [r["time"] for r in records if r.get("event") == "epoch_end"]
    previous, out = train_begin or started, []
    for end in ends:
        out.append(round(end - previous, 3))
        previous = end
    return out


def run(spec: dict, *, fp32: bool = False) -> dict:
    """The case through the engine; `fp32` keeps it in fp32 on a CPU where it would pick bf16."""
    if not fp32:
        return _run(spec)
    from studio.training.device import training_precision
    before = os.environ.get("STUDIO_CPU_BF16")
    os.environ["STUDIO_CPU_BF16"] = "0"
    training_precision.cache_clear()
    try:
        return _run(spec)
    finally:
        if before is None:
            os.environ.pop("STUDIO_CPU_BF16")
        else:
            os.environ["STUDIO_CPU_BF16"] = before
        training_precision.cache_clear()


def _run(spec: dict) -> dict:
    from studio.training.device import training_precision
    from studio.training.manager import JobManager
    from studio.training.runs import RunStore

    case = spec["case"]
    config = build_config(spec)
    timing = StudioProbe()
    with tempfile.TemporaryDirectory(dir=spec.get("work_dir")) as tmp:
        manager = JobManager(RunStore(Path(tmp) / "runs"))
        t0 = time.time()
        job = manager.submit(config, extra_callbacks=[timing])
        estimate, estimate_at, phases = None, None, []
        while not job.wait(0.25).done:   # watch the engine's phases and its pre-start estimate
            snap = job.snapshot()
            if estimate is None and snap.estimate_seconds:
                estimate, estimate_at = snap.estimate_seconds, round(time.time() - t0, 3)
            if snap.message and (not phases or phases[-1][1] != snap.message) and len(phases) < 50:
                phases.append((round(time.time() - t0, 2), snap.message[:80]))
        wall = time.time() - t0
        snap = job.snapshot()
        manager.shutdown()
        if snap.state != "completed":
            raise RuntimeError(f"studio job ended {snap.state}: {snap.error}")
        if estimate is None and snap.estimate_seconds:
            estimate = snap.estimate_seconds
        summary = timing.summary(t0)
        if not summary["epoch_s"]:
            summary.update(epoch_s=_epochs_from_records(snap.records, timing.train_begin, t0),
                           epoch_cpu_s=[], timing_source="progress records")
        result = {**summary, "precision": training_precision(case["task"]).dtype, "wall_s": round(wall, 3), "estimate_s": estimate, "estimate_seen_at_s": estimate_at,
                  "phases": phases,
                  "engine_wall_s": (job.final_metrics or {}).get("wall_time_seconds"),
                  **_throughput_reported(snap.records), **_model_facts(timing, case, spec)}
        result.update(_quality(job, timing.model, case, spec))
    return result


def _throughput_reported(records) -> dict:
    """What the engine itself reported (mean of its loss records), for comparison with ours."""
    sps = [r["samples_per_second"] for r in records if r.get("samples_per_second")]
    tps = [r["tokens_per_second"] for r in records if r.get("tokens_per_second")]
    return {"engine_samples_per_s": round(sum(sps) / len(sps), 2) if sps else None,
            "engine_tokens_per_s": round(sum(tps) / len(tps), 2) if tps else None}


def _model_facts(probe: StudioProbe, case: dict, spec: dict) -> dict:
    """Parameter counts, FLOPs per token and real tokens per epoch of the engine's own dataset."""
    model = probe.model
    if model is None:
        raise RuntimeError("the engine never called on_train_begin, so the harness cannot see its model")
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    head = head_params(model) if case["task"] == "generate" else 0
    facts = {"trained_params": int(trained), "total_params": int(total),
             "flops_per_token": flops_per_token(block_params(model), case["method"], case["freeze_depth"], head)}
    dataset = probe.dataset
    columns = getattr(dataset, "column_names", None) or []
    if "input_ids" in columns:
        facts["tokens_per_epoch"] = int(sum(len(ids) for ids in dataset["input_ids"]))
        facts["tokens_source"] = "engine dataset"
    elif case["task"] == "classify":   # the engine feeds something else: count the texts ourselves
        import pandas as pd
        from transformers import AutoTokenizer
        texts = pd.read_csv(spec["train_path"])["text"].astype(str).tolist()
        tok = AutoTokenizer.from_pretrained(spec["model_folder"])
        facts["tokens_per_epoch"] = count_tokens(tok, texts, case["max_length"])
        facts["tokens_source"] = "harness tokenization"
    return facts


def _quality(job, model, case: dict, spec: dict) -> dict:
    evals = (job.final_metrics or {}).get("eval", {})
    out = {"eval_loss_engine": evals.get("loss")}
    if case["task"] == "classify":
        out["accuracy"] = round(float(evals["accuracy"]), 4) if "accuracy" in evals else None
        out["eval_loss"] = evals.get("loss")
    else:
        import json
        from benchmarks.baseline_hf import response_loss
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(spec["model_folder"])
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        test = json.loads(open(spec["test_path"], encoding="utf-8").read())
        out["eval_loss"] = round(response_loss(model, tok, test, case["max_length"]), 4)
    return out
