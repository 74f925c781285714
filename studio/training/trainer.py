"""Build a `transformers.Trainer` from a RunConfig and a task's prepared pieces.

This is where the studio's defaults for speed live: dynamic padding with length-grouped batches
(transformers' grouping, or the studio's length buckets when the task asks: little compute is
spent on padding), evaluation batched and only as often as asked, the number format that is fast on
this machine (device.py), and no logging integrations.
"""

from __future__ import annotations

import math

from studio.training.callbacks import ProgressCallback
from studio.training.device import training_precision


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return max(1, math.ceil(n_examples / batch_size))


def quiet_library_progress_bars() -> None:
    """transformers/datasets draw their own tqdm bars (loading weights, writing shards); the studio
    reports progress itself, so those only clutter the terminal and server logs. Also drops one
    warning that alarms without meaning anything here (see `_drop_mtime_warning`)."""
    import logging
    from transformers.utils import logging as hf_logging
    import datasets
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    checkpoint_logger = logging.getLogger("transformers.trainer_utils")
    if _drop_mtime_warning not in checkpoint_logger.filters:
        checkpoint_logger.addFilter(_drop_mtime_warning)


def _drop_mtime_warning(record) -> bool:
    """transformers orders checkpoints by modification time and, when two were written less than a
    second apart (a short run saving every epoch), warns "mtime may not be reliable on this
    filesystem" and orders them by step number instead, which is right. Nothing is wrong with the
    filesystem, so the warning is dropped."""
    return "mtime may not be reliable" not in record.getMessage()


def total_grad_norm(grads):
    """The 2-norm of all `grads` seen as one vector (what `clip_grad_norm_` measures), with one
    `_foreach_norm` call instead of one Python call per tensor."""
    import torch
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def _clip_in_optimizer(base):
    """The Trainer with gradient clipping folded into the fused AdamW step.

    Clipping measures the gradients' total norm, then multiplies every gradient by
    max_norm / norm when the norm is larger: one more pass over all gradients, which on a CPU is
    bound by memory bandwidth. torch's fused AdamW kernel can divide each gradient by a scale as
    it reads it (the hook mixed precision uses to unscale), so the clip factor goes in there and
    the extra pass goes away. The update is the same to float rounding (a test checks it).
    Anything else (another optimizer, a gradient scaler, several processes) clips as usual.
    """
    class ClipInOptimizerTrainer(base):
        def _clip_grad_norm(self, model):
            import torch
            optimizer = getattr(self.optimizer, "optimizer", self.optimizer)   # inside accelerate's wrapper
            if not (isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW) and optimizer.defaults.get("fused")
                    and self.accelerator.scaler is None and self.accelerator.num_processes == 1):
                return super()._clip_grad_norm(model)
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            if not grads:
                return super()._clip_grad_norm(model)
            norm = total_grad_norm(grads)
            # clip_grad_norm_ multiplies by max_norm / (norm + 1e-6), at most 1; AdamW divides by this.
            optimizer.grad_scale = ((norm + 1e-6) / self.args.max_grad_norm).clamp(min=1.0).to(torch.float32)
            return norm
    return ClipInOptimizerTrainer


def _trainer_class(loss_fn, length_buckets: bool = False):
    """`transformers.Trainer`, subclassed where the task asks for it:
    - `loss_fn(model, batch)`: the task's own loss (a per-batch mean, which the Trainer scales for
      gradient accumulation like the model's own loss);
    - `length_buckets`: training batches drawn from length buckets (see sampling.py);
    and always with clipping inside the optimizer step (`_clip_in_optimizer`)."""
    from transformers import Trainer
    base = _clip_in_optimizer(Trainer)
    if loss_fn is not None:
        class TaskLossTrainer(base):
            loss_is_scaled_for_ga = False

            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                # Mixed precision reaches the model through accelerate wrapping `model.forward`
                # in autocast; a task loss may call the model's parts directly, so it gets the
                # same autocast here (a no-op in fp32).
                with self.accelerator.autocast():
                    loss = loss_fn(model, inputs)
                return (loss, {"loss": loss}) if return_outputs else loss   # evaluation reads a dict
        base = TaskLossTrainer
    if length_buckets:
        from studio.training.sampling import LengthBucketSampler

        class BucketedTrainer(base):
            def _get_train_sampler(self, train_dataset=None):
                dataset = self.train_dataset if train_dataset is None else train_dataset
                return LengthBucketSampler([len(ids) for ids in dataset["input_ids"]],
                                           self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                           seed=self.args.seed)
        base = BucketedTrainer
    return base


def eval_batch_size(prepared, batch_size: int) -> int:
    """The task's evaluation batch size, or twice the training batch (at least 32): evaluation
    keeps no activations for a backward pass, so larger batches fit."""
    return prepared.eval_batch_size or max(32, batch_size * 2)


def build_trainer(config, run, prepared, progress, stop_event, *, extra_callbacks=()):
    from transformers import TrainingArguments

    t = config.train
    per_epoch = steps_per_epoch(len(prepared.train_dataset), t.batch_size)
    total_steps = max(1, math.ceil(per_epoch * t.epochs))
    precision = training_precision(config.task)
    args = TrainingArguments(
        output_dir=str(run.checkpoints_dir),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=eval_batch_size(prepared, t.batch_size),
        num_train_epochs=t.epochs,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio,          # transformers 5: a float < 1 is a share of all steps
        weight_decay=t.weight_decay,
        eval_strategy=t.eval_strategy,
        eval_steps=t.eval_steps if t.eval_strategy == "steps" else None,
        save_strategy=t.eval_strategy if t.save_checkpoints else "no",
        save_steps=t.eval_steps if t.eval_strategy == "steps" else None,
        save_total_limit=2,
        save_only_model=False,
        logging_strategy="steps",
        logging_steps=max(1, total_steps // 100),
        seed=t.seed,
        data_seed=t.seed,
        train_sampling_strategy="group_by_length",
        report_to="none",
        disable_tqdm=True,
        use_cpu=precision.device == "cpu",
        bf16=precision.dtype == "bf16",
        fp16=precision.dtype == "fp16",
        dataloader_num_workers=0,
        remove_unused_columns=False,
        # Without metrics to compute, evaluation needs only the loss: no logits are gathered.
        prediction_loss_only=prepared.compute_metrics is None,
    )
    callback = ProgressCallback(progress, run, stop_event, samples_per_step=t.batch_size,
                                metric=prepared.metric, greater_is_better=prepared.greater_is_better,
                                patience=t.early_stopping_patience,
                                tokens_per_sample=prepared.tokens_per_sample)
    trainer = _trainer_class(prepared.loss_fn, prepared.length_buckets)(model=prepared.model, args=args, train_dataset=prepared.train_dataset,
                      eval_dataset=prepared.eval_dataset, data_collator=prepared.collator,
                      compute_metrics=prepared.compute_metrics,
                      callbacks=[callback, *extra_callbacks])
    # The Trainer adds a console printer; the studio shows progress through its own log instead.
    from transformers.trainer_callback import PrinterCallback, ProgressCallback as HFProgress
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(HFProgress)
    return trainer
