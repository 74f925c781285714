"""Base vs tuned for text generation: the same prompt, two answers, streamed as they grow.

`GenerationPair(run)` loads a finished generation run. With LoRA there is ONE model in memory:
the base model with the run's adapter on top; the base answers with the adapter switched off
(`with model.disable_adapter():`), the tuned one with it on. Full and freeze-depth runs load the
tuned model and the base model side by side.

Decoding is a small token loop (no `generate()` thread), so both answers can grow together: each
step runs one token of the base and one of the tuned answer. Greedy by default (temperature 0:
always the likeliest token), so an answer is repeatable; temperature and top-p make it varied.

`batch_compare` answers every validation prompt with both models next to the reference answer and
measures the loss and perplexity of both on the reference answers. `forgetting_check` measures
perplexity on a general English text the project ships: if the tuned model finds ordinary text
much more surprising than the base did, tuning overwrote some of what it knew.
"""

from __future__ import annotations

import inspect

import math
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import pandas as pd

from studio import catalog
from studio.config import GenerateSpec
from studio.errors import JobError
from studio.fresh_thread import in_fresh_thread
from studio.tasks import generate as gen
from studio.training.runs import Run

WHICH = ("base", "tuned")
GENERAL_TEXT = Path(__file__).resolve().parents[1] / "assets" / "samples" / "general_text.txt"


def to_messages(prompt_or_messages, system: str | None = None) -> list[dict]:
    """A prompt string or a message list -> a message list (a system message first when given)."""
    if isinstance(prompt_or_messages, str):
        messages = [{"role": "user", "content": prompt_or_messages}]
    else:
        messages = [{"role": m["role"], "content": m["content"]} for m in prompt_or_messages]
    if system and (not messages or messages[0]["role"] != "system"):
        messages = [{"role": "system", "content": system}] + messages
    return messages


class GenerationPair:
    """The base and the tuned model of a finished generation run, loaded once."""

    def __init__(self, run: Run) -> None:
        meta = run.model_meta()
        self.run = run
        self.config = run.config()
        if meta.get("task") != "generate":
            raise JobError(f"run {run.id} is not a text generation run.")
        self.adapter = bool(meta.get("adapter"))
        self.tokenizer = gen.load_tokenizer(str(run.model_dir))   # carries the template trained with
        base_target = catalog.resolve(self.config.model).load_target
        base = gen.load_causal_lm(base_target)
        if self.adapter:
            import warnings
            from peft import PeftModel
            with warnings.catch_warnings():   # peft 0.21 asks transformers 5 a deprecated question
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
                self.model = PeftModel.from_pretrained(base, str(run.model_dir), is_trainable=False)
            self.base = None
        else:
            self.model = gen.load_causal_lm(str(run.model_dir))
            self.base = base
        for m in (self.model, self.base):
            if m is not None:
                m.eval()
        self._lock = threading.RLock()   # one forward pass at a time: the adapter switch is global
        self.stop_ids = {i for i in (self.tokenizer.eos_token_id, self.tokenizer.pad_token_id,
                                     gen.end_of_turn_id(self.tokenizer),
                                     *_as_list(getattr(self.model.generation_config, "eos_token_id", None)))
                         if i is not None}
        self.stop_text = gen.PLAIN_STOP if gen.uses_plain_template(self.tokenizer) else None

    @contextmanager
    def use(self, which: str):
        """Hold the lock and yield the model that answers as `which` ("base" or "tuned")."""
        if which not in WHICH:
            raise ValueError(f"which must be 'base' or 'tuned', not {which!r}")
        with self._lock:
            if which == "tuned":
                yield self.model
            elif self.adapter:
                with self.model.disable_adapter():
                    yield self.model
            else:
                yield self.base

    # -- answering -------------------------------------------------------------------------------
    def stream(self, prompt_or_messages, which: str = "tuned", settings: GenerateSpec | None = None,
               *, system: str | None = None, seed: int = 0) -> Iterator[str]:
        """Yield the answer of `which` as it grows (the whole text so far, each time)."""
        decoder = _Decoder(self, which, to_messages(prompt_or_messages, system), settings or self.config.generate, seed)
        while not decoder.done:
            decoder.step()
            yield decoder.text

    def stream_both(self, base_messages, tuned_messages=None, settings: GenerateSpec | None = None,
                    *, system: str | None = None, seed: int = 0) -> Iterator[tuple[str, str]]:
        """Yield (base_text, tuned_text) while both answers grow, one token each per step. In a
        multi-turn chat each side keeps its own history, so they may be passed separately."""
        settings = settings or self.config.generate
        tuned_messages = base_messages if tuned_messages is None else tuned_messages
        sides = [_Decoder(self, "base", to_messages(base_messages, system), settings, seed),
                 _Decoder(self, "tuned", to_messages(tuned_messages, system), settings, seed)]
        while not all(d.done for d in sides):
            for d in sides:
                if not d.done:
                    d.step()
            yield sides[0].text, sides[1].text

    def answer(self, prompt_or_messages, which: str = "tuned", settings: GenerateSpec | None = None,
               **kw) -> str:
        text = ""
        for text in self.stream(prompt_or_messages, which, settings, **kw):
            pass
        return text

    def answer_both(self, prompt_or_messages, settings: GenerateSpec | None = None, **kw) -> dict:
        """{"base": answer, "tuned": answer} with the same decoding settings."""
        return {which: self.answer(prompt_or_messages, which, settings, **kw) for which in WHICH}

    # -- measuring -------------------------------------------------------------------------------
    def loss_on(self, examples: list[tuple[list[int], list[int]]], which: str, batch_size: int = 4) -> tuple[float, int]:
        """(mean loss per counted token, counted tokens) over (input_ids, labels) pairs."""
        return in_fresh_thread(self._loss_on, examples, which, batch_size)

    def _loss_on(self, examples, which: str, batch_size: int) -> tuple[float, int]:
        import torch
        import torch.nn.functional as F
        total, count = 0.0, 0
        order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
        collate = gen.CausalCollator(self.tokenizer.pad_token_id)
        for start in range(0, len(order), batch_size):
            batch = collate([{"input_ids": examples[i][0], "labels": examples[i][1]}
                             for i in order[start:start + batch_size]])
            with self.use(which) as model, torch.inference_mode():
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"][:, 1:]   # token t is predicted from the tokens before it
            total += float(F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels.flatten(),
                                           ignore_index=gen.IGNORE, reduction="sum"))
            count += int((labels != gen.IGNORE).sum())
        return (total / count if count else float("nan")), count

    def conversation_loss(self, conversations: list[list[dict]], which: str) -> float:
        """Mean loss on the answers of `conversations` (as in training: prompts masked)."""
        encoded = [e for e in gen.encode_all(self.tokenizer, conversations, self.config.train.max_length)
                   if e.trained_tokens]
        return self.loss_on([(e.input_ids, e.labels) for e in encoded], which)[0]

    def text_loss(self, text: str, which: str, window: int = 256) -> tuple[float, int]:
        """(mean loss per token, tokens) of plain text read in windows of `window` tokens."""
        tok = self.tokenizer
        ids = tok(text, add_special_tokens=False)["input_ids"]
        first = tok("a")["input_ids"]
        prefix = [first[0]] if tok.bos_token_id is not None and first and first[0] == tok.bos_token_id else []
        chunks = [prefix + ids[i:i + window] for i in range(0, len(ids), window)]
        examples = [(c, [gen.IGNORE] * len(prefix) + c[len(prefix):]) for c in chunks if len(c) > len(prefix) + 1]
        return self.loss_on(examples, which)


