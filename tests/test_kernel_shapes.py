"""bf16 matmuls on a CPU compile a kernel per shape, so a bf16 run keeps its shapes few: batches
padded to a multiple of 8 positions, varying row counts rounded up to a multiple of 32, with the
same results on the real tokens; fp32 runs are left exactly as they were."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from studio.tasks import Prepared
from studio.tasks.real_tokens import _with_pad_rows, compute_real_tokens_only
from studio.training.device import Precision
from studio.training.kernel_shapes import PadToMultiple, fit_to_kernels, length_multiple
from test_first_token import _batch, _classifier

BF16 = Precision("cpu", "bf16", "test")
FP32 = Precision("cpu", "fp32", "test")


def _collate(features):
    width = max(len(f["input_ids"]) for f in features)
    rows = [f["input_ids"] + [0] * (width - len(f["input_ids"])) for f in features]
    return {"input_ids": torch.tensor(rows), "attention_mask": (torch.tensor(rows) != 0).long(),
            "labels": torch.tensor([f["label"] for f in features]),
            "token_labels": torch.tensor(rows)}


def test_batches_are_padded_to_a_multiple_with_the_padding_of_each_kind():
    collator = PadToMultiple(_collate, 8, pad_id=9)
    batch = collator([{"input_ids": [5, 6, 7], "label": 1}, {"input_ids": [5], "label": 0}])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 9, 9, 9, 9, 9], [5, 0, 0, 9, 9, 9, 9, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]                     # one per sentence: left alone
    assert batch["token_labels"].shape == (2, 8) and batch["token_labels"][0, -1] == 0
    same = collator([{"input_ids": list(range(1, 9)), "label": 1}])
    assert same["input_ids"].shape == (1, 8)                      # already a multiple: unchanged


def test_generation_labels_are_padded_with_the_ignore_index():
    from studio.tasks.generate import CausalCollator
    batch = PadToMultiple(CausalCollator(pad_id=3), 8, pad_id=3)(
        [{"input_ids": [10, 11, 12], "labels": [-100, 11, 12]}])
    assert batch["input_ids"].tolist() == [[10, 11, 12, 3, 3, 3, 3, 3]]
    assert batch["labels"].tolist() == [[-100, 11, 12] + [-100] * 5]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0]]


def test_only_16_bit_cpu_runs_are_padded():
    class Tokenizer:
        pad_token_id = 4
    prepared = Prepared(model=None, tokenizer=Tokenizer(), train_dataset=None, eval_dataset=None,
                        collator=_collate, compute_metrics=None, metric="loss", greater_is_better=False,
                        save=lambda model, folder: None)
    assert fit_to_kernels(prepared, FP32) is prepared
    assert fit_to_kernels(prepared, Precision("cuda", "bf16", "gpu")) is prepared
    padded = fit_to_kernels(prepared, BF16)
    assert length_multiple(padded.collator) == 8 and padded.collator.pad_id == 4
    assert fit_to_kernels(padded, BF16).collator is padded.collator   # never wrapped twice
    assert length_multiple(_collate) == 1


def test_pad_rows_top_up_the_real_ones():
    real = torch.tensor([[True, True, False, False], [True, False, False, False]])
    index = real.reshape(-1).nonzero().squeeze(1)
    assert _with_pad_rows(index, real, 5).tolist() == [0, 1, 4, 2, 3]
    assert _with_pad_rows(index, real, 32).tolist() == [0, 1, 4, 2, 3, 5, 6, 7]   # all there is
    assert _with_pad_rows(index, real, 3) is index


def test_rounded_real_token_rows_give_the_same_logits_and_gradients(monkeypatch):
    """The rounding itself, checked in fp32 where results compare number for number: forced on,
    the blocks run pad rows alongside the real ones and nothing the model returns changes."""
    plain = _classifier("bert", "sdpa")
    rounded = copy.deepcopy(plain)   # before installing: the installed forwards close over their blocks
    compute_real_tokens_only(plain), compute_real_tokens_only(rounded)
    import studio.tasks.real_tokens as real_tokens
    seen = []
    monkeypatch.setattr(real_tokens, "rounds_rows", lambda tensor: True)
    monkeypatch.setattr(real_tokens, "round_rows", lambda rows: seen.append(rows) or 40)
    batch = _batch()
    plain.eval(), rounded.eval()
    torch.testing.assert_close(rounded(**batch).logits, plain(**batch).logits, rtol=1e-5, atol=1e-6)
    assert seen, "the rounded path ran"
    plain(**batch).loss.backward()
    rounded(**batch).loss.backward()
    for (name, p), q in zip(plain.named_parameters(), rounded.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_rounded_output_rows_give_the_same_loss_and_gradients():
    """The answer-only output layer pads its rows to a multiple of 32 when its products run in a
    16-bit format; with float32 as that format the result is the textbook one, number for number."""
    from studio.tasks.answer_loss import OutputCrossEntropy
    torch.manual_seed(0)
    hidden = torch.randn(37, 16).requires_grad_()
    weight = torch.randn(101, 16).requires_grad_()
    targets = torch.randint(0, 101, (37,))
    results = []
    for loss_of in (lambda: F.cross_entropy(F.linear(hidden, weight), targets),
                    lambda: OutputCrossEntropy.apply(hidden, weight, None, targets, torch.float32)):
        loss = loss_of()
        results.append((loss.detach(), torch.autograd.grad(loss, (hidden, weight))))
    (ref_loss, ref_grads), (loss, grads) = results
    torch.testing.assert_close(loss, ref_loss)
    assert grads[0].shape == hidden.shape
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want)


class _MatmulShapes(TorchDispatchMode):
    """Records the operand shapes of every matmul that runs."""
    def __init__(self):
        super().__init__()
        self.shapes = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.mm.default:
            self.shapes.add((tuple(args[0].shape), tuple(args[1].shape)))
        elif func is torch.ops.aten.addmm.default:
            self.shapes.add((tuple(args[1].shape), tuple(args[2].shape)))
        return func(*args, **(kwargs or {}))


def _matmul_shapes(collator, bf16: bool) -> set:
    """The matmul shapes of twelve training batches of different lengths."""
    model = _classifier("bert", "sdpa")
    compute_real_tokens_only(model)
    generator = torch.Generator().manual_seed(0)
    recorder = _MatmulShapes()
    with recorder, torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for _ in range(12):
            lengths = torch.randint(3, 30, (6,), generator=generator).tolist()
            batch = collator([{"input_ids": list(range(5, 5 + n)), "label": 0} for n in lengths])
            model(**batch).loss.backward()
    return recorder.shapes


def test_a_bf16_classifier_meets_few_matmul_shapes():
    """The same twelve batches: in fp32 nearly every batch brings new shapes (sgemm does not
    mind); in bf16, padded and rounded, the real tokens' row counts are multiples of 32 or whole
    padded batches, and the shapes are a fraction of fp32's."""
    fp32 = _matmul_shapes(_collate, bf16=False)
    bf16 = _matmul_shapes(PadToMultiple(_collate, 8, pad_id=0), bf16=True)
    token_rows = {a[0] for a, b in bf16 if a[0] > 6 and a[1] == 32}   # (rows, width) inputs of projections
    assert token_rows and all(rows % 32 == 0 or rows % 48 == 0 for rows in token_rows), token_rows
    assert len(bf16) * 2 < len(fp32), (len(bf16), len(fp32))


@pytest.mark.parametrize("precision, expected", [(FP32, 1), (BF16, 8)])
def test_the_estimate_counts_the_positions_the_collator_makes(precision, expected):
    from studio.training.estimate import eval_positions
    padded = fit_to_kernels(Prepared(model=None, tokenizer=None, train_dataset=None, eval_dataset=None,
                                     collator=_collate, compute_metrics=None, metric="loss",
                                     greater_is_better=False, save=lambda m, f: None), precision)
    multiple = length_multiple(padded.collator)
    assert multiple == expected
    assert eval_positions([3, 5, 11], 2, multiple) == (2 * 5 + 11 if expected == 1 else 2 * 8 + 16)
