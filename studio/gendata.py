"""Data for instruction tuning: three layouts in, one shape out.

    prompt_response   columns prompt, response            (CSV, JSONL, XLSX, ...)
    alpaca            columns instruction, input, output  (input optional)
    chat              a `messages` column: [{"role": "system"|"user"|"assistant", "content": "..."}]
                      one conversation per JSONL line, as in the OpenAI fine-tuning format

Each row becomes a *conversation*: a list of {"role", "content"} messages. The same content gives
the same conversation whichever layout it came in:

    prompt "Hi", response "Hello"                  -> [user "Hi", assistant "Hello"]
    instruction "Hi", input "", output "Hello"     -> [user "Hi", assistant "Hello"]
    instruction "Sum", input "2 3", output "5"     -> [user "Sum\\n\\n2 3", assistant "5"]

Problems are reported with the row or line where they are (see `studio.data.read_table`).
`token_stats` and `preview` show what the model will see, through the model's chat template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from studio.data import DEFAULT_MAX_BYTES, Columns, detect_columns, read_table, resolve_path, where_rows
from studio.errors import ConfigError, DataError

FORMATS = ("prompt_response", "alpaca", "chat")
# ShareGPT files say from/value and human/gpt; they are read as role/content and user/assistant.
ROLE_NAMES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}
CHAT_HINT = ('Each line looks like {"messages": [{"role": "user", "content": "..."}, '
             '{"role": "assistant", "content": "..."}]}.')


@dataclass
class GenerationData:
    """Conversations ready to tokenize, split into training and validation."""
    train: list[list[dict]]
    validation: list[list[dict]]
    format: str
    columns: Columns
    source: str
    warnings: list[str] = field(default_factory=list)


# -- which columns ---------------------------------------------------------------------------------
def _key(name) -> str:
    return str(name).strip().lower().replace(" ", "_")


def choose_columns(frame: pd.DataFrame, spec) -> Columns:
    """The layout and its columns: `spec.format` when set (else detected), `spec.prompt_column` /
    `spec.response_column` when set (for chat, prompt_column names the messages column)."""
    where = frame.attrs.get("source")
    listing = f"Columns in this file: {', '.join(map(str, frame.columns))}."
    for col in (spec.prompt_column, spec.response_column):
        if col and col not in frame.columns:
            raise DataError(f"there is no column '{col}'.", where=where, hint=listing)
    fmt = spec.format
    if fmt not in ("auto", *FORMATS):
        raise ConfigError(f"'{fmt}' is a classification format; generation reads "
                          f"{', '.join(FORMATS)} (or 'auto').", where="data.format")
    if fmt == "auto" and spec.prompt_column and spec.response_column:
        fmt = "prompt_response"
    try:
        found = detect_columns(frame, "generate")
    except DataError:
        if fmt == "auto":
            raise
        found = Columns(None, None, None, None, "none")
    fmt = found.format if fmt == "auto" else fmt
    keys = {_key(c): c for c in reversed(list(frame.columns))}
    if fmt == "chat":
        col = spec.prompt_column or (found.text if found.format == "chat" else None)
        col = col or (frame.columns[0] if len(frame.columns) == 1 else None)
        if not col:
            raise DataError("no 'messages' column found for the chat format.", where=where, hint=listing)
        return Columns(col, None, None, None, "chat")
    if fmt == "alpaca":
        prompt, response = spec.prompt_column or keys.get("instruction"), spec.response_column or keys.get("output")
        if not (prompt and response):
            raise DataError("the alpaca format needs 'instruction' and 'output' columns ('input' is optional).",
                            where=where, hint=listing)
        return Columns(keys.get("input"), None, prompt, response, "alpaca")
    prompt = spec.prompt_column or found.prompt
    response = spec.response_column or found.response
    if not (prompt and response):
        raise DataError("no prompt and response columns found.", where=where,
                        hint=listing + " Choose them in the data settings.")
    if prompt == response:
        raise DataError(f"the prompt and the response column are both '{prompt}'.", where=where,
                        hint="Pick two different columns.")
    return Columns(None, None, prompt, response, "prompt_response")


# -- rows -> conversations -------------------------------------------------------------------------
def _kind(value) -> str:
    return {bool: "true/false", int: "number", float: "number", str: "text", list: "list",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)


def parse_messages(cell: str) -> list[dict]:
    """One chat cell (JSON text of a list of messages) -> a checked conversation.
    Raises ValueError with a sentence saying what is wrong (the caller adds the line)."""
    if isinstance(cell, str) and not cell.strip():
        raise ValueError("there are no messages.")
    if isinstance(cell, str) and cell.lstrip()[:1] not in ("[", "{"):
        raise ValueError("'messages' must be a list of messages, not text.")
    try:
        value = json.loads(cell) if isinstance(cell, str) else cell
    except json.JSONDecodeError as exc:
        raise ValueError(f"the messages are not valid JSON ({exc.msg}).") from None
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        value = value["messages"]
    if not isinstance(value, list) or not value:
        raise ValueError(f"'messages' must be a non-empty list of messages, not {_kind(value)}.")
    conv = []
    for j, msg in enumerate(value, 1):
        if not isinstance(msg, dict):
            raise ValueError(f"message {j} is {_kind(msg)}, not an object with 'role' and 'content'.")
        role = msg.get("role", msg.get("from"))
        content = msg.get("content", msg.get("value"))
        if role is None:
            raise ValueError(f"message {j} has no 'role'.")
        if not isinstance(role, str) or role.strip().lower() not in ROLE_NAMES:
            raise ValueError(f"message {j} has role {json.dumps(role)}; use system, user or assistant.")
        role = ROLE_NAMES[role.strip().lower()]
        if content is None and "content" not in msg and "value" not in msg:
            raise ValueError(f"message {j} ({role}) has no 'content'.")
        if not isinstance(content, str):
            raise ValueError(f"message {j} ({role}) has content of type {_kind(content)}; it must be text.")
        if not content.strip():
            raise ValueError(f"message {j} ({role}) is empty" + ("; there is nothing to learn from it."
                                                                  if role == "assistant" else "."))
        if role == "system" and j != 1:
            raise ValueError(f"message {j} is a system message; only the first message may be one.")
        conv.append({"role": role, "content": content.strip()})
    roles = [m["role"] for m in conv]
    if "user" not in roles or "assistant" not in roles:
        missing = "assistant" if "user" in roles else "user"
        raise ValueError(f"the conversation has no {missing} message; it needs at least one user "
                         "message and one assistant answer.")
    if roles.index("assistant") < roles.index("user"):
        raise ValueError("the first assistant message comes before any user message.")
    return conv


def parse_frame(frame: pd.DataFrame, columns: Columns) -> tuple[list[list[dict]], list, list[str]]:
    """(conversations, their row ids, warnings). Raises DataError naming the first bad row or line
    (and how many more there are)."""
    source = frame.attrs.get("source", "data")
    convs, rows, errors, warnings, blank, cut = [], [], [], [], [], 0
    if columns.format == "chat":
        for row, cell in frame[columns.text].items():
            try:
                conv = parse_messages(cell)
            except ValueError as exc:
                errors.append((row, str(exc)))
                continue
            while conv[-1]["role"] != "assistant":   # a trailing question has no answer to learn
                conv.pop()
                cut += 1
            convs.append(conv)
            rows.append(row)
    else:
        extra = frame[columns.text].astype(str).str.strip() if columns.text else None
        for row, prompt, response in zip(frame.index, frame[columns.prompt].astype(str).str.strip(),
                                         frame[columns.response].astype(str).str.strip()):
            if not prompt and not response and (extra is None or not extra[row]):
                blank.append(row)
                continue
            if not prompt:
                errors.append((row, f"the prompt (column '{columns.prompt}') is empty."))
                continue
            if not response:
                errors.append((row, f"the response (column '{columns.response}') is empty; "
                                    "there is nothing to learn from this row."))
                continue
            if extra is not None and extra[row]:
                prompt = f"{prompt}\n\n{extra[row]}"
            convs.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": response}])
            rows.append(row)
    if errors:
        row, message = errors[0]
        others = [r for r, _ in errors[1:]]
        hint = CHAT_HINT if columns.format == "chat" else "Fill in or delete those rows."
        if others:
            hint = f"Also check {where_rows(frame, others)}. " + hint
        raise DataError(message, where=where_rows(frame, [row]), hint=hint)
    if blank:
        warnings.append(f"Skipped {len(blank)} empty row(s): {where_rows(frame, blank)}.")
    if cut:
        warnings.append(f"Dropped {cut} user message(s) at the end of conversations: no answer follows them.")
    if not convs:
        raise DataError("has no usable examples.", where=source)
    return convs, rows, warnings


def read_conversations(path: str | Path, spec=None, *, base_dir: Path | None = None,
                       max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[list[list[dict]], Columns, list[str]]:
    """Every conversation of one file (no split): (conversations, columns, warnings)."""
    from studio.config import DataSpec
    frame = read_table(resolve_path(path, base_dir), max_bytes=max_bytes)
    columns = choose_columns(frame, spec or DataSpec(path=str(path)))
    convs, _, warnings = parse_frame(frame, columns)
    return convs, columns, list(frame.attrs.get("warnings", [])) + warnings


def load_generation(spec, *, base_dir: Path | None = None, seed: int = 42,
                    max_bytes: int = DEFAULT_MAX_BYTES) -> GenerationData:
    """Read `spec.path` (and `spec.validation_path`), check every row, split (seeded, so the same
    config always gives the same split). Raises DataError naming the file and rows to fix."""
    frame = read_table(resolve_path(spec.path, base_dir), max_bytes=max_bytes)
    columns = choose_columns(frame, spec)
    convs, _, warnings = parse_frame(frame, columns)
    warnings = list(frame.attrs.get("warnings", [])) + warnings
    rng = np.random.RandomState(seed)
    if spec.max_rows is not None and len(convs) > spec.max_rows:
        warnings.append(f"Used a random {spec.max_rows} of the {len(convs)} examples (max_rows).")
        convs = [convs[i] for i in sorted(rng.choice(len(convs), spec.max_rows, replace=False))]
    if spec.validation_path:
        validation, _, more = read_conversations(spec.validation_path, spec, base_dir=base_dir, max_bytes=max_bytes)
        train, warnings = convs, warnings + more
    else:
        if len(convs) < 2:
            raise DataError(f"has only {len(convs)} example; at least 2 are needed (one to learn from, "
                            "one to check on).", where=frame.attrs.get("source"),
                            hint="Add examples or provide a separate validation file.")
        order = rng.permutation(len(convs))
        n_val = min(len(convs) - 1, max(1, round(len(convs) * spec.validation_split)))
        held = set(order[:n_val].tolist())
        train = [c for i, c in enumerate(convs) if i not in held]
        validation = [c for i, c in enumerate(convs) if i in held]
    seen = {json.dumps(c, sort_keys=True) for c in train}
    overlap = sum(json.dumps(c, sort_keys=True) in seen for c in validation)
    if overlap:
        warnings.append(f"{overlap} validation example(s) also appear in training, so the validation "
                        "loss looks better than it is.")
    return GenerationData(train, validation, columns.format, columns,
                          frame.attrs.get("source", Path(spec.path).name), list(dict.fromkeys(warnings)))


# -- what the model will see -----------------------------------------------------------------------
@dataclass
class TokenStats:
    """Token lengths of encoded conversations (see `studio.tasks.generate.encode`)."""
    examples: int
    lengths: list[int]            # tokens per example before truncation (for a histogram)
    mean_tokens: float
    median_tokens: float
    p95_tokens: float
    max_tokens: int
    max_length: int
    truncated: int                # examples longer than max_length (cut there)
    truncated_share: float
    no_answer_left: int           # cut so early that no answer token remains (dropped in training)
    trained_tokens: int           # tokens the loss counts, after truncation

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "lengths"}

    def warnings(self) -> list[str]:
        out = []
        if self.truncated:
            out.append(f"{self.truncated} example(s) ({self.truncated_share:.0%}) are longer than "
                       f"{self.max_length} tokens and will be cut there; raise max_length to keep them whole.")
        if self.no_answer_left:
            out.append(f"{self.no_answer_left} example(s) lose their whole answer at that cut and are skipped.")
        return out


def token_stats(encoded: list, max_length: int) -> TokenStats:
    """Statistics over `Encoded` examples (from `studio.tasks.generate.encode_all`)."""
    lengths = [e.full_length for e in encoded]
    arr = np.asarray(lengths or [0])
    truncated = sum(e.truncated for e in encoded)
    return TokenStats(examples=len(encoded), lengths=lengths, mean_tokens=float(arr.mean()),
                      median_tokens=float(np.median(arr)), p95_tokens=float(np.percentile(arr, 95)),
                      max_tokens=int(arr.max()), max_length=max_length, truncated=truncated,
                      truncated_share=truncated / len(encoded) if encoded else 0.0,
                      no_answer_left=sum(not e.trained_tokens for e in encoded),
                      trained_tokens=sum(e.trained_tokens for e in encoded))


def preview(conversations: list[list[dict]], tokenizer, n: int = 5, max_chars: int = 1500) -> pd.DataFrame:
    """The first `n` conversations as the model reads them: columns rendered (chat template
    applied), learned (the part the loss counts) and tokens."""
    from studio.tasks.generate import encode, render_segments
    rows = []
    for conv in conversations[:n]:
        pieces = render_segments(tokenizer, conv)
        text = "".join(p for p, _ in pieces)
        rows.append({"rendered": text[:max_chars] + ("…" if len(text) > max_chars else ""),
                     "learned": " | ".join(p.strip() for p, tag in pieces if tag),
                     "tokens": encode(tokenizer, conv, 10**9).full_length})
    return pd.DataFrame(rows, columns=["rendered", "learned", "tokens"])


def summarize(spec, tokenizer, max_length: int, *, seed: int = 42, n_preview: int = 5) -> dict:
    """Everything the data tab shows for a generation file: format, counts, token stats (with the
    truncated share), warnings, a rendered preview and highlight segments of the first example."""
    from studio.tasks.generate import encode_all, render_segments
    data = load_generation(spec, seed=seed)
    stats = token_stats(encode_all(tokenizer, data.train, max_length), max_length)
    return {"data": data, "format": data.format, "rows_train": len(data.train),
            "rows_validation": len(data.validation), "stats": stats,
            "warnings": list(dict.fromkeys(data.warnings + stats.warnings())),
            "preview": preview(data.train, tokenizer, n_preview),
            "segments": render_segments(tokenizer, data.train[0])}