def _cache_argument(model) -> str:
    """The forward's name for the key/value cache: transformers 5.24 renamed `past_key_values` to
    `cache` (the old name still works, with a FutureWarning on every token, until 5.40)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model   # under peft
    return _cache_argument_of(type(base))


@lru_cache(maxsize=None)
def _cache_argument_of(model_class) -> str:
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


class _Decoder:
    """One answer being generated token by token, with its own key/value cache."""

    def __init__(self, pair: GenerationPair, which: str, messages: list[dict], settings: GenerateSpec,
                 seed: int) -> None:
        import torch
        self.pair, self.which, self.settings = pair, which, settings
        self.prompt_ids = gen.encode_prompt(pair.tokenizer, messages)
        self.new: list[int] = []
        self.cache = None
        self.text = ""
        self.done = settings.max_new_tokens <= 0
        self.generator = torch.Generator().manual_seed(seed)

    def step(self) -> None:
        """One more token (a fresh thread per step: the caller may be a long-lived server thread)."""
        in_fresh_thread(self._step)

    def _step(self) -> None:
        import torch
        ids = self.prompt_ids if self.cache is None else self.new[-1:]
        with self.pair.use(self.which) as model, torch.inference_mode():
            out = model(input_ids=torch.tensor([ids]), use_cache=True, **{_cache_argument(model): self.cache})
        self.cache = out["cache"] if "cache" in out else out["past_key_values"]
        token = next_token(out.logits[0, -1], self.settings, self.generator)
        if token in self.pair.stop_ids:
            self.done = True
            return
        self.new.append(token)
        self.text = self.pair.tokenizer.decode(self.new, skip_special_tokens=True)
        stop = self.pair.stop_text
        if stop and stop in self.text:
            self.text, self.done = self.text[: self.text.index(stop)].rstrip(), True
        if len(self.new) >= self.settings.max_new_tokens:
            self.done = True


def next_token(logits, settings: GenerateSpec, generator=None) -> int:
    """Greedy at temperature 0; else sample from the top-p share of the tempered distribution."""
    import torch
    if settings.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / settings.temperature, dim=-1)
    if settings.top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(0) - sorted_p < settings.top_p   # always keeps the likeliest token
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))


def _as_list(value) -> list:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


# -- whole-set comparisons -------------------------------------------------------------------------
@dataclass
class BatchComparison:
    examples: pd.DataFrame   # prompt | reference | base | tuned
    summary: pd.DataFrame    # metric | base | tuned | delta  (eval_loss, perplexity)

    def to_dict(self) -> dict:
        return {"summary": self.summary.to_dict(orient="records"),
                "examples": self.examples.to_dict(orient="records")}


def split_reference(conversation: list[dict]) -> tuple[list[dict], str]:
    """(messages before the last answer, the last answer): a prompt and its reference."""
    last = max(i for i, m in enumerate(conversation) if m["role"] == "assistant")
    return conversation[:last], conversation[last]["content"]


def batch_compare(run: Run, n: int | None = None, *, settings: GenerateSpec | None = None,
                  data_path: str | None = None, progress=None) -> BatchComparison:
    """Answer the first `n` validation prompts (all when None) with base and tuned; loss and
    perplexity of both on all validation answers. `data_path` uses that file's conversations
    instead of the run's validation split. `progress(fraction, message)` hears each prompt."""
    from studio.gendata import load_generation, read_conversations
    pair = load_pair(run)
    if data_path:
        conversations = read_conversations(data_path)[0]
    else:
        conversations = load_generation(pair.config.data, seed=pair.config.train.seed).validation
    rows = []
    shown = conversations[:n] if n else conversations
    for k, conv in enumerate(shown):
        if progress:
            progress(k / max(len(shown), 1), f"Answering prompt {k + 1} of {len(shown)}")
        messages, reference = split_reference(conv)
        both = pair.answer_both(messages, settings)
        rows.append({"prompt": messages[-1]["content"], "reference": reference,
                     "base": both["base"], "tuned": both["tuned"]})
    if progress:
        progress(1.0, "Measuring loss")
    losses = {which: pair.conversation_loss(conversations, which) for which in WHICH}
    summary = pd.DataFrame([_metric_row("eval_loss", losses["base"], losses["tuned"]),
                            _metric_row("perplexity", _ppl(losses["base"]), _ppl(losses["tuned"]))])
    return BatchComparison(pd.DataFrame(rows, columns=["prompt", "reference", "base", "tuned"]), summary)


