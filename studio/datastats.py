"""What is in a table: which columns hold what, how labels are spread, how long the texts are.

Pure functions over DataFrames (no file access). `studio.data` reads and splits files and
re-exports everything public from here, so callers import from `studio.data` only.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

import pandas as pd

from studio.errors import ConfigError, DataError

if TYPE_CHECKING:
    from studio.data import ClassificationData

# Column names people use, most specific first; matched after lowercasing and turning spaces and
# dashes into "_". Detection falls back to the shape of the values when no name matches.
LABEL_NAMES = ("label", "labels", "class", "category", "intent", "sentiment", "target", "y", "tag",
               "topic", "emotion", "polarity", "rating", "stance", "class_label", "label_text")
TEXT_NAMES = ("text", "sentence", "review", "message", "content", "body", "comment", "utterance",
              "query", "question", "tweet", "document", "description", "review_text", "input", "x")
PROMPT_NAMES = ("prompt", "question", "input", "instruction", "query", "source")
RESPONSE_NAMES = ("response", "answer", "output", "completion", "target", "reply")
CHAT_NAMES = ("messages", "conversations", "conversation", "chat")
SAMPLE_ROWS = 2000          # detection looks at the first rows only: fast on big files
TINY_CLASS = 5              # fewer training rows than this: the class can hardly be learned
IMBALANCE_RATIO = 5         # largest / smallest class above this: the model may ignore small ones
LONGEST_COUNTED = 20_000    # characters per text handed to the token counter (lengths are lower bounds)


@dataclass
class Columns:
    """Which column holds what. classify: text + label. generate: prompt + response (alpaca also uses
    `text` for its optional "input" column; chat keeps the messages column in `text`)."""
    text: str | None
    label: str | None
    prompt: str | None
    response: str | None
    format: str


def _key(name) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name).strip().lower()).strip("_")


def _by_name(columns: Iterable, names: tuple[str, ...], skip: set = frozenset()) -> str | None:
    keyed = {_key(c): c for c in reversed(list(columns)) if c not in skip}   # first column wins ties
    return next((keyed[n] for n in names if n in keyed), None)


def detect_columns(df: pd.DataFrame, task: str = "classify", *, text: str | None = None,
                   label: str | None = None) -> Columns:
    """Guess the roles of `df`'s columns for `task` ("classify" or "generate").

    classify: label = a label-like name, else the column with the fewest distinct values;
    text = a text-like name, else the column with the longest values. Pass `text` or `label` to
    fix one and detect the other. generate: alpaca (instruction/input/output), chat (messages)
    or prompt_response pairs. Raises DataError, listing the columns, when nothing fits."""
    where = df.attrs.get("source")
    listing = f"Columns in this file: {', '.join(map(str, df.columns))}."
    if task == "generate":
        keys = {_key(c): c for c in df.columns}
        if "instruction" in keys and "output" in keys:
            return Columns(keys.get("input"), None, keys["instruction"], keys["output"], "alpaca")
        chat = _by_name(df.columns, CHAT_NAMES)
        if chat:
            return Columns(chat, None, None, None, "chat")
        prompt = _by_name(df.columns, PROMPT_NAMES)
        response = _by_name(df.columns, RESPONSE_NAMES, {prompt})
        if prompt and response:
            return Columns(None, None, prompt, response, "prompt_response")
        raise DataError("no prompt and answer columns found (for example 'prompt' and 'response', or "
                        "'instruction' and 'output', or a 'messages' column).", where=where,
                        hint=listing + " Rename them, or choose them in the data settings.")
    if task != "classify":
        raise ConfigError(f"unknown task '{task}'.", where="task")
    if len(df.columns) < 2:
        raise DataError("a classification table needs at least two columns: a text and a label.",
                        where=where, hint=listing)
    sample = df.head(SAMPLE_ROWS)
    label = label or _by_name(df.columns, LABEL_NAMES, {text})
    text = text or _by_name(df.columns, TEXT_NAMES, {label})
    if text is None:
        lengths = {c: sample[c].astype(str).str.len().mean() for c in df.columns if c != label}
        text = max(lengths, key=lengths.get)
    if label is None:
        limit = max(2, min(200, len(sample) // 2))
        distinct = {c: sample[c].nunique() for c in df.columns if c != text}
        fits = {c: n for c, n in distinct.items() if 2 <= n <= limit}
        if not fits:
            raise DataError("no column looks like a label (a few values repeated across rows).",
                            where=where, hint=listing + " Choose the label column in the data settings.")
        label = min(fits, key=fits.get)
    return Columns(text, label, None, None, "text_label")


def where_rows(frame: pd.DataFrame, index: Iterable, limit: int = 10) -> str:
    """'reviews.csv lines 3, 7 and 2 more': rows of a `read_table` frame as the user finds them."""
    numbers = [str(i) for i in index]
    word = frame.attrs.get("row_word", "row") + ("s" if len(numbers) > 1 else "")
    shown = ", ".join(numbers[:limit]) + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")
    return f"{frame.attrs.get('source', 'data')} {word} {shown}".strip()


def quoted(values, limit: int = 8) -> str:
    values = list(values)
    shown = ", ".join(f"'{v}'" for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


_INTEGRAL = re.compile(r"^([+-]?\d+)\.0+$")


def unify_labels(labels: pd.Series, warnings: list[str]) -> pd.Series:
    """Labels are text. "1.0" becomes "1" (spreadsheets and JSON store whole numbers as floats);
    case variants like "Positive"/"positive" stay apart but are reported."""
    distinct = set(labels.unique())
    mapping = {v: _INTEGRAL.sub(lambda m: m.group(1).lstrip("+"), v) for v in distinct if _INTEGRAL.match(v)}
    both = sorted(v for v, to in mapping.items() if to in distinct)
    if both:
        warnings.append(f"Labels written as {quoted(both)} were merged with {quoted(mapping[v] for v in both)} "
                        "(the same whole numbers written two ways).")
    if mapping:
        labels = labels.replace(mapping)
    by_lower: dict[str, list[str]] = {}
    for v in sorted(set(labels.unique())):
        by_lower.setdefault(v.lower(), []).append(v)
    for group in sorted(g for g in by_lower.values() if len(g) > 1):
        warnings.append(f"Labels {quoted(group)} differ only in upper/lower case and are kept as "
                        "separate classes; fix the file if they mean the same.")
    return labels


def label_order(name: str):
    """Sort key: numbers in numeric order (2 before 10), then words alphabetically."""
    try:
        number = float(name)
        if not math.isnan(number):
            return (0, number, name)
    except ValueError:
        pass
    return (1, 0.0, name)


def content_checks(train: pd.DataFrame, validation: pd.DataFrame, names: list[str]) -> tuple[int, int, list[str]]:
    """(duplicates, overlap, warnings) for split data with "text" and "label" (id) columns.

    duplicates: training rows whose text repeats an earlier training row; overlap: validation rows
    whose text is also in training (they make the validation score look better than it is)."""
    warnings = []
    labels_of: dict[str, set] = {}   # plain dicts and sets: much faster than pandas on big string columns
    duplicates = 0
    for text, label in zip(train["text"].tolist(), train["label"].tolist()):
        key = text.strip()
        duplicates += key in labels_of
        labels_of.setdefault(key, set()).add(label)
    if duplicates:
        warnings.append(f"{duplicates} training row(s) repeat an earlier text exactly; repeats weigh "
                        "more in training. Remove them unless that is intended.")
        conflicting = sum(len(labels) > 1 for labels in labels_of.values())
        if conflicting:
            warnings.append(f"{conflicting} text(s) appear with different labels; the model cannot "
                            "get both right. Check those rows.")
    overlap = sum(text.strip() in labels_of for text in validation["text"].tolist())
    if overlap:
        warnings.append(f"{overlap} validation row(s) also appear in training, so the validation score "
                        "looks better than it is. Remove the duplicates.")
    counts = train["label"].value_counts()
    if len(counts) >= 2 and counts.min() * IMBALANCE_RATIO < counts.max():
        big, small = names[counts.idxmax()], names[counts.idxmin()]
        warnings.append(f"The classes are unbalanced: '{big}' has {counts.max()} training rows, '{small}' "
                        f"only {counts.min()}. The model may favour '{big}'; watch the per-class scores, "
                        "not just accuracy.")
    tiny = [f"'{names[i]}' ({n})" for i, n in sorted(counts.items()) if n < TINY_CLASS]
    if tiny:
        warnings.append(f"Classes with fewer than {TINY_CLASS} training rows: {', '.join(tiny)}. "
                        "Add examples; the model can hardly learn them.")
    return duplicates, overlap, warnings


@dataclass
class DataStats:
    """Numbers the data tab shows before training. `warnings` includes the loading warnings."""
    rows_train: int
    rows_validation: int
    label_counts: dict[str, dict[str, int]]   # split -> label name -> rows
    token_lengths: list[int]                  # per training text
    max_length: int
    truncated_share: float                    # share of training texts longer than max_length
    duplicates: int
    overlap: int
    warnings: list[str] = field(default_factory=list)


def whitespace_token_counts(texts: list[str]) -> list[int]:
    """A tokenizer-free estimate: words, but at least one per 8 characters (a long run without
    spaces is many tokens). Subword tokenizers give somewhat more than words (about 1.3x)."""
    return [max(len(t.split()), len(t) // 8) for t in texts]


def compute_stats(data: "ClassificationData", count_tokens: Callable[[list[str]], list[int]] | None = None,
                  max_length: int = 128) -> DataStats:
    """Label counts, token lengths and quality warnings for loaded data.

    `count_tokens(texts) -> lengths` defaults to a word count; the engine passes one built on the
    real tokenizer. Texts are cut to LONGEST_COUNTED characters before counting, so a huge cell
    costs no more than a long one (its length is then a lower bound, still counted as truncated)."""
    count_tokens = count_tokens or whitespace_token_counts
    names = data.labels.names
    texts = [t[:LONGEST_COUNTED] for t in data.train["text"].astype(str)]
    lengths = [int(n) for n in count_tokens(texts)] if texts else []
    if len(lengths) != len(texts):
        raise ValueError(f"count_tokens returned {len(lengths)} lengths for {len(texts)} texts")
    truncated = sum(n > max_length for n in lengths)
    share = truncated / len(lengths) if lengths else 0.0
    duplicates, overlap, checks = content_checks(data.train, data.validation, names)
    extra = []
    if truncated:
        extra.append(f"{truncated} training text(s) ({share:.0%}) are longer than {max_length} tokens "
                     "and will be cut there; raise max_length to keep more (slower), if the end matters.")
    counts = {split: {names[i]: int(n) for i, n in sorted(frame["label"].value_counts().items())}
              for split, frame in (("train", data.train), ("validation", data.validation))}
    return DataStats(rows_train=len(data.train), rows_validation=len(data.validation), label_counts=counts,
                     token_lengths=lengths, max_length=max_length, truncated_share=share,
                     duplicates=duplicates, overlap=overlap,
                     warnings=list(dict.fromkeys([*data.warnings, *checks, *extra])))


def preview(df: pd.DataFrame, n: int = 10, max_chars: int = 200) -> pd.DataFrame:
    """The first `n` rows as text, each cell cut to `max_chars` characters (ending in "…").
    The index (file line or row numbers from `read_table`) is kept."""
    head = df.head(n).copy()
    for col in head.columns:
        head[col] = [_shorten("" if pd.api.types.is_scalar(v) and pd.isna(v) else str(v), max_chars)
                     for v in head[col]]
    return head


def _shorten(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[:max(max_chars - 1, 0)] + "…"
