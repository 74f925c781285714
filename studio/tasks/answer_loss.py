"""The instruction-tuning loss, computed only where it counts.

A causal LM's usual forward pass turns *every* position's hidden state into a score for every
word in the vocabulary (SmolLM2: 49,152 of them), then the loss throws most of those scores away:
prompt and padding positions carry the label -100. On a 135M model that output layer is about a
fifth of the forward FLOPs, and its [batch, length, vocabulary] float32 output is the largest tensor
of the step (4 x 1024 x 49,152 floats = 800 MB).

`answer_loss` runs the transformer body as usual, keeps only the hidden states whose *next* token
is an answer token, and applies the output layer to those alone. The loss is the same number the
model's own `loss` gives (mean cross-entropy over the answer tokens; tested to float tolerance);
the work and the memory of the scores shrink to the answer's share of the tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def _parts(model):
    """(the causal LM, its transformer body, its output layer), through a peft wrapper if any.
    LoRA layers are injected into the modules in place, so calling the body directly uses them."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = getattr(lm, "model", None)
    head = getattr(lm, "lm_head", None)
    if body is None or head is None:
        return lm, None, None
    return lm, body, head


def supports_answer_loss(model) -> bool:
    """True for the usual `XForCausalLM` layout (a `.model` body and an `.lm_head`)."""
    return _parts(model)[1] is not None


def answer_loss(model, inputs: dict) -> torch.Tensor:
    """Mean cross-entropy of the answer tokens in `inputs` (input_ids, attention_mask, labels)."""
    lm, body, head = _parts(model)
    labels = inputs["labels"]
    hidden = body(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                  use_cache=False).last_hidden_state
    # Position t predicts token t + 1: pair hidden[:, :-1] with labels[:, 1:].
    targets = labels[:, 1:]
    keep = targets != IGNORE
    if not bool(keep.any()):   # nothing to learn in this batch: a zero that still has a graph
        return hidden.sum() * 0.0
    logits = head(hidden[:, :-1][keep])
    cap = getattr(lm.config, "final_logit_softcapping", None)   # Gemma squashes its scores
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return F.cross_entropy(logits.float(), targets[keep])
