"""FastDropout draws the same Bernoulli masks as nn.Dropout, only faster."""

import torch
from torch import nn

from studio.training.dropout import FastDropout, use_fast_dropout


def test_keeps_one_minus_p_scaled_and_backpropagates_through_the_mask():
    torch.manual_seed(0)
    x = torch.ones(400_000, requires_grad=True)
    out = FastDropout(0.25).train()(x)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.005         # 0.75 ± 7 standard deviations
    assert torch.allclose(out[kept], torch.tensor(1 / 0.75))        # kept values scaled by 1/(1-p)
    out.sum().backward()
    assert torch.equal(x.grad, out.detach())                        # the gradient goes through the same mask


def test_same_as_nn_dropout_where_it_does_not_draw():
    x = torch.randn(8, 5)
    assert torch.equal(FastDropout(0.3).eval()(x), x)
    assert torch.equal(FastDropout(0.0).train()(x), x)
    assert torch.equal(FastDropout(1.0).train()(x), torch.zeros_like(x))


def test_swaps_plain_dropouts_and_leaves_the_weights_alone():
    from transformers import BertConfig, BertForSequenceClassification
    model = BertForSequenceClassification(BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=4, intermediate_size=64))
    before = model.state_dict()
    plain = sum(type(m) is nn.Dropout for m in model.modules())
    assert use_fast_dropout(model) == plain == 8   # embeddings, 3 per block, classifier
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert isinstance(model.bert.encoder.layer[0].output.dropout, FastDropout)
    assert model.bert.encoder.layer[0].attention.self.dropout.p == 0.1   # attention reads p from it
    assert model.state_dict().keys() == before.keys()


def test_masks_come_from_torchs_seed_and_keep_the_input_dtype():
    from studio.training.dropout import keep_mask
    x = torch.zeros(1000, 64)
    torch.manual_seed(3)
    first, second = keep_mask(x, 0.1), keep_mask(x, 0.1)
    torch.manual_seed(3)
    assert torch.equal(keep_mask(x, 0.1), first)        # manual_seed replays the masks
    assert not torch.equal(first, second)                # and each draw is a new one
    assert set(first.unique().tolist()) == {0.0, torch.tensor(1 / 0.9).item()}
    assert keep_mask(x.bfloat16(), 0.1).dtype == torch.bfloat16
    assert keep_mask(torch.zeros(7), 0.5).shape == (7,)  # an odd count (two masks per 64-bit draw)
