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

Even the answer's share is big: 600 answer tokens x 49,152 words is a 118 MB tensor, and the
usual cross-entropy makes four of them per step (the scores, their log-softmax, a zero-filled
gradient, the gradient of the log-softmax). On this machine a fresh 118 MB tensor costs more to
*get* than to fill: the kernel hands it out page by page, and the profile of a SmolLM2 LoRA step
showed 225 ms in log-softmax, 199 ms zero-filling and 216 ms in its backward, 13% of the step.
`OutputCrossEntropy` keeps the scores in the one buffer the output layer wrote: log-softmax in
place, and in the backward pass the softmax (its exp), minus one at each target, is the gradient,
in place again. The log-softmax itself then takes 15 ms. SmolLM2 LoRA steps got 1.15x faster;
Gemma-3-270M, with 262,208 words, 1.49x (7.49 -> 5.03 s per step), its peak memory 4.8 -> 3.6 GB.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from studio.training.kernel_shapes import round_rows

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
    rows, targets = hidden[:, :-1][keep], targets[keep]
    cap = getattr(lm.config, "final_logit_softcapping", None)   # Gemma squashes its scores
    if _plain_fp32_linear(head, rows) and not cap:
        return OutputCrossEntropy.apply(rows, head.weight, head.bias, targets, _autocast_dtype(rows))
    logits = head(rows)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return F.cross_entropy(logits.float(), targets)


def _plain_fp32_linear(head, rows) -> bool:
    """An unwrapped float32 nn.Linear (not one with adapters or hooks) on float32 rows, so its
    matmul can be inlined."""
    return (type(head) is torch.nn.Linear and rows.dtype == torch.float32 == head.weight.dtype
            and not head._forward_hooks and not head._forward_pre_hooks and "forward" not in vars(head))


def _autocast_dtype(rows) -> torch.dtype | None:
    """The matmul format autocast would give the output layer here (bf16 / fp16), or None."""
    kind = rows.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None


class OutputCrossEntropy(torch.autograd.Function):
    """mean over rows of -log softmax(hidden Wᵀ + b)[target], with the scores in one buffer.

    Same value and gradients as `F.cross_entropy(F.linear(hidden, W, b), targets)` (a test checks
    them). With `matmul_dtype` (bf16 / fp16, what autocast would use) the two big products run in
    that format, as autocast would run them, while the scores, the softmax and the gradients stay
    float32. The buffer is rewritten by the backward pass, so a second backward through the same
    graph (retain_graph) stops with autograd's "modified by an inplace operation" error instead of
    returning wrong gradients."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, matmul_dtype=None):
        rows = len(targets)
        if matmul_dtype is not None and hidden.device.type == "cpu":
            # oneDNN compiles a kernel per row count (kernel_shapes.py): zero rows up to a round
            # count, whose scores are computed and never used.
            hidden = F.pad(hidden, (0, 0, 0, round_rows(rows) - rows))
        with torch.autocast(hidden.device.type, enabled=False):   # formats are chosen here
            scores = _linear(hidden, weight, bias, matmul_dtype).float()   # owned here: nothing else sees it
            # In place: the public log_softmax always allocates its output. Each row is read whole
            # (its max and its sum of exps) before it is written, so overwriting it is safe.
            log_probs = torch._log_softmax(scores, -1, False, out=scores)
            loss = -log_probs[:rows].gather(1, targets[:, None]).mean()
        ctx.save_for_backward(hidden, weight, log_probs, targets)
        ctx.bias_needs_grad = bias is not None and ctx.needs_input_grad[2]
        ctx.matmul_dtype = matmul_dtype
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        hidden, weight, log_probs, targets = ctx.saved_tensors
        rows = len(targets)
        # d loss / d scores = (softmax - one_hot(target)) / rows; zero for the rounding's extra rows
        grad = log_probs.exp_()
        grad[rows:] = 0.0
        grad[torch.arange(rows, device=grad.device), targets] -= 1.0
        grad.mul_(grad_loss / rows)
        grad_bias = grad.sum(0) if ctx.bias_needs_grad else None
        dtype = ctx.matmul_dtype
        if dtype is not None:   # the products in the 16-bit format, the results back in float32
            grad, weight_, hidden_ = grad.to(dtype), weight.to(dtype), hidden.to(dtype)
        else:
            weight_, hidden_ = weight, hidden
        grad_hidden = (grad @ weight_)[:rows].to(hidden.dtype) if ctx.needs_input_grad[0] else None
        grad_weight = (grad.t() @ hidden_).to(weight.dtype) if ctx.needs_input_grad[1] else None
        return grad_hidden, grad_weight, grad_bias, None, None


def _linear(hidden, weight, bias, dtype):
    if dtype is None:
        return F.linear(hidden, weight, bias)
    return F.linear(hidden.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype))
