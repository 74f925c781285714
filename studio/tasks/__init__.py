"""One module per task. Each exposes `prepare(config, run_dir, report) -> Prepared` for the job."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Prepared:
    """Everything the training job needs, built by a task module."""
    model: Any
    tokenizer: Any
    train_dataset: Any
    eval_dataset: Any
    collator: Any
    compute_metrics: Callable | None
    metric: str                      # the metric early stopping and the UI headline use
    greater_is_better: bool
    save: Callable[[Any, Any], None]  # save(model, folder)
    tokens_per_sample: float | None = None
    extras: dict = field(default_factory=dict)
    loss_fn: Callable | None = None   # loss_fn(model, batch) -> loss, when the model's own is wasteful
    length_buckets: bool = False      # train on length-bucketed batches (studio/training/sampling.py)
    eval_batch_size: int | None = None  # None: the trainer's default (twice the batch, at least 32)


def task_module(task: str):
    if task == "classify":
        from studio.tasks import classify
        return classify
    if task == "generate":
        from studio.tasks import generate
        return generate
    from studio.errors import ConfigError
    raise ConfigError(f"unknown task {task!r}.", where="config.task")
