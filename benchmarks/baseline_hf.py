"""The plain Hugging Face baselines: a `transformers.Trainer` set up by hand, no studio code.

Classification, two set-ups on the same rows, epochs and held-out set:
- "hf-tutorial": what most tutorials show: every text padded to max_length=128, lr 5e-5,
  batch 16, random batches (no length grouping), no warmup.
- "hf-tuned": well configured: dynamic padding (DataCollatorWithPadding), length-grouped
  batches, lr 1e-4 (3e-4 with frozen layers), warmup 10%, batch 16.
Both evaluate once per epoch (as tutorials do) and save no checkpoints. With a freeze case the
embeddings and the lowest k blocks get requires_grad=False in both.

Generation, "hf-plain": chat-formatted alpaca examples, padded to the longest in each batch
(DataCollatorForLanguageModeling), loss on every token, LoRA r=8 all-linear or full fine-tuning.

Each `run_*` takes a spec dict (see worker.py) and returns measurements; `response_loss` is the
harness's own eval loss for generation, applied identically to every trainer's final model.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.flops import block_params, count_tokens, find_blocks, flops_per_token, head_params
from benchmarks.timing import TimingCallback

STYLES = {  # trainer name -> (lr full, lr with frozen layers, dynamic padding + grouping + warmup)
    "hf-tutorial": (5e-5, 5e-5, False),
    "hf-tuned": (1e-4, 3e-4, True),
}


def freeze_bottom(model, depth: int) -> None:
    """Embeddings and blocks [0, depth) stop learning (requires_grad=False)."""
    prefix, blocks = find_blocks(model)
    frozen = {f"{prefix}.{i}." for i in range(min(depth, len(blocks)))}
    for name, param in model.named_parameters():
        if "embeddings" in name or "embed_tokens" in name or any(f in name + "." for f in frozen):
            param.requires_grad = False


def param_counts(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trained_params": int(trained), "total_params": int(total)}


def _quiet(trainer):
    """No console printing of every log dict (the worker's output is a log file anyway)."""
    from transformers.trainer_callback import PrinterCallback
    trainer.remove_callback(PrinterCallback)
    return trainer


def _args(spec, work, **kw):
    from transformers import TrainingArguments
    return TrainingArguments(output_dir=str(work), report_to="none", disable_tqdm=True, use_cpu=True,
                             seed=spec["seed"], data_seed=spec["seed"], save_strategy="no",
                             dataloader_num_workers=0, **kw)


def run_classify(spec: dict) -> dict:
    import pandas as pd
    from datasets import Dataset
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              Trainer, default_data_collator)

    t0 = time.time()
    case, folder = spec["case"], spec["model_folder"]
    lr_full, lr_frozen, tuned = STYLES[spec["trainer"]]
    train, test = pd.read_csv(spec["train_path"]), pd.read_csv(spec["test_path"])
    names = sorted(set(train["label"].astype(str)))
    ids = {n: i for i, n in enumerate(names)}
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=len(names), id2label=dict(enumerate(names)), label2id=ids)
    if case["method"] == "freeze":
        freeze_bottom(model, case["freeze_depth"])

    def dataset(frame):
        pad = {} if tuned else {"padding": "max_length"}
        enc = tok(frame["text"].astype(str).tolist(), truncation=True, max_length=case["max_length"], **pad)
        return Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                                  "labels": [ids[str(x)] for x in frame["label"]]})

    def metrics(pred):
        logits, labels = pred
        return {"accuracy": float((np.asarray(logits).argmax(-1) == labels).mean())}

    extra = {"train_sampling_strategy": "group_by_length", "warmup_steps": 0.1} if tuned else {}
    args = _args(spec, spec["work_dir"], per_device_train_batch_size=case["batch_size"],
                 per_device_eval_batch_size=32 if tuned else case["batch_size"],
                 learning_rate=lr_frozen if case["method"] == "freeze" else lr_full,
                 num_train_epochs=case["epochs"], eval_strategy="epoch", logging_steps=10, **extra)
    timing = TimingCallback()
    trainer = _quiet(Trainer(model=model, args=args, train_dataset=dataset(train), eval_dataset=dataset(test),
                             data_collator=DataCollatorWithPadding(tok) if tuned else default_data_collator,
                             compute_metrics=metrics, callbacks=[timing]))
    trainer.train()
    evals = [h for h in trainer.state.log_history if "eval_accuracy" in h]
    final = evals[-1] if evals and evals[-1]["step"] == trainer.state.global_step else trainer.evaluate()
    wall = time.time() - t0
    tokens = count_tokens(tok, train["text"].astype(str).tolist(), case["max_length"])
    per_token = flops_per_token(block_params(model), case["method"], case["freeze_depth"])
    return {**timing.summary(t0), **param_counts(model), "wall_s": round(wall, 3),
            "accuracy": round(float(final["eval_accuracy"]), 4), "eval_loss": round(float(final["eval_loss"]), 4),
            "tokens_per_epoch": tokens, "flops_per_token": per_token}


