"""Gradient clipping folded into the fused AdamW step trains exactly like clip-then-step."""

import pytest
import torch


def _train(tmp_path, trainer_class, max_grad_norm=0.05, optim="adamw_torch_fused"):
    from transformers import BertConfig, BertForSequenceClassification, TrainingArguments
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=4, intermediate_size=64, num_labels=3,
                                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    g = torch.Generator().manual_seed(1)
    rows = [{"input_ids": torch.randint(5, 60, (9,), generator=g), "labels": torch.tensor(i % 3)} for i in range(24)]
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, num_train_epochs=2,
                             learning_rate=1e-3, max_grad_norm=max_grad_norm, optim=optim, use_cpu=True,
                             report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0)
    trainer = trainer_class(model=model, args=args, train_dataset=rows)
    trainer.train()
    norms = [r["grad_norm"] for r in trainer.state.log_history if "grad_norm" in r]
    return model, norms, trainer


@pytest.mark.parametrize("optim", ["adamw_torch_fused", "adamw_torch"])
def test_same_weights_and_norms_as_the_plain_trainer(tmp_path, optim):
    from transformers import Trainer
    from studio.training.trainer import _clip_in_optimizer
    plain, plain_norms, _ = _train(tmp_path / "a", Trainer, optim=optim)
    ours, our_norms, trainer = _train(tmp_path / "b", _clip_in_optimizer(Trainer), optim=optim)
    assert min(plain_norms) > 0.05                 # every step was clipped
    assert our_norms == pytest.approx(plain_norms, rel=1e-5)
    for (name, p), q in zip(plain.named_parameters(), ours.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=name)
    inner = trainer.optimizer.optimizer
    assert (getattr(inner, "grad_scale", None) is not None) == (optim == "adamw_torch_fused")
