"""The last block computing only the first token gives the classifier the same logits and gradients."""

import copy

import pytest
import torch

from studio.tasks.first_token import compute_first_token_only, supports_first_token_top


def _classifier(kind: str, attention: str):
    from transformers import (BertConfig, BertForSequenceClassification, RobertaConfig,
                              RobertaForSequenceClassification)
    torch.manual_seed(0)
    size = dict(vocab_size=60, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                intermediate_size=64, max_position_embeddings=64, num_labels=3)
    if kind == "bert":
        model = BertForSequenceClassification(BertConfig(**size))
    else:
        model = RobertaForSequenceClassification(RobertaConfig(pad_token_id=1, **size))
    model.config._attn_implementation = attention
    return model


def _batch():
    torch.manual_seed(1)
    ids = torch.randint(5, 60, (4, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0          # padded rows: the first token must ignore padding like before
    mask[3, 4:] = 0
    ids[mask == 0] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 2, 1, 2])}


def same_logits_then_backward(plain, fast) -> None:
    """Both models on `_batch()` in eval mode (no dropout, so comparable number for number): the
    same logits; then both losses backpropagated, for the caller to compare gradients."""
    plain.eval(), fast.eval()
    batch = _batch()
    out_plain, out_fast = plain(**batch), fast(**batch)
    torch.testing.assert_close(out_fast.logits, out_plain.logits, rtol=1e-5, atol=1e-6)
    out_plain.loss.backward()
    out_fast.loss.backward()


@pytest.mark.parametrize("kind", ["bert", "roberta"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_same_logits_and_gradients(kind, attention):
    plain = _classifier(kind, attention)
    fast = copy.deepcopy(plain)
    assert compute_first_token_only(fast)
    same_logits_then_backward(plain, fast)
    last_key_bias = f"{'bert' if kind == 'bert' else 'roberta'}.encoder.layer.2.attention.self.key.bias"
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        if p.grad is None:
            assert q.grad is None, name
            continue
        if name == last_key_bias:
            # A key bias shifts all of a query's scores equally, which softmax ignores: its true
            # gradient is zero (the plain model gets rounding noise), and the fast path skips it.
            assert q.grad is None and p.grad.abs().max() < 1e-6
            continue
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_trains_under_dropout_and_saves_a_plain_model(tmp_path):
    model = _classifier("bert", "sdpa")
    assert compute_first_token_only(model)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = _batch()
    losses = []
    for _ in range(15):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step(), optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 2
    model.save_pretrained(tmp_path, safe_serialization=True)
    from transformers import BertForSequenceClassification
    reloaded = BertForSequenceClassification.from_pretrained(tmp_path).eval()
    model.eval()
    torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits, rtol=1e-5, atol=1e-6)
    # the reloaded model runs the ordinary forward: every position of the last block is computed
    assert reloaded(**batch, output_hidden_states=True).hidden_states[-1].shape[1] == 11


def test_other_heads_are_left_alone():
    from transformers import BertConfig, BertModel
    assert not supports_first_token_top(BertModel(BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2,
                                                             num_attention_heads=4, intermediate_size=64)))


def test_prepare_installs_it_except_inside_a_cached_prefix(tmp_path, tiny_bert):
    from conftest import tiny_config, write_tiny_csv
    from studio.freezing import find_blocks
    from studio.tasks import classify
    data = write_tiny_csv(tmp_path / "d.csv", n=24)

    def installed(**train) -> bool:
        model = classify.unwrap(classify.prepare(tiny_config(data, tiny_bert, **train)).model)
        forward = vars(find_blocks(model)[1][-1]).get("forward")
        return forward is not None and forward.__qualname__.startswith("_first_token_forward")

    assert installed(method="full")
    assert installed(method="freeze", freeze_depth=1)
    assert installed(method="freeze", freeze_depth=2, cache_frozen=False)
    assert not installed(method="freeze", freeze_depth=2)   # the last block is cached: nothing to gain


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_lora_wrapped_projections(dropout):
    """With LoRA on the keys and values the last block reads W + s·B A (dropout on the adapter
    path: keys and values are projected as usual); either way the logits match."""
    from peft import LoraConfig, get_peft_model
    plain = _classifier("bert", "sdpa")
    fast = copy.deepcopy(plain)
    compute_first_token_only(fast)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["query", "key", "value"],
                        init_lora_weights=False)
    plain, fast = get_peft_model(plain, config), get_peft_model(fast, copy.deepcopy(config))
    fast.load_state_dict(plain.state_dict())
    same_logits_then_backward(plain, fast)
    grads = {n: p.grad for n, p in fast.named_parameters() if p.grad is not None}
    for name, p in plain.named_parameters():
        if "lora_" in name and "layer.2.attention.self.value" in name:
            torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_a_two_dimensional_padding_mask_masks_like_the_models_own():
    """Flash-attention paths hand layers the tokenizer's 0/1 mask; 1 means attend, 0 padding."""
    from studio.tasks.first_token import _one_query_attention, linear_weights
    model = _classifier("bert", "sdpa").eval()
    attention = model.bert.encoder.layer[-1].attention.self
    key, value = linear_weights(attention.key), linear_weights(attention.value)
    hidden = torch.randn(4, 11, 32)
    pad = _batch()["attention_mask"]
    four_d = pad.bool()[:, None, None, :].expand(4, 1, 11, 11)
    expected = _one_query_attention(attention, hidden, four_d, key, value)
    torch.testing.assert_close(_one_query_attention(attention, hidden, pad, key, value), expected)
    assert not torch.allclose(expected, _one_query_attention(attention, hidden, None, key, value))
