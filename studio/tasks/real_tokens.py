"""Encoder blocks compute on real tokens only: padding costs nothing.

A batch of sentences is padded to its longest one. With the Trainer's length grouping, 8% of the
positions in a TREC batch at 1,000 examples are padding. Every per-token part of a block (the
query, key, value and output projections, the feed-forward, the layer norms, dropout) does the
same work on a pad position as on a real one, and the result is never read. Only attention needs
the padded (batch, length) layout: it is how a token knows which sentence it belongs to.

So each block here takes its padded input and picks the real tokens out as one (tokens, width)
matrix. It projects those to queries, keys and values, and puts these back in the padded layout
for attention alone. It then picks the real tokens out of attention's output and runs the rest of
the block on them. The block hands on the padded layout, with zeros at the pad positions: keys
there are masked out, and the classifier reads position 0. Logits, loss and every gradient are
the ones the ordinary block gives, to float rounding (a test checks that).

When the block's matmuls run in bf16 on a CPU, every new row count costs a compiled kernel
(kernel_shapes.py), so the count is rounded up to a multiple of 32 with pad positions, whose
results are thrown away like before.

Like first_token.py, the forward is an instance attribute: it is never saved with the model, and
a batch without padding runs the class's own forward.
"""

from __future__ import annotations

import torch
from torch import nn

from studio.freezing import find_blocks
from studio.tasks.first_token import _bert_style_block
from studio.training.kernel_shapes import round_rows, rounds_rows


def compute_real_tokens_only(model: nn.Module) -> int:
    """Install the real-token forward on every BERT-style block that still runs its class's
    forward (the last block may already compute the first token only). Returns how many."""
    installed = 0
    for block in find_blocks(model)[1]:
        if "forward" in vars(block) or not _bert_style_block(block) or block.chunk_size_feed_forward:
            continue
        block.forward = _real_token_forward(block)
        installed += 1
    return installed


def real_positions(attention_mask, batch: int, length: int) -> torch.Tensor | None:
    """(batch, length) booleans, True at real tokens; None when every position is real or the
    mask is not a padding mask we can read (the block then runs as usual).

    A 2-D mask is the tokenizer's 0/1 (flash-attention paths pass it through). A 4-D one is the
    model's own, boolean (True = attend) or additive (0 = attend), and for an encoder every query
    row is the same, so the first row says which keys are real.
    """
    if attention_mask is None:
        return None
    if attention_mask.dim() == 2 and attention_mask.shape == (batch, length):
        real = attention_mask.bool()
    elif attention_mask.dim() == 4 and attention_mask.shape[0] == batch and attention_mask.shape[-1] == length:
        if attention_mask.shape[1] != 1:
            return None
        row = attention_mask[:, 0, 0, :]
        real = row if row.dtype == torch.bool else row == 0
    else:
        return None
    return None if bool(real.all()) else real


def _real_token_forward(block: nn.Module):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.bert.modeling_bert import eager_attention_forward

    class_forward = type(block).forward.__get__(block)

    def forward(hidden_states, attention_mask=None, *args, **kwargs):
        batch, length, width = hidden_states.shape
        real = real_positions(attention_mask, batch, length)
        cross_or_cached = any(a is not None for a in args) or any(
            kwargs.get(k) is not None for k in ("encoder_hidden_states", "encoder_attention_mask", "cache",
                                                "past_key_values"))
        if real is None or cross_or_cached:   # nothing to skip, or a decoder's extras: the usual block
            return class_forward(hidden_states, attention_mask, *args, **kwargs)
        index = real.reshape(-1).nonzero().squeeze(1)              # real tokens in the flat layout
        if rounds_rows(hidden_states):   # a 16-bit CPU matmul compiles per row count: use few counts
            index = _with_pad_rows(index, real, round_rows(len(index)))
        tokens = hidden_states.reshape(batch * length, width).index_select(0, index)
        self_attention = block.attention.self

        def padded(projection: nn.Module) -> torch.Tensor:         # (batch, heads, length, size)
            values = projection(tokens)
            full = values.new_zeros(batch * length, values.shape[-1]).index_copy(0, index, values)
            return full.view(batch, length, -1, self_attention.attention_head_size).transpose(1, 2)

        query, key, value = (padded(self_attention.query), padded(self_attention.key),
                             padded(self_attention.value))
        dropout = self_attention.dropout.p if self_attention.training else 0.0
        if 0.0 < dropout < 1.0 and hidden_states.device.type == "cpu":
            context = _attention_with_fast_dropout(query, key, value, real, self_attention.scaling, dropout)
        else:
            attend = ALL_ATTENTION_FUNCTIONS.get_interface(self_attention.config._attn_implementation,
                                                           eager_attention_forward)
            context, _ = attend(self_attention, query, key, value, attention_mask, dropout=dropout,
                                scaling=self_attention.scaling)
        context = context.reshape(batch * length, -1).index_select(0, index)
        attended = block.attention.output(context, tokens)         # projection, dropout, residual, norm
        out = block.feed_forward_chunk(attended)                   # feed-forward, dropout, residual, norm
        return out.new_zeros(batch * length, out.shape[-1]).index_copy(0, index, out).view(batch, length, -1)

    return forward


def _with_pad_rows(index: torch.Tensor, real: torch.Tensor, rows: int) -> torch.Tensor:
    """`index` (the real tokens' flat positions) plus pad positions, up to `rows` in all (or every
    position, when the batch has fewer). A pad row's results land on a pad position: its key is
    masked out, nothing reads it, and no gradient reaches it, so the real tokens' results and every
    weight gradient stay the same."""
    extra = min(rows, real.numel()) - len(index)
    if extra <= 0:
        return index
    return torch.cat([index, (~real).reshape(-1).nonzero().squeeze(1)[:extra]])


def _attention_with_fast_dropout(query, key, value, real, scaling: float, p: float) -> torch.Tensor:
    """Attention whose weights go through dropout with `keep_mask`'s fast masks.

    With dropout on, torch's CPU attention runs its plain math path anyway (scores, softmax, a
    `bernoulli_` mask, weights times values): this is the same path with the faster mask (a
    forward and backward for 16 sentences of 20 tokens, 12 heads: 4.3 ms against sdpa's 4.7). Keys at
    pad positions get no weight; every sentence has a real token, so no row is all masked. Returns
    (batch, length, heads, size), the layout the attention interfaces return.
    """
    from studio.training.dropout import _ScaledMask

    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    weights = scores.masked_fill(~real[:, None, None, :], float("-inf")).softmax(dim=-1)
    return torch.matmul(_ScaledMask.apply(weights, p), value).transpose(1, 2)
