"""LoRA through the merged weight gives peft's outputs and gradients, and steps aside where it must."""

import copy

import pytest
import torch

from studio.training import merged_lora
from studio.training.merged_lora import MergedLoraLinear, lora_parts, pays_to_merge, train_through_merged_weights


def _lora_llama(dropout: float = 0.0):
    """A tiny random Llama with rank-4 adapters on every linear layer, B not zero (so that every
    adapter gradient is non-trivial)."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear",
                                             init_lora_weights=False))
    return model


def _batch(length: int = 24):
    torch.manual_seed(1)
    ids = torch.randint(0, 50, (2, length))
    return {"input_ids": ids, "labels": ids.clone()}


def _loss_and_grads(model, batch):
    model.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _count_merged_calls(monkeypatch) -> list:
    calls = []
    original = MergedLoraLinear.apply
    monkeypatch.setattr(MergedLoraLinear, "apply", lambda *a: calls.append(1) or original(*a))
    return calls


def test_same_loss_and_gradients_as_peft(monkeypatch):
    plain = _lora_llama()
    fast = copy.deepcopy(plain)
    assert train_through_merged_weights(fast) == 14   # 7 projections in each of 2 blocks
    calls = _count_merged_calls(monkeypatch)
    batch = _batch()
    ref_loss, ref_grads = _loss_and_grads(plain, batch)
    assert not calls
    loss, grads = _loss_and_grads(fast, batch)
    assert len(calls) == 14   # 48 tokens: every layer took the merged path
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert grads.keys() == ref_grads.keys() and any("lora_A" in n for n in grads)
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_a_frozen_input_gets_no_gradient_computed():
    layer = torch.nn.Linear(8, 6)
    x = torch.randn(5, 8)                      # e.g. the output of frozen embeddings
    a = torch.randn(2, 8, requires_grad=True)
    b = torch.randn(6, 2, requires_grad=True)
    out = MergedLoraLinear.apply(x, layer.weight.detach(), layer.bias.detach(), a, b, 0.5)
    expected = x @ layer.weight.detach().t() + layer.bias.detach() + 0.5 * (x @ a.t()) @ b.t()
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert x.grad is None and a.grad is not None and b.grad is not None


def test_switched_off_adapters_give_the_base_model(monkeypatch):
    model = _lora_llama()
    train_through_merged_weights(model)
    calls = _count_merged_calls(monkeypatch)
    batch = _batch()
    with model.disable_adapter():
        off = model(**batch).logits
    base = model.get_base_model()
    with torch.no_grad():   # the same network with every adapter product removed
        for module in model.modules():
            if hasattr(module, "lora_B"):
                module.lora_B["default"].weight.zero_()
    torch.testing.assert_close(off, base(**batch).logits)
    assert len(calls) == 14   # only the second call (adapters on, though zero) merged


def test_dropout_on_the_adapter_keeps_peft_path(monkeypatch):
    model = _lora_llama(dropout=0.1)
    train_through_merged_weights(model)
    calls = _count_merged_calls(monkeypatch)
    model(**_batch()).loss.backward()
    assert not calls
    assert all(lora_parts(m) is None for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer"))


def test_a_few_tokens_at_a_time_keep_peft_path(monkeypatch):
    assert not pays_to_merge(1, 576, 1536) and pays_to_merge(4 * 200, 576, 1536)
    model = _lora_llama()
    train_through_merged_weights(model)
    calls = _count_merged_calls(monkeypatch)
    with torch.no_grad():
        model(input_ids=torch.tensor([[3]]))   # one token, as in generation
    assert not calls


def test_deep_copy_and_saved_adapter_are_the_plain_ones(tmp_path):
    model = _lora_llama()
    train_through_merged_weights(model)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in twin.named_parameters():
            if "lora_B" in name:
                p.zero_()
    layer = next(m for m in twin.modules() if "forward" in vars(m))
    assert layer.forward.__self__ is layer   # the copy's layers call their own weights
    batch = _batch()
    with model.disable_adapter():
        base = model(**batch).logits
    torch.testing.assert_close(twin(**batch).logits, base)
    model.save_pretrained(tmp_path)
    from safetensors.torch import load_file
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert saved and all("lora_" in key for key in saved)


def test_apply_method_installs_it_for_lora_runs():
    from transformers import LlamaConfig, LlamaForCausalLM
    from studio.config import TrainSpec
    from studio.freezing import apply_method
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))
    model = apply_method(model, TrainSpec(method="lora", lora_dropout=0.0), "generate")
    switched = [m for m in model.modules() if vars(m).get("forward") is not None]
    assert len(switched) == 14 and all(m.forward.__func__ is merged_lora._merged_forward for m in switched)
