"""Blocks that compute on real tokens only give the same logits and gradients as the ordinary ones."""

import copy

import pytest
import torch

from studio.freezing import find_blocks
from studio.tasks.first_token import compute_first_token_only
from studio.tasks.real_tokens import compute_real_tokens_only, real_positions
from test_first_token import _batch, _classifier, same_logits_then_backward


def _installed(model) -> list[str]:
    return [vars(block)["forward"].__qualname__.split(".")[0] if "forward" in vars(block) else "class"
            for block in find_blocks(model)[1]]


@pytest.mark.parametrize("kind", ["bert", "roberta"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("first_token", [True, False])
def test_same_logits_and_gradients(kind, attention, first_token):
    plain = _classifier(kind, attention)
    fast = copy.deepcopy(plain)
    if first_token:
        compute_first_token_only(fast)
    assert compute_real_tokens_only(fast) == (2 if first_token else 3)
    same_logits_then_backward(plain, fast)
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        if p.grad is None or q.grad is None:   # the first-token block skips its zero-gradient key bias
            continue
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_pad_positions_hand_on_zeros_and_real_ones_match():
    plain = _classifier("bert", "sdpa").eval()
    fast = copy.deepcopy(plain)
    compute_real_tokens_only(fast)
    batch = _batch()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    ours = fast.bert(**inputs).last_hidden_state
    theirs = plain.bert(**inputs).last_hidden_state
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(ours[real], theirs[real], rtol=1e-5, atol=1e-6)
    assert ours[~real].abs().max() == 0


def test_masks_it_reads():
    pad = _batch()["attention_mask"]
    four_d_bool = pad.bool()[:, None, None, :].expand(4, 1, 11, 11)
    additive = torch.zeros(4, 1, 11, 11).masked_fill(~four_d_bool, torch.finfo(torch.float32).min)
    for mask in (pad, four_d_bool, additive):
        assert torch.equal(real_positions(mask, 4, 11), pad.bool())
    assert real_positions(None, 4, 11) is None
    assert real_positions(torch.ones(4, 11), 4, 11) is None          # no padding: the class's forward
    assert real_positions(torch.ones(4, 2, 11, 11), 4, 11) is None   # not a padding mask we can read


def test_lora_wrapped_projections():
    from peft import LoraConfig, get_peft_model
    plain = _classifier("bert", "sdpa")
    fast = copy.deepcopy(plain)
    compute_real_tokens_only(fast)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["query", "key", "value"], init_lora_weights=False)
    plain, fast = get_peft_model(plain, config), get_peft_model(fast, copy.deepcopy(config))
    fast.load_state_dict(plain.state_dict())
    plain.eval(), fast.eval()
    batch = _batch()
    torch.testing.assert_close(fast(**batch).logits, plain(**batch).logits, rtol=1e-5, atol=1e-6)


def test_prepare_installs_it_and_the_prefix_cache_keeps_it(tmp_path, tiny_bert):
    from conftest import tiny_config, write_tiny_csv
    from studio.tasks import classify
    data = write_tiny_csv(tmp_path / "d.csv", n=24)
    full = classify.unwrap(classify.prepare(tiny_config(data, tiny_bert, method="full")).model)
    assert _installed(full) == ["_real_token_forward", "_first_token_forward"]

    prepared = classify.prepare(tiny_config(data, tiny_bert, method="freeze", freeze_depth=1))
    cached = prepared.model
    batch = prepared.collator([prepared.train_dataset[i] for i in range(4)])
    for _ in range(2):   # the first call fills the cache, the second reads it
        cached(**batch)
        assert _installed(classify.unwrap(cached)) == ["_real_token_forward", "_first_token_forward"]
    assert cached.hits == 4


def _numbered_masks():
    """Dropout masks that depend only on how many were drawn before: two models that draw in the
    same order get the same masks, whichever code draws them."""
    drawn = []

    def mask(like, p):
        generator = torch.Generator().manual_seed(len(drawn))
        drawn.append(like.shape)
        return (torch.rand(like.shape, generator=generator) >= p).to(like.dtype) / (1 - p)
    return mask, drawn


def test_attention_dropout_in_training_is_the_usual_one_with_the_fast_mask(monkeypatch):
    """In training, the real-token blocks drop attention weights themselves (with `keep_mask`,
    not sdpa's `bernoulli_`). Given the same masks, logits and gradients match eager attention."""
    import torch.nn.functional as F
    from studio.training import dropout

    plain = _classifier("bert", "eager")
    for module in plain.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    for layer in plain.bert.encoder.layer:                  # only the attention weights draw masks
        layer.attention.self.dropout.p = 0.25
    fast = copy.deepcopy(plain)
    fast.config._attn_implementation = "sdpa"               # with dropout on, the blocks do their own
    compute_real_tokens_only(fast)

    ours, ours_drawn = _numbered_masks()
    theirs, theirs_drawn = _numbered_masks()
    monkeypatch.setattr(dropout, "keep_mask", ours)
    usual_dropout = F.dropout
    monkeypatch.setattr(F, "dropout", lambda x, p=0.5, training=True, inplace=False:
                        x * theirs(x, p) if training and p > 0 else usual_dropout(x, p, training, inplace))
    plain.train(), fast.train()
    batch = _batch()
    out_plain, out_fast = plain(**batch), fast(**batch)
    assert ours_drawn == theirs_drawn == [torch.Size([4, 4, 11, 11])] * 3     # one mask per block
    torch.testing.assert_close(out_fast.logits, out_plain.logits, rtol=1e-5, atol=1e-6)
    out_plain.loss.backward(), out_fast.loss.backward()
    for (name, a), b in zip(plain.named_parameters(), fast.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)
