"""What the Monitor tab says about a run, as plain text: status, progress line, overfitting note.

Pure functions over a `Snapshot` (live job) or a run folder read back from disk, so they are
tested without gradio. A run on disk becomes a Snapshot too, which lets one renderer draw both.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from studio.training.progress import Snapshot

# state -> (pill colour class, words). Pills are plain HTML + CSS: no emoji fonts needed.
STATE_BADGES = {
    "queued": ("idle", "Waiting in line"),
    "running": ("run", "Training"),
    "stopping": ("warn", "Stopping"),
    "completed": ("ok", "Finished"),
    "stopped": ("idle", "Stopped"),
    "failed": ("bad", "Failed"),
    "interrupted": ("warn", "Interrupted"),
    "broken": ("bad", "Unreadable run folder"),
}


def pill(state: str) -> str:
    kind, words = STATE_BADGES.get(state, ("idle", state))
    return f"<span class='pill pill-{kind}'>{words}</span>"


def format_duration(seconds: float | None) -> str:
    """1:05 for 65 s, 1:01:05 for an hour and more, '–' when unknown."""
    if seconds is None:
        return "–"
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def latest(records: Sequence[Mapping], key: str):
    for r in reversed(records):
        if isinstance(r.get(key), (int, float)):
            return r[key]
    return None


def status_markdown(snap: Snapshot, run_id: str, name: str | None = None) -> str:
    """The headline: badge, run, state, and what the user should know (queue place, error)."""
    title = f"{pill(snap.state)} **{name or 'run'}** · `{run_id}`"
    lines = [title]
    if snap.state == "queued":
        place = f"number {snap.queue_position} in line" if snap.queue_position else "next in line"
        lines.append(f"Another training is using the machine; this one is {place} and starts by itself.")
    elif snap.state == "failed":
        lines.append(f"**What went wrong:** {snap.error or snap.message or 'unknown error'}")
    elif snap.state == "interrupted":
        lines.append("The studio stopped while this run was training. Resume it from its last checkpoint.")
    elif snap.message and snap.state in ("running", "stopping") and snap.message != "Training":
        lines.append(snap.message)
    return "\n\n".join(lines)


def progress_markdown(snap: Snapshot) -> str:
    """'Step 12 / 60 · epoch 0.40 · elapsed 0:32 · ETA 1:10 · 54 samples/s'."""
    parts = [f"**Step** {snap.step} / {snap.max_steps or '?'}", f"**Epoch** {snap.epoch:.2f}",
             f"**Elapsed** {format_duration(snap.elapsed)}"]
    if snap.state == "running":
        eta = snap.eta_seconds if snap.eta_seconds is not None else snap.estimate_seconds
        parts.append(f"**ETA** {format_duration(eta)}")
    speed = latest(snap.records, "samples_per_second")
    if speed:
        parts.append(f"**Speed** {speed:.1f} samples/s")
    loss = latest(snap.records, "loss")
    if loss is not None:
        parts.append(f"**Loss** {loss:.4f}")
    acc = latest(snap.records, "eval_accuracy")
    if acc is not None:
        parts.append(f"**Val. accuracy** {acc:.1%}")
    return " · ".join(parts)


def overfitting_note(records: Sequence[Mapping], *, tolerance: float = 0.01) -> str | None:
    """A warning when validation loss has turned up while training loss keeps going down.

    Looks at the evaluations: if the newest validation loss is above the best one by more than
    `tolerance` (relative) and training loss logged after the best evaluation is lower on average
    than before it, the model is learning the training examples by heart. Returns None otherwise.
    """
    evals = [(int(r["step"]), float(r["eval_loss"])) for r in records
             if isinstance(r.get("eval_loss"), (int, float))]
    if len(evals) < 2:
        return None
    best_step, best = min(evals, key=lambda e: e[1])
    last_step, last = evals[-1]
    if last_step == best_step or last <= best * (1 + tolerance):
        return None
    train = [(int(r["step"]), float(r["loss"])) for r in records if isinstance(r.get("loss"), (int, float))]
    before = [v for s, v in train if s <= best_step]
    after = [v for s, v in train if best_step < s <= last_step]
    if not before or not after or sum(after) / len(after) >= sum(before) / len(before):
        return None
    return (f"⚠ **Overfitting:** validation loss rose from {best:.3f} (step {best_step}) to {last:.3f} "
            f"(step {last_step}) while training loss kept falling. The model is starting to memorise "
            "the training examples instead of learning the task. Fewer epochs, early stopping, a "
            "lower learning rate or a deeper freeze usually help.")


def final_markdown(final: Mapping | None) -> str:
    """The end-of-run scores from metrics.json (accuracy, macro-F1, wall time)."""
    if not final:
        return ""
    wall = f"**Wall time** {format_duration(final.get('wall_time_seconds'))}"
    scores = final.get("eval") or {}
    parts = []
    for key, label in (("accuracy", "Accuracy"), ("macro_f1", "Macro-F1"), ("loss", "Validation loss")):
        if isinstance(scores.get(key), (int, float)):
            value = scores[key]
            parts.append(f"**{label}** {value:.1%}" if key != "loss" else f"**{label}** {value:.4f}")
    if not parts:   # a stopped run keeps its model but skips the final evaluation
        return (f"{wall} · no final scores: the run ended before its final evaluation "
                "(the Compare tab can still score what it learned).")
    return "Final scores on the validation set: " + " · ".join(parts + [wall])


def snapshot_from_run(run) -> Snapshot:
    """A finished (or interrupted) run read back from its folder, shaped like a live snapshot."""
    status = run.status()
    records = tuple(run.metrics_log())
    steps = [int(r.get("step", 0)) for r in records]
    epochs = [float(r.get("epoch") or 0.0) for r in records]
    max_steps = max(steps, default=0) if status.get("state") == "completed" else 0
    return Snapshot(version=-1, records=records, state=status.get("state", "broken"),
                    step=max(steps, default=0), max_steps=max_steps, epoch=max(epochs, default=0.0),
                    started_at=status.get("started_at"), finished_at=status.get("finished_at")
                    or status.get("updated_at"), error=status.get("error"), message="")


def run_label(run) -> str:
    """'reviews · completed · minilm · 2025-11-23 11:05' for pickers and lists."""
    status = run.status()
    stamp = run.id[:8]
    when = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {run.id[9:11]}:{run.id[11:13]}" if stamp.isdigit() else ""
    model = str(status.get("model") or "")
    model = model if len(model) <= 28 else "…" + model[-27:]
    return " · ".join(p for p in (status.get("name") or "run", status.get("state", "?"), model, when) if p)