# -- generation --------------------------------------------------------------------------------
def chat_texts(tok, records: list[dict]) -> tuple[list[str], list[str]]:
    """(full conversation, prompt part up to the assistant's turn) for each alpaca record."""
    full, prompts = [], []
    for r in records:
        user = r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else "")
        messages = [{"role": "user", "content": user}]
        prompts.append(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        full.append(tok.apply_chat_template(messages + [{"role": "assistant", "content": r["output"]}],
                                            tokenize=False))
    return full, prompts


def response_loss(model, tok, records: list[dict], max_length: int, batch_size: int = 4) -> float:
    """Mean cross-entropy over the answer tokens of `records` (prompt tokens masked): the same
    yardstick for every trainer's final model, whatever loss masking it trained with."""
    import torch
    full, prompts = chat_texts(tok, records)
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(full), batch_size):
            texts, heads = full[start:start + batch_size], prompts[start:start + batch_size]
            enc = tok(texts, add_special_tokens=False, truncation=True, max_length=max_length,
                      padding=True, return_tensors="pt")
            labels = enc["input_ids"].clone()
            labels[enc["attention_mask"] == 0] = -100
            for i, head in enumerate(heads):
                labels[i, :len(tok(head, add_special_tokens=False)["input_ids"])] = -100
            logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
            shift = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)),
                                                      labels[:, 1:].reshape(-1), reduction="sum")
            total += float(shift)
            count += int((labels[:, 1:] != -100).sum())
    return total / max(count, 1)


def run_generate(spec: dict) -> dict:
    import json
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer

    t0 = time.time()
    case, folder = spec["case"], spec["model_folder"]
    train = json.loads(open(spec["train_path"], encoding="utf-8").read())
    test = json.loads(open(spec["test_path"], encoding="utf-8").read())
    tok = AutoTokenizer.from_pretrained(folder)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    blocks, head = block_params(model), head_params(model)
    if case["method"] == "lora":
        from peft import LoraConfig, TaskType, get_peft_model
        model = get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=16,
                                                 lora_dropout=0.05, target_modules="all-linear"))
    texts, _ = chat_texts(tok, train)
    enc = tok(texts, add_special_tokens=False, truncation=True, max_length=case["max_length"])
    ds = Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    args = _args(spec, spec["work_dir"], per_device_train_batch_size=case["batch_size"],
                 num_train_epochs=case["epochs"], learning_rate=2e-4 if case["method"] == "lora" else 5e-5,
                 eval_strategy="no", logging_steps=4)
    timing = TimingCallback()
    trainer = _quiet(Trainer(model=model, args=args, train_dataset=ds, callbacks=[timing],
                             data_collator=DataCollatorForLanguageModeling(tok, mlm=False)))
    trainer.train()
    loss = response_loss(trainer.model, tok, test, case["max_length"])
    wall = time.time() - t0
    return {**timing.summary(t0), **param_counts(model), "wall_s": round(wall, 3),
            "eval_loss": round(loss, 4), "tokens_per_epoch": int(sum(len(x) for x in enc["input_ids"])),
            "flops_per_token": flops_per_token(blocks, case["method"], 0, head)}
