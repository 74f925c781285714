"""Instruction tuning: conversations in, the assistant's answers learned.

Every training example is a conversation: a list of `{"role": "system"|"user"|"assistant",
"content": str}` messages (`studio.gendata` turns all three data formats into this shape). The
model sees it through its *chat template*, the text layout it was trained with, e.g. SmolLM2's

    <|im_start|>user\\nWhat is your name?<|im_end|>\\n<|im_start|>assistant\\nI'm Pip.<|im_end|>\\n

A model without one (a base model such as Gemma-3-270M, or a test tokenizer) gets PLAIN_TEMPLATE.
The loss covers only the assistant's words (and the end-of-turn mark that teaches it to stop):
every other token gets the label -100, which the loss ignores. So the model learns to *answer*,
not to predict the questions. Which tokens are the assistant's is found from character spans:
the template renders the conversation up to each assistant turn, and tokens starting inside an
answer's span keep their ids as labels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio import catalog
from studio.errors import DataError, ModelError
from studio.tasks import Prepared
from studio.tasks.answer_loss import answer_loss, supports_answer_loss

IGNORE = -100   # the label cross-entropy skips

# "### User / ### Assistant" with the end-of-sequence token after each answer, so the tuned model
# learns where an answer ends. A jinja template like any model's own, stored with the tokenizer.
# (Chat templates render with trim_blocks: a newline right after a {% tag %} vanishes.)
PLAIN_TEMPLATE = (
    "{{ bos_token or '' }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}### User:\n{{ m['content'] }}\n\n"
    "{% else %}### Assistant:\n{{ m['content'] }}{{ eos_token or '' }}\n\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}### Assistant:\n{% endif %}")
PLAIN_STOP = "### User:"   # where a base model rambling on under the plain template is cut


# Settings that teach SmolLM2-135M-Instruct the identity sample (62 conversations) in a few minutes
# on a 2-core CPU: LoRA (under 2% of the weights learn), a learning rate 5x the classification
# default (adapters start at zero and have few steps to move), 3 passes over the data.
RECOMMENDED = {"method": "lora", "learning_rate": 1e-3, "epochs": 3, "batch_size": 8, "max_length": 128,
               "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0}


# -- loading ---------------------------------------------------------------------------------------
def load_tokenizer(target: str):
    """The model's tokenizer with a chat template (PLAIN_TEMPLATE when it has none) and a pad token."""
    from transformers import AutoTokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(target, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ModelError(f"could not load the tokenizer of '{target}': {str(exc).splitlines()[0]}") from None
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = PLAIN_TEMPLATE
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(f"the tokenizer of '{target}' has neither a padding nor an end-of-text token.",
                             hint="Pick a model made for text generation.")
        tokenizer.pad_token = tokenizer.eos_token   # padding is masked out, so any token works
    return tokenizer


def uses_plain_template(tokenizer) -> bool:
    return tokenizer.chat_template == PLAIN_TEMPLATE


def load_causal_lm(target: str):
    """A causal language model in float32, safetensors only, never custom code."""
    import torch
    from transformers import AutoModelForCausalLM
    try:
        return AutoModelForCausalLM.from_pretrained(target, use_safetensors=True, trust_remote_code=False,
                                                    dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelError(f"could not load '{target}' as a text generator: {str(exc).splitlines()[0]}",
                         hint="Pick a causal language model (e.g. smollm2-135m-instruct).") from None


# -- rendering and encoding ------------------------------------------------------------------------
def render(tokenizer, messages: list[dict], *, add_generation_prompt: bool = False) -> str:
    """The conversation as the text the model reads (its chat template applied)."""
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    except Exception as exc:   # jinja raises TemplateError (e.g. "roles must alternate")
        raise DataError(f"this model's chat template refuses the conversation: {exc}",
                        hint="Check the order of roles (system first, then user and assistant turns).") from None


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """(full text, [(start, end) character span of each assistant answer incl. its end mark])."""
    text = render(tokenizer, messages)
    spans, cursor = [], 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        head = render(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        upto = render(tokenizer, messages[: i + 1])
        # Templates normally render a conversation as a prefix of its continuation. When one does
        # not (it rewrites earlier turns), fall back to finding the answer text itself.
        start = len(head) if text.startswith(head) and head else text.find(message["content"], cursor)
        end = len(upto) if text.startswith(upto) else start + len(message["content"])
        if start < 0 or end <= start:
            continue
        spans.append((start, end))
        cursor = end
    return text, spans


@dataclass
class Encoded:
    """One tokenized conversation. labels[i] == input_ids[i] where the loss counts, else IGNORE."""
    input_ids: list[int]
    labels: list[int]
    full_length: int          # tokens before truncation

    @property
    def truncated(self) -> bool:
        return self.full_length > len(self.input_ids)

    @property
    def trained_tokens(self) -> int:
        return sum(label != IGNORE for label in self.labels)


def encode(tokenizer, messages: list[dict], max_length: int) -> Encoded:
    """Tokenize a rendered conversation, mask everything but the answers, cut at `max_length`."""
    text, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = [tok if any(s <= start < e for s, e in spans) and end > start else IGNORE
              for tok, (start, end) in zip(ids, enc["offset_mapping"])]
    return Encoded(ids[:max_length], labels[:max_length], len(ids))


def encode_prompt(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of a conversation ending where the assistant's next answer should start."""
    return list(tokenizer(render(tokenizer, messages, add_generation_prompt=True),
                          add_special_tokens=False)["input_ids"])


def end_of_turn_id(tokenizer) -> int | None:
    """The special token the template puts right after an answer (<|im_end|>, <end_of_turn>,
    eos): generation stops there even when the tokenizer's eos is a different token."""
    probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    try:
        text, spans = assistant_spans(tokenizer, probe)
    except DataError:
        return None
    if not spans:
        return None
    start, end = spans[-1]
    ids = tokenizer(text[start + 1:end].lstrip(" "), add_special_tokens=False)["input_ids"]
    return ids[0] if ids and ids[0] in set(tokenizer.all_special_ids) else None


def render_segments(tokenizer, messages: list[dict]) -> list[tuple[str, str | None]]:
    """The rendered text split into (piece, "learned" | None): what the loss covers, for a preview."""
    text, spans = assistant_spans(tokenizer, messages)
    pieces, cursor = [], 0
    for start, end in spans:
        if start > cursor:
            pieces.append((text[cursor:start], None))
        pieces.append((text[start:end], "learned"))
        cursor = end
    if cursor < len(text):
        pieces.append((text[cursor:], None))
    return pieces


def encode_all(tokenizer, conversations: list[list[dict]], max_length: int) -> list[Encoded]:
    return [encode(tokenizer, conv, max_length) for conv in conversations]


def to_dataset(encoded: list[Encoded]):
    """A datasets.Dataset with input_ids, attention_mask, labels (examples with nothing left to
    learn after truncation are dropped: their loss would be undefined)."""
    from datasets import Dataset
    kept = [e for e in encoded if e.trained_tokens]
    return Dataset.from_dict({"input_ids": [e.input_ids for e in kept],
                              "attention_mask": [[1] * len(e.input_ids) for e in kept],
                              "labels": [e.labels for e in kept]})


class CausalCollator:
    """Pads a batch to its longest example (dynamic padding): ids with the pad id, labels with
    IGNORE, attention 0 on padding. Right padding: the model reads left to right."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        import torch
        width = max(len(f["input_ids"]) for f in features)
        out = {"input_ids": [], "attention_mask": [], "labels": []}
        for f in features:
            gap = width - len(f["input_ids"])
            out["input_ids"].append(list(f["input_ids"]) + [self.pad_id] * gap)
            out["attention_mask"].append([1] * len(f["input_ids"]) + [0] * gap)
            out["labels"].append(list(f["labels"]) + [IGNORE] * gap)
        return {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}


# -- the job's entry point -------------------------------------------------------------------------
def prepare(config, report=lambda message: None) -> Prepared:
    """Load data, tokenizer and model for a generation run, with the training method applied."""
    from studio.freezing import apply_method
    from studio.gendata import load_generation, token_stats

    report("Reading data")
    data = load_generation(config.data, seed=config.train.seed)
    report("Loading model")
    resolved = catalog.resolve(config.model, progress=lambda f, msg: report(f"Preparing the model: {msg}"))
    if resolved.folder is None:
        catalog.preflight_memory(catalog.read_config(resolved))
    tokenizer = load_tokenizer(resolved.load_target)
    model = load_causal_lm(resolved.load_target)
    model = apply_method(model, config.train, "generate")
    report("Tokenizing")
    max_length = config.train.max_length
    train_enc = encode_all(tokenizer, data.train, max_length)
    eval_enc = encode_all(tokenizer, data.validation, max_length)
    stats = token_stats(train_enc, max_length)
    # Evaluation batches run in dataset order: sorted by length and no bigger than a training
    # batch, each pads only a little. (32 alpaca records in one batch were 63% padding; in
    # batches of 4, 11%. A bigger batch buys nothing: a few hundred tokens fill the matmuls.)
    train_ds, eval_ds = to_dataset(train_enc), to_dataset(sorted(eval_enc, key=lambda e: len(e.input_ids)))
    if len(train_ds) == 0:
        raise DataError(f"after cutting at max_length={max_length} tokens no training example has any "
                        "answer left to learn.", where="train.max_length", hint="Raise max_length.")
    if len(eval_ds) == 0:
        eval_ds = train_ds.select(range(min(len(train_ds), 8)))
        data.warnings.append("No validation example kept an answer within max_length; "
                             "a few training examples are used for evaluation instead.")
    if stats.truncated:
        report(f"{stats.truncated} of {stats.examples} examples ({stats.truncated_share:.0%}) are cut at "
               f"{max_length} tokens")
    plain = uses_plain_template(tokenizer)

    def save(trained_model, folder: Path) -> None:
        """LoRA: the adapter only (the base is recovered by switching it off). Otherwise the whole
        model. Always the tokenizer (with the template used in training) and studio.json."""
        folder = Path(folder)
        adapter = hasattr(trained_model, "peft_config")
        trained_model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        meta = {"task": "generate", "base_model": config.model, "method": config.train.method,
                "adapter": adapter, "plain_template": plain, "format": data.format}
        (folder / "studio.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    return Prepared(model=model, tokenizer=tokenizer, train_dataset=train_ds, eval_dataset=eval_ds,
                    collator=CausalCollator(tokenizer.pad_token_id), compute_metrics=None,
                    metric="loss", greater_is_better=False, save=save,
                    tokens_per_sample=float(np.mean([len(x) for x in train_ds["input_ids"]])),
                    extras={"data": data, "stats": stats, "plain_template": plain},
                    loss_fn=answer_loss if supports_answer_loss(model) else None, length_buckets=True,
                    eval_batch_size=config.train.batch_size)