@dataclass
class ForgettingReport:
    base_perplexity: float
    tuned_perplexity: float
    tokens: int
    text_path: str

    @property
    def change(self) -> float:
        """Relative change of perplexity: +0.10 means ordinary text got 10% more surprising."""
        return self.tuned_perplexity / self.base_perplexity - 1.0

    def to_dict(self) -> dict:
        return {**self.__dict__, "change": self.change}


def forgetting_check(run: Run, text_path: str | Path | None = None, *, window: int = 256) -> ForgettingReport:
    """Perplexity of base and tuned on general text (assets/samples/general_text.txt by default)."""
    path = Path(text_path) if text_path else GENERAL_TEXT
    if not path.is_file():
        raise JobError(f"the general-text sample {path} is missing.")
    text = path.read_text(encoding="utf-8")
    pair = load_pair(run)
    (base, tokens), (tuned, _) = (pair.text_loss(text, w, window) for w in WHICH)
    return ForgettingReport(_ppl(base), _ppl(tuned), tokens, str(path))


def _ppl(loss: float) -> float:
    return math.exp(min(loss, 50.0)) if math.isfinite(loss) else float("nan")


def _metric_row(name: str, base: float, tuned: float) -> dict:
    return {"metric": name, "base": base, "tuned": tuned, "delta": tuned - base}


_PAIRS: "OrderedDict[str, GenerationPair]" = OrderedDict()
_PAIRS_LOCK = threading.Lock()


def load_pair(run: Run, *, keep: int = 2) -> GenerationPair:
    """Loaded pairs are shared by run folder (read-only models), keeping the `keep` most recent."""
    marker = run.model_dir / "COMPLETE"
    key = f"{run.dir}@{marker.stat().st_mtime_ns if marker.exists() else 0}"   # a resumed run reloads
    with _PAIRS_LOCK:
        pair = _PAIRS.pop(key, None) or in_fresh_thread(GenerationPair, run)   # see fresh_thread.py
        _PAIRS[key] = pair
        while len(_PAIRS) > keep:
            _PAIRS.popitem(last=False)
        return pair


def release(run: Run | None = None) -> None:
    """Drop a run's loaded pair (all pairs when None), so its memory can be freed."""
    with _PAIRS_LOCK:
        if run is None:
            _PAIRS.clear()
        else:
            for key in [k for k in _PAIRS if k.startswith(f"{run.dir}@")]:
                del _PAIRS[key]
