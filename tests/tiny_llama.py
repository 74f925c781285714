"""A tiny random Llama and a character-level tokenizer, built inside the tests (no downloads).

`make_tiny_llama(folder)` writes a 2-block, 32-wide LlamaForCausalLM (safetensors) with a
tokenizer that maps each character to one token. Without `chat_template` the studio gives it its
plain "### User / ### Assistant" template; with `chat_template=CHATML` it behaves like SmolLM2.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>", "<|im_start|>", "<|im_end|>"]
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def char_tokenizer(chat_template: str | None = None):
    """A PreTrainedTokenizerFast with one token per printable character plus SPECIALS."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [c for c in string.printable if c not in "\x0b\x0c\r"]
    vocab = {tok: i for i, tok in enumerate(SPECIALS + chars)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>",
                                        bos_token="<bos>", eos_token="<eos>",
                                        additional_special_tokens=SPECIALS[4:])
    if chat_template:
        tokenizer.chat_template = chat_template
    return tokenizer


def make_tiny_llama(folder: Path, *, chat_template: str | None = None, seed: int = 0) -> Path:
    """Write a random 2-layer Llama (hidden 32) and its char tokenizer to `folder`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = char_tokenizer(chat_template)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
                         initializer_range=0.3)
    # initializer_range 0.3, not 0.02: LoRA leaves lm_head frozen, and a random head that small
    # cannot make any token much likelier than another (real models have trained heads).
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def write_chat_jsonl(path: Path, conversations: list[list[dict]]) -> Path:
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations), encoding="utf-8")
    return path


def generation_config(data_path: Path, model: Path, **train):
    """A RunConfig for a short generation run on the tiny model."""
    from studio.config import DataSpec, GenerateSpec, RunConfig, TrainSpec
    defaults = dict(method="lora", epochs=3, batch_size=4, max_length=96, learning_rate=3e-2,
                    lora_r=8, lora_alpha=16, lora_dropout=0.0, warmup_ratio=0.0, save_checkpoints=False)
    defaults.update(train)
    return RunConfig(task="generate", model=str(model), name="tiny-gen",
                     data=DataSpec(path=str(data_path), validation_split=0.25),
                     train=TrainSpec(**defaults), generate=GenerateSpec(max_new_tokens=12))
