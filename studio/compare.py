"""Base vs tuned: the same inputs through the model before and after fine-tuning.

For classification the base is the pretrained encoder used zero-shot (nearest label name by
embedding similarity), because its classification head did not exist before training. The tuned
model is the run's saved model. `compare_dataset` scores both on a whole labelled set: accuracy,
macro-F1, per-class precision/recall/F1, both confusion matrices, and every example where the two
disagree.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from studio import catalog
from studio.errors import JobError
from studio.fresh_thread import in_fresh_thread
from studio.tasks import classify
from studio.training.runs import Run


@dataclass
class DatasetComparison:
    labels: list[str]
    summary: pd.DataFrame        # metric | base | tuned | delta
    per_class: pd.DataFrame      # label | support | base_f1 | tuned_f1 | ...
    confusion_base: np.ndarray   # rows: true label, columns: predicted
    confusion_tuned: np.ndarray
    examples: pd.DataFrame       # text | label | base | tuned | base_conf | tuned_conf | agree | ...

    @property
    def disagreements(self) -> pd.DataFrame:
        return self.examples[~self.examples["agree"]]

    def to_dict(self) -> dict:
        return {"labels": self.labels,
                "summary": self.summary.to_dict(orient="records"),
                "per_class": self.per_class.to_dict(orient="records"),
                "confusion_base": self.confusion_base.tolist(),
                "confusion_tuned": self.confusion_tuned.tolist(),
                "disagreements": self.disagreements.to_dict(orient="records")}


class ClassifierPair:
    """The tuned model of a finished run and its base encoder, loaded once."""

    def __init__(self, run: Run) -> None:
        meta = run.model_meta()
        self.run = run
        self.config = run.config()
        if meta.get("task") != "classify":
            raise JobError(f"run {run.id} is not a classification run: it has no labels to predict.",
                           hint="For a text generation run, ask for an answer instead "
                                "(the Compare tab's chat, or `studio generate`).")
        self.labels: list[str] = meta["labels"]
        self.max_length = self.config.train.max_length
        from transformers import AutoModelForSequenceClassification
        self.tokenizer = classify.load_tokenizer(str(run.model_dir))
        self.tuned = AutoModelForSequenceClassification.from_pretrained(
            run.model_dir, use_safetensors=True, trust_remote_code=False)
        base = catalog.resolve(self.config.model)
        self.base_tokenizer = classify.load_tokenizer(base.load_target)
        self.base = classify.load_encoder(base.load_target)
        self._lock = threading.Lock()  # one forward pass at a time per loaded pair

    def predict(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(base_probs, tuned_probs), each of shape (len(texts), len(labels)). Computed in a fresh
        thread: the caller may be a long-lived server thread (see fresh_thread.py)."""
        return in_fresh_thread(self._predict, texts)

    def _predict(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            base = classify.zero_shot_proba(self.base, self.base_tokenizer, texts, self.labels,
                                            max_length=self.max_length)
            tuned = classify.predict_proba(self.tuned, self.tokenizer, texts, max_length=self.max_length)
        return base, tuned

    def predict_one(self, text: str) -> dict:
        base, tuned = self.predict([text])
        return {"labels": self.labels,
                "base": dict(zip(self.labels, map(float, base[0]))),
                "tuned": dict(zip(self.labels, map(float, tuned[0]))),
                "base_label": self.labels[int(base[0].argmax())],
                "tuned_label": self.labels[int(tuned[0].argmax())]}

    def compare_dataset(self, texts: list[str], gold: list[str]) -> DatasetComparison:
        base, tuned = self.predict(list(texts))
        return score(self.labels, list(texts), list(gold), base, tuned)


def score(labels: list[str], texts: list[str], gold: list[str], base: np.ndarray, tuned: np.ndarray) -> DatasetComparison:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
    index = {name: i for i, name in enumerate(labels)}
    unknown = sorted({g for g in gold if g not in index})
    if unknown:
        raise JobError(f"labels {', '.join(map(str, unknown[:5]))} were not in the training data.",
                       hint="Compare on data with the same label set.")
    y = np.array([index[g] for g in gold])
    pb, pt = base.argmax(1), tuned.argmax(1)
    ids = list(range(len(labels)))
    rows = []
    for name, fn in (("accuracy", lambda p: accuracy_score(y, p)),
                     ("macro_f1", lambda p: f1_score(y, p, average="macro", labels=ids, zero_division=0))):
        b, t = float(fn(pb)), float(fn(pt))
        rows.append({"metric": name, "base": b, "tuned": t, "delta": t - b})
    pr_b = precision_recall_fscore_support(y, pb, labels=ids, zero_division=0)
    pr_t = precision_recall_fscore_support(y, pt, labels=ids, zero_division=0)
    per_class = pd.DataFrame({"label": labels, "support": pr_t[3],
                              "base_precision": pr_b[0], "base_recall": pr_b[1], "base_f1": pr_b[2],
                              "tuned_precision": pr_t[0], "tuned_recall": pr_t[1], "tuned_f1": pr_t[2]})
    examples = pd.DataFrame({"text": texts, "label": gold,
                             "base": [labels[i] for i in pb], "tuned": [labels[i] for i in pt],
                             "base_confidence": base.max(1), "tuned_confidence": tuned.max(1)})
    examples["agree"] = examples["base"] == examples["tuned"]
    examples["base_correct"] = examples["base"] == examples["label"]
    examples["tuned_correct"] = examples["tuned"] == examples["label"]
    return DatasetComparison(labels, pd.DataFrame(rows), per_class,
                             confusion_matrix(y, pb, labels=ids), confusion_matrix(y, pt, labels=ids), examples)


_PAIRS: "OrderedDict[str, ClassifierPair]" = OrderedDict()
_PAIRS_LOCK = threading.Lock()


def load_pair(run: Run, *, keep: int = 2) -> ClassifierPair:
    """Loaded pairs are shared by run id (read-only models), keeping the `keep` most recent."""
    with _PAIRS_LOCK:
        pair = _PAIRS.pop(str(run.dir), None)
        if pair is None:
            pair = in_fresh_thread(ClassifierPair, run)   # loading runs kernels too
        _PAIRS[str(run.dir)] = pair
        while len(_PAIRS) > keep:
            _PAIRS.popitem(last=False)
        return pair


def validation_comparison(run: Run) -> DatasetComparison:
    """Base vs tuned on the run's own validation split (recomputed deterministically from its config)."""
    from studio.data import load_classification
    pair = load_pair(run)
    data = load_classification(pair.config.data, seed=pair.config.train.seed)
    names = data.labels.names
    return pair.compare_dataset(data.validation["text"].tolist(), [names[i] for i in data.validation["label"]])
