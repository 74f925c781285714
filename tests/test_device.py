"""Number format per machine: bf16 on CPUs with AMX or measured-fast bf16, fp32 elsewhere, and the
operator's override; a task's own loss runs under the Trainer's autocast like the model's forward."""

from __future__ import annotations

import pytest
import torch

from studio.training import device
from studio.training.device import Precision, autocast, cpu_precision

AMX = {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
ZEN4 = {"avx512f", "avx512_bf16"}
PLAIN = {"avx2", "fma"}


@pytest.mark.parametrize("flags, choice, task, expected", [
    (AMX, None, "generate", "bf16"),    # AMX: the tile unit makes SmolLM2's matmuls faster in bf16
    (AMX, None, "classify", "fp32"),    # MiniLM: not measured to pay on AMX (see device.py)
    (AMX, "0", "generate", "fp32"),     # the operator can always keep fp32
    (AMX, "1", "classify", "bf16"),     # ... or ask for bf16 everywhere
    (ZEN4, "1", "generate", "bf16"),    # bf16 dot products but no tiles: always on request
    (PLAIN, None, "generate", "fp32"),  # no bf16 instructions: emulated, hundreds of times slower
    (PLAIN, "1", "generate", "fp32"),   # asking cannot make emulation fast
    (set(), None, "generate", "fp32"),  # /proc/cpuinfo unreadable
])
def test_cpu_format_follows_the_flags_the_task_and_the_override(flags, choice, task, expected):
    precision = cpu_precision(flags, choice, task)
    assert (precision.device, precision.dtype) == ("cpu", expected)
    assert precision.reason


@pytest.mark.parametrize("speedup, task, expected", [
    (4.2, "generate", "bf16"),   # Zen 5: bf16 matmuls 4.2x fp32, SmolLM2 1.5-1.8x end to end
    (2.0, "generate", "fp32"),   # twice as fast on paper: not enough once the casts are paid
    (4.2, "classify", "bf16"),   # Zen 5, MiniLM with rounded shapes: 1.5-1.9x at the same accuracy
    (2.0, "classify", "fp32"),
])
def test_without_amx_a_measured_bf16_speedup_decides(speedup, task, expected):
    asked = []
    precision = cpu_precision(ZEN4, None, task, lambda: asked.append(1) or speedup)
    assert precision.dtype == expected
    assert f"{speedup:.1f}x" in precision.reason   # the status line says why
    assert len(asked) == 1
    assert cpu_precision(ZEN4, "0", "generate", lambda: 1 / 0).dtype == "fp32"   # the override is not timed


def test_the_speedup_is_timed_on_real_matmuls():
    speedup = device.measured_bf16_speedup(size=128, repeats=1)
    assert speedup > 0


def test_the_two_formats_take_turns(monkeypatch):
    """A slow moment of a shared machine must not spoil every timing of one format."""
    import torch
    order, real_mm = [], torch.mm
    monkeypatch.setattr(torch, "mm", lambda a, b: order.append(a.dtype) or real_mm(a, b))
    device.measured_bf16_speedup(size=64, repeats=2, rounds=2)
    block = 1 + 2   # a warm-up and two timed matmuls
    assert order == ([torch.float32] * block + [torch.bfloat16] * block) * 2


def test_the_environment_variable_reaches_the_detection(monkeypatch):
    monkeypatch.setenv("STUDIO_FORCE_CPU", "1")
    monkeypatch.setattr(device, "_cpu_flags", lambda: set(AMX))
    for choice, expected in ((None, "bf16"), ("0", "fp32")):
        if choice is None:
            monkeypatch.delenv("STUDIO_CPU_BF16", raising=False)
        else:
            monkeypatch.setenv("STUDIO_CPU_BF16", choice)
        device.training_precision.cache_clear()
        try:
            assert device.training_precision("generate").dtype == expected
        finally:
            device.training_precision.cache_clear()


def test_autocast_is_a_no_op_in_fp32_and_bf16_matmuls_otherwise():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast(Precision("cpu", "fp32", "test")):
        assert (a @ b).dtype == torch.float32
    with autocast(Precision("cpu", "bf16", "test")):
        assert (a @ b).dtype == torch.bfloat16
    assert "bf16 mixed precision" in Precision("cpu", "bf16", "CPU with AMX").describe()


def test_a_task_loss_runs_under_the_trainers_autocast(tmp_path):
    """accelerate autocasts by wrapping `model.forward`; a loss that calls the model's parts
    directly (answer_loss) would otherwise train in fp32 under a bf16 run."""
    from transformers import BertConfig, BertForSequenceClassification, TrainingArguments
    from studio.training.trainer import _trainer_class

    model = BertForSequenceClassification(BertConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32))
    seen = []

    def loss_fn(model, batch):
        seen.append(torch.is_autocast_enabled("cpu"))
        return model.bert(input_ids=batch["input_ids"]).last_hidden_state.float().mean()

    for bf16 in (False, True):
        args = TrainingArguments(output_dir=str(tmp_path / str(bf16)), use_cpu=True, bf16=bf16, report_to="none")
        trainer = _trainer_class(loss_fn)(model=model, args=args)
        trainer.compute_loss(model, {"input_ids": torch.tensor([[1, 2, 3]])})
    assert seen == [False, True]
