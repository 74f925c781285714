"""The last block computes only what the classifier reads: the first token.

A BERT-family sequence classifier reads one position of the last block's output: the first
([CLS]) token, through the pooler or the classification head. The block's other outputs are
computed, then thrown away. So in the last block we compute the query, the attention output and
the feed-forward for the first token alone. The first token still attends to every token, but one
query needs no keys or values for them: `_one_query_attention` regroups the products so each head
needs one dot product per token instead of two width x width projections. The loss and every
gradient are the same as before (a test checks that), and the block's cost per token all but
vanishes; what is left is the first token's own work and the block's weight gradients.

Under dropout the outputs are statistically the same, not bit-for-bit: the dropout masks drawn for
the discarded positions are no longer drawn. The installed forward is an instance attribute, so it
is never saved with the model, and a saved model is the ordinary transformers one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from studio.freezing import find_blocks

# Classifiers whose head reads only position 0 of the last hidden state.
FIRST_TOKEN_CLASSIFIERS = {
    "BertForSequenceClassification", "RobertaForSequenceClassification",
    "XLMRobertaForSequenceClassification", "CamembertForSequenceClassification",
    "ElectraForSequenceClassification",
}


def _bert_style_block(block: nn.Module) -> bool:
    attention = getattr(block, "attention", None)
    self_attention = getattr(attention, "self", None)
    return (all(hasattr(self_attention, name) for name in ("query", "key", "value", "scaling", "dropout"))
            and hasattr(attention, "output") and hasattr(block, "feed_forward_chunk")
            and not getattr(block, "is_decoder", False))


def supports_first_token_top(model: nn.Module) -> bool:
    return type(model).__name__ in FIRST_TOKEN_CLASSIFIERS and _bert_style_block(find_blocks(model)[1][-1])


def compute_first_token_only(model: nn.Module) -> bool:
    """Make the model's last block compute only position 0. Returns whether it was installed.

    Call before adapters are added: the new forward looks its linear layers up at every call, so
    LoRA-wrapped projections are used when present.
    """
    if not supports_first_token_top(model):
        return False
    block = find_blocks(model)[1][-1]
    block.forward = _first_token_forward(block)
    return True


def _first_token_forward(block: nn.Module):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.bert.modeling_bert import eager_attention_forward

    def forward(hidden_states, attention_mask=None, *args, **kwargs):
        self_attention = block.attention.self
        first = hidden_states[:, :1]
        if attention_mask is not None and attention_mask.dim() == 4 and attention_mask.shape[-2] > 1:
            attention_mask = attention_mask[:, :, :1, :]   # the first query's row of the mask
        key, value = linear_weights(self_attention.key), linear_weights(self_attention.value)
        if key is not None and value is not None and hasattr(self_attention, "attention_head_size"):
            context = _one_query_attention(self_attention, hidden_states, attention_mask, key, value)
        else:   # a projection we cannot read as one matrix (LoRA with dropout): keys and values as usual
            batch, length, _ = hidden_states.shape
            head = (-1, self_attention.attention_head_size) if hasattr(self_attention, "attention_head_size") \
                else (self_attention.num_attention_heads, -1)
            query = self_attention.query(first).view(batch, 1, *head).transpose(1, 2)
            keys = self_attention.key(hidden_states).view(batch, length, *head).transpose(1, 2)
            values = self_attention.value(hidden_states).view(batch, length, *head).transpose(1, 2)
            attend = ALL_ATTENTION_FUNCTIONS.get_interface(self_attention.config._attn_implementation,
                                                           eager_attention_forward)
            context, _ = attend(self_attention, query, keys, values, attention_mask,
                                dropout=self_attention.dropout.p if self_attention.training else 0.0,
                                scaling=self_attention.scaling)
            context = context.reshape(batch, 1, -1).contiguous()
        attended = block.attention.output(context, first)     # projection, dropout, residual, norm
        return block.feed_forward_chunk(attended)             # feed-forward, dropout, residual, norm

    return forward


def _one_query_attention(self_attention, hidden, mask, key, value):
    """Attention of the first token over all tokens, without projecting every token to keys and
    values. For one query q and head h, with k_j = W_k h_j + b_k and v_j = W_v h_j + b_v:

        score_j = q · k_j = (W_kᵀ q) · h_j + q · b_k    (the last term is the same for every j,
                                                        and softmax ignores a shared shift)
        Σ_j p_j v_j = W_v (Σ_j p_j h_j) + b_v Σ_j p_j

    So each head needs one (width)-vector W_kᵀ q and one weighted sum of the hidden states: the
    per-token cost falls from a width x width matmul per projection to a dot product per head
    (384 x 384 against 12 x 384 multiply-adds per token for MiniLM, 32 times less).
    """
    batch, length, width = hidden.shape
    heads, size = self_attention.num_attention_heads, self_attention.attention_head_size
    (key_w, _), (value_w, value_b) = key, value
    query = self_attention.query(hidden[:, :1]).view(batch, heads, size)
    probe = torch.einsum("bhe,hed->bhd", query, key_w.view(heads, size, width)) * self_attention.scaling
    scores = probe @ hidden.transpose(1, 2)                             # (batch, heads, length)
    if mask is not None:
        # (batch, 1, length). A 4-D mask is the model's own (boolean or additive); a 2-D one is the
        # tokenizer's 0/1 padding mask (flash-attention paths pass it through), so 1 means attend.
        mask = mask[:, :, 0, :] if mask.dim() == 4 else mask.view(mask.shape[0], 1, -1).bool()
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    probs = torch.softmax(scores, dim=-1)
    probs = F.dropout(probs, p=self_attention.dropout.p, training=self_attention.training)
    mixed = probs @ hidden                                              # (batch, heads, width)
    context = torch.einsum("bhd,hed->bhe", mixed, value_w.view(heads, size, width))
    if value_b is not None:   # under dropout the kept weights need not sum to 1
        context = context + value_b.view(heads, size) * probs.sum(dim=-1, keepdim=True)
    return context.reshape(batch, 1, heads * size)


def linear_weights(layer: nn.Module):
    """(weight, bias) that `layer` applies right now, or None when it is not a fixed linear map.
    A LoRA-wrapped projection counts as W + s·B A (see studio/training/merged_lora.py)."""
    if isinstance(layer, nn.Linear):
        return layer.weight, layer.bias
    from studio.training.merged_lora import lora_parts
    parts = lora_parts(layer)
    if parts is None:
        return None
    weight, bias, lora_a, lora_b, scale = parts
    return torch.addmm(weight, lora_b, lora_a, alpha=scale), bias
