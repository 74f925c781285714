"""Text classification: text in, one label out.

The base model is an encoder (all-MiniLM-L6-v2 by default) with a new, randomly initialised
classification head. Before fine-tuning it cannot classify at all, so its "base prediction" is
zero-shot: embed the text and every label name, pick the most similar label. Comparing that with
the tuned model shows what fine-tuning added.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from studio import catalog
from studio.errors import ModelError
from studio.tasks import Prepared

log = logging.getLogger(__name__)


def load_tokenizer(target: str):
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(target, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ModelError(f"could not load the tokenizer of '{target}': {str(exc).splitlines()[0]}") from None


def load_classifier(target: str, labels):
    """A sequence classifier with a fresh head sized for `labels` (a LabelSet)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging
    import torch
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialised head" is expected, not a warning to users
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            target, num_labels=len(labels.names), id2label=labels.id2label, label2id=labels.label2id,
            use_safetensors=True, trust_remote_code=False, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelError(f"could not load '{target}' as a classifier: {str(exc).splitlines()[0]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)


def tokenize(tokenizer, texts: list[str], max_length: int) -> dict:
    return tokenizer(list(texts), truncation=True, max_length=max_length)


def to_dataset(tokenizer, frame, max_length: int, *, id_offset: int | None = None):
    """Tokenized examples (no padding: the collator pads each batch to its own longest).

    With `id_offset`, each example also carries a stable `example_id` for the prefix cache.
    """
    from datasets import Dataset
    enc = tokenize(tokenizer, frame["text"].tolist(), max_length)
    columns = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
               "labels": frame["label"].astype(int).tolist()}
    if id_offset is not None:
        columns["example_id"] = list(range(id_offset, id_offset + len(frame)))
    return Dataset.from_dict(columns)


def uses_prefix_cache(train_spec) -> bool:
    return train_spec.method == "freeze" and train_spec.cache_frozen and train_spec.freeze_depth > 0


def unwrap(model):
    """The transformers model inside a prefix-cache wrapper (or the model itself)."""
    return getattr(model, "model", model) if type(model).__name__ == "CachedPrefixModel" else model


def compute_metrics(eval_pred) -> dict:
    from sklearn.metrics import accuracy_score, f1_score
    logits, labels = eval_pred
    preds = np.asarray(logits).argmax(-1)
    return {"accuracy": float(accuracy_score(labels, preds)),
            "macro_f1": float(f1_score(labels, preds, average="macro", zero_division=0))}


def prepare(config, report=lambda message: None) -> Prepared:
    """Load data, tokenizer and model for a classification run, with the method applied."""
    from transformers import DataCollatorWithPadding
    from studio.data import load_classification
    from studio.freezing import apply_method, find_blocks
    from studio.tasks.first_token import compute_first_token_only
    from studio.tasks.real_tokens import compute_real_tokens_only
    from studio.training.dropout import use_fast_dropout
    from studio.tasks.seen_rows import fold_seen_rows, train_seen_rows_only

    from transformers import set_seed
    set_seed(config.train.seed)  # before the new head is initialised, so a run repeats exactly
    report("Reading data")
    data = load_classification(config.data, seed=config.train.seed)
    report("Loading model")
    resolved = catalog.resolve(config.model)
    if resolved.folder is None:
        catalog.preflight_memory(catalog.read_config(resolved))
    tokenizer = load_tokenizer(resolved.load_target)
    model = load_classifier(resolved.load_target, data.labels)
    cached = uses_prefix_cache(config.train)
    if not (cached and config.train.freeze_depth >= len(find_blocks(model)[1])):
        compute_first_token_only(model)  # unless the last block is inside the cached prefix
    compute_real_tokens_only(model)      # the other blocks skip padding
    use_fast_dropout(model)
    model = apply_method(model, config.train, "classify")
    if cached:
        from studio.training.prefix_cache import CachedPrefixModel
        model = CachedPrefixModel(model, config.train.freeze_depth)
    train_ds = to_dataset(tokenizer, data.train, config.train.max_length, id_offset=0 if cached else None)
    eval_ds = to_dataset(tokenizer, data.validation, config.train.max_length,
                         id_offset=len(data.train) if cached else None)
    train_seen_rows_only(unwrap(model), train_ds["input_ids"])  # full fine-tuning: only the rows in use train
    mean_tokens = float(np.mean([len(x) for x in train_ds["input_ids"]])) if len(train_ds) else None

    def save(trained_model, folder: Path) -> None:
        trained_model = unwrap(trained_model)
        fold_seen_rows(trained_model)
        if hasattr(trained_model, "merge_and_unload"):  # LoRA: store a plain model, adapters merged
            trained_model = trained_model.merge_and_unload()
        trained_model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        (folder / "studio.json").write_text(json.dumps({"task": "classify", "base_model": config.model,
                                                        "labels": data.labels.names}), encoding="utf-8")

    return Prepared(model=model, tokenizer=tokenizer, train_dataset=train_ds, eval_dataset=eval_ds,
                    collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics,
                    metric="accuracy", greater_is_better=True, save=save, tokens_per_sample=mean_tokens,
                    extras={"data": data, "close": model.store.close if cached else None})


# -- inference -------------------------------------------------------------------------------------
def predict_proba(model, tokenizer, texts: list[str], *, max_length: int = 128, batch_size: int = 64) -> np.ndarray:
    """Class probabilities, shape (len(texts), num_labels). Batches sorted by length for speed."""
    import torch
    model.eval()
    order = np.argsort([len(t) for t in texts])
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in idx], truncation=True, max_length=max_length,
                            padding=True, return_tensors="pt")
            out[idx] = torch.softmax(model(**enc).logits, dim=-1).numpy()
    return out


def label_phrase(name: str) -> str:
    """How a label name reads as words, for zero-shot matching ("password_reset" -> "password reset")."""
    return str(name).replace("_", " ").replace("-", " ").strip()


def embed(encoder, tokenizer, texts: list[str], *, max_length: int = 128, batch_size: int = 64) -> np.ndarray:
    """Mean-pooled, L2-normalised sentence embeddings (the sentence-transformers recipe)."""
    import torch
    encoder.eval()
    vectors = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length,
                            padding=True, return_tensors="pt")
            hidden = encoder(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            vectors.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(vectors) if vectors else np.zeros((0, 1), dtype=np.float32)


def load_encoder(target: str):
    from transformers import AutoModel
    import torch
    try:
        return AutoModel.from_pretrained(target, use_safetensors=True, trust_remote_code=False,
                                         dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelError(f"could not load '{target}': {str(exc).splitlines()[0]}") from None


def zero_shot_proba(encoder, tokenizer, texts: list[str], label_names: list[str], *,
                    max_length: int = 128, temperature: float = 0.05) -> np.ndarray:
    """Base-model 'prediction': softmax over cosine similarity to each label name's embedding."""
    text_vecs = embed(encoder, tokenizer, list(texts), max_length=max_length)
    label_vecs = embed(encoder, tokenizer, [label_phrase(n) for n in label_names], max_length=max_length)
    sims = text_vecs @ label_vecs.T / temperature
    sims -= sims.max(axis=1, keepdims=True)
    probs = np.exp(sims)
    return probs / probs.sum(axis=1, keepdims=True)
